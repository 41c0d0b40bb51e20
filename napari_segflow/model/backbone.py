"""Residual segmentation encoder (the SegFlow segmentation branch without its heads)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from napari_segflow.config import ModelConfig
from napari_segflow.model.layers import conv_norm_relu, group_norm


@dataclass
class AppearanceFeatures:
    """Features of one frame from the four residual stages.

    s4: (B, C1, H/4, W/4); s8: (B, C2, H/8, W/8); s16: (B, C3, H/16, W/16); s32: (B, C4, H/32, W/32).
    """

    s4: torch.Tensor
    s8: torch.Tensor
    s16: torch.Tensor
    s32: torch.Tensor


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.body = nn.Sequential(
            conv_norm_relu(in_channels, channels, 3, stride),
            nn.Conv2d(channels, out_channels, 3, 1, 1, bias=False),
            group_norm(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.body = nn.Sequential(
            conv_norm_relu(in_channels, channels, 1),
            conv_norm_relu(channels, channels, 3, stride),
            nn.Conv2d(channels, out_channels, 1, bias=False),
            group_norm(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), group_norm(out_channels))


class ResidualEncoder(nn.Module):
    """ResNet-style encoder: stem (stride 4), then four stages at strides 4, 8, 16, 32."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        block = BasicBlock if config.seg_block == "basic" else Bottleneck
        self.stem = nn.Sequential(
            conv_norm_relu(3, config.seg_stem_channels, 7, 2),
            nn.MaxPool2d(3, 2, 1),
        )
        stages = []
        in_channels = config.seg_stem_channels
        for index, (channels, blocks) in enumerate(zip(config.seg_stage_channels, config.seg_stage_blocks)):
            stride = 1 if index == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(block(in_channels, channels, stride if b == 0 else 1))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(c * block.expansion for c in config.seg_stage_channels)

    def forward(self, image: torch.Tensor) -> AppearanceFeatures:
        """image: (B, 3, H, W) in [0, 1] -> AppearanceFeatures."""
        x = self.stem(image - 0.5)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return AppearanceFeatures(*outputs)
