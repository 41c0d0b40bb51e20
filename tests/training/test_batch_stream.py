import json
from dataclasses import replace

import pytest
import torch

from napari_segflow.training.batch_stream import counted, in_workers, seg_batches, worker_seed
from napari_segflow.training.davis import find_sequences
from napari_segflow.training.offline import OfflineTrainer
from napari_segflow.training.windows import WindowSampler
from tests.training.test_offline import tiny_train_config  # noqa: F401


def test_workers_take_turns_and_each_builds_its_own_stream():
    items = in_workers(lambda worker, count: iter([(worker, count)] * 3), workers=2)
    assert list(items) == [(0, 2), (1, 2)] * 3


def test_a_worker_counts_the_steps_its_batches_serve():
    step_now = counted(start=10, worker=1, count=3)
    assert [step_now() for _ in range(3)] == [11, 14, 17]


def test_reseeded_samplers_draw_other_windows_and_the_same_seed_the_same(davis_folder):
    sequences = find_sequences(davis_folder)
    windows = []
    for seed in (worker_seed(0, 0, 0, 0), worker_seed(0, 0, 1, 0), worker_seed(0, 0, 0, 0)):
        sampler = WindowSampler(sequences, (64, 128), 3, seed=5)
        sampler.reseed(seed)
        windows.append(next(seg_batches(sampler, 2, synthetic_share=0.5, bidirectional_share=0.5)).frames)
    assert not torch.equal(windows[0], windows[1])
    assert torch.equal(windows[0], windows[2])


def test_a_run_with_batches_drawn_by_workers_trains_both_branches(tiny_train_config):  # noqa: F811
    trainer = OfflineTrainer(replace(tiny_train_config, loader_workers=2))
    flow_before = trainer.net.flow_branch.pyramid.levels[0][0][0].weight.detach().clone()
    final = trainer.run(progress_bar=False)
    assert final.is_file() and trainer.batches is None
    assert not torch.equal(trainer.net.flow_branch.pyramid.levels[0][0][0].weight, flow_before)
    records = [json.loads(line) for line in open(trainer.output / "metrics.jsonl")]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["phase"] for r in steps] == ["flow"] * 4 + ["seg"] * 4
    # the curriculum's motion as the workers counted the steps: it grows with the step a batch serves
    motions = [r["max_motion"] for r in steps if r["phase"] == "flow"]
    assert motions == sorted(motions) and motions[0] < motions[-1]
    with pytest.raises(Exception, match="loader_workers must be 0 or more"):
        replace(tiny_train_config, loader_workers=-1)
