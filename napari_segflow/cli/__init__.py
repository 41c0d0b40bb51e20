"""The ``segflow`` command."""

from __future__ import annotations

import argparse
import sys

from napari_segflow._sample_data import SAMPLE_CLIP
from napari_segflow.checkpoint import SHIPPED_WEIGHTS
from napari_segflow.cli.bench import JSON_PARTS, run_bench
from napari_segflow.cli.demo import run_demo
from napari_segflow.cli.train import run_train
from napari_segflow.cli.video import run_eval, run_flow, run_propagate
from napari_segflow.cli.view import run_view
from napari_segflow.data.resolution import DEFAULT_LONG_SIDE
from napari_segflow.device import DEVICE_CHOICES
from napari_segflow.inference.pair_flow import FLOW_LONG_SIDE, POLISH_ROUNDS, REFINEMENT_ROUNDS
from napari_segflow.inference.session import SESSION_FINETUNE_SECONDS
from napari_segflow.training.online import FinetuneConfig
from napari_segflow.errors import SegFlowError


def at_least(smallest: int):
    """An argparse type: an integer of at least ``smallest`` (argparse names the option in its error)."""

    def checked(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < smallest:
            raise argparse.ArgumentTypeError(f"must be at least {smallest}, got {value}")
        return value

    return checked


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description="SegFlow video object segmentation and optical flow.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="speed and accuracy beside classical peers, in one run")
    bench.add_argument("--part", default="engine",
                       choices=["engine", "long", "model", "accuracy", "finetune", "flow", "interactive", "box"],
                       help="engine: the session (fine-tune + propagate) vs DIS and Farneback warping on held-out "
                            "real and synthetic clips; long: a long 854x480 video's frames/s and peak memory; "
                            "model: speed of both presets; accuracy: the model card's ablations; "
                            "finetune: one default fine-tune's time and memory; flow: end-point error on pairs "
                            "with exact flow beside DIS, Farneback and zero flow; interactive: a simulated "
                            "annotator correcting one frame a round, three ways of choosing it, beside DIS "
                            "warping restarted at each correction; box: first masks from a box (and simulated strokes) "
                            "against the true first masks, and whole runs started from them (default: engine)")
    bench.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    bench.add_argument("--repeats", type=at_least(1), default=10, help="timed forward passes per preset (default: 10)")
    bench.add_argument("--clips", type=at_least(0), default=4, help="synthetic clips (default: 4)")
    bench.add_argument(
        "--long-frames", type=at_least(2), default=2000, help="frames of the --part long video (default: 2000)"
    )
    bench.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                       help="where SegFlow runs (auto: cuda, then mps, then cpu); --part model times the CPU only")
    bench.add_argument("--long-side", type=int, default=None,
                       help=f"working resolution long side (default: 448; for --part flow {FLOW_LONG_SIDE})")
    bench.add_argument("--pairs", default="../shared/data/flow-chairs-examples",
                       help="--part flow: folder of NAME-img0.png, NAME-img1.png, NAME-gt.flo")
    bench.add_argument("--threads", type=at_least(0), default=0, help="torch threads (default: torch's choice)")
    bench.add_argument("--weights", default=str(SHIPPED_WEIGHTS), help="checkpoint to fine-tune from")
    bench.add_argument("--davis-root", default="../shared/data/davis2016-train-240p",
                       help="held-out sequences (<seq>/frames + <seq>/masks, or the DAVIS layout)")
    bench.add_argument("--sequences", nargs="*", help="sequence names (default: the six held out of training)")
    bench.add_argument("--methods", nargs="+", action="extend",
                       help="subset of full -ref -ol -flo -fda dis farneback for --part accuracy; the ablations "
                            "start with '-', so name them as --methods=-ref (repeatable)")
    bench.add_argument("--finetune-steps", type=int, default=FinetuneConfig.steps)
    bench.add_argument("--finetune-seconds", type=seconds, default=60.0)
    bench.add_argument("--finetune-seed", type=int, default=0,
                       help="--part accuracy, engine, long, interactive, box: the fine-tune's seed (its spread "
                            "between seeds is a few points; default: 0)")
    bench.add_argument("--bidirectional", action="store_true",
                       help="--part engine, long, interactive, box: the session's two-way memory (a sweep back after "
                            "the sweep forward; about twice the propagation time)")
    bench.add_argument("--rounds", type=int, default=5, help="--part interactive: correction rounds (default: 5)")
    bench.add_argument("--plot", help="--part interactive: also draw J&F against rounds in this PNG")
    bench.add_argument("--json", help=f"--part {', '.join(JSON_PARTS)}: also write the results as JSON here")
    bench.add_argument("--video", default=str(SAMPLE_CLIP / "bear.mp4"),
                       help="video for --part finetune and long (default: the sample clip)")
    bench.add_argument("--mask", default=str(SAMPLE_CLIP / "first_frame_mask.png"),
                       help="its first-frame mask (default: the sample clip's)")
    bench.add_argument("--frame-size", type=at_least(64), nargs=2, metavar=("H", "W"), default=(480, 854),
                       help="resize the frames to this size for --part finetune and long (default: 480 854)")
    bench.set_defaults(run=run_bench)

    demo = commands.add_parser("demo", help="fine-tune on the sample clip's first frame, propagate, score")
    demo.add_argument("--sample", default=str(SAMPLE_CLIP),
                      help="folder with NAME.mp4, first_frame_mask.png, masks/ (default: the sample clip)")
    demo.add_argument("--weights", default=str(SHIPPED_WEIGHTS))
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ...")
    demo.add_argument("--finetune-seconds", type=seconds, default=60.0)
    demo.set_defaults(run=run_demo)

    view = commands.add_parser("view", help="napari with a video (default: the sample clip) and the SegFlow widget")
    view.add_argument("video", nargs="?", help="a video file, a folder of frames, a TIFF stack or a .npy array "
                      "(default: the sample clip)")
    view.add_argument("--mask", help="a label image to put on the annotation layer")
    view.add_argument("--frame", type=int, help="the frame --mask belongs to (default: 0)")
    view.add_argument("--session", help="reopen a saved session folder instead")
    view.set_defaults(run=run_view)

    train = commands.add_parser("train", help="offline training: rounds alternating the two branches")
    train.add_argument("--config", required=True, help="YAML file of TrainConfig settings")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT/state.pt")
    train.add_argument("--output", help="replace the config's output folder")
    train.add_argument("--davis-root", help="replace the config's DAVIS folder")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="replace one setting (repeatable), e.g. on a GPU --set flow_batch_size=32 "
                            "--set batch_size=8")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)

    propagate = commands.add_parser(
        "propagate", help="fine-tune on the annotated frames, propagate from each to its neighbours both ways"
    )
    propagate.add_argument("video", help="a video file, a folder of frames, a TIFF stack or a .npy array")
    propagate.add_argument("--mask", action="append",
                           help="label image of an annotated frame (ids are objects); repeatable, each followed by "
                                "its --frame; with several, an all-0 one says no object is on its frame")
    propagate.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                           help="instead of --mask: a box around the one object on --frame (pixels, x1 and y1 "
                                "exclusive); the first mask is made from it (the network, colour and the motion to "
                                "the next frame)")
    propagate.add_argument("--frame", type=int, action="append",
                           help="the frame the --mask before it (or the --box) belongs to (default for one: 0)")
    propagate.add_argument("--out", required=True, help="folder for one indexed PNG per frame")
    propagate.add_argument("--flow-out", help="folder for one .flo file per frame (flow to the next frame)")
    propagate.add_argument("--session", help="keep the session (annotations, results, weights) in this folder")
    _engine_options(propagate)
    propagate.set_defaults(run=run_propagate)

    flow = commands.add_parser("flow", help="the flow branch on one image pair of any size (a .flo file; both ways, "
                                          "three mirrored passes each, refined on the warped pair, "
                                          "polished)")
    flow.add_argument("image1")
    flow.add_argument("image2")
    flow.add_argument("--out", required=True, help="a .flo file")
    flow.add_argument("--weights", default=str(SHIPPED_WEIGHTS))
    flow.add_argument("--long-side", type=int, default=FLOW_LONG_SIDE,
                      help="larger images are estimated with this long side and the flow scaled back "
                           f"(default: {FLOW_LONG_SIDE})")
    flow.add_argument("--refinements", type=int, default=REFINEMENT_ROUNDS,
                      help="rounds that re-estimate the motion left after warping the second image back by the "
                           f"flow so far (default: {REFINEMENT_ROUNDS}; 0 is fastest)")
    flow.add_argument("--polish", type=int, default=POLISH_ROUNDS,
                      help="rounds of variational refinement and median filtering that settle the flow's sub-pixel "
                           f"detail against the images (default: {POLISH_ROUNDS}; 0 skips them)")
    flow.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    flow.set_defaults(run=run_flow)

    evaluate = commands.add_parser("eval", help="J and F on annotated sequences, first-frame mask given")
    evaluate.add_argument("root", help="<seq>/frames/*.jpg + <seq>/masks/*.png, or JPEGImages/480p + Annotations/480p")
    evaluate.add_argument("--sequences", nargs="*", help="names (default: all)")
    evaluate.add_argument("--out", help="also write the predictions here, <seq>/<frame>.png")
    _engine_options(evaluate)
    evaluate.set_defaults(run=run_eval)
    return parser


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=str(SHIPPED_WEIGHTS), help="checkpoint to fine-tune from")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: cuda, then mps, then cpu")
    parser.add_argument("--long-side", type=int, default=DEFAULT_LONG_SIDE,
                        help=f"working resolution long side (default: {DEFAULT_LONG_SIDE})")
    parser.add_argument("--finetune-steps", type=int, default=FinetuneConfig.steps,
                        help=f"fine-tune steps (default: {FinetuneConfig.steps})")
    parser.add_argument("--finetune-seconds", type=seconds, default=SESSION_FINETUNE_SECONDS,
                        help=f"fine-tune time budget (default: {SESSION_FINETUNE_SECONDS:g})")
    parser.add_argument("--bidirectional", action="store_true", help="add the backward memory sweep")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SegFlowError as error:
        print(f"segflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segflow: interrupted", file=sys.stderr)
        return 130
