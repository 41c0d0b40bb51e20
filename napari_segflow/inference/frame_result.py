"""What propagation gives for one frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_segflow.data.resolution import resize_flow


@dataclass
class FrameResult:
    """labels (H, W) uint8 object ids; probabilities (K+1, H, W) float16 (background first); working_flow
    (h, w, 2) float32, the flow from this frame to the next one in the direction of travel on the grid it was
    computed on, in frame pixels (``flow`` resizes it to the frame's (H, W, 2)). ``final`` is False for the first
    sweep of a two-way run, whose result the second sweep replaces. ``attention``, 0 or more: how much the frame
    deserves a look, comparable within a run (inference/attention.py)."""

    index: int
    labels: np.ndarray
    probabilities: np.ndarray
    working_flow: np.ndarray
    final: bool = True
    attention: float = 0.0

    @property
    def flow(self) -> np.ndarray:
        return resize_flow(self.working_flow, self.labels.shape)
