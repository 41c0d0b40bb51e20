import pytest
import torch

from napari_segflow.checkpoint import load_checkpoint, save_checkpoint
from napari_segflow.config import preset_config
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet


def test_save_load_round_trips_exactly(tiny_config, tmp_path):
    net = SegFlowNet(tiny_config).eval()
    path = save_checkpoint(net, tmp_path / "model.pt", metadata={"seed": 3})
    loaded, metadata = load_checkpoint(path, expected=tiny_config)
    loaded.eval()
    assert metadata == {"seed": 3} and loaded.config == tiny_config
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.step(images, images).logits, loaded.step(images, images).logits, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_multi_object_head_round_trips(tiny_config, tmp_path):
    net = SegFlowNet(tiny_config)
    net.set_num_objects(3)
    loaded, _ = load_checkpoint(save_checkpoint(net, tmp_path / "k3.pt"), expected=tiny_config)
    assert loaded.config.num_classes == 4


def test_another_preset_is_refused(tiny_config, tmp_path):
    path = save_checkpoint(SegFlowNet(tiny_config), tmp_path / "tiny.pt")
    with pytest.raises(SegFlowError, match="tiny.pt.*differs.*seg_stem_channels"):
        load_checkpoint(path, expected=preset_config("small"))
    paper_like = save_checkpoint(SegFlowNet(preset_config("small", preset="paper")), tmp_path / "p.pt")
    with pytest.raises(SegFlowError, match="p.pt.*preset 'paper', expected 'small'"):
        load_checkpoint(paper_like, expected="small")


def test_wrong_keys_are_refused(tiny_config, tmp_path):
    path = save_checkpoint(SegFlowNet(tiny_config), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "extra.pt")
    with pytest.raises(SegFlowError, match="extra.pt.*Unexpected key"):
        load_checkpoint(tmp_path / "extra.pt")
    del payload["state_dict"]["extra.weight"]
    del payload["state_dict"]["memory.candidate_conv.weight"]
    torch.save(payload, tmp_path / "missing.pt")
    with pytest.raises(SegFlowError, match="missing.pt.*Missing key"):
        load_checkpoint(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["depth"] = 3
    torch.save(payload, tmp_path / "config.pt")
    with pytest.raises(SegFlowError, match="config.pt.*unknown model setting.*depth"):
        load_checkpoint(tmp_path / "config.pt")


def test_damaged_and_foreign_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SegFlowError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(SegFlowError, match="foreign.pt.*not a napari-segflow checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(SegFlowError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"code": print}, tmp_path / "pickled.pt")  # more than tensors: torch's own message says to unpickle it
    with pytest.raises(SegFlowError, match="pickled.pt: not a readable checkpoint") as refused:
        load_checkpoint(tmp_path / "pickled.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tiny_config, tmp_path):
    net = SegFlowNet(tiny_config)
    full = save_checkpoint(net, tmp_path / "full.pt")
    half = save_checkpoint(net, tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    for key, value in net.state_dict().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == value.dtype
        torch.testing.assert_close(restored, value.half().to(value.dtype))
