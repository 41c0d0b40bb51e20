from napari_segflow.cli import main


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
