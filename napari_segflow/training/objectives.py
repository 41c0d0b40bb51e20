"""Training objectives as modules, so DistributedDataParallel can wrap them (the network itself has
stage methods and no forward). Each forward returns (loss, metrics)."""

from __future__ import annotations

import torch
from torch import nn

from napari_segflow.model.losses import (
    balanced_cross_entropy,
    calibrated_segmentation_loss,
    forward_backward_loss,
    multiscale_epe,
    photometric_loss,
    pool_valid,
    predicted_classes,
    smoothness_loss,
    temporal_consistency_loss,
)
from napari_segflow.model.correlation import matching_loss
from napari_segflow.model.segflow import SegFlowNet, clip_partners
from napari_segflow.training.mask_priors import PriorDeformation, deformed_priors, own_priors
from napari_segflow.model.warp import backward_warp, forward_backward_occlusion

#: Weight of the matching loss (cross-entropy of each cost volume against the true displacement) beside the EPE.
MATCHING_WEIGHT = 1.0
#: Every Frame Counts loss weights.
CONSISTENCY_WEIGHT = 10.0
OCCLUSION_WEIGHT = 0.4
SMOOTHNESS_WEIGHT = 0.5


def flow_parameters(net: SegFlowNet) -> list[nn.Parameter]:
    """The flow branch and the seg -> flow bridges."""
    modules = [net.flow_branch] + ([net.seg_to_flow] if net.seg_to_flow is not None else [])
    return [p for m in modules for p in m.parameters()]


def segmentation_parameters(net: SegFlowNet) -> list[nn.Parameter]:
    """Everything else: appearance encoder, score heads (with the flow -> seg bridges), memory, readout."""
    flow = {id(p) for p in flow_parameters(net)}
    return [p for p in net.parameters() if id(p) not in flow]


def train_only(net: SegFlowNet, branch: str) -> list[nn.Parameter]:
    """Freeze one branch, unfreeze the other ("joint": unfreeze both); return the trainable parameters."""
    if branch == "joint":
        trainable = flow_parameters(net) + segmentation_parameters(net)
    else:
        trainable = segmentation_parameters(net) if branch == "seg" else flow_parameters(net)
    ids = {id(p) for p in trainable}
    for p in net.parameters():
        p.requires_grad_(id(p) in ids)
    return trainable


def matching_losses(costs, flow: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Sum over levels of the matching loss: each cost volume against the displacement that remains between the
    flow its level started from and the true flow (both pooled to the level's grid)."""
    total = flow.new_zeros(())
    for cost in costs:
        target, cover = pool_valid(flow, valid, tuple(cost.logits.shape[-2:]))
        offset = (target - cost.base_flow.float()) / cost.stride
        total = total + matching_loss(cost.logits.float(), offset, cost.radius, cover > 0.5)
    return total


class SegmentationObjective(nn.Module):
    """Balanced cross-entropy over a window run through the memory (one way or both ways). A network with a
    mask prior sees each frame's true mask, deformed at random (training/mask_priors.py), as its prior, and
    learns with the calibrated loss (cross-entropy + Dice; see ``calibrated_segmentation_loss``). In a share
    ``own_prior_share`` of the windows, only the first frame's prior is a deformed true mask; the later frames'
    are the network's own answers carried by its flow, as at run time (``own_priors``).
    ``flow_gradients`` False: see SegFlowNet.segment_clip."""

    def __init__(
        self,
        net: SegFlowNet,
        prior_generator: torch.Generator | None = None,
        flow_gradients: bool = True,
        prior_deformation: PriorDeformation = PriorDeformation(),
        own_prior_share: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.prior_deformation = prior_deformation
        self.own_prior_share = own_prior_share
        self.flow_gradients = flow_gradients
        # the caller owns the generator, so a resumed training draws the priors it would have drawn
        self.prior_generator = prior_generator if prior_generator is not None else torch.Generator().manual_seed(0)

    def forward(
        self, frames: torch.Tensor, masks: torch.Tensor, bidirectional: bool, partners: list[int] | None = None
    ) -> tuple[torch.Tensor, dict]:
        """frames (B, T, 3, H, W); masks (B, T, H, W) class indices; partners: see SegFlowNet.segment_clip."""
        priors = None
        if self.net.mask_prior is not None:
            priors = deformed_priors(
                masks, self.net.config.num_classes, self.prior_generator, self.prior_deformation
            ).to(frames.dtype)
            if self.own_prior_share > 0 and torch.rand(1, generator=self.prior_generator).item() < self.own_prior_share:
                priors = own_priors(self.net, frames, priors[:, 0], partners or clip_partners(frames.shape[1]))
        clip = self.net.segment_clip(frames, bidirectional=bidirectional, partners=partners, priors=priors,
                                       flow_gradients=self.flow_gradients)
        criterion = calibrated_segmentation_loss if priors is not None else balanced_cross_entropy
        losses, accuracy = [], []
        for t in range(frames.shape[1]):
            loss, metrics = criterion(clip.logits[:, t].float(), masks[:, t])
            losses.append(loss)
            accuracy.append(metrics["pixel_accuracy"])
        loss = torch.stack(losses).mean()
        with torch.no_grad():
            predicted = predicted_classes(clip.logits, dim=2) > 0
            target = masks > 0
            union = (predicted | target).sum().clamp_min(1)
            iou = (predicted & target).sum() / union
        return loss, {
            "seg_loss": float(loss.detach()),
            "pixel_accuracy": sum(accuracy) / len(accuracy),
            "iou": float(iou),
        }


class FlowObjective(nn.Module):
    """Supervised multi-scale EPE where the flow is known; the unsupervised losses of Every Frame Counts
    (photometric, smoothness, forward-backward, feature temporal consistency) where it is not."""

    def __init__(self, net: SegFlowNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor | None, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict]:
        """first, second (B, 3, H, W); flow (B, 2, H, W) in pixels, or None for unsupervised; valid (B, 1, H, W)
        bool where ``flow`` is known (default: everywhere)."""
        with torch.no_grad():
            appearance_first = self.net.encode_appearance(first)
        estimate = self.net.estimate_flow(first, second, appearance_first)
        if flow is not None:
            loss, metrics = multiscale_epe(
                tuple(f.float() for f in estimate.flows), flow, self.net.config.div_flow, estimate.loss_weights, valid
            )
            if estimate.matching:
                matching = matching_losses(estimate.matching, flow, valid)
                loss = loss + MATCHING_WEIGHT * matching
                metrics["matching"] = float(matching.detach())
            with torch.no_grad():
                error = (estimate.flow.float() - flow).norm(dim=1, keepdim=True)
                metrics["epe"] = float(error[valid].mean() if valid is not None else error.mean())
            metrics["flow_loss"] = float(loss.detach())
            return loss, metrics
        with torch.no_grad():
            appearance_second = self.net.encode_appearance(second)
        backward = self.net.estimate_flow(second, first, appearance_second)
        forward_flow, backward_flow = estimate.flow.float(), backward.flow.float()
        occluded = forward_backward_occlusion(forward_flow.detach(), backward_flow.detach())
        warped, _ = backward_warp(second, forward_flow)
        photometric, m1 = photometric_loss(first, warped, ~occluded)
        smooth, m2 = smoothness_loss(forward_flow / 20, first)
        fb, m3 = forward_backward_loss(forward_flow, backward_flow)
        consistency, m4 = temporal_consistency_loss(appearance_first.s8, appearance_second.s8, forward_flow, ~occluded)
        loss = (
            photometric
            + SMOOTHNESS_WEIGHT * smooth
            + OCCLUSION_WEIGHT * fb / 20
            + CONSISTENCY_WEIGHT * consistency
        )
        return loss, {**m1, **m2, **m3, **m4, "flow_loss": float(loss.detach())}


class JointObjective(nn.Module):
    """Both branches at once: a seg window's loss plus ``flow_weight`` times a flow pair's, so the score heads
    follow the flow features as they change and the flow stays taught while the seg loss also pulls on it."""

    def __init__(self, segmentation: SegmentationObjective, flow: FlowObjective, flow_weight: float) -> None:
        super().__init__()
        self.segmentation = segmentation
        self.flow = flow
        self.flow_weight = flow_weight

    def forward(
        self,
        frames: torch.Tensor,
        masks: torch.Tensor,
        bidirectional: bool,
        first: torch.Tensor,
        second: torch.Tensor,
        flow: torch.Tensor | None,
        valid: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict]:
        """The seg window (see SegmentationObjective) and the flow pair (see FlowObjective)."""
        seg_loss, seg_metrics = self.segmentation(frames, masks, bidirectional)
        flow_loss, flow_metrics = self.flow(first, second, flow, valid)
        return seg_loss + self.flow_weight * flow_loss, {**seg_metrics, **flow_metrics}
