"""Classical peers measured beside SegFlow: the first-frame mask carried along by optical flow.

For each frame t after the first, the backward flow t -> t-1 tells where each pixel came from; the mask
of t-1 is sampled there (nearest neighbour, so label ids survive). Needs OpenCV (the ``bench`` extra)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from napari_segflow.errors import SegFlowError
from napari_segflow.opencv import opencv

METHODS = ("dis", "farneback")


def optical_flow(first: np.ndarray, second: np.ndarray, method: str = "dis") -> np.ndarray:
    """(H, W, 2) flow first -> second of two (H, W, 3) uint8 frames."""
    cv2 = opencv("the classical peers")
    a = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(second, cv2.COLOR_RGB2GRAY)
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)
    raise SegFlowError(f"unknown flow method {method!r}; choose one of {', '.join(METHODS)}")


def warp_labels(labels: np.ndarray, backward_flow: np.ndarray) -> np.ndarray:
    """labels of frame t-1 carried to frame t by the flow t -> t-1."""
    cv2 = opencv("the classical peers")
    height, width = labels.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = xs + backward_flow[..., 0]
    map_y = ys + backward_flow[..., 1]
    return cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def propagate_by_flow(
    frames, first_labels: np.ndarray, order: list[int], method: str = "dis", working_size: tuple[int, int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, labels) along ``order``, starting with ``first_labels`` at ``order[0]``. With
    ``working_size`` (height, width) the flow is estimated and the labels carried at that size, and each
    frame's labels are brought back to the frames' size (as SegFlow works at its working resolution)."""
    cv2 = opencv("the classical peers")
    labels = np.asarray(first_labels, np.uint8)
    full_size = labels.shape

    def prepared(frame: np.ndarray) -> np.ndarray:
        if working_size is None or tuple(working_size) == full_size:
            return frame
        return cv2.resize(frame, (working_size[1], working_size[0]), interpolation=cv2.INTER_AREA)

    def at_full_size(small: np.ndarray) -> np.ndarray:
        if small.shape == full_size:
            return small
        return cv2.resize(small, (full_size[1], full_size[0]), interpolation=cv2.INTER_NEAREST)

    previous = prepared(frames[order[0]])
    yield order[0], labels
    if previous.shape[:2] != full_size:
        labels = cv2.resize(labels, (previous.shape[1], previous.shape[0]), interpolation=cv2.INTER_NEAREST)
    for index in order[1:]:
        current = prepared(frames[index])
        labels = warp_labels(labels, optical_flow(current, previous, method))
        previous = current
        yield index, at_full_size(labels)
