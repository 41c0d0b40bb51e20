"""Optical flow of one image pair at any size: estimated at a working resolution, scaled back to the images.

Images no larger than the working size are estimated as they are (padded to the network's multiple); larger
ones are scaled down so that their long side is ``long_side``, and the flow is resized back with its values
scaled to the images' pixels. The classical peers go through the same working size, so a comparison is fair.
"""

from __future__ import annotations

import numpy as np

from napari_segflow.data.resolution import NETWORK_MULTIPLE, WorkingResolution
from napari_segflow.errors import SegFlowError

#: Working long side of ``segflow flow``: the largest motions the branch learned (48 px on 256-wide crops) stay
#: within its reach for images up to about this size; the FlyingChairs examples (512x384) keep their size.
FLOW_LONG_SIDE = 512


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
                      device="cpu") -> np.ndarray:
    """(H, W, 2) float32 flow first -> second of two (H, W, 3) uint8 images by the network's flow branch."""
    import torch

    from napari_segflow.device import autocast

    check_pair(first, second)
    geometry = working_geometry(*first.shape[:2], long_side)
    device = torch.device(device)
    images = geometry.frames_to_network(np.stack([first, second]), device)
    net.eval()
    with torch.no_grad(), autocast(device):
        flow = net.estimate_flow(images[:1], images[1:]).flow.float()
    return geometry.flow_to_frame(flow)[0].permute(1, 2, 0).cpu().numpy()


def peer_pair_flow(first: np.ndarray, second: np.ndarray, method: str, long_side: int = FLOW_LONG_SIDE) -> np.ndarray:
    """The same for a classical peer (``dis``, ``farneback``; ``zero``), at the same working size."""
    import cv2

    from napari_segflow.data.resolution import resize_flow
    from napari_segflow.evaluation.baselines import optical_flow

    check_pair(first, second)
    height, width = first.shape[:2]
    if method == "zero":
        return np.zeros((height, width, 2), np.float32)
    geometry = working_geometry(height, width, long_side)
    h, w = geometry.scaled
    small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (height, width) else f
             for f in (first, second)]
    flow = optical_flow(small[0], small[1], method)
    flow = flow * np.array([width / w, height / h], np.float32)
    return resize_flow(flow, (height, width))
