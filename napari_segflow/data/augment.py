"""Online-training augmentation (SegFlow §4.2), in torch so it runs where the model runs.

- ``random_affine`` / ``apply_affine``: one affine (shift, rotation, flip, scale) applied to every frame
  of a sequence, its masks and its flows, so the frames stay temporally consistent.
- ``deformed_next_frame``: from one frame and its labels, deform each object slightly, paste it back,
  leave the area it uncovered black; the flow from the frame to the synthesised next frame is exact
  (the displacement on the objects, zero elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_segflow.errors import SegFlowError
from napari_segflow.model.warp import pixel_grid

_INVERSION_STEPS = 20


@dataclass(frozen=True)
class AffineParams:
    """About the image centre: rotate by ``angle`` (radians), scale, then shift (pixels); flip first."""

    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False

    def matrix(self, height: int, width: int) -> torch.Tensor:
        """3x3 float64 matrix taking source pixel (x, y, 1) to its destination."""
        cx, cy = (width - 1) / 2, (height - 1) / 2
        centre = torch.tensor([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=torch.float64)
        flip = torch.diag(torch.tensor([-1.0 if self.flip else 1.0, 1.0, 1.0], dtype=torch.float64))
        c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
        rotate = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
        back = torch.tensor([[1, 0, cx + self.shift[0]], [0, 1, cy + self.shift[1]], [0, 0, 1]], dtype=torch.float64)
        return back @ rotate @ flip @ centre


@dataclass(frozen=True)
class AffineRanges:
    max_shift: float = 0.1  # fraction of the image size
    max_rotation: float = math.radians(15)
    scale: tuple[float, float] = (0.9, 1.1)
    flip_probability: float = 0.5


def random_affine(
    generator: torch.Generator, height: int, width: int, ranges: AffineRanges = AffineRanges()
) -> AffineParams:
    u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
    return AffineParams(
        angle=(2 * u[0] - 1) * ranges.max_rotation,
        scale=ranges.scale[0] + u[1] * (ranges.scale[1] - ranges.scale[0]),
        shift=((2 * u[2] - 1) * ranges.max_shift * width, (2 * u[3] - 1) * ranges.max_shift * height),
        flip=u[4] < ranges.flip_probability,
    )


def apply_affine(
    params: AffineParams,
    frames: torch.Tensor,
    labels: torch.Tensor | None = None,
    flows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Transform a sequence with one affine.

    frames: (T, C, H, W) float; labels: (T, H, W) int (nearest); flows: (T', 2, H, W) in pixels, where
    the flow at a moved pixel is the linear part of the affine applied to the flow at its source.
    Areas brought in from outside the image are 0 (black frames, background labels, zero flow).
    """
    height, width = frames.shape[-2:]
    matrix = params.matrix(height, width)
    inverse = torch.linalg.inv(matrix).to(frames.dtype)
    grid = _source_grid(inverse, height, width, frames.device)
    out_frames = F.grid_sample(frames, grid.expand(len(frames), -1, -1, -1), "bilinear", "zeros", align_corners=True)
    out_labels = None
    if labels is not None:
        sampled = F.grid_sample(
            labels[:, None].to(frames.dtype),
            grid.expand(len(labels), -1, -1, -1),
            "nearest",
            "zeros",
            align_corners=True,
        )
        out_labels = sampled[:, 0].round().to(labels.dtype)
    out_flows = None
    if flows is not None:
        moved = F.grid_sample(flows, grid.expand(len(flows), -1, -1, -1), "bilinear", "zeros", align_corners=True)
        linear = matrix[:2, :2].to(flows.dtype).to(flows.device)
        out_flows = torch.einsum("ij,tjhw->tihw", linear, moved)
    return out_frames, out_labels, out_flows


def _source_grid(inverse: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, H, W, 2) normalised grid_sample coordinates of each destination pixel's source."""
    q = pixel_grid(height, width, inverse.new_zeros(()).to(device))[0].reshape(2, -1)
    p = inverse[:2, :2].to(device) @ q + inverse[:2, 2:].to(device)
    x = 2 * p[0] / max(width - 1, 1) - 1
    y = 2 * p[1] / max(height - 1, 1) - 1
    return torch.stack([x, y], dim=-1).reshape(1, height, width, 2)


@dataclass(frozen=True)
class DeformationRanges:
    """Per object: rotation, scale change and shift of a small affine about its centroid, plus a
    smooth random displacement field; shifts and the field in pixels."""

    max_rotation: float = math.radians(6)
    max_scale_change: float = 0.06
    max_shift: float = 6.0
    field_amplitude: float = 2.0
    field_cells: int = 4


@dataclass
class DeformedPair:
    """image and next_image (C, H, W); flow (2, H, W) from image to next_image in pixels; labels and
    next_labels (H, W); occluded (H, W) bool: pixels of ``image`` not visible at their destination."""

    image: torch.Tensor
    next_image: torch.Tensor
    flow: torch.Tensor
    labels: torch.Tensor
    next_labels: torch.Tensor
    occluded: torch.Tensor


def deformed_next_frame(
    image: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    ranges: DeformationRanges = DeformationRanges(),
) -> DeformedPair:
    """Synthesise the next frame of ``image`` (C, H, W) whose objects ``labels`` (H, W), ids > 0, move."""
    if image.ndim != 3 or labels.shape != image.shape[-2:]:
        raise SegFlowError(
            f"deformed_next_frame: labels shape {tuple(labels.shape)} does not match image {tuple(image.shape)}"
        )
    object_ids = [int(i) for i in torch.unique(labels) if i > 0]
    if not object_ids:
        raise SegFlowError("deformed_next_frame: the labels hold no object (every pixel is 0)")
    height, width = labels.shape
    grid = pixel_grid(height, width, image.new_zeros((), dtype=torch.float32))[0]  # (2, H, W)
    flow = torch.zeros(2, height, width, dtype=image.dtype, device=image.device)
    next_image = image.clone()
    next_image[:, labels > 0] = 0
    next_labels = torch.zeros_like(labels)
    displacements = {}
    for object_id in object_ids:
        mine = labels == object_id
        displacement = _random_displacement(mine, generator, ranges)
        displacements[object_id] = displacement
        flow[:, mine] = displacement(grid[:, mine]).to(flow.dtype)
        # only pixels within the largest displacement of the object can receive it: invert the field there
        rows, columns = _reach(mine, ranges)
        target = grid[:, rows, columns].reshape(2, -1)
        source = target.clone()
        for _ in range(_INVERSION_STEPS):
            source = target - displacement(source)
        source_labels = _sample(labels[None, None].to(image.dtype), source, height, width, "nearest")[0, 0]
        lands = source_labels.round().to(labels.dtype) == object_id
        sampled = _sample(image[None], source, height, width, "bilinear")[0]
        region_shape = (image.shape[0], rows.stop - rows.start, columns.stop - columns.start)
        region_image = next_image[:, rows, columns].reshape(image.shape[0], -1)
        region_image[:, lands] = sampled[:, lands]
        next_image[:, rows, columns] = region_image.reshape(region_shape)
        region_labels = next_labels[rows, columns].reshape(-1)
        region_labels[lands] = object_id
        next_labels[rows, columns] = region_labels.reshape(region_shape[1:])
    destination = grid + flow.to(grid.dtype)
    inside = (
        (destination[0] >= 0) & (destination[0] <= width - 1) & (destination[1] >= 0) & (destination[1] <= height - 1)
    )
    rounded_x = destination[0].round().clamp(0, width - 1).long()
    rounded_y = destination[1].round().clamp(0, height - 1).long()
    occluded = ~inside | (next_labels[rounded_y, rounded_x] != labels)
    return DeformedPair(image, next_image, flow, labels, next_labels, occluded)


def _reach(mask: torch.Tensor, ranges: DeformationRanges) -> tuple[slice, slice]:
    """Rows and columns of the box that holds every pixel an object of ``mask`` (H, W) can move to: its bounding
    box grown by the largest displacement ``ranges`` allow (the affine part at the object's farthest pixel, the
    shift, the smooth field with a bicubic overshoot) and a pixel of rounding."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    centre_x, centre_y = xs.float().mean(), ys.float().mean()
    radius = float(torch.sqrt((xs - centre_x) ** 2 + (ys - centre_y) ** 2).max())
    largest_scale = 1 + ranges.max_scale_change
    linear = ranges.max_scale_change + largest_scale * (
        math.sin(ranges.max_rotation) + 1 - math.cos(ranges.max_rotation)
    )
    margin = math.ceil(linear * radius + math.sqrt(2) * (ranges.max_shift + 1.5 * ranges.field_amplitude) + 2)
    height, width = mask.shape
    rows = slice(max(0, int(ys.min()) - margin), min(height, int(ys.max()) + margin + 1))
    columns = slice(max(0, int(xs.min()) - margin), min(width, int(xs.max()) + margin + 1))
    return rows, columns


def _sample(values: torch.Tensor, points: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """values (1, C, H, W) at points (2, N) in pixels -> (1, C, N)."""
    x = 2 * points[0] / max(width - 1, 1) - 1
    y = 2 * points[1] / max(height - 1, 1) - 1
    grid = torch.stack([x, y], dim=-1).reshape(1, 1, -1, 2).to(values.dtype)
    return F.grid_sample(values, grid, mode, "zeros", align_corners=True)[:, :, 0]


def _random_displacement(mask: torch.Tensor, generator: torch.Generator, ranges: DeformationRanges):
    """A smooth, contractive displacement field d(p) for one object, as a function of points (2, N)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    centre = torch.stack([xs.float().mean(), ys.float().mean()])
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    angle = (2 * u[0] - 1) * ranges.max_rotation
    scale = 1 + (2 * u[1] - 1) * ranges.max_scale_change
    device = mask.device  # the generator draws on the CPU; the field works where the frames are
    shift = torch.tensor([(2 * u[2] - 1) * ranges.max_shift, (2 * u[3] - 1) * ranges.max_shift], device=device)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    linear = torch.tensor([[c - 1, -s], [s, c - 1]], dtype=torch.float32, device=device)
    cells = ranges.field_cells
    coarse = ((torch.rand(1, 2, cells, cells, generator=generator) * 2 - 1) * ranges.field_amplitude).to(device)
    height, width = mask.shape

    def displacement(points: torch.Tensor) -> torch.Tensor:
        points = points.float()
        affine = linear @ (points - centre[:, None]) + shift[:, None]
        smooth = _sample(coarse, points, height, width, "bicubic")[0]
        return affine + smooth

    return displacement
