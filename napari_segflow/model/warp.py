"""Backward warping by a flow field and the forward-backward occlusion test."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, H, W) pixel coordinates (x, y) of every pixel centre."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=like.device, dtype=like.dtype),
        torch.arange(width, device=like.device, dtype=like.dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=0).unsqueeze(0)


def backward_warp(source: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``source`` at p + flow(p): with flow from frame t to t+1 and source = frame t+1,
    the result is frame t as seen through the flow.

    source: (B, C, H, W); flow: (B, 2, H, W) in pixels (x, y).
    Returns (warped (B, C, H, W), inside (B, 1, H, W) bool: the sample point lies in the image).
    """
    _, _, height, width = flow.shape
    target = pixel_grid(height, width, flow) + flow
    inside = (
        (target[:, 0] >= 0) & (target[:, 0] <= width - 1) & (target[:, 1] >= 0) & (target[:, 1] <= height - 1)
    ).unsqueeze(1)
    normalised = torch.stack(
        [2 * target[:, 0] / max(width - 1, 1) - 1, 2 * target[:, 1] / max(height - 1, 1) - 1], dim=-1
    )
    warped = F.grid_sample(source, normalised, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped, inside


def forward_backward_occlusion(
    flow_forward: torch.Tensor, flow_backward: torch.Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> torch.Tensor:
    """(B, 1, H, W) bool: pixels of frame t whose forward flow is not undone by the backward flow at
    their destination (UnFlow's test), or whose destination leaves the image.

    occluded where |w_f + w_b(p + w_f)|^2 > alpha1 (|w_f|^2 + |w_b(p + w_f)|^2) + alpha2.
    """
    backward_at_target, inside = backward_warp(flow_backward, flow_forward)
    mismatch = (flow_forward + backward_at_target).pow(2).sum(1, keepdim=True)
    magnitude = flow_forward.pow(2).sum(1, keepdim=True) + backward_at_target.pow(2).sum(1, keepdim=True)
    return (mismatch > alpha1 * magnitude + alpha2) | ~inside
