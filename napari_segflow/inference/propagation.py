"""Propagation: walk the frames one way with the ConvGRU memory, yielding one FrameResult per frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels


@dataclass
class FrameResult:
    """labels (H, W) uint8 object ids; probabilities (K+1, H, W) float16 (background first); flow (H, W, 2)
    float32 in pixels from this frame to the next one in the direction of travel."""

    index: int
    labels: np.ndarray
    probabilities: np.ndarray
    flow: np.ndarray


def frame_order(count: int, start: int, direction: str, stop: int | None = None) -> list[int]:
    """Frame indices from ``start`` towards ``stop`` (inclusive; default: the video's end) one way."""
    if not 0 <= start < count:
        raise SegFlowError(f"start frame {start} is out of range (0..{count - 1})")
    if direction == "forward":
        end = count - 1 if stop is None else stop
        return list(range(start, end + 1))
    if direction == "backward":
        end = 0 if stop is None else stop
        return list(range(start, end - 1, -1))
    raise SegFlowError(f"direction must be 'forward' or 'backward', got {direction!r}")


@torch.no_grad()
def propagate(
    net: SegFlowNet,
    frames,
    objects: ObjectChannels,
    order: list[int],
    geometry: WorkingResolution,
    device: torch.device | str = "cpu",
    motion_features: bool = True,
) -> Iterator[FrameResult]:
    """Segment ``frames`` (lazy (T, H, W, 3) uint8) in ``order``, carrying the memory from frame to frame.
    Each frame's flow goes to the next frame in ``order`` (the last one's to the one before it)."""
    if net.config.num_classes != objects.num_objects + 1:
        raise SegFlowError(
            f"the network predicts {net.config.num_classes - 1} object(s) but {objects.num_objects} are asked for"
        )
    net.eval()
    hidden = None
    cache: dict[int, torch.Tensor] = {}

    def image(index: int) -> torch.Tensor:
        if index not in cache:
            cache[index] = geometry.frames_to_network(frames[index], device)
        return cache[index]

    for position, index in enumerate(order):
        if position + 1 < len(order):
            partner = order[position + 1]
        elif len(order) > 1:
            partner = order[position - 1]
        else:
            partner = index + 1 if index + 1 < len(frames) else max(index - 1, 0)
        if not motion_features:
            partner = index
        output = net.step(image(index), image(partner), hidden)
        hidden = output.hidden
        for stale in [k for k in cache if k not in (index, partner)]:
            del cache[stale]
        probabilities = torch.softmax(geometry.logits_to_frame(output.logits.float()), dim=1)[0]
        channels = probabilities.argmax(0).cpu().numpy()
        flow = geometry.flow_to_frame(output.flow.flow.float())[0].permute(1, 2, 0).cpu().numpy()
        yield FrameResult(
            index=index,
            labels=objects.to_ids(channels),
            probabilities=probabilities.cpu().numpy().astype(np.float16),
            flow=flow.astype(np.float32),
        )
