import numpy as np
import pytest

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.propagation import frame_order, propagate
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
