"""Where a fine-tune step's time goes: the step's phases and the network's stages, from torch's profiler.

The fine-tune loop names its phases (training/online.py: sample clips, forward + loss, backward, optimizer);
here the network's stage methods are named too, on a copy of the network, so the forward splits into its
stages. Times are wall-clock on the CPU (its ops are synchronous), in milliseconds per step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
from torch.profiler import ProfilerActivity, profile, record_function

from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.online import (
    SCOPE_BACKWARD,
    SCOPE_FORWARD,
    SCOPE_SAMPLE,
    SCOPE_UPDATE,
    FinetuneConfig,
    finetune,
)

#: The network's stage methods, timed inside the forward.
STAGES = {
    "encode_appearance": "appearance encoder",
    "estimate_flow": "flow branch (with the seg -> flow bridges)",
    "fuse": "score heads, flow -> seg bridges, mask prior",
    "readout": "memory readout and upsampling",
}


@dataclass
class ProfileRow:
    part: str
    milliseconds_per_step: float
    share: float
    inside_forward: bool = False


def _named_stages(net: SegFlowNet) -> SegFlowNet:
    """A copy of ``net`` whose stage methods (and the memory cell) run under named profiler scopes."""
    named = copy.deepcopy(net)

    def wrap(owner, method_name: str, label: str) -> None:
        method = getattr(owner, method_name)

        def scoped(*args, **kwargs):
            with record_function(label):
                return method(*args, **kwargs)

        setattr(owner, method_name, scoped)

    for method_name, label in STAGES.items():
        wrap(named, method_name, label)
    wrap(named.memory, "forward", "ConvGRU memory")
    return named


def profile_finetune(
    net: SegFlowNet, frames: np.ndarray, mask: np.ndarray, steps: int = 12, config: FinetuneConfig | None = None
) -> list[ProfileRow]:
    """Run ``steps`` fine-tune steps (after two unprofiled warm-up steps) on a copy of ``net`` and split their
    time: the loop's phases, and within the forward the network's stages."""
    config = config or FinetuneConfig()
    warm = copy.deepcopy(net)
    for _ in finetune(warm, frames, {0: mask}, config=replace(config, steps=2, time_budget=None)):
        pass
    named = _named_stages(net)
    run_config = replace(config, steps=steps, time_budget=None)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in finetune(named, frames, {0: mask}, config=run_config):
            pass
    totals = {event.key: event.cpu_time_total / 1000 for event in profiler.key_averages()}
    phases = [SCOPE_SAMPLE, SCOPE_FORWARD, SCOPE_BACKWARD, SCOPE_UPDATE]
    step_total = sum(totals.get(p, 0.0) for p in phases)
    rows = []
    for phase in phases:
        rows.append(ProfileRow(phase.removeprefix("finetune: "), totals.get(phase, 0.0) / steps,
                               totals.get(phase, 0.0) / step_total))
        if phase == SCOPE_FORWARD:
            stages = [*STAGES.values(), "ConvGRU memory"]
            inside = sum(totals.get(s, 0.0) for s in stages)
            for stage in stages:
                rows.append(ProfileRow(stage, totals.get(stage, 0.0) / steps, totals.get(stage, 0.0) / step_total,
                                       inside_forward=True))
            rest = totals.get(phase, 0.0) - inside
            rows.append(ProfileRow("loss, mask priors, rest", rest / steps, rest / step_total, inside_forward=True))
    return rows


def profile_table(rows: list[ProfileRow]) -> str:
    lines = ["| part of a fine-tune step | ms per step | share |", "|---|---:|---:|"]
    for row in rows:
        name = f"&nbsp;&nbsp;{row.part}" if row.inside_forward else f"**{row.part}**"
        lines.append(f"| {name} | {row.milliseconds_per_step:.0f} | {row.share:.0%} |")
    total = sum(r.milliseconds_per_step for r in rows if not r.inside_forward)
    lines.append(f"| **step** | {total:.0f} | 100% |")
    return "\n".join(lines)
