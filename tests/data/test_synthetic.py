import numpy as np
import pytest
from scipy import ndimage

from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator, synthetic_videos
from napari_segflow.errors import SegFlowError


def test_same_seed_same_video(synthetic_generator):
    a, b = synthetic_generator(11), synthetic_generator(11)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.flows, b.flows)
    assert not np.array_equal(a.frames, synthetic_generator(12).frames)


def test_shapes_and_ranges(synthetic_clip):
    t, h, w = 5, 96, 128
    assert synthetic_clip.frames.shape == (t, h, w, 3) and synthetic_clip.frames.dtype == np.float32
    assert 0 <= synthetic_clip.frames.min() and synthetic_clip.frames.max() <= 1
    assert synthetic_clip.instances.shape == (t, h, w)
    assert synthetic_clip.flows.shape == (t - 1, h, w, 2)
    assert synthetic_clip.masks.any(axis=(1, 2)).all(), "the target is visible in every frame"


def test_scenes_vary_in_object_count_and_occlude_each_other():
    generator = SyntheticVideoGenerator(SyntheticConfig(height=64, width=96, num_frames=4))
    counts, occluded_target = set(), False
    for seed in range(24):
        clip = generator(seed)
        counts.add(int(clip.instances.max()))
        # the target is occluded by another object where it is visible in t but covered in t+1
        target_now = clip.instances[:-1] == clip.target_id
        occluded_target |= bool((target_now & clip.occlusions & (clip.instances[1:] > 0)
                                 & (clip.instances[1:] != clip.target_id)).any())
    assert counts >= {1, 2, 3, 4}
    assert occluded_target


def test_stop_and_go_freezes_frames():
    generator = SyntheticVideoGenerator(SyntheticConfig(height=64, width=96, num_frames=8, stop_and_go=1.0))
    clip = generator(2)
    assert not clip.moving.all()
    for t in np.flatnonzero(~clip.moving):
        np.testing.assert_array_equal(clip.frames[t], clip.frames[t + 1])
        assert np.abs(clip.flows[t]).max() < 1e-3  # exact up to the inversion's tolerance
    assert np.abs(clip.flows[np.flatnonzero(clip.moving)]).max() > 0.5


def test_objects_move_non_rigidly(synthetic_clip):
    """Inside one object the flow is not a single affine motion (the deformation is there)."""
    t = 0
    object_id = synthetic_clip.target_id
    inside = ndimage.binary_erosion(synthetic_clip.instances[t] == object_id, iterations=3)
    ys, xs = np.nonzero(inside)
    design = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(float)
    flow = synthetic_clip.flows[t][ys, xs]
    coefficients, *_ = np.linalg.lstsq(design, flow, rcond=None)
    residual = np.abs(design @ coefficients - flow).max()
    assert residual > 0.1


def test_stream_is_reproducible():
    config = SyntheticConfig(height=32, width=48, num_frames=2)
    first = [next(iter_) for iter_ in [synthetic_videos(config, seed=5)]][0]
    again = next(synthetic_videos(config, seed=5))
    np.testing.assert_array_equal(first.frames, again.frames)


def test_bad_config_is_named():
    with pytest.raises(SegFlowError, match="num_frames"):
        SyntheticConfig(num_frames=1)
    with pytest.raises(SegFlowError, match="min_objects"):
        SyntheticConfig(min_objects=3, max_objects=2)
