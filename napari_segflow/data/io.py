"""Lazy video readers and atomic writers for labels and flow.

``open_video(source)`` returns a ``VideoFrames``: a (T, H, W, 3) uint8 array-like that decodes a frame
only when it is indexed. Grey, RGBA, 16-bit and float inputs are normalised to 8-bit RGB (16-bit by
the full 16-bit range, floats by [0, 1] when their maximum is at most 1, else [0, 255]).

Writers never leave a half-written file: they write a hidden temporary file beside the target and
rename it into place.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from napari_segflow.errors import SegFlowError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".gif", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
MAX_LABEL = 255
FLO_MAGIC = 202021.25


# -- frames -----------------------------------------------------------------------------------------


def to_rgb_uint8(frame: np.ndarray, source: str, index: int,
                 intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """Normalise one frame of any common layout and dtype to (H, W, 3) uint8: 8-bit as it is; other types
    from ``intensity_range`` (the values that become 0 and 255) when given, else by their type (integers from
    0 to the type's top, floats from 0 to 1, or as they are when above 1)."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    if frame.ndim == 2:
        frame = np.stack([frame] * 3, axis=-1)
    if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise SegFlowError(f"{source}: frame {index} has shape {frame.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    frame = frame[..., :3]
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if frame.dtype == bool:
        return frame.astype(np.uint8) * 255
    if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(frame).all():
        raise SegFlowError(f"{source}: frame {index} holds NaN or infinite values")
    if intensity_range is not None and np.issubdtype(frame.dtype, np.number):
        low, high = intensity_range
        scale = 255.0 / max(high - low, 1e-12)
        return np.clip((frame.astype(np.float64) - low) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.floating):
        scale = 255.0 if frame.max(initial=0) <= 1.0 else 1.0
        return np.clip(frame * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.integer):
        top = np.iinfo(frame.dtype).max
        return np.clip(frame.astype(np.float64) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    raise SegFlowError(f"{source}: frame {index} has unsupported dtype {frame.dtype}")


def read_image(path) -> np.ndarray:
    """One image file as an array, as stored (any layout and dtype; ``to_rgb_uint8`` normalises it)."""
    import imageio.v3 as iio

    try:
        return iio.imread(path)
    except Exception as error:  # imageio raises many types
        raise SegFlowError(f"{path}: cannot read this image ({error})") from error


#: frames read to find the intensity range of a video not stored as 8-bit (evenly spaced over it)
RANGE_SAMPLES = 16


class FrameStack:
    """A lazy (T, ...) stack indexed like a numpy array: subclasses give ``shape`` and read one frame in
    ``frame(index)``; only the frames asked for are read."""

    shape: tuple[int, ...]

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            out = self.frame(int(first))
            return out[rest] if rest else out
        indices = np.arange(self.shape[0])[first]
        stacked = np.stack([self.frame(int(i)) for i in np.atleast_1d(indices)])
        return stacked[(slice(None), *rest)] if rest else stacked

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array.astype(dtype) if dtype is not None else array


class VideoFrames(FrameStack):
    """A lazy (T, H, W, 3) uint8 video. Index it like a numpy array; only the frames asked for are read.

    ``names`` are per-frame stems (the file names for a folder of images, else 00000, 00001, ...). A video
    stored other than as 8-bit (16-bit microscopy, floats) is brought to 8 bits over one range for the whole
    video, so that it does not flicker: ``intensity_range`` (the values that become 0 and 255) when given, else
    the lowest and highest finite values of up to ``RANGE_SAMPLES`` evenly spaced frames, as napari shows such a
    video by default (a 12-bit camera's frames in 16-bit files would otherwise come out nearly black).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, source: str, count: int, height: int, width: int, names: Sequence[str] | None = None,
                 intensity_range: tuple[float, float] | None = None) -> None:
        if count == 0:
            raise SegFlowError(f"{source}: the video has no frames")
        self.source = source
        self.shape = (count, height, width, 3)
        self.names = list(names) if names is not None else [f"{i:05d}" for i in range(count)]
        self.intensity_range = None if intensity_range is None else tuple(float(v) for v in intensity_range)

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8."""
        count = self.shape[0]
        if not -count <= index < count:
            raise SegFlowError(f"{self.source}: frame index {index} is out of range (0..{count - 1})")
        index %= count
        raw = np.asarray(self._read(index))
        wide = raw.dtype not in (np.uint8, bool)
        frame = to_rgb_uint8(raw, self.source, index, self._video_range() if wide else None)
        if frame.shape != self.shape[1:]:
            raise SegFlowError(
                f"{self.source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the video is {self.shape[2]}x{self.shape[1]}"
            )
        return frame

    def _video_range(self) -> tuple[float, float]:
        if self.intensity_range is None:
            picks = np.linspace(0, self.shape[0] - 1, min(self.shape[0], RANGE_SAMPLES)).round().astype(int)
            lows, highs = [], []
            for t in picks:
                sample = np.asarray(self._read(int(t)))
                if sample.ndim == 3 and sample.shape[-1] == 4:  # alpha is not intensity
                    sample = sample[..., :3]
                if sample.dtype.kind == "f":
                    sample = sample[np.isfinite(sample)]
                if sample.size:
                    lows.append(sample.min())
                    highs.append(sample.max())
            self.intensity_range = (float(min(lows)), float(max(highs))) if lows else (0.0, 1.0)
        return self.intensity_range

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, shape={self.shape})"


class ArrayFrames(VideoFrames):
    """Frames from an in-memory or memory-mapped array (T, H, W[, C]); see VideoFrames for ``intensity_range``."""

    def __init__(self, array: np.ndarray, source: str = "array",
                 intensity_range: tuple[float, float] | None = None) -> None:
        if array.ndim not in (3, 4):
            raise SegFlowError(f"{source}: expected an array shaped (T, H, W) or (T, H, W, C), got {array.shape}")
        self.array = array
        super().__init__(source, array.shape[0], array.shape[1], array.shape[2], intensity_range=intensity_range)

    def _read(self, index: int) -> np.ndarray:
        frame = self.array[index]
        # a memory-mapped .npy is read-only, and torch warns on every tensor made from one: copy only that
        return frame if frame.flags.writeable else np.array(frame)


def is_frame_file(path: Path) -> bool:
    """An image of a folder of frames. Hidden files are not frames: macOS leaves a "._name.png" beside each image
    it copies, and writers leave a hidden temporary file while they write."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderFrames(VideoFrames):
    """Frames from a folder of images, in natural name order (frame2 before frame10)."""

    def __init__(self, folder: Path) -> None:
        files = sorted((p for p in folder.iterdir() if is_frame_file(p)), key=_natural_key)
        if not files:
            raise SegFlowError(f"{folder}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.files = files
        first = self._load(0)
        first = to_rgb_uint8(first, str(folder), 0)
        super().__init__(str(folder), len(files), first.shape[0], first.shape[1], [p.stem for p in files])
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Every image the first one's size, read from the files' headers: a stray image of another size would
        otherwise stop a run when propagation reaches it, after the fine-tune."""
        from PIL import Image

        height, width = self.shape[1:3]
        for index, path in enumerate(self.files[1:], start=1):
            try:
                with Image.open(path) as image:
                    size = image.size
            except (OSError, ValueError):  # a header PIL cannot read: decode the image instead
                frame = self._load(index)
                size = (frame.shape[1], frame.shape[0])
            if size != (width, height):
                raise SegFlowError(
                    f"{self.source}: {path.name} (frame {index}) is {size[0]}x{size[1]}, the first frame is "
                    f"{width}x{height}; every frame of a video must have one size"
                )

    def _load(self, index: int) -> np.ndarray:
        import imageio.v3 as iio

        path = self.files[index]
        try:
            return iio.imread(path)
        except Exception as error:  # imageio raises many types for damaged files
            raise SegFlowError(f"{path}: frame {index} cannot be read; the image is damaged ({error})") from error

    def _read(self, index: int) -> np.ndarray:
        return self._load(index)


class TiffStackFrames(VideoFrames):
    """Frames from a TIFF stack: one page per frame when it has several pages, else the first axis."""

    def __init__(self, path: Path) -> None:
        import tifffile

        try:
            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
        except Exception as error:
            raise SegFlowError(f"{path}: cannot read this TIFF file ({error})") from error
        self._lock = threading.Lock()
        self._pages = self._tiff.pages if len(self._tiff.pages) > 1 else None
        if self._pages is None:
            array = series.asarray()
            if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
                array = array[None]
            self._array = array
            count, height, width = array.shape[:3]
        else:
            first = self._pages[0].asarray()
            count, height, width = len(self._pages), first.shape[0], first.shape[1]
        super().__init__(str(path), count, height, width)

    def _read(self, index: int) -> np.ndarray:
        if self._pages is None:
            return self._array[index]
        with self._lock:
            try:
                return self._pages[index].asarray()
            except Exception as error:
                raise SegFlowError(f"{self.source}: frame {index} cannot be read ({error})") from error


class VideoFileFrames(VideoFrames):
    """Frames from a video file, decoded with PyAV. On opening, the packets are scanned (not decoded)
    to learn the exact frame count and each frame's timestamp; reading frame i seeks to the key frame
    before it and decodes forward, and reading the next frame just decodes on."""

    def __init__(self, path: Path) -> None:
        import av

        self._lock = threading.Lock()
        try:
            self._container = av.open(str(path))
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, UnicodeDecodeError) as error:
            raise SegFlowError(f"{path}: cannot open this video ({error})") from error
        self._stream = stream
        try:
            timestamps = sorted(p.pts for p in self._container.demux(stream) if p.pts is not None and p.size > 0)
        except av.error.FFmpegError as error:
            raise SegFlowError(f"{path}: the video is damaged ({error})") from error
        self._timestamps = timestamps
        self._position = None  # index of the frame the decoder yields next
        self._decoder = None
        if not timestamps:
            raise SegFlowError(f"{path}: the video has no frames")
        height, width = stream.codec_context.height, stream.codec_context.width
        super().__init__(str(path), len(timestamps), height, width)

    def _read(self, index: int) -> np.ndarray:
        import av

        with self._lock:
            try:
                if self._position != index:
                    self._container.seek(self._timestamps[index], stream=self._stream, backward=True)
                    self._decoder = self._container.decode(self._stream)
                for frame in self._decoder:
                    if frame.pts is None or frame.pts < self._timestamps[index]:
                        continue
                    self._position = index + 1
                    return frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as error:
                self._position = None
                raise SegFlowError(f"{self.source}: frame {index} cannot be decoded ({error})") from error
            self._position = None
            raise SegFlowError(f"{self.source}: frame {index} cannot be decoded (the file ends early)")


def open_video(source) -> VideoFrames:
    """Open a video file, a folder of frames, a TIFF stack, a .npy file or an array, lazily."""
    if isinstance(source, VideoFrames):
        return source
    if isinstance(source, np.ndarray):
        return ArrayFrames(source)
    path = Path(source)
    if not path.exists():
        raise SegFlowError(f"{path}: no such file or folder")
    if path.is_dir():
        return ImageFolderFrames(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return VideoFileFrames(path)
    if suffix in TIFF_SUFFIXES:
        return TiffStackFrames(path)
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise SegFlowError(f"{path}: cannot read this .npy file ({error})") from error
        return ArrayFrames(array, str(path))
    raise SegFlowError(
        f"{path}: unsupported video type {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES + TIFF_SUFFIXES)}, "
        ".npy or a folder of images"
    )


# -- labels -----------------------------------------------------------------------------------------


@functools.cache
def davis_palette() -> np.ndarray:
    """(256, 3) uint8, read-only: the PASCAL VOC / DAVIS colour map (bits of the index spread over R, G, B);
    made once, as every label image written uses it."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette.setflags(write=False)
    return palette


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def checked_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as uint8 ids, or a SegFlowError naming ``name`` when they are not whole numbers in 0..255."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise SegFlowError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        raise SegFlowError(f"{name}: label ids must lie in 0..{MAX_LABEL}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def write_label_png(labels: np.ndarray, path) -> None:
    """One (H, W) label image as an indexed PNG with the DAVIS palette."""
    from PIL import Image

    labels = checked_labels(labels, str(path))
    if labels.ndim != 2:
        raise SegFlowError(f"{path}: a label image must be 2-D, got shape {labels.shape}")
    image = Image.fromarray(labels, mode="P")
    image.putpalette(davis_palette().ravel().tolist())
    _atomic_write(Path(path), lambda p: image.save(p, format="PNG"))


def write_label_pngs(labels: np.ndarray, folder, names: Sequence[str] | None = None) -> list[Path]:
    """A (T, H, W) label stack as one indexed PNG per frame in ``folder``, named ``names`` or 00000.png..."""
    folder = Path(folder)
    labels = checked_labels(labels, str(folder))
    if labels.ndim != 3:
        raise SegFlowError(f"{folder}: a label stack must be (T, H, W), got shape {labels.shape}")
    names = list(names) if names is not None else [f"{t:05d}" for t in range(len(labels))]
    if len(names) != len(labels):
        raise SegFlowError(f"{folder}: {len(names)} names for {len(labels)} frames")
    paths = [folder / f"{name}.png" for name in names]
    for frame, path in zip(labels, paths):
        write_label_png(frame, path)
    return paths


def read_label_image(path) -> np.ndarray:
    """A label image as (H, W) uint8 ids. Indexed PNGs give their indices; a grey image holding only
    0 and 255 (DAVIS 2016 masks) gives 0/1; other grey images give their values; RGB images are matched
    to the DAVIS palette, and read as grey when they are not and their channels are equal."""
    import imageio.v3 as iio
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise SegFlowError(f"{path}: no such mask file")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                return np.asarray(image, dtype=np.uint8)
        array = np.asarray(iio.imread(path))
    except (OSError, ValueError) as error:
        raise SegFlowError(f"{path}: cannot read this mask ({error})") from error
    if array.ndim == 3:
        if array.shape[-1] == 4:
            array = array[..., :3]
        if array.shape[-1] == 1:
            array = array[..., 0]
    if array.ndim == 2:
        return _grey_labels(array, path)
    colours = array.reshape(-1, 3)
    palette = {tuple(c): i for i, c in enumerate(davis_palette().tolist())}
    unique, inverse = np.unique(colours, axis=0, return_inverse=True)
    ids = []
    for colour in unique.tolist():
        if tuple(colour) not in palette:
            if _channels_equal(array):  # grey saved as RGB, as many tools save a black-and-white mask
                return _grey_labels(array[..., 0], path)
            raise SegFlowError(
                f"{path}: colour {tuple(colour)} is not in the DAVIS palette; save the mask as an indexed PNG, or as "
                "a grey image (0 background, 1, 2, ... one id per object; or 0 and 255 for one object)"
            )
        ids.append(palette[tuple(colour)])
    return np.asarray(ids, np.uint8)[inverse.ravel()].reshape(array.shape[:2])


def _grey_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) grey values as ids: only 0 and 255 is one object (DAVIS 2016 masks), else the values."""
    if set(np.unique(array).tolist()) <= {0, 255}:
        return (array > 0).astype(np.uint8)
    return checked_labels(array, str(path))


def _channels_equal(array: np.ndarray) -> bool:
    """Whether an (H, W, 3) image is grey stored as RGB (as many tools save a black-and-white mask)."""
    return bool((array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all())


def mask_size(labels: np.ndarray) -> str:
    """A mask's size as an error message gives it: WxH, or its shape when it is not one (H, W) image."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return f"{labels.shape[1]}x{labels.shape[0]}"
    return f"shaped {tuple(labels.shape)}, not one (height, width) image"


def check_annotation(labels: np.ndarray, frame_shape: tuple[int, ...], name: str,
                     allow_empty: bool = False) -> np.ndarray:
    """An annotation for frames of ``frame_shape`` ((H, W) or (H, W, 3)) as (H, W) uint8, or a SegFlowError
    that names it: another size than the frames, no object (unless ``allow_empty``: one of several annotated
    frames may say that no object is there), ids outside 0..255."""
    labels = checked_labels(np.asarray(labels), name)
    if labels.shape != tuple(frame_shape[:2]):
        raise SegFlowError(f"{name}: the mask is {mask_size(labels)}, the frames are {frame_shape[1]}x{frame_shape[0]}")
    if not allow_empty and not labels.any():
        raise SegFlowError(f"{name}: the mask holds no object (every pixel is 0)")
    return labels


def read_annotation(path, frame_shape: tuple[int, ...], allow_empty: bool = False) -> np.ndarray:
    """Read a mask file (see read_label_image) and check it against the frames (see check_annotation)."""
    return check_annotation(read_label_image(path), frame_shape, str(path), allow_empty)


def write_label_tiff(labels: np.ndarray, path) -> None:
    """A (T, H, W) or (H, W) label stack as one uint8 TIFF."""
    import tifffile

    labels = checked_labels(labels, str(path))
    _atomic_write(Path(path), lambda p: tifffile.imwrite(p, labels, photometric="minisblack"))


# -- flow -------------------------------------------------------------------------------------------


def write_flo(flow: np.ndarray, path) -> None:
    """(H, W, 2) flow in pixels (x, y) as a Middlebury .flo file."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise SegFlowError(f"{path}: a flow field must be (H, W, 2), got shape {flow.shape}")

    def write(target: Path) -> None:
        with open(target, "wb") as handle:
            np.array([FLO_MAGIC], np.float32).tofile(handle)
            np.array([flow.shape[1], flow.shape[0]], np.int32).tofile(handle)
            flow.tofile(handle)

    _atomic_write(Path(path), write)


def read_flo(path) -> np.ndarray:
    """A Middlebury .flo file as (H, W, 2) float32."""
    path = Path(path)
    if not path.exists():
        raise SegFlowError(f"{path}: no such flow file")
    raw = path.read_bytes()
    if len(raw) < 12 or np.frombuffer(raw[:4], np.float32)[0] != FLO_MAGIC:
        raise SegFlowError(f"{path}: not a Middlebury .flo file (bad magic number)")
    width, height = np.frombuffer(raw[4:12], np.int32)
    expected = 12 + int(width) * int(height) * 8
    if width <= 0 or height <= 0 or len(raw) != expected:
        raise SegFlowError(f"{path}: truncated or damaged .flo file ({len(raw)} bytes, expected {expected})")
    return np.frombuffer(raw[12:], np.float32).reshape(int(height), int(width), 2).copy()


# -- arrays and text --------------------------------------------------------------------------------


def write_grey_png(values: np.ndarray, path) -> None:
    """An (H, W) map of values in [0, 1] as an 8-bit grey PNG, written beside the target and renamed into place."""
    from PIL import Image

    grey = np.clip(np.asarray(values, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    # the fastest zlib level: written once per propagated frame, where encoding time is frame rate
    _atomic_write(
        Path(path), lambda target: Image.fromarray(grey, mode="L").save(target, format="PNG", compress_level=1)
    )


def read_grey_png(path) -> np.ndarray:
    """An 8-bit grey PNG as (H, W) float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), np.float32) / 255


def write_text(text: str, path) -> None:
    """A text file, written beside the target and renamed into place."""
    _atomic_write(Path(path), lambda target: target.write_text(text))


def write_npy(array: np.ndarray, path) -> None:
    """One array as a .npy file, written beside the target and renamed into place."""
    _atomic_write(Path(path), lambda target: np.save(target, np.asarray(array), allow_pickle=False))


def read_npy(path) -> np.ndarray:
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SegFlowError(f"{path}: cannot read this array file ({error})") from error
