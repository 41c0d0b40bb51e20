"""`segflow train`: offline training from a config file."""

from __future__ import annotations

import argparse
import signal
import sys


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs, each VALUE read as YAML (``flow_batch_size=32``, ``phase_max_steps=[800,0]``)."""
    import yaml

    from napari_segflow.errors import SegFlowError

    settings = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SegFlowError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            settings[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise SegFlowError(f"--set {pair!r}: the value is not valid YAML ({error})") from error
    return settings


def _stop(signum, frame) -> None:
    # `timeout` signals the process group and a wrapper script may signal again: a second SIGTERM must not cut
    # short the saving of the state the first one asked for
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt  # the trainer saves a resumable state on its way out, as on Ctrl-C


def run_train(args: argparse.Namespace) -> int:
    from napari_segflow.opencv import opencv
    from napari_segflow.training.offline import OfflineTrainer, load_train_config

    overrides = {k: v for k, v in (("output", args.output), ("davis_root", args.davis_root)) if v is not None}
    overrides.update(parse_settings(args.set or []))
    config = load_train_config(args.config, **overrides)
    if {"flow", "joint"} & set(config.phases):
        opencv("the flow phase's DIS teacher")
    trainer = OfflineTrainer(config, resume=args.resume)
    # a scheduler's stop or `timeout` (SIGTERM) ends a run as Ctrl-C does: resumable, not lost
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        final = trainer.run(progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"segflow: stopped; a resumable state is in {trainer.state_path} (add --resume)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if trainer.rank == 0:
        print(final)
    return 0
