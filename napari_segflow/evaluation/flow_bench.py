"""The flow benchmark behind ``segflow bench --part flow``: end-point error on image pairs with exact flow, for the
flow branch and its classical peers, each through the same working size (inference/pair_flow.py).

Pairs are read from a folder in the FlyingChairs examples' layout: ``<name>-img0.png``, ``<name>-img1.png`` and
``<name>-gt.flo`` (Middlebury), as in ../shared/data/flow-chairs-examples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.metrics import endpoint_error

#: A flow method: (first, second (H, W, 3) uint8) -> (H, W, 2) float32 flow first -> second.
FlowMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class FlowPairCase:
    name: str
    first: np.ndarray
    second: np.ndarray
    truth: np.ndarray


@dataclass
class FlowScore:
    method: str
    epe: float
    per_pair: dict[str, float] = field(default_factory=dict)
    milliseconds_per_pair: float = float("nan")


def read_flow_pairs(folder) -> list[FlowPairCase]:
    """Every ``<name>-img0.png`` with its ``-img1.png`` and ``-gt.flo`` under ``folder``, sorted by name."""
    from napari_segflow.data.io import read_flo, read_image, to_rgb_uint8

    folder = Path(folder)
    if not folder.is_dir():
        raise SegFlowError(f"{folder}: no such folder of flow pairs")
    firsts = sorted(folder.glob("*-img0.png"))
    if not firsts:
        raise SegFlowError(f"{folder}: no pairs (expected NAME-img0.png, NAME-img1.png and NAME-gt.flo)")
    cases = []
    for first_path in firsts:
        name = first_path.name[: -len("-img0.png")]
        second_path, truth_path = folder / f"{name}-img1.png", folder / f"{name}-gt.flo"
        for path in (second_path, truth_path):
            if not path.is_file():
                raise SegFlowError(f"{folder}: pair {name!r} has no {path.name}")
        first = to_rgb_uint8(read_image(first_path), str(first_path), 0)
        second = to_rgb_uint8(read_image(second_path), str(second_path), 0)
        truth = read_flo(truth_path)
        if truth.shape[:2] != first.shape[:2] or first.shape != second.shape:
            raise SegFlowError(f"{folder}: pair {name!r} has images and flow of different sizes")
        cases.append(FlowPairCase(name, first, second, truth))
    return cases


def score_flow(cases: list[FlowPairCase], methods: dict[str, FlowMethod]) -> list[FlowScore]:
    """Mean EPE (over pairs, each the mean over its pixels) and time per pair of every method."""
    scores = []
    for method, estimate in methods.items():
        per_pair, seconds = {}, 0.0
        for case in cases:
            started = time.perf_counter()
            flow = estimate(case.first, case.second)
            seconds += time.perf_counter() - started
            per_pair[case.name] = endpoint_error(flow, case.truth)
        scores.append(FlowScore(method, float(np.mean(list(per_pair.values()))), per_pair,
                                seconds / len(cases) * 1000))
    return scores


def standard_methods(net, long_side: int, device="cpu") -> dict[str, FlowMethod]:
    """SegFlow's flow branch (as ``segflow flow`` runs it: both ways, refined on the warped pair, polished; the
    same unpolished; both ways unrefined; one way in three mirrored passes; in one pass) and the peers (OpenCV
    DIS medium, Farneback, zero flow; DIS polished as ``segflow flow`` is) at one working size."""
    from napari_segflow.inference.pair_flow import (
        POLISH_ROUNDS, REFINEMENT_ROUNDS, peer_pair_flow, polished_flow, refined_pair_flow, segflow_pair_flow,
        two_way_pair_flow)

    return {
        f"SegFlow (segflow flow: both ways, refined {REFINEMENT_ROUNDS}x on the warped pair, median, "
        f"polished {POLISH_ROUNDS}x)": lambda a, b: refined_pair_flow(net, a, b, long_side, device),
        "SegFlow, refined, unpolished": lambda a, b: refined_pair_flow(net, a, b, long_side, device, polish_rounds=0),
        "SegFlow, both ways, unrefined": lambda a, b: two_way_pair_flow(net, a, b, long_side, device),
        "SegFlow, three mirrored passes": lambda a, b: segflow_pair_flow(net, a, b, long_side, device),
        "SegFlow, one pass (as propagation)": lambda a, b: segflow_pair_flow(net, a, b, long_side, device,
                                                                            mirrored=False),
        "OpenCV DIS (medium)": lambda a, b: peer_pair_flow(a, b, "dis", long_side),
        # what the polish alone is worth: the same rounds from the classical peer's flow
        f"OpenCV DIS (medium), polished {POLISH_ROUNDS}x as segflow flow is": lambda a, b: polished_flow(
            a, b, peer_pair_flow(a, b, "dis", long_side)),
        "Farneback": lambda a, b: peer_pair_flow(a, b, "farneback", long_side),
        "zero flow": lambda a, b: peer_pair_flow(a, b, "zero", long_side),
    }


def flow_report(title: str, scores: list[FlowScore]) -> str:
    zero = next((s for s in scores if s.method == "zero flow"), None)
    lines = [title, "", "| method | EPE (px) | EPE / zero flow | ms per pair |", "|---|---:|---:|---:|"]
    for score in scores:
        ratio = f"{score.epe / zero.epe:.2f}" if zero and zero.epe > 0 else "-"
        lines.append(f"| {score.method} | {score.epe:.2f} | {ratio} | {score.milliseconds_per_pair:.0f} |")
    return "\n".join(lines)
