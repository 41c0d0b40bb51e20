"""Turn a finished offline training, one run or a chain of stages, into the shipped files.

    python tools/export_weights.py runs/small_1_flow runs/small_2_seg

writes napari_segflow/weights/small.pt (float16, strict checkpoint: the last stage's final.pt with the metadata
of every stage), napari_segflow/weights/small_curve.csv (the compact training curve of all stages, steps counted
on from one stage to the next, the stage as the "round") and docs/training_curve.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_segflow.checkpoint import load_checkpoint, save_checkpoint
from napari_segflow.evaluation.curves import compact_curve, plot_training_curve, read_metrics, write_curve_csv

ROOT = Path(__file__).resolve().parents[1]


def chained_records(runs: list[Path]) -> list[dict]:
    """The stages' metrics one after the other: global steps continue, the stage index stands as the round."""
    records, offset = [], 0
    for stage, run in enumerate(runs):
        stage_records = read_metrics(run / "metrics.jsonl")
        records += [{**r, "global_step": r["global_step"] + offset, "round": stage} for r in stage_records]
        offset += max((r["global_step"] for r in stage_records), default=0)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+",
                        help="the output folders (final.pt, metrics.jsonl) of the stages, in order")
    parser.add_argument("--name", default="small")
    args = parser.parse_args()
    net, metadata = load_checkpoint(args.runs[-1] / "final.pt")
    if len(args.runs) > 1:
        metadata = {**metadata, "stages": [load_checkpoint(run / "final.pt")[1] for run in args.runs]}
    weights = ROOT / "napari_segflow" / "weights"
    target = save_checkpoint(net, weights / f"{args.name}.pt", metadata=metadata, half=True)
    rows = compact_curve(chained_records(args.runs))
    write_curve_csv(rows, weights / f"{args.name}_curve.csv")
    (ROOT / "docs").mkdir(exist_ok=True)
    title = f"Offline training of '{args.name}'" + (f" ({len(args.runs)} stages)" if len(args.runs) > 1 else "")
    plot_training_curve(rows, ROOT / "docs" / "training_curve.png", title=title)
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), curve and figure written")


if __name__ == "__main__":
    main()
