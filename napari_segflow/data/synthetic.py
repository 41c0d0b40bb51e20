"""Procedural training videos with exact instance masks and exact forward flow.

Every layer (the background and 1-4 objects) lives in its own canonical plane with a texture and,
for objects, a star-shaped outline. At "motion clock" c a canonical point u appears in the image at

    p = A(c) (u + d(u, c)) + b(c)

with A, b an affine pose (camera motion composed with the object's own rotation, scale and
translation) and d a small smooth non-rigid deformation. Rendering inverts this map per pixel
(fixed-point iteration: d is contractive); the forward flow of a pixel is the image of its canonical
point at the next clock minus the pixel itself, so it is exact. A pixel is occluded when another layer
covers its destination in the next frame, or the destination leaves the image. "Stop-and-go": the clock
stands still for a stretch of frames, so nothing moves there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy import ndimage

from napari_segflow.data.textures import TextureBank
from napari_segflow.errors import SegFlowError

_INVERSION_STEPS = 20
_INVERSION_TOLERANCE = 1e-4  # pixels


@dataclass(frozen=True)
class SyntheticConfig:
    """Clip size and motion ranges (pixels and radians per frame)."""

    height: int = 256
    width: int = 448
    num_frames: int = 8
    min_objects: int = 1
    max_objects: int = 4
    object_radius: tuple[float, float] = (0.12, 0.28)  # fraction of min(height, width)
    object_speed: float = 6.0
    camera_speed: float = 3.0
    rotation_speed: float = 0.04
    scale_speed: float = 0.015
    deformation: float = 0.15  # deformation amplitude as a fraction of the object radius
    stop_and_go: float = 0.2  # probability that a clip holds a stretch where everything stops

    def __post_init__(self) -> None:
        if self.num_frames < 2:
            raise SegFlowError(f"SyntheticConfig.num_frames must be at least 2, got {self.num_frames}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise SegFlowError(
                f"SyntheticConfig needs 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if self.height < 16 or self.width < 16:
            raise SegFlowError(f"SyntheticConfig size {self.height}x{self.width} is too small (16x16 at least)")


@dataclass
class SyntheticVideo:
    """frames (T, H, W, 3) float32 in [0, 1]; instances (T, H, W) uint8, 0 background and 1..N the
    topmost object; flows (T-1, H, W, 2) float32 forward flow t -> t+1 in pixels (x, y); occlusions
    (T-1, H, W) bool; target_id the object to segment; moving (T-1,) bool, False inside a stop."""

    frames: np.ndarray
    instances: np.ndarray
    flows: np.ndarray
    occlusions: np.ndarray
    target_id: int
    moving: np.ndarray

    @property
    def masks(self) -> np.ndarray:
        """(T, H, W) bool masks of the target object."""
        return self.instances == self.target_id


class _Layer:
    """One textured plane with a pose and deformation over the motion clock."""

    def __init__(
        self,
        texture: np.ndarray,
        outline: tuple[float, np.ndarray, np.ndarray] | None,
        pose: np.ndarray,
        velocity: np.ndarray,
        camera: tuple[np.ndarray, np.ndarray] | None,
        deformation: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        self.texture = texture
        self.outline = outline  # radius, harmonic amplitudes, harmonic phases; None: fills the plane
        self.pose = pose  # tx, ty, angle, log scale at clock 0
        self.velocity = velocity  # per clock tick
        self.camera = camera  # (camera pose, camera velocity) composed in front, None for the camera itself
        self.deformation = deformation  # amplitudes (J, 2), frequencies (J, 2), phases (J,), rates (J,)
        self.texture_centre = np.array([texture.shape[1] / 2, texture.shape[0] / 2])

    @staticmethod
    def _affine(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tx, ty, angle, log_scale = pose
        scale = np.exp(log_scale)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return scale * rotation, np.array([tx, ty])

    def affine(self, clock: float) -> tuple[np.ndarray, np.ndarray]:
        matrix, offset = self._affine(self.pose + clock * self.velocity)
        if self.camera is not None:
            cam_matrix, cam_offset = self._affine(self.camera[0] + clock * self.camera[1])
            matrix, offset = cam_matrix @ matrix, cam_matrix @ offset + cam_offset
        return matrix, offset

    def displacement(self, u: np.ndarray, clock: float) -> np.ndarray:
        if self.deformation is None:
            return np.zeros_like(u)
        amplitudes, frequencies, phases, rates = self.deformation
        waves = np.sin(u @ frequencies.T + phases)  # (N, J)
        return (waves * np.sin(rates * clock + 1.0)) @ amplitudes

    def to_image(self, u: np.ndarray, clock: float) -> np.ndarray:
        matrix, offset = self.affine(clock)
        return (u + self.displacement(u, clock)) @ matrix.T + offset

    def to_canonical(self, p: np.ndarray, clock: float) -> np.ndarray:
        matrix, offset = self.affine(clock)
        undeformed = (p - offset) @ np.linalg.inv(matrix).T
        if self.deformation is None:
            return undeformed
        u = undeformed
        for _ in range(_INVERSION_STEPS):
            previous, u = u, undeformed - self.displacement(u, clock)
            if np.abs(u - previous).max(initial=0.0) < _INVERSION_TOLERANCE:
                break
        return u

    def contains(self, u: np.ndarray) -> np.ndarray:
        if self.outline is None:
            return np.ones(len(u), dtype=bool)
        radius, amplitudes, phases = self.outline
        angle = np.arctan2(u[:, 1], u[:, 0])
        harmonics = np.arange(2, 2 + len(amplitudes))
        boundary = radius * (1 + (amplitudes * np.cos(np.outer(angle, harmonics) + phases)).sum(1))
        return np.hypot(u[:, 0], u[:, 1]) < boundary

    def reach(self) -> float:
        """Largest canonical distance of a point of the object from its centre (plus deformation)."""
        if self.outline is None:
            return np.inf
        radius, amplitudes, _ = self.outline
        bend = 0.0 if self.deformation is None else np.abs(self.deformation[0]).sum()
        return radius * (1 + np.abs(amplitudes).sum()) + bend

    def colour(self, u: np.ndarray) -> np.ndarray:
        coords = u + self.texture_centre
        return np.stack(
            [ndimage.map_coordinates(self.texture[..., c], [coords[:, 1], coords[:, 0]], order=1, mode="mirror")
             for c in range(3)],
            axis=1,
        )


class SyntheticVideoGenerator:
    """Makes SyntheticVideos; deterministic in (config, seed). Holds the texture bank, so keep one."""

    def __init__(self, config: SyntheticConfig = SyntheticConfig()) -> None:
        self.config = config
        self.textures = TextureBank()

    def __call__(self, seed: int) -> SyntheticVideo:
        rng = np.random.default_rng(seed)
        layers = self._scene(rng)
        clocks = self._clocks(rng)
        cfg = self.config
        ys, xs = np.mgrid[0 : cfg.height, 0 : cfg.width]
        pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        frames = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), np.float32)
        instances = np.empty((cfg.num_frames, cfg.height, cfg.width), np.uint8)
        canonical = []
        for t, clock in enumerate(clocks):
            owner, coords = self._topmost(layers, pixels, clock)
            colours = np.empty((len(pixels), 3), np.float32)
            for index, layer in enumerate(layers):
                chosen = owner == index
                if chosen.any():
                    colours[chosen] = layer.colour(coords[chosen])
            frames[t] = colours.reshape(cfg.height, cfg.width, 3)
            instances[t] = owner.reshape(cfg.height, cfg.width)
            canonical.append(coords)
        flows = np.empty((cfg.num_frames - 1, cfg.height, cfg.width, 2), np.float32)
        occlusions = np.empty((cfg.num_frames - 1, cfg.height, cfg.width), bool)
        for t in range(cfg.num_frames - 1):
            owner = instances[t].ravel()
            destination = np.empty_like(pixels)
            for index, layer in enumerate(layers):
                chosen = owner == index
                if chosen.any():
                    destination[chosen] = layer.to_image(canonical[t][chosen], clocks[t + 1])
            flows[t] = (destination - pixels).reshape(cfg.height, cfg.width, 2)
            outside = (
                (destination[:, 0] < 0) | (destination[:, 0] > cfg.width - 1)
                | (destination[:, 1] < 0) | (destination[:, 1] > cfg.height - 1)
            )
            owner_there, _ = self._topmost(layers, destination, clocks[t + 1])
            occlusions[t] = (outside | (owner_there != owner)).reshape(cfg.height, cfg.width)
        moving = np.diff(clocks) != 0
        return SyntheticVideo(
            frames, instances, flows, occlusions, self._target(rng, instances, len(layers) - 1), moving
        )

    def _target(self, rng: np.random.Generator, instances: np.ndarray, count: int) -> int:
        """A random object that stays visible (at least 0.5% of the image) in every frame; when none
        does, the one whose smallest visible area is largest. Others may pass in front of it."""
        ids = np.arange(1, count + 1)
        smallest = np.array([(instances == i).sum(axis=(1, 2)).min() for i in ids])
        visible = ids[smallest >= 0.005 * instances.shape[1] * instances.shape[2]]
        if len(visible):
            return int(rng.choice(visible))
        return int(ids[np.argmax(smallest)])

    def _topmost(self, layers: list[_Layer], points: np.ndarray, clock: float) -> tuple[np.ndarray, np.ndarray]:
        """Index of the front-most layer at each point (layers are back to front, 0 = background) and the
        point's canonical coordinates in that layer."""
        owner = np.zeros(len(points), np.uint8)
        coords = layers[0].to_canonical(points, clock)
        for index, layer in enumerate(layers[1:], start=1):
            near = self._near(layer, points, clock)
            if not near.any():
                continue
            u = layer.to_canonical(points[near], clock)
            inside = layer.contains(u)
            hit = np.flatnonzero(near)[inside]
            owner[hit] = index
            coords[hit] = u[inside]
        return owner, coords

    @staticmethod
    def _near(layer: _Layer, points: np.ndarray, clock: float) -> np.ndarray:
        matrix, offset = layer.affine(clock)
        reach = layer.reach() * np.abs(np.linalg.eigvals(matrix)).max() + 2
        return (np.abs(points - offset) <= reach).all(axis=1)

    def _clocks(self, rng: np.random.Generator) -> np.ndarray:
        steps = np.ones(self.config.num_frames - 1)
        if self.config.num_frames > 3 and rng.random() < self.config.stop_and_go:
            length = int(rng.integers(1, max(2, (self.config.num_frames - 1) // 2) + 1))
            start = int(rng.integers(0, self.config.num_frames - 1 - length + 1))
            steps[start : start + length] = 0
        return np.concatenate([[0.0], np.cumsum(steps)])

    def _scene(self, rng: np.random.Generator) -> list[_Layer]:
        cfg = self.config
        side = min(cfg.height, cfg.width)
        camera_pose = np.array([cfg.width / 2, cfg.height / 2, 0.0, 0.0])
        camera_velocity = np.array(
            [*rng.uniform(-cfg.camera_speed, cfg.camera_speed, 2),
             rng.uniform(-0.3, 0.3) * cfg.rotation_speed,
             rng.uniform(-0.5, 0.5) * cfg.scale_speed]
        )
        margin = int(cfg.camera_speed * cfg.num_frames) + 16
        background = _Layer(
            texture=self.textures.sample(rng, cfg.height + 2 * margin, cfg.width + 2 * margin),
            outline=None,
            pose=camera_pose,
            velocity=camera_velocity,
            camera=None,
            deformation=None,
        )
        layers = [background]
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        for _ in range(count):
            radius = rng.uniform(*cfg.object_radius) * side
            harmonics = 3
            outline = (radius, rng.uniform(0, 0.18, harmonics) / np.arange(1, harmonics + 1),
                       rng.uniform(0, 2 * np.pi, harmonics))
            # object pose is relative to the camera centre, so it moves with the camera plus its own motion
            pose = np.array(
                [rng.uniform(-0.35, 0.35) * cfg.width, rng.uniform(-0.3, 0.3) * cfg.height,
                 rng.uniform(-np.pi, np.pi), rng.uniform(-0.1, 0.1)]
            )
            velocity = np.array(
                [*rng.uniform(-cfg.object_speed, cfg.object_speed, 2),
                 rng.uniform(-cfg.rotation_speed, cfg.rotation_speed),
                 rng.uniform(-cfg.scale_speed, cfg.scale_speed)]
            )
            waves = 2
            frequencies = rng.normal(size=(waves, 2)) * (2.5 / radius)
            amplitudes = rng.normal(size=(waves, 2)) * cfg.deformation * radius / np.sqrt(waves * 2)
            # keep d contractive (|grad d| < 0.5) so the inversion converges
            gain = (np.linalg.norm(amplitudes, axis=1) * np.linalg.norm(frequencies, axis=1)).sum()
            if gain > 0.4:
                amplitudes *= 0.4 / gain
            deformation = (amplitudes, frequencies, rng.uniform(0, 2 * np.pi, waves), rng.uniform(0.2, 0.6, waves))
            size = int(2 * radius * 1.6) + 8
            texture = self.textures.sample(rng, size, size)
            layers.append(_Layer(texture, outline, pose, velocity, (camera_pose, camera_velocity), deformation))
        return layers


def synthetic_videos(config: SyntheticConfig = SyntheticConfig(), seed: int = 0) -> Iterator[SyntheticVideo]:
    """An endless, reproducible stream of clips: seeds seed, seed + 1, ..."""
    generator = SyntheticVideoGenerator(config)
    index = seed
    while True:
        yield generator(index)
        index += 1


def write_sequence_folder(video: SyntheticVideo, folder) -> None:
    """A synthetic video as a sequence folder like the DAVIS ones: ``frames/00000.jpg``... and indexed
    ``masks/00000.png``... of its target object (id 1), the layout ``segflow train`` and ``eval`` read."""
    from pathlib import Path

    from PIL import Image

    from napari_segflow.data.io import write_label_png

    folder = Path(folder)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        Image.fromarray((frame * 255).astype(np.uint8)).save(folder / "frames" / f"{t:05d}.jpg", quality=95)
        write_label_png(video.masks[t].astype(np.uint8), folder / "masks" / f"{t:05d}.png")
