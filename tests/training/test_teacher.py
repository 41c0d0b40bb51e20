import numpy as np
import pytest

from napari_segflow.errors import SegFlowError
from napari_segflow.training.teacher import TeacherCache, TeacherSettings, label_pair


@pytest.fixture(scope="module")
def clip(synthetic_generator):
    return synthetic_generator(11)


def test_teacher_labels_follow_the_true_flow_where_they_pass_the_check(clip):
    frames = (clip.frames * 255).astype(np.uint8)
    flow, valid = label_pair(frames[0], frames[1])
    assert flow.shape == clip.flows[0].shape and valid.dtype == bool
    error = np.linalg.norm(flow - clip.flows[0], axis=-1)
    zero = np.linalg.norm(clip.flows[0], axis=-1)
    assert 0.5 < valid.mean() < 1.0  # the check drops some pixels, not most
    assert error[valid].mean() < 0.5 * zero[valid].mean()
    assert error[valid].mean() < error[~valid].mean()  # what it drops is worse than what it keeps


def test_cache_labels_once_reads_back_and_refuses_other_settings(clip, tmp_path):
    frames = (clip.frames * 255).astype(np.uint8)
    cache = TeacherCache(tmp_path / "cache")
    messages = []
    cache.build([("clip", frames)], report=messages.append)
    assert messages == ["teacher: labelling clip (4 pairs)"] and cache.pair_count("clip") == 4
    first, second, flow, valid = cache.pair("clip", 2)
    np.testing.assert_array_equal(first, frames[2])
    np.testing.assert_array_equal(second, frames[3])
    expected_flow, expected_valid = label_pair(frames[2], frames[3])
    np.testing.assert_allclose(flow, expected_flow, atol=0.02)  # stored as float16
    np.testing.assert_array_equal(valid, expected_valid)
    cache.build([("clip", frames)], report=messages.append)
    assert len(messages) == 1  # labelled once
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["clip"]  # no staging folder left
    other = TeacherCache(tmp_path / "cache", TeacherSettings(finest_scale=1))
    with pytest.raises(SegFlowError, match="other teacher settings"):
        other.pair("clip", 0)
    with pytest.raises(SegFlowError, match="no teacher labels for 'absent'"):
        cache.pair_count("absent")
    with pytest.raises(SegFlowError, match="has 1 frame"):
        cache.build([("single", frames[:1])])
