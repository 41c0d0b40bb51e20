"""`segflow propagate`, `segflow flow` and `segflow eval`: the session engine on files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator


def session_settings(args: argparse.Namespace, keep_flow: bool, bidirectional: bool = False, seed: int = 0):
    """SessionSettings from the engine options (--long-side, --finetune-steps/-seconds, --device); ``seed`` is
    the fine-tune's (the benches vary it to measure its spread)."""
    from dataclasses import replace

    from napari_segflow.inference.session import SessionSettings
    from napari_segflow.training.online import FinetuneConfig

    finetune = replace(FinetuneConfig(), steps=args.finetune_steps, time_budget=args.finetune_seconds, seed=seed)
    return SessionSettings(long_side=args.long_side, finetune=finetune, bidirectional=bidirectional,
                           keep_flow=keep_flow, device=args.device)


def drive(events, total_steps: int, total_results: int, label: str = "") -> Iterator:
    """Run a session generator under two tqdm bars on stderr (fine-tune steps; frame results, ``total_results``
    of them: a frame between two annotated frames is carried from both, so counts twice), yielding each final
    FrameResult as it comes, so that a long video's results are written as they come rather than held."""
    from tqdm import tqdm

    from napari_segflow.inference.frame_result import FrameResult

    tune = tqdm(total=total_steps, desc=f"{label}fine-tune", unit="step", file=sys.stderr, leave=False)
    frames = None
    try:
        for event in events:
            if isinstance(event, FrameResult):
                if frames is None:
                    tune.close()
                    frames = tqdm(total=total_results, desc=f"{label}propagate", unit="frame", file=sys.stderr,
                                  leave=False)
                frames.update(1)
                if event.final:
                    yield event
            else:
                tune.total = event.total  # the budget that ends first: steps or seconds
                tune.update(event.step - tune.n)
                tune.set_postfix(loss=f"{event.loss:.3f}")
    finally:
        tune.close()
        if frames is not None:
            frames.close()


def run_propagate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from napari_segflow.data.io import open_video, read_annotation, write_flo, write_label_png, write_text
    from napari_segflow.errors import SegFlowError
    from napari_segflow.inference.attention import frames_worth_a_look
    from napari_segflow.inference.first_mask import neighbour_index
    from napari_segflow.inference.session import VideoSession

    out = _checked_output_folder(args.out, "--out")
    flow_out = _checked_output_folder(args.flow_out, "--flow-out") if args.flow_out else None
    continuing = _checked_session_folder(args.session, args.video) if args.session else False
    video = open_video(args.video)
    _check_no_foreign_masks(out, video.names)
    annotations = {}
    if args.box is not None:
        if args.mask:
            raise SegFlowError("--box: give the first mask as --mask or as --box, not both")
        if args.frame and len(args.frame) > 1:
            raise SegFlowError(f"--frame: one --box was given with {len(args.frame)} --frame; give one")
        (index,) = annotated_frames(["--box"], args.frame, len(video))
        neighbour = neighbour_index(index, len(video))
        annotations[index] = box_annotation(video[index], args.box, args.weights, args.long_side,
                                            None if neighbour is None else video[neighbour])
    elif not args.mask:
        if not continuing:
            raise SegFlowError(
                "--mask: give the annotated frame's label image (--mask A.png), or a box (--box X0 Y0 X1 Y1)"
            )
    else:
        frames = annotated_frames(args.mask, args.frame, len(video))
        for path, index in zip(args.mask, frames):
            try:
                # beside other annotated frames an empty mask says that no object is on its frame
                annotations[index] = read_annotation(path, video.shape[1:3],
                                                     allow_empty=continuing or len(args.mask) > 1)
            except SegFlowError as error:
                raise SegFlowError(f"--mask {path} (frame {index}): {error}") from error
        if not continuing and not any(labels.any() for labels in annotations.values()):
            raise SegFlowError(f"--mask: every mask is empty ({', '.join(args.mask)}); at least one must show the "
                               "object")
    settings = session_settings(args, keep_flow=False, bidirectional=args.bidirectional)
    if continuing:
        session = VideoSession.open(args.session, video=video)  # the same file, opened once
        # the command's working size, budgets and device; what the session keeps (flow, confidence) as it was
        session.reconfigure(replace(session.settings, long_side=settings.long_side, finetune=settings.finetune,
                                    bidirectional=settings.bidirectional, device=settings.device))
    else:
        session = VideoSession(args.video, args.session, weights=args.weights, settings=settings)
    with session:
        if annotations:
            session.add_annotations(annotations)
        names = session.frames.names
        propagated, flows_written = set(), 0
        for result in drive(session.run(), settings.finetune.steps, session.pending_results):
            if not propagated:  # the folder marked as segflow's before its first mask, so a stopped run can be rerun
                write_text(attention_csv({}, names), out / ATTENTION_FILE)
            write_label_png(result.labels, out / f"{names[result.index]}.png")
            if flow_out is not None:
                write_flo(result.flow, flow_out / f"{names[result.index]}.flo")
                flows_written += 1
            propagated.add(result.index)
        for t in session.result_frames:  # a continued session's frames that kept their masks (and flow, if kept)
            if t not in propagated:
                write_label_png(session.labels(t), out / f"{names[t]}.png")
                kept_flow = session.flow(t) if flow_out is not None else None
                if kept_flow is not None:
                    write_flo(kept_flow, flow_out / f"{names[t]}.flo")
                    flows_written += 1
        attention, user_frames, written = dict(session.attention), list(session.annotations), session.result_frames
    write_text(attention_csv(attention, names), out / ATTENTION_FILE)
    worst = ", ".join(str(t) for t in frames_worth_a_look(attention, user_frames, len(names)))
    look = f"frames most worth a look: {worst}" if worst else "every frame is annotated"
    again = f" ({len(propagated)} propagated again in the session {args.session})" if continuing else ""
    flows = f" and {flows_written} flow fields to {flow_out}" if flow_out else ""
    print(f"wrote {len(written)} masks to {out}{again}{flows}; {look} ({out / ATTENTION_FILE})")
    return 0


def box_annotation(frame, corners: list[float], weights, long_side: int, neighbour=None):
    """The first mask (object id 1) made from ``--box`` on ``frame``, with the network of ``weights`` (and the
    motion towards ``neighbour``, a nearby frame, when there is one)."""
    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.errors import SegFlowError
    from napari_segflow.inference.first_mask import Box, first_mask

    try:
        box = Box(*corners)
        box.clipped(frame.shape[:2])
    except SegFlowError as error:
        raise SegFlowError(f"--box: {error}") from error
    net, _ = load_checkpoint(weights)
    mask = first_mask(frame, box, net=net, long_side=long_side, neighbour=neighbour)
    if not mask.any():
        raise SegFlowError(f"--box {box.describe()}: no object found in the box; draw it around the object or give "
                           "a --mask")
    print(f"first mask from the box {box.describe()}: {int(mask.sum())} pixels", file=sys.stderr)
    return mask.astype("uint8")


#: Beside the masks: each frame's attention score (inference/attention.py), the frames most worth a look first.
ATTENTION_FILE = "attention.csv"


def attention_csv(attention: dict[int, float], names: list[str]) -> str:
    """CSV text: frame index, frame name, attention score and its rank by score (1: the highest), in frame order."""
    ranks = {t: rank for rank, t in enumerate(sorted(attention, key=attention.get, reverse=True), start=1)}
    rows = ["frame,name,attention,rank"]
    rows += [f"{t},{names[t]},{attention[t]:.4f},{ranks[t]}" for t in sorted(attention)]
    return "\n".join(rows) + "\n"


def annotated_frames(masks: list[str], frames: list[int] | None, count: int) -> list[int]:
    """The frame of each ``--mask``, checked before any work: one ``--frame`` per mask (a single mask may leave it
    out: frame 0), each in the video, no frame twice."""
    from napari_segflow.errors import SegFlowError

    if not frames:
        if len(masks) > 1:
            raise SegFlowError(f"--frame: {len(masks)} masks were given; give each its frame (--mask A.png "
                               "--frame 0 --mask B.png --frame 40)")
        frames = [0]
    if len(frames) != len(masks):
        raise SegFlowError(f"--frame: {len(masks)} --mask and {len(frames)} --frame were given; give one --frame "
                           "after each --mask")
    for index in frames:
        if not 0 <= index < count:
            raise SegFlowError(f"--frame {index}: out of range, the video has {count} frames (0..{count - 1})")
    repeated = sorted({index for index in frames if frames.count(index) > 1})
    if repeated:
        raise SegFlowError(f"--frame {repeated[0]}: given for more than one --mask; give one mask per frame "
                           "(a mask can hold several objects)")
    return list(frames)


def _checked_output_folder(value: str, option: str) -> Path:
    """An output folder's path, checked before any work: not an existing file."""
    from napari_segflow.errors import SegFlowError

    path = Path(value)
    if path.exists() and not path.is_dir():
        raise SegFlowError(f"{option} {value} is a file; name a folder (new or existing) for one file per frame")
    return path


def _check_no_foreign_masks(out: Path, names: list[str]) -> None:
    """``--out`` may hold an earlier run's masks (its attention.csv says so), which a new run replaces; PNGs of
    the masks' names that segflow did not write (the user's masks, or the video's own frames) are kept."""
    from napari_segflow.errors import SegFlowError

    if not out.is_dir() or (out / ATTENTION_FILE).exists():
        return
    taken = [f"{name}.png" for name in names if (out / f"{name}.png").exists()]
    if taken:
        raise SegFlowError(
            f"--out {out} already holds {len(taken)} PNG(s) with the masks' file names ({taken[0]}, ...) and no "
            f"{ATTENTION_FILE}, so segflow did not write them; name a new or empty folder"
        )


def _checked_session_folder(value: str, video: str) -> bool:
    """``--session``: a new or empty folder to keep a new session in (False), or the saved session of ``video``
    to go on with (True); say what is there otherwise and what to do."""
    from napari_segflow.errors import SegFlowError
    from napari_segflow.inference.session import SESSION_FILE, VideoSession

    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise SegFlowError(f"--session {value} is a file; name a new or empty folder to keep the session in")
    if (folder / SESSION_FILE).exists():
        try:
            recorded = VideoSession.peek(folder)["video"]
        except (SegFlowError, OSError) as error:
            raise SegFlowError(
                f"--session {value}: {error}, so the session there cannot be reopened; name a new or empty folder "
                "(move or delete this one if its work is no longer needed)"
            ) from error
        if recorded is None:
            raise SegFlowError(f"--session {value} was made from an array in Python; go on with it there")
        if Path(recorded) != Path(video).resolve():
            raise SegFlowError(f"--session {value} holds the session of {recorded}, not of {video}; name a new or "
                               "empty folder for this video")
        return True
    if folder.is_dir() and any(folder.iterdir()):
        raise SegFlowError(f"--session {value} is not empty; name a new or empty folder to keep the session in")
    return False


def run_flow(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.data.io import read_image, to_rgb_uint8, write_flo
    from napari_segflow.device import choose_device, place_model
    from napari_segflow.errors import SegFlowError
    from napari_segflow.inference.pair_flow import check_pair, refined_pair_flow, working_geometry
    from napari_segflow.opencv import opencv

    opencv("segflow flow (its refinement and polish)")
    if args.refinements < 0:
        raise SegFlowError(f"--refinements must be 0 or more, got {args.refinements}")
    if args.polish < 0:
        raise SegFlowError(f"--polish must be 0 or more, got {args.polish}")
    out = checked_output_file(args.out, "--out")
    first, second = (to_rgb_uint8(read_image(path), str(path), 0) for path in (args.image1, args.image2))
    check_pair(first, second, (args.image1, args.image2))
    geometry = working_geometry(*first.shape[:2], args.long_side)
    device = choose_device(args.device)
    net = place_model(load_checkpoint(args.weights)[0], device)
    flow = refined_pair_flow(net, first, second, args.long_side, device, args.refinements, args.polish)
    write_flo(flow, out)
    height, width = first.shape[:2]
    magnitude = np.linalg.norm(flow, axis=-1)
    working = f"estimated at {geometry.scaled[1]}x{geometry.scaled[0]}, " if geometry.scaled != (height, width) else ""
    print(f"wrote {out}: {width}x{height}, {working}mean motion {magnitude.mean():.2f} px, "
          f"max {magnitude.max():.2f} px")
    return 0


def checked_output_file(value: str, option: str, example: str = "flow.flo") -> Path:
    """An output file's path, checked before any work: not a folder, and its folder exists."""
    from napari_segflow.errors import SegFlowError

    path = Path(value)
    if path.is_dir():
        raise SegFlowError(f"{option} {value} is a folder; name the file to write (for example {path / example})")
    if not path.parent.is_dir():
        raise SegFlowError(f"{option} {value}: the folder {path.parent} does not exist")
    return path


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_segflow.data.io import write_label_png
    from napari_segflow.evaluation.metrics import score_sequence
    from napari_segflow.inference.session import VideoSession
    from napari_segflow.training.davis import find_sequences

    if args.out:
        _checked_output_folder(args.out, "--out")
    sequences = find_sequences(args.root, names=args.sequences)
    settings = session_settings(args, keep_flow=False, bidirectional=args.bidirectional)
    rows = []
    for sequence in sequences:
        first = sequence.mask(0)
        truths = np.stack([sequence.mask(i) for i in range(len(sequence))])
        with VideoSession(sequence.frames, weights=args.weights, settings=settings) as session:
            session.add_annotation(0, first)
            for _ in drive(session.run(), settings.finetune.steps, session.pending_results, f"{sequence.name}: "):
                pass  # the session keeps each frame's result; all of them are read back below
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
