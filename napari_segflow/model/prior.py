"""The mask prior: the previous frame's mask carried to this frame by the flow, as an input of the segmentation side.

A prior is (B, K+1, H/4, W/4): per-class probabilities (background first) on the stride-4 grid of the network's
input, or zeros where nothing is known (the first frame of a generic run, a dropped prior in training, the area
the flow carried in from outside the image). It enters twice, class-agnostically so that any number of objects
works with the same weights:

- next to the ConvGRU memory: the prior's foreground and "known" maps, pooled to stride 8, add features to the
  memory's input;
- at stride 4: per class, the class's prior, the "known" map and the stride-4 head's features give a correction
  of that class's scores.

Both paths end in zero-initialised convolutions, so a network warm-started from one without a prior computes
exactly what it did until training teaches it to use the prior (MaskTrack, Perazzi et al. 2017; Every Frame
Counts §3.3 carries the mask by the flow the same way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.model.layers import conv_norm_relu
from napari_segflow.model.warp import backward_warp

#: Stride of the prior's grid relative to the network's input.
PRIOR_STRIDE = 4
PRIOR_MEMORY_CHANNELS = 8
PRIOR_CORRECTION_CHANNELS = 16


class MaskPrior(nn.Module):
    """Features from a prior for the memory input, and per-class corrections of the stride-4 scores."""

    def __init__(self, fine_channels: int, memory_channels: int) -> None:
        super().__init__()
        self.to_memory = nn.Sequential(
            conv_norm_relu(2, PRIOR_MEMORY_CHANNELS), nn.Conv2d(PRIOR_MEMORY_CHANNELS, memory_channels, 1)
        )
        self.correction = nn.Sequential(
            conv_norm_relu(fine_channels + 2, PRIOR_CORRECTION_CHANNELS),
            nn.Conv2d(PRIOR_CORRECTION_CHANNELS, 1, 3, padding=1),
        )
        for last in (self.to_memory[-1], self.correction[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def memory_features(self, prior: torch.Tensor, size8: tuple[int, int]) -> torch.Tensor:
        """prior (B, K+1, H/4, W/4) -> (B, C_mem, H/8, W/8), added to the memory's input."""
        known = prior.sum(1, keepdim=True)
        foreground = prior[:, 1:].sum(1, keepdim=True)
        summary = F.adaptive_avg_pool2d(torch.cat([foreground, known], dim=1), size8)
        return self.to_memory(summary)

    def score_correction(self, prior: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """prior (B, K+1, H/4, W/4), fine (B, C, H/4, W/4) stride-4 head features -> (B, K+1, H/4, W/4)."""
        batch, classes, height, width = prior.shape
        known = prior.sum(1, keepdim=True)
        per_class = torch.cat(
            [
                prior.reshape(batch * classes, 1, height, width),
                known.repeat_interleave(classes, dim=0),
                fine.repeat_interleave(classes, dim=0),
            ],
            dim=1,
        )
        return self.correction(per_class).reshape(batch, classes, height, width)


def empty_prior(batch: int, classes: int, image_size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """The "nothing known" prior for images of ``image_size``: (B, K+1, H/4, W/4) zeros."""
    height, width = image_size
    return like.new_zeros(batch, classes, height // PRIOR_STRIDE, width // PRIOR_STRIDE)


def prior_from_labels(channels: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, H, W) channel indices at the network's input size -> a certain prior (B, K+1, H/4, W/4)."""
    one_hot = F.one_hot(channels.long(), classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(one_hot, PRIOR_STRIDE)


def prior_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, K+1, H, W) logits at the network's input size -> (B, K+1, H/4, W/4) probabilities."""
    return F.avg_pool2d(torch.softmax(logits.float(), dim=1), PRIOR_STRIDE)


def carry_prior(prior: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Carry a prior of frame t to frame t+1 with the flow t -> t+1 (B, 2, H, W) at the network's input size.

    Each pixel p of frame t+1 takes the prior at p - u, where u solves u = flow(p - u): one fixed-point step from
    u = flow(p) is exact for translations and close for smooth motion. Samples from outside the image are zeros:
    unknown."""
    grid_flow = F.avg_pool2d(flow.float(), PRIOR_STRIDE) / PRIOR_STRIDE
    back, inside = backward_warp(grid_flow, -grid_flow)
    back = torch.where(inside, back, grid_flow)
    carried, _ = backward_warp(prior, -back)
    return carried
