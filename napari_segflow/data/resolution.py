"""The working resolution: frames are scaled (aspect kept) and padded to the network's multiple;
outputs are cropped and scaled back to the video's own size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_segflow.errors import SegFlowError

DEFAULT_LONG_SIDE = 448
NETWORK_MULTIPLE = 64


@dataclass(frozen=True)
class WorkingResolution:
    """Maps between a video's frames (height x width) and the network's padded input."""

    height: int
    width: int
    long_side: int = DEFAULT_LONG_SIDE

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise SegFlowError(f"frame size {self.height}x{self.width} is empty")
        if self.long_side < NETWORK_MULTIPLE:
            raise SegFlowError(f"working long side {self.long_side} is below the minimum {NETWORK_MULTIPLE}")

    @property
    def scaled(self) -> tuple[int, int]:
        """(h, w) of the frame content at the working resolution."""
        scale = self.long_side / max(self.height, self.width)
        return max(1, round(self.height * scale)), max(1, round(self.width * scale))

    @property
    def padded(self) -> tuple[int, int]:
        h, w = self.scaled
        return -(-h // NETWORK_MULTIPLE) * NETWORK_MULTIPLE, -(-w // NETWORK_MULTIPLE) * NETWORK_MULTIPLE

    def frames_to_network(self, frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B, H, W, 3) or (H, W, 3) uint8 -> (B, 3, h_pad, w_pad) float in [0, 1], edge-padded."""
        tensor = torch.as_tensor(np.asarray(frames)).to(device)
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tuple(tensor.shape[1:3]) != (self.height, self.width):
            raise SegFlowError(f"frames are {tuple(tensor.shape[1:3])}, expected {(self.height, self.width)}")
        images = tensor.permute(0, 3, 1, 2).float() / 255.0
        images = F.interpolate(images, size=self.scaled, mode="bilinear", align_corners=False, antialias=True)
        return self._pad(images, mode="replicate")

    def labels_to_network(self, labels: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B, H, W) or (H, W) int labels -> (B, h_pad, w_pad) int64, nearest, padded with 0."""
        tensor = torch.as_tensor(np.asarray(labels)).to(device)
        if tensor.ndim == 2:
            tensor = tensor[None]
        scaled = F.interpolate(tensor[:, None].float(), size=self.scaled, mode="nearest")
        return self._pad(scaled, mode="constant")[:, 0].long()

    def valid_region(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(h_pad, w_pad) bool: True on frame content, False on padding."""
        region = torch.zeros(self.padded, dtype=torch.bool, device=device)
        region[: self.scaled[0], : self.scaled[1]] = True
        return region

    def _pad(self, images: torch.Tensor, mode: str) -> torch.Tensor:
        pad_h = self.padded[0] - self.scaled[0]
        pad_w = self.padded[1] - self.scaled[1]
        if pad_h == 0 and pad_w == 0:
            return images
        return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)

    def logits_to_frame(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, h_pad, w_pad) -> (B, K, H, W): crop the padding, scale bilinearly."""
        cropped = logits[..., : self.scaled[0], : self.scaled[1]]
        return F.interpolate(cropped, size=(self.height, self.width), mode="bilinear", align_corners=False)

    def flow_to_frame(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 2, h_pad, w_pad) in working pixels -> (B, 2, H, W) in frame pixels."""
        return resize_flow_tensor(self.flow_to_working_grid(flow), (self.height, self.width))

    def flow_to_working_grid(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 2, h_pad, w_pad) in working pixels -> (B, 2, h, w): the padding cropped, values in frame pixels,
        still on the working grid (what a session stores; ``resize_flow`` brings it to the frame's size)."""
        cropped = flow[..., : self.scaled[0], : self.scaled[1]]
        factors = torch.tensor(
            [self.width / self.scaled[1], self.height / self.scaled[0]], dtype=flow.dtype, device=flow.device
        )
        return cropped * factors.view(1, 2, 1, 1)


def resize_flow_tensor(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, h, w) whose values are already in the target's pixels -> (B, 2, H, W), bilinear."""
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    return F.interpolate(flow, size=size, mode="bilinear", align_corners=False)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 2) whose values are already in the target's pixels -> (H, W, 2) float32, bilinear."""
    if flow.shape[:2] == tuple(size):
        return flow.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    return resize_flow_tensor(tensor, size)[0].permute(1, 2, 0).numpy()


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) map of values -> (H, W) float32: area-averaged when shrinking, bilinear when growing."""
    if values.shape == tuple(size):
        return values.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    shrinking = size[0] <= values.shape[0] and size[1] <= values.shape[1]
    if shrinking:
        return F.interpolate(tensor, size=size, mode="area")[0, 0].numpy()
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
