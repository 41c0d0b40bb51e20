import sys

import numpy as np
import pytest
from PIL import Image

from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.cli import main
from napari_segflow.data.io import read_flo, read_label_image, write_label_png
from napari_segflow.model.segflow import SegFlowNet

FAST = ["--finetune-steps", "2", "--long-side", "128", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_config):
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(SegFlowNet(tiny_config), path)
    return str(path)


@pytest.fixture()
def frame_folder(tmp_path, synthetic_clip):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(synthetic_clip.frames):
        Image.fromarray((frame * 255).astype(np.uint8)).save(folder / f"shot_{t}.png")
    mask = (synthetic_clip.instances[2] == synthetic_clip.target_id).astype(np.uint8) * 5
    write_label_png(mask, tmp_path / "mask.png")
    return folder


def test_propagate_writes_a_mask_per_frame_named_like_the_frames(tmp_path, frame_folder, tiny_weights, capsys):
    out, flow_out = tmp_path / "masks", tmp_path / "flow"
    code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--out", str(out), "--flow-out", str(flow_out), "--weights", tiny_weights, *FAST])
    assert code == 0
    names = [f"shot_{t}" for t in range(5)]
    assert sorted(p.stem for p in out.glob("*.png")) == names
    np.testing.assert_array_equal(read_label_image(out / "shot_2.png"), read_label_image(tmp_path / "mask.png"))
    for name in names:
        assert set(np.unique(read_label_image(out / f"{name}.png"))) <= {0, 5}
        assert read_flo(flow_out / f"{name}.flo").shape == (96, 128, 2)
    printed = capsys.readouterr().out
    assert "wrote 5 masks" in printed
    suggested = printed.split("frames most worth a look: ")[1].split(" (")[0].split(", ")
    assert sorted(int(t) for t in suggested) == [0, 1, 3, 4]  # every frame but the user's
    rows = (out / "attention.csv").read_text().splitlines()
    assert rows[0] == "frame,name,attention,rank" and len(rows) == 6
    table = [row.split(",") for row in rows[1:]]
    assert [r[1] for r in table] == names and sorted(int(r[3]) for r in table) == [1, 2, 3, 4, 5]
    assert float(table[2][2]) == 0.0 and all(float(r[2]) >= 0 for r in table)  # the user's frame: 0


def test_propagate_refuses_a_mask_of_another_size(tmp_path, frame_folder, tiny_weights, capsys):
    write_label_png(np.ones((10, 10), np.uint8), tmp_path / "small.png")
    code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "small.png"), "--out", str(tmp_path / "o"),
                 "--weights", tiny_weights, *FAST])
    assert code == 2
    assert "small.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_flow_writes_a_full_resolution_flo(tmp_path, frame_folder, tiny_weights, capsys):
    out = tmp_path / "pair.flo"
    first, second = frame_folder / "shot_0.png", frame_folder / "shot_1.png"
    assert main(["flow", str(first), str(second), "--out", str(out), "--weights", tiny_weights]) == 0
    flow = read_flo(out)
    assert flow.shape == (96, 128, 2) and np.isfinite(flow).all()
    # the command's flow is the refined two-way estimate (inference/pair_flow.py), its rounds as asked
    import torch

    from napari_segflow.checkpoint import load_checkpoint
    from napari_segflow.device import place_model
    from napari_segflow.inference.pair_flow import REFINEMENT_ROUNDS, refined_pair_flow

    net = place_model(load_checkpoint(tiny_weights)[0], torch.device("cpu"))  # as the command places it
    images = [np.asarray(Image.open(path).convert("RGB")) for path in (first, second)]
    np.testing.assert_allclose(flow, refined_pair_flow(net, *images, rounds=REFINEMENT_ROUNDS), atol=1e-4)
    assert main(["flow", str(first), str(second), "--out", str(out), "--weights", tiny_weights,
                 "--refinements", "0"]) == 0
    np.testing.assert_allclose(read_flo(out), refined_pair_flow(net, *images, rounds=0), atol=1e-4)
    assert main(["flow", str(first), str(second), "--out", str(out), "--weights", tiny_weights,
                 "--polish", "0"]) == 0
    np.testing.assert_allclose(read_flo(out), refined_pair_flow(net, *images, polish_rounds=0), atol=1e-4)
    capsys.readouterr()
    for option in ("--refinements", "--polish"):
        assert main(["flow", str(first), str(second), "--out", str(tmp_path / "n.flo"), "--weights", tiny_weights,
                     option, "-1"]) == 2
        assert f"{option} must be 0 or more" in capsys.readouterr().err
        assert not (tmp_path / "n.flo").exists()
    Image.new("RGB", (50, 40)).save(tmp_path / "other.png")
    assert main(["flow", str(first), str(tmp_path / "other.png"), "--out", str(tmp_path / "x.flo"),
                 "--weights", tiny_weights]) == 2
    assert "same size" in capsys.readouterr().err
    assert not (tmp_path / "x.flo").exists()


def test_eval_scores_every_sequence_and_writes_predictions(tmp_path, davis_folder, tiny_weights, capsys):
    out = tmp_path / "pred"
    assert main(["eval", str(davis_folder), "--out", str(out), "--weights", tiny_weights, *FAST]) == 0
    table = capsys.readouterr().out
    for name in ("alpha", "beta", "val", "mean"):
        assert f"| {name} |" in table
    assert len(list((out / "beta").glob("*.png"))) == 5


def test_bench_engine_sets_the_session_beside_both_peers(davis_folder, tiny_weights, capsys):
    code = main(["bench", "--part", "engine", "--davis-root", str(davis_folder), "--sequences", "alpha",
                 "--clips", "1", "--weights", tiny_weights, "--finetune-seconds", "5", *FAST])
    assert code == 0
    table = capsys.readouterr().out
    for method in ("SegFlow session", "DIS flow warping", "Farneback flow warping"):
        assert table.count(method) >= 2
    assert "| real (1) |" in table and "| synthetic (1) |" in table
    assert "peak RSS" in table and "J&F" in table


def test_propagate_takes_several_annotated_frames_and_keeps_each(tmp_path, frame_folder, synthetic_clip,
                                                                  tiny_weights, capsys):
    later = (synthetic_clip.instances[4] == synthetic_clip.target_id).astype(np.uint8) * 5
    write_label_png(later, tmp_path / "later.png")
    out = tmp_path / "masks"
    code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--mask", str(tmp_path / "later.png"), "--frame", "4", "--out", str(out),
                 "--weights", tiny_weights, *FAST])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.stem for p in out.glob("*.png")) == [f"shot_{t}" for t in range(5)]
    np.testing.assert_array_equal(read_label_image(out / "shot_2.png"), read_label_image(tmp_path / "mask.png"))
    np.testing.assert_array_equal(read_label_image(out / "shot_4.png"), later)
    assert len((out / "attention.csv").read_text().splitlines()) == 6


def test_propagate_takes_an_empty_mask_among_several_as_no_object_there(tmp_path, frame_folder, tiny_weights,
                                                                          capsys):
    write_label_png(np.zeros((96, 128), np.uint8), tmp_path / "gone.png")
    out = tmp_path / "masks"
    code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--mask", str(tmp_path / "gone.png"), "--frame", "4", "--out", str(out),
                 "--weights", tiny_weights, *FAST])
    assert code == 0, capsys.readouterr().err
    assert not read_label_image(out / "shot_4.png").any()
    np.testing.assert_array_equal(read_label_image(out / "shot_2.png"), read_label_image(tmp_path / "mask.png"))


def test_without_opencv_propagate_and_the_box_run_and_flow_says_what_to_install(tmp_path, frame_folder,
                                                                                 synthetic_clip, tiny_weights,
                                                                                 capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # installed without the bench extra
    ys, xs = np.nonzero(synthetic_clip.instances[2] == synthetic_clip.target_id)
    out = tmp_path / "masks"
    code = main(["propagate", str(frame_folder), "--box", str(xs.min()), str(ys.min()), str(xs.max() + 1),
                 str(ys.max() + 1), "--frame", "2", "--out", str(out), "--weights", tiny_weights, *FAST])
    assert code == 0, capsys.readouterr().err
    assert len(list(out.glob("*.png"))) == 5
    capsys.readouterr()
    first, second = sorted(frame_folder.glob("*.png"))[:2]
    code = main(["flow", str(first), str(second), "--out", str(tmp_path / "f.flo"), "--weights", tiny_weights])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert error.startswith("segflow: error: segflow flow (its refinement and polish) needs OpenCV: pip install")
    assert not (tmp_path / "f.flo").exists()


def test_propagate_goes_on_with_a_saved_session_a_correction_at_a_time(tmp_path, frame_folder, synthetic_clip,
                                                                       tiny_weights, capsys):
    from napari_segflow.inference.session import VideoSession

    session = tmp_path / "session"
    first = tmp_path / "first"
    assert main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--session", str(session), "--out", str(first), "--weights", tiny_weights, *FAST]) == 0
    correction = (synthetic_clip.instances[4] == synthetic_clip.target_id).astype(np.uint8) * 5
    write_label_png(correction, tmp_path / "correction.png")
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["propagate", str(frame_folder), "--session", str(session), "--mask",
                 str(tmp_path / "correction.png"), "--frame", "4", "--out", str(again), *FAST]) == 0
    # only the stretch from the neighbouring user frame (2) to the correction was propagated again
    assert f"wrote 5 masks to {again} (3 propagated again in the session {session})" in capsys.readouterr().out
    assert sorted(p.stem for p in again.glob("*.png")) == [f"shot_{t}" for t in range(5)]
    np.testing.assert_array_equal(read_label_image(again / "shot_4.png"), correction)
    for t in (0, 1):  # beyond the neighbouring user frame: kept
        np.testing.assert_array_equal(read_label_image(again / f"shot_{t}.png"),
                                      read_label_image(first / f"shot_{t}.png"))
    assert len((again / "attention.csv").read_text().splitlines()) == 6
    reopened = VideoSession.open(session)
    assert sorted(reopened.annotations) == [2, 4] and reopened.pending_stretches() == []
    assert sorted(reopened.attention) == [0, 1, 2, 3, 4]
    write_label_png(np.zeros_like(correction), tmp_path / "gone.png")  # one correction alone may say "not here"
    assert main(["propagate", str(frame_folder), "--session", str(session), "--mask", str(tmp_path / "gone.png"),
                 "--frame", "0", "--out", str(tmp_path / "gone"), *FAST]) == 0
    assert not read_label_image(tmp_path / "gone" / "shot_0.png").any()
    np.testing.assert_array_equal(read_label_image(tmp_path / "gone" / "shot_4.png"), correction)
    capsys.readouterr()
    assert main(["propagate", str(frame_folder), "--session", str(session), "--out", str(tmp_path / "same"),
                 *FAST]) == 0  # nothing new: the masks as they are
    assert f"wrote 5 masks to {tmp_path / 'same'} (0 propagated again" in capsys.readouterr().out
    np.testing.assert_array_equal(read_label_image(tmp_path / "same" / "shot_3.png"),
                                  read_label_image(again / "shot_3.png"))
    other = tmp_path / "other.npy"
    np.save(other, (synthetic_clip.frames * 255).astype(np.uint8))
    assert main(["propagate", str(other), "--session", str(session), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert f"holds the session of {frame_folder.resolve()}, not of {other}" in capsys.readouterr().err


def test_a_continued_session_that_keeps_flow_writes_every_frames_flow(tmp_path, frame_folder, synthetic_clip,
                                                                      tiny_weights, capsys):
    """A session made where flow is kept (the widget's default) gives --flow-out the flow of the frames it did
    not propagate again too, not only of the stretch a correction re-ran."""
    from napari_segflow.inference.session import SessionSettings, VideoSession
    from napari_segflow.training.online import FinetuneConfig

    folder = tmp_path / "session"
    settings = SessionSettings(long_side=128, finetune=FinetuneConfig(steps=2, time_budget=None), correction_steps=2,
                               correction_time_budget=None, device="cpu", keep_flow=True)
    with VideoSession(frame_folder, folder, weights=tiny_weights, settings=settings) as session:
        session.add_annotation(2, read_label_image(tmp_path / "mask.png"))
        for _ in session.run():
            pass
        kept = [t for t in range(len(session.frames)) if session.flow(t) is not None]
    correction = (synthetic_clip.instances[4] == synthetic_clip.target_id).astype(np.uint8) * 5
    write_label_png(correction, tmp_path / "correction.png")
    flows = tmp_path / "flows"
    flows.mkdir()
    capsys.readouterr()
    assert main(["propagate", str(frame_folder), "--session", str(folder), "--mask", str(tmp_path / "correction.png"),
                 "--frame", "4", "--out", str(tmp_path / "again"), "--flow-out", str(flows), *FAST]) == 0
    assert len(kept) > 3  # more frames than the correction propagates again
    assert sorted(p.stem for p in flows.glob("*.flo")) == [f"shot_{t}" for t in kept]
    assert f"(3 propagated again in the session {folder}) and {len(kept)} flow fields" in capsys.readouterr().out
    np.testing.assert_allclose(read_flo(flows / "shot_0.flo"), VideoSession.open(folder).flow(0))


def test_propagate_finishes_what_a_stopped_run_left_in_its_session(tmp_path, frame_folder, tiny_weights, capsys,
                                                                   monkeypatch):
    from napari_segflow.data import io

    session, out = tmp_path / "session", tmp_path / "masks"
    real_write = io.write_label_png  # the command takes its writer from io when it runs
    count = {"n": 0}

    def stop_after_two(labels, path):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third mask is written
        real_write(labels, path)

    monkeypatch.setattr(io, "write_label_png", stop_after_two)
    assert main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--session", str(session), "--out", str(out), "--weights", tiny_weights, *FAST]) == 130
    monkeypatch.setattr(io, "write_label_png", real_write)
    assert len(list(out.glob("*.png"))) == 2
    capsys.readouterr()
    assert main(["propagate", str(frame_folder), "--session", str(session), "--out", str(out), *FAST]) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == [f"shot_{t}" for t in range(5)]
    assert "(5 propagated again" in capsys.readouterr().out  # the stopped run's stretches, whole


def test_propagate_from_a_box_makes_the_first_mask_then_runs(tmp_path, frame_folder, synthetic_clip, tiny_weights,
                                                            capsys):
    ys, xs = np.nonzero(synthetic_clip.instances[2] == synthetic_clip.target_id)
    out = tmp_path / "masks"
    code = main(["propagate", str(frame_folder), "--box", str(xs.min()), str(ys.min()), str(xs.max() + 1),
                 str(ys.max() + 1), "--frame", "2", "--out", str(out), "--weights", tiny_weights, *FAST])
    error = capsys.readouterr().err
    assert code == 0, error
    assert "first mask from the box" in error
    first = read_label_image(out / "shot_2.png")
    assert set(np.unique(first)) == {0, 1}
    assert not first[: ys.min()].any() and not first[:, xs.max() + 1:].any()
    assert sorted(p.stem for p in out.glob("*.png")) == [f"shot_{t}" for t in range(5)]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mask", "{mask}", "--frame", "1", "--mask", "{mask}"], "--frame: 2 --mask and 1 --frame"),
        (["--mask", "{mask}", "--mask", "{mask}"], "--frame: 2 masks were given"),
        (["--mask", "{mask}", "--frame", "3", "--mask", "{mask}", "--frame", "3"], "--frame 3: given for more"),
        (["--mask", "{mask}", "--frame", "5"], "--frame 5: out of range, the video has 5 frames"),
        (["--mask", "{empty}"], "--mask {empty} (frame 0): {empty}: the mask holds no object"),
        (["--mask", "{empty}", "--frame", "0", "--mask", "{empty}", "--frame", "3"], "--mask: every mask is empty"),
        (["--mask", "{mask}", "--out", "{file}"], "--out {file} is a file"),
        (["--mask", "{mask}", "--flow-out", "{file}"], "--flow-out {file} is a file"),
        (["--mask", "{mask}", "--session", "{damaged}"], "damaged session file"),
        (["--mask", "{mask}", "--session", "{session}"], "session format None, expected 1, so the session there"),
        ([], "--mask: give the annotated frame's label image"),
        (["--box", "10", "10", "10", "40"], "--box: box (10, 10)-(10, 40) has no area"),
        (["--box", "200", "10", "300", "40"], "lies outside the 128x96 frame"),
        (["--box", "10", "10", "40", "40", "--mask", "{mask}"], "--box: give the first mask as --mask or as --box"),
        (["--box", "10", "10", "40", "40", "--frame", "7"], "--frame 7: out of range"),
    ],
)
def test_propagate_bad_input_is_one_line_before_any_work(tmp_path, frame_folder, tiny_weights, capsys, extra,
                                                        message):
    places = {"mask": str(tmp_path / "mask.png"), "file": str(tmp_path / "a_file.txt"),
              "damaged": str(tmp_path / "damaged"), "session": str(tmp_path / "session"),
              "empty": str(tmp_path / "empty.png")}
    write_label_png(np.zeros((96, 128), np.uint8), tmp_path / "empty.png")
    (tmp_path / "a_file.txt").write_text("keep me")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "session.json").write_text("{cut off")
    (tmp_path / "session").mkdir()
    (tmp_path / "session" / "session.json").write_text("{}")
    arguments = [a.format(**places) for a in extra]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "o")]
    code = main(["propagate", str(frame_folder), *arguments, "--weights", tiny_weights, *FAST])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("segflow: error:") and error.count("\n") == 1
    assert message.format(**places) in error
    assert not (tmp_path / "o").exists()
    assert (tmp_path / "a_file.txt").read_text() == "keep me"
    assert (tmp_path / "damaged" / "session.json").read_text() == "{cut off"


def test_propagate_keeps_pngs_it_did_not_write_in_out(tmp_path, frame_folder, tiny_weights, capsys):
    frames_before = {p.name: p.read_bytes() for p in frame_folder.iterdir()}
    users = tmp_path / "users"
    users.mkdir()
    (users / "shot_3.png").write_bytes(b"the user's own mask")
    for out in (frame_folder, users):  # the video's own frames, a user's folder of masks
        code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                     "--out", str(out), "--weights", tiny_weights, *FAST])
        error = capsys.readouterr().err
        assert code == 2 and error.count("\n") == 1
        assert f"--out {out} already holds" in error and "segflow did not write them" in error
        assert not (out / "attention.csv").exists()
    assert {p.name: p.read_bytes() for p in frame_folder.iterdir()} == frames_before
    assert (users / "shot_3.png").read_bytes() == b"the user's own mask"


def test_propagate_replaces_an_earlier_run_even_one_stopped_midway(tmp_path, frame_folder, tiny_weights, capsys):
    out = tmp_path / "masks"
    arguments = ["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--out", str(out), "--weights", tiny_weights, *FAST]
    assert main(arguments) == 0
    written = (out / "shot_4.png").read_bytes()
    rows = (out / "attention.csv").read_text().splitlines()
    assert len(rows) == 6
    (out / "attention.csv").write_text(rows[0] + "\n")  # as a run stopped before its end leaves it
    (out / "shot_4.png").write_bytes(b"stale")
    assert main(arguments) == 0
    assert (out / "shot_4.png").read_bytes() == written
    assert len((out / "attention.csv").read_text().splitlines()) == 6
    capsys.readouterr()


def test_propagate_refuses_a_frame_folder_of_mixed_sizes_before_any_work(tmp_path, frame_folder, tiny_weights,
                                                                         capsys):
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(frame_folder / "shot_3.png")
    code = main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o"),
                 "--weights", tiny_weights, *FAST])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "shot_3.png (frame 3) is 60x50, the first frame is 128x96" in error
    assert not (tmp_path / "o").exists()


def test_propagate_says_so_when_every_frame_is_annotated(tmp_path, tiny_weights, capsys):
    mask = np.zeros((96, 128), np.uint8)
    mask[30:60, 40:80] = 1
    write_label_png(mask, tmp_path / "mask.png")
    np.save(tmp_path / "one.npy", np.full((1, 96, 128, 3), 90, np.uint8))
    code = main(["propagate", str(tmp_path / "one.npy"), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(tmp_path / "o"), "--weights", tiny_weights, *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 1 masks to" in printed and "; every frame is annotated (" in printed


def test_propagate_writes_each_mask_as_it_comes(tmp_path, frame_folder, tiny_weights, monkeypatch, capsys):
    from napari_segflow.inference.frame_result import FrameResult
    from napari_segflow.inference.session import VideoSession

    out = tmp_path / "masks"
    original, on_disk = VideoSession.run, []

    def run(session):
        for event in original(session):
            if isinstance(event, FrameResult) and event.final:
                on_disk.append(len(list(out.glob("*.png"))))  # masks written before this result is handed on
            yield event

    monkeypatch.setattr(VideoSession, "run", run)
    assert main(["propagate", str(frame_folder), "--mask", str(tmp_path / "mask.png"), "--frame", "2",
                 "--out", str(out), "--weights", tiny_weights, *FAST]) == 0
    assert on_disk == [0, 1, 2, 3, 4]  # a long video's results are not held until its end
    capsys.readouterr()


def test_eval_refuses_an_out_that_is_a_file_before_any_work(tmp_path, davis_folder, tiny_weights, monkeypatch,
                                                            capsys):
    from napari_segflow.inference.session import VideoSession

    def no_work(*_, **__):
        raise AssertionError("a sequence was run")

    monkeypatch.setattr(VideoSession, "run", no_work)
    (tmp_path / "a_file.txt").write_text("keep me")
    code = main(["eval", str(davis_folder), "--out", str(tmp_path / "a_file.txt"), "--weights", tiny_weights, *FAST])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("segflow: error: --out") and "is a file" in error
    assert (tmp_path / "a_file.txt").read_text() == "keep me"
