import numpy as np
import pytest

from napari_segflow._writer import write_labels_pngs, write_labels_tiff
from napari_segflow.data.io import read_label_image
from napari_segflow.errors import SegFlowError


@pytest.fixture()
def stack():
    labels = np.zeros((3, 6, 7), np.uint8)
    labels[0, 1:3, 2:5] = 1
    labels[2, 4:, :2] = 7
    return labels


def test_a_label_stack_becomes_one_png_per_frame_named_like_the_frames(tmp_path, stack):
    [folder] = write_labels_pngs(str(tmp_path / "masks"), stack, {"metadata": {"frame_names": ["a", "b", "c"]}})
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert folder == str(tmp_path / "masks") and names == ["a.png", "b.png", "c.png"]
    for t, name in enumerate("abc"):
        np.testing.assert_array_equal(read_label_image(tmp_path / "masks" / f"{name}.png"), stack[t])
    write_labels_pngs(str(tmp_path / "plain.png"), stack, {})
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_the_png_writer_never_writes_into_a_folder_that_holds_files(tmp_path, stack):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "mine.txt").write_text("keep")
    with pytest.raises(SegFlowError, match="not an empty folder"):
        write_labels_pngs(str(tmp_path / "masks"), stack, {})
    assert [p.name for p in (tmp_path / "masks").iterdir()] == ["mine.txt"]
    big = tmp_path / "big"
    with pytest.raises(SegFlowError, match="label ids must lie in 0..255") as refused:
        write_labels_pngs(str(big), stack.astype(np.int32) * 100, {})
    assert str(refused.value).startswith(f"{big}:")  # the folder the user named, not a hidden staging one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]  # nothing half-written


def test_a_label_stack_becomes_one_tiff(tmp_path, stack):
    import tifffile

    [path] = write_labels_tiff(str(tmp_path / "masks.tif"), stack, {})
    np.testing.assert_array_equal(tifffile.imread(path), stack)


def test_napari_saves_the_masks_layer_with_the_writer(make_napari_viewer, tmp_path, stack):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(stack, name="segflow masks")
    layer.save(str(tmp_path / "out.tif"), plugin="napari-segflow")
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), stack)
