"""Training losses. Each returns (value, metrics) where metrics is a dict of floats for logging."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_segflow.model.warp import backward_warp, forward_backward_occlusion

#: FlowNetS multi-scale weights for flow2 .. flow6.
MULTISCALE_WEIGHTS = (0.005, 0.01, 0.02, 0.08, 0.32)

Metrics = dict[str, float]


def predicted_classes(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The class of each pixel: ``max(dim).indices``, not ``argmax(dim)``, whose CPU kernel over a dimension that
    is not the last one took 130-260 ms on a (2, 2, 256, 448) map against 8-12 ms."""
    return logits.max(dim).indices


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Class-balanced cross-entropy (SegFlow eq. 1), extended to K+1 classes.

    Each pixel is weighted by one minus the share of its class in the target, so with one object the
    foreground is weighted by the background share and vice versa (w in eq. 1 is the foreground share).
    A target with a single class falls back to plain cross-entropy. Weighted mean over pixels.

    logits: (B, K+1, H, W); target: (B, H, W) int64 class ids.
    """
    num_classes = logits.shape[1]
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    counts = torch.bincount(target.reshape(-1), minlength=num_classes).to(logits.dtype)
    share = counts / counts.sum()
    if (counts > 0).sum() > 1:
        weights = (1 - share)[target]
    else:
        weights = torch.ones_like(per_pixel)
    value = (weights * per_pixel).sum() / weights.sum().clamp_min(1e-12)
    with torch.no_grad():
        accuracy = (predicted_classes(logits) == target).to(logits.dtype).mean()
        foreground = share[1:].sum() if num_classes > 1 else share.new_zeros(())
    return value, {"ce": float(value.detach()), "pixel_accuracy": float(accuracy), "fg_share": float(foreground)}


def calibrated_segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Plain cross-entropy plus the soft Dice loss of each object class, per image.

    For a network whose output becomes its next input (the mask prior): a class-balanced loss rewards
    over-segmenting a small object, and fed back frame after frame that bias grows the mask; plain cross-entropy
    is calibrated and the Dice term keeps small objects from being ignored.

    logits: (B, K+1, H, W); target: (B, H, W) int64 class ids.
    """
    num_classes = logits.shape[1]
    cross_entropy = F.cross_entropy(logits, target)
    probabilities = torch.softmax(logits, dim=1)[:, 1:]
    truth = F.one_hot(target, num_classes).permute(0, 3, 1, 2)[:, 1:].to(probabilities.dtype)
    overlap = (probabilities * truth).sum((2, 3))
    sizes = probabilities.sum((2, 3)) + truth.sum((2, 3))
    dice = (1 - (2 * overlap + 1) / (sizes + 1)).mean()
    value = cross_entropy + dice
    with torch.no_grad():
        accuracy = (predicted_classes(logits) == target).to(logits.dtype).mean()
    return value, {"ce": float(cross_entropy.detach()), "dice": float(dice.detach()), "pixel_accuracy": float(accuracy)}


def endpoint_error(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error between (B, 2, H, W) flows, over ``valid`` pixels when given."""
    error = (flow - target).norm(dim=1, keepdim=True)
    if valid is None:
        return error.mean()
    valid = valid.to(error.dtype)
    return (error * valid).sum() / valid.sum().clamp_min(1.0)


def pool_valid(
    flow: torch.Tensor, valid: torch.Tensor | None, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, 2, H, W) target flow average-pooled to ``size`` over its valid pixels only: (pooled (B, 2, h, w),
    cover (B, 1, h, w), the share of each cell's pixels that are valid). ``valid``: (B, 1, H, W) bool or None."""
    mask = torch.ones_like(flow[:, :1]) if valid is None else valid.to(flow.dtype)
    cover = F.adaptive_avg_pool2d(mask, size)
    return F.adaptive_avg_pool2d(flow * mask, size) / cover.clamp_min(1e-6), cover


def multiscale_epe(
    flows: tuple[torch.Tensor, ...],
    target: torch.Tensor,
    div_flow: float = 20.0,
    weights: tuple[float, ...] = MULTISCALE_WEIGHTS,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """Multi-scale EPE (SegFlow eq. 2 per scale).

    flows: a flow branch's predictions, finest first (FlowNetS: flow2, ..., flow6), in pixels / div_flow;
    weights: one per scale (default: FlowNetS's; each branch states its own in ``FlowEstimate.loss_weights``);
    target: (B, 2, H, W) in pixels. The target is divided by div_flow and average-pooled to each scale. The
    published weights were set for errors summed over pixels; dividing every scale's sum by the finest scale's
    pixel count keeps their balance and makes the value independent of the image size, and the result is
    rescaled (times div_flow / weights[0]) so that it reads in pixels: a flow2 that is off by 1 px everywhere,
    the other scales exact, gives 1.

    valid: (B, 1, H, W) bool, where the target is known (e.g. a teacher's label that passed its check). At each
    scale a cell's target is the mean over its valid pixels and its error is weighted by their share; the sums
    are then over valid pixels, so "reads in pixels" holds on the valid part.
    """
    if len(flows) != len(weights):
        raise ValueError(f"{len(flows)} flow scales but {len(weights)} weights")
    scaled_target = target / div_flow
    share_valid = (valid.to(target.dtype).mean() if valid is not None else target.new_ones(())).clamp_min(1e-6)
    finest = flows[0].shape[-2] * flows[0].shape[-1]
    total = flows[0].new_zeros(())
    metrics: Metrics = {}
    for index, (flow, weight) in enumerate(zip(flows, weights)):
        pooled, cover = pool_valid(scaled_target, valid, tuple(flow.shape[-2:]))
        error_sum = ((flow - pooled).norm(dim=1, keepdim=True) * cover).sum() / flow.shape[0] / share_valid
        total = total + weight * error_sum / finest
        metrics[f"epe{index + 2}"] = float(error_sum.detach() / (flow.shape[-2] * flow.shape[-1]) * div_flow)
    total = total * (div_flow / weights[0])
    metrics["multiscale_epe"] = float(total.detach())
    return total, metrics


def photometric_loss(
    image: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor | None = None, beta: float = 0.85
) -> tuple[torch.Tensor, Metrics]:
    """beta * (1 - SSIM) / 2 + (1 - beta) * |I - I'| (SSIM on 3x3 windows), mean over ``valid`` pixels.

    image, warped: (B, C, H, W) in [0, 1]; valid: (B, 1, H, W) bool, e.g. not occluded.
    """
    l1 = (image - warped).abs().mean(1, keepdim=True)
    dissimilarity = ((1 - ssim(image, warped)) / 2).clamp(0, 1).mean(1, keepdim=True)
    per_pixel = beta * dissimilarity + (1 - beta) * l1
    if valid is None:
        value = per_pixel.mean()
    else:
        mask = valid.to(per_pixel.dtype)
        value = (per_pixel * mask).sum() / mask.sum().clamp_min(1.0)
    return value, {"photometric": float(value.detach()), "l1": float(l1.mean().detach())}


def ssim(x: torch.Tensor, y: torch.Tensor, c1: float = 0.01**2, c2: float = 0.03**2) -> torch.Tensor:
    """Per-pixel SSIM over 3x3 windows (reflect-padded), images in [0, 1]."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return numerator / denominator


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor, edge_weight: float = 10.0) -> tuple[torch.Tensor, Metrics]:
    """Edge-aware first-order smoothness: |grad flow| * exp(-edge_weight * mean_c |grad I|).

    flow: (B, 2, H, W) (any scale; the image is resized to it); image: (B, C, H', W') in [0, 1].
    """
    if image.shape[-2:] != flow.shape[-2:]:
        image = F.interpolate(image, size=tuple(flow.shape[-2:]), mode="bilinear", align_corners=False)
    flow_dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs()
    flow_dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs()
    weight_x = torch.exp(-edge_weight * (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True))
    weight_y = torch.exp(-edge_weight * (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True))
    value = (flow_dx * weight_x).mean() / 2 + (flow_dy * weight_y).mean() / 2
    return value, {"smoothness": float(value.detach())}


def forward_backward_loss(flow_forward: torch.Tensor, flow_backward: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Forward-backward consistency |w_f + w_b(p + w_f)| on pixels the occlusion test calls visible
    (the occlusion term of the unsupervised flow losses). Both flows (B, 2, H, W) in pixels."""
    occluded = forward_backward_occlusion(flow_forward.detach(), flow_backward.detach())
    backward_at_target, _ = backward_warp(flow_backward, flow_forward)
    mismatch = (flow_forward + backward_at_target).norm(dim=1, keepdim=True)
    visible = (~occluded).to(mismatch.dtype)
    value = (mismatch * visible).sum() / visible.sum().clamp_min(1.0)
    return value, {"fb_consistency": float(value.detach()), "occluded_share": float(occluded.float().mean())}


def temporal_consistency_loss(
    features: torch.Tensor, next_features: torch.Tensor, flow: torch.Tensor, visible: torch.Tensor | None = None
) -> tuple[torch.Tensor, Metrics]:
    """Every Frame Counts eq. 2: features of frame t against the features of t+1 warped back by the
    flow t -> t+1, L1 over visible pixels. features: (B, C, h, w) at any stride; flow: (B, 2, H, W) in
    pixels at the image resolution (resized and rescaled to the feature grid); visible: (B, 1, H, W)."""
    height, width = features.shape[-2:]
    scale_y, scale_x = height / flow.shape[-2], width / flow.shape[-1]
    small_flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    small_flow = torch.stack([small_flow[:, 0] * scale_x, small_flow[:, 1] * scale_y], dim=1)
    warped, inside = backward_warp(next_features, small_flow)
    mask = inside.to(features.dtype)
    if visible is not None:
        mask = mask * F.interpolate(visible.to(features.dtype), size=(height, width), mode="nearest")
    error = (features - warped).abs().mean(1, keepdim=True)
    value = (error * mask).sum() / mask.sum().clamp_min(1.0)
    return value, {"temporal_consistency": float(value.detach())}
