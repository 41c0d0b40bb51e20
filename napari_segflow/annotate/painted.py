"""Which frames of a Labels layer the user painted, from the layer's paint events."""

from __future__ import annotations

from typing import Callable

import numpy as np


def frames_of_paint(atom) -> list[int]:
    """The frames (first axis) one napari paint history atom touched: a masked atom with a bounding box,
    or an (indices, old values, new values) triple."""
    box = getattr(atom, "slice_key", None)
    if box is not None:
        first = box[0]
        if isinstance(first, slice):
            return list(range(first.start or 0, first.stop))
        return [int(first)]
    indices = atom[0]
    return [int(t) for t in np.unique(np.asarray(indices[0]))]


class PaintedFrames:
    """Collects the frames painted on ``layer`` (a (T, H, W) Labels layer) until ``take()``.
    ``current_frame`` answers for an edit whose frames cannot be read off the event."""

    def __init__(self, layer, current_frame: Callable[[], int], on_change: Callable[[], None] | None = None):
        self.layer = layer
        self.current_frame = current_frame
        self.on_change = on_change
        self.frames: set[int] = set()
        layer.events.paint.connect(self._on_paint)

    def _on_paint(self, event) -> None:
        for atom in event.value:
            try:
                self.frames.update(frames_of_paint(atom))
            except (TypeError, IndexError, AttributeError):
                self.frames.add(self.current_frame())
        if self.on_change is not None:
            self.on_change()

    def take(self) -> set[int]:
        frames, self.frames = self.frames, set()
        return frames

    def disconnect(self) -> None:
        self.layer.events.paint.disconnect(self._on_paint)
