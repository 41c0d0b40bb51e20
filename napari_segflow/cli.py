"""The ``segflow`` command."""

from __future__ import annotations

import argparse
import sys

from napari_segflow.errors import SegFlowError


def _bench(args: argparse.Namespace) -> int:
    import torch

    from napari_segflow.evaluation.benchmark import benchmark_model, benchmark_synthetic, model_report

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"benchmarking the model ({', '.join(args.presets)}) ...", file=sys.stderr)
    timings = benchmark_model(tuple(args.presets), repeats=args.repeats, long_side=args.long_side)
    print("benchmarking synthetic data ...", file=sys.stderr)
    data = benchmark_synthetic(clips=args.clips)
    print(model_report(timings, data, torch.get_num_threads()))
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
    bench.add_argument("--part", choices=["model"], default="model", help="what to benchmark (default: model)")
    bench.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    bench.add_argument("--repeats", type=int, default=10, help="timed forward passes per preset (default: 10)")
    bench.add_argument("--clips", type=int, default=4, help="synthetic clips to time (default: 4)")
    bench.add_argument("--long-side", type=int, default=448, help="working resolution long side (default: 448)")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
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
