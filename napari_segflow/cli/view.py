"""`segflow view`: napari with a video (the sample clip by default) and the SegFlow dock widget."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_segflow.errors import SegFlowError

PLUGIN, WIDGET = "napari-segflow", "SegFlow annotation"


def open_viewer(video: str | None = None, mask: str | None = None, frame: int | None = None,
                session: str | None = None, show: bool = True):
    """A napari viewer holding ``video`` (the sample clip when None) and the dock widget; ``mask`` goes on
    frame ``frame`` (default 0) of the annotation layer; ``session`` reopens a saved session instead. The
    inputs are checked before the window opens (SegFlowError naming the argument)."""
    import napari
    import numpy as np

    video_layer, annotation = checked_view_inputs(video, mask, frame, session)
    viewer = napari.Viewer(title="napari-segflow", show=show)
    if video_layer is not None:
        frames, options, _ = video_layer
        viewer.add_image(frames, **options)
        if annotation is not None:
            labels = viewer.add_labels(np.zeros(frames.shape[:3], np.uint8), name="annotation")
            labels.data[frame or 0] = annotation
    elif session is None:
        viewer.open_sample(PLUGIN, "bear")
    viewer.dims.axis_labels = ("frame", "y", "x")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    if session is not None:
        widget.open_session(session)
    return viewer, widget


def checked_view_inputs(video: str | None, mask: str | None, frame: int | None, session: str | None):
    """(the video layer's data as the plugin's reader gives it, or None; the annotation of ``frame``, or None).
    The video is opened by the plugin's own reader, so every input `segflow propagate` takes opens here too
    (TIFF stacks and .npy arrays, which napari's reader choice leaves to its built-in reader)."""
    from napari_segflow._reader import video_layer_data
    from napari_segflow.cli.video import annotated_frames
    from napari_segflow.data.io import read_annotation
    from napari_segflow.inference.session import SESSION_FILE, VideoSession

    if session is not None:
        if video is not None or mask is not None:
            raise SegFlowError("--session: a saved session brings its own video and masks; give it without VIDEO "
                               "and --mask")
        if not (Path(session) / SESSION_FILE).is_file():
            raise SegFlowError(f"--session {session}: no saved session there (no {SESSION_FILE}); name a folder "
                               "the widget's Save session or `segflow propagate --session` wrote")
        try:
            video_path = VideoSession.peek(session)["video"]
        except SegFlowError as error:
            raise SegFlowError(f"--session {session}: {error}") from error
        if video_path is None:
            raise SegFlowError(f"--session {session}: the session was made from an array in Python and names no "
                               "video file; open it in napari with its video layer chosen (the widget's Open session)")
        if not Path(video_path).exists():
            raise SegFlowError(f"--session {session}: its video {video_path} is no longer there (a session refers to "
                               "its video, it keeps no copy); put the video back there")
        return None, None
    if mask is None:
        if frame is not None:
            raise SegFlowError("--frame: it names the frame of a --mask; give the --mask too")
        return (video_layer_data(video) if video is not None else None), None
    if video is None:
        raise SegFlowError("--mask: give the VIDEO it belongs to (the sample clip opens with its own mask)")
    video_layer = video_layer_data(video)
    annotated_frames([mask], None if frame is None else [frame], len(video_layer[0]))
    try:
        annotation = read_annotation(mask, video_layer[0].shape[1:3])
    except SegFlowError as error:
        raise SegFlowError(f"--mask {mask}: {error}") from error
    return video_layer, annotation


def run_view(args: argparse.Namespace) -> int:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SegFlowError(
            "no display: napari needs a screen (set DISPLAY, or run under tools/with_display.sh); "
            "`segflow demo` runs the same steps without one"
        )
    try:
        import qtpy  # noqa: F401
    except ImportError as error:  # no Qt binding: napari cannot make a window
        raise SegFlowError(
            "napari needs a Qt binding to show its window: pip install 'napari-segflow[pyqt5]' (or PyQt5); "
            "`segflow demo` runs the same steps without one"
        ) from error
    import napari

    open_viewer(args.video, args.mask, args.frame, args.session)
    napari.run()
    return 0
