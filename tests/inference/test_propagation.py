import numpy as np
import pytest
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.propagation import correction_orders, frame_order, propagate
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
