"""Flow to colour with the Middlebury colour wheel: hue is the direction, saturation the magnitude."""

from __future__ import annotations

import numpy as np

#: Hue steps between red, yellow, green, cyan, blue, magenta and back (Baker et al., Middlebury).
_SEGMENTS = (15, 6, 4, 11, 13, 6)


def colour_wheel() -> np.ndarray:
    """(55, 3) float RGB in [0, 1] around the wheel."""
    ry, yg, gc, cb, bm, mr = _SEGMENTS
    ramps = []
    for length, start, rising in ((ry, (1, 0, 0), 1), (yg, (1, 1, 0), 0), (gc, (0, 1, 0), 2),
                                  (cb, (0, 1, 1), 1), (bm, (0, 0, 1), 0), (mr, (1, 0, 1), 2)):
        ramp = np.tile(np.array(start, float), (length, 1))
        steps = np.arange(length) / length
        # in each segment one channel rises from 0 to 1 or falls from 1 to 0
        ramp[:, rising] = steps if start[rising] == 0 else 1 - steps
        ramps.append(ramp)
    return np.concatenate(ramps)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(..., H, W, 2) flow in pixels -> (..., H, W, 3) uint8. Magnitudes are divided by
    ``max_magnitude`` (default: the largest in the input), so colours saturate at the rim."""
    flow = np.nan_to_num(np.asarray(flow, np.float64))
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max(initial=0.0))
    radius = magnitude / max(max_magnitude, 1e-9)
    wheel = colour_wheel()
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
    low = np.floor(position).astype(int)
    high = (low + 1) % len(wheel)
    weight = (position - low)[..., None]
    colour = (1 - weight) * wheel[low] + weight * wheel[high]
    inside = radius <= 1
    scaled = np.where(inside[..., None], 1 - radius[..., None] * (1 - colour), colour * 0.75)
    return (scaled * 255 + 0.5).astype(np.uint8)
