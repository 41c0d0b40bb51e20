"""What a flow branch returns, whichever design it has (FlowNetS or the cost-volume branch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MatchingCost:
    """One level's cost volume, for the matching loss: ``logits`` (B, (2r+1)^2, h, w) over the displacements of
    ``radius`` around ``base_flow`` (B, 2, h, w), the flow the level started from, in full-resolution pixels."""

    stride: int
    radius: int
    logits: torch.Tensor
    base_flow: torch.Tensor


@dataclass
class FlowEstimate:
    """Flow from the first frame of a pair to the second.

    flows: the branch's multi-scale predictions, finest first, each (B, 2, h, w) in full-resolution pixels
      divided by ``div_flow`` (FlowNetS: strides 4..64; cost-volume branch: the full-resolution flow, then
      strides 4..32);
    loss_weights: the multi-scale EPE weight of each entry of ``flows`` (see ``losses.multiscale_epe``);
    decoder: decoder features at strides 4, 8, 16 (what the seg heads take);
    flow: (B, 2, H, W) in pixels at the input resolution;
    matching: each level's cost volume (cost-volume branch only), for the matching loss.
    """

    flows: tuple[torch.Tensor, ...]
    loss_weights: tuple[float, ...]
    decoder: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    flow: torch.Tensor
    matching: tuple[MatchingCost, ...] = ()
