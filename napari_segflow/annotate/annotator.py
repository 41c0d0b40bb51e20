"""Annotator: one viewer's annotation work — the video layer, the user's annotation layer, the
VideoSession behind them and the output layers, "segflow masks" and "segflow flow", and when asked for,
"segflow confidence" and "segflow flow arrows" (the frame on screen's flow as arrows).

Methods named for the GUI thread read and write layers; a ``Job`` runs on a worker thread and touches only
the session. The user's layers are never written: the annotation layer is read, the output layers are the
plugin's own (marked in their metadata), and a frame the user paints on "segflow masks" during a run keeps
the paint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from napari.layers import Image, Labels

from napari_segflow._reader import FRAME_NAMES, VIDEO_SOURCE, video_layer_data
from napari_segflow.annotate.flow_colours import FlowColours
from napari_segflow.annotate.overlays import ConfidenceFrames, flow_arrows
from napari_segflow.annotate.painted import PaintedFrames
from napari_segflow.annotate.progress import Meter, Update
from napari_segflow.data.io import ArrayFrames, VideoFrames
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.attention import frames_worth_a_look
from napari_segflow.inference.session import SessionSettings, VideoSession

#: Layer metadata key marking the plugin's own output layers (and which output each is).
OUTPUT = "segflow_output"
MASKS, FLOW = "segflow masks", "segflow flow"
CONFIDENCE, ARROWS = "segflow confidence", "segflow flow arrows"
ACTIONS = ("run", "finetune", "forward", "backward", "both")


@dataclass
class Job:
    """One button press: ``updates()`` (on a worker thread) runs the session's events and yields Updates;
    ``close()`` stops them between steps (the session keeps its state consistent)."""

    name: str
    events: Callable[[], Iterator]
    meter: Meter

    def __post_init__(self) -> None:
        self._running: Iterator | None = None

    def updates(self) -> Iterator[Update]:
        self._running = self.events()
        for event in self._running:
            yield self.meter.update(event)

    def close(self) -> None:
        if self._running is not None:
            self._running.close()


@dataclass
class OpenedSession:
    """A saved session opened off the GUI thread: the session, its video's layer data (None when it was made
    from an array: its video layer is already in the viewer) and its masks."""

    folder: Path
    session: VideoSession
    video_layer: tuple | None
    masks: np.ndarray


def read_session(folder, video=None, weights=None) -> OpenedSession:
    """Open the saved session in ``folder`` and read what its layers need; touches no layer, so a worker thread
    can run it (a long video's masks take seconds to read). ``video``: see ``Annotator.session_video``."""
    folder = Path(folder)
    session = VideoSession.open(folder, video=video, weights=weights)
    try:
        layer = video_layer_data(session.source) if video is None else None
        return OpenedSession(folder, session, layer, session.labels_volume())
    except BaseException:
        session.close()
        raise


def video_source(layer: Image):
    """What a session reads the layer's frames from: the file or folder the reader opened, else the data; data
    not stored as 8-bit is brought to 8 bits over the layer's contrast limits, so that the network sees the
    video as the user does."""
    if VIDEO_SOURCE in layer.metadata and Path(layer.metadata[VIDEO_SOURCE]).exists():
        return layer.metadata[VIDEO_SOURCE]
    return video_frames(layer)


def video_frames(layer: Image) -> VideoFrames:
    """The layer's frames as (H, W, 3) uint8, as the network takes them: the reader's own, else the data, brought
    over the layer's contrast limits when it is not stored as 8-bit."""
    if isinstance(layer.data, VideoFrames):
        return layer.data
    eight_bit = np.dtype(layer.data.dtype) == np.uint8
    return ArrayFrames(layer.data, source=layer.name,
                       intensity_range=None if eight_bit else tuple(layer.contrast_limits))


def check_video_layer(layer) -> tuple[int, int, int]:
    """(frames, height, width) of an Image layer that can be a video, else a SegFlowError naming it."""
    if not isinstance(layer, Image):
        raise SegFlowError(f"layer {getattr(layer, 'name', layer)!r} is not an Image layer; choose the video")
    if layer.multiscale:
        raise SegFlowError(f"layer {layer.name!r} is multiscale; open the video as a single-scale image")
    shape = tuple(layer.data.shape)
    expected = 4 if layer.rgb else 3
    if len(shape) != expected:
        kind = "(frames, height, width, colour)" if layer.rgb else "(frames, height, width)"
        raise SegFlowError(f"layer {layer.name!r} has shape {shape}; a video layer is {kind}")
    return shape[:3]


class Annotator:
    """The model behind the dock widget. ``weights`` and ``settings`` are those of the sessions it makes."""

    def __init__(self, viewer, weights=None, settings: SessionSettings = SessionSettings()) -> None:
        # napari hands a plugin's widget a proxy of the viewer, whose add_* return proxies of the new layers while
        # the layer list and its events hold the layers themselves; the annotator tells layers apart by identity
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.weights = weights
        self.settings = settings
        self.session: VideoSession | None = None
        self.video_layer: Image | None = None
        self.annotation_layer: Labels | None = None
        self.masks_layer: Labels | None = None
        self.flow_layer: Image | None = None
        self.confidence_layer: Image | None = None
        self.arrows_layer = None
        self.show_confidence = False
        self.show_arrows = False
        self.on_painted: Callable[[], None] | None = None
        self._annotation_paint: PaintedFrames | None = None
        self._masks_paint: PaintedFrames | None = None
        self._unread_annotation_frames: set[int] = set()
        self._shown_annotations: set[int] = set()
        #: each frame's attention score from the latest run over it (inference/attention.py)
        self.attention: dict[int, float] = {}

    # -- layers --------------------------------------------------------------------------------------

    def current_frame(self) -> int:
        return int(self.viewer.dims.current_step[0])

    def _is_output(self, layer) -> bool:
        return OUTPUT in layer.metadata

    def annotation_candidates(self, video_layer: Image) -> list[Labels]:
        """The Labels layers, not the plugin's outputs, with the video's frames and size."""
        shape = check_video_layer(video_layer)
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Labels) and not self._is_output(layer) and tuple(layer.data.shape) == shape]

    def use_video(self, layer: Image) -> None:
        """Work on this video layer: a new session for it (a video already in use is kept as it is)."""
        shape = check_video_layer(layer)
        if layer is self.video_layer:
            return
        self.close_session()
        self.video_layer = layer
        self.masks_layer = self.flow_layer = None
        if self.annotation_layer is not None and tuple(self.annotation_layer.data.shape) != shape:
            self._watch_annotation(None)

    def use_annotation(self, layer: Labels | None) -> Labels:
        """Read the user's masks from this Labels layer (None: the first that fits, or a new empty one)."""
        if self.video_layer is None:
            raise SegFlowError("choose the video layer first")
        shape = check_video_layer(self.video_layer)
        if layer is None:
            candidates = self.annotation_candidates(self.video_layer)
            if not candidates:
                return self.new_annotation()
            layer = candidates[0]
        if not isinstance(layer, Labels) or self._is_output(layer):
            raise SegFlowError(f"layer {layer.name!r} cannot hold the annotation; choose a Labels layer you painted")
        if tuple(layer.data.shape) != shape:
            raise SegFlowError(
                f"annotation layer {layer.name!r} is {tuple(layer.data.shape)}, "
                f"the video {self.video_layer.name!r} is {shape} (frames, height, width)"
            )
        if layer is not self.annotation_layer:
            self._watch_annotation(layer)
        return layer

    def new_annotation(self) -> Labels:
        """A new empty annotation layer sized to the video, in paint mode, and read from now on."""
        if self.video_layer is None:
            raise SegFlowError("choose the video layer first")
        layer = self.viewer.add_labels(np.zeros(check_video_layer(self.video_layer), np.uint8), name="annotation")
        layer.mode = "paint"
        self._watch_annotation(layer, scan=False)
        return layer

    def _watch_annotation(self, layer: Labels | None, scan: bool = True) -> None:
        """Read the user's masks from ``layer`` from now on; ``scan``: also take the frames it already holds
        (not needed for a layer the annotator made, empty or filled from the session)."""
        if self._annotation_paint is not None:
            self._annotation_paint.disconnect()
            self._annotation_paint = None
        self.annotation_layer = layer
        self._unread_annotation_frames = set()
        self._remember_shown_annotations()
        if layer is not None:
            self._annotation_paint = PaintedFrames(layer, self.current_frame, self._painted)
        if layer is not None and scan:
            data = np.asarray(layer.data)
            self._unread_annotation_frames = {int(t) for t in np.flatnonzero(data.reshape(len(data), -1).any(1))}

    def _painted(self) -> None:
        if self.on_painted is not None:
            self.on_painted()

    def _ensure_session(self) -> VideoSession:
        if self.video_layer is None:
            raise SegFlowError("choose the video layer first")
        if self.session is None:
            self.session = VideoSession(video_source(self.video_layer), weights=self.weights, settings=self.settings)
        return self.session

    def _ensure_outputs(self, masks: np.ndarray | None = None) -> None:
        """The output layers, made when missing; ``masks``: the session's labels volume when already read."""
        session = self.session
        if self.masks_layer is None or self.masks_layer not in self.viewer.layers:
            self.masks_layer = self.viewer.add_labels(
                session.labels_volume() if masks is None else masks, name=MASKS,
                metadata={OUTPUT: "masks", FRAME_NAMES: session.frames.names},
            )
            if self._masks_paint is not None:
                self._masks_paint.disconnect()
            self._masks_paint = PaintedFrames(self.masks_layer, self.current_frame, self._painted)
        if self.flow_layer is None or self.flow_layer not in self.viewer.layers:
            self.flow_layer = self.viewer.add_image(
                FlowColours(session), name=FLOW, rgb=True, contrast_limits=(0, 255), visible=False,
                metadata={OUTPUT: "flow"},
            )
            # the flow sits under the masks so that both can be seen at once
            self.viewer.layers.move(
                self.viewer.layers.index(self.flow_layer), self.viewer.layers.index(self.masks_layer)
            )
        self._ensure_overlays()

    def set_overlays(self, confidence: bool, arrows: bool) -> None:
        """Show or hide the optional layers: "segflow confidence" and "segflow flow arrows" (made once a
        session exists; removed when turned off)."""
        self.show_confidence, self.show_arrows = confidence, arrows
        self._ensure_overlays()

    def _ensure_overlays(self) -> None:
        layers = self.viewer.layers
        if not self.show_confidence and self.confidence_layer is not None:
            if self.confidence_layer in layers:
                layers.remove(self.confidence_layer)
            self.confidence_layer = None
        if not self.show_arrows and self.arrows_layer is not None:
            if self.arrows_layer in layers:
                layers.remove(self.arrows_layer)
            self.arrows_layer = None
        if self.session is None:
            return
        if self.show_confidence and (self.confidence_layer is None or self.confidence_layer not in layers):
            self.confidence_layer = self.viewer.add_image(
                ConfidenceFrames(self.session), name=CONFIDENCE, colormap="magma", contrast_limits=(0, 1),
                opacity=0.6, metadata={OUTPUT: "confidence"},
            )
        if self.show_arrows and (self.arrows_layer is None or self.arrows_layer not in layers):
            self.arrows_layer = self.viewer.add_vectors(
                flow_arrows(self.session.flow(self.current_frame())), name=ARROWS, edge_color="yellow",
                edge_width=1.5, length=1.0, metadata={OUTPUT: "arrows"},
            )

    def show_frame(self, index: int) -> None:
        """The frame on screen changed: the arrows follow it (the lazy layers read it themselves)."""
        if self.arrows_layer is not None and self.session is not None:
            self.arrows_layer.data = flow_arrows(self.session.flow(index))

    # -- the user's frames ---------------------------------------------------------------------------

    def user_frames(self) -> list[int]:
        """The frames the user made: annotations the session has, and frames painted since."""
        frames = set(self.session.annotations) if self.session is not None else set()
        frames |= self._unread_annotation_frames
        for tracker in (self._annotation_paint, self._masks_paint):
            if tracker is not None:
                frames |= tracker.frames
        return sorted(frames)

    def _painted_annotations(self) -> tuple[dict[int, np.ndarray], list[int]]:
        """What the user changed since the last job: frames whose labels differ from what the session holds, and
        annotations erased whole on the annotation layer (taken back: those frames are propagated again). A
        frame erased whole on "segflow masks" is kept as painted: no object there."""
        session = self.session
        found: dict[int, np.ndarray] = {}
        removed: list[int] = []
        painted = self._annotation_paint.frames if self._annotation_paint is not None else set()
        for t in sorted(self._unread_annotation_frames | painted):
            labels = np.asarray(self.annotation_layer.data[t])
            if labels.any():
                if not _same(labels, session.annotations.get(t)):
                    found[t] = labels.copy()
            elif t in self._shown_annotations:  # not one made on "segflow masks", which this layer never showed
                removed.append(t)
        if self._masks_paint is not None:
            for t in sorted(self._masks_paint.frames):
                labels = np.asarray(self.masks_layer.data[t])
                if not _same(labels, session.labels(t)):
                    found[t] = labels.copy()
        return found, [t for t in removed if t not in found]

    def _remember_shown_annotations(self) -> None:
        """Which of the session's annotations the annotation layer shows: erasing one of those whole takes it
        back; a frame the user made on "segflow masks" is empty there, and painting and erasing it changes
        nothing."""
        layer, session = self.annotation_layer, self.session
        self._shown_annotations = set() if layer is None or session is None else {
            t for t in session.annotations if np.asarray(layer.data[t]).any()}

    def _take_annotations(self) -> None:
        """Give the session what the user painted and erased; all or nothing."""
        painted, removed = self._painted_annotations()
        if painted or removed:
            self.session.change_annotations(painted, removed)
        self._unread_annotation_frames = set()
        self._remember_shown_annotations()
        for tracker in (self._annotation_paint, self._masks_paint):
            if tracker is not None:
                tracker.take()
        if self.masks_layer is not None:
            for t in [*painted, *removed]:
                self.masks_layer.data[t] = self.session.labels(t)
            if painted or removed:
                self.masks_layer.refresh()

    # -- jobs ----------------------------------------------------------------------------------------

    def job(self, action: str) -> Job:
        """On the GUI thread: take the painted frames into the session and plan ``action`` — ``run`` (the
        one button: fine-tune if needed, then propagate what changed), ``finetune``, or propagate
        ``forward``, ``backward`` or ``both`` from the current frame. Errors leave every layer as it was."""
        if action not in ACTIONS:
            raise SegFlowError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        if self.annotation_layer is None:
            self.use_annotation(None)
        session = self._ensure_session()
        self._take_annotations()
        if not session.annotations:
            raise SegFlowError(
                f"no mask to learn from: paint the object on a frame of {self.annotation_layer.name!r} first"
            )
        self._ensure_outputs()
        budget = session.next_finetune().time_budget
        count = len(session)
        if action == "run":
            return Job(action, session.run, Meter(session.pending_results, budget))
        if action == "finetune":
            return Job(action, session.finetune, Meter(0, budget))
        start = self.current_frame()
        frames = {"forward": count - start, "backward": start + 1, "both": count}[action] * self.settings.sweeps

        def events():
            if session.needs_finetune:
                yield from session.finetune()
            yield from session.propagate(start, action)

        return Job(action, events, Meter(frames, budget))

    def show(self, update: Update) -> None:
        """On the GUI thread: put a frame's result into "segflow masks" (unless the user painted that frame
        during the run) and refresh the flow when it is the frame on screen."""
        result = update.result
        if result is None or self.masks_layer is None:
            return
        index = result.index
        self.attention[index] = result.attention
        painted = self._masks_paint.frames if self._masks_paint is not None else set()
        if index not in painted:
            self.masks_layer.data[index] = result.labels
            if index == self.current_frame():
                self.masks_layer.refresh()
        if index == self.current_frame():
            for layer in (self.flow_layer, self.confidence_layer):
                if layer is not None and layer.visible:
                    layer.refresh()
            self.show_frame(index)

    def worth_a_look(self, count: int = 5) -> list[int]:
        """The frames most worth repainting next, best first (inference/attention.py's ``frames_worth_a_look``:
        where a correction would take the most doubt off the video); none before a run."""
        if self.session is None or not self.attention:
            return []
        return frames_worth_a_look(self.attention, self.user_frames(), len(self.session), count)

    def check_undo(self) -> None:
        """A SegFlowError when there is nothing to undo."""
        if self.session is None or not self.session.can_undo:
            raise SegFlowError("nothing to undo")

    def undo_in_session(self) -> dict[int, np.ndarray | None]:
        """Take back the session's newest change (a worker thread may run it: it touches no layer): each frame
        whose masks came back, with its labels now (None: no result there any more)."""
        self.check_undo()
        return {t: self.session.labels(t) for t in self.session.undo()}

    def show_undone(self, restored: dict[int, np.ndarray | None]) -> None:
        """On the GUI thread: the layers and the scores show what ``undo_in_session`` brought back."""
        self.attention = dict(self.session.attention)  # the worker has ended: nothing writes them now
        if self.masks_layer is not None:
            for t, labels in restored.items():
                self.masks_layer.data[t] = labels if labels is not None else 0
            self.masks_layer.refresh()
        if self.flow_layer is not None:
            self.flow_layer.refresh()

    # -- settings, saving and opening ----------------------------------------------------------------

    def configure(self, settings: SessionSettings) -> None:
        if self.session is not None:
            self.session.reconfigure(settings)
        self.settings = settings

    def check_save(self, folder) -> None:
        """A SegFlowError when ``save(folder)`` cannot be done: no session yet, or a folder neither new nor empty."""
        if self.session is None:
            raise SegFlowError("nothing to save yet: fine-tune or propagate first")
        self.session.check_save_folder(folder)

    def save(self, folder) -> None:
        """Keep the session in ``folder`` (new or empty) from now on (a worker thread may run it: it copies the
        session's files and touches no layer)."""
        self.check_save(folder)
        self.session.save_as(folder)

    def session_video(self, folder):
        """On the GUI thread: the video a saved session in ``folder`` reopens with (None: the file it recorded;
        a session made from an array takes the chosen video layer's frames), or a SegFlowError."""
        if VideoSession.peek(folder)["video"] is not None:
            return None
        if self.video_layer is None:
            raise SegFlowError(f"{folder}: the session was made from an array; choose its video layer first")
        return video_source(self.video_layer)

    def adopt(self, opened: OpenedSession) -> None:
        """On the GUI thread: work on a session ``read_session`` opened; its layers join the viewer."""
        session = opened.session
        self.close_session()
        self.session = session
        self.settings = session.settings
        self.attention = dict(session.attention)  # the timeline and the frames worth a look, as they were
        self.masks_layer = self.flow_layer = self.confidence_layer = self.arrows_layer = None
        if opened.video_layer is not None:
            data, meta, _ = opened.video_layer
            # chosen before it joins the viewer: the widget, told of a new video layer, would start afresh on it
            self.video_layer = Image(data, **meta)
            self.viewer.add_layer(self.video_layer)
        annotations = np.zeros(session.frames.shape[:3], np.uint8)
        for t, labels in session.annotations.items():
            annotations[t] = labels
        layer = self.viewer.add_labels(annotations, name=f"annotation ({opened.folder.name})")
        self._watch_annotation(layer, scan=False)
        self._ensure_outputs(opened.masks)

    def close_session(self) -> None:
        self.attention = {}
        if self._masks_paint is not None:
            self._masks_paint.disconnect()
            self._masks_paint = None
        if self.session is not None:
            self.session.close()
            self.session = None


def _same(labels: np.ndarray, other: np.ndarray | None) -> bool:
    return other is not None and labels.shape == other.shape and np.array_equal(labels, other)
