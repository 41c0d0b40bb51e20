import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from napari_segflow.data.io import read_label_image
from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.metrics import region_similarity
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.propagation import Stretch
import napari_segflow.inference.session as session_module
from napari_segflow.inference.session import MIN_CORRECTION_SECONDS, SessionSettings, VideoSession
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.online import FinetuneConfig, FinetuneStep


@pytest.fixture()
def video(synthetic_clip):
    return (synthetic_clip.frames * 255).astype(np.uint8), synthetic_clip.instances.astype(np.uint8)


@pytest.fixture()
def settings():
    return SessionSettings(
        long_side=128, finetune=FinetuneConfig(steps=3, time_budget=None), correction_steps=2,
        correction_time_budget=None, device="cpu",
    )


@pytest.fixture()
def base(tiny_config):
    return SegFlowNet(tiny_config)


@pytest.fixture()
def recorded_finetunes(monkeypatch):
    """The config of every fine-tune a session makes, in order."""
    used = []
    original = session_module.finetune

    def recording(net, frames, annotations, objects, config, device):
        used.append(config)
        return original(net, frames, annotations, objects, config, device)

    monkeypatch.setattr(session_module, "finetune", recording)
    return used


def _first_mask(masks):
    return (masks[0] == masks[0][masks[0] > 0].min()).astype(np.uint8) * 3


def test_run_finetunes_then_fills_every_frame_and_reopens_exactly(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    mask = _first_mask(masks)
    session.add_annotation(0, mask)
    events = list(session.run())
    steps = [e for e in events if isinstance(e, FinetuneStep)]
    results = [e for e in events if isinstance(e, FrameResult)]
    assert [s.step for s in steps] == [1, 2, 3]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert all(r.labels.shape == (96, 128) and set(np.unique(r.labels)) <= {0, 3} for r in results)
    np.testing.assert_array_equal(results[0].labels, mask)
    assert session.result_frames == [0, 1, 2, 3, 4] and not session.needs_finetune
    assert list(session.run()) == []  # nothing changed: nothing to do

    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    assert reopened.settings == settings
    assert reopened.objects == session.objects
    np.testing.assert_array_equal(reopened.annotations[0], mask)
    for r in results:
        np.testing.assert_array_equal(reopened.labels(r.index), r.labels)
        np.testing.assert_allclose(reopened.flow(r.index), r.flow, atol=0.01, rtol=1e-3)
    for a, b in zip(reopened.net.state_dict().values(), session.net.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not reopened.needs_finetune and reopened.pending_stretches() == []
    assert reopened.attention == {r.index: r.attention for r in results} == session.attention


def test_a_correction_refinetunes_warm_and_repropagates_up_to_the_user_frames(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotations({0: _first_mask(masks), 2: (masks[2] > 0).astype(np.uint8) * 3})
    # the first run: both user frames' masks carried over the frames between them and fused, the last forward
    assert session.pending_stretches() == [Stretch(0, 2, between=True), Stretch(2, 4)]
    assert session.pending_results == 6 + 3 - 1  # frame 2 ends the first stretch and starts the second
    first = [e for e in session.run() if isinstance(e, FrameResult)]
    assert len(first) == 8 and sorted({r.index for r in first if r.final}) == [0, 1, 2, 3, 4]
    before = {t: session.labels(t) for t in range(5)}
    weights_before = {k: v.clone() for k, v in session.net.state_dict().items()}
    correction = np.zeros_like(masks[4])
    correction[20:60, 30:90] = 3
    session.add_annotation(4, correction)
    # frames 0 and 1 lie beyond the user frame 2, the new frame's neighbour: they keep what they had
    assert session.pending_stretches() == [Stretch(2, 4, between=True)]
    events = list(session.run())
    steps = [e for e in events if isinstance(e, FinetuneStep)]
    assert len(steps) == settings.correction_steps  # warm-started, short
    results = [e for e in events if isinstance(e, FrameResult)]
    assert [(r.index, r.final) for r in results] == [(2, False), (3, False), (4, False), (4, True), (3, True),
                                                     (2, True)]
    assert not list(session.folder.glob(".segflow-carry-*"))  # the forward carry waited there, and is gone
    # the user's frames are kept as painted: in what the run yielded and in the stored result
    np.testing.assert_array_equal(results[3].labels, correction)
    np.testing.assert_array_equal(read_label_image(session.folder / "results" / "labels" / "00004.png"), correction)
    np.testing.assert_array_equal(results[-1].labels, session.annotations[2])
    np.testing.assert_array_equal(session.labels(0), before[0])
    np.testing.assert_array_equal(session.labels(1), before[1])
    assert any(not torch.equal(weights_before[k], v) for k, v in session.net.state_dict().items())

    assert session.undo() == [2, 3, 4]  # the run: results and weights back
    for t in range(5):
        if t != 4:
            np.testing.assert_array_equal(session.labels(t), before[t])
    for k, v in session.net.state_dict().items():
        torch.testing.assert_close(v, weights_before[k])
    assert session.needs_finetune and 4 in session.annotations
    assert session.undo() == [4]  # the annotation
    assert 4 not in session.annotations and not session.needs_finetune
    np.testing.assert_array_equal(session.labels(4), before[4])


def test_bidirectional_propagation_replaces_the_first_sweep(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(2, _first_mask(masks) * 0 + (masks[2] > 0).astype(np.uint8))
    list(session.finetune())
    results = list(session.propagate(2, "both", bidirectional=True))
    finals = [r.index for r in results if r.final]
    assert sorted(finals) == [0, 1, 2, 3, 4]
    assert [r.index for r in results if not r.final] == [2, 3, 4, 1, 0]
    last = {r.index: r for r in results}
    for t in (0, 1, 3, 4):
        np.testing.assert_array_equal(session.labels(t), last[t].labels)


def test_labels_come_back_at_the_video_size(tmp_path, settings, base):
    frames = np.random.default_rng(0).integers(0, 255, (3, 90, 130, 3), dtype=np.uint8)
    mask = np.zeros((90, 130), np.uint8)
    mask[30:60, 40:90] = 1
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, mask)
    results = [e for e in session.run() if isinstance(e, FrameResult)]
    assert all(r.labels.shape == (90, 130) and r.flow.shape == (90, 130, 2) for r in results)


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "index, labels, message",
    [
        (0, np.ones((50, 50), np.uint8), "50x50.*128x96"),
        (5, np.ones((96, 128), np.uint8), "out of range"),
        (-1, np.ones((96, 128), np.uint8), "out of range"),
        (1, np.full((96, 128), 300, np.int32), "300|0..255"),
    ],
)
def test_bad_annotations_are_refused_and_change_nothing(tmp_path, video, settings, base, index, labels, message):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    before = _snapshot(tmp_path / "s")
    with pytest.raises(SegFlowError, match=message):
        session.add_annotation(index, labels)
    assert _snapshot(tmp_path / "s") == before
    assert list(session.annotations) == [0]


def test_a_frame_painted_empty_says_the_object_is_not_there_and_sticks(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    with pytest.raises(SegFlowError, match="hold no object"):  # an empty frame alone teaches nothing
        session.add_annotation(0, np.zeros_like(masks[0]))
    session.add_annotation(0, _first_mask(masks))
    list(session.run())
    before = {t: session.labels(t) for t in range(5)}
    session.add_annotation(3, np.zeros_like(masks[3]))
    assert session.needs_finetune and session.pending_stretches() == [Stretch(3, 4), Stretch(0, 3, between=True)]
    results = [e for e in session.run() if isinstance(e, FrameResult)]
    assert {r.index for r in results} == {0, 1, 2, 3, 4}
    assert not session.labels(3).any() and not [r for r in results if r.index == 3 and r.labels.any()]
    np.testing.assert_array_equal(session.labels(0), before[0])
    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    assert sorted(reopened.annotations) == [0, 3] and not reopened.annotations[3].any()
    assert reopened.pending_stretches() == []
    session.undo()
    session.undo()
    assert sorted(session.annotations) == [0]
    np.testing.assert_array_equal(session.labels(3), before[3])


def test_an_annotation_taken_back_is_propagated_over_again_and_undo_returns_it(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    user = (masks[2] > 0).astype(np.uint8) * 3
    session.add_annotations({0: _first_mask(masks), 2: user})
    list(session.run())
    weights_before = {k: v.clone() for k, v in session.net.state_dict().items()}
    for bad, message in (([1], "frame 1 holds no annotation"), ([0, 2], "every annotation")):
        with pytest.raises(SegFlowError, match=message):
            session.change_annotations(removed=bad)
    with pytest.raises(SegFlowError, match="both given labels and taken back"):
        session.change_annotations({2: user}, removed=[2])
    assert sorted(session.annotations) == [0, 2]
    session.change_annotations(removed=[2])
    assert sorted(session.annotations) == [0] and not (session.folder / "annotations" / "00002.png").exists()
    assert session.needs_finetune and session.pending_stretches() == [Stretch(0, 4)]
    results = [e for e in session.run() if isinstance(e, FrameResult)]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    stored = {r.index: r.labels for r in results}
    np.testing.assert_array_equal(session.labels(2), stored[2])  # the network's mask now, not the user's
    assert not np.array_equal(stored[2], user)
    assert any(not torch.equal(weights_before[k], v) for k, v in session.net.state_dict().items())
    session.undo()  # the run
    assert session.undo() == [2]  # the taking back: the annotation returns
    np.testing.assert_array_equal(session.annotations[2], user)
    assert session.pending_stretches() == [] and not session.needs_finetune


def test_a_corrupt_frame_stops_the_run_and_keeps_earlier_results(tmp_path, video, settings, base):
    frames, masks = video
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{t}.png")
    (folder / "f3.png").write_bytes((folder / "f3.png").read_bytes()[:100])
    session = VideoSession(folder, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    seen = []
    with pytest.raises(SegFlowError, match="frame 3"):
        for event in session.run():
            if isinstance(event, FrameResult):
                seen.append(event.index)
    assert seen == [0, 1]  # frame 2's flow partner is frame 3
    assert session.result_frames == [0, 1]
    assert session.pending_stretches() == [Stretch(0, 4)]  # the run did not complete: it is still pending
    # a process killed while a stretch's forward carry waited on disk leaves it behind; opening clears it
    leftover = tmp_path / "s" / ".segflow-carry-killed"
    leftover.mkdir()
    (leftover / "000001.npz").write_bytes(b"carried")
    reopened = VideoSession.open(tmp_path / "s", weights=base)  # as after a crash: what was written is there
    assert reopened.result_frames == [0, 1] and reopened.pending_stretches() == [Stretch(0, 4)]
    np.testing.assert_array_equal(reopened.labels(1), session.labels(1))
    assert not leftover.exists()


def test_cancelled_runs_keep_state_consistent(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    tuning = session.finetune()
    next(tuning)
    tuning.close()  # cancelled mid fine-tune: no half-trained weights adopted
    assert session.net is None and not (tmp_path / "s" / "finetuned.pt").exists()
    list(session.finetune())
    running = session.propagate(0, "forward")
    assert [next(running).index, next(running).index] == [0, 1]
    running.close()  # cancelled: the frames done are kept...
    assert session.result_frames == [0, 1]
    assert session.undo() is not None  # ...or taken back, as the caller chooses
    assert session.result_frames == []
    assert session.net is not None


def test_out_of_memory_is_a_clear_error_that_loses_nothing(tmp_path, video, settings, base, monkeypatch):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    list(session.finetune())
    list(session.propagate(0, "forward", stop=1))

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SegFlowNet, "step", exhausted)
    with pytest.raises(SegFlowError, match="out of memory.*smaller working resolution"):
        list(session.propagate(0, "forward"))
    assert session.result_frames == [0, 1]


def test_sessions_refuse_bad_folders_videos_and_calls(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    with pytest.raises(SegFlowError, match="already holds a session"):
        VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    with pytest.raises(SegFlowError, match="no fine-tuned weights"):
        next(session.propagate(0))
    with pytest.raises(SegFlowError, match="no annotated frame"):
        next(session.run())
    with pytest.raises(SegFlowError, match="direction"):
        next(session.propagate(0, "sideways"))
    with pytest.raises(SegFlowError, match="made from an array"):
        VideoSession.open(tmp_path / "s")
    with pytest.raises(SegFlowError, match="video given is"):
        VideoSession.open(tmp_path / "s", video=frames[:3], weights=base)
    with pytest.raises(SegFlowError, match="no session here"):
        VideoSession.open(tmp_path / "nothing")
    state = json.loads((tmp_path / "s" / "session.json").read_text())
    assert state["shape"] == [5, 96, 128]


def test_a_temporary_session_cleans_up(video, settings, base):
    frames, masks = video
    with VideoSession(frames, weights=base, settings=settings) as session:
        folder = session.folder
        session.add_annotation(0, _first_mask(masks))
        assert folder.is_dir()
    assert not folder.exists()


def test_several_annotations_are_one_change_and_a_bad_one_keeps_none(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    good = _first_mask(masks)
    with pytest.raises(SegFlowError, match="frame 4: label ids must lie in 0..255"):
        session.add_annotations({0: good, 4: good.astype(np.int32) * 100})
    assert session.annotations == {} and not session.can_undo
    session.add_annotations({0: good, 4: good})
    assert sorted(session.annotations) == [0, 4]
    assert session.undo() == [0, 4] and session.annotations == {}
    small = np.zeros_like(good[:20])  # of another size and empty: the size is what to tell
    with pytest.raises(SegFlowError, match=r"frame 2: the mask is \d+x20, the frames are"):
        session.add_annotations({0: good, 2: small})
    assert session.annotations == {}


def test_a_temporary_session_saved_to_a_folder_reopens_there(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, weights=base, settings=settings)
    temporary = session.folder
    session.add_annotation(0, _first_mask(masks))
    list(session.run())
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("mine")
    with pytest.raises(SegFlowError, match="must be new or empty"):
        session.save_as(tmp_path / "taken")
    assert (tmp_path / "taken" / "x.txt").read_text() == "mine"
    session.save_as(tmp_path / "saved")
    assert session.folder == tmp_path / "saved" and not temporary.exists()
    reopened = VideoSession.open(tmp_path / "saved", video=frames, weights=base)
    np.testing.assert_array_equal(reopened.labels_volume(), session.labels_volume())
    assert reopened.undo() == [0, 1, 2, 3, 4]  # the undo history travelled with it


def test_new_settings_apply_to_later_work_and_survive_undo(tmp_path, video, settings, base):
    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    wider = SessionSettings(**{**settings.__dict__, "long_side": 192})
    session.reconfigure(wider)
    assert session.geometry.long_side == 192
    with pytest.raises(SegFlowError, match="device"):
        session.reconfigure(SessionSettings(**{**settings.__dict__, "device": "no-such-device"}))
    assert session.settings == wider
    session.undo()
    assert session.settings == wider and not session.annotations
    assert VideoSession.open(tmp_path / "s", video=frames, weights=base).settings == wider


def test_flow_is_stored_at_the_working_size_and_read_at_the_frame_size(tmp_path, video, base):
    frames, masks = video
    settings = SessionSettings(long_side=64, finetune=FinetuneConfig(steps=1, time_budget=None), device="cpu")
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    results = [e for e in session.run() if isinstance(e, FrameResult)]
    stored = np.load(tmp_path / "s" / "results" / "flow" / "00001.npy")
    assert stored.shape == (48, 64, 2) and stored.dtype == np.float16  # 96x128 frames at long side 64
    flow = session.flow(1)
    assert flow.shape == (96, 128, 2)
    np.testing.assert_allclose(flow, results[1].flow, atol=0.01, rtol=1e-3)  # stored as float16
    # values are in frame pixels: a uniform stored motion reads back unchanged
    np.save(tmp_path / "s" / "results" / "flow" / "00001.npy", np.full((48, 64, 2), 2.5, np.float16))
    np.testing.assert_allclose(session.flow(1), 2.5)


def test_a_full_disk_stops_the_run_with_a_clear_message_and_keeps_what_was_written(
    tmp_path, video, settings, base, monkeypatch
):
    import errno

    frames, masks = video
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    original = session_module.write_npy
    calls = {"n": 0}

    def filling_up(array, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        original(array, path)

    monkeypatch.setattr(session_module, "write_npy", filling_up)
    written = []
    with pytest.raises(SegFlowError, match="the disk is full; frame 2 could not be written. The 2 frames"):
        for event in session.run():
            if isinstance(event, FrameResult):
                written.append(event.index)
    assert written == [0, 1]
    assert session.result_frames == [0, 1]
    assert sorted(p.name for p in (tmp_path / "s" / "results" / "labels").iterdir()) == ["00000.png", "00001.png"]
    assert not list((tmp_path / "s" / "results").rglob("*.tmp*"))
    monkeypatch.setattr(session_module, "write_npy", original)
    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    assert reopened.result_frames == [0, 1]


def test_a_session_saved_before_the_mask_prior_opens_with_the_default_fine_tune(tmp_path, video, settings, base):
    frames, masks = video
    VideoSession(frames, tmp_path / "s", weights=base, settings=settings).close()
    state_path = tmp_path / "s" / "session.json"
    state = json.loads(state_path.read_text())
    del state["settings"]["finetune"]["prior_deformation"]
    del state["settings"]["keep_confidence"]
    state_path.write_text(json.dumps(state))
    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    assert reopened.settings.finetune.prior_deformation == FinetuneConfig().prior_deformation
    assert reopened.settings.finetune.prior_deformation.drop_share == 1.0 and reopened.settings.keep_confidence


def test_corrections_fine_tune_with_their_own_batch_and_rate(tmp_path, video, settings, base, recorded_finetunes):
    frames, masks = video
    settings = replace(settings, correction_batch_size=3, correction_learning_rate=1e-4)
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    list(session.run())
    session.add_annotation(3, _first_mask(masks))
    list(session.run())
    first, correction = recorded_finetunes
    assert (first.batch_size, first.learning_rate) == (FinetuneConfig().batch_size, FinetuneConfig().learning_rate)
    assert (correction.batch_size, correction.learning_rate, correction.steps) == (3, 1e-4, settings.correction_steps)


def test_the_user_s_mask_is_carried_onto_the_frames_next_to_it_unless_turned_off(tmp_path, video, settings, base):
    pytest.importorskip("cv2")
    frames, masks = video
    mask = _first_mask(masks)
    truth = masks == masks[0][masks[0] > 0].min()
    scores = {}
    for carry in (False, True):
        session = VideoSession(frames, tmp_path / str(carry), weights=base,
                               settings=replace(settings, carry_user_masks=carry))
        session.add_annotation(0, mask)
        list(session.run())
        labels = session.labels_volume()
        scores[carry] = [region_similarity(labels[t] == 3, truth[t]) for t in (1, 2)]
        assert VideoSession.open(tmp_path / str(carry), video=frames, weights=base).settings.carry_user_masks is carry
    # the tiny untrained network alone barely finds the object; the carried user mask does, next to frame 0
    assert scores[True][0] > 0.7 and scores[True][0] > scores[False][0] + 0.3, scores
    assert scores[True][1] > scores[False][1], scores


@pytest.mark.parametrize(
    ("budget", "round_seconds", "propagation", "expected"),
    [
        (20.0, 28.0, 3.0, 20.0),  # a short re-propagation: the correction's own budget
        (20.0, 28.0, 12.0, 16.0),  # a long one: what it leaves of the round
        (20.0, 28.0, 25.0, MIN_CORRECTION_SECONDS),  # longer still: never below the floor
        (None, 28.0, 12.0, 16.0),  # no budget of its own: the round's
        (20.0, None, 12.0, 20.0),  # no round: the budget
        (20.0, 28.0, None, 20.0),  # the pace not measured yet: the budget
        (5.0, 28.0, 25.0, 5.0),  # a budget below the floor stands
    ],
)
def test_a_correction_s_fine_tune_gets_what_its_re_propagation_leaves_of_the_round(
    budget, round_seconds, propagation, expected
):
    settings = SessionSettings(correction_time_budget=budget, correction_round_seconds=round_seconds)
    assert settings.correction_finetune(propagation).time_budget == pytest.approx(expected)


@pytest.mark.parametrize("name", ["correction_time_budget", "correction_round_seconds"])
@pytest.mark.parametrize("value", [0.0, -3.0, float("inf"), float("nan")])
def test_a_correction_s_seconds_must_be_positive(name, value):
    with pytest.raises(SegFlowError, match=name):
        SessionSettings(**{name: value})


def test_the_session_times_its_propagation_and_budgets_the_next_correction_by_it(
    tmp_path, video, settings, base, recorded_finetunes
):
    frames, masks = video
    # no budget of the correction's own: the round's, less the re-propagation at the measured pace
    settings = replace(settings, correction_time_budget=None)
    session = VideoSession(frames, tmp_path / "s", weights=base, settings=settings)
    session.add_annotation(0, _first_mask(masks))
    assert session.next_finetune() == settings.first_finetune()
    started = time.perf_counter()
    list(session.run())
    took = time.perf_counter() - started
    pace = json.loads((tmp_path / "s" / "session.json").read_text())["seconds_per_result"]
    assert 0 < pace * len(frames) <= took
    session.add_annotation(3, _first_mask(masks))
    pending = session.pending_results
    round_seconds = MIN_CORRECTION_SECONDS + 2 * pace * pending
    session.reconfigure(replace(settings, correction_round_seconds=round_seconds))
    assert session.next_finetune().time_budget == pytest.approx(round_seconds - pace * pending)
    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    assert reopened.next_finetune() == session.next_finetune()
    list(reopened.run())
    assert recorded_finetunes[-1].time_budget == pytest.approx(round_seconds - pace * pending)
    assert recorded_finetunes[-1].steps == settings.correction_steps


def test_a_session_saved_before_its_pace_was_kept_budgets_corrections_as_before(tmp_path, video, settings, base):
    frames, masks = video
    settings = replace(settings, correction_time_budget=20.0)
    with VideoSession(frames, tmp_path / "s", weights=base, settings=settings) as session:
        session.add_annotation(0, _first_mask(masks))
        list(session.run())
    state_path = tmp_path / "s" / "session.json"
    state = json.loads(state_path.read_text())
    del state["seconds_per_result"], state["settings"]["correction_round_seconds"]
    state_path.write_text(json.dumps(state))
    reopened = VideoSession.open(tmp_path / "s", video=frames, weights=base)
    reopened.add_annotation(3, _first_mask(masks))
    assert reopened.settings.correction_round_seconds == SessionSettings().correction_round_seconds
    assert reopened.next_finetune().time_budget == 20.0
