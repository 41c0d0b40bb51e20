"""Segmentation score heads at strides 4, 16, 32, the stride-8 memory input, and the memory readout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.model.fusion import Bridge
from napari_segflow.model.layers import conv_norm_relu


@dataclass
class FusedFeatures:
    """Segmentation-side features after the flow -> seg bridges.

    memory_input: (B, C_mem, H/8, W/8), what the ConvGRU reads;
    fine: (B, C_head, H/4, W/4) or None, the stride-4 head's features;
    score4: (B, K+1, H/4, W/4) or None (no stride-4 head); score16: (B, K+1, H/16, W/16);
    score32: (B, K+1, H/32, W/32).
    """

    memory_input: torch.Tensor
    fine: torch.Tensor | None
    score4: torch.Tensor | None
    score16: torch.Tensor
    score32: torch.Tensor


class ScoreHeads(nn.Module):
    """Fuse appearance (and, when bridged, flow-decoder) features per stride; score at 16 and 32;
    build the stride-8 memory input from all three scales. With ``fine_channels`` > 0, a stride-4 head
    scores the first stage's appearance features: the boundary detail the coarser scores lack."""

    def __init__(
        self,
        fine_channels: int,
        appearance_channels: tuple[int, int, int],
        flow_channels: tuple[int, int, int] | None,
        head_channels: int,
        bridge_channels: int,
        memory_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        extra = bridge_channels if flow_channels is not None else 0
        self.bridges = (
            nn.ModuleList(Bridge(c, bridge_channels) for c in flow_channels) if flow_channels is not None else None
        )
        self.fuse = nn.ModuleList(conv_norm_relu(c + extra, head_channels) for c in appearance_channels)
        self.score16 = nn.Conv2d(head_channels, num_classes, 1)
        self.score32 = nn.Conv2d(head_channels, num_classes, 1)
        self.fuse4 = conv_norm_relu(fine_channels, head_channels) if fine_channels else None
        self.score4 = nn.Conv2d(head_channels, num_classes, 1) if fine_channels else None
        self.memory_input = conv_norm_relu(3 * head_channels, memory_channels, 1)

    def forward(
        self, fine: torch.Tensor, appearance: tuple[torch.Tensor, torch.Tensor, torch.Tensor], flow: tuple | None
    ) -> FusedFeatures:
        """fine: seg features at stride 4; appearance: at strides 8/16/32; flow: decoder features at
        strides 4/8/16 or None."""
        fused = []
        for index, features in enumerate(appearance):
            if self.bridges is not None:
                bridged = self.bridges[index](flow[index], tuple(features.shape[-2:]))
                features = torch.cat([features, bridged], dim=1)
            fused.append(self.fuse[index](features))
        size8 = tuple(fused[0].shape[-2:])
        context = [F.interpolate(f, size=size8, mode="bilinear", align_corners=False) for f in fused[1:]]
        fine_features = self.fuse4(fine) if self.fuse4 is not None else None
        return FusedFeatures(
            memory_input=self.memory_input(torch.cat([fused[0], *context], dim=1)),
            fine=fine_features,
            score4=self.score4(fine_features) if fine_features is not None else None,
            score16=self.score16(fused[1]),
            score32=self.score32(fused[2]),
        )


class MemoryReadout(nn.Module):
    """Memory state(s) -> stride-8 scores. Bidirectional: concat both states, 3x3 conv, 1x1 to classes."""

    def __init__(self, memory_channels: int, num_classes: int) -> None:
        super().__init__()
        self.one_way = conv_norm_relu(memory_channels, memory_channels)
        self.two_way = conv_norm_relu(2 * memory_channels, memory_channels)
        self.classifier = nn.Conv2d(memory_channels, num_classes, 1)

    def forward(self, hidden: torch.Tensor, hidden_backward: torch.Tensor | None = None) -> torch.Tensor:
        if hidden_backward is None:
            return self.classifier(self.one_way(hidden))
        return self.classifier(self.two_way(torch.cat([hidden, hidden_backward], dim=1)))
