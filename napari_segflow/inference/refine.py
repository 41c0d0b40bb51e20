"""Edge-aware refinement of the score maps: the colour guided filter (He, Sun and Tang, "Guided Image
Filtering", ECCV 2010) with the video frame as the guide.

The network's upsampled probabilities blur boundaries over a few working-resolution pixels. The guided
filter fits, in every window, a linear model from the frame's colours to the probabilities, so the
probabilities' edges snap to the frame's edges. The window's radius trades what it mends against what it breaks:
a window much larger than the object cannot fit the object's colours apart from the background's, and erodes
a right mask (refined at 24 working pixels, the true masks of the 24 training and validation sequences keep
J 0.82 on average, at 12 0.90). 12 pixels (one and a half stride-8 cells) was chosen on the validation
sequences, over a first mask and three corrections (tools/refine_radius_sweep.py; the model card).
Coefficients are fitted on a coarser grid and applied at full resolution ("fast guided filter", He and Sun
2015): half the working resolution, so the cost follows the working resolution rather than the frame's, and its
running sums keep it independent of the radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over (2r+1)^2 windows, clipped at the borders; x (C, H, W). Running sums, one axis at a time,
    so the cost does not grow with the radius."""
    out = x.float()
    for dim in (1, 2):
        length = out.shape[dim]
        # running sums of what is left after each line's mean: in float32 the sums of the raw values lose the
        # small differences the guided filter's covariances are made of; centred, they agree with float64 to 1e-6
        line_mean = out.mean(dim, keepdim=True)
        sums = F.pad((out - line_mean).cumsum(dim), (0, 0, 1, 0) if dim == 1 else (1, 0))
        # sums[clamp(i + r + 1)] - sums[clamp(i - r)] as two slices of the sums padded with their end values
        reach = min(radius, length)
        ends = [reach if d == dim else -1 for d in range(3)]
        padded = torch.cat([sums.narrow(dim, 0, 1).expand(*ends), sums, sums.narrow(dim, length, 1).expand(*ends)], dim)
        window = padded.narrow(dim, 2 * reach + 1, length) - padded.narrow(dim, 0, length)
        index = torch.arange(length, device=x.device)
        counts = ((index + radius + 1).clamp(max=length) - (index - radius).clamp(min=0)).to(out.dtype)
        shape = [1, 1, 1]
        shape[dim] = length
        out = window / counts.view(shape) + line_mean
    return out.to(x.dtype)


@dataclass(frozen=True)
class GuidedFilter:
    """radius in frame pixels; eps the regularisation (on colours in [0, 1]): larger keeps the input
    smoother, smaller follows the frame's edges more closely."""

    radius: int
    eps: float = 1e-3
    subsample: int = 2

    def __call__(self, guide: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """guide (3, H, W) in [0, 1]; inputs (C, H, W) -> (C, H, W)."""
        size = guide.shape[-2:]
        small_guide, small_inputs = guide, inputs
        radius = self.radius
        if self.subsample > 1:
            scale = 1 / self.subsample
            small_guide = F.interpolate(guide[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
            small_inputs = F.interpolate(inputs[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
            radius = max(1, round(radius / self.subsample))
        a, b = self._coefficients(small_guide, small_inputs, radius)
        if self.subsample > 1:
            a = F.interpolate(a.flatten(0, 1)[None], size=size, mode="bilinear", align_corners=False)[0]
            a = a.view(inputs.shape[0], 3, *size)
            b = F.interpolate(b[None], size=size, mode="bilinear", align_corners=False)[0]
        return (a * guide[None]).sum(1) + b

    def _coefficients(self, guide, inputs, radius):
        mean_guide = box_mean(guide, radius)  # (3, h, w)
        products = torch.stack([guide[i] * guide[j] for i, j in _PAIRS])
        covariance = box_mean(products, radius) - torch.stack([mean_guide[i] * mean_guide[j] for i, j in _PAIRS])
        rr, rg, rb, gg, gb, bb = covariance
        rr, gg, bb = rr + self.eps, gg + self.eps, bb + self.eps
        # inverse of the symmetric 3x3 covariance by its adjugate
        inv = torch.stack([gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb,
                           rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg])
        determinant = rr * inv[0] + rg * inv[1] + rb * inv[2]
        inv = inv / determinant
        full = [[inv[0], inv[1], inv[2]], [inv[1], inv[3], inv[4]], [inv[2], inv[4], inv[5]]]
        mean_inputs = box_mean(inputs, radius)  # (C, h, w)
        cross = box_mean((guide[None] * inputs[:, None]).flatten(0, 1), radius).view(
            inputs.shape[0], 3, *inputs.shape[1:]
        )
        cross = cross - mean_guide[None] * mean_inputs[:, None]
        a = torch.stack([sum(full[i][j] * cross[:, j] for j in range(3)) for i in range(3)], dim=1)  # (C, 3, h, w)
        b = mean_inputs - (a * mean_guide[None]).sum(1)
        a = box_mean(a.flatten(0, 1), radius).view_as(a)
        b = box_mean(b, radius)
        return a, b


_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


#: The guided filter's radius in working-resolution pixels (one and a half stride-8 cells).
EDGE_RADIUS = 12


def edge_radius(geometry, working_radius: int = EDGE_RADIUS) -> int:
    """The filter's radius in frame pixels for ``working_radius`` pixels at the working resolution."""
    return max(1, round(working_radius * max(geometry.height, geometry.width) / geometry.long_side))


def edge_filter(geometry, working_radius: int = EDGE_RADIUS) -> GuidedFilter:
    """The guided filter for frames of ``geometry``'s size: ``working_radius`` working pixels, coefficients
    fitted at half the working resolution (a 427x240 frame at long side 448: every second frame pixel, as
    before; 854x480: every fourth, 24 -> 10 ms a frame on two cores)."""
    scale = max(geometry.height, geometry.width) / geometry.long_side
    return GuidedFilter(edge_radius(geometry, working_radius), subsample=max(1, round(2 * scale)))


def refine_probabilities(probabilities: torch.Tensor, frame: torch.Tensor, edges: GuidedFilter) -> torch.Tensor:
    """probabilities (K+1, H, W); frame (H, W, 3) uint8 -> refined probabilities (K+1, H, W), summing to 1."""
    guide = frame.permute(2, 0, 1).float() / 255.0
    # the filter is linear and keeps constants, so the objects' channels suffice: background is the rest
    objects = edges(guide, probabilities[1:].float()).clamp(min=0)
    background = (1 - objects.sum(0, keepdim=True)).clamp(min=0)
    filtered = torch.cat([background, objects])
    return filtered / filtered.sum(0, keepdim=True).clamp(min=1e-6)
