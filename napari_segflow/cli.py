"""The ``segflow`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_segflow.checkpoint import SHIPPED_WEIGHTS
from napari_segflow.errors import SegFlowError


def _bench(args: argparse.Namespace) -> int:
    import torch

    from napari_segflow.evaluation.benchmark import benchmark_model, benchmark_synthetic, model_report

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "accuracy":
        return _bench_accuracy(args)
    if args.part == "finetune":
        return _bench_finetune(args)
    print(f"benchmarking the model ({', '.join(args.presets)}) ...", file=sys.stderr)
    timings = benchmark_model(tuple(args.presets), repeats=args.repeats, long_side=args.long_side)
    print("benchmarking synthetic data ...", file=sys.stderr)
    data = benchmark_synthetic(clips=args.clips)
    print(model_report(timings, data, torch.get_num_threads()))
    return 0


def _bench_finetune(args: argparse.Namespace) -> int:
    import numpy as np
    import torch.nn.functional as F
    import torch

    from napari_segflow.data.io import open_video, read_annotation
    from napari_segflow.evaluation.benchmark import benchmark_finetune

    video = open_video(args.video)
    frames = video[: min(len(video), 8)]
    mask = read_annotation(args.mask, video.shape[1:])
    if args.frame_size:
        # the fine-tune works at the working resolution; this shows what a larger input costs on top
        height, width = args.frame_size
        tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        frames = F.interpolate(tensor, size=(height, width), mode="bilinear").round().byte().permute(0, 2, 3, 1).numpy()
        mask = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(height, width), mode="nearest")[0, 0]
        mask = mask.byte().numpy()
    timing = benchmark_finetune(args.weights, np.ascontiguousarray(frames), mask)
    print(f"| frames | working size | steps | seconds | peak RSS |\n|---|---|---:|---:|---:|\n"
          f"| {timing.frame_size[1]}x{timing.frame_size[0]} | {timing.working_size[1]}x{timing.working_size[0]} | "
          f"{timing.steps} | {timing.seconds:.1f} | {timing.peak_rss_megabytes:.0f} MB |")
    return 0


def _bench_accuracy(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict, replace

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.evaluation.accuracy import VARIANTS, PEERS, accuracy_table, evaluate, flow_accuracy
    from napari_segflow.training.davis import HELD_OUT, find_sequences
    from napari_segflow.training.online import FinetuneConfig

    net, _ = load_checkpoint(args.weights)
    sequences = find_sequences(args.davis_root, names=args.sequences or list(HELD_OUT))
    config = replace(FinetuneConfig(), steps=args.finetune_steps, time_budget=args.finetune_seconds)
    methods = tuple(args.methods or (VARIANTS + PEERS))

    def report(name, scores):
        print(f"  {name}: " + ", ".join(f"{m} J={j:.3f}" for m, j in scores.items()), file=sys.stderr)

    print(f"accuracy on {len(sequences)} held-out sequence(s), first-frame mask given ...", file=sys.stderr)
    results = evaluate(net, sequences, methods, config, long_side=args.long_side, progress=report)
    print(accuracy_table(results))
    flow = flow_accuracy(net)
    print(f"\nFlow on {flow['clips']} held-out synthetic pairs ({flow['size'][1]}x{flow['size'][0]}): "
          f"SegFlow EPE {flow['segflow_epe']:.2f} px, DIS {flow['dis_epe']:.2f} px, zero flow {flow['zero_flow_epe']:.2f} px")
    if args.json:
        payload = {"methods": [asdict(r) | {"jf": r.jf} for r in results], "flow": flow,
                   "finetune": asdict(config), "long_side": args.long_side, "weights": str(args.weights)}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.data.flowviz import flow_to_rgb
    from napari_segflow.data.io import open_video, read_annotation, read_label_image, write_label_png
    from napari_segflow.data.resolution import WorkingResolution
    from napari_segflow.evaluation.baselines import propagate_by_flow
    from napari_segflow.evaluation.metrics import score_sequence
    from napari_segflow.inference.propagation import frame_order, propagate
    from napari_segflow.objects import ObjectChannels
    from napari_segflow.device import choose_device
    from napari_segflow.training.online import FinetuneConfig, finetune

    sample = Path(args.sample)
    video = open_video(sample / f"{sample.name}.mp4")
    mask = read_annotation(sample / "first_frame_mask.png", video.shape[1:])
    device = choose_device(args.device)
    net, _ = load_checkpoint(args.weights)
    objects = ObjectChannels.from_annotations({0: mask})
    config = FinetuneConfig(time_budget=args.finetune_seconds)
    with tqdm(total=config.steps, desc="fine-tune", unit="step", file=sys.stderr) as bar:
        for step in finetune(net, video, {0: mask}, objects, config, device):
            bar.update(1)
            bar.set_postfix(loss=f"{step.loss:.3f}")
    out = Path(args.out)
    geometry = WorkingResolution(video.shape[1], video.shape[2])
    predictions = []
    order = frame_order(len(video), 0, "forward")
    for result in tqdm(propagate(net, video, objects, order, geometry, device), total=len(order),
                       desc="propagate", unit="frame", file=sys.stderr):
        write_label_png(result.labels, out / "masks" / f"{result.index:05d}.png")
        flow_path = out / "flow" / f"{result.index:05d}.png"
        flow_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(flow_to_rgb(result.flow)).save(flow_path)
        predictions.append(result.labels)
    _overview(video, predictions, out)
    truth_paths = sorted((sample / "masks").glob("*.png"))
    if len(truth_paths) == len(video):
        truths = np.stack([read_label_image(p) for p in truth_paths])
        ours = score_sequence(np.stack(predictions), truths)
        peer = np.stack([labels for _, labels in propagate_by_flow(video, mask, order, "dis")])
        theirs = score_sequence(peer, truths)
        print(f"{sample.name}: SegFlow J {ours.j_mean:.3f} F {ours.f_mean:.3f} | "
              f"DIS flow warping J {theirs.j_mean:.3f} F {theirs.f_mean:.3f}")
    print(f"masks: {out / 'masks'}  flow colours: {out / 'flow'}  overview: {out / 'overview.png'}")
    return 0


def _overview(video, predictions, out: Path, columns: int = 4) -> None:
    """One picture: a few frames with the masks drawn over them, above the flow colours of the same frames."""
    import numpy as np
    from PIL import Image

    from napari_segflow.data.io import davis_palette

    palette = davis_palette()
    picks = np.linspace(0, len(predictions) - 1, columns).round().astype(int)
    overlays, flows = [], []
    for index in picks:
        frame = video[int(index)].astype(np.float32)
        labels = predictions[index]
        tint = palette[labels].astype(np.float32)
        overlay = np.where(labels[..., None] > 0, 0.45 * frame + 0.55 * tint, frame)
        overlays.append(overlay.astype(np.uint8))
        flows.append(np.asarray(Image.open(out / "flow" / f"{int(index):05d}.png").convert("RGB")))
    Image.fromarray(np.concatenate([np.concatenate(overlays, 1), np.concatenate(flows, 1)], 0)).save(out / "overview.png")


def _train(args: argparse.Namespace) -> int:
    from napari_segflow.training.offline import OfflineTrainer, load_train_config

    overrides = {k: v for k, v in (("output", args.output), ("davis_root", args.davis_root)) if v is not None}
    config = load_train_config(args.config, **overrides)
    trainer = OfflineTrainer(config)
    if args.resume:
        trainer.resume()
    try:
        final = trainer.run(progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"segflow: stopped; a resumable state is in {trainer.state_path} (add --resume)", file=sys.stderr)
        return 130
    if trainer.rank == 0:
        print(final)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description="SegFlow video object segmentation and optical flow.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="speed (and later accuracy) beside classical peers")
    bench.add_argument("--part", choices=["model", "accuracy", "finetune"], default="model",
                       help="model: speed of both presets; accuracy: held-out J&F and flow EPE; "
                            "finetune: one default fine-tune's time and memory (default: model)")
    bench.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    bench.add_argument("--repeats", type=int, default=10, help="timed forward passes per preset (default: 10)")
    bench.add_argument("--clips", type=int, default=4, help="synthetic clips to time (default: 4)")
    bench.add_argument("--long-side", type=int, default=448, help="working resolution long side (default: 448)")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    bench.add_argument("--weights", default=str(SHIPPED_WEIGHTS), help="checkpoint for --part accuracy")
    bench.add_argument("--davis-root", default="../shared/data/davis2016-train-240p",
                       help="sequences for --part accuracy (<seq>/frames + <seq>/masks, or the DAVIS layout)")
    bench.add_argument("--sequences", nargs="*", help="sequence names (default: the six held out of training)")
    bench.add_argument("--methods", nargs="*", help="subset of full -ol -flo -fda dis farneback")
    bench.add_argument("--finetune-steps", type=int, default=150)
    bench.add_argument("--finetune-seconds", type=float, default=60.0)
    bench.add_argument("--json", help="also write the results as JSON here")
    bench.add_argument("--video", default="sample_data/bear/bear.mp4", help="video for --part finetune")
    bench.add_argument("--mask", default="sample_data/bear/first_frame_mask.png", help="its first-frame mask")
    bench.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=(480, 854),
                       help="resize the frames to this size for --part finetune (default: 480 854)")
    bench.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="fine-tune on the sample clip's first frame, propagate, score")
    demo.add_argument("--sample", default="sample_data/bear", help="folder with NAME.mp4, first_frame_mask.png, masks/")
    demo.add_argument("--weights", default=str(SHIPPED_WEIGHTS))
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ...")
    demo.add_argument("--finetune-seconds", type=float, default=60.0)
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="offline training: rounds alternating the two branches")
    train.add_argument("--config", required=True, help="YAML file of TrainConfig settings")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT/state.pt")
    train.add_argument("--output", help="replace the config's output folder")
    train.add_argument("--davis-root", help="replace the config's DAVIS folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
