"""Frame pairs with exact flow made from real frames: real texture, known motion.

A real frame I becomes the *second* frame. The first frame samples I at q + g(q) for a smooth random field g
(a global affine motion plus a low-frequency non-rigid field), so the flow from the first frame to the second is
g, exactly. Shapes cut from other real frames are then pasted into both frames at poses of their own: inside a
shape the flow is that shape's own motion, and the background it covers in the second frame is occluded there,
as in real video. Everything runs on tensors (grid_sample), fast enough to make every training batch afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_segflow.model.warp import pixel_grid


@dataclass(frozen=True)
class WarpRanges:
    """How far things move (pixels of the output size) and what else varies.

    max_motion: the largest displacement of the global motion and of each shape; the curriculum raises it.
    A pair's own scale is drawn uniformly in [0, max_motion], so small motions stay common as it grows.
    """

    max_motion: float = 16.0
    max_rotation: float = 0.1  # radians
    max_zoom: float = 0.08  # relative scale change between the frames
    nonrigid_share: float = 0.35  # of the pair's motion scale, for the low-frequency field
    max_shapes: int = 3
    shape_size: tuple[float, float] = (0.15, 0.4)  # fraction of min(height, width)
    photometric: float = 0.08  # brightness / contrast jitter between the two frames


@dataclass
class FlowPair:
    """first, second (B, 3, H, W) in [0, 1]; flow (B, 2, H, W) in pixels from first to second; valid (B, 1, H, W)
    bool where the flow is known (its target lies inside the second frame)."""

    first: torch.Tensor
    second: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor


def _uniform(generator: torch.Generator, low: float, high: float, size=()) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def _affine_field(height: int, width: int, shift, rotation, zoom, centre) -> torch.Tensor:
    """(2, H, W) displacement of the map p -> centre + (1 + zoom) R(rotation) (p - centre) + shift."""
    grid = pixel_grid(height, width, torch.zeros(1))[0]
    cx, cy = centre
    x, y = grid[0] - cx, grid[1] - cy
    cos, sin = math.cos(rotation), math.sin(rotation)
    scale = 1 + zoom
    new_x = scale * (cos * x - sin * y) + cx + shift[0]
    new_y = scale * (sin * x + cos * y) + cy + shift[1]
    return torch.stack([new_x - grid[0], new_y - grid[1]])


def random_background_flow(generator: torch.Generator, height: int, width: int, motion: float, ranges: WarpRanges):
    """(2, H, W): a global affine motion plus a smooth non-rigid field, displacements up to about ``motion``."""
    angle = float(_uniform(generator, 0, 2 * math.pi))
    length = float(_uniform(generator, 0, 1)) * motion
    rotation = float(_uniform(generator, -1, 1)) * ranges.max_rotation * min(1.0, motion / 8)
    zoom = float(_uniform(generator, -1, 1)) * ranges.max_zoom * min(1.0, motion / 8)
    centre = (float(_uniform(generator, 0, width)), float(_uniform(generator, 0, height)))
    field = _affine_field(height, width, (length * math.cos(angle), length * math.sin(angle)), rotation, zoom, centre)
    coarse = torch.randn(1, 2, 3, 4, generator=generator) * ranges.nonrigid_share * motion / 2
    field = field + F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return field


def _shape_mask(generator: torch.Generator, size: int) -> torch.Tensor:
    """(size, size) float mask of a random star-shaped blob."""
    grid = pixel_grid(size, size, torch.zeros(1))[0]
    centre = (size - 1) / 2
    x, y = grid[0] - centre, grid[1] - centre
    angle = torch.atan2(y, x)
    radius = torch.full_like(angle, 0.8)
    for harmonic in (2, 3, 5):
        radius = radius + 0.12 * float(_uniform(generator, -1, 1)) * torch.cos(
            harmonic * angle + float(_uniform(generator, 0, 2 * math.pi))
        )
    return ((x**2 + y**2).sqrt() <= radius * centre).float()


def _place(texture: torch.Tensor, height: int, width: int, centre, rotation: float, scale: float) -> torch.Tensor:
    """Render a (C, s, s) texture into an (C, H, W) canvas: canvas point p shows texture point
    R(-rotation) (p - centre) / scale + texture centre."""
    size = texture.shape[-1]
    grid = pixel_grid(height, width, texture)[0]
    x, y = grid[0] - centre[0], grid[1] - centre[1]
    cos, sin = math.cos(-rotation), math.sin(-rotation)
    u = (cos * x - sin * y) / scale + (size - 1) / 2
    v = (sin * x + cos * y) / scale + (size - 1) / 2
    normalised = torch.stack([2 * u / (size - 1) - 1, 2 * v / (size - 1) - 1], dim=-1)[None]
    return F.grid_sample(texture[None], normalised, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def _shape_flow(height: int, width: int, pose_first, pose_second, like: torch.Tensor) -> torch.Tensor:
    """(2, H, W) displacement of a shape's points from their place in the first frame to the second."""
    grid = pixel_grid(height, width, like)[0]
    (c1, r1, s1), (c2, r2, s2) = pose_first, pose_second
    x, y = grid[0] - c1[0], grid[1] - c1[1]
    # first-frame canvas -> shape coordinates -> second-frame canvas
    cos, sin = math.cos(-r1), math.sin(-r1)
    u, v = (cos * x - sin * y) / s1, (sin * x + cos * y) / s1
    cos, sin = math.cos(r2), math.sin(r2)
    new_x = s2 * (cos * u - sin * v) + c2[0]
    new_y = s2 * (sin * u + cos * v) + c2[1]
    return torch.stack([new_x - grid[0], new_y - grid[1]])


def _jitter(image: torch.Tensor, generator: torch.Generator, amount: float) -> torch.Tensor:
    gain = 1 + float(_uniform(generator, -amount, amount))
    offset = float(_uniform(generator, -amount, amount)) / 2
    return (image * gain + offset).clamp(0, 1)


def make_warped_pair(
    image: torch.Tensor, textures: list[torch.Tensor], generator: torch.Generator, ranges: WarpRanges
) -> FlowPair:
    """One pair from a real (3, H, W) image in [0, 1] and real images to cut shapes from (each (3, h, w))."""
    _, height, width = image.shape
    motion = float(_uniform(generator, 0, 1)) * ranges.max_motion
    flow = random_background_flow(generator, height, width, motion, ranges)
    # where the warp reads outside the real frame, edge colours stand in (the flow there is marked not valid)
    first, second = _clamped_warp(image, flow), image.clone()
    shapes = int(torch.randint(0, ranges.max_shapes + 1, (1,), generator=generator))
    for _ in range(shapes if textures else 0):
        texture_image = textures[int(torch.randint(0, len(textures), (1,), generator=generator))]
        side = int(min(height, width) * float(_uniform(generator, *ranges.shape_size)))
        side = max(8, min(side, texture_image.shape[-2], texture_image.shape[-1]))
        top = int(torch.randint(0, texture_image.shape[-2] - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, texture_image.shape[-1] - side + 1, (1,), generator=generator))
        texture = texture_image[:, top : top + side, left : left + side]
        layer = torch.cat([texture, _shape_mask(generator, side)[None]])
        centre = (float(_uniform(generator, 0, width)), float(_uniform(generator, 0, height)))
        rotation = float(_uniform(generator, -math.pi, math.pi))
        own = float(_uniform(generator, 0, 1)) * ranges.max_motion
        angle = float(_uniform(generator, 0, 2 * math.pi))
        pose_first = (centre, rotation, 1.0)
        pose_second = (
            (centre[0] + own * math.cos(angle), centre[1] + own * math.sin(angle)),
            rotation + float(_uniform(generator, -1, 1)) * ranges.max_rotation,
            1.0 + float(_uniform(generator, -1, 1)) * ranges.max_zoom,
        )
        in_first = _place(layer, height, width, *pose_first)
        in_second = _place(layer, height, width, *pose_second)
        alpha_first, alpha_second = in_first[3:] > 0.5, in_second[3:] > 0.5
        first = torch.where(alpha_first, in_first[:3], first)
        second = torch.where(alpha_second, in_second[:3], second)
        flow = torch.where(alpha_first, _shape_flow(height, width, pose_first, pose_second, image), flow)
    first = _jitter(first, generator, ranges.photometric)
    second = _jitter(second, generator, ranges.photometric)
    target = pixel_grid(height, width, flow)[0] + flow
    valid = (target[0] >= 0) & (target[0] <= width - 1) & (target[1] >= 0) & (target[1] <= height - 1)
    return FlowPair(first[None], second[None], flow[None], valid[None, None])


def _clamped_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at p + flow(p) with the sample point clamped to the image (edge colours outside)."""
    _, height, width = image.shape
    target = pixel_grid(height, width, flow)[0] + flow
    x = target[0].clamp(0, width - 1)
    y = target[1].clamp(0, height - 1)
    normalised = torch.stack([2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1], dim=-1)[None]
    return F.grid_sample(image[None], normalised, mode="bilinear", align_corners=True)[0]
