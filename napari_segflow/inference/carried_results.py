"""Where a stretch's forward carry waits for the backward one (``propagation.propagate_between``): on disk, one
file a frame, so fusing the masks carried from two user frames far apart holds a frame or two in memory, not the
whole stretch ((K+1) x H x W float16 probabilities a frame: 8 MB at 1080p, so 8 GB for user frames 1000 apart)."""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_segflow.errors import SegFlowError
from napari_segflow.inference.frame_result import FrameResult


PREFIX = ".segflow-carry-"


def remove_leftovers(folder: str | Path) -> None:
    """Remove the carries a run killed mid-way (power cut, kill -9) left in ``folder``; a run that ends, fails or
    is cancelled removes its own."""
    for leftover in Path(folder).glob(PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


class CarriedResults:
    """A context manager that keeps FrameResults on disk: ``put`` one, ``pop`` it back exactly as it was. The
    files live in a temporary folder under ``parent`` (the system's temporary folder when None), each removed
    when popped and the folder on exit, a cancelled run's included."""

    def __init__(self, parent: str | Path | None = None) -> None:
        self.parent = parent
        self._folder: tempfile.TemporaryDirectory | None = None
        self._scores: dict[int, tuple[bool, float]] = {}

    def __enter__(self) -> CarriedResults:
        self._folder = tempfile.TemporaryDirectory(prefix=PREFIX, dir=self.parent)
        return self

    def __exit__(self, *exc_info) -> None:
        self._folder.cleanup()
        self._scores.clear()

    def __len__(self) -> int:
        return len(self._scores)

    def _path(self, index: int) -> Path:
        return Path(self._folder.name) / f"{index:06d}.npz"

    def put(self, result: FrameResult) -> None:
        path = self._path(result.index)
        try:
            with path.open("wb") as file:
                np.savez(file, labels=result.labels, probabilities=result.probabilities,
                         working_flow=result.working_flow)
        except OSError as error:
            path.unlink(missing_ok=True)
            reason = "the disk is full" if error.errno == errno.ENOSPC else str(error)
            raise SegFlowError(f"{self._folder.name}: the masks carried to frame {result.index} could not be kept "
                               f"for fusing ({reason}); the frames written before it are kept") from error
        self._scores[result.index] = (result.final, result.attention)

    def pop(self, index: int) -> FrameResult:
        final, attention = self._scores.pop(index)
        path = self._path(index)
        with np.load(path) as stored:
            result = FrameResult(index, stored["labels"], stored["probabilities"], stored["working_flow"],
                                 final=final, attention=attention)
        path.unlink()
        return result
