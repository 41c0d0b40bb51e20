"""`segflow view`: napari with a video (the sample clip by default) and the SegFlow dock widget."""

from __future__ import annotations

import argparse
import os
import sys

from napari_segflow.errors import SegFlowError

PLUGIN, WIDGET = "napari-segflow", "SegFlow annotation"


def open_viewer(video: str | None = None, mask: str | None = None, frame: int = 0, session: str | None = None,
                show: bool = True):
    """A napari viewer holding ``video`` (the sample clip when None) and the dock widget; ``mask`` goes on
    frame ``frame`` of the annotation layer; ``session`` reopens a saved session instead."""
    import napari

    from napari_segflow.data.io import read_annotation

    viewer = napari.Viewer(title="napari-segflow", show=show)
    if session is None:
        if video is None:
            viewer.open_sample(PLUGIN, "bear")
        else:
            layer = viewer.open(video, plugin=PLUGIN)[0]
            if mask is not None:
                labels = viewer.add_labels(_zeros_for(layer), name="annotation")
                labels.data[frame] = read_annotation(mask, layer.data.shape[1:])
    viewer.dims.axis_labels = ("frame", "y", "x")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    if session is not None:
        widget.open_session(session)
    return viewer, widget


def _zeros_for(layer):
    import numpy as np

    return np.zeros(layer.data.shape[:3], np.uint8)


def run_view(args: argparse.Namespace) -> int:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SegFlowError(
            "no display: napari needs a screen (set DISPLAY, or run under tools/with_display.sh); "
            "`segflow demo` runs the same steps without one"
        )
    import napari

    open_viewer(args.video, args.mask, args.frame, args.session)
    napari.run()
    return 0
