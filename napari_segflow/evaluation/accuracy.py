"""Accuracy on held-out sequences: SegFlow variants beside the classical peers, in one run.

Variants (SegFlow Table 1): ``full`` (offline weights + online fine-tuning + flow features + memory + the
edge refinement); ``-ref`` (no edge refinement: the score maps upsampled bilinearly);
``-ol`` (no online fine-tuning: the generic offline model, given the first mask as its first prior when it has a
mask prior); ``-flo`` (fine-tuned and run with the flow branch seeing each frame paired with itself, so its
features carry no motion and the mask prior is not carried); ``-fda`` (fine-tuned without the deformed-next-frame
clips); ``-prior`` (fine-tuned, run without the mask prior: every frame's prior unknown). Peers: the first-frame
mask carried by OpenCV DIS or Farneback flow.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution
from napari_segflow.evaluation.baselines import propagate_by_flow
from napari_segflow.evaluation.metrics import endpoint_error, score_sequence, spearman
from napari_segflow.inference.propagation import frame_order, propagate
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels
from napari_segflow.training.davis import Sequence
from napari_segflow.training.online import FinetuneConfig, finetune

VARIANTS = ("full", "-ref", "-ol", "-flo", "-fda", "-prior")
PEERS = ("dis", "farneback")


@dataclass
class MethodResult:
    method: str
    j: dict[str, float] = field(default_factory=dict)
    f: dict[str, float] = field(default_factory=dict)
    finetune_seconds: dict[str, float] = field(default_factory=dict)
    frames_per_second: dict[str, float] = field(default_factory=dict)
    attention_spearman: dict[str, float] = field(default_factory=dict)

    def mean(self, values: dict[str, float]) -> float:
        return float(np.mean(list(values.values()))) if values else float("nan")

    @property
    def jf(self) -> float:
        return (self.mean(self.j) + self.mean(self.f)) / 2


def _variant_config(variant: str, base: FinetuneConfig) -> FinetuneConfig:
    if variant == "-flo":
        return replace(base, motion_features=False)
    if variant == "-fda":
        return replace(base, deformed_next_frame=False)
    return base


def evaluate_sequence(
    offline: SegFlowNet,
    sequence: Sequence,
    methods: tuple[str, ...],
    finetune_config: FinetuneConfig,
    long_side: int = DEFAULT_LONG_SIDE,
    device: str = "cpu",
) -> dict[str, tuple[np.ndarray, float, float]]:
    """{method: (predicted label stack, fine-tune seconds, frames/s, per-frame attention scores or None)} for one
    sequence, first-frame mask given."""
    frames = sequence.frames
    first = (sequence.mask(0) > 0).astype(np.uint8)
    order = frame_order(len(frames), 0, "forward")
    geometry = WorkingResolution(frames.shape[1], frames.shape[2], long_side)
    objects = ObjectChannels((1,))
    # variants that differ only after fine-tuning (full, -ref) share one fine-tuned network
    tuned: dict[FinetuneConfig, tuple[SegFlowNet, float]] = {}
    out = {}
    for method in methods:
        if method in PEERS:
            start = time.perf_counter()
            labels = np.stack([l for _, l in propagate_by_flow(frames, first, order, method)])
            out[method] = (labels, 0.0, len(order) / (time.perf_counter() - start), None)
            continue
        config = _variant_config(method, finetune_config)
        if method == "-ol":
            net, seconds = copy.deepcopy(offline).to(device), 0.0
        elif config in tuned:
            net, seconds = tuned[config]
        else:
            net = copy.deepcopy(offline).to(device)
            start = time.perf_counter()
            for _ in finetune(net, frames, {0: first}, objects, config, device):
                pass
            seconds = time.perf_counter() - start
            tuned[config] = (net, seconds)
        start = time.perf_counter()
        results = list(propagate(net, frames, objects, order, geometry, device, motion_features=method != "-flo",
                                 refine_edges=method != "-ref", start_labels=first, mask_prior=method != "-prior"))
        labels = np.stack([r.labels for r in results])
        out[method] = (labels, seconds, len(order) / (time.perf_counter() - start), [r.attention for r in results])
    return out


def evaluate(
    offline: SegFlowNet,
    sequences: list[Sequence],
    methods: tuple[str, ...] = VARIANTS + PEERS,
    finetune_config: FinetuneConfig = FinetuneConfig(),
    long_side: int = DEFAULT_LONG_SIDE,
    device: str = "cpu",
    progress=None,
) -> list[MethodResult]:
    results = {m: MethodResult(m) for m in methods}
    for sequence in sequences:
        truths = sequence.object_masks()
        outputs = evaluate_sequence(offline, sequence, methods, finetune_config, long_side, device)
        for method, (labels, seconds, fps, attention) in outputs.items():
            scores = score_sequence(labels, truths, object_ids=[1])
            result = results[method]
            if attention is not None:
                errors = [1 - j for j in scores.j[1]]
                result.attention_spearman[sequence.name] = spearman([attention[t] for t in scores.frames], errors)
            result.j[sequence.name] = scores.j_mean
            result.f[sequence.name] = scores.f_mean
            result.finetune_seconds[sequence.name] = seconds
            result.frames_per_second[sequence.name] = fps
        if progress is not None:
            progress(sequence.name, {m: results[m].j[sequence.name] for m in methods})
    return [results[m] for m in methods]


def accuracy_table(results: list[MethodResult]) -> str:
    names = list(results[0].j)
    peer = next((r for r in results if r.method == "dis"), None)
    header = "| method | J&F | J | F | " + " | ".join(f"J {n}" for n in names) + " | fine-tune s | frames/s |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    label = {"full": "SegFlow (full)", "-ref": "SegFlow -ref", "-ol": "SegFlow -ol", "-flo": "SegFlow -flo",
             "-fda": "SegFlow -fda", "-prior": "SegFlow -prior",
             "dis": "DIS flow warping (peer)", "farneback": "Farneback flow warping (peer)"}
    for r in results:
        per_sequence = " | ".join(f"{r.j[n]:.3f}" for n in names)
        lines.append(
            f"| {label.get(r.method, r.method)} | {r.jf:.3f} | {r.mean(r.j):.3f} | {r.mean(r.f):.3f} | "
            f"{per_sequence} | {r.mean(r.finetune_seconds):.1f} | {r.mean(r.frames_per_second):.1f} |"
        )
    full = next((r for r in results if r.method == "full"), None)
    if peer is not None and full is not None:
        lines.append("")
        lines.append(f"Full method J&F / DIS peer J&F = {full.jf / peer.jf:.2f}")
    if full is not None and full.attention_spearman:
        values = full.attention_spearman
        measured = [v for v in values.values() if np.isfinite(v)]
        lines.append("")
        lines.append(
            "Attention score against the per-frame error (1 - J) of the full method, Spearman correlation: "
            f"mean {np.mean(measured) if measured else float('nan'):.2f} ("
            + ", ".join(f"{n} {v:.2f}" for n, v in values.items()) + ")"
        )
    return "\n".join(lines)


@torch.no_grad()
def flow_accuracy(net: SegFlowNet, clips: int = 8, size: tuple[int, int] = (256, 448), seed: int = 20_000_000):
    """Mean EPE of the flow branch, OpenCV DIS and Farneback on held-out synthetic pairs (seeds never trained on)."""
    from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
    from napari_segflow.evaluation.baselines import optical_flow

    generator = SyntheticVideoGenerator(SyntheticConfig(height=size[0], width=size[1], num_frames=2))
    ours, dis, farneback, zero = [], [], [], []
    net.eval()
    for index in range(clips):
        clip = generator(seed + index)
        first = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None]
        second = torch.from_numpy(clip.frames[1]).permute(2, 0, 1)[None]
        estimate = net.estimate_flow(first, second).flow[0].permute(1, 2, 0).numpy()
        frames8 = [(f * 255 + 0.5).astype(np.uint8) for f in clip.frames]
        ours.append(endpoint_error(estimate, clip.flows[0]))
        dis.append(endpoint_error(optical_flow(frames8[0], frames8[1], "dis"), clip.flows[0]))
        farneback.append(endpoint_error(optical_flow(frames8[0], frames8[1], "farneback"), clip.flows[0]))
        zero.append(endpoint_error(np.zeros_like(clip.flows[0]), clip.flows[0]))
    return {"segflow_epe": float(np.mean(ours)), "dis_epe": float(np.mean(dis)),
            "farneback_epe": float(np.mean(farneback)), "zero_flow_epe": float(np.mean(zero)),
            "clips": clips, "size": list(size)}
