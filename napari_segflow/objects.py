"""Stable object ids mapped to network channels: channel 0 is background, channel k is object_ids[k-1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_segflow.errors import SegFlowError

MAX_OBJECTS = 255


@dataclass(frozen=True)
class ObjectChannels:
    object_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.object_ids:
            raise SegFlowError("no objects: annotate at least one object (a label id above 0)")
        if len(set(self.object_ids)) != len(self.object_ids) or min(self.object_ids) < 1:
            raise SegFlowError(f"object ids must be distinct and above 0, got {self.object_ids}")
        if max(self.object_ids) > MAX_OBJECTS:
            raise SegFlowError(f"object ids must be at most {MAX_OBJECTS}, got {max(self.object_ids)}")

    @classmethod
    def from_annotations(cls, annotations: dict[int, np.ndarray]) -> ObjectChannels:
        ids = sorted({int(i) for labels in annotations.values() for i in np.unique(labels) if i > 0})
        return cls(tuple(ids))

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    def to_channels(self, labels: np.ndarray, name: str = "annotation") -> np.ndarray:
        """Label ids -> channel indices; an id that is not one of the objects is an error naming it."""
        present = {int(i) for i in np.unique(labels) if i > 0}
        unknown = sorted(present - set(self.object_ids))
        if unknown:
            raise SegFlowError(
                f"{name}: holds object id(s) {unknown} that are not among the objects {list(self.object_ids)}"
            )
        lookup = np.zeros(MAX_OBJECTS + 1, np.int64)
        lookup[list(self.object_ids)] = np.arange(1, self.num_objects + 1)
        return lookup[np.asarray(labels, np.int64)]

    def to_ids(self, channels: np.ndarray) -> np.ndarray:
        """Channel indices -> label ids (uint8)."""
        lookup = np.array((0, *self.object_ids), np.uint8)
        return lookup[channels]
