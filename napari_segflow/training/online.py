"""Online fine-tuning (SegFlow §4.1-4.2) as a generator that yields after every step, so a GUI can show
progress and stop between steps (close the generator, or stop iterating).

From the user's annotated frames (one or more, K objects) each step builds a batch of two-frame clips:
an annotated frame under a random affine (shift, rotation, flip, scale), followed by its synthesised
"next frame" in which every object is slightly deformed and pasted back (uncovered area black), with its
exact flow. The segmentation side and the memory learn on both frames (SegmentationObjective: the class-balanced
loss, or for a network with a mask prior the calibrated loss, each frame's prior its true mask deformed); the
flow branch is frozen (it still gives its features), unless ``adapt_flow`` also lets it learn from the
video's own consecutive frames with the unsupervised losses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from torch.profiler import record_function

from napari_segflow.data.augment import (
    AffineRanges,
    DeformationRanges,
    apply_affine,
    deformed_next_frame,
    random_affine,
)
from napari_segflow.data.io import check_annotation, mask_size
from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels
from napari_segflow.training.mask_priors import PriorDeformation
from napari_segflow.training.objectives import FlowObjective, SegmentationObjective, flow_parameters, train_only


SCOPE_SAMPLE = "finetune: sample clips"
SCOPE_FORWARD = "finetune: forward + loss"
SCOPE_BACKWARD = "finetune: backward"
SCOPE_UPDATE = "finetune: optimizer"


@dataclass(frozen=True)
class FinetuneConfig:
    # many small steps rather than fewer large ones: on the validation sequences (three fine-tune seeds) batches of
    # one at 1e-3 for 50 s (about 370 steps on two cores) gave J&F 0.735, batches of two at 5e-4 0.642 at 150 steps
    # and 0.687 filling the 50 s; the step cap bounds the work where steps are fast (a GPU)
    steps: int = 400
    time_budget: float | None = 60.0  # seconds; None: no limit
    learning_rate: float = 1e-3
    batch_size: int = 1
    long_side: int = DEFAULT_LONG_SIDE
    deformed_next_frame: bool = True  # False: the -fda ablation (the clip's second frame is the first again)
    motion_features: bool = True  # False: the -flo ablation (the flow branch sees no motion)
    bidirectional_share: float = 0.5
    adapt_flow: bool = False
    flow_learning_rate: float = 1e-4
    clip_value: float = 50.0
    seed: int = 0
    affine: AffineRanges = field(default_factory=AffineRanges)
    deformation: DeformationRanges = field(default_factory=DeformationRanges)
    # the fine-tune teaches appearance only, every prior unknown: with deformed priors of the annotated frame the
    # fine-tuned network learned to follow its own carried masks and drifted (validation J&F 0.584 against 0.668)
    prior_deformation: PriorDeformation = field(default_factory=lambda: PriorDeformation(drop_share=1.0))

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise SegFlowError(f"fine-tune steps must be at least 1, got {self.steps}")
        if self.time_budget is not None and not (0 < self.time_budget < float("inf")):
            raise SegFlowError(f"fine-tune time budget must be a positive number of seconds, got {self.time_budget}")


@dataclass
class FinetuneStep:
    step: int
    total: int
    loss: float
    elapsed: float
    metrics: dict


def prepare_annotations(
    frames, annotations: dict[int, np.ndarray], objects: ObjectChannels | None = None
) -> tuple[dict[int, np.ndarray], ObjectChannels]:
    """Check annotations against the video before any long work: frame indices in range, masks of the
    frames' size, some object somewhere, ids among ``objects``. Returns channel maps and the objects."""
    if not annotations:
        raise SegFlowError("no annotated frame: paint the object on at least one frame")
    count = len(frames)
    checked = {}
    for index, labels in annotations.items():
        if not 0 <= int(index) < count:
            raise SegFlowError(f"annotation of frame {index}: out of range (the video has frames 0..{count - 1})")
        labels = np.asarray(labels)
        if labels.shape != tuple(frames.shape[1:3]):
            raise SegFlowError(
                f"annotation of frame {index}: the mask is {mask_size(labels)}, "
                f"the frames are {frames.shape[2]}x{frames.shape[1]}"
            )
        checked[int(index)] = labels
    if not any(labels.any() for labels in checked.values()):
        raise SegFlowError("the annotations hold no object (every pixel is 0): paint the object first")
    for index, labels in checked.items():
        if labels.any():
            check_annotation(labels, frames.shape[1:3], f"annotation of frame {index}")
    if objects is None:
        objects = ObjectChannels.from_annotations(checked)
    channels = {i: objects.to_channels(labels, f"annotation of frame {i}") for i, labels in checked.items()}
    return channels, objects


def finetune(
    net: SegFlowNet,
    frames,
    annotations: dict[int, np.ndarray],
    objects: ObjectChannels | None = None,
    config: FinetuneConfig = FinetuneConfig(),
    device: torch.device | str = "cpu",
) -> Iterator[FinetuneStep]:
    """Fine-tune ``net`` in place on ``annotations`` ({frame index: label image}) of the (T, H, W, 3)
    ``frames``. Warm-starts from whatever ``net`` holds (a previous fine-tune when adding a correction).
    The time budget counts from the first ``next()`` and covers the set-up; a step that would end past it,
    at the steps' mean pace so far, is not started. Each FinetuneStep's ``total`` is the number of steps the
    fine-tune expects to make, whichever budget ends first (the last step's total is its own number)."""
    started = time.perf_counter()
    channels, objects = prepare_annotations(frames, annotations, objects)
    net.set_num_objects(objects.num_objects)
    net.to(device)
    geometry = WorkingResolution(frames.shape[1], frames.shape[2], config.long_side)
    images = {i: geometry.frames_to_network(frames[i], device)[0] for i in channels}
    targets = {i: geometry.labels_to_network(channels[i], device)[0] for i in channels}
    indices = sorted(images)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    seg_params = train_only(net, "seg")
    optimizer = torch.optim.Adam(seg_params, lr=config.learning_rate)
    # the flow branch is frozen here: its features enter as constants, which spares its backward pass
    objective = SegmentationObjective(net, torch.Generator().manual_seed(config.seed), flow_gradients=False,
                                      prior_deformation=config.prior_deformation)
    flow_objective, flow_optimizer = None, None
    if config.adapt_flow:
        if len(frames) < 2:
            raise SegFlowError("adapting the flow branch needs a video of at least two frames")
        flow_objective = FlowObjective(net)
        flow_optimizer = torch.optim.Adam(flow_parameters(net), lr=config.flow_learning_rate)
    net.train()
    set_up = time.perf_counter() - started
    try:
        for step in range(1, config.steps + 1):
            # the named scopes let a profiler say where a step's time goes (evaluation/finetune_profile.py)
            with record_function(SCOPE_SAMPLE):
                clip_frames, clip_masks = [], []
                for _ in range(config.batch_size):
                    index = indices[int(rng.integers(len(indices)))]
                    first, second, first_labels, second_labels = _sample(
                        images[index], targets[index], generator, config
                    )
                    clip_frames.append(torch.stack([first, second]))
                    clip_masks.append(torch.stack([first_labels, second_labels]))
                batch_frames = torch.stack(clip_frames)
                batch_masks = torch.stack(clip_masks)
            bidirectional = bool(rng.random() < config.bidirectional_share)
            partners = None if config.motion_features else [0, 1]
            with record_function(SCOPE_FORWARD):
                loss, metrics = objective(batch_frames, batch_masks, bidirectional, partners)
            with record_function(SCOPE_BACKWARD):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with record_function(SCOPE_UPDATE):
                torch.nn.utils.clip_grad_value_(seg_params, config.clip_value)
                optimizer.step()
            if flow_objective is not None:
                metrics.update(_adapt_flow_step(net, flow_objective, flow_optimizer, frames, geometry, rng, device))
            elapsed = time.perf_counter() - started
            total = _expected_steps(step, config, elapsed, (elapsed - set_up) / step)
            yield FinetuneStep(step, total, float(loss.detach()), elapsed, metrics)
            if step == total:
                break
    finally:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(True)


def _expected_steps(step: int, config: FinetuneConfig, elapsed: float, pace: float) -> int:
    """The steps the fine-tune will have made when it ends, whichever of its budgets (steps, seconds) ends first,
    at the mean pace so far: ``step`` when this is the last one."""
    if config.time_budget is None:
        return config.steps
    return min(config.steps, step + max(0, int((config.time_budget - elapsed) // max(pace, 1e-9))))


def _sample(image, labels, generator, config: FinetuneConfig):
    """One two-frame training clip from an annotated frame (3, H, W) and its channel map (H, W)."""
    height, width = labels.shape
    params = random_affine(generator, height, width, config.affine)
    moved, moved_labels, _ = apply_affine(params, image[None], labels[None])
    image, labels = moved[0], moved_labels[0]
    if config.deformed_next_frame and labels.any():
        pair = deformed_next_frame(image, labels, generator, config.deformation)
        return pair.image, pair.next_image, pair.labels, pair.next_labels
    return image, image, labels, labels


def _adapt_flow_step(net, objective, optimizer, frames, geometry, rng, device) -> dict:
    train_only(net, "flow")
    t = int(rng.integers(len(frames) - 1))
    pair = geometry.frames_to_network(np.stack([frames[t], frames[t + 1]]), device)
    loss, metrics = objective(pair[:1], pair[1:], None)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    train_only(net, "seg")
    return {"flow_adapt_loss": metrics["flow_loss"]}
