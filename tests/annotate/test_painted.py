import numpy as np
from napari.layers import Labels

from napari_segflow.annotate.painted import PaintedFrames, frames_of_paint


def test_painting_and_filling_mark_their_frames():
    layer = Labels(np.zeros((6, 20, 20), np.uint8))
    painted = PaintedFrames(layer, current_frame=lambda: 0)
    layer.data_setitem((np.array([2, 2]), np.array([3, 4]), np.array([5, 5])), 1)
    layer.data_setitem((np.array([4]), np.array([0]), np.array([0])), 3)
    assert painted.frames == {2, 4}
    assert painted.take() == {2, 4} and painted.frames == set()
    painted.disconnect()
    layer.data_setitem((np.array([1]), np.array([0]), np.array([0])), 3)
    assert painted.frames == set()


def test_a_bounding_box_edit_names_its_frames():
    class Box:
        slice_key = (slice(3, 5), slice(0, 4), slice(0, 4))

    assert frames_of_paint(Box()) == [3, 4]
    assert frames_of_paint(((np.array([1, 1, 2]), np.array([0, 1, 2])), None, None)) == [1, 2]


def test_the_brush_and_the_bucket_mark_the_frame_they_touch():
    layer = Labels(np.zeros((6, 20, 20), np.uint8))
    painted = PaintedFrames(layer, current_frame=lambda: 0)
    layer.brush_size = 3
    layer.paint((5, 10, 10), 2)
    layer.fill((3, 1, 1), 4)
    assert painted.frames == {3, 5} and layer.data[5, 10, 10] == 2 and layer.data[3].all()
