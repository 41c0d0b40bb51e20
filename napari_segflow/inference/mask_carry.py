"""The user's masks carried a few frames by DIS flow, where the flow can be trusted, and blended into the network's.

Between two user frames a few frames apart, a true mask carried by a good flow beats the network's segmentation
(the simulated annotator's DIS peer passes the session after three corrections), but a flow that fails on fast,
thin parts carries the mask off the object (docs/experiments.md: blended without a check, it cost dog-agility
20 points). So each frame near a user frame takes the user's mask carried from the nearest one, step by step along
OpenCV's DIS flow, and keeps it only where the flow passes the forward-backward check the DIS teacher of offline
training uses (model/warp.py; Sundaram et al., ECCV 2010: following the flow to the other frame and back must land
where it started, within a tolerance that grows with the motion). A pixel that fails once stays failed further
along the carry. Each frame's probabilities become

    p = w * carried + (1 - w) * network,   w = DECAY ** (frames from the user frame) * (passed the check)

so the carry fades with distance and is gone after ``REACH`` frames. The flow is estimated on the working grid
(what the network sees) and the carried mask brought back to the frame's size. Needs OpenCV (optional, as for
the benches' peers): without it ``UserMaskCarrier.available`` is False and a session keeps the network's masks.
DECAY was chosen on the validation sequences' simulated corrections (README, "The user's masks carried").
"""

from __future__ import annotations

import numpy as np
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.model.warp import backward_warp, forward_backward_occlusion
from napari_segflow.objects import ObjectChannels
from napari_segflow.opencv import has_opencv, opencv

#: the carry's weight a frame further from the user frame (0.5, 0.8, 0.9 measured; 0.8 best), and how far it goes
DECAY = 0.8
REACH = 20


def _as_tensor(flow: np.ndarray) -> torch.Tensor:
    """(h, w, 2) -> (1, 2, h, w)."""
    return torch.from_numpy(flow).permute(2, 0, 1)[None]


class UserMaskCarrier:
    """Carries the user's masks of one run (``annotations``: frame -> labels) over ``frames`` and blends them
    into the run's results (``blend``, once a frame). Each carry is computed once, step by step from its user
    frame; a step's mask is let go once its frame is blended, so a carry holds at most ``REACH`` working-grid
    masks (float16)."""

    def __init__(self, frames, annotations: dict[int, np.ndarray], objects: ObjectChannels,
                 geometry: WorkingResolution) -> None:
        self.frames, self.objects, self.geometry = frames, objects, geometry
        self.annotations = dict(annotations)
        # (user frame, step +1 or -1) -> [(objects (K, h, w), passed (h, w)) a frame, None once blended]
        self._carries: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray] | None]] = {}
        self._ends: dict[tuple[int, int], np.ndarray] = {}  # each carry's last frame, grey, on the working grid
        self._estimator = None  # one DIS estimator for every step of every carry, made at the first step

    @staticmethod
    def available() -> bool:
        return has_opencv()

    def _grey_frame(self, index: int) -> np.ndarray:
        cv2 = opencv("carrying the user's masks")
        frame = np.asarray(self.frames[index])
        if frame.ndim == 3:
            frame = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
        height, width = self.geometry.scaled
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)

    def carried(self, user: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's objects of frame ``user`` carried to frame ``index`` (0 < |index - user| <= REACH):
        (K, h, w) object shares and (h, w), 1 where every step passed the check (float16, working grid)."""
        cv2 = opencv("carrying the user's masks")
        step = 1 if index > user else -1
        key = (user, step)
        chain = self._carries.setdefault(key, [])
        if not chain:
            channels = self.objects.to_channels(self.annotations[user], f"the annotation of frame {user}")
            first = self._one_hot_objects(channels).astype(np.float16)
            chain.append((first, np.ones(self.geometry.scaled, np.float16)))
            self._ends[key] = self._grey_frame(user)
        while len(chain) <= abs(index - user):
            if self._estimator is None:
                self._estimator = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            here = self._grey_frame(user + step * len(chain))
            there = self._ends[key]
            back = _as_tensor(self._estimator.calc(here, there, None))
            forth = _as_tensor(self._estimator.calc(there, here, None))
            objects, passed = chain[-1]
            previous = torch.from_numpy(np.concatenate([objects, passed[None]]).astype(np.float32))[None]
            moved = backward_warp(previous, back)[0][0]
            trusted = ~forward_backward_occlusion(back, forth)[0, 0]
            chain.append((moved[:-1].numpy().astype(np.float16),
                          (moved[-1] * trusted).numpy().astype(np.float16)))
            self._ends[key] = here
        carry = chain[abs(index - user)]
        if carry is None:
            raise ValueError(f"frame {index} was blended with frame {user}'s carry already")
        return carry

    def _let_go(self, user: int, index: int) -> None:
        chain = self._carries[(user, 1 if index > user else -1)]
        if abs(index - user) < len(chain) - 1:  # the last one is where the carry goes on from
            chain[abs(index - user)] = None

    def _one_hot_objects(self, channels: np.ndarray) -> np.ndarray:
        """(H, W) channel indices -> (K, h, w) float32 object shares on the working grid."""
        shares = np.stack([(channels == k).astype(np.float32) for k in range(1, self.objects.num_objects + 1)])
        tensor = torch.from_numpy(shares)[None]
        return torch.nn.functional.interpolate(tensor, size=self.geometry.scaled, mode="area")[0].numpy()

    def nearest_user_frame(self, index: int) -> int | None:
        """The user frame nearest ``index`` within ``REACH`` (the earlier of two alike), or None."""
        near = [t for t in self.annotations if 0 < abs(t - index) <= REACH]
        return min(near, key=lambda t: (abs(t - index), t)) if near else None

    def blend(self, result: FrameResult) -> FrameResult:
        """``result`` with the carry of its nearest user frame blended into its probabilities, its labels their
        most likely object; a user frame's own result, or one beyond every user frame's reach, as it was."""
        user = None if result.index in self.annotations else self.nearest_user_frame(result.index)
        if user is None:
            return result
        objects, passed = self.carried(user, result.index)
        self._let_go(user, result.index)
        size = result.labels.shape
        weight = DECAY ** abs(result.index - user) * _resized(passed[None].astype(np.float32), size)[0]
        carried_objects = _resized(objects.astype(np.float32), size)
        carried = np.concatenate([1 - carried_objects.sum(0, keepdims=True), carried_objects])
        probabilities = weight * carried + (1 - weight) * result.probabilities.astype(np.float32)
        channels = torch.from_numpy(probabilities).max(0).indices.numpy()
        return FrameResult(index=result.index, labels=self.objects.to_ids(channels),
                           probabilities=probabilities.astype(np.float16), working_flow=result.working_flow,
                           final=result.final, attention=result.attention)


def _resized(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float32 -> (C, H, W), bilinear."""
    if values.shape[-2:] == tuple(size):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values))[None]
    return torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0].numpy()
