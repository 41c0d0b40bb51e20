"""Turn a finished offline training, one run or a chain of stages, into the shipped files.

    python tools/export_weights.py runs/small_1_flow runs/small_2_seg
    python tools/export_weights.py --on-top-of napari_segflow/weights/small.pt runs/small_6_augmented
    python tools/export_weights.py --on-top-of napari_segflow/weights/small.pt --snapshot 2000 runs/small_7_snapshots

writes napari_segflow/weights/small.pt (float16, strict checkpoint: the last stage's final.pt with the metadata
of every stage), napari_segflow/weights/small_curve.csv (the compact training curve of all stages, steps counted
on from one stage to the next, the stage as the "round") and docs/training_curve.png. With ``--on-top-of``, the
earlier stages are those of a shipped checkpoint (its stages' metadata, and its curve from the CSV beside it),
for a stage trained where the earlier stages' run folders are not. With ``--snapshot STEP``, the last stage's
weights are its snapshot of that step (``snapshot_every``), chosen by the fine-tuned masks on the validation
sequences, instead of its final.pt; its curve is the whole run's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_segflow.checkpoint import load_checkpoint, save_checkpoint
from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.curves import (compact_curve, plot_training_curve, read_curve_csv, read_metrics,
                                              write_curve_csv)

ROOT = Path(__file__).resolve().parents[1]


def chained_records(runs: list[Path], first_stage: int = 0, offset: int = 0) -> list[dict]:
    """The stages' metrics one after the other: global steps continue (from ``offset``), the stage index (from
    ``first_stage``) stands as the round."""
    records = []
    for stage, run in enumerate(runs, start=first_stage):
        stage_records = read_metrics(run / "metrics.jsonl")
        records += [{**r, "global_step": r["global_step"] + offset, "round": stage} for r in stage_records]
        offset += max((r["global_step"] for r in stage_records), default=0)
    return records


def earlier_stages(shipped: Path) -> tuple[list[dict], list[dict]]:
    """(the stages' metadata, the compact curve rows) of a shipped checkpoint and the curve CSV beside it."""
    curve = shipped.with_name(f"{shipped.stem}_curve.csv")
    if not curve.is_file():
        raise SegFlowError(f"--on-top-of {shipped}: its curve {curve} is not beside it")
    _, metadata = load_checkpoint(shipped)
    return metadata.get("stages", [metadata]), read_curve_csv(curve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+",
                        help="the output folders (final.pt, metrics.jsonl) of the stages, in order")
    parser.add_argument("--name", default="small")
    parser.add_argument("--on-top-of", type=Path,
                        help="a shipped checkpoint whose stages come before the runs given (read before writing)")
    parser.add_argument("--snapshot", type=int, metavar="STEP",
                        help="the last stage's weights from its snapshot of this step, not its final.pt")
    args = parser.parse_args()
    last = args.runs[-1] / "final.pt"
    if args.snapshot is not None:
        last = args.runs[-1] / "snapshots" / f"step_{args.snapshot:05d}.pt"
        if not last.is_file():
            raise SegFlowError(f"--snapshot {args.snapshot}: {last} does not exist")
    net, metadata = load_checkpoint(last)
    stages, rows = earlier_stages(args.on_top_of) if args.on_top_of else ([], [])
    stages += [load_checkpoint(run / "final.pt")[1] for run in args.runs[:-1]] + [metadata]
    if len(stages) > 1:
        metadata = {**metadata, "stages": stages}
    offset = max((int(row["global_step"]) for row in rows), default=0)
    rows += compact_curve(chained_records(args.runs, first_stage=len(stages) - len(args.runs), offset=offset))
    weights = ROOT / "napari_segflow" / "weights"
    target = save_checkpoint(net, weights / f"{args.name}.pt", metadata=metadata, half=True)
    write_curve_csv(rows, weights / f"{args.name}_curve.csv")
    (ROOT / "docs").mkdir(exist_ok=True)
    title = f"Offline training of '{args.name}'" + (f" ({len(stages)} stages)" if len(stages) > 1 else "")
    plot_training_curve(rows, ROOT / "docs" / "training_curve.png", title=title)
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), curve and figure written")


if __name__ == "__main__":
    main()
