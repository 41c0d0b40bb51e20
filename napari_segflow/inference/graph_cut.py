"""A binary labelling of a pixel grid by minimum cut: each pixel's evidence for "object" against the cost of
neighbours that disagree, weighted by how alike their colours are (GrabCut's energy, solved exactly).

Energy of a labelling: the sum over object pixels of -evidence, plus, over 8-connected neighbours with different
labels, their link's weight. The links (``contrast_links``) are GrabCut's: smoothness / distance x
exp(-beta |colour difference|^2), with beta set from the image's mean contrast, so cuts prefer the image's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

#: energies are made integer capacities at this resolution; fixed pixels hold by this much
CAPACITY_SCALE = 100.0
FIXED_COST = 1e6


@dataclass(frozen=True)
class GridLinks:
    """Weights of the links of an (H, W) grid: to the right (H, W-1), down (H-1, W), down-right and down-left
    (H-1, W-1 each)."""

    right: np.ndarray
    down: np.ndarray
    down_right: np.ndarray
    down_left: np.ndarray


def contrast_links(colours: np.ndarray, smoothness: float) -> GridLinks:
    """GrabCut's contrast-sensitive links of (H, W, 3) colours in [0, 1]."""
    colours = colours * 255.0  # beta adapts to the contrast, so the scale only keeps the floats familiar
    differences = [((colours[:, 1:] - colours[:, :-1]) ** 2).sum(-1), ((colours[1:] - colours[:-1]) ** 2).sum(-1),
                   ((colours[1:, 1:] - colours[:-1, :-1]) ** 2).sum(-1),
                   ((colours[1:, :-1] - colours[:-1, 1:]) ** 2).sum(-1)]
    mean = np.mean(np.concatenate([d.ravel() for d in differences]))
    beta = 1 / (2 * mean) if mean > 0 else 0.0
    right, down, down_right, down_left = (smoothness / distance * np.exp(-beta * d)
                                          for d, distance in zip(differences, (1, 1, np.sqrt(2), np.sqrt(2))))
    return GridLinks(right, down, down_right, down_left)


def min_cut(evidence: np.ndarray, links: GridLinks, object_pixels: np.ndarray,
            background_pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool, True on the object: the labelling of least energy given per-pixel ``evidence`` (H, W) for the
    object (log-odds), ``links`` and the pixels whose labels are fixed (``object_pixels``, ``background_pixels``)."""
    height, width = evidence.shape
    count = height * width
    source, sink = count, count + 1
    index = np.arange(count).reshape(height, width)
    starts, ends, capacities = [], [], []
    for first, second, weight in ((index[:, :-1], index[:, 1:], links.right), (index[:-1], index[1:], links.down),
                                  (index[:-1, :-1], index[1:, 1:], links.down_right),
                                  (index[:-1, 1:], index[1:, :-1], links.down_left)):
        starts += [first.ravel(), second.ravel()]
        ends += [second.ravel(), first.ravel()]
        capacities += [weight.ravel(), weight.ravel()]
    # the source side is the object: cutting a pixel's source link (calling it background) costs its evidence for
    # the object, cutting its sink link the evidence against
    to_object = np.where(object_pixels, FIXED_COST, np.where(background_pixels, 0.0, np.maximum(evidence, 0)))
    to_background = np.where(background_pixels, FIXED_COST, np.where(object_pixels, 0.0, np.maximum(-evidence, 0)))
    starts += [np.full(count, source), index.ravel()]
    ends += [index.ravel(), np.full(count, sink)]
    capacities += [to_object.ravel(), to_background.ravel()]
    capacity = np.round(np.concatenate(capacities) * CAPACITY_SCALE).astype(np.int32)
    keep = capacity > 0
    graph = csr_matrix((capacity[keep], (np.concatenate(starts)[keep], np.concatenate(ends)[keep])),
                       shape=(count + 2, count + 2))
    graph.sum_duplicates()
    residual = (graph - maximum_flow(graph, source, sink, method="dinic").flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    on_source_side = np.zeros(count + 2, bool)
    on_source_side[breadth_first_order(residual, source, directed=True, return_predecessors=False)] = True
    return on_source_side[:count].reshape(height, width)
