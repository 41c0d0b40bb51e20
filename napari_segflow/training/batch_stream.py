"""Endless streams of training batches, drawn in the training process or by worker processes ahead of it.

In the training process (``workers=0``) a stream draws from the trainer's own samplers, in step with the
training, so a resumed run draws exactly the batches the interrupted one would have. On a GPU the drawing (JPEG
decoding, warps, distractors) is what limits a step, so ``workers`` processes can draw ahead instead: each gets a
copy of the samplers, reseeded from (seed, rank, worker, the step the stream starts at), so no two workers and
no two resumptions repeat each other's batches; a resumed run then continues with new batches, not the same ones.
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from napari_segflow.errors import SegFlowError
from napari_segflow.training.flow_batches import FlowBatches, FlowPair
from napari_segflow.training.windows import WindowSampler, collate


@dataclass
class SegBatch:
    frames: torch.Tensor  # (B, T, 3, H, W)
    masks: torch.Tensor  # (B, T, H, W)
    bidirectional: bool
    source: str  # "synthetic" or "davis"


@dataclass
class FlowBatch:
    pair: FlowPair
    kind: str
    max_motion: float


def seg_batches(sampler: WindowSampler, batch_size: int, synthetic_share: float,
                bidirectional_share: float) -> Iterator[SegBatch]:
    """Windows of one source per batch (procedural with ``synthetic_share``, else real), and whether the step
    also runs the backward memory sweep."""
    rng = sampler.rng
    while True:
        use_synthetic = rng.random() < synthetic_share
        batch = collate([sampler.synthetic_window() if use_synthetic else sampler.real() for _ in range(batch_size)])
        bidirectional = bool(rng.random() < bidirectional_share)
        yield SegBatch(batch.frames, batch.masks, bidirectional, "synthetic" if use_synthetic else "davis")


def flow_batches(source: FlowBatches, mix: dict[str, float], batch_size: int,
                 motion_now: Callable[[], float]) -> Iterator[FlowBatch]:
    """Pairs of one kind per batch, drawn by the shares of ``mix``, at the curriculum's motion when drawn."""
    kinds = list(mix)
    shares = np.array([mix[k] for k in kinds], dtype=float)
    while True:
        kind = kinds[int(source.rng.choice(len(kinds), p=shares / shares.sum()))]
        motion = motion_now()
        yield FlowBatch(source.draw(kind, batch_size, motion), kind, motion)


def worker_seed(*parts: int) -> int:
    """One well-mixed seed from several integers (seed, rank, worker, starting step): near inputs, far streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] % 2**63)


class _InWorkers(torch.utils.data.IterableDataset):
    def __init__(self, make: Callable[[int, int], Iterator]) -> None:
        self.make = make

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        torch.set_num_threads(1)  # the workers share the cores; one thread each draws the most
        # a stop (Ctrl-C, SIGTERM) is the training process's to handle: it saves its state, then ends the workers
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, signal.SIG_IGN)
        return self.make(info.id, info.num_workers)


def in_workers(make: Callable[[int, int], Iterator], workers: int) -> Iterator:
    """Interleave ``workers`` processes' streams; ``make(worker, count)`` builds one worker's stream there."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise SegFlowError("TrainConfig.loader_workers needs processes started by fork (Linux); use 0 here")
    loader = torch.utils.data.DataLoader(_InWorkers(make), batch_size=None, collate_fn=_as_drawn, num_workers=workers,
                                         multiprocessing_context="fork", prefetch_factor=4)
    return iter(loader)


def _as_drawn(item):
    """Batches pass through as drawn (the loader's default conversion would turn tuples into lists)."""
    return item


def counted(start: int, worker: int, count: int) -> Callable[[], int]:
    """The training step a worker's next batch will most likely serve: workers take turns, one batch each."""
    produced = itertools.count()
    return lambda: start + next(produced) * count + worker
