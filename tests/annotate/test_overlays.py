import numpy as np

from napari_segflow.annotate.overlays import ConfidenceFrames, flow_arrows


def test_flow_arrows_sample_a_grid_and_point_the_way_things_move():
    flow = np.zeros((50, 100, 2), np.float32)
    flow[..., 0] = 3.0  # rightwards
    flow[:, 50:, 1] = -2.0  # the right half also moves up
    arrows = flow_arrows(flow, spacing=25)
    assert arrows.shape == (2 * 4, 2, 2)
    np.testing.assert_array_equal(arrows[0], [[12, 12], [0, 3]])  # [row, column], [d_row, d_column]
    right = arrows[arrows[:, 0, 1] > 50]
    np.testing.assert_array_equal(right[:, 1], np.tile([[-2, 3]], (len(right), 1)))
    assert flow_arrows(None).shape == (0, 2, 2)


class _Session:
    class frames:
        shape = (3, 4, 5, 3)

    def confidence(self, index):
        return np.full((4, 5), 0.5, np.float32) if index == 1 else None


def test_confidence_frames_read_lazily_and_show_nothing_known_as_zero():
    frames = ConfidenceFrames(_Session())
    assert frames.shape == (3, 4, 5) and frames.ndim == 3 and frames.dtype == np.float32
    assert frames[1].mean() == 0.5 and frames[0].max() == 0
    np.testing.assert_array_equal(frames[0:2, 1], np.array([[0.0] * 5, [0.5] * 5], np.float32))
    assert np.asarray(frames).shape == (3, 4, 5)
