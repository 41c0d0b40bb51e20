"""Iterative offline training (SegFlow §4.1): rounds that alternate the branches.

In a flow phase the segmentation side is frozen and the flow branch learns from a mix of pairs
(training/flow_batches.py): real frames warped with exact flow (motion growing along a curriculum), real
consecutive frames labelled once by the DIS teacher (training/teacher.py, cached under ``teacher_cache``),
procedural videos with exact flow, and real pairs without labels (Every Frame Counts' unsupervised losses).
In a seg phase the flow branch is frozen and the segmentation side with its ConvGRU memory learns from
windows of consecutive frames by backpropagation through time (20% stop-and-go windows, gradients clipped
to [-50, 50]). In a joint phase both branches learn at once, each at its own rate, from a seg window and a
flow pair per step (their losses summed): the score heads follow the flow features as they change. A phase ends
when its validation error has not improved for ``patience`` validations (or at ``phase_max_steps``); the phase's
best weights are kept. Training starts with a flow phase: the branches start from scratch here, and the seg
side learns more from a flow branch that already sees motion. ``phases`` picks the phases of each round, so a
long training can run as a chain of stages, each warm-started from the last one's checkpoint (``init_from``).

Weights are chosen and phases stopped on a validation split carved from the training sequences
(``validation``), never on the held-out sequences the model card reports.

The same command runs on one CPU, one GPU, or N GPUs under torchrun (DistributedDataParallel).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.config import preset_config
from napari_segflow.data.augment import AffineRanges
from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
from napari_segflow.data.warped_pairs import WarpRanges, make_warped_pair
from napari_segflow.device import choose_device
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.batch_stream import (FlowBatch, SegBatch, counted, flow_batches, in_workers,
                                                   seg_batches, worker_seed)
from napari_segflow.training.davis import HELD_OUT, VALIDATION, Sequence, find_sequences
from napari_segflow.training.flow_batches import FLOW_SOURCES, FlowBatches, frame_to_tensor
from napari_segflow.training.mask_priors import PriorDeformation
from napari_segflow.training.objectives import (FlowObjective, JointObjective, SegmentationObjective,
                                                 flow_parameters, train_only)
from napari_segflow.training.teacher import TeacherCache
from napari_segflow.training.warm_start import warm_start
from napari_segflow.training.windows import WindowSampler

PHASES = ("flow", "seg", "joint")
#: what a flow phase is validated on: procedural pairs, pairs warped from the validation sequences' frames with
#: exact flow, and the validation sequences' real consecutive frames against the DIS teacher's labels
FLOW_VALIDATION = ("synthetic", "warped", "teacher")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Relative paths are taken from the working folder (the repository root
    in the README's commands)."""

    output: str = "runs/offline"
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)
    davis_root: str = "../shared/data/davis2016-train-240p"
    held_out: tuple[str, ...] = HELD_OUT
    validation: tuple[str, ...] = VALIDATION
    phases: tuple[str, ...] = ("flow", "seg")
    init_from: str | None = None
    init_fresh: tuple[str, ...] = ()
    keep_frozen: tuple[str, ...] = ()
    seed: int = 0
    size: tuple[int, int] = (192, 320)
    window: int = 4
    batch_size: int = 2
    stop_and_go: float = 0.2
    synthetic_share_seg: float = 0.4
    distractors: float = 0.0  # share of seg windows holding objects other than the target (training/windows.py)
    prior_boxes: float = 0.0  # share of mask priors that are the objects' boxes (training/mask_priors.py)
    own_priors: float = 0.0  # share of windows whose later priors are the network's own answers (mask_priors.py)
    photometric: float = 0.0  # strength of the seg windows' relighting (data/photometric.py; 0: none)
    window_scale: tuple[float, ...] = (0.9, 1.1)  # the seg windows' affine zoom range
    flow_mix: dict = field(default_factory=lambda: {"warped": 0.45, "teacher": 0.4, "synthetic": 0.15})
    flow_batch_size: int = 8
    flow_size: tuple[int, int] = (192, 256)
    flow_motion: tuple[float, float] = (4.0, 48.0)
    flow_motion_ramp: int = 1500
    teacher_cache: str = "runs/teacher_dis"
    teacher_videos: tuple[str, ...] = ()
    bidirectional_share: float = 0.5
    lr_seg: float = 1e-3
    lr_flow: float = 5e-4
    lr_schedule: str = "constant"  # or "cosine": down to lr_floor x the rate over the phase's max steps
    lr_floor: float = 0.1
    weight_decay: float = 1e-4
    rounds: int = 3
    phase_max_steps: tuple[int, ...] = (1500, 1500)  # flow, seg (, joint)
    phase_min_steps: int = 200
    phase_max_minutes: float = 0.0  # 0: none; else a phase also ends after this much training time (GPU runs)
    joint_flow_weight: float = 1.0  # a joint step's loss: seg loss + this x flow loss
    joint_epe_weight: float = 0.1  # a joint validation's error: (1 - seg IoU) + this x flow EPE (px)
    validate_every: int = 150
    patience: int = 3
    clip_value: float = 50.0
    validation_synthetic_clips: int = 12
    flow_validation: tuple[str, ...] = ("synthetic", "warped")
    teacher_validation_stride: int = 4  # every n-th consecutive pair of each validation sequence
    validation_window: int = 8
    checkpoint_every: int = 100
    # 0: none; else the weights at every n-th step are kept as checkpoints (snapshots/step_00000.pt), so a stage's
    # weights can be chosen afterwards by what the generic validation IoU cannot see: the fine-tuned masks
    snapshot_every: int = 0
    amp: bool = True
    # processes drawing batches ahead of the device (GPU runs); 0: in step, resumable to the bit
    loader_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for setting in fields(self):
            _check_kind(setting.name, setting.type, getattr(self, setting.name))
        for name in ("batch_size", "flow_batch_size", "validate_every", "checkpoint_every", "patience",
                     "validation_window"):
            if getattr(self, name) < 1:
                raise SegFlowError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_seg", "lr_flow", "clip_value"):
            if getattr(self, name) <= 0:
                raise SegFlowError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "phase_min_steps", "flow_motion_ramp", "validation_synthetic_clips",
                     "snapshot_every"):
            if getattr(self, name) < 0:
                raise SegFlowError(f"TrainConfig.{name} must be 0 or more, got {getattr(self, name)}")
        if any(steps < 0 for steps in self.phase_max_steps):
            raise SegFlowError(f"TrainConfig.phase_max_steps must be 0 or more each, got {list(self.phase_max_steps)}")
        if any(s % 64 for s in (*self.size, *self.flow_size)):
            raise SegFlowError(f"TrainConfig.size {self.size} and flow_size {self.flow_size} must be multiples of 64")
        if not self.phases or any(p not in PHASES for p in self.phases):
            raise SegFlowError(f"TrainConfig.phases must name phases from {PHASES}, got {self.phases}")
        if len(self.phase_max_steps) not in (2, 3) or ("joint" in self.phases and len(self.phase_max_steps) < 3):
            raise SegFlowError(
                "TrainConfig.phase_max_steps gives the flow, seg and joint phases' steps (the joint one may be left "
                f"out when no phase is joint), got {list(self.phase_max_steps)} for phases {list(self.phases)}"
            )
        for name in ("joint_flow_weight", "joint_epe_weight"):
            if getattr(self, name) < 0:
                raise SegFlowError(f"TrainConfig.{name} must be 0 or more, got {getattr(self, name)}")
        unknown = sorted(set(self.flow_mix) - set(FLOW_SOURCES))
        if (
            unknown
            or not self.flow_mix
            or any(v < 0 for v in self.flow_mix.values())
            or sum(self.flow_mix.values()) <= 0
        ):
            raise SegFlowError(
                f"TrainConfig.flow_mix must give non-negative shares of {', '.join(FLOW_SOURCES)}, got {self.flow_mix}"
            )
        for name in ("distractors", "prior_boxes", "own_priors"):
            if not 0 <= getattr(self, name) <= 1:
                raise SegFlowError(f"TrainConfig.{name} must be a share in [0, 1], got {getattr(self, name)}")
        if self.photometric < 0:
            raise SegFlowError(f"TrainConfig.photometric must be 0 (none) or more, got {self.photometric}")
        if len(self.window_scale) != 2 or not 0 < self.window_scale[0] <= self.window_scale[1]:
            raise SegFlowError(f"TrainConfig.window_scale must be [smallest, largest] zoom, both positive, got "
                               f"{list(self.window_scale)}")
        if self.window < 2:
            raise SegFlowError(f"TrainConfig.window must be at least 2, got {self.window}")
        if self.rounds < 1:
            raise SegFlowError(f"TrainConfig.rounds must be at least 1, got {self.rounds}")
        if not self.flow_validation or any(k not in FLOW_VALIDATION for k in self.flow_validation):
            raise SegFlowError(
                f"TrainConfig.flow_validation must name kinds from {FLOW_VALIDATION}, got {self.flow_validation}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise SegFlowError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 < self.lr_floor <= 1:
            raise SegFlowError(f"TrainConfig.lr_floor must be in (0, 1], got {self.lr_floor}")
        if self.loader_workers < 0:
            raise SegFlowError(f"TrainConfig.loader_workers must be 0 or more, got {self.loader_workers}")
        if self.phase_max_minutes < 0:
            raise SegFlowError(
                f"TrainConfig.phase_max_minutes must be 0 (no limit) or more, got {self.phase_max_minutes}"
            )
        if self.teacher_validation_stride < 1:
            raise SegFlowError(
                f"TrainConfig.teacher_validation_stride must be at least 1, got {self.teacher_validation_stride}"
            )


_KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}


def _check_kind(name: str, annotation: str, value: Any) -> None:
    """A setting of the kind its annotation names (a config file or --set gives any YAML value): int, float,
    bool, str (or None where allowed), dict, or a tuple of ints, floats or strings."""
    if annotation.endswith(" | None"):
        if value is None:
            return
        annotation = annotation[: -len(" | None")]
    if annotation.startswith("tuple["):
        element = annotation[len("tuple["):].split(",")[0].rstrip("]").strip()
        if not isinstance(value, tuple) or not all(_is_kind(item, element) for item in value):
            raise SegFlowError(f"TrainConfig.{name} must be a list of {element} values, got {value!r}")
        return
    if annotation in _KINDS and not _is_kind(value, annotation):
        raise SegFlowError(f"TrainConfig.{name} must be {'an' if annotation == 'int' else 'a'} {annotation}, "
                           f"got {value!r}")


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "bool":  # YAML's true is no count
        return False
    return isinstance(value, _KINDS[kind])


def load_train_config(path, **overrides: Any) -> TrainConfig:
    """Read a YAML (or JSON) config, with some settings replaced; an unknown key is an error naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SegFlowError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SegFlowError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(values, dict):
        raise SegFlowError(f"{path}: expected a mapping of settings")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SegFlowError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SegFlowError(
            f"unknown setting(s) {', '.join(unknown)} given for {path}; known: {', '.join(sorted(known))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in {**values, **overrides}.items()}
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise SegFlowError(f"{path}: {error}") from error
    try:
        preset_config(config.preset, **config.model_overrides)  # fail early on a bad model setting
    except SegFlowError as error:
        raise SegFlowError(f"{path}: {error}") from error
    return config


@dataclass
class Progress:
    """Where a run stands; saved with every resumable checkpoint."""

    round: int = 0
    phase: str = ""
    phase_step: int = 0
    global_step: int = 0
    best_error: float = math.inf
    stale: int = 0
    elapsed: float = 0.0
    phase_elapsed: float = 0.0


#: What a training run leaves in its output folder.
RUN_FILES = ("state.pt", "final.pt", "metrics.jsonl")


def check_new_output(output: Path) -> None:
    """A run that does not resume starts from step 0: in a folder holding another run it would overwrite that
    run's resumable state and checkpoints and append to its log."""
    left = [name for name in RUN_FILES if (output / name).exists()]
    if left:
        what_to_do = ("resume it (segflow train --resume; OfflineTrainer(config, resume=True)) or name a new output "
                      "folder" if "state.pt" in left
                      else "it cannot be resumed (no state.pt); name a new output folder, or move it away")
        raise SegFlowError(f"output {output} already holds a training run ({', '.join(left)}); {what_to_do}")


class OfflineTrainer:
    """One offline training run in ``config.output``: a new run refuses a folder that holds another; ``resume``
    goes on from the folder's state.pt."""

    def __init__(self, config: TrainConfig, log_every: int = 1, resume: bool = False) -> None:
        self.config = config
        self.output = Path(config.output).resolve()
        if not resume:
            # before the process group: torchrun's ranks meet there, so every rank checks before any writes
            check_new_output(self.output)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed:
            self._init_distributed()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        self.device = self._device()
        davis_root = Path(config.davis_root).resolve()
        overlap = sorted(set(config.validation) & set(config.held_out))
        if overlap:
            raise SegFlowError(f"sequences {', '.join(overlap)} are both held out and in the validation split")
        training = find_sequences(davis_root, exclude=tuple(config.held_out) + tuple(config.validation))
        self.validation_sequences = find_sequences(davis_root, names=list(config.validation))
        if not training:
            raise SegFlowError(f"{davis_root}: no training sequences left after holding out {config.held_out}")
        self.training_names = [s.name for s in training]
        self.sampler = WindowSampler(
            training, config.size, config.window, seed=config.seed * 1000 + self.rank, stop_and_go=config.stop_and_go,
            distractors=config.distractors, photometric=config.photometric,
            affine=AffineRanges(scale=config.window_scale),
        )
        self.teacher_validation_pairs: list = []
        self.flow_batches = self._flow_batches(training) if {"flow", "joint"} & set(config.phases) else None
        torch.manual_seed(config.seed)
        self.net = SegFlowNet(preset_config(config.preset, **config.model_overrides)).to(self.device)
        self.warm_started: list[str] = []
        if config.init_from:
            self.warm_started = warm_start(self.net, config.init_from, config.init_fresh)
        names = [name for name, _ in self.net.named_parameters()]
        for prefix in config.keep_frozen:
            if not any(name.startswith(prefix) for name in names):
                raise SegFlowError(f"TrainConfig.keep_frozen: no parameter of the network starts with {prefix!r}")
        self.progress = Progress(phase=config.phases[0])
        self.best_state: dict | None = None
        self.batches: Iterator[SegBatch | FlowBatch] | None = None  # the running phase's, while run() runs
        self.prior_generator = torch.Generator().manual_seed(config.seed * 1000 + 500 + self.rank)
        self.optimizer = self._optimizer(self.progress.phase)
        self.validation_clips = self._validation_clips()
        self.validation_pairs = self._validation_pairs() if self.flow_batches is not None else []
        self.log_every = log_every
        if resume:
            self._resume()

    # -- set-up -----------------------------------------------------------------------------------

    def _init_distributed(self) -> None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))

    def _device(self) -> torch.device:
        if self.distributed and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return choose_device(self.config.device)

    def _optimizer(self, phase: str) -> torch.optim.Optimizer:
        """AdamW over the phase's trainable parameters, one group per branch (a joint phase has both, each at
        its own rate), in train_only's order, which a resumed optimizer's state follows."""
        kept = {id(p) for name, p in self.net.named_parameters() if name.startswith(tuple(self.config.keep_frozen))}
        params = [p for p in train_only(self.net, phase) if id(p) not in kept]
        for parameter in self.net.parameters():
            if id(parameter) in kept:
                parameter.requires_grad_(False)
        if phase == "joint":
            flow = {id(p) for p in flow_parameters(self.net)}
            groups = [{"params": [p for p in params if id(p) in flow], "branch": "flow"},
                      {"params": [p for p in params if id(p) not in flow], "branch": "seg"}]
        else:
            groups = [{"params": params, "branch": phase}]
        for group in groups:
            group["lr"] = self.learning_rate(phase, group["branch"])
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def learning_rate(self, phase: str, branch: str | None = None) -> float:
        """The rate of ``branch`` (default: the phase's own; a joint phase's default is the seg side's) at the
        phase's current step: constant, or a cosine from the configured rate down to ``lr_floor`` times it at the
        phase's last step, or at its time limit if that comes first."""
        branch = branch or ("seg" if phase == "joint" else phase)
        base = self.config.lr_flow if branch == "flow" else self.config.lr_seg
        if self.config.lr_schedule == "constant":
            return base
        share = min(1.0, max(self.progress.phase_step / max(1, self._phase_steps(phase)), self._time_share()))
        floor = self.config.lr_floor
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * share)))

    def _time_share(self) -> float:
        """How much of the phase's time limit is spent (0 without one)."""
        if not self.config.phase_max_minutes:
            return 0.0
        return min(1.0, self.progress.phase_elapsed / (60 * self.config.phase_max_minutes))

    def _out_of_time(self) -> bool:
        """Whether the phase's time limit is spent. Under torchrun each rank keeps its own clock, so they agree
        (out of time on any rank: on all), or one rank would switch phase while the others wait for it."""
        spent = self._time_share() >= 1.0
        if not (self.distributed and self.config.phase_max_minutes):
            return spent
        flag = torch.tensor(float(spent), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _objective(self, phase: str) -> torch.nn.Module:
        if phase == "flow":
            objective = FlowObjective(self.net)
        else:
            objective = SegmentationObjective(self.net, self.prior_generator,
                                              prior_deformation=PriorDeformation(box_share=self.config.prior_boxes),
                                              own_prior_share=self.config.own_priors)
            if phase == "joint":
                objective = JointObjective(objective, FlowObjective(self.net), self.config.joint_flow_weight)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # one of the memory readouts (one way / both ways) sits out each step
            objective = torch.nn.parallel.DistributedDataParallel(
                objective, device_ids=ids, find_unused_parameters=True
            )
        return objective

    def _flow_batches(self, training: list[Sequence]) -> FlowBatches:
        """The teacher-labelled real sources (built on first use, by rank 0) and the batch source over them. The
        validation sequences are labelled too when ``flow_validation`` asks for their real motion; only the
        validation reads them."""
        from napari_segflow.data.io import open_video

        cache = TeacherCache(Path(self.config.teacher_cache).resolve())
        sequences = {s.name: s.frames for s in training}
        videos = {Path(v).stem: v for v in self.config.teacher_videos}
        validation = {}
        if "teacher" in self.config.flow_validation:
            validation = {s.name: s.frames for s in self.validation_sequences}
        if self.rank == 0:  # generators: a video is opened only when it still needs labels
            cache.build(((n, f) for n, f in sequences.items() if not cache.has(n)), report=print)
            cache.build(((n, open_video(v)) for n, v in videos.items() if not cache.has(n)), report=print)
            cache.build(((n, f) for n, f in validation.items() if not cache.has(n)), report=print)
        if self.distributed:
            torch.distributed.barrier()
        self.teacher_validation_pairs = [
            cache.pair(name, index)
            for name in validation
            for index in range(0, cache.pair_count(name), self.config.teacher_validation_stride)
        ]
        return FlowBatches(cache, [*sequences, *videos], self.config.flow_size,
                           seed=self.config.seed * 1000 + 500 + self.rank)

    def _validation_clips(self):
        generator = SyntheticVideoGenerator(
            SyntheticConfig(height=self.config.flow_size[0], width=self.config.flow_size[1], num_frames=2)
        )
        # seeds far from the training stream's
        return [generator(10_000_000 + i) for i in range(self.config.validation_synthetic_clips)]

    def _validation_pairs(self):
        """Exact-flow pairs warped from the validation sequences' frames, at the curriculum's largest motion."""
        generator = torch.Generator().manual_seed(10_000_000)
        ranges = WarpRanges(max_motion=self.config.flow_motion[1])
        height, width = self.config.flow_size
        pairs = []
        for index in range(self.config.validation_synthetic_clips):
            sequence = self.validation_sequences[index % len(self.validation_sequences)]
            image = frame_to_tensor(sequence.frame((index * 7) % len(sequence)))
            image = torch.nn.functional.interpolate(image[None], size=(height, width), mode="bilinear",
                                                    align_corners=False)[0]
            texture = frame_to_tensor(sequence.frame((index * 7 + 3) % len(sequence)))
            pairs.append(make_warped_pair(image, [texture], generator, ranges))
        return pairs

    # -- checkpoints ------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.output / "state.pt"

    def snapshot_path(self, step: int) -> Path:
        return self.output / "snapshots" / f"step_{step:05d}.pt"

    def save_snapshot(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.net, self.snapshot_path(self.progress.global_step), metadata=self.metadata())

    def save_state(self) -> None:
        if self.rank != 0:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": asdict(self.config),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": asdict(self.progress),
            "best_state": self.best_state,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": self.sampler.rng.bit_generator.state,
                "sampler_torch": self.sampler.torch_generator.get_state(),
                "python": random.getstate(),
                "prior_torch": self.prior_generator.get_state(),
                **(
                    {"flow_numpy": self.flow_batches.rng.bit_generator.state,
                     "flow_torch": self.flow_batches.torch_generator.get_state()}
                    if self.flow_batches is not None else {}
                ),
            },
        }
        temporary = self.state_path.with_name(".state.pt.tmp")
        try:
            torch.save(payload, temporary)
            os.replace(temporary, self.state_path)
        finally:
            temporary.unlink(missing_ok=True)

    def _resume(self) -> None:
        if not self.state_path.is_file():
            raise SegFlowError(f"{self.state_path}: nothing to resume from")
        payload = torch.load(self.state_path, map_location=self.device, weights_only=False)
        if payload["config"] != asdict(self.config):
            raise SegFlowError(f"{self.state_path}: saved with another config; resume with the same config file")
        self.net.load_state_dict(payload["model"], strict=True)
        self.progress = Progress(**payload["progress"])
        self.optimizer = self._optimizer(self.progress.phase)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.best_state = payload["best_state"]
        torch.set_rng_state(payload["rng"]["torch"])
        self.sampler.rng.bit_generator.state = payload["rng"]["numpy"]
        self.sampler.torch_generator.set_state(payload["rng"]["sampler_torch"])
        random.setstate(payload["rng"]["python"])
        if "prior_torch" in payload["rng"]:  # states saved before the mask prior have none
            self.prior_generator.set_state(payload["rng"]["prior_torch"])
        if self.flow_batches is not None:
            self.flow_batches.rng.bit_generator.state = payload["rng"]["flow_numpy"]
            self.flow_batches.torch_generator.set_state(payload["rng"]["flow_torch"])

    # -- steps ------------------------------------------------------------------------------------

    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def max_motion(self, step: int | None = None) -> float:
        """The curriculum: the largest motion of the warped pairs grows linearly over ``flow_motion_ramp`` steps
        (at the phase's current step unless ``step`` is given)."""
        start, end = self.config.flow_motion
        step = self.progress.phase_step if step is None else step
        share = min(1.0, step / max(1, self.config.flow_motion_ramp))
        return start + (end - start) * share

    def _batches(self, phase: str) -> Iterator[SegBatch | FlowBatch]:
        """The phase's batches: drawn here in step with training, or by ``loader_workers`` processes ahead."""
        cfg = self.config

        def stream(sampler: WindowSampler, flow_source: FlowBatches | None, motion_now) -> Iterator:
            seg = seg_batches(sampler, cfg.batch_size, cfg.synthetic_share_seg, cfg.bidirectional_share)
            if phase == "seg":
                return seg
            flow = flow_batches(flow_source, cfg.flow_mix, cfg.flow_batch_size, motion_now)
            return zip(seg, flow) if phase == "joint" else flow

        if not cfg.loader_workers:
            return stream(self.sampler, self.flow_batches, self.max_motion)
        start = self.progress.phase_step
        generation = self.progress.global_step

        def make(worker: int, count: int) -> Iterator:
            # a forked copy of the samplers, drawing its own stream
            for source in (self.sampler, self.flow_batches):
                if source is not None:
                    source.reseed(worker_seed(cfg.seed, self.rank, worker, generation))
            step_now = counted(start, worker, count)
            return stream(self.sampler, self.flow_batches, lambda: self.max_motion(step_now()))

        return in_workers(make, cfg.loader_workers)

    def _step(self, objective, phase: str) -> dict:
        cfg = self.config
        batch = next(self.batches)
        seg, flow_batch = batch if phase == "joint" else (batch, None) if phase == "seg" else (None, batch)
        inputs, metrics = [], {}
        if seg is not None:
            inputs += [seg.frames.to(self.device), seg.masks.to(self.device), seg.bidirectional]
            metrics["source"] = seg.source
        if flow_batch is not None:
            pair = flow_batch.pair
            inputs += [pair.first.to(self.device), pair.second.to(self.device),
                       pair.flow.to(self.device) if pair.flow is not None else None, pair.valid.to(self.device)]
            metrics["flow_source" if seg is not None else "source"] = flow_batch.kind
            metrics["max_motion"] = round(flow_batch.max_motion, 2)
        with self._autocast():
            loss, objective_metrics = objective(*inputs)
        metrics = {**objective_metrics, **metrics}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(phase, group.get("branch"))
        rate = self.learning_rate(phase)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_value_(params, cfg.clip_value)
        self.optimizer.step()
        metrics["loss"] = float(loss.detach())
        metrics["lr"] = rate
        return metrics

    @torch.no_grad()
    def validate(self, phase: str) -> dict:
        """Seg: 1 - J of the generic (not fine-tuned) model on the validation sequences' first frames.
        Flow: mean EPE on synthetic pairs of seeds never trained on and on exact-flow pairs warped from the
        validation sequences' frames (and their real motion against the teacher, when ``flow_validation`` says).
        Joint: both, the error (1 - J) + ``joint_epe_weight`` x EPE."""
        self.net.eval()
        try:
            result = {}
            if phase in ("flow", "joint"):
                errors = {kind: self._flow_errors(kind) for kind in FLOW_VALIDATION}
                means = {kind: float(np.mean(e)) for kind, e in errors.items() if e}
                error = float(np.mean([means.get(kind, math.nan) for kind in self.config.flow_validation]))
                result.update({"val_epe": error, **{f"val_epe_{kind}": value for kind, value in means.items()},
                               "val_error": error})
            if phase in ("seg", "joint"):
                iou = float(np.mean([self._sequence_iou(s) for s in self.validation_sequences]))
                error = 1 - iou
                if phase == "joint":
                    error += self.config.joint_epe_weight * result["val_epe"]
                result.update({"val_iou": iou, "val_error": error})
            return result
        finally:
            self.net.train()

    def _flow_errors(self, kind: str) -> list[float]:
        """Mean end-point error of each validation pair of one kind (FLOW_VALIDATION); teacher pairs only when
        ``flow_validation`` names them (their labels are built for it)."""
        errors = []
        if kind == "synthetic":
            for clip in self.validation_clips:
                first, second, truth = (torch.from_numpy(a).permute(2, 0, 1)[None].to(self.device)
                                        for a in (clip.frames[0], clip.frames[1], clip.flows[0]))
                errors.append(float((self.net.estimate_flow(first, second).flow - truth).norm(dim=1).mean()))
        elif kind == "warped":
            for pair in self.validation_pairs:
                estimate = self.net.estimate_flow(pair.first.to(self.device), pair.second.to(self.device))
                error = (estimate.flow - pair.flow.to(self.device)).norm(dim=1, keepdim=True)
                errors.append(float(error[pair.valid.to(self.device)].mean()))
        else:
            from napari_segflow.inference.pair_flow import segflow_pair_flow

            for first, second, truth, valid in self.teacher_validation_pairs:
                # as `segflow flow` runs it, in the one pass that propagation makes
                flow = segflow_pair_flow(self.net, first, second, device=self.device, mirrored=False)
                errors.append(float(np.linalg.norm(flow - truth, axis=-1)[valid].mean()))
        return errors

    def _sequence_iou(self, sequence: Sequence) -> float:
        """Mean IoU over the frames after the first of the sequence's first ``validation_window`` frames,
        propagated one way as at run time, without fine-tuning (a mask prior network starts from the first
        frame's true mask)."""
        from napari_segflow.data.resolution import WorkingResolution
        from napari_segflow.inference.propagation import propagate
        from napari_segflow.objects import ObjectChannels

        count = min(self.config.validation_window, len(sequence))
        frames = np.stack([sequence.frame(i) for i in range(count)])
        masks = np.stack([sequence.mask(i) > 0 for i in range(count)])
        geometry = WorkingResolution(frames.shape[1], frames.shape[2], long_side=max(self.config.size))
        results = propagate(self.net, frames, ObjectChannels((1,)), list(range(count)), geometry, self.device,
                            refine_edges=False, start_labels=masks[0].astype(np.uint8))
        predicted = np.stack([r.labels > 0 for r in results])[1:]
        masks = masks[1:]
        union = (predicted | masks).sum(axis=(1, 2))
        inter = (predicted & masks).sum(axis=(1, 2))
        return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, progress_bar: bool = True) -> Path:
        """Train to the end (or resume there); returns the final checkpoint's path."""
        from tqdm import tqdm

        cfg = self.config
        self.output.mkdir(parents=True, exist_ok=True)
        log = open(self.output / "metrics.jsonl", "a") if self.rank == 0 else None
        bar = tqdm(total=self.total_steps(), initial=self._nominal_done(), disable=not progress_bar or self.rank != 0,
                   unit="step", dynamic_ncols=True)
        objective = self._objective(self.progress.phase)
        self.batches = self._batches(self.progress.phase)
        self.net.train()
        started = time.perf_counter() - self.progress.elapsed
        try:
            while self.progress.round < cfg.rounds:
                phase = self.progress.phase
                step_started = time.perf_counter()
                metrics = self._step(objective, phase)
                self.progress.phase_step += 1
                self.progress.global_step += 1
                self.progress.elapsed = time.perf_counter() - started
                self.progress.phase_elapsed += time.perf_counter() - step_started
                if cfg.snapshot_every and self.progress.global_step % cfg.snapshot_every == 0:
                    self.save_snapshot()  # before a phase's end can load its best weights in place of this step's
                out_of_time = self._out_of_time()
                record = {"kind": "train", "round": self.progress.round, "phase": phase,
                          "step": self.progress.phase_step, "global_step": self.progress.global_step,
                          "time": round(self.progress.elapsed, 2), **metrics}
                if log and self.progress.global_step % self.log_every == 0:
                    log.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(round=self.progress.round + 1, phase=phase, loss=f"{metrics['loss']:.3f}")
                if self.progress.phase_step % cfg.validate_every == 0 or out_of_time:
                    validation = self.validate(phase)
                    improved = validation["val_error"] < self.progress.best_error - 1e-4
                    if improved:
                        self.progress.best_error = validation["val_error"]
                        self.progress.stale = 0
                        self.best_state = copy.deepcopy(self.net.state_dict())
                    else:
                        self.progress.stale += 1
                    if log:
                        log.write(json.dumps({"kind": "validation", "round": self.progress.round, "phase": phase,
                                              "step": self.progress.phase_step,
                                              "global_step": self.progress.global_step,
                                              "time": round(self.progress.elapsed, 2), **validation}) + "\n")
                        log.flush()
                    max_steps = self._phase_steps(phase)
                    done = out_of_time or self.progress.phase_step >= max_steps or (
                        self.progress.phase_step >= cfg.phase_min_steps and self.progress.stale >= cfg.patience
                    )
                    if done:
                        skipped = max_steps - self.progress.phase_step
                        self._end_phase()
                        bar.update(max(0, skipped))
                        objective = self._objective(self.progress.phase)
                        self.batches = self._batches(self.progress.phase)
                if self.progress.global_step % cfg.checkpoint_every == 0:
                    self.save_state()
        except KeyboardInterrupt:
            self.save_state()
            raise
        finally:
            self.batches = None  # stops the workers, if any
            bar.close()
            if log:
                log.close()
        self.save_state()
        final = self.output / "final.pt"
        if self.rank == 0:
            save_checkpoint(self.net, final, metadata=self.metadata())
        return final

    def _phase_steps(self, phase: str) -> int:
        steps = self.config.phase_max_steps
        index = PHASES.index(phase)
        return steps[index] if index < len(steps) else 0

    def total_steps(self) -> int:
        return self.config.rounds * sum(self._phase_steps(p) for p in self.config.phases)

    def _nominal_done(self) -> int:
        phases = self.config.phases
        done = self.progress.round * sum(self._phase_steps(p) for p in phases)
        done += sum(self._phase_steps(p) for p in phases[: phases.index(self.progress.phase)])
        return done + self.progress.phase_step

    def _end_phase(self) -> None:
        """Keep the phase's best weights, then switch branch (a round ends after its seg phase)."""
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        phases = self.config.phases
        position = phases.index(self.progress.phase)
        if position == len(phases) - 1:
            self.progress.round += 1
        self.progress.phase = phases[(position + 1) % len(phases)]
        self.progress.phase_step = 0
        self.progress.phase_elapsed = 0.0
        self.progress.best_error = math.inf
        self.progress.stale = 0
        self.best_state = None
        self.optimizer = self._optimizer(self.progress.phase)

    def metadata(self) -> dict[str, Any]:
        return {
            "trained_by": "napari_segflow.training.offline",
            "train_config": asdict(self.config),
            "training_sequences": self.training_names,
            "held_out_sequences": list(self.config.held_out),
            "validation_sequences": list(self.config.validation),
            "warm_started_from": self.config.init_from,
            "warm_started_tensors": len(self.warm_started),
            "steps": self.progress.global_step,
            "wall_seconds": round(self.progress.elapsed, 1),
            "device": str(self.device),
            "world_size": self.world,
            "torch": str(torch.__version__),
        }
