"""`segflow demo`: the sample clip end to end, with an overview picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.data.flowviz import flow_to_rgb
    from napari_segflow.data.io import open_video, read_annotation, read_label_image, write_label_png
    from napari_segflow.data.resolution import WorkingResolution
    from napari_segflow.evaluation.baselines import propagate_by_flow
    from napari_segflow.evaluation.metrics import score_sequence
    from napari_segflow.inference.propagation import frame_order, propagate
    from napari_segflow.objects import ObjectChannels
    from napari_segflow.opencv import INSTALL, has_opencv
    from napari_segflow.device import choose_device
    from napari_segflow.training.online import FinetuneConfig, finetune

    sample = Path(args.sample)
    video = open_video(sample / f"{sample.name}.mp4")
    mask = read_annotation(sample / "first_frame_mask.png", video.shape[1:])
    device = choose_device(args.device)
    net, _ = load_checkpoint(args.weights)
    objects = ObjectChannels.from_annotations({0: mask})
    config = FinetuneConfig(time_budget=args.finetune_seconds)
    with tqdm(total=config.steps, desc="fine-tune", unit="step", file=sys.stderr) as bar:
        for step in finetune(net, video, {0: mask}, objects, config, device):
            bar.update(1)
            bar.set_postfix(loss=f"{step.loss:.3f}")
    out = Path(args.out)
    geometry = WorkingResolution(video.shape[1], video.shape[2])
    predictions = []
    order = frame_order(len(video), 0, "forward")
    for result in tqdm(propagate(net, video, objects, order, geometry, device, start_labels=mask), total=len(order),
                       desc="propagate", unit="frame", file=sys.stderr):
        write_label_png(result.labels, out / "masks" / f"{result.index:05d}.png")
        flow_path = out / "flow" / f"{result.index:05d}.png"
        flow_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(flow_to_rgb(result.flow)).save(flow_path)
        predictions.append(result.labels)
    _overview(video, predictions, out)
    truth_paths = sorted((sample / "masks").glob("*.png"))
    if len(truth_paths) == len(video):
        truths = np.stack([read_label_image(p) for p in truth_paths])
        ours = score_sequence(np.stack(predictions), truths)
        if has_opencv():
            peer = np.stack([labels for _, labels in propagate_by_flow(video, mask, order, "dis")])
            theirs = score_sequence(peer, truths)
            beside = f"DIS flow warping J {theirs.j_mean:.3f} F {theirs.f_mean:.3f}"
        else:
            beside = f"the DIS peer needs OpenCV: {INSTALL}"
        print(f"{sample.name}: SegFlow J {ours.j_mean:.3f} F {ours.f_mean:.3f} | {beside}")
    print(f"masks: {out / 'masks'}  flow colours: {out / 'flow'}  overview: {out / 'overview.png'}")
    return 0


def _overview(video, predictions, out: Path, columns: int = 4) -> None:
    """One picture: a few frames with the masks drawn over them, above the flow colours of the same frames."""
    import numpy as np
    from PIL import Image

    from napari_segflow.data.io import davis_palette

    palette = davis_palette()
    picks = np.linspace(0, len(predictions) - 1, columns).round().astype(int)
    overlays, flows = [], []
    for index in picks:
        frame = video[int(index)].astype(np.float32)
        labels = predictions[index]
        tint = palette[labels].astype(np.float32)
        overlay = np.where(labels[..., None] > 0, 0.45 * frame + 0.55 * tint, frame)
        overlays.append(overlay.astype(np.uint8))
        flows.append(np.asarray(Image.open(out / "flow" / f"{int(index):05d}.png").convert("RGB")))
    Image.fromarray(np.concatenate([np.concatenate(overlays, 1), np.concatenate(flows, 1)], 0)).save(
        out / "overview.png"
    )
