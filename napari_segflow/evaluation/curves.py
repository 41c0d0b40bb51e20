"""Training curves from a run's metrics log (JSON lines), drawn like SegFlow's Fig. 3: segmentation
accuracy and flow loss over iterations, with the rounds and phases marked."""

from __future__ import annotations

import csv
import json

import numpy as np

CURVE_COLUMNS = ("global_step", "round", "phase", "kind", "seg_iou", "flow_loss", "val_iou", "val_epe")


def read_metrics(path) -> list[dict]:
    """A run's records in step order. A resumed run repeats the steps logged after its last saved state; the
    later records (the run that went on) replace the earlier ones."""
    with open(path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    latest = {(r.get("kind"), r.get("global_step")): position for position, r in enumerate(records)}
    return [r for position, r in enumerate(records) if latest[(r.get("kind"), r.get("global_step"))] == position]


def compact_curve(records: list[dict], every: int = 25) -> list[dict]:
    """Training records averaged over blocks of ``every`` steps per phase, plus every validation record."""
    rows: list[dict] = []
    block: list[dict] = []

    def flush():
        if not block:
            return
        ious = [r["iou"] for r in block if "iou" in r]
        flows = [r["flow_loss"] for r in block if "flow_loss" in r]
        rows.append({
            "global_step": block[-1]["global_step"], "round": block[-1]["round"], "phase": block[-1]["phase"],
            "kind": "train", "seg_iou": float(np.mean(ious)) if ious else "",
            "flow_loss": float(np.mean(flows)) if flows else "", "val_iou": "", "val_epe": "",
        })
        block.clear()

    for record in records:
        if record["kind"] == "validation":
            flush()
            rows.append({
                "global_step": record["global_step"], "round": record["round"], "phase": record["phase"],
                "kind": "validation", "seg_iou": "", "flow_loss": "",
                "val_iou": record.get("val_iou", ""), "val_epe": record.get("val_epe", ""),
            })
            continue
        if block and (block[-1]["phase"] != record["phase"] or len(block) >= every):
            flush()
        block.append(record)
    flush()
    return rows


def write_curve_csv(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_curve_csv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def plot_training_curve(rows: list[dict], path=None, title: str = "Offline training"):
    """Two panels: segmentation IoU (training, smoothed; validation on held-out real frames) and flow
    loss (training) with validation EPE; phase changes as vertical lines, rounds labelled. Returns the figure."""
    import matplotlib

    matplotlib.use("Agg") if path is not None else None
    import matplotlib.pyplot as plt

    def series(kind, key):
        """(N, 2) points; a NaN row between phases so lines do not bridge them."""
        points, phase = [], None
        for r in rows:
            if r["kind"] != kind or r[key] in ("", None):
                continue
            if phase is not None and (r["round"], r["phase"]) != phase:
                points.append((np.nan, np.nan))
            phase = (r["round"], r["phase"])
            points.append((int(r["global_step"]), float(r[key])))
        return np.array(points, dtype=float).reshape(-1, 2)

    figure, (seg_axis, flow_axis) = plt.subplots(1, 2, figsize=(11, 3.6))
    for axis, (train_key, val_key, ylabel) in zip(
        (seg_axis, flow_axis),
        (("seg_iou", "val_iou", "segmentation IoU"), ("flow_loss", "val_epe", "flow loss / EPE (px)")),
    ):
        train = series("train", train_key)
        validation = series("validation", val_key)
        if len(train):
            axis.plot(train[:, 0], train[:, 1], lw=1, alpha=0.7, label=f"training {train_key.replace('_', ' ')}")
        if len(validation):
            axis.plot(validation[:, 0], validation[:, 1], "o-", ms=3, label=f"validation {val_key.replace('_', ' ')}")
        if axis is flow_axis:
            axis.set_yscale("log")  # an early unstable step can be 100x the rest
        _mark_phases(axis, rows)
        axis.set_xlabel("iteration")
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=8, loc="best")
    figure.suptitle(title)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure


def _mark_phases(axis, rows: list[dict]) -> None:
    previous = None
    for row in rows:
        key = (row["round"], row["phase"])
        if key != previous:
            step = int(row["global_step"])
            axis.axvline(step, color="grey", lw=0.6, ls="--")
            axis.text(step, 1.0, f" r{int(row['round']) + 1} {row['phase']}", transform=axis.get_xaxis_transform(),
                      fontsize=7, va="top", color="grey")
            previous = key
