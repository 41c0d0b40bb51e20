"""Turn a finished offline run into the shipped files.

    python tools/export_weights.py runs/offline_small

writes napari_segflow/weights/small.pt (float16, strict checkpoint with the run's metadata),
napari_segflow/weights/small_curve.csv (the compact training curve) and docs/training_curve.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_segflow.checkpoint import load_checkpoint, save_checkpoint
from napari_segflow.evaluation.curves import compact_curve, plot_training_curve, read_metrics, write_curve_csv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run's output folder (holds final.pt and metrics.jsonl)")
    parser.add_argument("--name", default="small")
    args = parser.parse_args()
    net, metadata = load_checkpoint(args.run / "final.pt")
    weights = ROOT / "napari_segflow" / "weights"
    target = save_checkpoint(net, weights / f"{args.name}.pt", metadata=metadata, half=True)
    rows = compact_curve(read_metrics(args.run / "metrics.jsonl"))
    write_curve_csv(rows, weights / f"{args.name}_curve.csv")
    (ROOT / "docs").mkdir(exist_ok=True)
    plot_training_curve(rows, ROOT / "docs" / "training_curve.png", title=f"Offline training of '{args.name}'")
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), curve and figure written")


if __name__ == "__main__":
    main()
