import numpy as np
import pytest
import torch

from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels
from napari_segflow.training.objectives import flow_parameters
from napari_segflow.training.online import FinetuneConfig, finetune


@pytest.fixture
def video(synthetic_clip):
    return (synthetic_clip.frames * 255).astype(np.uint8), synthetic_clip.instances


def test_finetune_yields_each_step_and_keeps_the_flow_branch(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    flow_before = [p.detach().clone() for p in flow_parameters(net)]
    seg_before = net.appearance_encoder.stem[0][0].weight.detach().clone()
    config = FinetuneConfig(steps=4, time_budget=None, long_side=128)
    steps = list(finetune(net, frames, {0: instances[0]}, config=config))
    objects = ObjectChannels.from_annotations({0: instances[0]})
    assert [s.step for s in steps] == [1, 2, 3, 4] and all(np.isfinite(s.loss) for s in steps)
    assert steps[-1].elapsed >= steps[0].elapsed
    assert net.config.num_classes == objects.num_objects + 1
    assert all(torch.equal(a, b) for a, b in zip(flow_before, flow_parameters(net)))
    assert not torch.equal(seg_before, net.appearance_encoder.stem[0][0].weight)
    assert all(p.requires_grad for p in net.parameters()) and not net.training


def test_finetune_learns_the_annotated_objects(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    annotations = {0: instances[0]}
    steps = list(finetune(net, frames, annotations, config=FinetuneConfig(steps=60, time_budget=None, long_side=128)))
    first, last = np.mean([s.loss for s in steps[:5]]), np.mean([s.loss for s in steps[-5:]])
    assert last < 0.6 * first


def test_time_budget_stops_early(tiny_config, video):
    frames, instances = video
    config = FinetuneConfig(steps=100, time_budget=1e-6, long_side=128)
    steps = list(finetune(SegFlowNet(tiny_config), frames, {0: instances[0]}, config=config))
    assert [(s.step, s.total) for s in steps] == [(1, 1)]


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_a_time_budget_that_is_not_a_positive_number_is_refused(seconds):
    with pytest.raises(SegFlowError, match="time budget must be a positive number of seconds"):
        FinetuneConfig(time_budget=seconds)


def test_time_budget_is_not_overrun_by_the_last_step(tiny_config, video, monkeypatch):
    """A clock that advances one second per reading: one second of set-up, then a second a step. A 4.5 s
    budget allows three steps (ending at 4 s), not a fourth that would end at 5 s."""
    import napari_segflow.training.online as online

    frames, instances = video
    readings = iter(range(1000))
    monkeypatch.setattr(online.time, "perf_counter", lambda: float(next(readings)))
    config = FinetuneConfig(steps=100, time_budget=4.5, long_side=128)
    steps = list(finetune(SegFlowNet(tiny_config), frames, {0: instances[0]}, config=config))
    assert [s.step for s in steps] == [1, 2, 3]
    assert steps[-1].elapsed == 4.0
    # the progress bar's total follows the budget that ends first (the seconds here), not the 100 steps
    assert [s.total for s in steps] == [3, 3, 3]


def test_closing_the_generator_cancels(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    run = finetune(net, frames, {0: instances[0]}, config=FinetuneConfig(steps=50, time_budget=None, long_side=128))
    next(run)
    run.close()
    assert not net.training and all(p.requires_grad for p in net.parameters())


def test_bad_annotations_fail_before_any_work(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    cases = [
        ({}, "no annotated frame"),
        ({0: np.zeros_like(instances[0])}, "hold no object"),
        ({9: instances[0]}, "frame 9: out of range"),
        ({0: instances[0][:10]}, "frame 0: the mask is 128x10"),
        ({0: np.stack([instances[0]] * 3, axis=-1)},
         r"frame 0: the mask is shaped \(96, 128, 3\), not one \(height, width\) image, the frames are 128x96"),
    ]
    for annotations, message in cases:
        with pytest.raises(SegFlowError, match=message):
            next(finetune(net, frames, annotations))
    with pytest.raises(SegFlowError, match=r"not among the objects \[9\]"):
        next(finetune(net, frames, {0: instances[0]}, objects=ObjectChannels((9,))))
    assert net.config.num_classes == 2  # nothing changed


def test_object_channels_map_ids_both_ways():
    objects = ObjectChannels((3, 7))
    labels = np.array([[0, 3], [7, 3]])
    channels = objects.to_channels(labels)
    np.testing.assert_array_equal(channels, [[0, 1], [2, 1]])
    np.testing.assert_array_equal(objects.to_ids(channels), labels)
    with pytest.raises(SegFlowError, match="distinct"):
        ObjectChannels((2, 2))
    with pytest.raises(SegFlowError, match="at most 255"):
        ObjectChannels((300,))


def test_adapt_flow_lets_the_flow_branch_learn_from_the_video(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    before = [p.detach().clone() for p in flow_parameters(net)]
    config = FinetuneConfig(steps=2, time_budget=None, long_side=128, adapt_flow=True)
    steps = list(finetune(net, frames, {0: instances[0]}, config=config))
    assert "flow_adapt_loss" in steps[-1].metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, flow_parameters(net)))


def test_a_correction_warm_starts_from_the_previous_fine_tune(tiny_config, video):
    frames, instances = video
    net = SegFlowNet(tiny_config)
    config = FinetuneConfig(steps=3, time_budget=None, long_side=128)
    list(finetune(net, frames, {0: instances[0]}, config=config))
    tuned = {k: v.clone() for k, v in net.state_dict().items()}
    corrected = {0: instances[0], 3: instances[3]}
    first = next(finetune(net, frames, corrected, config=FinetuneConfig(steps=1, time_budget=None, long_side=128,
                                                                         learning_rate=1e-12)))
    assert first.step == 1
    # with a vanishing learning rate one more step leaves the previous fine-tune's weights in place
    for key, value in tuned.items():
        torch.testing.assert_close(net.state_dict()[key], value, atol=1e-6, rtol=0)
