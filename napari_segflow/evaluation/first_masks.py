"""The first-mask benchmark behind ``segflow bench --part box``: masks made from a box (and a stroke or two)
against the true first-frame masks, and whole runs started from them, beside OpenCV's GrabCut from the same box.

The box is the true mask's bounding box, as a careful user would draw it. A simulated user then adds strokes one
at a time where the mask is most wrong: along the largest wrong region's skeleton (a scribble along it, as the DAVIS
interactive track simulates), on the object if the mask missed it there, on the background if the mask spilled
there. The peer gets its strokes the same way, where its own mask is most wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from napari_segflow.evaluation.grabcut import grabcut_mask
from napari_segflow.evaluation.metrics import region_similarity, score_sequence
from napari_segflow.inference.first_mask import Box, first_mask, neighbour_index
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.session import SessionSettings, VideoSession


def bounding_box(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def simulated_stroke(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(object stroke, background stroke), (H, W) bool each, where a user would correct ``prediction`` first:
    the part of the scribble on the object is an object stroke, the rest a background one. Empty strokes when the
    prediction is already right."""
    wrong = prediction != truth
    regions, count = ndimage.label(wrong)
    if count == 0:
        return np.zeros(truth.shape, bool), np.zeros(truth.shape, bool)
    sizes = ndimage.sum_labels(wrong, regions, index=np.arange(1, count + 1))
    largest = regions == 1 + int(np.argmax(sizes))
    stroke = skeletonize(largest)
    return stroke & truth, stroke & ~truth


@dataclass
class FirstMaskResult:
    case: str
    iou: list[float] = field(default_factory=list)  # after 0, 1, 2... strokes
    grabcut_iou: list[float] = field(default_factory=list)  # the peer's, after as many strokes
    filled_box_iou: float = float("nan")
    seconds: float = float("nan")  # to make the box-only mask
    run_j: float = float("nan")
    run_f: float = float("nan")


def first_mask_ious(frame: np.ndarray, truth: np.ndarray, net, strokes: int = 2,
                    neighbour: np.ndarray | None = None) -> tuple[list[float], np.ndarray, float]:
    """IoU of the box-made mask and after each simulated stroke; the box-only mask and its seconds (``neighbour``:
    the video's next frame, whose motion the tool reads, or None)."""
    box = bounding_box(truth > 0)
    started = time.perf_counter()
    box_only = first_mask(frame, box, net=net, neighbour=neighbour)
    seconds = time.perf_counter() - started
    ious = _ious_after_strokes(box_only, truth, strokes, lambda foreground, background, previous: first_mask(
        frame, box, foreground, background, net=net, neighbour=neighbour))
    return ious, box_only, seconds


def grabcut_ious(frame: np.ndarray, truth: np.ndarray, strokes: int = 2) -> list[float]:
    """IoU of OpenCV GrabCut's mask from the box and after each simulated stroke on its own mask."""
    box = bounding_box(truth > 0)
    return _ious_after_strokes(grabcut_mask(frame, box), truth, strokes,
                               lambda foreground, background, previous: grabcut_mask(
                                   frame, box, foreground, background, previous=previous))


def _ious_after_strokes(mask: np.ndarray, truth: np.ndarray, strokes: int, remake) -> list[float]:
    """IoU of ``mask`` and of each mask after it: the simulated user adds a stroke where the last mask is most
    wrong, and ``remake(foreground, background, previous)`` makes the next one from all strokes so far."""
    truth = truth > 0
    ious = [region_similarity(mask, truth)]
    foreground = np.zeros(truth.shape, bool)
    background = np.zeros(truth.shape, bool)
    for _ in range(strokes):
        on_object, on_background = simulated_stroke(mask, truth)
        foreground |= on_object
        background |= on_background
        mask = remake(foreground, background, mask)
        ious.append(region_similarity(mask, truth))
    return ious


def benchmark_first_masks(sequences, net, weights, settings: SessionSettings | None, strokes: int = 2,
                          progress=None) -> list[FirstMaskResult]:
    """Per sequence: the first frame's box-made mask (IoU after 0..``strokes`` strokes) and, with ``settings``,
    the J and F of a whole session run started from the box-only mask."""
    results = []
    for sequence in sequences:
        truth = sequence.mask(0) > 0
        frame = sequence.frame(0)
        neighbour = neighbour_index(0, len(sequence))
        ious, mask, seconds = first_mask_ious(frame, truth, net, strokes,
                                              None if neighbour is None else sequence.frame(neighbour))
        filled = np.zeros(truth.shape, bool)
        box = bounding_box(truth)
        filled[int(box.y0):int(box.y1), int(box.x0):int(box.x1)] = True
        result = FirstMaskResult(sequence.name, ious, grabcut_ious(frame, truth, strokes),
                                 region_similarity(filled, truth), seconds)
        if settings is not None:
            truths = sequence.object_masks()
            with VideoSession(sequence.frames, weights=weights, settings=settings) as session:
                session.add_annotation(0, mask.astype(np.uint8))
                for _ in session.run():
                    pass
                scores = score_sequence(session.labels_volume(), truths, object_ids=[1])
            result.run_j, result.run_f = scores.j_mean, scores.f_mean
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def first_mask_table(results: list[FirstMaskResult]) -> str:
    strokes = len(results[0].iou) - 1
    steps = ["box"] + [f"box + {k} stroke{'s' if k > 1 else ''}" for k in range(1, strokes + 1)]
    lines = [f"| sequence | filled box IoU | IoU: {' | '.join(steps)} | GrabCut (OpenCV): {' | '.join(steps)} | "
             "seconds (box) | run from the box-made mask: J | F | J&F |",
             "|---|---:|" + "---:|" * 2 * (strokes + 1) + "---:|---:|---:|---:|"]
    rows = [(r.case, r.filled_box_iou, r.iou, r.grabcut_iou, r.seconds, r.run_j, r.run_f) for r in results]
    rows.append(("mean", float(np.mean([r.filled_box_iou for r in results])),
                 list(np.mean([r.iou for r in results], axis=0)),
                 list(np.mean([r.grabcut_iou for r in results], axis=0)),
                 float(np.mean([r.seconds for r in results])),
                 float(np.mean([r.run_j for r in results])), float(np.mean([r.run_f for r in results]))))
    for case, filled, ious, peer, seconds, j, f in rows:
        lines.append(f"| {case} | {filled:.3f} | " + " | ".join(f"{v:.3f}" for v in ious + peer)
                     + f" | {seconds:.1f} | {j:.3f} | {f:.3f} | {(j + f) / 2:.3f} |")
    mean_ours, mean_peer = rows[-1][2], rows[-1][3]
    lines.append("\nSegFlow box tool / GrabCut: IoU " + ", ".join(
        f"{a / b:.2f}x ({step})" for a, b, step in zip(mean_ours, mean_peer, steps) if b > 0))
    return "\n".join(lines)
