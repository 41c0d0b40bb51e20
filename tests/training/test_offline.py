import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from napari_segflow.checkpoint import load_checkpoint
from napari_segflow.errors import SegFlowError
from napari_segflow.training.davis import find_sequences
from napari_segflow.training.offline import OfflineTrainer, TrainConfig, load_train_config
from tests.conftest import TINY_OVERRIDES


def _config_file(config: TrainConfig, path: Path) -> Path:
    """``config`` written as the YAML file ``segflow train --config`` reads."""
    from dataclasses import asdict

    import yaml

    values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    overrides = values["model_overrides"]
    values["model_overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def tiny_train_config(davis_folder, tmp_path):
    return TrainConfig(
        output=str(tmp_path / "run"),
        model_overrides=dict(TINY_OVERRIDES),
        davis_root=str(davis_folder),
        held_out=(),
        validation=("val",),
        teacher_cache=str(tmp_path / "teacher"),
        flow_size=(64, 128),
        flow_batch_size=2,
        size=(64, 128),
        window=3,
        batch_size=1,
        rounds=1,
        phase_max_steps=(4, 4),
        phase_min_steps=2,
        validate_every=2,
        patience=1,
        checkpoint_every=2,
        validation_synthetic_clips=2,
        validation_window=3,
    )


def test_snapshots_keep_the_weights_of_every_nth_step(tiny_train_config):
    trainer = OfflineTrainer(replace(tiny_train_config, snapshot_every=3))
    trainer.run(progress_bar=False)
    snapshots = sorted((trainer.output / "snapshots").iterdir())
    assert [p.name for p in snapshots] == ["step_00003.pt", "step_00006.pt"]
    (early, early_meta), (late, late_meta) = (load_checkpoint(p) for p in snapshots)
    assert (early_meta["steps"], late_meta["steps"]) == (3, 6)
    # step 3 is in the flow phase, step 6 two steps into the seg phase, which trains the appearance encoder
    assert not torch.equal(early.appearance_encoder.stem[0][0].weight, late.appearance_encoder.stem[0][0].weight)
    assert not any(trainer.output.glob("snapshots/.*"))


def test_a_snapshot_on_a_phase_s_last_step_holds_that_step_s_weights(tiny_train_config, monkeypatch):
    """The flow phase ends at step 4 and keeps its best weights, step 2's (validation made to say so): the
    snapshot of step 4 is still step 4's."""
    errors = iter([0.1, 0.9, 0.5, 0.5])
    monkeypatch.setattr(OfflineTrainer, "validate", lambda self, phase: {"val_error": next(errors)})
    trainer = OfflineTrainer(replace(tiny_train_config, snapshot_every=2))
    trainer.run(progress_bar=False)

    def flow_weight(net):
        return net.flow_branch.pyramid.levels[0][0][0].weight

    step_2, _ = load_checkpoint(trainer.snapshot_path(2))
    step_4, _ = load_checkpoint(trainer.snapshot_path(4))
    # the seg phase leaves the flow branch alone, so the end of the run holds the flow phase's kept weights
    assert torch.equal(flow_weight(trainer.net), flow_weight(step_2))
    assert not torch.equal(flow_weight(step_4), flow_weight(step_2))


def test_a_negative_snapshot_interval_is_refused(tiny_train_config):
    with pytest.raises(SegFlowError, match="TrainConfig.snapshot_every must be 0 or more"):
        replace(tiny_train_config, snapshot_every=-1)


def test_a_round_trains_both_branches_logs_and_writes_a_checkpoint(tiny_train_config):
    trainer = OfflineTrainer(tiny_train_config)
    assert trainer.training_names == ["alpha", "beta"]
    flow_before = trainer.net.flow_branch.pyramid.levels[0][0][0].weight.detach().clone()
    seg_before = trainer.net.appearance_encoder.stem[0][0].weight.detach().clone()
    final = trainer.run(progress_bar=False)
    net, metadata = load_checkpoint(final)
    assert not torch.equal(net.flow_branch.pyramid.levels[0][0][0].weight, flow_before)
    assert not torch.equal(net.appearance_encoder.stem[0][0].weight, seg_before)
    assert metadata["validation_sequences"] == ["val"] and metadata["steps"] == 8
    # the flow phase's real pairs came from the teacher cache, labelled once
    assert sorted(p.name for p in (trainer.output.parent / "teacher").iterdir()) == ["alpha", "beta"]
    records = [json.loads(line) for line in open(trainer.output / "metrics.jsonl")]
    phases = [r["phase"] for r in records if r["kind"] == "train"]
    assert phases == ["flow"] * 4 + ["seg"] * 4
    validations = [r for r in records if r["kind"] == "validation"]
    assert {"val_epe", "val_iou"} <= {k for r in validations for k in r}


def test_a_joint_phase_trains_both_branches_at_their_own_rates_and_validates_both(tiny_train_config):
    config = replace(tiny_train_config, phases=("joint",), phase_max_steps=(0, 0, 4), lr_flow=2e-4, lr_seg=1e-3,
                     joint_epe_weight=0.5)
    trainer = OfflineTrainer(config)
    assert {g["branch"]: g["lr"] for g in trainer.optimizer.param_groups} == {"flow": 2e-4, "seg": 1e-3}
    flow_before = trainer.net.flow_branch.pyramid.levels[0][0][0].weight.detach().clone()
    head_before = trainer.net.appearance_encoder.stem[0][0].weight.detach().clone()
    net, _ = load_checkpoint(trainer.run(progress_bar=False))
    assert not torch.equal(net.flow_branch.pyramid.levels[0][0][0].weight, flow_before)
    assert not torch.equal(net.appearance_encoder.stem[0][0].weight, head_before)
    records = [json.loads(line) for line in open(trainer.output / "metrics.jsonl")]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["phase"] for r in steps] == ["joint"] * 4
    assert all({"seg_loss", "flow_loss", "source", "flow_source"} <= set(r) for r in steps)
    # one step's loss is the seg loss plus the flow loss (weight 1 by default)
    assert all(r["loss"] == pytest.approx(r["seg_loss"] + r["flow_loss"], rel=1e-4) for r in steps)
    validations = [r for r in records if r["kind"] == "validation"]
    assert validations and all(
        r["val_error"] == pytest.approx(1 - r["val_iou"] + 0.5 * r["val_epe"]) for r in validations)


@pytest.mark.parametrize("steps", [(4, 4), (4, 4, 4, 4)])
def test_a_joint_phase_needs_its_step_count(tiny_train_config, steps):
    with pytest.raises(SegFlowError, match="phase_max_steps gives the flow, seg and joint"):
        replace(tiny_train_config, phases=("flow", "joint"), phase_max_steps=steps)


def test_interrupted_run_resumes_to_the_same_weights(tiny_train_config, tmp_path, monkeypatch):
    reference = OfflineTrainer(replace(tiny_train_config, output=str(tmp_path / "reference")))
    reference_net, _ = load_checkpoint(reference.run(progress_bar=False))

    trainer = OfflineTrainer(tiny_train_config)
    original_step = OfflineTrainer._step
    calls = {"n": 0}

    def interrupted(self, objective, phase):
        calls["n"] += 1
        if calls["n"] == 6:  # a Ctrl-C in the middle of the seg phase
            raise KeyboardInterrupt
        return original_step(self, objective, phase)

    monkeypatch.setattr(OfflineTrainer, "_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(progress_bar=False)
    monkeypatch.setattr(OfflineTrainer, "_step", original_step)
    assert trainer.state_path.is_file()
    resumed = OfflineTrainer(tiny_train_config, resume=True)
    assert resumed.progress.global_step == 5 and resumed.progress.phase == "seg"
    resumed_net, _ = load_checkpoint(resumed.run(progress_bar=False))
    for key, value in reference_net.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("text, message", [
    ("rounds: 2\nlearning_rate: 0.1\n", "bad.yaml: unknown setting.*learning_rate"),
    ("size: [100, 128]\n", "multiples of 64"),
    ("distractors: 1.5\n", "distractors must be a share"),
    ("prior_boxes: -0.2\n", "prior_boxes must be a share"),
    ("own_priors: 2\n", "own_priors must be a share"),
    ("photometric: -1\n", "photometric must be 0 \\(none\\) or more"),
    ("window_scale: [1.2, 0.8]\n", "window_scale must be \\[smallest, largest\\] zoom"),
    ("window_scale: [0.8]\n", "window_scale must be"),
    ("model_overrides: {depth: 3}\n", "bad.yaml.*unknown model setting"),
    ("batch_size: two\n", "batch_size must be an int, got 'two'"),
    ("batch_size: 0\n", "batch_size must be at least 1"),
    ("lr_seg: 0\n", "lr_seg must be positive"),
    ("amp: 3\n", "amp must be a bool"),
    ("size: [192, wide]\n", "size must be a list of int values"),
    ("phase_max_steps: [100, -1]\n", "phase_max_steps must be 0 or more each"),
])
def test_config_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SegFlowError, match=message):
        load_train_config(path)


def test_a_missing_config_is_named(tmp_path):
    with pytest.raises(SegFlowError, match="no such config"):
        load_train_config(tmp_path / "absent.yaml")


def test_shipped_stage_configs_load_and_chain():
    """The recorded stages of the shipped checkpoint warm-start each from the previous one's output; the measured
    stages that the chain skips start from stage 1, 3, 4 or 5."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    names = ("small_1_flow", "small_2_seg", "small_3_prior", "small_4_flow_real", "small_5_distractors",
             "small_6_augmented")
    stages = [load_train_config(configs / f"{name}.yaml") for name in names]
    assert [s.phases for s in stages] == [("flow",), ("seg",), ("seg",), ("flow",), ("seg",), ("seg",)]
    assert stages[0].init_from is None
    assert [s.init_from for s in stages[1:]] == [f"{s.output}/final.pt" for s in stages[:-1]]
    assert stages[2].init_fresh == ("mask_prior.",)  # the only new part
    # the distractor stage leaves the flow as stage 4 trained it: the encoder the bridges read stays frozen
    assert stages[4].distractors > 0 and stages[4].keep_frozen == ("appearance_encoder.",)
    # the relit stage: stage 5's distractors, the encoder trained too, for a time rather than a step count
    assert stages[5].photometric > 0 and stages[5].distractors == stages[4].distractors
    assert stages[5].keep_frozen == () and stages[5].phase_max_minutes > 0
    # stage 6's windows again from stage 6, its weights chosen afterwards among snapshots by the fine-tuned masks
    snapshots = load_train_config(configs / "small_7_snapshots.yaml")
    assert snapshots.init_from == f"{stages[5].output}/final.pt" and snapshots.snapshot_every > 0
    assert snapshots.photometric == stages[5].photometric and snapshots.lr_seg < stages[5].lr_seg
    # the measured box priors: stage 5's windows, the flow as stage 4 left it
    boxes = load_train_config(configs / "small_seg_box_priors.yaml")
    assert boxes.init_from == f"{stages[4].output}/final.pt" and boxes.keep_frozen == ("appearance_encoder.",)
    assert boxes.prior_boxes > 0 and boxes.distractors == stages[4].distractors
    # the measured unfrozen encoder: stage 5's windows, nothing kept frozen in its seg phase
    encoder = load_train_config(configs / "small_seg_encoder.yaml")
    assert encoder.init_from == f"{stages[4].output}/final.pt" and encoder.keep_frozen == ()
    assert encoder.distractors == stages[4].distractors and encoder.lr_seg < stages[4].lr_seg
    # the measured own priors: stage 5's windows and frozen encoder, half of them fed the network's own answers
    own = load_train_config(configs / "small_seg_own_priors.yaml")
    assert own.init_from == f"{stages[4].output}/final.pt" and own.keep_frozen == ("appearance_encoder.",)
    assert 0 < own.own_priors < 1 and own.distractors == stages[4].distractors and own.window > stages[4].window
    # the measured re-adaptation keeps the features the seg -> flow bridges read as stage 4's flow branch knew them
    readapt = load_train_config(configs / "small_seg_readapt.yaml")
    assert readapt.init_from == f"{stages[3].output}/final.pt" and readapt.keep_frozen == ("appearance_encoder.",)
    unsupervised = load_train_config(configs / "small_flow_unsupervised.yaml")
    assert unsupervised.init_from == f"{stages[0].output}/final.pt" and unsupervised.flow_mix["unsupervised"] > 0
    large_motion = load_train_config(configs / "small_flow_large_motion.yaml")
    assert (
        large_motion.init_from == f"{stages[2].output}/final.pt"
        and large_motion.flow_motion[1] > stages[0].flow_motion[1]
    )
    # the longer flow stage, chosen on real motion too, and the gentle re-adaptation after it
    longer = load_train_config(configs / "small_flow_longer.yaml")
    assert longer.init_from == f"{stages[3].output}/final.pt" and "teacher" in longer.flow_validation
    after_longer = load_train_config(configs / "small_seg_readapt_after_longer.yaml")
    assert after_longer.init_from == f"{longer.output}/final.pt"
    assert after_longer.keep_frozen == ("appearance_encoder.",)
    # the joint stage: both branches at once, from the GPU flow stage (tools/gpu_train.sh's flow_b32)
    joint = load_train_config(configs / "small_joint_after_gpu_flow.yaml")
    assert joint.phases == ("joint",) and joint.init_from == "runs/gpu_flow_b32/final.pt"
    assert joint.phase_max_steps[2] > 0 and joint.lr_flow < joint.lr_seg and "teacher" in joint.flow_validation
    measured = [unsupervised, large_motion, readapt, longer, after_longer, joint, snapshots]
    assert all(s.preset == "small" and not set(s.validation) & set(s.held_out) for s in [*stages, *measured])
    script = (configs.parent / "tools" / "train_small.sh").read_text()
    assert f"for stage in {' '.join(names)}; do" in script


def test_kept_frozen_parts_do_not_move_and_must_exist(tiny_train_config, tmp_path):
    config = replace(tiny_train_config, phases=("seg",), keep_frozen=("appearance_encoder.",))
    trainer = OfflineTrainer(config)
    encoder_before = {k: v.clone() for k, v in trainer.net.appearance_encoder.state_dict().items()}
    rest_before = {k: v.clone() for k, v in trainer.net.state_dict().items() if not k.startswith("appearance_encoder.")}
    net, _ = load_checkpoint(trainer.run(progress_bar=False))
    for key, value in net.appearance_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    moved = [k for k, v in net.state_dict().items() if k in rest_before and not torch.equal(v, rest_before[k])]
    assert any(k.startswith("memory.") for k in moved)
    with pytest.raises(SegFlowError, match="keep_frozen: no parameter of the network starts with 'encoder.'"):
        OfflineTrainer(replace(tiny_train_config, output=str(tmp_path / "other"), keep_frozen=("encoder.",)))


def test_frames_and_masks_that_do_not_match_are_refused(davis_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(davis_folder / "alpha", broken / "alpha")
    (broken / "alpha" / "masks" / "00003.png").unlink()
    with pytest.raises(SegFlowError, match="5 frames but 4 masks"):
        find_sequences(broken)
    (broken / "alpha" / "masks" / "00004.png").rename(broken / "alpha" / "masks" / "00003.png")
    shutil.copy(broken / "alpha" / "masks" / "00000.png", broken / "alpha" / "masks" / "00009.png")
    with pytest.raises(SegFlowError, match="frame '00004' has no mask"):
        find_sequences(broken)
    with pytest.raises(SegFlowError, match="no sequence named nope"):
        find_sequences(davis_folder, names=["nope"])


@pytest.mark.parametrize("minutes", [0.0, 1e-9])
def test_torchrun_with_two_processes(tiny_train_config, tmp_path, minutes):
    """The same command under torchrun: two CPU processes (gloo) train one model with DistributedDataParallel;
    with a time limit, the ranks agree on when each phase ends (here after its first step)."""
    import os
    import subprocess
    import sys

    config_path = _config_file(replace(tiny_train_config, phase_max_minutes=minutes, output=str(tmp_path / "ddp")),
                               tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "napari_segflow.cli", "train", "--config", str(config_path), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    net, metadata = load_checkpoint(tmp_path / "ddp" / "final.pt")
    assert metadata["world_size"] == 2 and metadata["steps"] == (2 if minutes else 8)


def test_settings_given_on_the_command_line_replace_the_file(tmp_path):
    from napari_segflow.cli.train import parse_settings

    path = Path(__file__).resolve().parents[2] / "configs" / "small_1_flow.yaml"
    overrides = parse_settings(["flow_batch_size=32", "phase_max_steps=[800, 0]", "amp=true"])
    config = load_train_config(path, **overrides)
    assert config.flow_batch_size == 32 and config.phase_max_steps == (800, 0) and config.amp is True
    with pytest.raises(SegFlowError, match="unknown setting.*flow_batch given for"):
        load_train_config(path, **parse_settings(["flow_batch=4"]))
    with pytest.raises(SegFlowError, match="expected KEY=VALUE"):
        parse_settings(["flow_batch_size"])


def test_flow_validation_on_real_motion_reads_the_teachers_labels_of_the_validation_sequences(tiny_train_config):
    import numpy as np

    from napari_segflow.inference.pair_flow import segflow_pair_flow

    config = replace(tiny_train_config, phases=("flow",), flow_validation=("teacher",), teacher_validation_stride=2)
    trainer = OfflineTrainer(config)
    # labelled for the validation only: the batches never draw the validation sequence
    assert (trainer.output.parent / "teacher" / "val").is_dir() and "val" not in trainer.flow_batches.names
    count = len(find_sequences(config.davis_root, names=["val"])[0]) - 1
    assert len(trainer.teacher_validation_pairs) == len(range(0, count, 2)) > 0
    validation = trainer.validate("flow")
    assert validation["val_error"] == validation["val_epe_teacher"] > 0
    # labels equal to the network's own flow (one pass, as propagation runs it) score 0
    trainer.teacher_validation_pairs = [
        (first, second, segflow_pair_flow(trainer.net, first, second, mirrored=False), np.ones(first.shape[:2], bool))
        for first, second, _, _ in trainer.teacher_validation_pairs
    ]
    assert trainer.validate("flow")["val_epe_teacher"] == pytest.approx(0, abs=1e-4)
    with pytest.raises(SegFlowError, match="flow_validation must name kinds"):
        replace(config, flow_validation=("chairs",))


def test_cosine_learning_rate_falls_to_its_floor_over_the_phase(tiny_train_config):
    config = replace(tiny_train_config, phases=("flow",), lr_flow=1e-3, lr_schedule="cosine", lr_floor=0.1,
                     phase_max_steps=(4, 0), phase_min_steps=4, validate_every=4)
    trainer = OfflineTrainer(config)
    rates = []
    for step in range(5):
        trainer.progress.phase_step = step
        rates.append(trainer.learning_rate("flow"))
    assert rates[0] == pytest.approx(1e-3) and rates[2] == pytest.approx(0.55e-3) and rates[4] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    trainer.progress.phase_step = 0
    trainer.run(progress_bar=False)
    records = [json.loads(line) for line in open(trainer.output / "metrics.jsonl")]
    assert [r["lr"] for r in records if r["kind"] == "train"] == pytest.approx(rates[:4])
    constant = OfflineTrainer(replace(config, output=config.output + "2", lr_schedule="constant"))
    assert constant.learning_rate("flow") == 1e-3
    with pytest.raises(SegFlowError, match="lr_schedule"):
        replace(config, lr_schedule="step")


def test_prior_boxes_reach_the_segmentation_windows(tiny_train_config, monkeypatch):
    from napari_segflow.model.segflow import SegFlowNet

    seen = []
    original = SegFlowNet.segment_clip

    def spy(self, frames, *args, priors=None, **kwargs):
        if self.training:
            seen.append(priors.detach().clone())
        return original(self, frames, *args, priors=priors, **kwargs)

    monkeypatch.setattr(SegFlowNet, "segment_clip", spy)
    base = replace(tiny_train_config, phases=("seg",), phase_max_steps=(0, 3), phase_min_steps=3, validate_every=3,
                   model_overrides={**tiny_train_config.model_overrides, "mask_prior": True, "fine_scores": True})

    def is_box(foreground):
        rows, columns = foreground.any(1), foreground.any(0)
        block = foreground[rows][:, columns]
        return bool(((foreground == 0) | (foreground == 1)).all() and (block == 1).all())

    OfflineTrainer(replace(base, prior_boxes=1.0)).run(progress_bar=False)
    boxes = [p[:, :, 1].flatten(0, 1) for p in seen]
    assert len(boxes) == 3 and all(is_box(f) for batch in boxes for f in batch)
    assert any(f.sum() > 0 for batch in boxes for f in batch)
    seen.clear()
    OfflineTrainer(replace(base, output=base.output + "2")).run(progress_bar=False)
    assert not all(is_box(f) for p in seen for f in p[:, :, 1].flatten(0, 1))


def test_relighting_and_zoom_reach_the_segmentation_windows(tiny_train_config, monkeypatch):
    from napari_segflow.data import augment
    from napari_segflow.training import windows

    strengths, scales = [], []
    original_jitter, original_affine = windows.jitter_photometric, windows.random_affine

    def jitter_spy(frames, generator, strength):
        strengths.append(strength)
        return original_jitter(frames, generator, strength)

    def affine_spy(generator, height, width, ranges=augment.AffineRanges()):
        params = original_affine(generator, height, width, ranges)
        scales.append((params.scale, ranges.scale))
        return params

    monkeypatch.setattr(windows, "jitter_photometric", jitter_spy)
    monkeypatch.setattr(windows, "random_affine", affine_spy)
    config = replace(tiny_train_config, phases=("seg",), phase_max_steps=(0, 3), phase_min_steps=3, validate_every=3,
                     photometric=0.5, window_scale=(0.6, 0.7))
    OfflineTrainer(config).run(progress_bar=False)
    assert len(strengths) >= 3 and set(strengths) == {0.5}
    assert len(scales) == len(strengths) and all(0.6 <= scale <= 0.7 and ranges == (0.6, 0.7)
                                                 for scale, ranges in scales)


def test_a_phase_ends_at_its_time_limit_validated_and_the_cosine_follows_time(tiny_train_config):
    config = replace(tiny_train_config, phase_max_steps=(1000, 1000), phase_min_steps=1000, validate_every=1000,
                     patience=1000, lr_schedule="cosine", lr_floor=0.1, phase_max_minutes=1e-9)
    trainer = OfflineTrainer(config)
    trainer.progress.phase_elapsed = 30 * config.phase_max_minutes  # half the time spent at step 0
    assert trainer.learning_rate("flow") == pytest.approx(config.lr_flow * 0.55)
    trainer.progress.phase_elapsed = 0.0
    final = trainer.run(progress_bar=False)
    assert final.is_file()
    records = [json.loads(line) for line in open(trainer.output / "metrics.jsonl")]
    # each phase stopped after one step of its 1000, with a validation that chose its weights
    assert [(r["kind"], r["phase"]) for r in records] == [
        ("train", "flow"), ("validation", "flow"), ("train", "seg"), ("validation", "seg")]
    with pytest.raises(SegFlowError, match="phase_max_minutes"):
        replace(config, phase_max_minutes=-1)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_stopped_by_sigterm_leaves_a_state_to_resume(tiny_train_config, tmp_path, workers):
    """`timeout`, a job scheduler or a lent machine's end sends SIGTERM: the run must stop as on Ctrl-C, also
    while worker processes draw its batches (each process of the run gets the signal, as from pkill)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    config = replace(tiny_train_config, output=str(tmp_path / "stopped"), phases=("seg",),
                     phase_max_steps=(0, 1_000_000), phase_min_steps=1_000_000, validate_every=1_000_000,
                     checkpoint_every=1_000_000, loader_workers=workers)
    config_path = _config_file(config, tmp_path / "stopped.yaml")
    process = subprocess.Popen([sys.executable, "-m", "napari_segflow.cli", "train", "--config", str(config_path),
                                "--no-progress"], stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # as pkill -f would
        try:
            if str(config_path) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            pass
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "resumable state" in stderr and not (tmp_path / "stopped" / "final.pt").exists()
    resumed = OfflineTrainer(load_train_config(config_path), resume=True)
    assert resumed.progress.global_step >= 2 and resumed.progress.phase == "seg"


def test_own_priors_reach_the_segmentation_windows(tiny_train_config, monkeypatch):
    from napari_segflow.training import objectives

    calls = []
    original = objectives.own_priors

    def spy(net, frames, first_prior, partners):
        calls.append(frames.shape[1])
        return original(net, frames, first_prior, partners)

    monkeypatch.setattr(objectives, "own_priors", spy)
    base = replace(tiny_train_config, phases=("seg",), phase_max_steps=(0, 3), phase_min_steps=3, validate_every=3,
                   model_overrides={**tiny_train_config.model_overrides, "mask_prior": True, "fine_scores": True})
    OfflineTrainer(replace(base, own_priors=1.0)).run(progress_bar=False)
    assert calls == [base.window] * 3
    calls.clear()
    OfflineTrainer(replace(base, output=base.output + "2")).run(progress_bar=False)
    assert calls == []


def test_a_flow_phase_without_opencv_is_one_error_line_before_any_work(tiny_train_config, tmp_path, capsys,
                                                                          monkeypatch):
    from napari_segflow.cli import main

    monkeypatch.setitem(sys.modules, "cv2", None)
    config_path = _config_file(replace(tiny_train_config, output=str(tmp_path / "run")), tmp_path / "run.yaml")
    assert main(["train", "--config", str(config_path), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segflow: error: the flow phase's DIS teacher needs OpenCV: pip install")
    assert not (tmp_path / "run").exists()


def test_a_trainer_made_from_python_refuses_a_folder_holding_a_run(tiny_train_config):
    config = replace(tiny_train_config, phases=("seg",), phase_max_steps=(0, 2), phase_min_steps=2, validate_every=2)
    OfflineTrainer(config).run(progress_bar=False)
    output = Path(config.output)
    kept = {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()}
    with pytest.raises(SegFlowError, match="already holds a training run .*final.pt.*name a new output folder"):
        OfflineTrainer(config)
    assert {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()} == kept
    with pytest.raises(SegFlowError, match="state.pt: nothing to resume from"):
        OfflineTrainer(replace(config, output=str(output.parent / "new")), resume=True)


def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_loses_nothing(tiny_train_config, tmp_path, capsys):
    from napari_segflow.cli import main

    config_path = _config_file(replace(tiny_train_config, output=str(tmp_path / "run")), tmp_path / "run.yaml")
    assert main(["train", "--config", str(config_path), "--no-progress"]) == 0
    kept = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()}
    assert {"final.pt", "metrics.jsonl"} <= set(kept)
    capsys.readouterr()
    assert main(["train", "--config", str(config_path), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segflow: error:") and "already holds a training run" in error and "--resume" in error
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()} == kept
