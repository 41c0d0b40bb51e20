import numpy as np
import pytest
from PIL import Image

from napari_segflow.data.io import (
    ArrayFrames,
    davis_palette,
    open_video,
    read_flo,
    read_label_image,
    to_rgb_uint8,
    write_flo,
    write_label_png,
    write_label_pngs,
    write_label_tiff,
)
from napari_segflow.errors import SegFlowError


def _moving_square_frames(count=12, height=48, width=64):
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, 10:30, 5 + 3 * t : 25 + 3 * t] = (200, 80, 40)
        frames[t, ..., 2] += np.uint8(t * 10)  # a per-frame signature
    return frames


def _write_video(path, frames, codec="mpeg4", fps=10):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        if codec == "mpeg4":
            stream.options = {"qscale": "1"}
            stream.codec_context.gop_size = 4  # several key frames, so seeking is exercised
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def mp4(tmp_path):
    frames = _moving_square_frames()
    path = tmp_path / "clip.mp4"
    _write_video(path, frames)
    return path, frames


def test_mp4_is_lazy_and_frame_exact(mp4):
    path, frames = mp4
    video = open_video(path)
    assert video.shape == frames.shape and video.dtype == np.uint8 and len(video) == len(frames)
    sequential = video[:]
    # a lossy codec, but each decoded frame is nearest to its own source frame
    distances = np.abs(sequential[:, None].astype(int) - frames[None].astype(int)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(len(frames)))
    for index in (9, 2, 3, 11, 0, 7):  # random access, including backwards seeks
        np.testing.assert_array_equal(video[index], sequential[index])
    assert video[5, 10:12, 0:3].shape == (2, 3, 3)


def test_avi_gif_and_mov_open(tmp_path):
    frames = _moving_square_frames(count=6)
    for name, codec in (("clip.avi", "mpeg4"), ("clip.mov", "mpeg4"), ("clip.gif", "gif")):
        _write_video(tmp_path / name, frames, codec)
        video = open_video(tmp_path / name)
        assert video.shape == frames.shape, name
        assert np.abs(video[4].astype(int) - frames[4]).mean() < 20, name


def test_truncated_video_is_an_error_naming_it(mp4, tmp_path):
    path, _ = mp4
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SegFlowError, match="damaged.mp4"):
        video = open_video(damaged)
        video[len(video) - 1]


def test_missing_and_unsupported_inputs(tmp_path):
    with pytest.raises(SegFlowError, match="no such file"):
        open_video(tmp_path / "nope.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SegFlowError, match="unsupported video type"):
        open_video(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegFlowError, match="holds no images"):
        open_video(tmp_path / "empty")
    with pytest.raises(SegFlowError, match="no frames"):
        open_video(np.zeros((0, 8, 8, 3), np.uint8))


def test_image_folder_in_natural_order(tmp_path):
    frames = _moving_square_frames(count=11)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame{t}.png")
    video = open_video(tmp_path)
    assert video.names[:3] == ["frame0", "frame1", "frame2"] and video.names[10] == "frame10"
    np.testing.assert_array_equal(video[10], frames[10])
    (tmp_path / "._frame3.png").write_bytes(b"macOS metadata, not an image")
    assert len(open_video(tmp_path)) == 11  # hidden files are not frames
    Image.fromarray(frames[0][:20]).save(tmp_path / "frame11.png")
    with pytest.raises(SegFlowError, match=r"frame11.png \(frame 11\) is 64x20, the first frame is 64x48"):
        open_video(tmp_path)  # on opening, not when a run reaches the frame


def test_tiff_stack_grey_16bit(tmp_path):
    import tifffile

    stack = (np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8) * 200) % 65535
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    video = open_video(tmp_path / "stack.tif")
    assert video.shape == (4, 8, 8, 3)
    low, high = stack.min(), stack.max()  # the video's range: every frame is read to find it here
    expected = np.floor((stack[2].astype(float) - low) * 255 / (high - low) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(video[2][..., 0], expected)
    np.testing.assert_array_equal(video[2][..., 0], video[2][..., 2])


def test_a_video_not_stored_as_8_bit_takes_one_range_for_all_its_frames():
    twelve_bit = np.zeros((20, 4, 4), np.uint16)
    twelve_bit[:10] = 1000  # a dim half
    twelve_bit[10:] = 4000  # and a bright one, as a 12-bit camera stores them in 16-bit files
    twelve_bit[:, 0, 0] = 0
    video = open_video(twelve_bit)
    assert video[15].max() == 255 and video[3].max() == 64  # full contrast, and no frame stretched on its own
    assert video.intensity_range == (0.0, 4000.0)  # found on the first read
    given = ArrayFrames(twelve_bit, intensity_range=(0, 2000))  # as napari's contrast limits show it
    assert given[3].max() == 128 and given[15].max() == 255
    floats = np.linspace(0.2, 0.6, 3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    assert open_video(floats)[0].min() == 0 and open_video(floats)[2].max() == 255
    assert open_video(np.full((2, 3, 3), 7, np.uint8))[0].max() == 7  # 8-bit video as it is


def test_npy_memory_map_and_rgba(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (3, 6, 7, 4), dtype=np.uint8)
    np.save(tmp_path / "video.npy", rgba)
    video = open_video(tmp_path / "video.npy")
    np.testing.assert_array_equal(video[1], rgba[1, ..., :3])
    np.save(tmp_path / "rgb.npy", rgba[..., :3])
    assert open_video(tmp_path / "rgb.npy")[1].flags.writeable  # torch warns on tensors of a read-only memory map


def test_normalisation_of_floats_and_nan():
    assert to_rgb_uint8(np.ones((2, 2), np.float32), "x", 0).max() == 255
    assert to_rgb_uint8(np.full((2, 2, 3), 128.0), "x", 0).max() == 128
    bad = np.zeros((2, 2, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(SegFlowError, match="frame 4 holds NaN"):
        to_rgb_uint8(bad, "clip", 4)
    video = open_video(np.stack([np.zeros((2, 2, 3), np.float32), bad]))
    video[0]
    with pytest.raises(SegFlowError, match="frame 1 holds NaN"):
        video[1]


def test_label_png_round_trip_with_davis_palette(tmp_path):
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[:, 2:5, 3:7] = 1
    labels[1, 6:9, 1:4] = 2
    paths = write_label_pngs(labels, tmp_path / "out", names=["a", "b", "c"])
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"]
    with Image.open(paths[1]) as image:
        assert image.mode == "P"
        assert tuple(image.getpalette()[3:6]) == (128, 0, 0)  # DAVIS colour of object 1
    np.testing.assert_array_equal(read_label_image(paths[1]), labels[1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_davis_palette_colours():
    palette = davis_palette()
    assert palette[0].tolist() == [0, 0, 0]
    assert (
        palette[1].tolist() == [128, 0, 0]
        and palette[2].tolist() == [0, 128, 0]
        and palette[3].tolist() == [128, 128, 0]
    )


def test_grey_and_rgb_masks_read_as_ids(tmp_path):
    binary = np.zeros((6, 6), np.uint8)
    binary[1:3, 1:3] = 255
    Image.fromarray(binary).save(tmp_path / "davis2016.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "davis2016.png"), binary // 255)
    rgb = davis_palette()[np.array([[0, 1], [2, 0]])]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "rgb.png"), [[0, 1], [2, 0]])
    with pytest.raises(SegFlowError, match="no such mask"):
        read_label_image(tmp_path / "missing.png")


def test_grey_masks_saved_as_rgb_read_as_grey_unless_in_the_palette(tmp_path):
    white = np.zeros((6, 6, 3), np.uint8)
    white[1:3, 1:3] = 255
    Image.fromarray(white).save(tmp_path / "white.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "white.png"), white[..., 0] // 255)
    grey = np.full((2, 2, 3), 128, np.uint8)  # DAVIS colour of object 7
    grey[0, 0] = 0
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "grey.png"), [[0, 7], [7, 7]])
    grey[1, 1] = 60  # no longer all palette colours: the grey values themselves
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "grey.png"), [[0, 128], [128, 60]])
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(SegFlowError, match=r"colour \(255, 0, 0\) is not in the DAVIS palette.*or as a grey image"):
        read_label_image(tmp_path / "colour.png")


def test_writers_reject_bad_labels_and_leave_nothing(tmp_path):
    with pytest.raises(SegFlowError, match="0..255"):
        write_label_pngs(np.full((2, 4, 4), 300, np.int32), tmp_path / "out")
    with pytest.raises(SegFlowError, match="integers"):
        write_label_png(np.zeros((4, 4), np.float32), tmp_path / "x.png")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "mask.png"
    write_label_png(np.ones((4, 4), np.uint8), target)
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_label_png(np.zeros((4, 4), np.uint8), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


def test_label_tiff(tmp_path):
    import tifffile

    labels = np.random.default_rng(1).integers(0, 4, (3, 5, 6)).astype(np.uint8)
    write_label_tiff(labels, tmp_path / "labels.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"), labels)


def test_flo_round_trip_and_damage(tmp_path):
    flow = np.random.default_rng(2).normal(size=(7, 9, 2)).astype(np.float32)
    write_flo(flow, tmp_path / "a.flo")
    raw = (tmp_path / "a.flo").read_bytes()
    assert len(raw) == 12 + 7 * 9 * 8 and raw[:4] == b"PIEH"
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)
    (tmp_path / "short.flo").write_bytes(raw[:-8])
    with pytest.raises(SegFlowError, match="short.flo.*truncated"):
        read_flo(tmp_path / "short.flo")
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + raw[4:])
    with pytest.raises(SegFlowError, match="magic"):
        read_flo(tmp_path / "bad.flo")
    with pytest.raises(SegFlowError, match=r"\(H, W, 2\)"):
        write_flo(np.zeros((3, 3)), tmp_path / "c.flo")


def test_annotation_checks_name_the_mask(tmp_path):
    from napari_segflow.data.io import check_annotation, read_annotation

    mask = np.zeros((10, 12), np.uint8)
    mask[2:4, 2:4] = 1
    write_label_png(mask, tmp_path / "mask.png")
    np.testing.assert_array_equal(read_annotation(tmp_path / "mask.png", (10, 12, 3)), mask)
    with pytest.raises(SegFlowError, match=r"mask.png: the mask is 12x10, the frames are 16x10"):
        read_annotation(tmp_path / "mask.png", (10, 16, 3))
    with pytest.raises(SegFlowError, match="empty.png: the mask holds no object"):
        check_annotation(np.zeros((10, 12), np.uint8), (10, 12), "empty.png")
