"""Benchmarks behind ``segflow bench``: each measures our code beside a classical peer in the same run."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class ModelTiming:
    name: str
    parameters: int | None
    milliseconds_per_pair: float
    working_size: tuple[int, int]


def _time(function, repeats: int) -> float:
    function()  # warm-up: allocations, one-off kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


def peak_rss_megabytes() -> float:
    """Peak resident memory of this process (Linux and macOS report it; elsewhere NaN)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def benchmark_model(
    presets: tuple[str, ...] = ("small", "paper"),
    frame_size: tuple[int, int] = (480, 854),
    long_side: int = 448,
    repeats: int = 5,
    seed: int = 0,
) -> list[ModelTiming]:
    """Forward time of one frame pair (resize + both branches + memory step) per preset, placed on the CPU as
    propagation places it, beside OpenCV's DIS optical flow (medium preset) on the same pair at the same working
    size, when OpenCV is installed."""
    import torch

    from napari_segflow.data.resolution import WorkingResolution
    from napari_segflow.device import place_model
    from napari_segflow.model.segflow import build_segflow

    rng = np.random.default_rng(seed)
    height, width = frame_size
    frames = rng.integers(0, 256, size=(2, height, width, 3), dtype=np.uint8)
    geometry = WorkingResolution(height, width, long_side)
    results = []
    for preset in presets:
        torch.manual_seed(seed)
        net = place_model(build_segflow(preset).eval(), torch.device("cpu"))
        with torch.inference_mode():
            forward = _forward_pair(net, geometry, frames)
            milliseconds = _time(forward, repeats if preset == "small" else max(1, repeats // 3))
        results.append(ModelTiming(f"SegFlow {preset}", net.parameter_count(), milliseconds, geometry.padded))
    peer = _dis_timing(frames, geometry, repeats)
    if peer is not None:
        results.append(peer)
    return results


def _forward_pair(net, geometry, frames: np.ndarray):
    """A callable doing what propagation does per frame: resize, both branches, a memory step, logits back."""
    state = {"hidden": None}

    def forward() -> None:
        images = geometry.frames_to_network(frames)
        output = net.step(images[:1], images[1:], state["hidden"])
        state["hidden"] = output.hidden
        geometry.logits_to_frame(output.logits)

    return forward


def _dis_timing(frames: np.ndarray, geometry, repeats: int) -> ModelTiming | None:
    try:
        import cv2
    except ImportError:
        return None
    h, w = geometry.scaled
    grey = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    milliseconds = _time(lambda: dis.calc(grey[0], grey[1], None), repeats)
    return ModelTiming("OpenCV DIS flow (peer, medium)", None, milliseconds, (h, w))


@dataclass
class DataTiming:
    frames_per_second: float
    frame_size: tuple[int, int]
    frames: int


def benchmark_synthetic(clips: int = 4, seed: int = 0) -> DataTiming:
    """Synthetic frames (with masks, flow and occlusion) generated per second on one core."""
    from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator

    config = SyntheticConfig()
    generator = SyntheticVideoGenerator(config)
    generator(seed)  # warm-up
    start = time.perf_counter()
    for index in range(clips):
        generator(seed + 1 + index)
    elapsed = time.perf_counter() - start
    count = clips * config.num_frames
    return DataTiming(count / elapsed, (config.height, config.width), count)


def model_report(timings: list[ModelTiming], data: DataTiming, threads: int) -> str:
    peer = next((t for t in timings if t.parameters is None), None)
    lines = [
        f"Frame pair 854x480, working size {timings[0].working_size[1]}x{timings[0].working_size[0]}, "
        f"torch threads {threads}",
        "",
        "| model | parameters | ms per frame pair | pairs/s | time / DIS |",
        "|---|---:|---:|---:|---:|",
    ]
    for timing in timings:
        parameters = f"{timing.parameters / 1e6:.2f} M" if timing.parameters is not None else "-"
        ratio = f"{timing.milliseconds_per_pair / peer.milliseconds_per_pair:.1f}x" if peer else "n/a"
        lines.append(
            f"| {timing.name} | {parameters} | {timing.milliseconds_per_pair:.1f} | "
            f"{1000 / timing.milliseconds_per_pair:.1f} | {ratio} |"
        )
    lines += [
        "",
        f"Synthetic data: {data.frames_per_second:.1f} frames/s at {data.frame_size[1]}x{data.frame_size[0]} "
        f"(frames, instance masks, exact flow and occlusion; {data.frames} frames, one process)",
        f"Peak resident memory: {peak_rss_megabytes():.0f} MB",
    ]
    if peer is None:
        lines.append("OpenCV is not installed: no peer timing (pip install 'napari-segflow[bench]').")
    return "\n".join(lines)


@dataclass
class FinetuneTiming:
    steps: int
    seconds: float
    frame_size: tuple[int, int]
    working_size: tuple[int, int]
    peak_rss_megabytes: float


def benchmark_finetune(weights, frames: np.ndarray, mask: np.ndarray, config=None, device="cpu") -> FinetuneTiming:
    """Run one online fine-tune with the default budget on ``frames`` (T, H, W, 3) from ``mask``, on ``device``."""
    import torch

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.data.resolution import WorkingResolution
    from napari_segflow.training.online import FinetuneConfig, finetune

    config = config or FinetuneConfig()
    net, _ = load_checkpoint(weights)
    start = time.perf_counter()
    steps = 0
    for step in finetune(net, frames, {0: mask}, config=config, device=device):
        steps = step.step
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    geometry = WorkingResolution(frames.shape[1], frames.shape[2], config.long_side)
    return FinetuneTiming(steps, seconds, frames.shape[1:3], geometry.padded, peak_rss_megabytes())
