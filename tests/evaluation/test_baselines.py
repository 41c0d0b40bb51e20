import numpy as np
import pytest

from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.baselines import optical_flow, propagate_by_flow, warp_labels
from napari_segflow.evaluation.metrics import region_similarity


def _moving_square_video(count=6, step=2):
    rng = np.random.default_rng(0)
    background = (rng.random((80, 96, 3)) * 120).astype(np.uint8)
    texture = (rng.random((20, 20, 3)) * 120 + 120).astype(np.uint8)
    frames, masks = [], []
    for t in range(count):
        frame = background.copy()
        mask = np.zeros((80, 96), np.uint8)
        frame[30:50, 10 + step * t : 30 + step * t] = texture
        mask[30:50, 10 + step * t : 30 + step * t] = 1
        frames.append(frame)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def test_warp_labels_follows_an_exact_flow():
    labels = np.zeros((10, 10), np.uint8)
    labels[2:4, 2:4] = 3
    flow = np.zeros((10, 10, 2), np.float32)
    flow[..., 0] = -2  # frame t's pixel came from 2 px to the left in t-1
    warped = warp_labels(labels, flow)
    assert (warped[2:4, 4:6] == 3).all() and warped.sum() == 3 * 4


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_warping_peers_track_a_moving_square(method):
    frames, masks = _moving_square_video()
    results = dict(propagate_by_flow(frames, masks[0], list(range(len(frames))), method))
    assert region_similarity(results[5], masks[5]) > 0.7
    assert region_similarity(masks[0], masks[5]) < 0.7  # standing still would not do


def test_flow_warping_at_a_working_size_returns_frame_sized_masks():
    frames, masks = _moving_square_video(step=4)
    results = dict(propagate_by_flow(frames, masks[0], list(range(len(frames))), "dis", working_size=(40, 48)))
    assert all(labels.shape == (80, 96) for labels in results.values())
    np.testing.assert_array_equal(results[0], masks[0])
    assert region_similarity(results[5], masks[5]) > 0.6
    assert region_similarity(masks[0], masks[5]) < 0.5


def test_unknown_method():
    frames, _ = _moving_square_video(2)
    with pytest.raises(SegFlowError, match="unknown flow method"):
        optical_flow(frames[0], frames[1], "magic")
