"""Training windows: short runs of consecutive frames at the training resolution, as tensors.

Real windows come from DAVIS sequences (masks, no flow); synthetic ones carry exact flow. A share of
windows is "stop-and-go" (Tokmakov §5.2): the first or last frames repeat, so nothing moves there.

A share of windows (``distractors``) holds objects that are not the one to segment: a real window gets an object
cut from another sequence, drifting across it and labelled background (hiding the target where it passes in
front); a synthetic window keeps one of its objects as the target and the others as background. With a mask
prior the network then learns to follow the object its prior names rather than every object that moves.

Every window moves under one random affine (its zoom range configurable) and, with ``photometric`` above 0, is
relit as a whole first (``data/photometric.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_segflow.data.augment import AffineRanges, apply_affine, random_affine
from napari_segflow.data.photometric import jitter_photometric
from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
from napari_segflow.training.davis import Sequence


@dataclass
class Window:
    """frames (T, 3, H, W) in [0, 1]; masks (T, H, W) int64 (0/1); flows (T-1, 2, H, W) in pixels or None;
    valid (H, W) bool: not padding."""

    frames: torch.Tensor
    masks: torch.Tensor
    flows: torch.Tensor | None
    valid: torch.Tensor


def stop_and_go_indices(length: int, rng: np.random.Generator) -> list[int]:
    """Frame indices 0..length-1 where the first or the last frames are held (repeated)."""
    hold = int(rng.integers(1, max(2, length // 2) + 1))
    moving = list(range(length - hold))
    if rng.random() < 0.5:
        return [0] * hold + moving
    return moving + [moving[-1]] * hold


class WindowSampler:
    """Draws augmented windows from real sequences and from the synthetic generator."""

    def __init__(
        self,
        sequences: list[Sequence],
        size: tuple[int, int],
        length: int,
        seed: int,
        stop_and_go: float = 0.2,
        affine: AffineRanges = AffineRanges(),
        distractors: float = 0.0,
        photometric: float = 0.0,
    ) -> None:
        self.sequences = sequences
        self.photometric = photometric
        self.size = size
        self.length = length
        self.stop_and_go = stop_and_go
        self.distractors = distractors
        self.affine = affine
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)
        self.synthetic = SyntheticVideoGenerator(
            SyntheticConfig(height=size[0], width=size[1], num_frames=length, stop_and_go=0.0)
        )

    def reseed(self, seed: int) -> None:
        """Start a new random stream (a worker process's copy draws its own batches)."""
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)

    def _indices(self) -> list[int]:
        if self.rng.random() < self.stop_and_go:
            return stop_and_go_indices(self.length, self.rng)
        return list(range(self.length))

    def real(self) -> Window:
        sequence = self.sequences[int(self.rng.integers(len(self.sequences)))]
        span = min(self.length, len(sequence))
        start = int(self.rng.integers(0, len(sequence) - span + 1))
        step = -1 if self.rng.random() < 0.5 else 1  # time runs either way
        order = [start + i for i in range(span)][::step]
        picks = [order[min(i, span - 1)] for i in self._indices()]
        frames = np.stack([sequence.frame(i) for i in picks])
        masks = np.stack([(sequence.mask(i) > 0).astype(np.uint8) for i in picks])
        if self.distractors and len(self.sequences) > 1 and self.rng.random() < self.distractors:
            donors = [s for s in self.sequences if s is not sequence]
            frames, masks = self._with_distractor(frames, masks, donors[int(self.rng.integers(len(donors)))])
        geometry = self._geometry(frames.shape[1:3])
        images = geometry.frames_to_network(frames)
        labels = geometry.labels_to_network(masks)
        return self._augment(images, labels, None, geometry.valid_region())

    def synthetic_window(self) -> Window:
        clip = self.synthetic(int(self.rng.integers(2**31)))
        picks = self._indices()
        frames = torch.from_numpy(clip.frames[picks]).permute(0, 3, 1, 2).contiguous()
        # the generic offline model learns "moving objects": every object is foreground, except in a window
        # with distractors, where only the clip's target is
        if self.distractors and clip.instances.max() > 1 and self.rng.random() < self.distractors:
            masks = torch.from_numpy(clip.masks[picks].astype(np.int64))
        else:
            masks = torch.from_numpy((clip.instances[picks] > 0).astype(np.int64))
        flows = []
        for a, b in zip(picks[:-1], picks[1:]):
            flows.append(torch.from_numpy(clip.flows[a]) if b == a + 1 else torch.zeros(self.size + (2,)))
        flow_tensor = torch.stack(flows).permute(0, 3, 1, 2).contiguous()
        return self._augment(frames, masks, flow_tensor, torch.ones(self.size, dtype=torch.bool))

    def _with_distractor(self, frames: np.ndarray, masks: np.ndarray, donor: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """frames (T, H, W, 3) uint8 and masks (T, H, W) with an object cut from one frame of ``donor``, scaled
        and maybe mirrored, drifting across the frames in front of everything; the target's mask loses what it
        hides. A donor frame without an object leaves the window as it was."""
        rng = self.rng
        index = int(rng.integers(len(donor)))
        donor_mask = donor.mask(index) > 0
        if not donor_mask.any():
            return frames, masks
        rows, columns = np.nonzero(donor_mask)
        box = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
        cut, cut_mask = donor.frame(index)[box], donor_mask[box]
        height, width = frames.shape[1:3]
        # no larger than half the frame each way: a distractor, not a new background
        scale = rng.uniform(0.5, 1.0) * min(1.0, 0.5 * height / cut.shape[0], 0.5 * width / cut.shape[1])
        pick_rows = (np.arange(max(1, round(cut.shape[0] * scale))) / scale).astype(int)
        pick_columns = (np.arange(max(1, round(cut.shape[1] * scale))) / scale).astype(int)
        if rng.random() < 0.5:
            pick_columns = pick_columns[::-1]
        cut, cut_mask = cut[pick_rows][:, pick_columns], cut_mask[pick_rows][:, pick_columns]
        top, left = rng.uniform(-0.25, 0.75) * height, rng.uniform(-0.25, 0.75) * width
        velocity = rng.uniform(-0.04, 0.04, size=2) * (height, width)
        frames, masks = frames.copy(), masks.copy()
        for t in range(len(frames)):
            y, x = round(top + t * velocity[0]), round(left + t * velocity[1])
            y0, x0 = max(0, y), max(0, x)
            y1, x1 = min(height, y + cut.shape[0]), min(width, x + cut.shape[1])
            if y1 <= y0 or x1 <= x0:
                continue
            inside = cut_mask[y0 - y:y1 - y, x0 - x:x1 - x]
            frames[t, y0:y1, x0:x1][inside] = cut[y0 - y:y1 - y, x0 - x:x1 - x][inside]
            masks[t, y0:y1, x0:x1][inside] = 0
        return frames, masks

    def _geometry(self, frame_size: tuple[int, int]) -> WorkingResolution:
        return WorkingResolution(frame_size[0], frame_size[1], long_side=max(self.size))

    def _augment(self, frames, masks, flows, valid) -> Window:
        frames = jitter_photometric(frames, self.torch_generator, self.photometric)
        frames, masks, flows = _fit(frames, masks, flows, self.size)
        valid = _fit_mask(valid, self.size)
        params = random_affine(self.torch_generator, self.size[0], self.size[1], self.affine)
        frames, moved, flows = apply_affine(params, frames, torch.cat([masks, valid[None].long()]), flows)
        return Window(frames, moved[:-1], flows, moved[-1].bool())


def _fit(frames, masks, flows, size):
    """Crop or zero-pad (bottom/right) to ``size``."""
    height, width = size
    h, w = frames.shape[-2:]
    if (h, w) == (height, width):
        return frames, masks, flows
    pad = (0, max(0, width - w), 0, max(0, height - h))
    frames = torch.nn.functional.pad(frames[..., :height, :width], pad)
    masks = torch.nn.functional.pad(masks[..., :height, :width], pad)
    if flows is not None:
        flows = torch.nn.functional.pad(flows[..., :height, :width], pad)
    return frames, masks, flows


def _fit_mask(valid, size):
    height, width = size
    out = torch.zeros(size, dtype=torch.bool)
    h, w = min(height, valid.shape[0]), min(width, valid.shape[1])
    out[:h, :w] = valid[:h, :w]
    return out


def collate(windows: list[Window]) -> Window:
    flows = None if any(w.flows is None for w in windows) else torch.stack([w.flows for w in windows])
    return Window(
        torch.stack([w.frames for w in windows]),
        torch.stack([w.masks for w in windows]),
        flows,
        torch.stack([w.valid for w in windows]),
    )
