"""napari writers for a Labels layer of a video: one indexed PNG per frame in a folder, or one TIFF."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from napari_segflow._reader import FRAME_NAMES
from napari_segflow.data.io import checked_labels, write_label_png, write_label_pngs, write_label_tiff
from napari_segflow.errors import SegFlowError


def write_labels_tiff(path: str, data, meta: dict) -> list[str]:
    """The whole label stack as one uint8 TIFF (written beside and renamed into place)."""
    write_label_tiff(np.asarray(data), path)
    return [str(path)]


def write_labels_pngs(path: str, data, meta: dict) -> list[str]:
    """A (T, H, W) label stack as a folder of indexed PNGs named like the video's frames (00000.png...
    otherwise); a single (H, W) frame as one PNG. The folder appears whole or not at all."""
    labels = np.asarray(data)
    target = Path(path)
    if labels.ndim == 2:
        target = target if target.suffix.lower() == ".png" else target.with_suffix(".png")
        write_label_png(labels, target)
        return [str(target)]
    if labels.ndim != 3:
        raise SegFlowError(f"{target}: a label stack must be (frames, height, width), got shape {labels.shape}")
    if target.suffix.lower() == ".png":
        target = target.with_suffix("")
    labels = checked_labels(labels, str(target))  # named as the user named it, not as the hidden staging folder
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SegFlowError(f"{target}: exists and is not an empty folder; choose a new folder name")
    names = (meta.get("metadata") or {}).get(FRAME_NAMES)
    if names is not None and len(names) != len(labels):
        names = None
    staging = target.with_name(f".{target.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_label_pngs(labels, staging, names)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [str(target)]
