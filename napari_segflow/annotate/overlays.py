"""What the optional output layers show: the session's confidence as a lazy grey video, and one frame's flow
as a sparse grid of arrows (napari Vectors data)."""

from __future__ import annotations

import numpy as np

from napari_segflow.data.io import FrameStack

#: Pixels between two arrows of the flow grid.
ARROW_SPACING = 24


class ConfidenceFrames(FrameStack):
    """(T, H, W) float32 in [0, 1]: each frame's confidence from the session folder (0 where there is none yet),
    read when the viewer asks for the frame, so a long video costs no memory."""

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, session) -> None:
        self.session = session
        self.shape = tuple(session.frames.shape[:3])

    def frame(self, index: int) -> np.ndarray:
        confidence = self.session.confidence(index % self.shape[0])
        return confidence if confidence is not None else np.zeros(self.shape[1:], np.float32)


def flow_arrows(flow: np.ndarray | None, spacing: int = ARROW_SPACING) -> np.ndarray:
    """(H, W, 2) flow (x, y) in pixels -> (N, 2, 2) napari vectors [[row, column], [d_row, d_column]] on a grid
    every ``spacing`` pixels (centred); none for no flow."""
    if flow is None:
        return np.zeros((0, 2, 2), np.float32)
    height, width = flow.shape[:2]
    rows = np.arange(spacing // 2, height, spacing)
    columns = np.arange(spacing // 2, width, spacing)
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    starts = np.stack([grid_rows.ravel(), grid_columns.ravel()], axis=1).astype(np.float32)
    sampled = flow[grid_rows.ravel(), grid_columns.ravel()]
    directions = np.stack([sampled[:, 1], sampled[:, 0]], axis=1).astype(np.float32)
    return np.stack([starts, directions], axis=1)
