"""FlowNetS-style flow branch (the ``paper`` preset's): encoder, decoder with skip links, multi-scale flow heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.config import ModelConfig
from napari_segflow.model.flow_estimate import FlowEstimate
from napari_segflow.model.layers import conv_leaky
from napari_segflow.model.losses import MULTISCALE_WEIGHTS

#: Strides of the decoder levels that take segmentation features, and of the flows.
FUSED_FLOW_STRIDES = (32, 16, 8)


@dataclass
class FlowEncoding:
    """Encoder outputs of a frame pair: conv2 (H/4), conv3_1 (H/8), conv4_1 (H/16), conv5_1 (H/32), conv6_1 (H/64)."""

    s4: torch.Tensor
    s8: torch.Tensor
    s16: torch.Tensor
    s32: torch.Tensor
    s64: torch.Tensor


class FlowEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6 = config.flow_encoder_channels
        self.conv1 = conv_leaky(6, c1, 7, 2)
        self.conv2 = conv_leaky(c1, c2, 5, 2)
        self.conv3 = conv_leaky(c2, c3, 5, 2)
        self.conv3_1 = conv_leaky(c3, c3)
        self.conv4 = conv_leaky(c3, c4, 3, 2)
        self.conv4_1 = conv_leaky(c4, c4)
        self.conv5 = conv_leaky(c4, c5, 3, 2)
        self.conv5_1 = conv_leaky(c5, c5)
        self.conv6 = conv_leaky(c5, c6, 3, 2)
        self.conv6_1 = conv_leaky(c6, c6)

    def forward(self, pair: torch.Tensor) -> FlowEncoding:
        """pair: (B, 6, H, W), both frames centred -> FlowEncoding."""
        s4 = self.conv2(self.conv1(pair))
        s8 = self.conv3_1(self.conv3(s4))
        s16 = self.conv4_1(self.conv4(s8))
        s32 = self.conv5_1(self.conv5(s16))
        s64 = self.conv6_1(self.conv6(s32))
        return FlowEncoding(s4, s8, s16, s32, s64)


class FlowLevel(nn.Module):
    """One decoder level: deconvolve the coarser level, concatenate skip + upsampled flow
    (+ optional bridged segmentation features, then a conv back to the plain width), predict flow."""

    def __init__(self, coarse_channels: int, skip_channels: int, deconv_channels: int, extra_channels: int) -> None:
        super().__init__()
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(coarse_channels, deconv_channels, 4, 2, 1), nn.LeakyReLU(0.1, inplace=True)
        )
        self.upsample_flow = nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False)
        self.out_channels = skip_channels + deconv_channels + 2
        self.fuse = conv_leaky(self.out_channels + extra_channels, self.out_channels) if extra_channels else None
        self.predict_flow = nn.Conv2d(self.out_channels, 2, 3, 1, 1)

    def forward(
        self, coarse: torch.Tensor, coarse_flow: torch.Tensor, skip: torch.Tensor, extra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        concat = torch.cat([skip, self.deconv(coarse), self.upsample_flow(coarse_flow)], dim=1)
        if self.fuse is not None:
            if extra is None:
                raise ValueError("this decoder level was built to take segmentation features")
            concat = self.fuse(torch.cat([concat, extra], dim=1))
        return concat, self.predict_flow(concat)


class FlowDecoder(nn.Module):
    def __init__(self, config: ModelConfig, extra_channels: int) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6 = config.flow_encoder_channels
        d5, d4, d3, d2 = config.flow_decoder_channels
        self.predict_flow6 = nn.Conv2d(c6, 2, 3, 1, 1)
        self.level5 = FlowLevel(c6, c5, d5, extra_channels)
        self.level4 = FlowLevel(self.level5.out_channels, c4, d4, extra_channels)
        self.level3 = FlowLevel(self.level4.out_channels, c3, d3, extra_channels)
        self.level2 = FlowLevel(self.level3.out_channels, c2, d2, 0)
        self.decoder_channels = (self.level2.out_channels, self.level3.out_channels, self.level4.out_channels)

    def forward(self, encoding: FlowEncoding, extras: dict[int, torch.Tensor]) -> tuple[tuple, tuple]:
        """extras: bridged segmentation features keyed by stride (32, 16, 8), or empty."""
        flow6 = self.predict_flow6(encoding.s64)
        concat5, flow5 = self.level5(encoding.s64, flow6, encoding.s32, extras.get(32))
        concat4, flow4 = self.level4(concat5, flow5, encoding.s16, extras.get(16))
        concat3, flow3 = self.level3(concat4, flow4, encoding.s8, extras.get(8))
        concat2, flow2 = self.level2(concat3, flow3, encoding.s4, None)
        return (flow2, flow3, flow4, flow5, flow6), (concat2, concat3, concat4)


class FlowNetS(nn.Module):
    """Flow branch: (image, next_image, bridged seg features by stride) -> FlowEstimate."""

    fused_strides = FUSED_FLOW_STRIDES

    def __init__(self, config: ModelConfig, extra_channels: int) -> None:
        super().__init__()
        self.div_flow = config.div_flow
        self.encoder = FlowEncoder(config)
        self.decoder = FlowDecoder(config, extra_channels)
        self.decoder_channels = self.decoder.decoder_channels

    def forward(self, image: torch.Tensor, next_image: torch.Tensor, extras: dict[int, torch.Tensor]) -> FlowEstimate:
        encoding = self.encoder(torch.cat([image - 0.5, next_image - 0.5], dim=1))
        flows, decoder = self.decoder(encoding, extras)
        size = tuple(image.shape[-2:])
        flow = F.interpolate(flows[0], size=size, mode="bilinear", align_corners=False) * self.div_flow
        return FlowEstimate(flows=flows, loss_weights=MULTISCALE_WEIGHTS, decoder=decoder, flow=flow)
