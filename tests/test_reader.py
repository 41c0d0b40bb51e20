from pathlib import Path

import numpy as np
from PIL import Image

from napari_segflow._reader import FRAME_NAMES, VIDEO_SOURCE, get_reader
from napari_segflow.data.io import VideoFrames

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bear"


def test_the_reader_opens_a_video_file_lazily():
    reader = get_reader(str(SAMPLE / "bear.mp4"))
    assert reader is not None
    [(frames, meta, kind)] = reader(str(SAMPLE / "bear.mp4"))
    assert isinstance(frames, VideoFrames) and kind == "image"
    assert frames.shape == (82, 240, 426, 3) and meta["rgb"] and meta["name"] == "bear"
    assert meta["metadata"][VIDEO_SOURCE] == str((SAMPLE / "bear.mp4").resolve())
    assert frames[40].shape == (240, 426, 3)


def test_the_reader_opens_a_folder_of_frames_and_declines_the_rest(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        Image.fromarray(np.full((8, 10, 3), 40 * t, np.uint8)).save(folder / f"f{t}.png")
    [(frames, meta, _)] = get_reader(str(folder))(str(folder))
    assert frames.shape == (3, 8, 10, 3) and frames[2][0, 0, 0] == 80
    assert meta["metadata"][FRAME_NAMES] == ["f0", "f1", "f2"]
    (tmp_path / "notes.txt").write_text("no")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader([str(folder), str(folder)]) is None


def test_napari_opens_a_video_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(SAMPLE / "bear.mp4"), plugin="napari-segflow")
    assert isinstance(layer.data, VideoFrames) and layer.rgb and layer.data.shape[0] == 82


def test_the_sample_data_is_the_clip_with_its_first_mask(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segflow", "bear")
    video, annotation = viewer.layers
    assert video.data.shape == (82, 240, 426, 3)
    assert annotation.data.shape == (82, 240, 426)
    assert annotation.data[0].any() and not annotation.data[1:].any()
