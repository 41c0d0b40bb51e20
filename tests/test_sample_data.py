from pathlib import Path

import numpy as np

from napari_segflow.data.io import open_video, read_label_image

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bear"


def test_sample_clip_and_masks_agree():
    video = open_video(SAMPLE / "bear.mp4")
    masks = sorted((SAMPLE / "masks").glob("*.png"))
    assert video.shape == (82, 240, 426, 3) and len(masks) == 82
    first = read_label_image(SAMPLE / "first_frame_mask.png")
    np.testing.assert_array_equal(first, read_label_image(masks[0]))
    assert set(np.unique(first)) == {0, 1} and first.shape == video.shape[1:3]
    # the bear is brown fur on grey-brown ground: its pixels are redder than the rest
    frame = video[0].astype(float)
    redness = frame[..., 0] - frame[..., 2]
    assert redness[first == 1].mean() > redness[first == 0].mean()
