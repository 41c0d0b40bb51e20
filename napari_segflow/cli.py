"""The ``segflow`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_segflow.errors import SegFlowError

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "small.pt"


def _bench(args: argparse.Namespace) -> int:
    import torch

    from napari_segflow.evaluation.benchmark import benchmark_model, benchmark_synthetic, model_report

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "accuracy":
        return _bench_accuracy(args)
    print(f"benchmarking the model ({', '.join(args.presets)}) ...", file=sys.stderr)
    timings = benchmark_model(tuple(args.presets), repeats=args.repeats, long_side=args.long_side)
    print("benchmarking synthetic data ...", file=sys.stderr)
    data = benchmark_synthetic(clips=args.clips)
    print(model_report(timings, data, torch.get_num_threads()))
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
    bench.add_argument("--part", choices=["model", "accuracy"], default="model",
                       help="model: speed of both presets; accuracy: held-out J&F and flow EPE (default: model)")
    bench.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    bench.add_argument("--repeats", type=int, default=10, help="timed forward passes per preset (default: 10)")
    bench.add_argument("--clips", type=int, default=4, help="synthetic clips to time (default: 4)")
    bench.add_argument("--long-side", type=int, default=448, help="working resolution long side (default: 448)")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    bench.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint for --part accuracy")
    bench.add_argument("--davis-root", default="../shared/data/davis2016-train-240p",
                       help="sequences for --part accuracy (<seq>/frames + <seq>/masks, or the DAVIS layout)")
    bench.add_argument("--sequences", nargs="*", help="sequence names (default: the six held out of training)")
    bench.add_argument("--methods", nargs="*", help="subset of full -ol -flo -fda dis farneback")
    bench.add_argument("--finetune-steps", type=int, default=150)
    bench.add_argument("--finetune-seconds", type=float, default=60.0)
    bench.add_argument("--json", help="also write the results as JSON here")
    bench.set_defaults(run=_bench)

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
