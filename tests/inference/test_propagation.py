import numpy as np
import pytest
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.propagation import (
    Stretch, correction_orders, correction_stretches, expected_results, frame_order, fuse_results,
    propagate, propagate_between,
)
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels


def test_frame_order():
    assert frame_order(5, 2, "forward") == [2, 3, 4]
    assert frame_order(5, 2, "backward") == [2, 1, 0]
    assert frame_order(5, 1, "forward", stop=3) == [1, 2, 3]
    with pytest.raises(SegFlowError, match="out of range"):
        frame_order(5, 5, "forward")
    with pytest.raises(SegFlowError, match="direction"):
        frame_order(5, 0, "sideways")


def test_propagate_yields_every_frame_at_video_size(tiny_config, synthetic_clip):
    frames = (synthetic_clip.frames * 255).astype(np.uint8)
    net = SegFlowNet(tiny_config)
    net.set_num_objects(2)
    objects = ObjectChannels((4, 9))
    geometry = WorkingResolution(96, 128, long_side=128)
    results = list(propagate(net, frames, objects, [4, 3, 2, 1, 0], geometry))
    assert [r.index for r in results] == [4, 3, 2, 1, 0]
    for r in results:
        assert r.labels.shape == (96, 128) and set(np.unique(r.labels)) <= {0, 4, 9}
        assert r.probabilities.shape == (3, 96, 128)
        np.testing.assert_allclose(r.probabilities.astype(np.float32).sum(0), 1, atol=1e-2)
        assert r.flow.shape == (96, 128, 2)
    with pytest.raises(SegFlowError, match="predicts 2 object"):
        next(propagate(net, frames, ObjectChannels((1,)), [0], geometry))


def _recording_priors(net):
    """Wrap ``net.fuse`` to record the prior each frame is given."""
    seen = []
    fuse = net.fuse

    def recording(appearance, flow, prior=None):
        seen.append((None if prior is None else prior.clone(), flow.flow.clone()))
        return fuse(appearance, flow, prior)

    net.fuse = recording
    return seen


def test_the_annotation_is_the_first_prior_and_each_mask_is_carried_to_the_next_frame(tiny_config, synthetic_clip):
    from napari_segflow.model.prior import carry_prior, prior_from_labels, prior_from_logits

    frames = (synthetic_clip.frames * 255).astype(np.uint8)
    start = (synthetic_clip.instances[0] > 0).astype(np.uint8)
    net = SegFlowNet(tiny_config)
    geometry = WorkingResolution(96, 128, long_side=128)
    seen = _recording_priors(net)
    results = list(propagate(net, frames, ObjectChannels((1,)), [0, 1, 2], geometry, start_labels=start,
                             refine_edges=False))
    first = prior_from_labels(geometry.labels_to_network(start), 2)
    torch.testing.assert_close(seen[0][0], first)
    torch.testing.assert_close(seen[1][0], carry_prior(first, seen[0][1]))  # the annotation, not the net's guess
    assert len(results) == 3 and seen[2][0] is not None and not torch.equal(seen[2][0], seen[1][0])

    seen.clear()
    list(propagate(net, frames, ObjectChannels((1,)), [0, 1, 2], geometry, start_labels=start, bidirectional=True))
    assert len(seen) == 6
    for position in range(3):  # the sweep back reads each frame with the prior of the sweep forward
        torch.testing.assert_close(seen[5 - position][0], seen[position][0].half().float())

    seen.clear()
    list(propagate(net, frames, ObjectChannels((1,)), [0, 1, 2], geometry, start_labels=start, mask_prior=False))
    assert [prior for prior, _ in seen] == [None, None, None]
    seen.clear()
    list(propagate(net, frames, ObjectChannels((1,)), [0, 1], geometry, start_labels=start, motion_features=False))
    torch.testing.assert_close(seen[1][0], first)  # not carried: the flow branch saw no motion


def test_correction_stretches_reach_the_neighbouring_user_frames():
    # the first annotation: the whole video forward (and backward from a later start)
    assert correction_stretches([0], [0], 6) == [Stretch(0, 5)]
    assert correction_stretches([3], [3], 6) == [Stretch(3, 5), Stretch(3, 0)]
    assert correction_stretches([0], [0], 1) == [Stretch(0, 0)]
    # a correction at 8 between user frames 0 and 12: both stretches, carried from both ends
    assert correction_stretches([0, 8, 12], [8], 16) == [Stretch(8, 12, True), Stretch(0, 8, True)]
    # the last user frame: forward to the end; the video's last frame: nothing more that way
    assert correction_stretches([0, 9], [9], 12) == [Stretch(9, 11), Stretch(0, 9, True)]
    assert correction_stretches([0, 2], [2], 3) == [Stretch(0, 2, True)]
    # two changed frames together: the stretch between them once
    assert correction_stretches([0, 4, 8], [4, 8], 10) == [Stretch(4, 8, True), Stretch(0, 4, True), Stretch(8, 9)]
    assert Stretch(2, 4, True).orders == [[2, 3, 4], [4, 3, 2]] and Stretch(3, 1).orders == [[3, 2, 1]]


def test_correction_stretches_cross_a_user_frame_taken_back():
    # frame 8 taken back between user frames 0 and 12: the stretch across it, carried from both ends
    assert correction_stretches([0, 12], [], 16, removed=[8]) == [Stretch(0, 12, True)]
    # the last or the first user frame taken back: from its neighbour to the video's end that way
    assert correction_stretches([0], [], 10, removed=[6]) == [Stretch(0, 9)]
    assert correction_stretches([6], [], 10, removed=[2]) == [Stretch(6, 0)]
    # with a change beside it, each stretch once
    assert correction_stretches([0, 12], [12], 16, removed=[8]) == [Stretch(12, 15), Stretch(0, 12, True)]


def test_expected_results_count_each_frame_an_earlier_stretch_left_open():
    stretches = [Stretch(4, 8, True), Stretch(0, 4, True), Stretch(8, 9)]
    assert expected_results(stretches, 1) == 10 + (10 - 2) + 1  # frames 4 and 8 were made final before
    assert expected_results(stretches, 2) == 2 * 19
    assert expected_results([Stretch(2, 4), Stretch(2, 0)], 1) == 5


def test_correction_orders_give_each_frame_to_its_nearest_user_frame():
    # the first annotation: the whole video forward (and backward from a later start)
    assert correction_orders([0], [0], 6) == [[0, 1, 2, 3, 4, 5]]
    assert correction_orders([3], [3], 6) == [[3, 4, 5], [3, 2, 1, 0]]
    # a correction at 8 between user frames 0 and 12: frames 5..10 (a tie at 10 goes to the earlier, 8)
    assert correction_orders([0, 8, 12], [8], 16) == [[8, 9, 10], [8, 7, 6, 5]]
    # the last user frame: forward to the end; next to another user frame: nothing to do that way
    assert correction_orders([0, 9], [9], 12) == [[9, 10, 11], [9, 8, 7, 6, 5]]
    assert correction_orders([0, 1], [1], 3) == [[1, 2]]
    # two changed frames together: each covers its own share
    assert correction_orders([0, 4, 8], [4, 8], 10) == [[4, 5, 6], [4, 3], [8, 9], [8, 7]]


def _two_user_frames(tiny_config, synthetic_clip):
    """A tiny network and clip with user frames 0 and 4: (net, frames, objects, geometry, first, last labels)."""
    frames = (synthetic_clip.frames * 255).astype(np.uint8)
    first = (synthetic_clip.instances[0] > 0).astype(np.uint8)
    last = (synthetic_clip.instances[4] > 0).astype(np.uint8)
    return SegFlowNet(tiny_config), frames, ObjectChannels((1,)), WorkingResolution(96, 128, long_side=128), first, last


def test_a_frame_between_user_frames_fuses_both_carries_by_nearness(tiny_config, synthetic_clip):
    net, frames, objects, geometry, first, last = _two_user_frames(tiny_config, synthetic_clip)
    results = list(propagate_between(net, frames, objects, 0, 4, geometry, first_labels=first, last_labels=last))
    # the forward carry first, as previews; then the backward carry, each frame fused as it comes
    assert [(r.index, r.final) for r in results] == [(t, False) for t in (0, 1, 2, 3, 4)] + [
        (t, True) for t in (4, 3, 2, 1, 0)]
    forward = {r.index: r for r in propagate(net, frames, objects, [0, 1, 2, 3, 4], geometry, start_labels=first)}
    backward = {r.index: r for r in propagate(net, frames, objects, [4, 3, 2, 1, 0], geometry, start_labels=last)}
    fused = {r.index: r for r in results if r.final}
    for t in range(5):
        weight = t / 4
        expected = (1 - weight) * forward[t].probabilities.astype(np.float32) + weight * backward[t].probabilities
        np.testing.assert_allclose(fused[t].probabilities.astype(np.float32), expected, atol=2e-3)
        np.testing.assert_array_equal(fused[t].labels, objects.to_ids(expected.argmax(0)))
        np.testing.assert_array_equal(fused[t].working_flow, forward[t].working_flow)
    # the ends are their own user frame's carry
    np.testing.assert_array_equal(fused[0].probabilities, forward[0].probabilities)
    np.testing.assert_array_equal(fused[4].probabilities, backward[4].probabilities)
    with pytest.raises(SegFlowError, match="first < last"):
        next(propagate_between(net, frames, objects, 3, 3, geometry))


def test_the_forward_carry_waits_on_disk_until_fused_and_leaves_nothing_behind(tiny_config, synthetic_clip,
                                                                                tmp_path):
    net, frames, objects, geometry, first, last = _two_user_frames(tiny_config, synthetic_clip)

    def waiting():
        return sorted(p.name for p in tmp_path.rglob("*.npz"))

    run = propagate_between(net, frames, objects, 0, 4, geometry, first_labels=first, last_labels=last,
                            scratch=tmp_path)
    for _ in range(5):  # the forward carry's previews
        next(run)
    assert waiting() == [f"{t:06d}.npz" for t in range(5)]
    assert next(run).index == 4  # fused from the file, which goes
    assert waiting() == [f"{t:06d}.npz" for t in range(4)]
    assert [r.index for r in run] == [3, 2, 1, 0]
    assert list(tmp_path.iterdir()) == []
    # a run cancelled between the carries leaves nothing either
    cancelled = propagate_between(net, frames, objects, 0, 4, geometry, first_labels=first, last_labels=last,
                                  scratch=tmp_path)
    for _ in range(6):
        next(cancelled)
    cancelled.close()
    assert list(tmp_path.iterdir()) == []


def test_fused_attention_is_the_weighed_unsure_share_times_the_frames_from_the_nearer_user_frame():
    def result(index, foreground, attention):
        probabilities = np.stack([1 - foreground, foreground]).astype(np.float16)
        return FrameResult(index, (foreground > 0.5).astype(np.uint8), probabilities,
                           np.full((4, 4, 2), index, np.float32), attention=attention)

    forward = result(3, np.full((4, 4), 0.9), attention=0.4 * 4)  # unsure share 0.4, carried 3 frames
    backward = result(3, np.full((4, 4), 0.2), attention=0.1 * 2)  # unsure share 0.1, carried 1 frame
    fused = fuse_results(forward, backward, 0, 4, ObjectChannels((7,)))
    assert fused.final and fused.index == 3
    np.testing.assert_allclose(fused.probabilities[1].astype(np.float32), 0.25 * 0.9 + 0.75 * 0.2, atol=1e-3)
    assert (fused.labels == 0).all()  # 0.375: the nearer, backward carry's background wins
    assert fused.attention == pytest.approx((0.25 * 0.4 + 0.75 * 0.1) * 2)
