"""`segflow train`: offline training from a config file."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


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


def _check_new_output(output: Path) -> None:
    """A run without --resume starts from step 0: in a folder holding another run it would overwrite that run's
    resumable state and checkpoints and append to its log."""
    from napari_segflow.errors import SegFlowError

    left = [name for name in ("state.pt", "final.pt", "metrics.jsonl") if (output / name).exists()]
    if left:
        what_to_do = ("add --resume to go on with it, or name a new folder with --output" if "state.pt" in left
                      else "it cannot be resumed (no state.pt); name a new folder with --output, or move it away")
        raise SegFlowError(f"output {output} already holds a training run ({', '.join(left)}); {what_to_do}")


def _stop(signum, frame) -> None:
    # `timeout` signals the process group and a wrapper script may signal again: a second SIGTERM must not cut
    # short the saving of the state the first one asked for
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt  # the trainer saves a resumable state on its way out, as on Ctrl-C


def run_train(args: argparse.Namespace) -> int:
    from napari_segflow.training.offline import OfflineTrainer, load_train_config

    overrides = {k: v for k, v in (("output", args.output), ("davis_root", args.davis_root)) if v is not None}
    overrides.update(parse_settings(args.set or []))
    config = load_train_config(args.config, **overrides)
    if not args.resume:
        # checked by every process before any of them starts (torchrun's ranks meet when the trainer is made)
        _check_new_output(Path(config.output))
    trainer = OfflineTrainer(config)
    if args.resume:
        trainer.resume()
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
