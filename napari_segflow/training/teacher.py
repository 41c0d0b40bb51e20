"""Flow labels for real video from a classical teacher, computed once and cached on disk.

OpenCV's DIS optical flow at a fine setting (the medium preset down to full resolution) labels every pair of
consecutive frames in both directions; the forward-backward test (model/warp.py) marks the pixels where the two
disagree, which are occlusions or teacher mistakes, as not valid. Training then reads frames and labels from
memory-mapped arrays instead of running the teacher.

Cache layout, one folder per source (a training sequence or a video):
    <cache>/<name>/frames.npy   (T, H, W, 3) uint8
    <cache>/<name>/flow.npy     (T-1, H, W, 2) float16, pixels, frame t -> t+1
    <cache>/<name>/valid.npy    (T-1, H, W) bool
    <cache>/<name>/teacher.json the teacher's settings (a cache made with other settings is refused)
A source is written to a temporary folder and renamed into place, so an interrupted build leaves no half source.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from napari_segflow.errors import SegFlowError


@dataclass(frozen=True)
class TeacherSettings:
    method: str = "opencv-dis"
    preset: str = "medium"
    finest_scale: int = 0  # 0: refine down to full resolution (the medium preset stops one level above)
    long_side: int = 432  # sources larger than this are scaled down first (the DAVIS frames are 427 wide)
    occlusion_alpha1: float = 0.01
    occlusion_alpha2: float = 0.5


def dis_flow(first: np.ndarray, second: np.ndarray, settings: TeacherSettings = TeacherSettings()) -> np.ndarray:
    """(H, W, 2) float32 flow first -> second of two (H, W, 3) uint8 frames by OpenCV DIS."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(settings.finest_scale)
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (first, second)]
    return dis.calc(grey[0], grey[1], None)


def label_pair(first: np.ndarray, second: np.ndarray, settings: TeacherSettings = TeacherSettings()):
    """(flow (H, W, 2) float32, valid (H, W) bool): the teacher's forward flow and where it passes the
    forward-backward test."""
    import torch

    from napari_segflow.model.warp import forward_backward_occlusion

    forward = dis_flow(first, second, settings)
    backward = dis_flow(second, first, settings)
    as_tensor = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None]  # noqa: E731
    occluded = forward_backward_occlusion(
        as_tensor(forward), as_tensor(backward), settings.occlusion_alpha1, settings.occlusion_alpha2
    )
    return forward, ~occluded[0, 0].numpy()


def _fit_long_side(frame: np.ndarray, long_side: int) -> np.ndarray:
    import cv2

    height, width = frame.shape[:2]
    if max(height, width) <= long_side:
        return frame
    scale = long_side / max(height, width)
    return cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


class TeacherCache:
    """Frames and teacher labels of several sources, memory-mapped."""

    def __init__(self, folder, settings: TeacherSettings = TeacherSettings()) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def has(self, name: str) -> bool:
        return (self.folder / name / "teacher.json").is_file()

    def build(
        self,
        sources: Iterable[tuple[str, object]],
        report: Callable[[str], None] = lambda message: None,
    ) -> None:
        """Label every source not yet cached. ``sources``: (name, frames) with frames a lazy (T, H, W, 3) uint8
        sequence (a VideoFrames or an array)."""
        for name, frames in sources:
            if self.has(name):
                continue
            count = len(frames)
            if count < 2:
                raise SegFlowError(f"teacher source {name!r} has {count} frame(s); a pair needs two")
            report(f"teacher: labelling {name} ({count - 1} pairs)")
            images = np.stack([_fit_long_side(np.asarray(frames[i]), self.settings.long_side) for i in range(count)])
            labels = [label_pair(images[t], images[t + 1], self.settings) for t in range(count - 1)]
            staging = self.folder / f".{name}.{os.getpid()}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            np.save(staging / "frames.npy", images)
            np.save(staging / "flow.npy", np.stack([f for f, _ in labels]).astype(np.float16))
            np.save(staging / "valid.npy", np.stack([v for _, v in labels]))
            (staging / "teacher.json").write_text(json.dumps(asdict(self.settings), indent=1))
            os.replace(staging, self.folder / name)

    def _load(self, name: str):
        if name not in self._arrays:
            folder = self.folder / name
            if not self.has(name):
                raise SegFlowError(f"{folder}: no teacher labels for {name!r}; build the cache first")
            stored = json.loads((folder / "teacher.json").read_text())
            if stored != asdict(self.settings):
                raise SegFlowError(f"{folder}: labelled with other teacher settings ({stored}); delete it to relabel")
            self._arrays[name] = tuple(
                np.load(folder / f, mmap_mode="r") for f in ("frames.npy", "flow.npy", "valid.npy")
            )
        return self._arrays[name]

    def pair_count(self, name: str) -> int:
        return len(self._load(name)[1])

    def pair(self, name: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(first, second (H, W, 3) uint8, flow (H, W, 2) float32, valid (H, W) bool) of pair ``index``."""
        frames, flow, valid = self._load(name)
        return frames[index], frames[index + 1], np.asarray(flow[index], dtype=np.float32), np.asarray(valid[index])
