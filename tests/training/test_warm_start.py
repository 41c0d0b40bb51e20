from dataclasses import replace

import pytest
import torch

from napari_segflow.checkpoint import save_checkpoint
from napari_segflow.errors import SegFlowError
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.warm_start import warm_start


def test_every_tensor_is_copied(tiny_config, tmp_path):
    source = SegFlowNet(tiny_config)
    path = save_checkpoint(source, tmp_path / "stage.pt")
    torch.manual_seed(1)
    target = SegFlowNet(tiny_config)
    copied = warm_start(target, path)
    assert len(copied) == len(target.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_a_changed_part_is_an_error_unless_it_starts_fresh(tiny_config, tmp_path):
    path = save_checkpoint(SegFlowNet(tiny_config), tmp_path / "stage.pt")
    wider = SegFlowNet(replace(tiny_config, pwc_estimator_channels=(16, 12, 12)))
    with pytest.raises(SegFlowError, match=r"stage.pt: cannot warm-start.*of another shape: flow_branch"):
        warm_start(wider, path)
    fresh_before = {k: v.clone() for k, v in wider.state_dict().items()}
    copied = warm_start(wider, path, fresh=("flow_branch.", "score_heads.bridges."))
    assert copied and not any(k.startswith("flow_branch.") for k in copied)
    assert torch.equal(wider.state_dict()["flow_branch.upsampler.mask.1.weight"],
                       fresh_before["flow_branch.upsampler.mask.1.weight"])
    without_bridges = SegFlowNet(replace(tiny_config, seg_to_flow_bridges=False))
    with pytest.raises(SegFlowError, match="not in the network: seg_to_flow"):
        warm_start(without_bridges, path)
