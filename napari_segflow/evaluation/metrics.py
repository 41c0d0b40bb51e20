"""Segmentation and flow metrics with the DAVIS definitions.

J: region similarity, the IoU of two binary masks (1 when both are empty).
F: boundary F-measure; boundaries are one pixel thick, a predicted boundary pixel counts as correct
   when a ground-truth boundary pixel lies within ceil(0.008 x image diagonal) pixels, and vice versa.
EPE: mean end-point error of two flow fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_segflow.errors import SegFlowError

BOUNDARY_TOLERANCE = 0.008


def _binary_pair(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction).astype(bool), np.asarray(truth).astype(bool)
    if prediction.shape != truth.shape:
        raise SegFlowError(f"mask shapes differ: prediction {prediction.shape}, ground truth {truth.shape}")
    return prediction, truth


def region_similarity(prediction: np.ndarray, truth: np.ndarray) -> float:
    """J: |P and G| / |P or G| of two binary masks; 1.0 when both are empty."""
    prediction, truth = _binary_pair(prediction, truth)
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary: pixels whose value differs from their right, lower or lower-right neighbour
    (the image border counts as background only through those neighbours inside the image)."""
    mask = np.asarray(mask).astype(bool)
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    diagonal = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    diagonal[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ diagonal)
    # along the last row and column a neighbour outside the image is not a transition
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance(shape: tuple[int, int]) -> int:
    return int(math.ceil(BOUNDARY_TOLERANCE * math.hypot(*shape)))


def boundary_measure(prediction: np.ndarray, truth: np.ndarray) -> float:
    """F: harmonic mean of boundary precision and recall within the DAVIS tolerance."""
    prediction, truth = _binary_pair(prediction, truth)
    predicted_boundary, true_boundary = boundary_map(prediction), boundary_map(truth)
    tolerance = boundary_tolerance(prediction.shape)
    disk = _disk(tolerance)
    near_truth = ndimage.binary_dilation(true_boundary, disk)
    near_prediction = ndimage.binary_dilation(predicted_boundary, disk)
    predicted_count, true_count = predicted_boundary.sum(), true_boundary.sum()
    if predicted_count == 0 and true_count == 0:
        return 1.0
    if predicted_count == 0 or true_count == 0:
        return 0.0
    precision = (predicted_boundary & near_truth).sum() / predicted_count
    recall = (true_boundary & near_prediction).sum() / true_count
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _disk(radius: int) -> np.ndarray:
    ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xs**2 + ys**2 <= radius**2


def endpoint_error(flow: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean |flow - truth| over pixels (H, W, 2), or over ``valid`` ones."""
    flow, truth = np.asarray(flow, np.float64), np.asarray(truth, np.float64)
    if flow.shape != truth.shape or flow.shape[-1] != 2:
        raise SegFlowError(f"flow shapes differ or are not (H, W, 2): {flow.shape} vs {truth.shape}")
    error = np.linalg.norm(flow - truth, axis=-1)
    if valid is not None:
        error = error[np.asarray(valid, bool)]
    return float(error.mean()) if error.size else float("nan")


def spearman(values: list[float], other: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists; NaN when either is constant or too short."""
    from scipy.stats import spearmanr

    if len(values) < 3 or np.ptp(values) == 0 or np.ptp(other) == 0:
        return float("nan")
    return float(spearmanr(values, other).statistic)


@dataclass
class SequenceScores:
    """Per-object, per-frame J and F of one sequence, and their means.

    j[object_id] and f[object_id] list one value per evaluated frame; ``frames`` lists which.
    """

    frames: list[int]
    j: dict[int, list[float]] = field(default_factory=dict)
    f: dict[int, list[float]] = field(default_factory=dict)

    @property
    def j_mean(self) -> float:
        return float(np.mean([np.mean(v) for v in self.j.values()])) if self.j else float("nan")

    @property
    def f_mean(self) -> float:
        return float(np.mean([np.mean(v) for v in self.f.values()])) if self.f else float("nan")

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2


def score_sequence(
    predictions: np.ndarray, truths: np.ndarray, object_ids: list[int] | None = None, skip_first_last: bool = True
) -> SequenceScores:
    """J and F per object and frame of (T, H, W) label stacks. As the DAVIS toolkit does, the first
    frame (given to the method) and the last are left out unless ``skip_first_last`` is False."""
    predictions, truths = np.asarray(predictions), np.asarray(truths)
    if predictions.shape != truths.shape or predictions.ndim != 3:
        raise SegFlowError(
            "prediction and ground-truth stacks must both be (T, H, W) and equal: "
            f"{predictions.shape} vs {truths.shape}"
        )
    if object_ids is None:
        object_ids = sorted(int(i) for i in np.unique(truths) if i != 0)
    count = len(truths)
    frames = list(range(1, count - 1)) if skip_first_last and count > 2 else list(range(count))
    scores = SequenceScores(frames=frames)
    for object_id in object_ids:
        scores.j[object_id] = [region_similarity(predictions[t] == object_id, truths[t] == object_id) for t in frames]
        scores.f[object_id] = [boundary_measure(predictions[t] == object_id, truths[t] == object_id) for t in frames]
    return scores
