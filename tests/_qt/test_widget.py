import time

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QTimer

from napari_segflow._qt.widget import ACTIONS, SegFlowWidget
from napari_segflow.annotate.annotator import FLOW, MASKS


def paint(layer, frame: int, labels: np.ndarray) -> None:
    """Paint (and erase) a whole frame like a user does: through the layer's undoable edit, which emits
    its paint event."""
    rows, columns = np.indices(labels.shape).reshape(2, -1)
    layer.data_setitem((np.full(rows.size, frame), rows, columns), labels.ravel())


def first_object(instances: np.ndarray, frame: int = 0) -> np.ndarray:
    ids = instances[frame]
    return (ids == ids[ids > 0].min()).astype(np.uint8)


def run(qtbot, widget, action: str, timeout: int = 120_000) -> int:
    """Press ``action`` and wait for it to end while the viewer goes on processing events; the number of
    timer ticks the GUI thread served meanwhile."""
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    widget.start(action)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    timer.stop()
    return len(ticks)


def undo(qtbot, widget) -> None:
    """Press Undo and wait for it: it reads the frames back on a worker thread."""
    widget.undo()
    assert widget.worker is not None and not widget.undo_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)


def last_error() -> str:
    return notification_manager.records[-1].message if notification_manager.records else ""


def test_the_widget_opens_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-segflow", "SegFlow annotation")
    assert isinstance(widget, SegFlowWidget)
    for action, _, key, _ in ACTIONS:
        assert key in widget.buttons[action].toolTip()


def test_an_annotation_layer_is_made_for_the_video(widget, clip):
    layers = widget.annotator.viewer.layers  # the layers themselves: widget.viewer hands out napari's proxies
    assert "annotation" in layers
    assert layers["annotation"].data.shape == clip[1].shape
    assert widget.annotator.annotation_layer is layers["annotation"]
    assert widget.annotation_box.currentText() == "annotation"


def test_the_whole_loop_annotate_propagate_correct_undo(qtbot, widget, clip):
    frames, instances = clip
    viewer = widget.viewer
    annotation = viewer.layers["annotation"]
    paint(annotation, 0, first_object(instances))
    assert widget.user_frames.count() == 1

    ticks = run(qtbot, widget, "run")
    assert ticks > 5  # the GUI thread kept serving events during the run
    masks = viewer.layers[MASKS]
    session = widget.annotator.session
    assert session.result_frames == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(masks.data, session.labels_volume())
    np.testing.assert_array_equal(masks.data[0], first_object(instances))
    assert viewer.layers[FLOW].data[2].shape == (96, 128, 3)
    assert viewer.layers[FLOW].data[2].any()  # the flow branch's flow in colour
    before = masks.data.copy()
    scores_before = dict(widget.annotator.attention)

    # repaint frame 3 on the masks layer: a correction that must stick
    correction = np.zeros_like(before[3])
    correction[10:70, 20:100] = 1
    paint(masks, 3, correction)
    assert [widget.user_frames.item(i).text() for i in range(widget.user_frames.count())] == [
        "frame 0", "frame 3 · painted, used at the next run"]
    run(qtbot, widget, "run")
    np.testing.assert_array_equal(masks.data[3], correction)  # the user's frame as painted
    np.testing.assert_array_equal(masks.data[0], before[0])  # so is the other user frame
    assert sorted(session.annotations) == [0, 3]
    changed = [t for t in (1, 2, 4) if not np.array_equal(masks.data[t], before[t])]
    assert changed  # the neighbours were propagated again
    np.testing.assert_array_equal(masks.data, session.labels_volume())
    assert not annotation.data[3].any()  # the user's annotation layer was not written

    assert widget.undo_button.isEnabled()
    undo(qtbot, widget)
    np.testing.assert_array_equal(masks.data[[1, 2, 4]], before[[1, 2, 4]])
    # the timeline shows the scores the undo brought back, not those of the run it took back
    assert widget.annotator.attention == pytest.approx(scores_before)
    assert widget.timeline.scores == pytest.approx(scores_before)


def test_a_correction_s_progress_bar_counts_on_the_fine_tune_the_session_will_make(qtbot, widget, clip):
    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    job = widget.annotator.job("run")
    assert job.meter.time_budget == widget.annotator.settings.finetune.time_budget  # the first fine-tune's
    run(qtbot, widget, "run")
    session = widget.annotator.session
    correction = np.zeros_like(frames[0, ..., 0])
    correction[10:70, 20:100] = 1
    paint(widget.viewer.layers[MASKS], 3, correction)
    job = widget.annotator.job("run")
    # the correction has no budget of its own here: the round's, less the re-propagation at the measured pace
    expected = session.next_finetune().time_budget
    assert expected is not None and expected < widget.annotator.settings.correction_round_seconds
    assert job.meter.time_budget == expected


def test_erasing_a_frame_of_the_masks_says_the_object_is_not_there(qtbot, widget, clip):
    frames, instances = clip
    layers = widget.annotator.viewer.layers
    paint(layers["annotation"], 0, first_object(instances))
    run(qtbot, widget, "run")
    masks = layers[MASKS]
    assert np.asarray(masks.data[3]).any()
    paint(masks, 3, np.zeros(instances.shape[1:], np.uint8))  # the object has left: nothing there
    run(qtbot, widget, "run")
    session = widget.annotator.session
    assert sorted(session.annotations) == [0, 3] and not session.annotations[3].any()
    assert not np.asarray(masks.data[3]).any() and not session.labels(3).any()
    np.testing.assert_array_equal(masks.data, session.labels_volume())
    assert [widget.user_frames.item(i).text() for i in range(widget.user_frames.count())] == [
        "frame 0", "frame 3 · no object"]
    # a stroke painted and wiped on the annotation layer, which never showed frame 3's annotation: nothing changes
    annotation = layers["annotation"]
    stroke = np.zeros(instances.shape[1:], np.uint8)
    stroke[5:9, 5:9] = 1
    paint(annotation, 3, stroke)
    paint(annotation, 3, np.zeros_like(stroke))
    run(qtbot, widget, "run")
    assert sorted(session.annotations) == [0, 3] and not session.annotations[3].any()


def test_erasing_an_annotation_takes_it_back(qtbot, widget, clip):
    frames, instances = clip
    layers = widget.annotator.viewer.layers
    annotation = layers["annotation"]
    paint(annotation, 0, first_object(instances))
    paint(annotation, 2, first_object(instances, 2))
    run(qtbot, widget, "run")
    session = widget.annotator.session
    assert sorted(session.annotations) == [0, 2]
    paint(annotation, 2, np.zeros(instances.shape[1:], np.uint8))
    run(qtbot, widget, "run")
    assert sorted(session.annotations) == [0]
    masks = layers[MASKS]
    np.testing.assert_array_equal(masks.data, session.labels_volume())  # frame 2 propagated from frame 0 again
    assert [widget.user_frames.item(i).text() for i in range(widget.user_frames.count())] == ["frame 0"]
    undo(qtbot, widget)
    undo(qtbot, widget)
    assert sorted(session.annotations) == [0, 2]


def test_cancel_mid_run_leaves_layers_consistent(qtbot, widget, clip, tiny_settings):
    from dataclasses import replace

    frames, instances = clip
    widget.annotator.settings = replace(tiny_settings, finetune=replace(tiny_settings.finetune, steps=10_000))
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    widget.start("run")
    assert not widget.buttons["forward"].isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.bar.value() >= 2, timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    session = widget.annotator.session
    assert session.net is None and session.result_frames == []  # a cancelled fine-tune adopts nothing
    masks = widget.viewer.layers[MASKS]
    np.testing.assert_array_equal(masks.data, session.labels_volume())
    assert widget.buttons["forward"].isEnabled() and not widget.cancel_button.isEnabled()
    assert "Cancelled" in widget.status.text()


def test_cancel_during_propagation_keeps_the_frames_written(qtbot, widget, clip, monkeypatch):
    from napari_segflow.model.segflow import SegFlowNet

    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    run(qtbot, widget, "finetune")
    assert widget.annotator.session.net is not None
    step = SegFlowNet.step

    def slow_step(self, *args, **kwargs):  # a frame takes long enough to cancel between frames
        time.sleep(0.4)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SegFlowNet, "step", slow_step)
    widget.viewer.dims.set_current_step(0, 0)
    masks = widget.viewer.layers[MASKS]
    before = masks.data.copy()
    widget.start("forward")
    qtbot.waitUntil(lambda: len(widget.annotator.session.result_frames) >= 2, timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    session = widget.annotator.session
    written = session.result_frames
    assert 2 <= len(written) < 5 and written == list(range(len(written)))  # stopped mid-run, in order
    assert "Cancelled" in widget.status.text()
    for t in range(5):
        if t in written:  # kept, as the session has it
            np.testing.assert_array_equal(masks.data[t], session.labels(t))
        else:  # never reached: untouched
            np.testing.assert_array_equal(masks.data[t], before[t])
            assert session.labels(t) is None


def test_the_attention_timeline_fills_during_a_run_and_a_click_goes_to_the_frame(qtbot, widget, clip):
    from qtpy.QtCore import QPoint, Qt

    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    seen = []
    original = widget.timeline.set_scores
    widget.timeline.set_scores = lambda count, scores: (seen.append(len(scores)), original(count, scores))
    run(qtbot, widget, "run")
    assert seen and seen[0] < 5 and seen[-1] == 5  # filled frame by frame as results came
    timeline = widget.timeline
    assert timeline.count == 5 and set(timeline.scores) == {0, 1, 2, 3, 4} and timeline.scores[0] == 0.0
    assert all(v >= 0 for v in timeline.scores.values())
    listed = [widget.worth_a_look.item(i).data(Qt.UserRole) for i in range(widget.worth_a_look.count())]
    from napari_segflow.inference.attention import frames_worth_a_look

    # the session's suggestions, best first: every frame but the user's, in the order the rule names them
    assert sorted(listed) == [1, 2, 3, 4] and listed == frames_worth_a_look(timeline.scores, [0], 5)
    qtbot.mouseClick(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(3)), timeline.height() // 2))
    assert widget.viewer.dims.current_step[0] == 3 and timeline.current == 3


def test_propagating_from_the_current_frame_backward(qtbot, widget, clip):
    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 4, first_object(instances, 4))
    widget.viewer.dims.set_current_step(0, 4)
    widget.follow.setChecked(False)
    run(qtbot, widget, "backward")
    assert widget.annotator.session.result_frames == [0, 1, 2, 3, 4]
    assert widget.viewer.dims.current_step[0] == 4


def test_pressing_run_with_no_mask_is_a_notification_that_changes_nothing(qtbot, widget):
    names = [layer.name for layer in widget.viewer.layers]
    widget.start("run")
    assert widget.worker is None
    assert "no mask to learn from" in last_error()
    assert [layer.name for layer in widget.viewer.layers] == names


def test_a_bad_annotation_layer_is_refused(qtbot, widget):
    viewer = widget.annotator.viewer
    viewer.add_labels(np.zeros((3, 10, 10), np.uint8), name="small")
    with pytest.raises(Exception, match="small"):
        widget.annotator.use_annotation(viewer.layers["small"])
    assert "small" not in [widget.annotation_box.itemText(i) for i in range(widget.annotation_box.count())]
    assert widget.annotator.annotation_layer is viewer.layers["annotation"]


def test_errors_in_the_worker_become_notifications(qtbot, widget, clip, monkeypatch):
    import torch

    from napari_segflow.model.segflow import SegFlowNet

    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SegFlowNet, "step", exhausted)
    run(qtbot, widget, "run")
    assert "out of memory" in last_error() and "smaller working resolution" in last_error()
    assert widget.buttons["run"].isEnabled()
    assert not widget.viewer.layers[MASKS].data[1:].any()


def test_a_saved_session_reopens_with_its_layers(qtbot, widget, clip, tmp_path, make_napari_viewer, tiny_config,
                                                 monkeypatch):
    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    run(qtbot, widget, "run")
    saved = widget.annotator.session.labels_volume()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    widget.save_session(tmp_path / "taken")
    assert widget.worker is None and "must be new or empty" in last_error()
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]

    session_type = type(widget.annotator.session)
    original = session_type.save_as

    def slow_save_as(session, folder):  # a long video's session: gigabytes to copy
        time.sleep(0.5)
        original(session, folder)

    monkeypatch.setattr(session_type, "save_as", slow_save_as)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    widget.save_session(tmp_path / "saved")
    assert widget.worker is not None and not widget.buttons["run"].isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)
    timer.stop()
    assert len(ticks) > 20  # the GUI thread kept serving events while the session was copied
    assert (tmp_path / "saved" / "session.json").is_file() and widget.annotator.session.folder == tmp_path / "saved"
    assert "Session saved in" in widget.status.text() and widget.buttons["run"].isEnabled()

    other = SegFlowWidget(widget.viewer, type(widget.annotator)(widget.viewer, weights=widget.annotator.weights))
    other.open_session(tmp_path / "taken")
    assert other.worker is None and "no session here" in last_error()
    other.open_session(tmp_path / "saved")  # made from an array: uses the chosen video layer
    assert other.worker is not None  # read on a worker thread
    qtbot.waitUntil(lambda: other.worker is None, timeout=20_000)
    assert other.timeline.scores == widget.annotator.attention and len(other.timeline.scores) == 5
    assert other.worth_a_look.count() == len(widget.annotator.worth_a_look()) > 0
    assert other.annotator.session.folder == tmp_path / "saved"
    np.testing.assert_array_equal(other.annotator.masks_layer.data, saved)
    np.testing.assert_array_equal(other.annotator.annotation_layer.data[0], first_object(instances))
    other.annotator.close_session()


def test_the_keys_start_the_actions(qtbot, widget, clip):
    from napari.utils.key_bindings import KeyBinding

    frames, instances = clip
    paint(widget.viewer.layers["annotation"], 0, first_object(instances))
    keymap = widget.viewer.keymap
    keymap[KeyBinding.from_str("Alt-T")](widget.viewer)  # Fine-tune
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.annotator.session.net is not None and widget.annotator.session.result_frames == []
    widget.close()
    assert KeyBinding.from_str("Alt-T") not in widget.viewer.keymap


def test_the_confidence_and_arrow_layers_appear_and_follow_the_run(qtbot, widget, clip):
    from napari_segflow.annotate.annotator import ARROWS, CONFIDENCE
    from napari_segflow.annotate.overlays import flow_arrows

    frames, instances = clip
    layers = widget.viewer.layers
    widget.confidence.setChecked(True)
    widget.arrows.setChecked(True)
    assert CONFIDENCE not in layers and ARROWS not in layers  # nothing to show before a session
    paint(layers["annotation"], 0, first_object(instances))
    run(qtbot, widget, "run")
    session = widget.annotator.session
    confidence = layers[CONFIDENCE]
    assert confidence.data.shape == (5, 96, 128)
    np.testing.assert_array_equal(np.asarray(confidence.data[0]), np.ones((96, 128), np.float32))  # the user's
    later = np.asarray(confidence.data[3])
    assert 0.5 <= later.min() and later.max() <= 1  # the largest of two class probabilities
    widget.viewer.dims.set_current_step(0, 2)
    np.testing.assert_array_equal(layers[ARROWS].data, flow_arrows(session.flow(2)))
    widget.viewer.dims.set_current_step(0, 3)
    np.testing.assert_array_equal(layers[ARROWS].data, flow_arrows(session.flow(3)))
    widget.arrows.setChecked(False)
    assert ARROWS not in layers and CONFIDENCE in layers


def rectangle(frame: int, y0, x0, y1, x1) -> np.ndarray:
    """A rectangle's four corners on ``frame``, as drawing one on a 3D Shapes layer leaves them."""
    return np.array([[frame, y0, x0], [frame, y0, x1], [frame, y1, x1], [frame, y1, x0]], float)


def _first_mask_done(qtbot, widget) -> None:
    widget.make_first_mask()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


def test_a_box_becomes_the_frames_mask_on_the_annotation_layer(qtbot, widget, clip):
    viewer = widget.annotator.viewer
    truth = first_object(clip[1], frame=2)
    ys, xs = np.nonzero(truth)
    viewer.dims.set_current_step(0, 2)
    layer = widget.first_mask.box_layer()
    assert layer.mode == "add_rectangle" and viewer.layers.selection.active is layer
    layer.add_rectangles(rectangle(2, ys.min(), xs.min(), ys.max() + 1, xs.max() + 1))
    annotation = widget.annotator.use_annotation(None)
    annotation.data[0, :5, :5] = 3  # another frame's paint stays
    assert np.array_equal(widget.first_mask.request().neighbour, clip[0][3])  # its motion helps
    _first_mask_done(qtbot, widget)
    made = np.asarray(annotation.data[2]) > 0
    assert made.any() and not made[: ys.min()].any() and not made[ys.max() + 1:].any()
    assert (made & (truth > 0)).sum() / (made | (truth > 0)).sum() > 0.5
    assert annotation.data[0, 0, 0] == 3
    assert 2 in widget.annotator.user_frames()  # an undoable paint: read at the next run like one
    annotation.undo()
    assert not np.asarray(annotation.data[2]).any()


def test_a_box_on_a_16_bit_video_layer_makes_the_mask_from_what_the_user_sees(qtbot, widget, clip):
    viewer = widget.annotator.viewer
    grey = (clip[0].mean(-1) * 16).astype(np.uint16)  # a 12-bit camera's values in 16-bit data
    widget.annotator.use_video(viewer.add_image(grey, name="grey", contrast_limits=(0, 4095)))
    truth = first_object(clip[1], frame=2)
    ys, xs = np.nonzero(truth)
    viewer.dims.set_current_step(0, 2)
    widget.first_mask.box_layer().add_rectangles(rectangle(2, ys.min(), xs.min(), ys.max() + 1, xs.max() + 1))
    request = widget.first_mask.request()
    assert request.image.dtype == np.uint8 and request.image.shape == (96, 128, 3)
    np.testing.assert_allclose(request.image[..., 0], clip[0][2].mean(-1), atol=2)  # the video as shown
    made = widget.first_mask.make(request)
    assert (made & (truth > 0)).sum() / (made | (truth > 0)).sum() > 0.5


def test_a_box_outside_the_frame_or_one_kind_of_stroke_changes_nothing(qtbot, widget, clip):
    viewer = widget.annotator.viewer
    viewer.dims.set_current_step(0, 0)
    annotation = widget.annotator.use_annotation(None)
    before = np.asarray(annotation.data).copy()
    widget.make_first_mask()
    assert "no box and no strokes" in last_error() and widget.worker is None
    widget.first_mask.box_layer().add_rectangles(rectangle(0, 200, 300, 240, 400))
    _first_mask_done(qtbot, widget)
    assert "outside" in last_error() and "annotation layer is as it was" in widget.status.text()
    widget.viewer.layers.remove(widget.first_mask.box_layer())
    strokes = widget.first_mask.strokes_layer()
    assert strokes.selected_label == 1 and viewer.layers.selection.active is strokes
    strokes.data[0, 40:45, 40:45] = 1
    _first_mask_done(qtbot, widget)
    assert "no background strokes" in last_error()
    np.testing.assert_array_equal(np.asarray(annotation.data), before)
    assert strokes not in widget.annotator.annotation_candidates(widget.annotator.video_layer)
