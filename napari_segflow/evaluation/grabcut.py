"""The classical peer of the first-mask tool: OpenCV's GrabCut from the same box and strokes.

The box alone starts GrabCut from the rectangle; strokes re-run it from its previous mask, with the strokes'
pixels fixed (object or background) and the rest of the box as probable object or probable background as the
previous mask says. OpenCV's generator is reseeded before each call, so a run gives the same masks every time.
Needs OpenCV (the ``bench`` extra)."""

from __future__ import annotations

import numpy as np

from napari_segflow.opencv import opencv
from napari_segflow.inference.first_mask import Box

#: GrabCut's rounds, as in OpenCV's sample and the issue's measured peer
ITERATIONS = 5


def grabcut_mask(frame: np.ndarray, box: Box, foreground: np.ndarray | None = None,
                 background: np.ndarray | None = None, previous: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: GrabCut's object in ``frame`` (H, W, 3) uint8 RGB inside ``box``; with strokes (``foreground``,
    ``background``: (H, W) bool) it starts from ``previous`` (its last mask) instead of the rectangle."""
    cv2 = opencv("the GrabCut peer")
    x0, y0, x1, y1 = box.clipped(frame.shape[:2])
    image = np.ascontiguousarray(frame[..., ::-1])
    background_model, object_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)
    if previous is None:
        labels = np.zeros(frame.shape[:2], np.uint8)
        cv2.grabCut(image, labels, (x0, y0, x1 - x0, y1 - y0), background_model, object_model, ITERATIONS,
                    cv2.GC_INIT_WITH_RECT)
    else:
        inside = np.zeros(frame.shape[:2], bool)
        inside[y0:y1, x0:x1] = True
        labels = np.full(frame.shape[:2], cv2.GC_BGD, np.uint8)
        labels[inside] = np.where(previous[inside], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
        for stroke, label in ((foreground, cv2.GC_FGD), (background, cv2.GC_BGD)):
            if stroke is not None:
                labels[stroke & inside] = label
        probable_object = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        if not probable_object.any():
            return probable_object  # nothing left to fit an object's colours to
        cv2.grabCut(image, labels, None, background_model, object_model, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
