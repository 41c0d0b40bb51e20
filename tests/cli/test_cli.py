import sys

import pytest

from napari_segflow.cli import main
from napari_segflow.inference.session import SessionSettings


def test_bench_model_prints_a_table_with_the_peer(capsys):
    assert main(["bench", "--part", "model", "--presets", "small", "--repeats", "1", "--clips", "1"]) == 0
    out = capsys.readouterr().out
    assert "| SegFlow small |" in out and "M |" in out
    assert "OpenCV DIS flow" in out
    assert "Synthetic data:" in out


def test_bad_arguments_exit_with_usage(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--part", "everything"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("with_opencv", [True, False], ids=["with-opencv", "without-opencv"])
def test_demo_runs_on_the_sample_with_the_shipped_weights(tmp_path, monkeypatch, capsys, with_opencv):
    monkeypatch.chdir(tmp_path)  # the sample clip is found from any working folder
    if not with_opencv:  # installed without the bench extra: the peer is left out, the demo runs
        monkeypatch.setitem(sys.modules, "cv2", None)
    assert main(["demo", "--out", "demo", "--finetune-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "bear: SegFlow J" in out
    if with_opencv:
        assert "DIS flow warping J" in out
    else:
        assert "the DIS peer needs OpenCV: pip install opencv-python-headless" in out
    assert len(list((tmp_path / "demo" / "masks").glob("*.png"))) == 82
    assert len(list((tmp_path / "demo" / "flow").glob("*.png"))) == 82
    assert (tmp_path / "demo" / "overview.png").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--part", "model", "--json", "{out}/r.json"], "--json: --part model writes no JSON"),
        (["--part", "engine", "--plot", "{out}/p.png"], "--plot: --part engine draws no plot"),
        (["--part", "interactive", "--json", "{out}/missing/r.json"], "the folder {out}/missing does not exist"),
        (["--part", "interactive", "--plot", "{out}"], "--plot {out} is a folder; name the file to write"),
    ],
)
def test_bench_outputs_are_checked_before_the_work(tmp_path, monkeypatch, capsys, arguments, message):
    from napari_segflow.evaluation import benchmark, interactive

    def no_work(*_, **__):
        raise AssertionError("the bench started")

    monkeypatch.setattr(benchmark, "benchmark_model", no_work)
    monkeypatch.setattr(interactive, "simulate_session", no_work)
    assert main(["bench", *[a.format(out=tmp_path) for a in arguments]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segflow: error:") and message.format(out=tmp_path) in error


def test_bench_takes_ablation_names_that_start_with_a_dash():
    from napari_segflow.cli import build_parser

    args = build_parser().parse_args(
        ["bench", "--part", "accuracy", "--methods", "full", "--methods=-ref", "--methods", "dis", "farneback"]
    )
    assert args.methods == ["full", "-ref", "dis", "farneback"]


def test_bench_accuracy_passes_the_fine_tune_seed(monkeypatch, davis_folder):
    import pytest

    import napari_segflow.evaluation.accuracy as accuracy

    class Captured(Exception):
        pass

    def capture(net, sequences, methods, config, **kwargs):
        raise Captured(config.seed, [s.name for s in sequences], methods)

    monkeypatch.setattr(accuracy, "evaluate", capture)
    with pytest.raises(Captured) as captured:
        main(["bench", "--part", "accuracy", "--davis-root", str(davis_folder), "--sequences", "val",
              "--methods", "full", "--finetune-seed", "2"])
    assert captured.value.args == (2, ["val"], ("full",))


@pytest.mark.parametrize("part", ["engine", "interactive", "box"])
def test_bench_sessions_fine_tune_with_the_seed_asked_for(monkeypatch, davis_folder, part):
    import napari_segflow.evaluation.engine as engine
    import napari_segflow.evaluation.first_masks as first_masks
    import napari_segflow.evaluation.interactive as interactive

    class Captured(Exception):
        pass

    def capture(*args, **kwargs):
        settings = next(a for a in (*args, *kwargs.values()) if isinstance(a, SessionSettings))
        raise Captured(settings.first_finetune().seed, settings.correction_finetune().seed)

    monkeypatch.setattr(engine, "benchmark_engine", capture)
    monkeypatch.setattr(interactive, "simulate_session", capture)
    monkeypatch.setattr(first_masks, "benchmark_first_masks", capture)
    with pytest.raises(Captured) as captured:
        main(["bench", "--part", part, "--davis-root", str(davis_folder), "--sequences", "val", "--clips", "0",
              "--finetune-seed", "3"])
    assert captured.value.args == (3, 3)


@pytest.mark.parametrize("part", ["engine", "interactive", "box", "long"])
@pytest.mark.parametrize("two_way", [False, True])
def test_bench_sessions_use_the_two_way_memory_when_asked(monkeypatch, davis_folder, part, two_way):
    import napari_segflow.evaluation.engine as engine
    import napari_segflow.evaluation.first_masks as first_masks
    import napari_segflow.evaluation.interactive as interactive

    class Captured(Exception):
        pass

    def capture(*args, **kwargs):
        settings = next(a for a in (*args, *kwargs.values()) if isinstance(a, SessionSettings))
        raise Captured(settings.bidirectional)

    monkeypatch.setattr(engine, "benchmark_engine", capture)
    monkeypatch.setattr(engine, "benchmark_long_video", capture)
    monkeypatch.setattr(interactive, "simulate_session", capture)
    monkeypatch.setattr(first_masks, "benchmark_first_masks", capture)
    with pytest.raises(Captured) as captured:
        main(["bench", "--part", part, "--davis-root", str(davis_folder), "--sequences", "val", "--clips", "0",
              "--long-frames", "4", *(["--bidirectional"] if two_way else [])])
    assert captured.value.args == (two_way,)


def test_bench_finetune_fine_tunes_on_the_device_asked_for(monkeypatch):
    import pytest
    import torch

    import napari_segflow.device
    import napari_segflow.training.online as online

    class Captured(Exception):
        pass

    def capture(net, frames, annotations, objects=None, config=None, device="cpu"):
        raise Captured(torch.device(device))

    # a device this machine may not have, as --device names it: the fine-tune must be asked to run there
    monkeypatch.setattr(napari_segflow.device, "choose_device", lambda name: torch.device("meta"))
    monkeypatch.setattr(online, "finetune", capture)
    with pytest.raises(Captured) as captured:
        main(["bench", "--part", "finetune", "--device", "cuda", "--frame-size", "64", "128"])
    assert captured.value.args == (torch.device("meta"),)


@pytest.mark.parametrize("part", ["accuracy", "flow"])
def test_bench_runs_segflow_on_the_device_asked_for(monkeypatch, davis_folder, part):
    import torch

    import napari_segflow.device
    import napari_segflow.evaluation.accuracy as accuracy
    import napari_segflow.evaluation.flow_bench as flow_bench

    class Captured(Exception):
        pass

    def capture_evaluate(net, sequences, methods, config, device="cpu", **kwargs):
        raise Captured(torch.device(device))

    def capture_methods(net, long_side, device="cpu"):
        raise Captured(torch.device(device), next(net.parameters()).device)

    monkeypatch.setattr(napari_segflow.device, "choose_device", lambda name: torch.device("meta"))
    monkeypatch.setattr(accuracy, "evaluate", capture_evaluate)
    monkeypatch.setattr(flow_bench, "standard_methods", capture_methods)
    monkeypatch.setattr(flow_bench, "read_flow_pairs", lambda path: [])
    arguments = {"accuracy": ["--davis-root", str(davis_folder), "--sequences", "val", "--methods", "full"],
                 "flow": []}[part]
    with pytest.raises(Captured) as captured:
        main(["bench", "--part", part, "--device", "cuda", *arguments])
    assert set(captured.value.args) == {torch.device("meta")}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["--clips", "x"], "argument --clips: expected a whole number, got 'x'"),
        (["--threads", "-1"], "argument --threads: must be at least 0, got -1"),
        (["--part", "long", "--long-frames", "1"], "argument --long-frames: must be at least 2, got 1"),
        (["--part", "long", "--frame-size", "0", "10"], "argument --frame-size: must be at least 64, got 0"),
    ],
)
def test_bench_counts_out_of_range_are_usage_errors(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["bench", "demo", "propagate", "eval"])
@pytest.mark.parametrize(("value", "message"), [("nan", "must be a positive number of seconds, got nan"),
                                                ("inf", "must be a positive number of seconds, got inf"),
                                                ("0", "must be a positive number of seconds, got 0"),
                                                ("soon", "expected a number of seconds, got 'soon'")])
def test_fine_tune_seconds_that_are_not_a_positive_number_are_usage_errors(capsys, command, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "somewhere", "--finetune-seconds", value] if command in ("propagate", "eval")
             else [command, "--finetune-seconds", value])
    assert exit_info.value.code == 2
    assert f"argument --finetune-seconds: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    (["--part", "engine"], "segflow bench --part engine (its classical peers) needs OpenCV: pip install"),
    (["--part", "box"], "segflow bench --part box (its classical peers) needs OpenCV: pip install"),
])
def test_bench_without_opencv_says_what_to_install_before_any_work(monkeypatch, capsys, arguments, message):
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert main(["bench", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"segflow: error: {message}") and error.count("\n") == 1


def test_bench_plot_without_matplotlib_says_what_to_install_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--part", "interactive", "--plot", str(tmp_path / "rounds.png")]) == 2
    assert capsys.readouterr().err.startswith("segflow: error: --plot needs matplotlib: pip install matplotlib")
