"""The dock widget: choose the video and the annotation, press a button, watch the masks fill in.

Everything it does is forwarded to ``Annotator``; long work runs in a napari worker thread whose updates
come back to the GUI thread, where the layers are written.
"""

from __future__ import annotations

import time
from dataclasses import replace

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_segflow._qt.timeline import AttentionTimeline
from napari_segflow.annotate.annotator import OUTPUT, Annotator, read_session
from napari_segflow.annotate.first_mask_tools import FirstMaskTools
from napari_segflow.annotate.progress import FINETUNE
from napari_segflow.device import DEVICE_CHOICES
from napari_segflow.errors import SegFlowError

#: (action, button text, key, what it does): the keys are bound on the viewer while the widget is open.
ACTIONS = (
    ("run", "Fine-tune && propagate", "Alt-R",
     "Learn from every painted frame, then propagate what changed over the frames nearest to it"),
    ("finetune", "Fine-tune", "Alt-T", "Fine-tune on the painted frames only"),
    ("backward", "◀ Backward", "Alt-Left", "Propagate from the current frame to the first"),
    ("both", "◀ Both ▶", "Alt-B", "Propagate from the current frame both ways"),
    ("forward", "Forward ▶", "Alt-Right", "Propagate from the current frame to the last"),
)
CANCEL_KEY, UNDO_KEY = "Alt-C", "Alt-Z"
FOLLOW_INTERVAL = 0.1  # seconds between frames shown while a job writes them


class SegFlowWidget(QWidget):
    def __init__(self, napari_viewer, annotator: Annotator | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.annotator = annotator or Annotator(napari_viewer)
        self.annotator.on_painted = self._show_user_frames
        self.first_mask = FirstMaskTools(self.annotator)
        self.worker = None
        self.job = None
        self._bars: dict[str, progress] = {}
        self._updating = False
        self._cancelled = self._failed = False
        self._failure = ""
        self._followed_at = 0.0

        self.video_box = QComboBox(toolTip="The video (an Image layer: frames, height, width[, colour])")
        self.annotation_box = QComboBox(toolTip="The Labels layer you paint the objects on")
        self.new_annotation = QPushButton("New", toolTip="A new empty annotation layer sized to the video")
        self.device_box = QComboBox(toolTip="Where the network runs; auto picks a GPU when there is one")
        self.device_box.addItems(list(DEVICE_CHOICES))
        self.budget = QDoubleSpinBox(minimum=1, maximum=3600, decimals=0, suffix=" s",
                                     toolTip="The first fine-tune stops after this long (or its step count)")
        self.long_side = QSpinBox(minimum=128, maximum=2048, singleStep=64, suffix=" px",
                                  toolTip="The network works at this long side; smaller is faster and uses less memory")
        self.two_way = QCheckBox("Two-way memory", toolTip="A second, backward sweep of the ConvGRU memory")
        self.follow = QCheckBox("Show the frame being written", checked=True)
        self.confidence = QCheckBox("Confidence layer", toolTip="How sure the network is of each pixel (dark: unsure)")
        self.arrows = QCheckBox("Flow arrows layer", toolTip="The flow of the frame on screen as arrows on a grid")
        for box in (self.confidence, self.arrows):
            box.toggled.connect(self._show_overlays)
        self._show_settings()

        self.buttons: dict[str, QPushButton] = {}
        for action, text, key, tip in ACTIONS:
            button = QPushButton(text, toolTip=f"{tip} [{key}]")
            button.clicked.connect(lambda _=False, a=action: self.start(a))
            self.buttons[action] = button
        self.cancel_button = QPushButton(
            "Cancel", toolTip=f"Stop after the current step; what is done is kept [{CANCEL_KEY}]"
        )
        self.cancel_button.clicked.connect(self.cancel)
        self.undo_button = QPushButton(
            "Undo", toolTip=f"Take back the last run: masks and weights as before [{UNDO_KEY}]"
        )
        self.undo_button.clicked.connect(self.undo)
        self.save_button = QPushButton("Save session…", toolTip="Keep the session (masks, flow, weights) in a folder")
        self.save_button.clicked.connect(lambda: self.save_session())
        self.open_button = QPushButton("Open session…", toolTip="Reopen a saved session")
        self.open_button.clicked.connect(lambda: self.open_session())

        self.box_button = QPushButton("Box", toolTip="Draw a rectangle around the object on the frame on screen")
        self.box_button.clicked.connect(self._draw_box)
        self.strokes_button = QPushButton(
            "Strokes", toolTip="Paint strokes: label 1 on the object, 2 on the background"
        )
        self.strokes_button.clicked.connect(self._paint_strokes)
        self.make_mask_button = QPushButton("Make mask", toolTip="The frame's mask from its box and strokes, onto "
                                                                 "the annotation layer (Ctrl-Z takes it back)")
        self.make_mask_button.clicked.connect(self.make_first_mask)

        self.bar = QProgressBar(textVisible=False)
        self.status = QLabel("Paint the object on a frame, then press Fine-tune & propagate.", wordWrap=True)
        self.user_frames = QListWidget(toolTip="Frames you painted: never overwritten. Click one to go there.")
        self.user_frames.setMaximumHeight(110)
        self.user_frames.itemClicked.connect(self._go_to_frame)
        self.timeline = AttentionTimeline()
        self.timeline.frame_clicked.connect(lambda frame: self.viewer.dims.set_current_step(0, frame))
        self.worth_a_look = QListWidget(toolTip="Frames to repaint next, best first: a correction there takes the "
                                                "most doubt off the video. Click one to go there.")
        self.worth_a_look.setMaximumHeight(110)
        self.worth_a_look.itemClicked.connect(self._go_to_frame)

        self._lay_out()
        self.video_box.currentIndexChanged.connect(self._video_chosen)
        self.annotation_box.currentIndexChanged.connect(self._annotation_chosen)
        self.new_annotation.clicked.connect(self._new_annotation)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._show_current_frame)
        self._bind_keys()
        self._refresh_layers()
        self._set_running(False)

    # -- layout --------------------------------------------------------------------------------------

    def _lay_out(self) -> None:
        layers = QFormLayout()
        layers.addRow("Video", self.video_box)
        row = QHBoxLayout()
        row.addWidget(self.annotation_box, 1)
        row.addWidget(self.new_annotation)
        layers.addRow("Annotation", row)
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        form.addRow("Device", self.device_box)
        form.addRow("Fine-tune budget", self.budget)
        form.addRow("Working size", self.long_side)
        form.addRow(self.two_way)
        form.addRow(self.follow)
        form.addRow(self.confidence)
        form.addRow(self.arrows)
        first = QGroupBox("First mask from a box or strokes")
        first_row = QHBoxLayout(first)
        for button in (self.box_button, self.strokes_button, self.make_mask_button):
            first_row.addWidget(button)
        grid = QGridLayout()
        grid.addWidget(self.buttons["run"], 0, 0, 1, 3)
        grid.addWidget(self.buttons["finetune"], 1, 0, 1, 3)
        grid.addWidget(self.buttons["backward"], 2, 0)
        grid.addWidget(self.buttons["both"], 2, 1)
        grid.addWidget(self.buttons["forward"], 2, 2)
        grid.addWidget(self.cancel_button, 3, 0, 1, 2)
        grid.addWidget(self.undo_button, 3, 2)
        sessions = QHBoxLayout()
        sessions.addWidget(self.save_button)
        sessions.addWidget(self.open_button)
        outer = QVBoxLayout(self)
        outer.addLayout(layers)
        outer.addWidget(settings)
        outer.addWidget(first)
        outer.addLayout(grid)
        outer.addWidget(self.bar)
        outer.addWidget(self.status)
        outer.addWidget(QLabel("Your frames:"))
        outer.addWidget(self.user_frames)
        outer.addWidget(QLabel("Where to look (attention per frame):"))
        outer.addWidget(self.timeline)
        outer.addWidget(self.worth_a_look)
        outer.addLayout(sessions)
        outer.addStretch(1)

    def _show_settings(self) -> None:
        settings = self.annotator.settings
        self.device_box.setCurrentText(settings.device)
        self.budget.setValue(settings.finetune.time_budget or 0)
        self.long_side.setValue(settings.long_side)
        self.two_way.setChecked(settings.bidirectional)

    def settings(self):
        current = self.annotator.settings
        return replace(
            current, device=self.device_box.currentText(), long_side=self.long_side.value(),
            bidirectional=self.two_way.isChecked(),
            finetune=replace(current.finetune, time_budget=float(self.budget.value())),
        )

    # -- layers --------------------------------------------------------------------------------------

    def _refresh_layers(self, *_) -> None:
        if self._updating:
            return
        self._updating = True
        try:
            _fill(self.video_box, [layer for layer in self.viewer.layers if isinstance(layer, Image)
                                   and OUTPUT not in layer.metadata], self.annotator.video_layer)
            self._fill_annotations()
        finally:
            self._updating = False
        self._video_chosen()

    def _fill_annotations(self) -> None:
        video = self.video_box.currentData()
        try:
            candidates = self.annotator.annotation_candidates(video) if video is not None else []
        except SegFlowError:  # a layer that cannot be a video has no annotation to offer
            candidates = []
        _fill(self.annotation_box, candidates, self.annotator.annotation_layer)

    def _video_chosen(self, *_) -> None:
        if self._updating:
            return
        layer = self.video_box.currentData()
        if layer is None or layer is self.annotator.video_layer:
            return
        try:
            self.annotator.use_video(layer)
        except SegFlowError as error:
            show_error(str(error))
            return
        self._updating = True
        try:
            self._fill_annotations()
        finally:
            self._updating = False
        self._annotation_chosen()

    def _annotation_chosen(self, *_) -> None:
        if self._updating or self.annotator.video_layer is None:
            return
        try:
            layer = self.annotator.use_annotation(self.annotation_box.currentData())
        except SegFlowError as error:
            show_error(str(error))
            return
        self._select(self.annotation_box, layer)
        self._show_user_frames()

    def _new_annotation(self) -> None:
        if self.annotator.video_layer is None:
            show_error("choose the video layer first")
            return
        self._updating = True
        try:
            layer = self.annotator.new_annotation()
        except SegFlowError as error:
            show_error(str(error))
            return
        finally:
            self._updating = False
        self._fill_annotations_selecting(layer)

    def _fill_annotations_selecting(self, layer) -> None:
        self._updating = True
        try:
            self._fill_annotations()
        finally:
            self._updating = False
        self._select(self.annotation_box, layer)
        self._show_user_frames()

    def _select(self, box: QComboBox, layer) -> None:
        was, self._updating = self._updating, True
        try:
            for i in range(box.count()):
                if box.itemData(i) is layer:
                    box.setCurrentIndex(i)
        finally:
            self._updating = was

    def _show_user_frames(self) -> None:
        self.user_frames.clear()
        known = self.annotator.session.annotations if self.annotator.session is not None else {}
        for t in self.annotator.user_frames():
            if t not in known:
                text = f"frame {t} · painted, used at the next run"
            else:
                text = f"frame {t}" if known[t].any() else f"frame {t} · no object"
            item = QListWidgetItem(text)
            item.setData(Qt.UserRole, t)
            self.user_frames.addItem(item)

    def _go_to_frame(self, item: QListWidgetItem) -> None:
        self.viewer.dims.set_current_step(0, item.data(Qt.UserRole))

    def _show_current_frame(self, *_) -> None:
        frame = int(self.viewer.dims.current_step[0])
        self.timeline.set_current(frame)
        self.annotator.show_frame(frame)

    def _show_overlays(self, *_) -> None:
        self.annotator.set_overlays(self.confidence.isChecked(), self.arrows.isChecked())

    def _show_attention(self) -> None:
        """The timeline and the frames worth a look, from the annotator's scores."""
        session = self.annotator.session
        self.timeline.set_scores(len(session) if session is not None else 0, self.annotator.attention)
        self.worth_a_look.clear()
        for t in self.annotator.worth_a_look():
            item = QListWidgetItem(f"frame {t} · attention {self.annotator.attention[t]:.2f}")
            item.setData(Qt.UserRole, t)
            self.worth_a_look.addItem(item)

    # -- work ----------------------------------------------------------------------------------------

    def start(self, action: str) -> None:
        """Start ``action`` (see ACTIONS) on a worker thread; errors before it starts become notifications
        and change nothing."""
        if self.worker is not None:
            return
        try:
            self.annotator.configure(self.settings())
            job = self.annotator.job(action)
        except SegFlowError as error:
            show_error(str(error))
            return
        self._fill_annotations_selecting(self.annotator.annotation_layer)
        self.job = job
        worker = self._launch(create_worker(job.updates, _start_thread=False, _ignore_errors=True),
                              "Stopped: {error}. What was done is kept; Undo takes it back.",
                              f"{action}: starting…")
        worker.yielded.connect(self._on_update)
        self._followed_at = 0.0
        worker.start()

    def _launch(self, worker, failure: str, text: str, cancellable: bool = True):
        """Take ``worker`` as the running one (its errors become notifications here, not exceptions on the GUI
        thread, and ``failure``, formatted with the error, the status); the caller connects what else it needs
        and starts it."""
        self.worker = worker
        self._failure = failure
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.cancel_button.setEnabled(cancellable)
        self._cancelled = self._failed = False
        self.status.setText(text)
        return worker

    def _draw_box(self) -> None:
        self.first_mask.box_layer()
        self.status.setText("Draw a rectangle around the object, then press Make mask.")

    def _paint_strokes(self) -> None:
        try:
            self.first_mask.strokes_layer()
        except SegFlowError as error:
            show_error(str(error))
            return
        self.status.setText("Paint label 1 on the object and label 2 on the background, then press Make mask.")

    def make_first_mask(self) -> None:
        """The frame on screen's mask from its box and strokes, made on a worker thread; written onto the
        annotation layer when it comes back. Errors change nothing."""
        if self.worker is not None:
            return
        try:
            request = self.first_mask.request()
        except SegFlowError as error:
            show_error(str(error))
            return
        worker = self._launch(create_worker(self.first_mask.make, request, _start_thread=False, _ignore_errors=True),
                              "No mask made: {error}. The annotation layer is as it was.",
                              f"Making the mask of frame {request.frame}…")
        worker.returned.connect(lambda mask: self._first_mask_made(request, mask))
        worker.start()

    def _first_mask_made(self, request, mask) -> None:
        layer = self.first_mask.apply(request, mask)
        self._fill_annotations_selecting(layer)
        self.status.setText(f"Mask of frame {request.frame} on {layer.name!r}: touch it up if needed, then press "
                            "Fine-tune & propagate.")

    def cancel(self) -> None:
        if self.worker is not None:
            self._cancelled = True
            self.status.setText("Cancelling after the current step…")
            self.worker.quit()

    def _on_update(self, update) -> None:
        # Drawing a frame or the activity dock can process pending events, so a later update, or the
        # end of the job, may be handled inside this one: text first, and nothing to a closed bar.
        running = self.worker is not None
        if running and not self._cancelled:
            self.bar.setMaximum(update.total)
            self.bar.setValue(update.done)
            self.status.setText(update.text)
        self.annotator.show(update)
        if update.result is not None:
            self.timeline.set_scores(len(self.annotator.session), self.annotator.attention)
        if update.result is not None and self.follow.isChecked():
            self._follow(update)
        if running and self.worker is not None:
            self._activity(update)

    def _follow(self, update) -> None:
        """Show the frame just written, at most ten times a second: drawing every frame would take the
        CPU from the propagation."""
        now = time.perf_counter()
        if now - self._followed_at >= FOLLOW_INTERVAL or update.done == update.total:
            self._followed_at = now
            self.viewer.dims.set_current_step(0, update.result.index)

    def _activity(self, update) -> None:
        """The job's bar in napari's activity dock, one per phase."""
        bar = self._bars.get(update.phase)
        if bar is None:
            for old in self._bars.values():
                old.close()
            bar = self._bars[update.phase] = progress(total=update.total, desc=f"SegFlow {update.phase}")
        bar.total = update.total
        bar.update(update.done - bar.n)

    def _on_error(self, error: Exception) -> None:
        show_error(f"SegFlow: {error}" if isinstance(error, SegFlowError) else f"SegFlow failed: {error!r}")
        self._failed = True
        self.status.setText(self._failure.format(error=error))

    def _on_finished(self) -> None:
        finished_job = self.job
        if self.job is not None:
            self.job.close()
        phase = next(reversed(self._bars), None)
        for bar in self._bars.values():
            bar.close()
        self._bars = {}
        self.worker = self.job = None
        self._set_running(False)
        if self._cancelled:
            self.status.setText("Cancelled. What was done is kept; Undo takes it back.")
        elif not self._failed and finished_job is not None:
            done = {None: "Nothing to do: no frame changed since the last run.",
                    FINETUNE: "Fine-tuned. Propagate to fill the masks."}
            self.status.setText(done.get(phase, f"Done. {self.status.text()}"))
        self._show_user_frames()
        self._show_attention()

    def undo(self) -> None:
        """Take back the last change on a worker thread (a whole video's masks are read back), the layers
        updated when it comes back."""
        if self.worker is not None:
            return
        try:
            self.annotator.check_undo()
        except SegFlowError as error:
            show_error(str(error))
            return
        worker = self._launch(create_worker(self.annotator.undo_in_session, _start_thread=False, _ignore_errors=True),
                              "Not undone: {error}.", "Undoing the last change…", cancellable=False)
        worker.returned.connect(self._undone)
        worker.start()

    def _undone(self, restored) -> None:
        self.annotator.show_undone(restored)
        self.status.setText(f"Undone: {len(restored)} frames back as they were.")

    def _set_running(self, running: bool) -> None:
        for widget in (*self.buttons.values(), self.save_button, self.open_button, self.video_box,
                       self.box_button, self.strokes_button, self.make_mask_button,
                       self.annotation_box, self.new_annotation, self.device_box, self.budget, self.long_side,
                       self.two_way):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        session = self.annotator.session
        self.undo_button.setEnabled(not running and session is not None and session.can_undo)

    # -- sessions ------------------------------------------------------------------------------------

    def save_session(self, folder=None) -> None:
        """Copy the session to ``folder`` (new or empty; asked for when None) on a worker thread: a long video's
        session holds gigabytes of flow and undo history, too much to copy while napari waits."""
        if self.worker is not None:
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the session in a new or empty folder")
            if not folder:
                return
        try:
            self.annotator.check_save(folder)
        except SegFlowError as error:
            show_error(str(error))
            return
        worker = self._launch(create_worker(self.annotator.save, folder, _start_thread=False, _ignore_errors=True),
                              "Not saved: {error}. The session is where it was.", f"Saving the session in {folder}…",
                              cancellable=False)
        worker.returned.connect(lambda _: self._session_saved(folder))
        worker.start()

    def _session_saved(self, folder) -> None:
        self.status.setText(f"Session saved in {folder}; the work goes on there.")
        show_info(f"Session saved in {folder}")

    def open_session(self, folder=None) -> None:
        """Open the saved session in ``folder`` (asked for when None): read on a worker thread, its layers added
        when it comes back."""
        if self.worker is not None:
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Open a saved session")
            if not folder:
                return
        try:
            video = self.annotator.session_video(folder)
        except SegFlowError as error:
            show_error(str(error))
            return
        worker = self._launch(
            create_worker(read_session, folder, video, self.annotator.weights, _start_thread=False,
                          _ignore_errors=True),
            "Not opened: {error}. The work on screen is as it was.", f"Opening the session in {folder}…",
            cancellable=False,
        )
        worker.returned.connect(self._session_read)
        worker.start()

    def _session_read(self, opened) -> None:
        self.annotator.adopt(opened)
        self.status.setText(f"Session {opened.folder} open: {len(opened.session.result_frames)} frames with masks.")
        self._show_settings()
        self._refresh_layers()
        self._select(self.video_box, self.annotator.video_layer)
        self._fill_annotations_selecting(self.annotator.annotation_layer)

    # -- keys ----------------------------------------------------------------------------------------

    def _bind_keys(self) -> None:
        bindings = {key: (lambda a: lambda viewer: self.start(a))(action) for action, _, key, _ in ACTIONS}
        bindings[CANCEL_KEY] = lambda viewer: self.cancel()
        bindings[UNDO_KEY] = lambda viewer: self.undo()
        for key, callback in bindings.items():
            self.viewer.bind_key(key, callback, overwrite=True)
        self._keys = list(bindings)

    def closeEvent(self, event) -> None:
        self.cancel()
        for key in self._keys:
            self.viewer.bind_key(key, None, overwrite=True)
        super().closeEvent(event)



def _fill(box: QComboBox, layers: list, selected) -> None:
    box.clear()
    for layer in layers:
        box.addItem(layer.name, layer)
    for i, layer in enumerate(layers):
        if layer is selected:
            box.setCurrentIndex(i)
