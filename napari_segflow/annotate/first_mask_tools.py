"""A first mask from a box or strokes in the viewer: the "segflow box" Shapes layer (rectangles) and the "segflow
strokes" Labels layer (1: object, 2: background) are read on the frame on screen, the mask is made on a worker
thread (inference/first_mask.py), and written onto the annotation layer as one paint the user can undo (Ctrl-Z)
or touch up. A bad box or strokes of one kind leave the annotation layer as it was."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Labels, Shapes

from napari_segflow.annotate.annotator import OUTPUT, Annotator, video_frames
from napari_segflow.checkpoint import SHIPPED_WEIGHTS, load_checkpoint
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.first_mask import Box, first_mask, neighbour_index
from napari_segflow.model.segflow import SegFlowNet

BOX_LAYER, STROKES_LAYER = "segflow box", "segflow strokes"
OBJECT_STROKE, BACKGROUND_STROKE = 1, 2


@dataclass(frozen=True)
class FirstMaskRequest:
    """What the GUI thread read for one press: the frame, its image, the box and the strokes (or None), and a
    neighbouring frame's image whose motion helps (None in a one-frame video)."""

    frame: int
    image: np.ndarray
    box: Box | None
    foreground: np.ndarray | None
    background: np.ndarray | None
    neighbour: np.ndarray | None = None


class FirstMaskTools:
    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.viewer = annotator.viewer
        self._net = None

    def _tool_layer(self, kind: str):
        for layer in self.viewer.layers:
            if layer.metadata.get(OUTPUT) == kind:
                return layer
        return None

    def box_layer(self) -> Shapes:
        """The "segflow box" layer (made on first use), selected, in rectangle mode."""
        layer = self._tool_layer("box")
        if layer is None:
            layer = self.viewer.add_shapes(ndim=3, name=BOX_LAYER, edge_color="yellow", edge_width=2,
                                           face_color="transparent", metadata={OUTPUT: "box"})
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def strokes_layer(self) -> Labels:
        """The "segflow strokes" layer sized to the video (made on first use), selected, painting object strokes."""
        video = self.annotator.video_layer
        if video is None:
            raise SegFlowError("choose the video layer first")
        layer = self._tool_layer("strokes")
        shape = tuple(video.data.shape[:3])
        if layer is None or tuple(layer.data.shape) != shape:
            if layer is not None:
                self.viewer.layers.remove(layer)
            layer = self.viewer.add_labels(np.zeros(shape, np.uint8), name=STROKES_LAYER, opacity=0.8,
                                           metadata={OUTPUT: "strokes"})
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        layer.selected_label = OBJECT_STROKE
        return layer

    def request(self) -> FirstMaskRequest:
        """On the GUI thread: read the box and the strokes of the frame on screen; an error if there are none."""
        video = self.annotator.video_layer
        if video is None:
            raise SegFlowError("choose the video layer first")
        frame = self.annotator.current_frame()
        frames = video_frames(video)  # 8-bit colour, as the session sees the video
        image = frames[frame]
        box = self._box(frame)
        foreground = background = None
        strokes = self._tool_layer("strokes")
        if strokes is not None and tuple(strokes.data.shape[:3]) == tuple(video.data.shape[:3]):
            painted = np.asarray(strokes.data[frame])
            foreground, background = painted == OBJECT_STROKE, painted == BACKGROUND_STROKE
        if (
            box is None
            and (foreground is None or not foreground.any())
            and (background is None or not background.any())
        ):
            raise SegFlowError(f"frame {frame} has no box and no strokes: draw a box around the object on "
                               f"{BOX_LAYER!r} (or paint strokes on {STROKES_LAYER!r}) first")
        neighbour = neighbour_index(frame, video.data.shape[0])
        return FirstMaskRequest(frame, image, box, foreground, background,
                                None if neighbour is None else frames[neighbour])

    def _box(self, frame: int) -> Box | None:
        """The last rectangle drawn on ``frame`` (or on every frame, in a 2D Shapes layer)."""
        layer = self._tool_layer("box")
        if layer is None:
            return None
        for corners, kind in zip(reversed(layer.data), reversed(layer.shape_type)):
            corners = np.asarray(corners)
            if kind != "rectangle" or (corners.shape[1] == 3 and round(corners[0, 0]) != frame):
                continue
            ys, xs = corners[:, -2], corners[:, -1]
            return Box(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        return None

    def make(self, request: FirstMaskRequest) -> np.ndarray:
        """On a worker thread: the mask (H, W) bool. The shipped generic network helps inside a box."""
        if self._net is None:
            weights = self.annotator.weights
            self._net = weights if isinstance(weights, SegFlowNet) else load_checkpoint(weights or SHIPPED_WEIGHTS)[0]
        mask = first_mask(request.image, request.box, request.foreground, request.background, net=self._net,
                          long_side=self.annotator.settings.long_side, neighbour=request.neighbour)
        if not mask.any():
            raise SegFlowError(f"frame {request.frame}: no object found; draw the box around it or add object strokes")
        return mask

    def apply(self, request: FirstMaskRequest, mask: np.ndarray) -> Labels:
        """On the GUI thread: the mask becomes the annotation layer's selected label on that frame (that label's
        other pixels there are cleared, other objects kept), as one undoable paint."""
        annotator = self.annotator
        layer = annotator.annotation_layer or annotator.use_annotation(None)
        label = max(int(layer.selected_label), 1)
        old = np.asarray(layer.data[request.frame])
        new = np.where(mask, label, np.where(old == label, 0, old)).astype(old.dtype)
        rows, columns = np.nonzero(new != old)
        layer.data_setitem((np.full(rows.shape, request.frame), rows, columns), new[rows, columns])
        return layer
