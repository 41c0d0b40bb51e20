import numpy as np
import pytest

from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.metrics import (
    boundary_map,
    boundary_measure,
    boundary_tolerance,
    endpoint_error,
    region_similarity,
    score_sequence,
)


def _square(shape, top, left, size):
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_j_by_hand():
    prediction = _square((10, 10), 2, 2, 4)
    truth = _square((10, 10), 2, 4, 4)  # overlap 4x2 = 8, union 16 + 16 - 8 = 24
    assert region_similarity(prediction, truth) == pytest.approx(8 / 24)
    assert region_similarity(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert region_similarity(prediction, np.zeros((10, 10))) == 0.0


def test_boundary_map_by_hand():
    mask = _square((6, 6), 1, 1, 3)
    expected = np.zeros((6, 6), bool)
    expected[0, 0:4] = True  # above the square and the top-left corner
    expected[1:4, 0] = True  # left of it
    expected[1:4, 3] = True  # its right column
    expected[3, 1:3] = True  # its bottom row
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_f_tolerance_is_davis():
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.7)
    assert boundary_tolerance((100, 100)) == 2  # ceil(1.13)


def test_f_by_hand():
    truth = _square((100, 100), 20, 20, 20)
    assert boundary_measure(truth, truth) == 1.0
    assert boundary_measure(_square((100, 100), 21, 21, 20), truth) == 1.0  # within 2 px
    assert boundary_measure(_square((100, 100), 60, 60, 20), truth) == 0.0  # far away
    # prediction = truth plus an equal square far away: precision 1/2, recall 1, F = 2/3
    doubled = truth | _square((100, 100), 60, 60, 20)
    assert boundary_measure(doubled, truth) == pytest.approx(2 / 3)
    assert boundary_measure(np.zeros((100, 100)), truth) == 0.0
    assert boundary_measure(np.zeros((9, 9)), np.zeros((9, 9))) == 1.0


def test_epe_by_hand():
    truth = np.zeros((2, 2, 2))
    flow = np.zeros((2, 2, 2))
    flow[0, 0] = (3, 4)
    assert endpoint_error(truth, truth) == 0.0
    assert endpoint_error(flow, truth) == pytest.approx(5 / 4)
    assert endpoint_error(flow, truth, valid=np.array([[True, False], [False, False]])) == pytest.approx(5)


def test_sequence_scores_skip_first_and_last_and_split_objects():
    truth = np.zeros((4, 10, 10), np.uint8)
    truth[:, 1:4, 1:4] = 1
    truth[:, 6:9, 6:9] = 2
    prediction = truth.copy()
    prediction[1, 6:9, 6:9] = 0  # object 2 lost in frame 1
    scores = score_sequence(prediction, truth)
    assert scores.frames == [1, 2]
    assert scores.j[1] == [1.0, 1.0] and scores.j[2] == [0.0, 1.0]
    assert scores.j_mean == pytest.approx((1.0 + 0.5) / 2)
    assert scores.jf_mean == pytest.approx((scores.j_mean + scores.f_mean) / 2)
    with pytest.raises(SegFlowError, match="equal"):
        score_sequence(prediction[:3], truth)
