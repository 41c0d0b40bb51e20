"""How the edge refinement's radius is chosen (the model card's sweep), on the validation split, never on the
held-out sequences the model card reports:

    python tools/refine_radius_sweep.py --sequences car-turn dog-agility mallard-water --radii 0 4 8 12 16 24 32

Per sequence: fine-tune the shipped weights once on the first frame's mask (the default
FinetuneConfig), then propagate once per radius (working-resolution pixels; 0: no refinement) and score J and F.
Prints a markdown table of the means.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from napari_segflow.checkpoint import load_checkpoint
from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution
from napari_segflow.evaluation.metrics import score_sequence
from napari_segflow.inference.propagation import frame_order, propagate
from napari_segflow.objects import ObjectChannels
from napari_segflow.training.davis import find_sequences
from napari_segflow.training.online import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "napari_segflow" / "weights" / "small.pt")
    parser.add_argument("--davis-root", type=Path, default=ROOT.parent / "shared" / "data" / "davis2016-train-240p")
    parser.add_argument("--sequences", nargs="+", required=True)
    parser.add_argument("--radii", nargs="+", type=int, required=True)
    args = parser.parse_args()
    offline, _ = load_checkpoint(args.weights)
    objects = ObjectChannels((1,))
    scores: dict[int, list[tuple[float, float]]] = {r: [] for r in args.radii}
    for sequence in find_sequences(args.davis_root, names=args.sequences):
        frames = sequence.frames
        truths = np.stack([(sequence.mask(i) > 0).astype(np.uint8) for i in range(len(sequence))])
        net = copy.deepcopy(offline)
        for _ in finetune(net, frames, {0: truths[0]}, objects, FinetuneConfig()):
            pass
        geometry = WorkingResolution(frames.shape[1], frames.shape[2], DEFAULT_LONG_SIDE)
        order = frame_order(len(frames), 0, "forward")
        for radius in args.radii:
            results = propagate(net, frames, objects, order, geometry, refine_edges=radius > 0,
                                refine_radius=max(radius, 1), start_labels=truths[0])
            score = score_sequence(np.stack([r.labels for r in results]), truths, object_ids=[1])
            scores[radius].append((score.j_mean, score.f_mean))
            print(f"{sequence.name} radius {radius}: J {score.j_mean:.3f} F {score.f_mean:.3f}", flush=True)
    print("| radius (px) | " + " | ".join(str(r) for r in args.radii) + " |")
    print("|---|" + "---:|" * len(args.radii))
    for name, column in (("mean J", 0), ("mean F", 1)):
        print(f"| {name} | " + " | ".join(f"{np.mean([s[column] for s in scores[r]]):.3f}" for r in args.radii) + " |")


if __name__ == "__main__":
    main()
