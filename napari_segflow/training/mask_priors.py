"""Mask priors for training: the true masks, deformed the way a carried mask goes wrong (MaskTrack §3.2).

At run time a frame's prior is the previous frame's mask carried by the flow: shifted where the flow erred,
swollen or thinned at the edges, soft, and missing where the object came in from outside. Training shows the
network the true mask with these errors drawn at random, so it learns to correct a prior rather than copy it,
and, with a share of priors dropped, to segment when nothing is known. A share of priors can instead be each
object's bounding box, a little loose, filled: what the first-mask tool (inference/first_mask.py) hands the
network when a user draws a box, so the network learns to find the object inside one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_segflow.model.prior import PRIOR_STRIDE, carry_prior, prior_from_labels, prior_from_logits


@dataclass(frozen=True)
class PriorDeformation:
    """Ranges of the random errors: shift (share of the image side), scale, rotation (degrees), a smooth
    non-rigid displacement (share of the image side), edge growth or shrinkage (prior-grid pixels), the share
    of priors blurred, and of priors dropped (all zeros: unknown); the share of priors that are boxes instead,
    each side loosened by up to ``box_slack`` prior-grid pixels."""

    shift: float = 0.05
    scale: float = 0.08
    rotation: float = 8.0
    warp: float = 0.03
    edge: int = 2
    blur_share: float = 0.5
    drop_share: float = 0.1
    box_share: float = 0.0
    box_slack: int = 2


def deformed_priors(
    masks: torch.Tensor, classes: int, generator: torch.Generator, ranges: PriorDeformation = PriorDeformation()
) -> torch.Tensor:
    """masks (B, T, H, W) class indices -> priors (B, T, K+1, H/4, W/4), each deformed on its own."""
    batch, steps, height, width = masks.shape
    count = batch * steps
    prior = prior_from_labels(masks.reshape(count, height, width), classes)
    device = prior.device

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(device)

    angle = uniform(count) * ranges.rotation * torch.pi / 180
    scale = 1 + uniform(count) * ranges.scale
    theta = torch.zeros(count, 2, 3, device=device)
    theta[:, 0, 0] = torch.cos(angle) * scale
    theta[:, 0, 1] = -torch.sin(angle) * scale
    theta[:, 1, 0] = torch.sin(angle) * scale
    theta[:, 1, 1] = torch.cos(angle) * scale
    theta[:, :, 2] = uniform(count, 2) * 2 * ranges.shift
    grid = F.affine_grid(theta, list(prior.shape), align_corners=False)
    bumps = uniform(count, 2, 3, 3) * 2 * ranges.warp
    grid = grid + F.interpolate(bumps, size=prior.shape[-2:], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    moved = F.grid_sample(prior, grid, mode="bilinear", padding_mode="border", align_corners=False)

    objects = moved[:, 1:]
    growth = torch.randint(-ranges.edge, ranges.edge + 1, (count,), generator=generator).tolist()
    for index, amount in enumerate(growth):
        if amount > 0:
            objects[index] = F.max_pool2d(objects[index : index + 1], 2 * amount + 1, 1, amount)[0]
        elif amount < 0:
            objects[index] = -F.max_pool2d(-objects[index : index + 1], -2 * amount + 1, 1, -amount)[0]
    blurred = F.avg_pool2d(objects, 3, 1, 1, count_include_pad=False)
    blur = (torch.rand(count, generator=generator) < ranges.blur_share).to(device).view(count, 1, 1, 1)
    objects = torch.where(blur, blurred, objects).clamp(0, 1)
    total = objects.sum(1, keepdim=True)
    objects = objects / total.clamp_min(1)
    prior = torch.cat([1 - objects.sum(1, keepdim=True), objects], dim=1)
    keep = (torch.rand(count, generator=generator) >= ranges.drop_share).to(device).view(count, 1, 1, 1)
    prior = prior * keep
    if ranges.box_share > 0:  # drawn only then, so configs without boxes draw the priors they always drew
        prior = _boxes_for_some(prior, masks.reshape(count, height, width), classes, generator, ranges)
    return prior.reshape(batch, steps, classes, height // PRIOR_STRIDE, width // PRIOR_STRIDE)


def box_prior(masks: torch.Tensor, classes: int, slack: torch.Tensor) -> torch.Tensor:
    """masks (N, H, W) class indices, slack (N, K, 4) prior-grid pixels to loosen each object's box by (left,
    top, right, bottom) -> (N, K+1, H/4, W/4): every object's filled bounding box on the prior grid (where boxes
    overlap, shared among them), background elsewhere; an absent object has no box."""
    count, height, width = masks.shape
    grid_height, grid_width = height // PRIOR_STRIDE, width // PRIOR_STRIDE
    rows = torch.arange(grid_height, device=masks.device).view(1, grid_height, 1)
    columns = torch.arange(grid_width, device=masks.device).view(1, 1, grid_width)
    objects = []
    for k in range(1, classes):
        present = F.max_pool2d((masks == k).float().unsqueeze(1), PRIOR_STRIDE).squeeze(1) > 0  # (N, h, w) cells
        any_row, any_column = present.any(2), present.any(1)  # (N, h), (N, w)
        top = torch.where(any_row, rows.view(1, -1), grid_height).amin(1) - slack[:, k - 1, 1]
        bottom = torch.where(any_row, rows.view(1, -1), -1).amax(1) + slack[:, k - 1, 3]
        left = torch.where(any_column, columns.view(1, -1), grid_width).amin(1) - slack[:, k - 1, 0]
        right = torch.where(any_column, columns.view(1, -1), -1).amax(1) + slack[:, k - 1, 2]
        inside = ((rows >= top.view(-1, 1, 1)) & (rows <= bottom.view(-1, 1, 1))
                  & (columns >= left.view(-1, 1, 1)) & (columns <= right.view(-1, 1, 1)))
        objects.append((inside & any_row.any(1).view(-1, 1, 1)).float())
    objects = torch.stack(objects, dim=1)
    objects = objects / objects.sum(1, keepdim=True).clamp_min(1)
    return torch.cat([1 - objects.sum(1, keepdim=True), objects], dim=1)


def _boxes_for_some(prior: torch.Tensor, masks: torch.Tensor, classes: int, generator: torch.Generator,
                    ranges: PriorDeformation) -> torch.Tensor:
    count = prior.shape[0]
    chosen = torch.rand(count, generator=generator) < ranges.box_share
    slack = torch.randint(0, ranges.box_slack + 1, (count, classes - 1, 4), generator=generator)
    if not chosen.any():
        return prior
    boxes = box_prior(masks.to(prior.device), classes, slack.to(prior.device))
    return torch.where(chosen.to(prior.device).view(count, 1, 1, 1), boxes, prior)


@torch.no_grad()
def own_priors(net, frames: torch.Tensor, first_prior: torch.Tensor, partners: list[int]) -> torch.Tensor:
    """(B, T, K+1, H/4, W/4): the priors a window gets at run time. Frame 0 keeps ``first_prior`` (B, K+1, H/4, W/4),
    as a user's annotation; each later frame gets the network's own answer for the frame before it, carried by its
    own flow (as ``inference/propagation.py`` does), so training sees the priors that inference feeds back.
    ``frames`` (B, T, 3, H, W); ``partners[t]``: the frame whose flow frame t sees. No gradients flow through them."""
    priors = [first_prior]
    hidden = None
    for t in range(frames.shape[1] - 1):
        output = net.step(frames[:, t], frames[:, partners[t]], hidden, prior=priors[-1])
        hidden = output.hidden
        priors.append(carry_prior(prior_from_logits(output.logits), output.flow.flow).to(first_prior.dtype))
    return torch.stack(priors, dim=1)
