import numpy as np

from napari_segflow.data.flowviz import colour_wheel, flow_to_rgb


def test_wheel_has_55_hues():
    assert colour_wheel().shape == (55, 3)


def test_directions_have_middlebury_colours():
    flow = np.zeros((1, 3, 2))
    flow[0, 1] = (1, 0)  # right
    flow[0, 2] = (-1, 0)  # left
    rgb = flow_to_rgb(flow)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # no motion is white
    right, left = rgb[0, 1].astype(int), rgb[0, 2].astype(int)
    assert right[0] > 200 and right[1] < 60 and right[2] < 60  # red
    assert left[0] < 60 and left[1] > 150 and left[2] > 150  # cyan
    assert flow_to_rgb(flow * 0.5, max_magnitude=1.0)[0, 1, 1] > 100  # half magnitude: paler
