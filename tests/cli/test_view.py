import sys

import napari
import numpy as np
import pytest

from napari_segflow.annotate.annotator import MASKS
from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.cli import main
from napari_segflow.cli.view import open_viewer
from napari_segflow.data.io import read_label_image, write_label_png
from napari_segflow.model.segflow import SegFlowNet


@pytest.fixture()
def npy_clip(tmp_path, synthetic_clip):
    """A clip saved as .npy (a video napari's reader choice does not give the plugin) and its frame-2 mask."""
    np.save(tmp_path / "clip.npy", (synthetic_clip.frames * 255).astype(np.uint8))
    mask = (synthetic_clip.instances[2] == synthetic_clip.target_id).astype(np.uint8)
    write_label_png(mask, tmp_path / "mask.png")
    return tmp_path / "clip.npy", tmp_path / "mask.png", mask


@pytest.fixture()
def viewers(monkeypatch, make_napari_viewer):
    """`napari.Viewer` made by napari's test fixture (closed after the test), hidden."""
    monkeypatch.setattr(napari, "Viewer", lambda **options: make_napari_viewer(**{**options, "show": False}))


def test_view_opens_an_npy_video_with_its_mask_on_the_frame_given(npy_clip, viewers):
    video, mask_path, mask = npy_clip
    viewer, widget = open_viewer(str(video), str(mask_path), frame=2, show=False)
    layer = viewer.layers["clip"]
    assert layer.data.shape == (5, 96, 128, 3) and layer.rgb
    annotation = viewer.layers["annotation"].data
    np.testing.assert_array_equal(annotation[2], mask)
    assert not annotation[[0, 1, 3, 4]].any()
    assert widget.annotator.video_layer is layer and widget.annotator.annotation_layer is viewer.layers["annotation"]


def test_view_reopens_a_session_of_a_video_file_through_the_plugin_widget(tmp_path, npy_clip, tiny_config, viewers,
                                                                          capsys, qtbot):
    video, mask_path, _ = npy_clip
    weights = tmp_path / "tiny.pt"
    save_checkpoint(SegFlowNet(tiny_config), weights)
    assert main(["propagate", str(video), "--mask", str(mask_path), "--frame", "2", "--out", str(tmp_path / "out"),
                 "--session", str(tmp_path / "session"), "--weights", str(weights), "--finetune-steps", "2",
                 "--long-side", "128", "--device", "cpu"]) == 0
    capsys.readouterr()
    # the widget is made through the manifest, as napari makes it: it is handed a proxy of the viewer
    viewer, widget = open_viewer(session=str(tmp_path / "session"), show=False)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)  # the session is read on a worker thread
    assert [layer.name for layer in viewer.layers] == ["clip", "annotation (session)", "segflow flow", MASKS]
    written = np.stack([read_label_image(tmp_path / "out" / f"{t:05d}.png") for t in range(5)])
    np.testing.assert_array_equal(viewer.layers[MASKS].data, written)
    assert widget.video_box.currentText() == "clip" and widget.annotation_box.currentText() == "annotation (session)"
    assert widget.annotator.session.folder == tmp_path / "session"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{video}", "--mask", "{mask}", "--frame", "5"], "--frame 5: out of range, the video has 5 frames"),
        (["{video}", "--frame", "1"], "--frame: it names the frame of a --mask"),
        (["--mask", "{mask}"], "--mask: give the VIDEO it belongs to"),
        (["{video}", "--mask", "{colour}"], "--mask {colour}: "),
        (["{absent}"], "{absent}: no such file or folder"),
        (["--session", "{absent}"], "--session {absent}: no saved session there"),
        (["{video}", "--session", "{absent}"], "--session: a saved session brings its own video"),
    ],
)
def test_view_bad_input_is_one_line_before_a_window_opens(tmp_path, npy_clip, monkeypatch, capsys, arguments,
                                                          message):
    video, mask_path, _ = npy_clip
    Image = pytest.importorskip("PIL.Image")
    colour = np.zeros((96, 128, 3), np.uint8)
    colour[10:20, 10:20] = (0, 255, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    places = {"video": str(video), "mask": str(mask_path), "colour": str(tmp_path / "colour.png"),
              "absent": str(tmp_path / "absent")}

    def no_window(**_):
        raise AssertionError("a window opened")

    monkeypatch.setattr(napari, "Viewer", no_window)
    monkeypatch.setenv("DISPLAY", ":0")
    code = main(["view", *[a.format(**places) for a in arguments]])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("segflow: error:") and error.count("\n") == 1
    assert message.format(**places) in error


def test_view_without_a_screen_or_a_qt_binding_says_so_in_one_line(monkeypatch, capsys):
    def no_window(**_):
        raise AssertionError("a window opened")

    monkeypatch.setattr(napari, "Viewer", no_window)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view"]) == 2
    assert capsys.readouterr().err.startswith("segflow: error: no display: napari needs a screen")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "qtpy", None)  # installed without PyQt5 (or another binding)
    assert main(["view"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segflow: error: napari needs a Qt binding to show its window: pip install")
    assert error.count("\n") == 1


def test_view_says_before_a_window_opens_why_a_session_cannot_reopen(tmp_path, npy_clip, tiny_config, monkeypatch,
                                                                      capsys):
    from napari_segflow.data.io import read_annotation
    from napari_segflow.inference.session import VideoSession

    video, mask_path, _ = npy_clip
    frames = np.load(video)
    mask = read_annotation(mask_path, frames.shape[1:3])
    for name, source in (("from_array", frames), ("from_file", str(video))):
        with VideoSession(source, tmp_path / name, weights=SegFlowNet(tiny_config)) as session:
            session.add_annotation(2, mask)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "session.json").write_text("{cut off")
    video.rename(tmp_path / "moved.npy")

    def no_window(**_):
        raise AssertionError("a window opened")

    monkeypatch.setattr(napari, "Viewer", no_window)
    monkeypatch.setenv("DISPLAY", ":0")
    for folder, message in (("damaged", "damaged session file"), ("from_array", "made from an array in Python"),
                            ("from_file", f"its video {video} is no longer there")):
        assert main(["view", "--session", str(tmp_path / folder)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"segflow: error: --session {tmp_path / folder}: ") and error.count("\n") == 1
        assert message in error
