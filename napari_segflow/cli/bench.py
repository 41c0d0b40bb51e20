"""`segflow bench`: speed and accuracy beside the classical peers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_segflow.cli.video import checked_output_file, session_settings
from napari_segflow.errors import SegFlowError

#: The parts whose results --json writes (and --plot draws: interactive only).
JSON_PARTS = ("accuracy", "flow", "interactive")


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from napari_segflow.data.resolution import DEFAULT_LONG_SIDE
    from napari_segflow.evaluation.benchmark import benchmark_model, benchmark_synthetic, model_report

    _check_outputs(args)
    _check_optional_packages(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.long_side is None and args.part != "flow":
        args.long_side = DEFAULT_LONG_SIDE
    if args.part == "accuracy":
        return _bench_accuracy(args)
    if args.part == "finetune":
        return _bench_finetune(args)
    if args.part == "engine":
        return _bench_engine(args)
    if args.part == "long":
        return _bench_long(args)
    if args.part == "flow":
        return _bench_flow(args)
    if args.part == "interactive":
        return _bench_interactive(args)
    if args.part == "box":
        return _bench_box(args)
    print(f"benchmarking the model ({', '.join(args.presets)}) ...", file=sys.stderr)
    timings = benchmark_model(tuple(args.presets), repeats=args.repeats, long_side=args.long_side)
    print("benchmarking synthetic data ...", file=sys.stderr)
    data = benchmark_synthetic(clips=args.clips)
    print(model_report(timings, data, torch.get_num_threads()))
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """--json and --plot, before a bench's minutes of work: a part that writes them, a file in a folder that exists."""
    if args.json:
        if args.part not in JSON_PARTS:
            raise SegFlowError(f"--json: --part {args.part} writes no JSON (--part {', '.join(JSON_PARTS)} do)")
        checked_output_file(args.json, "--json", "results.json")
    if args.plot:
        if args.part != "interactive":
            raise SegFlowError(f"--plot: --part {args.part} draws no plot (--part interactive does)")
        checked_output_file(args.plot, "--plot", "rounds.png")


#: the parts that run no classical peer (OpenCV's DIS, Farneback, GrabCut); the model part times DIS when it can
PARTS_WITHOUT_PEERS = ("model", "finetune")


def _check_optional_packages(args: argparse.Namespace) -> None:
    """What the part needs beyond the plugin's own dependencies (the bench extra), checked before any work."""
    from napari_segflow.opencv import opencv

    if args.part not in PARTS_WITHOUT_PEERS:
        opencv(f"segflow bench --part {args.part} (its classical peers)")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as error:
            raise SegFlowError("--plot needs matplotlib: pip install matplotlib (or the package with its bench "
                               "extra: pip install 'napari-segflow[bench]')") from error


def _bench_flow(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    import torch

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.device import choose_device, place_model
    from napari_segflow.evaluation.accuracy import flow_accuracy
    from napari_segflow.evaluation.flow_bench import flow_report, read_flow_pairs, score_flow, standard_methods
    from napari_segflow.inference.pair_flow import FLOW_LONG_SIDE

    device = choose_device(args.device)
    net, _ = load_checkpoint(args.weights)
    long_side = args.long_side or FLOW_LONG_SIDE
    cases = read_flow_pairs(args.pairs)
    print(f"flow on {len(cases)} pair(s) from {args.pairs} ...", file=sys.stderr)
    scores = score_flow(cases, standard_methods(place_model(net, device), long_side, device))
    print(flow_report(f"{len(cases)} pairs from {args.pairs}, working long side {long_side}, SegFlow on "
                      f"{device.type}, torch threads {torch.get_num_threads()}", scores))
    synthetic = flow_accuracy(net.cpu())
    print(f"\nHeld-out synthetic pairs ({synthetic['clips']}, {synthetic['size'][1]}x{synthetic['size'][0]}): "
          f"SegFlow EPE {synthetic['segflow_epe']:.2f} px, DIS {synthetic['dis_epe']:.2f}, "
          f"Farneback {synthetic['farneback_epe']:.2f}, zero flow {synthetic['zero_flow_epe']:.2f}")
    if args.json:
        payload = {"pairs": str(args.pairs), "long_side": long_side, "scores": [asdict(s) for s in scores],
                   "synthetic": synthetic, "weights": str(args.weights)}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


def _bench_finetune(args: argparse.Namespace) -> int:
    import numpy as np
    import torch.nn.functional as F
    import torch

    from napari_segflow.data.io import open_video, read_annotation
    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.device import choose_device
    from napari_segflow.evaluation.benchmark import benchmark_finetune
    from napari_segflow.evaluation.finetune_profile import profile_finetune, profile_table

    video = open_video(args.video)
    frames = video[: min(len(video), 8)]
    mask = read_annotation(args.mask, video.shape[1:])
    if args.frame_size:
        # the fine-tune works at the working resolution; this shows what a larger input costs on top
        height, width = args.frame_size
        tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        frames = F.interpolate(tensor, size=(height, width), mode="bilinear").round().byte().permute(0, 2, 3, 1).numpy()
        mask = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(height, width), mode="nearest")[0, 0]
        mask = mask.byte().numpy()
    frames = np.ascontiguousarray(frames)
    device = choose_device(args.device)
    timing = benchmark_finetune(args.weights, frames, mask, device=device)
    print(f"| device | frames | working size | steps | seconds | peak RSS |\n|---|---|---|---:|---:|---:|\n"
          f"| {device.type} | {timing.frame_size[1]}x{timing.frame_size[0]} | "
          f"{timing.working_size[1]}x{timing.working_size[0]} | {timing.steps} | {timing.seconds:.1f} | "
          f"{timing.peak_rss_megabytes:.0f} MB |\n")
    if device.type != "cpu":
        print("(the profile of a step below is taken on the CPU: on a GPU, host timers see kernel launches, not work)")
    net, _ = load_checkpoint(args.weights)
    print(profile_table(profile_finetune(net, frames, mask)))
    return 0


def _bench_accuracy(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict, replace

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.device import choose_device
    from napari_segflow.evaluation.accuracy import VARIANTS, PEERS, accuracy_table, evaluate, flow_accuracy
    from napari_segflow.training.davis import HELD_OUT, find_sequences
    from napari_segflow.training.online import FinetuneConfig

    net, _ = load_checkpoint(args.weights)
    sequences = find_sequences(args.davis_root, names=args.sequences or list(HELD_OUT))
    config = replace(FinetuneConfig(), steps=args.finetune_steps, time_budget=args.finetune_seconds,
                     seed=args.finetune_seed)
    methods = tuple(args.methods or (VARIANTS + PEERS))

    def report(name, scores):
        print(f"  {name}: " + ", ".join(f"{m} J={j:.3f}" for m, j in scores.items()), file=sys.stderr)

    print(f"accuracy on {len(sequences)} sequence(s), first-frame mask given ...", file=sys.stderr)
    results = evaluate(net, sequences, methods, config, long_side=args.long_side, device=choose_device(args.device),
                       progress=report)
    print(accuracy_table(results))
    flow = flow_accuracy(net)
    print(
        f"\nFlow on {flow['clips']} held-out synthetic pairs ({flow['size'][1]}x{flow['size'][0]}): "
        f"SegFlow EPE {flow['segflow_epe']:.2f} px, DIS {flow['dis_epe']:.2f} px, "
        f"zero flow {flow['zero_flow_epe']:.2f} px"
    )
    if args.json:
        payload = {"methods": [asdict(r) | {"jf": r.jf} for r in results], "flow": flow,
                   "finetune": asdict(config), "long_side": args.long_side, "weights": str(args.weights)}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


def _bench_engine(args: argparse.Namespace) -> int:
    from napari_segflow.evaluation.engine import Case, benchmark_engine, engine_table, synthetic_cases
    from napari_segflow.training.davis import HELD_OUT, find_sequences

    cases = []
    for sequence in find_sequences(args.davis_root, names=args.sequences or list(HELD_OUT)):
        truths = sequence.object_masks()
        cases.append(Case(sequence.name, "real", sequence.frames, truths))
    cases += synthetic_cases(args.clips)

    def report(row):
        print(f"  {row.case} {row.method}: J {row.j:.3f} F {row.f:.3f} {row.frames_per_second:.1f} frames/s",
              file=sys.stderr)

    print(f"engine benchmark on {len(cases)} clip(s) ...", file=sys.stderr)
    settings = session_settings(args, keep_flow=True, seed=args.finetune_seed,
                                bidirectional=args.bidirectional)
    print(engine_table(benchmark_engine(cases, args.weights, settings, progress=report)))
    return 0


def _bench_interactive(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from napari_segflow.evaluation.interactive import interactive_table, plot_rounds, simulate_peer, simulate_session
    from napari_segflow.training.davis import HELD_OUT, find_sequences

    if args.rounds < 1:
        raise SegFlowError(f"--rounds must be at least 1, got {args.rounds}")
    settings = session_settings(args, keep_flow=True, seed=args.finetune_seed,
                                bidirectional=args.bidirectional)
    sequences = find_sequences(args.davis_root, names=args.sequences or list(HELD_OUT))

    def report(case, method, strategy, result):
        chosen = "" if result.frame is None else f", frame {result.frame}"
        print(f"  {case} {method} {strategy} round {result.index}{chosen}: J {result.j:.3f} F {result.f:.3f} "
              f"({result.seconds:.1f} s)", file=sys.stderr)

    print(f"simulated annotator on {len(sequences)} sequence(s), {args.rounds} rounds ...", file=sys.stderr)
    runs = []
    for sequence in sequences:
        truths = sequence.object_masks()
        runs += simulate_session(sequence.frames, truths, args.weights, settings, args.rounds, case=sequence.name,
                                 progress=report)
        runs += simulate_peer(sequence.frames, truths, args.rounds, case=sequence.name, progress=report)
    print(interactive_table(runs))
    if args.plot:
        plot_rounds(runs, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(run) for run in runs], indent=1))
    return 0


def _bench_box(args: argparse.Namespace) -> int:
    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.evaluation.first_masks import benchmark_first_masks, first_mask_table
    from napari_segflow.training.davis import HELD_OUT, find_sequences

    net, _ = load_checkpoint(args.weights)
    sequences = find_sequences(args.davis_root, names=args.sequences or list(HELD_OUT))

    def report(result):
        print(
            f"  {result.case}: IoU {', '.join(f'{v:.3f}' for v in result.iou)} (filled box {result.filled_box_iou:.3f},"
            f" GrabCut {', '.join(f'{v:.3f}' for v in result.grabcut_iou)}),"
            f" run J {result.run_j:.3f} F {result.run_f:.3f}",
            file=sys.stderr,
        )

    print(f"first masks from a box on {len(sequences)} sequence(s) ...", file=sys.stderr)
    settings = session_settings(args, keep_flow=False, seed=args.finetune_seed,
                                bidirectional=args.bidirectional)
    results = benchmark_first_masks(sequences, net, args.weights, settings, progress=report)
    print(first_mask_table(results))
    return 0


def _bench_long(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_segflow.data.io import open_video, read_annotation
    from napari_segflow.evaluation.engine import benchmark_long_video

    video = open_video(args.video)
    mask = read_annotation(args.mask, video.shape[1:3])
    settings = session_settings(args, keep_flow=True, seed=args.finetune_seed,
                                bidirectional=args.bidirectional)
    description = "propagate" + (" (two sweeps)" if settings.sweeps == 2 else "")
    bar = tqdm(total=args.long_frames * settings.sweeps, desc=description, unit="frame", file=sys.stderr)

    def progress(done, total):
        bar.update(1)

    result = benchmark_long_video(video, mask, args.weights, settings, count=args.long_frames,
                                  size=tuple(args.frame_size), progress=progress)
    bar.close()
    same_size = result.frames_per_second / result.dis_working_frames_per_second
    print("| video | working size | SegFlow frames/s | DIS warping frames/s at the working size | ratio | "
          "DIS warping frames/s at the frame size | ratio | peak RSS | session folder |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {result.frames} frames {result.size[1]}x{result.size[0]} | "
          f"{result.working_size[1]}x{result.working_size[0]} | {result.frames_per_second:.1f} | "
          f"{result.dis_working_frames_per_second:.1f} | {same_size:.2f} | "
          f"{result.dis_frames_per_second:.1f} | {result.frames_per_second / result.dis_frames_per_second:.2f} | "
          f"{result.peak_rss_megabytes:.0f} MB (before the session: {result.baseline_rss_megabytes:.0f} MB) | "
          f"{result.session_bytes_per_frame / 1e3:.0f} kB a frame (flow {result.flow_bytes_per_frame / 1e3:.0f} kB) |")
    return 0
