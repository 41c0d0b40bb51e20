"""napari sample data: the bear clip with its first-frame mask, as an Image and a Labels layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_segflow.data.io import read_annotation

#: The clip and its masks (see sample_data/README.md), shipped inside the package.
SAMPLE_CLIP = Path(__file__).parent / "sample_data" / "bear"


def bear() -> list[tuple]:
    from napari_segflow._reader import video_layer_data

    frames, meta, kind = video_layer_data(SAMPLE_CLIP / "bear.mp4")
    annotation = np.zeros(frames.shape[:3], np.uint8)
    annotation[0] = read_annotation(SAMPLE_CLIP / "first_frame_mask.png", frames.shape[1:])
    return [(frames, meta, kind), (annotation, {"name": "annotation"}, "labels")]
