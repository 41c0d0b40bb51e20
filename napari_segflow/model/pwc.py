"""Cost-volume flow branch of the PWC-Net family (the ``small`` preset's): feature pyramid, correlation,
warping, residual flow estimators, convex upsampler.

Both frames go through one shared pyramid (strides 2, 4, 8, 16, 32). Each level, from 32 down to 4, warps the
second frame's features by the flow so far (zero at the coarsest), correlates them with the first frame's
(cosines of centred unit features, over displacements up to a radius) and reads the cost volume out by a
soft-argmax: the flow a feature match gives, with no decoder involved. A small estimator then sees the cost
volume, the first frame's features and that flow, and adds a residual. The matching loss (training/objectives.py)
trains the features so that each cost volume peaks at the true displacement, which is what lets the branch leave
the zero-flow plateau within a few hundred steps. The stride-4 flow is upsampled to full resolution by a learned
convex combination of its 3x3 neighbours (RAFT's upsampler), which keeps sub-pixel motion that bilinear
upsampling blurs.

Flows are kept in full-resolution pixels throughout; a level divides by its stride to work on its own grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.config import ModelConfig
from napari_segflow.model.correlation import centred_unit_features, local_correlation, soft_argmax_flow
from napari_segflow.model.flow_estimate import FlowEstimate, MatchingCost
from napari_segflow.model.layers import conv_leaky
from napari_segflow.model.warp import backward_warp

#: Strides of the pyramid's levels (the first only feeds the second).
PYRAMID_STRIDES = (2, 4, 8, 16, 32)
#: Strides of the flow levels, coarse to fine.
LEVEL_STRIDES = (32, 16, 8, 4)
#: Levels that take segmentation features through the seg -> flow bridges.
BRIDGED_STRIDES = (32, 16, 8)
#: The bridged channels start at this fraction of the default initialisation: the flow leans on appearance
#: features (which the seg phases and every fine-tune move) only as far as training shows they help.
BRIDGE_INIT_SCALE = 0.05
#: Multi-scale EPE weights of the full-resolution flow and the strides 4, 8, 16, 32. ``multiscale_epe`` sums each
#: scale's errors over its pixels and divides by the finest scale's count, so these read as weights on mean errors
#: of 1, 1/2, 1/4, 1/4, 1/4: the flow that is used counts most, the coarse levels keep their own targets.
PWC_LOSS_WEIGHTS = (1.0, 8.0, 16.0, 64.0, 256.0)


class FeaturePyramid(nn.Module):
    """(B, 3, H, W) in [0, 1] -> features at strides 2..32: two convolutions per level, one at stride 2 (it only
    feeds stride 4, and it is the level with the most pixels)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        levels, previous = [], 3
        for index, width in enumerate(channels):
            refine = [conv_leaky(width, width)] if index else []
            levels.append(nn.Sequential(conv_leaky(previous, width, 3, 2), *refine))
            previous = width
        self.levels = nn.ModuleList(levels)

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        x, features = image - 0.5, {}
        for stride, level in zip(PYRAMID_STRIDES, self.levels):
            x = level(x)
            features[stride] = x
        return features


class FlowLevel(nn.Module):
    """One level: [cost volume, first frame's features, matched flow (level pixels), bridged seg features]
    -> estimator features (what the seg heads read) and a flow residual in level pixels. ``log_sharpness``
    scales the cosines into the soft-argmax's logits."""

    def __init__(self, feature_channels: int, radius: int, hidden: tuple[int, int, int], extra_channels: int) -> None:
        super().__init__()
        self.radius = radius
        self.log_sharpness = nn.Parameter(torch.tensor(10.0).log())
        inputs = (2 * radius + 1) ** 2 + feature_channels + 2
        self.extra_channels = extra_channels
        first = conv_leaky(inputs + extra_channels, hidden[0])
        if extra_channels:
            with torch.no_grad():
                first[0].weight[:, inputs:] *= BRIDGE_INIT_SCALE
        self.estimator = nn.Sequential(first, conv_leaky(hidden[0], hidden[1]), conv_leaky(hidden[1], hidden[2]))
        self.predict_flow = nn.Conv2d(hidden[2], 2, 3, 1, 1)
        self.out_channels = hidden[2]

    def forward(
        self, cost: torch.Tensor, features: torch.Tensor, flow: torch.Tensor, extra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [cost, features, flow]
        if self.extra_channels:
            if extra is None:
                raise ValueError("this flow level was built to take segmentation features")
            parts.append(extra)
        hidden = self.estimator(torch.cat(parts, dim=1))
        return hidden, self.predict_flow(hidden)


class ConvexUpsampler(nn.Module):
    """Flow (B, 2, h, w) and features at the same grid -> flow (B, 2, h*f, w*f): each output pixel is a
    softmax-weighted mix of the 3x3 coarse neighbours, scaled to full-resolution pixels by the caller."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.mask = nn.Sequential(conv_leaky(channels, 32), nn.Conv2d(32, 9 * factor * factor, 1))

    def forward(self, flow: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = flow.shape
        f = self.factor
        weights = (0.25 * self.mask(features)).view(batch, 1, 9, f, f, height, width).softmax(dim=2)
        neighbours = F.unfold(F.pad(flow, (1, 1, 1, 1), mode="replicate"), 3).view(batch, 2, 9, 1, 1, height, width)
        upsampled = (weights * neighbours).sum(dim=2)  # (B, 2, f, f, h, w)
        return upsampled.permute(0, 1, 4, 2, 5, 3).reshape(batch, 2, height * f, width * f)


def _upsample_flow(flow: torch.Tensor) -> torch.Tensor:
    """A full-resolution-pixel flow on a grid twice as fine (values unchanged: they are in image pixels)."""
    return F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False)


class PWCFlow(nn.Module):
    """Flow branch: (image, next_image, bridged seg features by stride) -> FlowEstimate.

    For inputs (B, 3, H, W): ``flows`` holds the convex-upsampled (B, 2, H, W) flow, then the levels' flows at
    strides 4, 8, 16, 32 (full-resolution pixels / div_flow); ``decoder`` the estimator features at strides
    4, 8, 16 (widths ``decoder_channels``).
    """

    fused_strides = BRIDGED_STRIDES

    def __init__(self, config: ModelConfig, extra_channels: int) -> None:
        super().__init__()
        self.div_flow = config.div_flow
        channels = config.pwc_pyramid_channels
        if len(channels) != len(PYRAMID_STRIDES):
            raise ValueError(f"pwc_pyramid_channels needs {len(PYRAMID_STRIDES)} widths, got {channels}")
        self.pyramid = FeaturePyramid(channels)
        by_stride = dict(zip(PYRAMID_STRIDES, channels))
        self.levels = nn.ModuleDict(
            {
                str(s): FlowLevel(
                    by_stride[s],
                    config.pwc_coarse_radius if s == LEVEL_STRIDES[0] else config.pwc_radius,
                    config.pwc_estimator_channels,
                    extra_channels if s in BRIDGED_STRIDES else 0,
                )
                for s in LEVEL_STRIDES
            }
        )
        hidden = config.pwc_estimator_channels[-1]
        self.upsampler = ConvexUpsampler(hidden, 4)
        self.decoder_channels = (hidden, hidden, hidden)

    def forward(self, image: torch.Tensor, next_image: torch.Tensor, extras: dict[int, torch.Tensor]) -> FlowEstimate:
        both = self.pyramid(torch.cat([image, next_image], dim=0))
        batch = image.shape[0]
        flows: dict[int, torch.Tensor] = {}
        features: dict[int, torch.Tensor] = {}
        matching = []
        flow = None
        for stride in LEVEL_STRIDES:
            level = self.levels[str(stride)]
            first, second = both[stride][:batch], both[stride][batch:]
            if flow is None:
                base = first.new_zeros(batch, 2, *first.shape[-2:])
            else:
                base = _upsample_flow(flow) / stride
                second, _ = backward_warp(second, base)
            unit_first, unit_second = centred_unit_features(first, second)
            cost = local_correlation(unit_first, unit_second, level.radius) * unit_first.shape[1]
            logits = cost * level.log_sharpness.exp()
            matched = base + soft_argmax_flow(logits, level.radius, 1.0)
            hidden, residual = level(cost, first, matched, extras.get(stride))
            flow = (matched + residual) * stride
            flows[stride] = flow
            features[stride] = hidden
            matching.append(MatchingCost(stride, level.radius, logits, base.detach() * stride))
        full = self.upsampler(flows[4], features[4])
        scales = (full, *(flows[s] for s in reversed(LEVEL_STRIDES)))
        return FlowEstimate(
            flows=tuple(f / self.div_flow for f in scales),
            loss_weights=PWC_LOSS_WEIGHTS,
            decoder=(features[4], features[8], features[16]),
            flow=full,
            matching=tuple(matching),
        )
