"""The simulated annotator behind ``segflow bench --part interactive``: what each correction buys.

Round 0 gives the session the first frame's true mask and runs it (fine-tune, propagate). Each later round the
simulated user repaints one frame with its true mask and the session runs again (a warm re-fine-tune, then
re-propagation up to the neighbouring user frames, each frame between two of them fusing both carries), as a
person correcting in the widget would. Which frame:

- ``attention``: the first frame the session suggests from its attention scores (inference/attention.py's
  ``frames_worth_a_look``, as the widget lists them and ``segflow propagate`` prints them);
- ``even``: the middle of the longest stretch without a user frame (evenly spaced frames, as a person scrubbing
  through a video at regular steps would pick);
- ``oracle``: the truly worst frame (lowest J): the upper bound of any way of choosing.

The peer, the first mask carried by DIS flow, restarts from every corrected frame over the frames nearer to it
than to any other user frame (``correction_orders``: what the session's fusion by nearness gives for masks without
probabilities), with evenly spaced frames and with its own oracle.
Every strategy starts from the same round 0 (one run, copied), so their curves differ only by their choices.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_segflow.evaluation.baselines import propagate_by_flow
from napari_segflow.evaluation.metrics import region_similarity, score_sequence
from napari_segflow.inference.attention import frames_worth_a_look
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.propagation import correction_orders
from napari_segflow.inference.session import SessionSettings, VideoSession

STRATEGIES = ("attention", "even", "oracle")
PEER_STRATEGIES = ("even", "oracle")
METHOD_NAMES = {"segflow": "SegFlow session", "dis": "DIS flow warping, restarted at each user frame"}


@dataclass
class Round:
    """One round of one run: the frame the user repainted (None in round 0), J, F and the round's seconds."""

    index: int
    frame: int | None
    j: float
    f: float
    seconds: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


@dataclass
class Run:
    method: str
    strategy: str
    case: str
    rounds: list[Round] = field(default_factory=list)


def choose_frame(strategy: str, annotated: set[int], count: int, labels: np.ndarray | None = None,
                 truths: np.ndarray | None = None, attention: dict[int, float] | None = None) -> int:
    """The frame a user following ``strategy`` repaints next, never one already annotated. ``labels`` and
    ``truths`` (T, H, W) are needed by ``oracle``, ``attention`` (frame -> score) by ``attention``."""
    free = [t for t in range(count) if t not in annotated]
    if not free:
        raise ValueError("every frame is annotated already")
    if strategy == "attention":
        suggested = frames_worth_a_look(attention, annotated, count, limit=1)
        if not suggested:
            raise ValueError("no frame has an attention score yet: run the session first")
        return suggested[0]
    if strategy == "oracle":
        return min(free, key=lambda t: (region_similarity(labels[t] > 0, truths[t] > 0), t))
    if strategy == "even":
        # the stretches between user frames, the video's end standing as one more boundary
        bounds = sorted(annotated | {count})
        start, stop = max(zip(bounds, bounds[1:]), key=lambda pair: pair[1] - pair[0])
        middle = (start + stop) // 2
        return middle if middle not in annotated else min(free, key=lambda t: abs(t - middle))
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def _score(labels: np.ndarray, truths: np.ndarray) -> tuple[float, float]:
    # every frame counts, the first and last too: the user wants the whole video right
    scores = score_sequence(labels, truths, object_ids=[1], skip_first_last=False)
    return scores.j_mean, scores.f_mean


def _run_session(session: VideoSession, attention: dict[int, float]) -> float:
    started = time.perf_counter()
    for event in session.run():
        if isinstance(event, FrameResult) and event.final:
            attention[event.index] = event.attention
    return time.perf_counter() - started


def simulate_session(frames, truths: np.ndarray, weights, settings: SessionSettings, rounds: int = 5,
                     strategies: tuple[str, ...] = STRATEGIES, case: str = "clip", progress=None) -> list[Run]:
    """One SegFlow run per strategy on one clip; ``truths`` (T, H, W) uint8, 1 on the object."""
    truths = (np.asarray(truths) > 0).astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="segflow-interactive-") as scratch:
        first_folder = Path(scratch) / "round0"
        session = VideoSession(frames, first_folder, weights=weights, settings=settings)
        session.add_annotation(0, truths[0])
        first_attention: dict[int, float] = {}
        seconds = _run_session(session, first_attention)
        first_labels = session.labels_volume()
        first = Round(0, None, *_score(first_labels, truths), seconds)
        if progress is not None:
            progress(case, "segflow", "every strategy", first)
        runs = []
        for strategy in strategies:
            folder = Path(scratch) / strategy
            shutil.copytree(first_folder, folder)
            session = VideoSession.open(folder, video=frames, weights=weights)
            attention = dict(first_attention)
            labels = first_labels
            run = Run("segflow", strategy, case, [first])
            for index in range(1, rounds + 1):
                frame = choose_frame(strategy, set(session.annotations), len(truths), labels, truths, attention)
                session.add_annotation(frame, truths[frame])
                seconds = _run_session(session, attention)
                labels = session.labels_volume()
                run.rounds.append(Round(index, frame, *_score(labels, truths), seconds))
                if progress is not None:
                    progress(case, "segflow", strategy, run.rounds[-1])
            runs.append(run)
    return runs


def simulate_peer(frames, truths: np.ndarray, rounds: int = 5, strategies: tuple[str, ...] = PEER_STRATEGIES,
                  method: str = "dis", working_size: tuple[int, int] | None = None, case: str = "clip",
                  progress=None) -> list[Run]:
    """The classical peer's runs: the first mask carried by ``method`` flow, restarted from each user frame."""
    truths = (np.asarray(truths) > 0).astype(np.uint8)
    count = len(truths)
    runs = []
    for strategy in strategies:
        labels = np.zeros_like(truths)
        annotated: set[int] = set()
        run = Run(method, strategy, case)
        for index in range(rounds + 1):
            frame = 0 if index == 0 else choose_frame(strategy, annotated, count, labels, truths)
            started = time.perf_counter()
            annotated.add(frame)
            for order in correction_orders(sorted(annotated), [frame], count):
                for t, carried in propagate_by_flow(frames, truths[frame], order, method, working_size):
                    labels[t] = carried
            run.rounds.append(Round(index, None if index == 0 else frame, *_score(labels, truths),
                                    time.perf_counter() - started))
            if progress is not None:
                progress(case, method, strategy, run.rounds[-1])
        runs.append(run)
    return runs


def area_under_rounds(jf: list[float]) -> float:
    """The area under J&F against rounds (trapezoids), divided by the number of rounds: 1 is perfect from the
    start, and a curve that never moves scores its level."""
    if len(jf) < 2:
        return float(jf[0]) if jf else float("nan")
    return float((sum(jf) - (jf[0] + jf[-1]) / 2) / (len(jf) - 1))


def _mean_curve(runs: list[Run], name: str) -> list[float]:
    return [float(np.mean(values)) for values in zip(*[[getattr(r, name) for r in run.rounds] for run in runs])]


def interactive_table(runs: list[Run]) -> str:
    """Markdown: mean J&F after each round per method and strategy, the gain after 3 rounds, the area under the
    curve and the mean seconds of a correction round (rounds 1..)."""
    groups = _groups(runs)
    rounds = max(len(run.rounds) for run in runs)
    cases = len({run.case for run in runs})
    lines = [f"| method ({cases} clips) | frames chosen | " + " | ".join(f"round {i}" for i in range(rounds))
             + " | gain after 3 | area | s per correction |",
             "|---|---|" + "---:|" * (rounds + 3)]
    for (method, strategy), members in groups.items():
        curve = _mean_curve(members, "jf")
        gain = f"{curve[3] - curve[0]:+.3f}" if len(curve) > 3 else "n/a"
        seconds = float(np.mean([r.seconds for run in members for r in run.rounds[1:]]))
        lines.append(f"| {METHOD_NAMES.get(method, method)} | {strategy} | "
                     + " | ".join(f"{v:.3f}" for v in curve)
                     + f" | {gain} | {area_under_rounds(curve):.3f} | {seconds:.1f} |")
    return "\n".join(lines)


def _groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.method, run.strategy), []).append(run)
    return groups


def plot_rounds(runs: list[Run], path) -> None:
    """J&F against rounds, one line per method and strategy, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    for (method, strategy), members in _groups(runs).items():
        curve = _mean_curve(members, "jf")
        style = "-" if method == "segflow" else "--"
        axes.plot(
            range(len(curve)),
            curve,
            style,
            marker="o",
            label=f"{'SegFlow' if method == 'segflow' else method.upper()}, {strategy}",
        )
    axes.set_xlabel("correction rounds (one repainted frame each)")
    axes.set_ylabel("J&F")
    axes.set_title(f"Simulated annotator, {len({r.case for r in runs})} held-out clips")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
