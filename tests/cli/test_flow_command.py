"""`segflow flow`: any size, and every bad input one `segflow: error:` line with nothing written."""

import numpy as np
import pytest
from PIL import Image

from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.cli import main
from napari_segflow.data.io import read_flo
from napari_segflow.model.segflow import SegFlowNet


@pytest.fixture()
def weights(tiny_config, tmp_path):
    return str(save_checkpoint(SegFlowNet(tiny_config), tmp_path / "tiny.pt"))


def _images(folder, size, name="a"):
    rng = np.random.default_rng(0)
    image = (rng.random(size + (3,)) * 255).astype(np.uint8)
    first, second = folder / f"{name}1.png", folder / f"{name}2.png"
    Image.fromarray(image).save(first)
    Image.fromarray(np.roll(image, 3, axis=1)).save(second)
    return str(first), str(second)


def test_a_large_pair_is_estimated_at_the_working_size_and_written_at_its_own(tmp_path, weights, capsys):
    first, second = _images(tmp_path, (300, 700))
    out = tmp_path / "f.flo"
    assert main(["flow", first, second, "--out", str(out), "--weights", weights, "--long-side", "256"]) == 0
    assert read_flo(out).shape == (300, 700, 2)
    assert "estimated at 256x110" in capsys.readouterr().out


def test_a_small_pair_keeps_its_size(tmp_path, weights, capsys):
    first, second = _images(tmp_path, (50, 70))
    out = tmp_path / "f.flo"
    assert main(["flow", first, second, "--out", str(out), "--weights", weights]) == 0
    assert read_flo(out).shape == (50, 70, 2)
    assert "estimated at" not in capsys.readouterr().out


@pytest.mark.parametrize("case", ["sizes", "unreadable", "out_is_folder", "out_in_missing_folder", "old_weights"])
def test_bad_input_is_one_clear_line_and_writes_nothing(case, tmp_path, weights, capsys):
    first, second = _images(tmp_path, (64, 64))
    out = tmp_path / "f.flo"
    args = ["flow", first, second, "--out", str(out), "--weights", weights]
    expected = ""
    if case == "sizes":
        args[2] = _images(tmp_path, (64, 80), "b")[1]
        expected = "is 64x64 but .* is 80x64"
    elif case == "unreadable":
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"not an image")
        args[1], expected = str(broken), "broken.png: cannot read this image"
    elif case == "out_is_folder":
        args[4], expected = str(tmp_path), "is a folder"
    elif case == "out_in_missing_folder":
        args[4], expected = str(tmp_path / "missing" / "f.flo"), "the folder .*missing does not exist"
    elif case == "old_weights":
        import torch

        payload = torch.load(weights, weights_only=True)
        for key in ("flow_branch", "pwc_pyramid_channels", "pwc_estimator_channels", "pwc_coarse_radius",
                    "pwc_radius"):
            del payload["config"][key]
        old = tmp_path / "old.pt"
        torch.save(payload, old)
        args[-1], expected = str(old), "old.pt: this checkpoint holds the old FlowNetS flow branch"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segflow: error:"), captured.err
    import re

    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
