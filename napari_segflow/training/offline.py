"""Iterative offline training (SegFlow §4.1): rounds that alternate the branches.

In a flow phase the segmentation side is frozen and the flow branch learns from synthetic pairs with exact
flow (multi-scale EPE) and from real DAVIS pairs without flow (Every Frame Counts' unsupervised losses).
In a seg phase the flow branch is frozen and the segmentation side with its ConvGRU memory learns from
windows of consecutive frames by backpropagation through time (20% stop-and-go windows, gradients clipped
to [-50, 50]). A phase ends when its validation error has not improved for ``patience`` validations (or
at ``phase_max_steps``); the phase's best weights are kept. Training starts with a flow phase: the
branches start from scratch here, and the seg side learns more from a flow branch that already sees motion.

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
from typing import Any

import numpy as np
import torch

from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.config import preset_config
from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
from napari_segflow.device import choose_device
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.davis import HELD_OUT, Sequence, find_sequences
from napari_segflow.training.objectives import FlowObjective, SegmentationObjective, train_only
from napari_segflow.training.windows import WindowSampler, collate

PHASES = ("flow", "seg")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Relative paths are taken from the working folder (the repository root
    in the README's commands)."""

    output: str = "runs/offline"
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)
    davis_root: str = "../shared/data/davis2016-train-240p"
    held_out: tuple[str, ...] = HELD_OUT
    seed: int = 0
    size: tuple[int, int] = (192, 320)
    window: int = 4
    batch_size: int = 2
    stop_and_go: float = 0.2
    synthetic_share_seg: float = 0.4
    synthetic_share_flow: float = 0.6
    bidirectional_share: float = 0.5
    lr_seg: float = 1e-3
    lr_flow: float = 5e-4
    weight_decay: float = 1e-4
    rounds: int = 3
    phase_max_steps: tuple[int, int] = (1500, 1500)  # flow, seg
    phase_min_steps: int = 200
    validate_every: int = 150
    patience: int = 3
    clip_value: float = 50.0
    validation_synthetic_clips: int = 12
    validation_window: int = 8
    checkpoint_every: int = 100
    amp: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if any(s % 64 for s in self.size):
            raise SegFlowError(f"TrainConfig.size {self.size} must be multiples of 64")
        if self.window < 2:
            raise SegFlowError(f"TrainConfig.window must be at least 2, got {self.window}")
        if self.rounds < 1:
            raise SegFlowError(f"TrainConfig.rounds must be at least 1, got {self.rounds}")


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
    phase: str = PHASES[0]
    phase_step: int = 0
    global_step: int = 0
    best_error: float = math.inf
    stale: int = 0
    elapsed: float = 0.0


class OfflineTrainer:
    def __init__(self, config: TrainConfig, log_every: int = 1) -> None:
        self.config = config
        self.output = Path(config.output).resolve()
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed:
            self._init_distributed()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        self.device = self._device()
        davis_root = Path(config.davis_root).resolve()
        training = find_sequences(davis_root, exclude=tuple(config.held_out))
        self.validation_sequences = find_sequences(davis_root, names=list(config.held_out))
        if not training:
            raise SegFlowError(f"{davis_root}: no training sequences left after holding out {config.held_out}")
        self.training_names = [s.name for s in training]
        self.sampler = WindowSampler(
            training, config.size, config.window, seed=config.seed * 1000 + self.rank, stop_and_go=config.stop_and_go
        )
        torch.manual_seed(config.seed)
        self.net = SegFlowNet(preset_config(config.preset, **config.model_overrides)).to(self.device)
        self.progress = Progress()
        self.best_state: dict | None = None
        self.optimizer = self._optimizer(self.progress.phase)
        self.validation_clips = self._validation_clips()
        self.log_every = log_every

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
        params = train_only(self.net, phase)
        lr = self.config.lr_flow if phase == "flow" else self.config.lr_seg
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.config.weight_decay)

    def _objective(self, phase: str) -> torch.nn.Module:
        objective = FlowObjective(self.net) if phase == "flow" else SegmentationObjective(self.net)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # one of the memory readouts (one way / both ways) sits out each step
            objective = torch.nn.parallel.DistributedDataParallel(objective, device_ids=ids, find_unused_parameters=True)
        return objective

    def _validation_clips(self):
        generator = SyntheticVideoGenerator(
            SyntheticConfig(height=self.config.size[0], width=self.config.size[1], num_frames=2)
        )
        # seeds far from the training stream's
        return [generator(10_000_000 + i) for i in range(self.config.validation_synthetic_clips)]

    # -- checkpoints ------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.output / "state.pt"

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
            },
        }
        temporary = self.state_path.with_name(".state.pt.tmp")
        torch.save(payload, temporary)
        os.replace(temporary, self.state_path)

    def resume(self) -> None:
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

    # -- steps ------------------------------------------------------------------------------------

    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _step(self, objective, phase: str) -> dict:
        cfg = self.config
        rng = self.sampler.rng
        synthetic_share = cfg.synthetic_share_seg if phase == "seg" else cfg.synthetic_share_flow
        use_synthetic = rng.random() < synthetic_share
        batch = collate([self.sampler.synthetic_window() if use_synthetic else self.sampler.real()
                         for _ in range(cfg.batch_size)])
        if phase == "seg":
            bidirectional = bool(rng.random() < cfg.bidirectional_share)
            with self._autocast():
                loss, metrics = objective(batch.frames.to(self.device), batch.masks.to(self.device), bidirectional)
        else:
            # synthetic pairs carry exact flow (supervised); real ones train with the unsupervised losses
            t = int(rng.integers(batch.frames.shape[1] - 1))
            first, second = batch.frames[:, t].to(self.device), batch.frames[:, t + 1].to(self.device)
            flow = batch.flows[:, t].to(self.device) if use_synthetic else None
            with self._autocast():
                loss, metrics = objective(first, second, flow)
        metrics["source"] = "synthetic" if use_synthetic else "davis"
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_value_(params, cfg.clip_value)
        self.optimizer.step()
        metrics["loss"] = float(loss.detach())
        return metrics

    @torch.no_grad()
    def validate(self, phase: str) -> dict:
        """Seg: 1 - J of the generic (not fine-tuned) model on the held-out real sequences' first frames.
        Flow: mean EPE on held-out synthetic pairs."""
        self.net.eval()
        try:
            if phase == "flow":
                errors = []
                for clip in self.validation_clips:
                    first = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].to(self.device)
                    second = torch.from_numpy(clip.frames[1]).permute(2, 0, 1)[None].to(self.device)
                    truth = torch.from_numpy(clip.flows[0]).permute(2, 0, 1)[None].to(self.device)
                    estimate = self.net.estimate_flow(first, second)
                    errors.append(float((estimate.flow - truth).norm(dim=1).mean()))
                return {"val_epe": float(np.mean(errors)), "val_error": float(np.mean(errors))}
            scores = [self._sequence_iou(s) for s in self.validation_sequences]
            return {"val_iou": float(np.mean(scores)), "val_error": 1 - float(np.mean(scores))}
        finally:
            self.net.train()

    def _sequence_iou(self, sequence: Sequence) -> float:
        from napari_segflow.data.resolution import WorkingResolution

        count = min(self.config.validation_window, len(sequence))
        frames = np.stack([sequence.frame(i) for i in range(count)])
        masks = np.stack([sequence.mask(i) > 0 for i in range(count)])
        geometry = WorkingResolution(frames.shape[1], frames.shape[2], long_side=max(self.config.size))
        images = geometry.frames_to_network(frames, self.device)[None]
        logits = self.net.segment_clip(images, bidirectional=False).logits[0]
        predicted = geometry.logits_to_frame(logits).argmax(1).cpu().numpy() > 0
        union = (predicted | masks).sum(axis=(1, 2))
        inter = (predicted & masks).sum(axis=(1, 2))
        return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))

    # -- the loop ---------------------------------------------------------------------------------

    def total_steps(self) -> int:
        return self.config.rounds * sum(self.config.phase_max_steps)

    def run(self, progress_bar: bool = True) -> Path:
        """Train to the end (or resume there); returns the final checkpoint's path."""
        from tqdm import tqdm

        cfg = self.config
        self.output.mkdir(parents=True, exist_ok=True)
        log = open(self.output / "metrics.jsonl", "a") if self.rank == 0 else None
        bar = tqdm(total=self.total_steps(), initial=self._nominal_done(), disable=not progress_bar or self.rank != 0,
                   unit="step", dynamic_ncols=True)
        objective = self._objective(self.progress.phase)
        self.net.train()
        started = time.perf_counter() - self.progress.elapsed
        try:
            while self.progress.round < cfg.rounds:
                phase = self.progress.phase
                metrics = self._step(objective, phase)
                self.progress.phase_step += 1
                self.progress.global_step += 1
                self.progress.elapsed = time.perf_counter() - started
                record = {"kind": "train", "round": self.progress.round, "phase": phase,
                          "step": self.progress.phase_step, "global_step": self.progress.global_step,
                          "time": round(self.progress.elapsed, 2), **metrics}
                if log and self.progress.global_step % self.log_every == 0:
                    log.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(round=self.progress.round + 1, phase=phase, loss=f"{metrics['loss']:.3f}")
                if self.progress.phase_step % cfg.validate_every == 0:
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
                    max_steps = cfg.phase_max_steps[PHASES.index(phase)]
                    done = self.progress.phase_step >= max_steps or (
                        self.progress.phase_step >= cfg.phase_min_steps and self.progress.stale >= cfg.patience
                    )
                    if done:
                        skipped = max_steps - self.progress.phase_step
                        self._end_phase()
                        bar.update(max(0, skipped))
                        objective = self._objective(self.progress.phase)
                if self.progress.global_step % cfg.checkpoint_every == 0:
                    self.save_state()
        except KeyboardInterrupt:
            self.save_state()
            raise
        finally:
            bar.close()
            if log:
                log.close()
        self.save_state()
        final = self.output / "final.pt"
        if self.rank == 0:
            save_checkpoint(self.net, final, metadata=self.metadata())
        return final

    def _nominal_done(self) -> int:
        cfg = self.config
        done = self.progress.round * sum(cfg.phase_max_steps)
        if self.progress.phase == "seg":
            done += cfg.phase_max_steps[0]
        return done + self.progress.phase_step

    def _end_phase(self) -> None:
        """Keep the phase's best weights, then switch branch (a round ends after its seg phase)."""
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        if self.progress.phase == PHASES[-1]:
            self.progress.round += 1
        self.progress.phase = PHASES[(PHASES.index(self.progress.phase) + 1) % len(PHASES)]
        self.progress.phase_step = 0
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
            "steps": self.progress.global_step,
            "wall_seconds": round(self.progress.elapsed, 1),
            "device": str(self.device),
            "world_size": self.world,
            "torch": str(torch.__version__),
        }
