"""`segflow train`: offline training from a config file."""

from __future__ import annotations

import argparse
import sys

def run_train(args: argparse.Namespace) -> int:
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
