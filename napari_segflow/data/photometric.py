"""Photometric augmentation of training windows: the same scene under other light, camera and colours.

One draw per window moves every frame the same way (brightness, contrast, saturation, channel gains, gamma,
sensor noise), so the window's motion stays what it was; a small brightness flicker per frame stands in for light
that changes while the camera runs. ``strength`` scales every range: 0 leaves the frames as they are and draws
nothing, so runs without it keep their random streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PhotometricRanges:
    """The largest change of each kind at strength 1 (frames in [0, 1])."""

    brightness: float = 0.15  # added
    contrast: float = 0.35  # factor 1 +- this, about each frame's mean grey
    saturation: float = 0.4  # factor 1 +- this, about the pixel's grey
    grey_share: float = 0.05  # windows turned grey altogether
    channel_gain: float = 0.1  # each channel's factor 1 +- this
    gamma: float = 0.3  # exponent in [1 / (1 + this), 1 + this]
    noise: float = 0.03  # largest standard deviation of the Gaussian noise ...
    noise_share: float = 0.3  # ... in this share of windows
    flicker: float = 0.03  # per-frame brightness, added


def _uniform(generator: torch.Generator, low: float, high: float, size: tuple[int, ...] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def jitter_photometric(frames: torch.Tensor, generator: torch.Generator, strength: float,
                       ranges: PhotometricRanges = PhotometricRanges()) -> torch.Tensor:
    """frames (T, 3, H, W) float in [0, 1] -> the same shape, relit, clamped to [0, 1]."""
    if strength <= 0:
        return frames
    r, s = ranges, strength
    grey = frames.mean(dim=1, keepdim=True)
    if torch.rand((), generator=generator) < r.grey_share * s:
        out = grey.expand_as(frames)
    else:
        out = grey + _uniform(generator, 1 - r.saturation * s, 1 + r.saturation * s) * (frames - grey)
    out = out * _uniform(generator, 1 - r.channel_gain * s, 1 + r.channel_gain * s, (1, 3, 1, 1))
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = mean + _uniform(generator, 1 - r.contrast * s, 1 + r.contrast * s) * (out - mean)
    out = out + _uniform(generator, -r.brightness * s, r.brightness * s)
    out = out + _uniform(generator, -r.flicker * s, r.flicker * s, (len(frames), 1, 1, 1))
    exponent = torch.exp(_uniform(generator, -1.0, 1.0) * torch.log1p(torch.tensor(r.gamma * s)))
    out = out.clamp(0, 1) ** exponent
    if torch.rand((), generator=generator) < r.noise_share:
        sigma = _uniform(generator, 0.0, r.noise * s)
        out = out + sigma * torch.randn(out.shape, generator=generator)
    return out.clamp(0, 1)
