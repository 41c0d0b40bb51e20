"""The engine benchmark behind ``segflow bench --part engine`` and ``--part long``: the whole session
(fine-tune on the first frame, propagate) beside the classical peers, in one run.

``engine``: J, F, J&F on real held-out sequences and on synthetic clips (whose exact flow also gives the
flow EPE of our flow branch and of the peers' flow), propagation frames/s and fine-tune seconds.
``long``: a long 854x480 video propagated with the session, for frames/s and peak memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_segflow.data.io import ArrayFrames, VideoFrames
from napari_segflow.evaluation.baselines import optical_flow, propagate_by_flow
from napari_segflow.evaluation.benchmark import peak_rss_megabytes
from napari_segflow.evaluation.metrics import endpoint_error, score_sequence
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.propagation import frame_order
from napari_segflow.inference.session import SessionSettings, VideoSession

PEERS = ("dis", "farneback")
METHOD_NAMES = {"segflow": "SegFlow session", "dis": "DIS flow warping", "farneback": "Farneback flow warping"}


@dataclass
class Case:
    """One clip: frames (T, H, W, 3) uint8 (lazy is fine), labels (T, H, W); exact forward flows if known."""

    name: str
    kind: str  # "real" or "synthetic"
    frames: object
    truths: np.ndarray
    flows: list[np.ndarray] | None = None


@dataclass
class Measurement:
    method: str
    case: str
    kind: str
    j: float
    f: float
    frames_per_second: float
    finetune_seconds: float = 0.0
    flow_epe: float = float("nan")


@dataclass
class EngineReport:
    rows: list[Measurement] = field(default_factory=list)
    peak_rss_megabytes: float = float("nan")

    def mean(self, method: str, kind: str, name: str) -> float:
        values = [getattr(r, name) for r in self.rows if r.method == method and r.kind == kind]
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def jf(self, method: str, kind: str) -> float:
        return (self.mean(method, kind, "j") + self.mean(method, kind, "f")) / 2


def synthetic_cases(count: int, size: tuple[int, int] = (240, 427), frames: int = 24, seed: int = 30_000_000):
    """Held-out synthetic clips (seeds never trained on), the target object as the mask, exact flow."""
    from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator

    generator = SyntheticVideoGenerator(SyntheticConfig(height=size[0], width=size[1], num_frames=frames))
    cases = []
    for index in range(count):
        clip = generator(seed + index)
        video = (clip.frames * 255 + 0.5).astype(np.uint8)
        truths = (clip.instances == clip.target_id).astype(np.uint8)
        cases.append(Case(f"synthetic-{index}", "synthetic", video, truths, list(clip.flows)))
    return cases


def measure_session(case: Case, weights, settings: SessionSettings) -> Measurement:
    """Fine-tune on the first frame's mask and propagate forward, timing each part."""
    with VideoSession(case.frames, weights=weights, settings=settings) as session:
        session.add_annotation(0, case.truths[0])
        started = time.perf_counter()
        tuned = None
        results: list[FrameResult] = []
        for event in session.run():
            if isinstance(event, FrameResult):
                if tuned is None:
                    tuned = time.perf_counter()
                if event.final:
                    results.append(event)
        finished = time.perf_counter()
    labels = np.stack([r.labels for r in sorted(results, key=lambda r: r.index)])
    scores = score_sequence(labels, case.truths, object_ids=[1])
    epe = float("nan")
    if case.flows is not None:
        flows = {r.index: r.flow for r in results}
        epe = float(np.mean([endpoint_error(flows[t], case.flows[t]) for t in range(len(case.flows))]))
    return Measurement("segflow", case.name, case.kind, scores.j_mean, scores.f_mean,
                       len(results) / (finished - tuned), tuned - started, epe)


def measure_peer(case: Case, method: str) -> Measurement:
    order = frame_order(len(case.frames), 0, "forward")
    started = time.perf_counter()
    labels = np.stack([l for _, l in propagate_by_flow(case.frames, case.truths[0], order, method)])
    seconds = time.perf_counter() - started
    scores = score_sequence(labels, case.truths, object_ids=[1])
    epe = float("nan")
    if case.flows is not None:
        epe = float(np.mean([endpoint_error(optical_flow(case.frames[t], case.frames[t + 1], method), case.flows[t])
                             for t in range(len(case.flows))]))
    return Measurement(method, case.name, case.kind, scores.j_mean, scores.f_mean, len(order) / seconds, 0.0, epe)


def benchmark_engine(cases: list[Case], weights, settings: SessionSettings, progress=None) -> EngineReport:
    report = EngineReport()
    for case in cases:
        for method in ("segflow", *PEERS):
            row = measure_session(case, weights, settings) if method == "segflow" else measure_peer(case, method)
            report.rows.append(row)
            if progress is not None:
                progress(row)
    report.peak_rss_megabytes = peak_rss_megabytes()
    return report


def _speed(report: EngineReport, method: str, kind: str) -> float:
    return report.mean(method, kind, "frames_per_second")


def engine_table(report: EngineReport) -> str:
    lines = ["| data | method | J | F | J&F | flow EPE (px) | frames/s | fine-tune s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    kinds = [k for k in ("real", "synthetic") if any(r.kind == k for r in report.rows)]
    for kind in kinds:
        count = len({r.case for r in report.rows if r.kind == kind})
        for method in ("segflow", *PEERS):
            epe = report.mean(method, kind, "flow_epe")
            lines.append(
                f"| {kind} ({count}) | {METHOD_NAMES[method]} | {report.mean(method, kind, 'j'):.3f} | "
                f"{report.mean(method, kind, 'f'):.3f} | {report.jf(method, kind):.3f} | "
                f"{'' if np.isnan(epe) else f'{epe:.2f}'} | {report.mean(method, kind, 'frames_per_second'):.1f} | "
                f"{report.mean(method, kind, 'finetune_seconds'):.1f} |"
            )
    lines.append("")
    for kind in kinds:
        ratios = ", ".join(
            f"J&F {report.jf('segflow', kind) / report.jf(peer, kind):.2f}x {METHOD_NAMES[peer]}, "
            f"frames/s {_speed(report, 'segflow', kind) / _speed(report, peer, kind):.2f}x"
            for peer in PEERS
        )
        lines.append(f"{kind}: SegFlow session / peer: {ratios}")
    lines.append(f"peak RSS of the whole run: {report.peak_rss_megabytes:.0f} MB")
    return "\n".join(lines)


class LoopedFrames(VideoFrames):
    """A long lazy video: ``base``'s frames resized to height x width, looped to ``count`` frames."""

    def __init__(self, base, count: int, height: int, width: int) -> None:
        super().__init__(f"{getattr(base, 'source', 'array')} looped", count, height, width)
        self.base = base if isinstance(base, VideoFrames) else ArrayFrames(np.asarray(base))

    def _read(self, index: int) -> np.ndarray:
        from PIL import Image

        frame = self.base[index % len(self.base)]
        if tuple(frame.shape[:2]) == self.shape[1:3]:
            return frame
        return np.array(Image.fromarray(frame).resize((self.shape[2], self.shape[1]), Image.BILINEAR))


@dataclass
class LongVideoReport:
    frames: int
    size: tuple[int, int]
    working_size: tuple[int, int]
    frames_per_second: float
    dis_frames_per_second: float
    dis_working_frames_per_second: float
    peak_rss_megabytes: float
    baseline_rss_megabytes: float
    session_bytes_per_frame: float
    flow_bytes_per_frame: float


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def benchmark_long_video(base_frames, first_mask: np.ndarray, weights, settings: SessionSettings,
                         count: int = 2000, size: tuple[int, int] = (480, 854), peer_frames: int = 200,
                         progress=None) -> LongVideoReport:
    """Propagate a ``count``-frame video at ``size`` through a session (short fine-tune first), and time DIS
    warping on its first ``peer_frames`` frames (all of them in a shorter video), at the frames' size and at the
    session's working size (masks brought back to the frames' size, as the session's are); peak RSS of the
    process after both, and the session folder's bytes per frame (all of it, and its flow files alone)."""
    from PIL import Image

    video = LoopedFrames(base_frames, count, *size)
    mask = np.asarray(Image.fromarray(first_mask).resize((size[1], size[0]), Image.NEAREST))
    baseline = peak_rss_megabytes()
    with VideoSession(video, weights=weights, settings=settings) as session:
        session.add_annotation(0, mask)
        for _ in session.finetune():
            pass
        started = time.perf_counter()
        results, expected, done = 0, count * settings.sweeps, 0
        for result in session.propagate(0, "forward"):
            results += 1
            done += result.final
            if progress is not None:
                progress(results, expected)
        seconds = time.perf_counter() - started
        working = session.geometry.scaled
        session_bytes = _folder_bytes(session.folder) / max(done, 1)
        flow_bytes = _folder_bytes(session.folder / "results" / "flow") / max(done, 1)
    order = list(range(min(peer_frames, count)))
    peer_rates = []
    for working_size in (None, working):
        started = time.perf_counter()
        for _ in propagate_by_flow(video, mask, order, "dis", working_size):
            pass
        peer_rates.append(len(order) / (time.perf_counter() - started))
    return LongVideoReport(count, size, working, done / seconds, *peer_rates, peak_rss_megabytes(), baseline,
                           session_bytes, flow_bytes)
