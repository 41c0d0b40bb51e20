"""napari reader: video files and folders of frames, opened lazily (frames decode when shown)."""

from __future__ import annotations

from pathlib import Path

from napari_segflow.data.io import VIDEO_SUFFIXES, is_frame_file, open_video
from napari_segflow.errors import SegFlowError

#: Layer metadata keys: the file or folder a video layer's frames come from, and their per-frame names
#: (the writers name label files after them).
VIDEO_SOURCE, FRAME_NAMES = "segflow_video", "frame_names"


def video_layer_data(path) -> tuple:
    """(frames, layer keyword arguments, "image") for a video file or a folder of frames."""
    path = Path(path)
    frames = open_video(path)
    name = path.stem if path.is_file() else path.name
    meta = {"name": name, "rgb": True, "contrast_limits": (0, 255),
            "metadata": {VIDEO_SOURCE: str(path.resolve()), FRAME_NAMES: frames.names}}
    return frames, meta, "image"


def _readable(path: Path) -> bool:
    if path.is_dir():
        return any(is_frame_file(p) for p in path.iterdir())
    return path.suffix.lower() in VIDEO_SUFFIXES


def get_reader(path):
    """The reader for ``path`` when it is one video file or one folder of frames, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not path.exists() or not _readable(path):
        return None
    return read_video


def read_video(path) -> list[tuple]:
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        return [video_layer_data(path)]
    except SegFlowError as error:
        # napari shows a reader's exception as a notification naming the file
        raise SegFlowError(f"napari-segflow cannot open {path}: {error}") from error
