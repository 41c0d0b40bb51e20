"""How the edge refinement's radius is chosen (the model card's sweep), on the validation split, never on the
held-out sequences the model card reports:

    python tools/refine_radius_sweep.py --radii 0 8 12 16 24 --rounds 3 --seed 0

Per sequence, as a user of the session would work: round 0 annotates the first frame with its true mask, each
later round one more frame (the middle of the longest stretch without a user frame, the interactive bench's
``even`` user). Each round the session fine-tunes (the first time from the shipped weights, then warm, with the
session's default budgets), then every frame is propagated from its nearest user frame (the session's rule when
the radius was chosen; it now fuses the carries from both user frames around a frame) without refinement, and
the refinement of each radius (working-resolution pixels; 0: none) is applied to those same probabilities, so
the radii are compared on one fine-tune. J&F over every frame, the user's frames counting as the user painted
them. Prints a markdown table of the means per round.

    python tools/refine_radius_sweep.py --radii 4 8 12 16 24 --true-masks --sequences ...

instead refines the true masks themselves (every tenth frame) and prints the J they keep: what each radius
breaks in a mask that was right.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution
from napari_segflow.evaluation.interactive import choose_frame
from napari_segflow.evaluation.metrics import region_similarity, score_sequence
from napari_segflow.inference.propagation import correction_orders, propagate
from napari_segflow.inference.refine import edge_filter, refine_probabilities
from napari_segflow.inference.session import SessionSettings, VideoSession
from napari_segflow.training.davis import VALIDATION, find_sequences

ROOT = Path(__file__).resolve().parents[1]


def _unrefined_probabilities(session: VideoSession, annotated: set[int], count: int) -> dict[int, torch.Tensor]:
    probabilities = {}
    for order in correction_orders(sorted(annotated), sorted(annotated), count):
        for result in propagate(session.net, session.frames, session.objects, order, session.geometry,
                                refine_edges=False, start_labels=session.annotations[order[0]]):
            probabilities.setdefault(result.index, torch.as_tensor(result.probabilities.astype(np.float32)))
    return probabilities


def _true_mask_table(sequences, radii: list[int]) -> None:
    print("| sequence | object's share of the frame | " + " | ".join(f"J at radius {r}" for r in radii) + " |")
    print("|---|---:|" + "---:|" * len(radii))
    kept: dict[int, list[float]] = {r: [] for r in radii}
    for sequence in sequences:
        truths = sequence.object_masks()
        geometry = WorkingResolution(*truths.shape[1:], DEFAULT_LONG_SIDE)
        for radius in radii:
            edges = edge_filter(geometry, radius)
            scores = []
            for t in range(0, len(truths), 10):
                probabilities = torch.as_tensor(np.stack([1 - truths[t], truths[t]]).astype(np.float32))
                refined = refine_probabilities(probabilities, torch.as_tensor(sequence.frame(t)), edges)
                scores.append(region_similarity(refined.argmax(0).numpy() > 0, truths[t] > 0))
            kept[radius].append(float(np.mean(scores)))
        print(f"| {sequence.name} | {truths.mean():.3f} | " + " | ".join(f"{kept[r][-1]:.3f}" for r in radii) + " |",
              flush=True)
    print("| mean | | " + " | ".join(f"{np.mean(kept[r]):.3f}" for r in radii) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "napari_segflow" / "weights" / "small.pt")
    parser.add_argument("--davis-root", type=Path, default=ROOT.parent / "shared" / "data" / "davis2016-train-240p")
    parser.add_argument("--sequences", nargs="+", default=list(VALIDATION))
    parser.add_argument("--radii", nargs="+", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=0, help="correction rounds after the first frame's")
    parser.add_argument("--seed", type=int, default=0, help="the fine-tune's seed")
    parser.add_argument("--true-masks", action="store_true", help="refine the true masks instead (no network)")
    args = parser.parse_args()
    if args.true_masks:
        _true_mask_table(find_sequences(args.davis_root, names=args.sequences), args.radii)
        return
    settings = SessionSettings()
    settings = replace(settings, finetune=replace(settings.finetune, seed=args.seed))
    scores: dict[tuple[int, int], list[float]] = {}
    for sequence in find_sequences(args.davis_root, names=args.sequences):
        truths = sequence.object_masks()
        with tempfile.TemporaryDirectory(prefix="segflow-radius-") as scratch:
            session = VideoSession(sequence.frames, Path(scratch) / "session", args.weights, settings)
            annotated: set[int] = set()
            for round_index in range(args.rounds + 1):
                frame = 0 if round_index == 0 else choose_frame("even", annotated, len(truths))
                annotated.add(frame)
                session.add_annotation(frame, truths[frame])
                for _ in session.finetune():
                    pass
                probabilities = _unrefined_probabilities(session, annotated, len(truths))
                for radius in args.radii:
                    edges = edge_filter(session.geometry, radius) if radius else None
                    labels = truths.copy()
                    for t, p in probabilities.items():
                        if t not in annotated:
                            if edges is not None:
                                p = refine_probabilities(p, torch.as_tensor(sequence.frame(t)), edges)
                            labels[t] = p.argmax(0).numpy() > 0
                    score = score_sequence(labels, truths, object_ids=[1], skip_first_last=False)
                    jf = (score.j_mean + score.f_mean) / 2
                    scores.setdefault((round_index, radius), []).append(jf)
                    print(f"{sequence.name} round {round_index} (frame {frame}) radius {radius}: "
                          f"J {score.j_mean:.3f} F {score.f_mean:.3f} J&F {jf:.3f}", flush=True)
    print(f"\nseed {args.seed}, mean J&F of {len(args.sequences)} sequence(s)\n")
    print("| round | " + " | ".join(f"radius {r}" for r in args.radii) + " |")
    print("|---|" + "---:|" * len(args.radii))
    for round_index in range(args.rounds + 1):
        print(f"| {round_index} | " + " | ".join(f"{np.mean(scores[(round_index, r)]):.3f}" for r in args.radii)
              + " |")


if __name__ == "__main__":
    main()
