"""`segflow propagate`, `segflow flow` and `segflow eval`: the session engine on files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def session_settings(args: argparse.Namespace, keep_flow: bool, bidirectional: bool = False):
    """SessionSettings from the engine options (--long-side, --finetune-steps/-seconds, --device)."""
    from dataclasses import replace

    from napari_segflow.inference.session import SessionSettings
    from napari_segflow.training.online import FinetuneConfig

    finetune = replace(FinetuneConfig(), steps=args.finetune_steps, time_budget=args.finetune_seconds)
    return SessionSettings(long_side=args.long_side, finetune=finetune, bidirectional=bidirectional,
                           keep_flow=keep_flow, device=args.device)


def drive(events, total_steps: int, total_frames: int, label: str = "") -> list:
    """Run a session generator under two tqdm bars on stderr (fine-tune steps, frames); the final FrameResults."""
    from tqdm import tqdm

    from napari_segflow.inference.propagation import FrameResult

    results = []
    tune = tqdm(total=total_steps, desc=f"{label}fine-tune", unit="step", file=sys.stderr, leave=False)
    frames = None
    try:
        for event in events:
            if isinstance(event, FrameResult):
                if frames is None:
                    tune.close()
                    frames = tqdm(total=total_frames, desc=f"{label}propagate", unit="frame", file=sys.stderr,
                                  leave=False)
                if event.final:
                    frames.update(1)
                    results.append(event)
            else:
                tune.update(1)
                tune.set_postfix(loss=f"{event.loss:.3f}")
    finally:
        tune.close()
        if frames is not None:
            frames.close()
    return results


def run_propagate(args: argparse.Namespace) -> int:
    from napari_segflow.data.io import open_video, read_annotation, write_flo, write_label_png
    from napari_segflow.inference.session import VideoSession

    video = open_video(args.video)
    mask = read_annotation(args.mask, video.shape[1:3])
    out, flow_out = Path(args.out), Path(args.flow_out) if args.flow_out else None
    settings = session_settings(args, keep_flow=False, bidirectional=args.bidirectional)
    with VideoSession(args.video, args.session, weights=args.weights, settings=settings) as session:
        session.add_annotation(args.frame, mask)
        drive(session.finetune(), settings.finetune.steps, 0)
        names = session.frames.names
        written = 0
        for result in drive(session.propagate(args.frame, "both"), 0, len(session)):
            write_label_png(result.labels, out / f"{names[result.index]}.png")
            if flow_out is not None:
                write_flo(result.flow, flow_out / f"{names[result.index]}.flo")
            written += 1
    print(f"wrote {written} masks to {out}" + (f" and {written} flow fields to {flow_out}" if flow_out else ""))
    return 0


def run_flow(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.data.io import read_image, to_rgb_uint8, write_flo
    from napari_segflow.device import choose_device, place_model
    from napari_segflow.inference.pair_flow import check_pair, segflow_pair_flow, working_geometry

    out = _checked_output_file(args.out, "--out")
    first, second = (to_rgb_uint8(read_image(path), str(path), 0) for path in (args.image1, args.image2))
    check_pair(first, second, (args.image1, args.image2))
    geometry = working_geometry(*first.shape[:2], args.long_side)
    device = choose_device(args.device)
    net = place_model(load_checkpoint(args.weights)[0], device)
    flow = segflow_pair_flow(net, first, second, args.long_side, device)
    write_flo(flow, out)
    height, width = first.shape[:2]
    magnitude = np.linalg.norm(flow, axis=-1)
    working = f"estimated at {geometry.scaled[1]}x{geometry.scaled[0]}, " if geometry.scaled != (height, width) else ""
    print(f"wrote {out}: {width}x{height}, {working}mean motion {magnitude.mean():.2f} px, "
          f"max {magnitude.max():.2f} px")
    return 0


def _checked_output_file(value: str, option: str) -> Path:
    """An output file's path, checked before any work: not a folder, and its folder exists."""
    from napari_segflow.errors import SegFlowError

    path = Path(value)
    if path.is_dir():
        raise SegFlowError(f"{option} {value} is a folder; name the file to write (for example {path / 'flow.flo'})")
    if not path.parent.is_dir():
        raise SegFlowError(f"{option} {value}: the folder {path.parent} does not exist")
    return path


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_segflow.data.io import write_label_png
    from napari_segflow.evaluation.metrics import score_sequence
    from napari_segflow.inference.session import VideoSession
    from napari_segflow.training.davis import find_sequences

    sequences = find_sequences(args.root, names=args.sequences)
    settings = session_settings(args, keep_flow=False, bidirectional=args.bidirectional)
    rows = []
    for sequence in sequences:
        first = sequence.mask(0)
        truths = np.stack([sequence.mask(i) for i in range(len(sequence))])
        with VideoSession(sequence.frames, weights=args.weights, settings=settings) as session:
            session.add_annotation(0, first)
            drive(session.run(), settings.finetune.steps, len(sequence), f"{sequence.name}: ")
            predictions = session.labels_volume()
        ids = sorted(int(i) for i in np.unique(first) if i > 0)
        scores = score_sequence(predictions, truths, object_ids=ids)
        rows.append((sequence.name, scores.j_mean, scores.f_mean))
        print(f"{sequence.name}: J {scores.j_mean:.3f} F {scores.f_mean:.3f}", file=sys.stderr)
        if args.out:
            for index, name in enumerate(sequence.frames.names):
                write_label_png(predictions[index], Path(args.out) / sequence.name / f"{name}.png")
    print("| sequence | J | F | J&F |\n|---|---:|---:|---:|")
    for name, j, f in rows:
        print(f"| {name} | {j:.3f} | {f:.3f} | {(j + f) / 2:.3f} |")
    j_mean, f_mean = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    print(f"| mean | {j_mean:.3f} | {f_mean:.3f} | {(j_mean + f_mean) / 2:.3f} |")
    return 0
