"""A first mask from a box or a few strokes, to accept or touch up before fine-tuning.

GrabCut's energy, solved exactly by a minimum cut (``graph_cut.py``), with more evidence for the object per pixel
(as log-odds) than colour alone:

- the network's own sense of it: the generic network segments the frame with the box as its mask prior (it was
  trained to correct deformed, shifted, grown and shrunk priors, so a box is a rough prior it can tighten), once
  on the whole frame and once zoomed on the box;
- the user's strokes: fixed on their pixels, and pulling their surroundings their way, fading with distance;
- colour: Gaussian mixtures of the object's and the background's colours (``colour_model.py``; the background's
  from the whole frame outside the box and the box's pixels not in the current mask), re-fitted from each
  round's mask as GrabCut does;
- motion, when a neighbouring frame of the video is given with a box: the network's flow to it, explained by two
  affine motion models, the object's and the background's (weighted as the colour models are, re-fitted each
  round). Where the object moves as its background does, both models explain it alike and motion says nothing.

Neighbours that disagree pay GrabCut's contrast-sensitive cost, so the mask follows the image's edges; outside the
box is background. No extra weights. The settings below were chosen on the validation sequences' frames (README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.colour_model import ColourMixture
from napari_segflow.inference.graph_cut import contrast_links, min_cut
from napari_segflow.model.prior import prior_from_labels
from napari_segflow.model.segflow import SegFlowNet

#: colour mixtures' components (GrabCut's 5) and the most rounds of re-fitting them and cutting again
COLOUR_COMPONENTS = 5
ROUNDS = 5
#: GrabCut's smoothness (its gamma: the cost of a cut between neighbours of alike colours); 50 in GrabCut, where
#: colour is the only evidence
SMOOTHNESS = 25.0
#: a stroke's pull on the log-odds near it, and how far it reaches (a share of the window's long side)
STROKE_PULL = 4.0
STROKE_REACH = 0.05
#: with strokes and no box, far from every stroke a pixel leans to the background by this much
STROKES_ONLY_LEAN = -2.0
#: the background's colour model sees at most this many of the pixels outside the box (evenly strided)
BACKGROUND_SAMPLES = 100_000
#: a window of more pixels is cut on a smaller grid and its mask scaled back (a minimum cut's time grows faster
#: than its pixels: 0.3 s a round at 80,000, 3 s at 400,000 on two cores)
MAX_CUT_PIXELS = 120_000
#: the network's second look: the box grown by this share of its size on every side
NETWORK_CONTEXT = 1.0
#: the network's log-odds count this much: given a box as its prior it is overconfident (a logistic fit of the
#: true masks on its log-odds inside the validation frames' boxes gives 0.30), and 0.5 made the best masks there
NETWORK_WEIGHT = 0.5
#: the most log-odds motion alone may lend a pixel, and the least spread (px) a motion model is granted
MOTION_CLIP = 4.0
MOTION_SPREAD = 0.25


@dataclass(frozen=True)
class Box:
    """A rectangle in frame pixels: columns x0..x1, rows y0..y1 (x1, y1 exclusive)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def clipped(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) as whole pixels inside a frame of ``shape`` (height, width); a box that has no area
        or lies outside the frame is a SegFlowError."""
        height, width = shape
        if not all(np.isfinite([self.x0, self.y0, self.x1, self.y1])):
            raise SegFlowError(f"box {self.describe()}: its corners must be numbers")
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise SegFlowError(f"box {self.describe()} has no area: x1 must exceed x0 and y1 exceed y0")
        x0, y0 = max(0, int(np.floor(self.x0))), max(0, int(np.floor(self.y0)))
        x1, y1 = min(width, int(np.ceil(self.x1))), min(height, int(np.ceil(self.y1)))
        if x1 <= x0 or y1 <= y0:
            raise SegFlowError(f"box {self.describe()} lies outside the {width}x{height} frame")
        if (x1 - x0) < 2 or (y1 - y0) < 2:
            raise SegFlowError(f"box {self.describe()} is too small: at least 2 pixels each way inside the frame")
        return x0, y0, x1, y1

    def describe(self) -> str:
        return f"({self.x0:g}, {self.y0:g})-({self.x1:g}, {self.y1:g})"


def neighbour_index(index: int, count: int) -> int | None:
    """The frame whose motion the first mask of frame ``index`` of ``count`` reads: the next one, the previous one
    at the video's end, None for a single image."""
    if index + 1 < count:
        return index + 1
    return index - 1 if index > 0 else None


def network_foreground(net: SegFlowNet, frame: np.ndarray, box_mask: np.ndarray,
                       long_side: int = DEFAULT_LONG_SIDE) -> np.ndarray:
    """(H, W) float32: the generic network's object probability on ``frame`` (H, W, 3) uint8 with ``box_mask``
    (H, W) bool as its prior (the frame paired with itself: no motion)."""
    geometry = WorkingResolution(*frame.shape[:2], long_side)
    device = next(net.parameters()).device  # a session's network may sit on a GPU
    image = geometry.frames_to_network(frame).to(device)
    with torch.no_grad():
        prior = prior_from_labels(geometry.labels_to_network(box_mask.astype(np.uint8)), 2).to(device)
        logits = net.eval().step(image, image, prior=prior if net.config.mask_prior else None).logits
        return torch.softmax(geometry.logits_to_frame(logits.float().cpu()), 1)[0, 1].numpy()


def _network_log_odds(net: SegFlowNet, frame: np.ndarray, inside: np.ndarray, box: tuple[int, int, int, int],
                      long_side: int) -> np.ndarray:
    """The network's log-odds over the frame, weighted: seen whole, and seen in a window around the box at its
    working size (a small object seen large), averaged (on the validation frames, either view alone did worse)."""
    x0, y0, x1, y1 = box
    height, width = inside.shape
    margin = round(NETWORK_CONTEXT * max(x1 - x0, y1 - y0))
    window = (slice(max(0, y0 - margin), min(height, y1 + margin)), slice(max(0, x0 - margin), min(width, x1 + margin)))
    whole = network_foreground(net, frame, inside, long_side)
    zoomed = np.zeros(inside.shape, np.float32)
    zoomed[window] = network_foreground(net, frame[window], inside[window], long_side)
    return NETWORK_WEIGHT * np.mean([_log_odds(view) for view in (whole, zoomed)], axis=0)


def _log_odds(probability: np.ndarray) -> np.ndarray:
    probability = np.clip(probability, 1e-3, 1 - 1e-3)
    return np.log(probability / (1 - probability))


def _colour_frame(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise SegFlowError(f"{name} must be (height, width) grey or (height, width, 3) colour, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise SegFlowError(f"{name} must be 8-bit (uint8), got {frame.dtype}")
    return frame


def first_mask(frame: np.ndarray, box: Box | None = None, foreground: np.ndarray | None = None,
               background: np.ndarray | None = None, net: SegFlowNet | None = None,
               long_side: int = DEFAULT_LONG_SIDE, neighbour: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: the object in ``frame`` (H, W, 3) or (H, W) uint8, from a ``box`` and/or strokes (``foreground``,
    ``background``: (H, W) bool, the pixels the user painted as object / as background). Without a box both kinds
    of strokes are needed; ``net`` (the generic network) adds its sense of the object inside a box, and with a
    ``neighbour`` (a nearby frame of the same video, the next one best) the object's motion against its
    background."""
    frame = _colour_frame(frame, "frame")
    shape = frame.shape[:2]
    if neighbour is not None:
        neighbour = _colour_frame(neighbour, "neighbouring frame")
        if neighbour.shape != frame.shape:
            raise SegFlowError(f"the neighbouring frame is {neighbour.shape[1]}x{neighbour.shape[0]}, the frame "
                               f"{shape[1]}x{shape[0]}")
    strokes = {}
    for name, stroke in (("object strokes", foreground), ("background strokes", background)):
        if stroke is None:
            strokes[name] = np.zeros(shape, bool)
            continue
        stroke = np.asarray(stroke, bool)
        if stroke.shape != shape:
            raise SegFlowError(f"{name} are {stroke.shape[1]}x{stroke.shape[0]}, the frame {shape[1]}x{shape[0]}")
        strokes[name] = stroke
    foreground, background = strokes["object strokes"], strokes["background strokes"]
    flow = None  # read with a box only: the band outside it is the background's motion
    if (foreground & background).any():
        raise SegFlowError("object and background strokes cross: a pixel cannot be both")
    if box is None:
        if not foreground.any() or not background.any():
            missing = "object" if not foreground.any() else "background"
            raise SegFlowError(f"no {missing} strokes: without a box, paint at least one object stroke and one "
                               "background stroke (or draw a box around the object)")
        inside = np.ones(shape, bool)
        # no box to start from: the strokes alone say where the object is; far from them, most likely not there
        log_odds = np.full(shape, STROKES_ONLY_LEAN)
        window = (slice(0, shape[0]), slice(0, shape[1]))
    else:
        x0, y0, x1, y1 = box.clipped(shape)
        inside = np.zeros(shape, bool)
        inside[y0:y1, x0:x1] = True
        log_odds = None
        # the cut runs on the box and a ring of one pixel around it, fixed as background
        window = (slice(max(0, y0 - 1), min(shape[0], y1 + 1)), slice(max(0, x0 - 1), min(shape[1], x1 + 1)))
        if net is not None:
            log_odds = _network_log_odds(net, frame, inside, (x0, y0, x1, y1), long_side)
            if neighbour is not None:
                flow = _network_flow(net, frame, neighbour)[window]
    colours = frame.astype(np.float64) / 255
    outside = ~inside | background
    outside_colours = colours[outside][:: max(1, int(outside.sum()) // BACKGROUND_SAMPLES)]
    window_shape = inside[window].shape
    scale = min(1.0, float(np.sqrt(MAX_CUT_PIXELS / (window_shape[0] * window_shape[1]))))
    reduced = _Reduction(window_shape, scale)
    settled = _settle(reduced.colours(colours[window]), outside_colours, reduced.region(inside[window]),
                      None if log_odds is None else reduced.values(log_odds[window]),
                      reduced.strokes(foreground[window]), reduced.strokes(background[window]),
                      None if flow is None else reduced.values(flow) * scale)
    mask = np.zeros(shape, bool)
    mask[window] = reduced.restored(settled) & inside[window]
    return mask


@dataclass(frozen=True)
class _Reduction:
    """A large window's cut runs on a smaller grid (``scale`` < 1; 1 changes nothing): its inputs brought down,
    the mask brought back up."""

    shape: tuple[int, int]
    scale: float

    @property
    def reduced_shape(self) -> tuple[int, int]:
        return tuple(max(2, round(side * self.scale)) for side in self.shape)

    def _resized(self, values: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
        kwargs = {} if mode == "area" else {"align_corners": False}
        tensor = torch.nn.functional.interpolate(tensor, size=size, mode=mode, **kwargs)[0]
        return (tensor[0] if values.ndim == 2 else tensor.permute(1, 2, 0)).numpy()

    def colours(self, colours: np.ndarray) -> np.ndarray:
        return colours if self.scale == 1 else self._resized(colours, self.reduced_shape, "area")

    def values(self, values: np.ndarray) -> np.ndarray:
        return values if self.scale == 1 else self._resized(values, self.reduced_shape, "bilinear")

    def region(self, region: np.ndarray) -> np.ndarray:
        return region if self.scale == 1 else self._resized(region, self.reduced_shape, "area") > 0.5

    def strokes(self, stroke: np.ndarray) -> np.ndarray:
        """A stroke keeps every reduced pixel it touches (a thin line would otherwise vanish)."""
        return stroke if self.scale == 1 else self._resized(stroke, self.reduced_shape, "area") > 0

    def restored(self, mask: np.ndarray) -> np.ndarray:
        return mask if self.scale == 1 else self._resized(mask, self.shape, "bilinear") > 0.5


def _network_flow(net: SegFlowNet, frame: np.ndarray, neighbour: np.ndarray) -> np.ndarray:
    from napari_segflow.inference.pair_flow import segflow_pair_flow

    return segflow_pair_flow(net, frame, neighbour, device=next(net.parameters()).device)


def _motion_log_odds(flow: np.ndarray, object_weight: np.ndarray, background_weight: np.ndarray) -> np.ndarray:
    """Per pixel log p(flow | object) / p(flow | background): each an affine motion model (weighted least squares)
    with isotropic Gaussian residuals of its own weighted spread."""
    height, width = flow.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width]
    positions = np.stack([columns.ravel() / width, rows.ravel() / height, np.ones(height * width)], 1)
    vectors = flow.reshape(-1, 2).astype(np.float64)
    log_likelihoods = []
    for weight in (object_weight.ravel(), background_weight.ravel()):
        root = np.sqrt(weight)[:, None]
        model = np.linalg.lstsq(positions * root, vectors * root, rcond=None)[0]
        residual = ((vectors - positions @ model) ** 2).sum(1)
        variance = max((weight * residual).sum() / max(2 * weight.sum(), 1e-6), MOTION_SPREAD**2)
        log_likelihoods.append(-residual / (2 * variance) - np.log(variance))
    return (log_likelihoods[0] - log_likelihoods[1]).reshape(height, width)


def _stroke_pull(foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Log-odds a stroke lends its surroundings, fading with the distance from it (a stroke says "this part",
    not only "these pixels")."""
    from scipy.ndimage import distance_transform_edt

    reach = STROKE_REACH * max(foreground.shape)
    pull = np.zeros(foreground.shape)
    for stroke, sign in ((foreground, 1.0), (background, -1.0)):
        if stroke.any():
            pull += sign * STROKE_PULL * np.exp(-distance_transform_edt(~stroke) / reach)
    return pull


def _settle(colours: np.ndarray, outside_colours: np.ndarray, inside: np.ndarray, prior_log_odds: np.ndarray | None,
            foreground: np.ndarray, background: np.ndarray, flow: np.ndarray | None = None) -> np.ndarray:
    """The mask in a window of colours (h, w, 3) in [0, 1] by GrabCut's rounds: ``outside_colours`` (N, 3) are
    background colours from outside the box, ``prior_log_odds`` the evidence before colour (the network's, or the
    strokes-only lean), None for a box without a network; ``flow`` (h, w, 2) the window's motion to a
    neighbouring frame, or None."""
    fixed_background = background | ~inside
    fixed_object = foreground & inside
    links = contrast_links(colours, SMOOTHNESS)
    evidence = _stroke_pull(foreground, background)
    if prior_log_odds is not None:
        evidence = evidence + prior_log_odds
    # GrabCut's start is all of the box; with evidence before colour, where that evidence says object
    estimate = inside & ~fixed_background
    if prior_log_odds is not None and (evidence[estimate] > 0).any():
        estimate &= evidence > 0
    estimate |= fixed_object
    pixels = colours.reshape(-1, 3)
    models = None
    for _ in range(ROUNDS):
        object_colours = pixels[estimate.ravel()]
        background_colours = np.concatenate([outside_colours, pixels[(inside & ~estimate).ravel()]])
        if len(object_colours) < 2 or len(background_colours) < 2:
            break
        if models is None:
            models = (ColourMixture(object_colours, COLOUR_COMPONENTS),
                      ColourMixture(background_colours, COLOUR_COMPONENTS))
        else:
            models[0].refit(object_colours)
            models[1].refit(background_colours)
        colour = (models[0].log_likelihood(pixels) - models[1].log_likelihood(pixels)).reshape(inside.shape)
        round_evidence = evidence + colour
        if flow is not None:
            object_weight = estimate.astype(np.float64)
            round_evidence += np.clip(_motion_log_odds(flow, object_weight, 1 - object_weight),
                                      -MOTION_CLIP, MOTION_CLIP)
        cut = min_cut(round_evidence, links, fixed_object, fixed_background)
        if (cut == estimate).all():
            break
        estimate = cut
    return estimate
