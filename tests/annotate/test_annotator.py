import numpy as np
from napari.layers import Image

from napari_segflow.annotate.annotator import video_source


def test_a_video_layer_not_stored_as_8_bit_reaches_the_session_as_the_user_sees_it():
    frames = np.zeros((3, 8, 8), np.uint16)
    frames[:, 2:6, 2:6] = 3000  # a 12-bit camera's frames in 16-bit data
    layer = Image(frames, contrast_limits=(0, 4095))
    source = video_source(layer)
    assert source.intensity_range == (0.0, 4095.0)
    assert source[1][4, 4].tolist() == [187, 187, 187]  # 3000 of 4095, not 3000 of 65535 (12)
    layer.contrast_limits = (0, 3000)
    assert video_source(layer)[1][4, 4].tolist() == [255, 255, 255]
    rgb = Image(np.full((2, 4, 4, 3), 9, np.uint8), rgb=True)
    assert video_source(rgb).intensity_range is None and video_source(rgb)[0].max() == 9
