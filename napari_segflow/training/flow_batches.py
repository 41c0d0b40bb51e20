"""Batches of frame pairs for the flow phases, drawn from four kinds of source:

- ``warped``: real frames warped by random smooth motion with pasted moving shapes (exact flow,
  data/warped_pairs.py), with motion as large as the curriculum allows at this step;
- ``teacher``: consecutive real frames with the DIS teacher's cached labels (valid where they pass the
  forward-backward test; training/teacher.py);
- ``synthetic``: the procedural videos (exact flow, occlusion; data/synthetic.py);
- ``unsupervised``: consecutive real frames without labels, for the photometric, smoothness and occlusion
  losses of Every Frame Counts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
from napari_segflow.data.warped_pairs import FlowPair, WarpRanges, make_warped_pair
from napari_segflow.errors import SegFlowError
from napari_segflow.training.teacher import TeacherCache

FLOW_SOURCES = ("warped", "teacher", "synthetic", "unsupervised")


def frame_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 (possibly a read-only memory map) -> (3, H, W) float in [0, 1], a copy."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0


def _covering(tensors: list[torch.Tensor], size: tuple[int, int], flow_index: int | None) -> list[torch.Tensor]:
    """Scale (C, H, W) maps up (if needed) so that a ``size`` crop fits; a flow map's values scale too."""
    height, width = tensors[0].shape[-2:]
    scale = max(size[0] / height, size[1] / width, 1.0)
    if scale == 1.0:
        return tensors
    new = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
    out = []
    for index, tensor in enumerate(tensors):
        mode = "nearest" if tensor.dtype == torch.bool else "bilinear"
        resized = F.interpolate(tensor[None].float(), size=new, mode=mode, **({} if mode == "nearest" else
                                                                             {"align_corners": False}))[0]
        if index == flow_index:
            resized = resized * torch.tensor([new[1] / width, new[0] / height]).view(2, 1, 1)
        out.append(resized.bool() if tensor.dtype == torch.bool else resized)
    return out


class FlowBatches:
    """Draws (B, ...) FlowPairs of one kind at ``size``; ``flow`` is None for the unsupervised kind."""

    def __init__(self, cache: TeacherCache, names: list[str], size: tuple[int, int], seed: int,
                 ranges: WarpRanges = WarpRanges()) -> None:
        if not names:
            raise SegFlowError("the flow phases need at least one real source in the teacher cache")
        self.cache, self.names, self.size, self.ranges = cache, list(names), size, ranges
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)
        self.synthetic = SyntheticVideoGenerator(
            SyntheticConfig(height=size[0], width=size[1], num_frames=2, stop_and_go=0.0)
        )

    def reseed(self, seed: int) -> None:
        """Start a new random stream (a worker process's copy draws its own batches)."""
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)

    def draw(self, kind: str, batch_size: int, max_motion: float) -> FlowPair:
        if kind not in FLOW_SOURCES:
            raise SegFlowError(f"unknown flow source {kind!r}; choose from {', '.join(FLOW_SOURCES)}")
        pairs = [getattr(self, f"_{kind}")(max_motion) for _ in range(batch_size)]
        flows = None if kind == "unsupervised" else torch.cat([p.flow for p in pairs])
        return FlowPair(
            torch.cat([p.first for p in pairs]), torch.cat([p.second for p in pairs]), flows,
            torch.cat([p.valid for p in pairs]),
        )

    # -- one pair of each kind --------------------------------------------------------------------------

    def _random_frame(self) -> np.ndarray:
        name = self.names[int(self.rng.integers(len(self.names)))]
        index = int(self.rng.integers(self.cache.pair_count(name) + 1))
        first, second, _, _ = self.cache.pair(name, min(index, self.cache.pair_count(name) - 1))
        return second if index == self.cache.pair_count(name) else first

    def _crop(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        height, width = tensors[0].shape[-2:]
        top = int(self.rng.integers(0, height - self.size[0] + 1))
        left = int(self.rng.integers(0, width - self.size[1] + 1))
        return [t[..., top : top + self.size[0], left : left + self.size[1]] for t in tensors]

    def _warped(self, max_motion: float) -> FlowPair:
        image = self._crop(_covering([frame_to_tensor(self._random_frame())], self.size, None))[0]
        textures = [frame_to_tensor(self._random_frame()) for _ in range(2)]
        ranges = WarpRanges(**{**self.ranges.__dict__, "max_motion": max_motion})
        return make_warped_pair(image, textures, self.torch_generator, ranges)

    def _real_pair(self, with_labels: bool) -> FlowPair:
        name = self.names[int(self.rng.integers(len(self.names)))]
        first, second, flow, valid = self.cache.pair(name, int(self.rng.integers(self.cache.pair_count(name))))
        tensors = [frame_to_tensor(first), frame_to_tensor(second), torch.from_numpy(np.array(flow)).permute(2, 0, 1),
                   torch.from_numpy(np.array(valid))[None]]
        first_t, second_t, flow_t, valid_t = self._crop(_covering(tensors, self.size, flow_index=2))
        if self.rng.random() < 0.5:  # mirror: x motion changes sign
            first_t, second_t, flow_t, valid_t = (t.flip(-1) for t in (first_t, second_t, flow_t, valid_t))
            flow_t = flow_t * torch.tensor([-1.0, 1.0]).view(2, 1, 1)
        gain = 1 + float(self.rng.uniform(-self.ranges.photometric, self.ranges.photometric))
        first_t, second_t = (first_t * gain).clamp(0, 1), (second_t * gain).clamp(0, 1)
        return FlowPair(first_t[None], second_t[None], flow_t[None] if with_labels else None, valid_t[None])

    def _teacher(self, max_motion: float) -> FlowPair:
        return self._real_pair(with_labels=True)

    def _unsupervised(self, max_motion: float) -> FlowPair:
        return self._real_pair(with_labels=False)

    def _synthetic(self, max_motion: float) -> FlowPair:
        clip = self.synthetic(int(self.rng.integers(2**31)))
        first, second = (torch.from_numpy(f).permute(2, 0, 1)[None] for f in clip.frames[:2])
        flow = torch.from_numpy(clip.flows[0]).permute(2, 0, 1)[None]
        return FlowPair(first, second, flow, torch.ones(1, 1, *self.size, dtype=torch.bool))
