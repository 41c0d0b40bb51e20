"""Optical flow of one image pair at any size: estimated at a working resolution, scaled back to the images.

Images no larger than the working size are estimated as they are (padded to the network's multiple); larger
ones are scaled down so that their long side is ``long_side``, and the flow is resized back with its values
scaled to the images' pixels. The classical peers go through the same working size, so a comparison is fair.

By default the network's flow is the mean of three passes in one batch: the pair as it is, mirrored left-right
and mirrored upside down (each mirrored flow mirrored back). The branch's errors on mirrored inputs are partly its
own, so they average out; on the validation sequences' warped pairs (exact flow) the mean EPE fell 11% (1.10 to
0.98 px), on validation procedural pairs 10% (README). Propagation in a session keeps one pass: it has a frame
rate to hold.

``segflow flow`` also looks the other way (``two_way_pair_flow``): the second image's flow back to the first,
read where each pixel lands and negated, is a second estimate of the same motion, made from the other image's
features. Where the two agree (they undo each other within ``TWO_WAY_AGREEMENT`` working pixels) they are
averaged; elsewhere (occlusions, where one of them is wrong) the forward flow stays. On the validation pairs
the mean EPE fell another 7% (warped, 0.98 to 0.91 px) and 17% (procedural, 0.89 to 0.74) (README).

And it refines (``refined_pair_flow``): the second image is warped back by the flow found so far, so that what
is left to find is the residual motion, small and within the branch's reach even where the whole motion was not;
the two-way flow of the first image to the warped one is that residual, composed with the flow so far. A round
adds the branch's own error on small motions wherever there was nothing left to find, and on real motion that
cost as much as the round gained (validation, README), so each pixel keeps whichever flow, before or after the
round, matches the images better around it: the brightness and gradients of the first image against the second's
read at the flow's targets, summed over a ``FUSION_WINDOW`` square. ``REFINEMENT_ROUNDS`` was chosen on
validation pairs: exact-flow pairs warped from real frames, procedural pairs, and the validation sequences' real
motion labelled by the DIS teacher. Last, a ``MEDIAN_SIZE`` median filter of each flow component removes what
isolated outliers the pixel-wise choice leaves (the classical step after each warping level, after Sun, Roth and
Black's study of what makes flow accurate; on the same validation pairs 1-2% lower EPE on each set).

Then it polishes (``polished_flow``): ``POLISH_ROUNDS`` times, OpenCV's variational refinement (the energy DIS
ends with: brightness and gradient constancy with a smoothness term, solved from the flow it is given) followed
by the median again. The network finds the motion; the variational step settles its sub-pixel detail against the
images, which the branch's flow, upsampled from stride 4, cannot. Images larger than the working size are
polished at it, as they were estimated. On the validation pairs 8 rounds lowered the
EPE 22% (warped to 48 px), 15% (to 96 px), 63% (procedural) and 9% (real motion against the teacher) (README).
Working on a copy matters: OpenCV refines the array it is given in place.
"""

from __future__ import annotations

import numpy as np

from napari_segflow.data.resolution import NETWORK_MULTIPLE, WorkingResolution
from napari_segflow.errors import SegFlowError

#: Working long side of ``segflow flow``: the largest motions the branch learned (48 px on 256-wide crops) stay
#: within its reach for images up to about this size; the FlyingChairs examples (512x384) keep their size.
FLOW_LONG_SIDE = 512
#: how far (working pixels) the forward flow and the backward flow at its target may fail to undo each other
#: for the two to be averaged (chosen on the validation pairs among 0.5, 1, 2 and 4)
TWO_WAY_AGREEMENT = 4.0
#: residual rounds of ``segflow flow`` (chosen on the validation pairs among 0, 1 and 2)
REFINEMENT_ROUNDS = 1
#: side (pixels) of the square over which a flow's match with the images is summed when two are fused
FUSION_WINDOW = 9
#: side of the median filter over the final flow (chosen on the validation pairs among 3 and 5)
MEDIAN_SIZE = 5
#: rounds of variational refinement + median after the fusion (chosen on the validation pairs among 0, 1, 2, 3,
#: 5, 8, 12 and 20: 8 -> 20 gained at most 2% on any set for 2.5 times the time)
POLISH_ROUNDS = 8
#: OpenCV's variational refinement per round: fixed-point and SOR iterations (10 and 10 beat its 5 and 5 on every
#: validation set), smoothness weight (its default; 10 and 40 were no better on all sets)
VARIATIONAL_ITERATIONS = 10
VARIATIONAL_SMOOTHNESS = 20.0


def working_geometry(height: int, width: int, long_side: int = FLOW_LONG_SIDE) -> WorkingResolution:
    """Scale down only: an image whose long side is at most ``long_side`` keeps its size."""
    if long_side < NETWORK_MULTIPLE:
        raise SegFlowError(f"the working long side must be at least {NETWORK_MULTIPLE}, got {long_side}")
    return WorkingResolution(height, width, long_side=max(NETWORK_MULTIPLE, min(long_side, max(height, width))))


def check_pair(first: np.ndarray, second: np.ndarray, names: tuple[str, str] = ("image 1", "image 2")) -> None:
    if first.shape != second.shape:
        raise SegFlowError(
            f"{names[0]} is {first.shape[1]}x{first.shape[0]} but {names[1]} is {second.shape[1]}x{second.shape[0]}: "
            "the two images must have the same size"
        )


def segflow_pair_flow(net, first: np.ndarray, second: np.ndarray, long_side: int = FLOW_LONG_SIDE,
                      device="cpu", mirrored: bool = True) -> np.ndarray:
    """(H, W, 2) float32 flow first -> second of two (H, W, 3) uint8 images by the network's flow branch; with
    ``mirrored``, the mean of the pair's flow and its mirrored pairs' flows (see the module's docstring)."""
    import torch

    from napari_segflow.device import autocast

    check_pair(first, second)
    geometry = working_geometry(*first.shape[:2], long_side)
    device = torch.device(device)
    # (image axis mirrored, flow component that changes sign): none, left-right (u), upside down (v); each
    # mirrored pair is padded as the pair itself is, so every pass sees the image's content in the same place
    mirrors = [(None, None), (1, 0), (0, 1)] if mirrored else [(None, None)]
    pairs = [(first, second) if axis is None else (np.flip(first, axis), np.flip(second, axis)) for axis, _ in mirrors]
    images = geometry.frames_to_network(np.stack([image for pair in pairs for image in pair]), device)
    net.eval()
    with torch.no_grad(), autocast(device):
        flows = net.estimate_flow(images[0::2], images[1::2]).flow.float()
    flows = geometry.flow_to_frame(flows)  # (passes, 2, H, W)
    unmirrored = []
    for flow, (axis, component) in zip(flows, mirrors):
        if axis is not None:
            flow = flow.flip(axis + 1)
            flow[component] = -flow[component]
        unmirrored.append(flow)
    return torch.stack(unmirrored).mean(0).permute(1, 2, 0).cpu().numpy()


def two_way_pair_flow(net, first: np.ndarray, second: np.ndarray, long_side: int = FLOW_LONG_SIDE,
                      device="cpu") -> np.ndarray:
    """(H, W, 2) float32: ``segflow_pair_flow`` first -> second, averaged with the flow second -> first read at
    each pixel's target and negated, where the two agree (see the module's docstring)."""
    import torch

    from napari_segflow.model.warp import backward_warp

    forward = segflow_pair_flow(net, first, second, long_side, device)
    backward = segflow_pair_flow(net, second, first, long_side, device)
    as_tensor = lambda flow: torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None].float()
    sampled, inside = backward_warp(as_tensor(backward), as_tensor(forward))
    backward_at_target = sampled[0].permute(1, 2, 0).numpy()
    scale = max(first.shape[:2]) / max(working_geometry(*first.shape[:2], long_side).scaled)
    agree = inside[0, 0].numpy() & (np.linalg.norm(forward + backward_at_target, axis=-1) < TWO_WAY_AGREEMENT * scale)
    return np.where(agree[..., None], (forward - backward_at_target) / 2, forward).astype(np.float32)


def refined_pair_flow(net, first: np.ndarray, second: np.ndarray, long_side: int = FLOW_LONG_SIDE, device="cpu",
                      rounds: int = REFINEMENT_ROUNDS, polish_rounds: int = POLISH_ROUNDS) -> np.ndarray:
    """(H, W, 2) float32: ``two_way_pair_flow`` first -> second, then ``rounds`` times the two-way flow of the
    first image to the second warped back by the flow so far (the residual), composed with it and fused with the
    flow so far pixel by pixel, then median-filtered and polished ``polish_rounds`` times (see the module's
    docstring)."""
    if rounds < 0:
        raise SegFlowError(f"the refinement rounds must be 0 or more, got {rounds}")
    if polish_rounds < 0:
        raise SegFlowError(f"the polishing rounds must be 0 or more, got {polish_rounds}")
    flow = two_way_pair_flow(net, first, second, long_side, device)
    for _ in range(rounds):
        residual = two_way_pair_flow(net, first, sample_at_flow(second, flow), long_side, device)
        refined = residual + sample_at_flow(flow, residual)
        better = mismatch(first, second, refined) < mismatch(first, second, flow)
        flow = np.where(better[..., None], refined, flow)
    return _polished_at_working_size(first, second, median_filtered(flow), polish_rounds, long_side)


def _polished_at_working_size(first: np.ndarray, second: np.ndarray, flow: np.ndarray, rounds: int,
                              long_side: int) -> np.ndarray:
    """``polished_flow`` on the pair scaled down to the working size, where the flow was found (so that its cost
    stays that of a working-size pair on 4K images), the polished flow scaled back to the images' pixels."""
    import cv2

    from napari_segflow.data.resolution import resize_flow

    height, width = first.shape[:2]
    h, w = working_geometry(height, width, long_side).scaled
    if rounds == 0 or (h, w) == (height, width):
        return polished_flow(first, second, flow, rounds)
    to_small, to_full = np.array([w / width, h / height], np.float32), np.array([width / w, height / h], np.float32)
    polished = polished_flow(*_resized((first, second), (h, w)),
                             cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) * to_small, rounds)
    return resize_flow(polished * to_full, (height, width))


def _resized(images, size: tuple[int, int]) -> list[np.ndarray]:
    """Each (H, W, C) image area-averaged to ``size`` (height, width); one already that size as it is."""
    import cv2

    h, w = size
    return [image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            for image in images]


def median_filtered(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32: each component of ``flow`` through a ``MEDIAN_SIZE`` median filter."""
    import cv2

    return np.stack([cv2.medianBlur(np.ascontiguousarray(flow[..., c], np.float32), MEDIAN_SIZE) for c in range(2)], -1)


def polished_flow(first: np.ndarray, second: np.ndarray, flow: np.ndarray, rounds: int = POLISH_ROUNDS) -> np.ndarray:
    """(H, W, 2) float32: ``flow`` between the (H, W, 3) uint8 images, ``rounds`` times refined by OpenCV's
    variational refinement and median-filtered; ``flow`` itself is left as it was."""
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY) for image in (first, second)]
    flow = np.array(flow, np.float32)  # a copy: OpenCV refines in place
    variational = cv2.VariationalRefinement_create()
    variational.setFixedPointIterations(VARIATIONAL_ITERATIONS)
    variational.setSorIterations(VARIATIONAL_ITERATIONS)
    variational.setAlpha(VARIATIONAL_SMOOTHNESS)
    for _ in range(rounds):
        flow = median_filtered(variational.calc(grey[0], grey[1], flow))
    return flow


def mismatch(first: np.ndarray, second: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(H, W) float32: how badly ``flow`` matches the two (H, W, 3) uint8 images around each pixel: the absolute
    difference of grey level and gradients between the first image and the second read at the flow's targets,
    summed over the channels and averaged over a ``FUSION_WINDOW`` square."""
    import cv2

    def grey_and_gradients(image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
        # a Sobel kernel sums four differences; a quarter puts gradients on the grey level's scale
        return np.stack([grey, cv2.Sobel(grey, cv2.CV_32F, 1, 0) / 4, cv2.Sobel(grey, cv2.CV_32F, 0, 1) / 4], -1)

    difference = np.abs(grey_and_gradients(first) - sample_at_flow(grey_and_gradients(second), flow)).sum(-1)
    return cv2.blur(difference, (FUSION_WINDOW, FUSION_WINDOW))


def sample_at_flow(values: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``values`` (H, W, C) read at p + flow(p) (bilinear; a point outside takes the nearest edge's value)."""
    import cv2

    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(values, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def peer_pair_flow(first: np.ndarray, second: np.ndarray, method: str, long_side: int = FLOW_LONG_SIDE) -> np.ndarray:
    """The same for a classical peer (``dis``, ``farneback``; ``zero``), at the same working size."""
    from napari_segflow.data.resolution import resize_flow
    from napari_segflow.evaluation.baselines import optical_flow

    check_pair(first, second)
    height, width = first.shape[:2]
    if method == "zero":
        return np.zeros((height, width, 2), np.float32)
    geometry = working_geometry(height, width, long_side)
    h, w = geometry.scaled
    small = _resized((first, second), (h, w))
    flow = optical_flow(small[0], small[1], method)
    flow = flow * np.array([width / w, height / h], np.float32)
    return resize_flow(flow, (height, width))
