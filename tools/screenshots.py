"""Screenshots for the README, taken from a real napari viewer (run under tools/with_display.sh):

    tools/with_display.sh .venv/bin/python tools/screenshots.py [--out docs]

The sample clip, the shipped weights and the widget's default settings: one press of "Fine-tune &
propagate", then the viewer at frame 40 with the masks, and again with the flow layer shown; then a box drawn
around the bear on frame 70 (the run's mask there, grown by a few pixels, as a user would draw it) and "Make
mask": the box and the mask it made on the annotation layer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.annotate.annotator import FLOW, MASKS
from napari_segflow.cli.view import open_viewer


def wait_for(widget, limit: float = 600.0) -> None:
    started = time.perf_counter()
    while widget.worker is not None:
        if time.perf_counter() - started > limit:
            raise TimeoutError("the run did not end in time")
        QApplication.processEvents()
        time.sleep(0.02)


def dismiss_notifications(viewer) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--frame", type=int, default=40)
    parser.add_argument("--box-frame", type=int, default=70)
    args = parser.parse_args()
    out = Path(args.out)
    viewer, widget = open_viewer()
    viewer.window._qt_window.resize(1500, 900)
    started = time.perf_counter()
    widget.start("run")
    wait_for(widget)
    print(f"run: {time.perf_counter() - started:.1f} s; {widget.status.text()}")
    viewer.dims.set_current_step(0, args.frame)
    viewer.layers[MASKS].opacity = 0.6
    viewer.layers.selection.active = viewer.layers[MASKS]
    dismiss_notifications(viewer)
    viewer.screenshot(str(out / "napari_widget.png"), canvas_only=False, flash=False)
    viewer.layers[FLOW].visible = True
    viewer.layers[MASKS].visible = False
    viewer.layers["annotation"].visible = False
    viewer.layers.selection.active = viewer.layers[FLOW]
    QApplication.processEvents()
    viewer.screenshot(str(out / "napari_flow.png"), canvas_only=False, flash=False)
    box_shot(viewer, widget, args.box_frame, out / "napari_box.png")
    widget.annotator.close_session()
    viewer.close()


def box_shot(viewer, widget, frame: int, path: Path, margin: int = 6) -> None:
    ys, xs = np.nonzero(np.asarray(viewer.layers[MASKS].data[frame]))
    y0, x0 = max(0, ys.min() - margin), max(0, xs.min() - margin)
    y1, x1 = ys.max() + 1 + margin, xs.max() + 1 + margin
    viewer.dims.set_current_step(0, frame)
    viewer.layers[FLOW].visible = False
    viewer.layers["annotation"].visible = True
    layer = widget.first_mask.box_layer()
    layer.add_rectangles(np.array([[frame, y0, x0], [frame, y0, x1], [frame, y1, x1], [frame, y1, x0]], float))
    started = time.perf_counter()
    widget.make_first_mask()
    wait_for(widget)
    print(f"box -> mask: {time.perf_counter() - started:.1f} s; {widget.status.text()}")
    layer.mode = "pan_zoom"
    viewer.layers.selection.active = viewer.layers["annotation"]
    dismiss_notifications(viewer)
    viewer.screenshot(str(path), canvas_only=False, flash=False)


if __name__ == "__main__":
    main()
