"""Progress of a job as it runs: what is done, the rate and the time left, in one line of text."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.training.online import FinetuneStep

FINETUNE, PROPAGATE = "fine-tune", "propagate"


def clock_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass(frozen=True)
class Update:
    """One step of a job: ``done`` of ``total`` in ``phase`` at ``rate`` per second, ``eta`` seconds left;
    a fine-tune step carries its ``loss``, a propagation step its ``result``."""

    phase: str
    done: int
    total: int
    rate: float
    eta: float | None
    loss: float | None = None
    result: FrameResult | None = None

    @property
    def unit(self) -> str:
        return "steps" if self.phase == FINETUNE else "frames"

    @property
    def text(self) -> str:
        parts = [f"{self.phase} {self.done}/{self.total} {self.unit}", f"{self.rate:.1f} {self.unit}/s"]
        if self.eta is not None:
            parts.append(f"ETA {clock_text(self.eta)}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        return " · ".join(parts)


class Meter:
    """Turns a job's events (fine-tune steps, then frame results) into Updates. ``frames`` is how many
    frame results the propagation is expected to yield; ``time_budget`` caps the fine-tune's ETA."""

    def __init__(self, frames: int, time_budget: float | None, clock: Callable[[], float] = time.perf_counter):
        self.frames, self.time_budget, self.clock = frames, time_budget, clock
        self._started: float | None = None
        self._done = 0

    def update(self, event: FinetuneStep | FrameResult) -> Update:
        if isinstance(event, FinetuneStep):
            rate = event.step / max(event.elapsed, 1e-9)
            eta = (event.total - event.step) / rate
            if self.time_budget is not None:
                eta = min(eta, max(0.0, self.time_budget - event.elapsed))
            return Update(FINETUNE, event.step, event.total, rate, eta, loss=event.loss)
        if self._started is None:
            self._started = self.clock()
        self._done += 1
        total = max(self.frames, self._done)
        elapsed = self.clock() - self._started
        # the first frame also pays for reading and setting up; rate from the frames after it
        rate = (self._done - 1) / elapsed if self._done > 1 and elapsed > 0 else 0.0
        eta = (total - self._done) / rate if rate > 0 else None
        return Update(PROPAGATE, self._done, total, rate, eta, result=event)
