"""Bridges that carry features from one branch to the other (SegFlow §3.3).

A bridge resamples a feature map to the scale where it is used and projects it with a
1x1 convolution and GroupNorm, so that the two branches' features arrive at comparable
magnitudes (the released Caffe model used fixed factors 0.01 / 0.0001 instead).
The convolution after each concatenation lives where the concatenation happens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.model.layers import group_norm


def resample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool down or bilinearly upsample a (B, C, h, w) map to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Bridge(nn.Module):
    """(B, C_in, h, w) -> (B, C_out, H, W) at the target scale, normalised."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            group_norm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.project(resample_to(x, size))
