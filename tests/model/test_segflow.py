import pytest
import torch
import torch.nn.functional as F

from napari_segflow.config import PRESETS, preset_config
from napari_segflow.errors import SegFlowError
from napari_segflow.model.backbone import Bottleneck
from napari_segflow.model.losses import balanced_cross_entropy, multiscale_epe
from napari_segflow.model.segflow import SegFlowNet, build_segflow
from tests.conftest import to_chw


def test_small_preset_fits_the_cpu_budget():
    net = build_segflow("small")
    assert net.parameter_count() <= 8_000_000


def test_paper_preset_has_resnet101_depth_and_full_flownets_channels():
    config = PRESETS["paper"]
    assert config.seg_block == "bottleneck" and config.seg_stage_blocks == (3, 4, 23, 3)
    net = SegFlowNet(config)
    blocks = [m for m in net.appearance_encoder.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 33  # 33 bottlenecks x 3 convs + stem + fc = 101 layers in ResNet-101
    encoder = net.flow_branch.encoder
    assert [encoder.conv1[0].in_channels, encoder.conv1[0].out_channels, encoder.conv1[0].kernel_size] == [
        6,
        64,
        (7, 7),
    ]
    assert encoder.conv6_1[0].out_channels == 1024
    assert net.memory.candidate_conv.kernel_size == (7, 7) and net.memory.hidden_channels == 64


def test_step_shapes_and_flow_scales(tiny_config):
    net = SegFlowNet(tiny_config)
    images = torch.rand(2, 3, 128, 192)
    output = net.step(images, images.flip(-1), return_gates=True)
    assert output.logits.shape == (2, 2, 128, 192)
    assert output.flow.flow.shape == (2, 2, 128, 192)
    # the small preset's cost-volume branch: the full-resolution flow, then its levels at strides 4 to 32
    assert [tuple(f.shape[-2:]) for f in output.flow.flows] == [(128 // s, 192 // s) for s in (1, 4, 8, 16, 32)]
    assert [c.stride for c in output.flow.matching] == [32, 16, 8, 4]
    assert [tuple(d.shape[-2:]) for d in output.flow.decoder] == [(128 // s, 192 // s) for s in (4, 8, 16)]
    assert output.hidden.shape == (2, tiny_config.memory_channels, 16, 24)
    assert 0 <= output.gates.reset.min() and output.gates.update.max() <= 1


def test_bridges_carry_gradients_both_ways(tiny_config):
    """The seg loss reaches the flow decoder (flow -> seg) and the flow loss reaches the seg encoder (seg -> flow)."""
    net = SegFlowNet(tiny_config)
    images = torch.rand(1, 3, 64, 128)
    output = net.step(images, images.roll(3, -1))
    seg_loss, _ = balanced_cross_entropy(output.logits, (images[:, 0] > 0.5).long())
    seg_loss.backward(retain_graph=True)
    assert net.flow_branch.levels["8"].estimator[0][0].weight.grad.abs().sum() > 0
    net.zero_grad()
    flow_loss, _ = multiscale_epe(output.flow.flows, torch.ones(1, 2, 64, 128), weights=output.flow.loss_weights)
    flow_loss.backward()
    assert net.appearance_encoder.stages[2][0].body[0][0].weight.grad.abs().sum() > 0
    # the classifier is not on the flow path
    assert net.readout_head.classifier.weight.grad is None or net.readout_head.classifier.weight.grad.abs().sum() == 0


def test_bridges_can_be_switched_off(tiny_config):
    from dataclasses import replace

    net = SegFlowNet(replace(tiny_config, seg_to_flow_bridges=False, flow_to_seg_bridges=False))
    images = torch.rand(1, 3, 64, 64)
    output = net.step(images, images)
    seg_loss, _ = balanced_cross_entropy(output.logits, (images[:, 0] > 0.5).long())
    seg_loss.backward()
    assert all(p.grad is None for p in net.flow_branch.parameters())


def test_memory_is_one_way_or_two_way(tiny_config):
    net = SegFlowNet(tiny_config).eval()
    frames = torch.rand(1, 4, 3, 64, 64)
    with torch.no_grad():
        one_way = net.segment_clip(frames, return_gates=True)
        two_way = net.segment_clip(frames, bidirectional=True, return_gates=True)
        stepped, hidden = [], None
        for t in range(4):
            partner = t + 1 if t < 3 else 2
            out = net.step(frames[:, t], frames[:, partner], hidden)
            hidden = out.hidden
            stepped.append(out.logits)
    assert one_way.logits.shape == (1, 4, 2, 64, 64)
    torch.testing.assert_close(one_way.logits, torch.stack(stepped, 1))
    assert len(two_way.gates_backward) == 4 and two_way.gates_backward[0] is not None
    assert not torch.allclose(one_way.logits, two_way.logits)
    # the first frame of a forward sweep has seen nothing before it; a backward sweep has
    assert not torch.allclose(two_way.gates_backward[0].update, one_way.gates_forward[0].update)


def test_set_num_objects_keeps_background_and_copies_foreground(tiny_config):
    net = SegFlowNet(tiny_config).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net.step(images, images).logits
        net.set_num_objects(3)
        after = net.step(images, images).logits
    assert net.config.num_classes == 4 and after.shape[1] == 4
    torch.testing.assert_close(after[:, 0], before[:, 0])
    for k in (1, 2, 3):
        torch.testing.assert_close(after[:, k], before[:, 1])
    with pytest.raises(SegFlowError, match="at least 1"):
        net.set_num_objects(0)


def test_stride_four_scores_add_to_the_upsampled_stride_eight_sum(tiny_config):
    from dataclasses import replace

    net = SegFlowNet(replace(tiny_config, fine_scores=True)).eval()
    images = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        appearance = net.encode_appearance(images)
        fused = net.fuse(appearance, net.estimate_flow(images, images, appearance))
        hidden, _ = net.memory(fused.memory_input, None)
        with_fine = net.readout(fused, hidden, size=(64, 128))
        coarse = replace(fused, score4=None)
        without = net.readout(coarse, hidden, size=(16, 32))
        expected = F.interpolate(fused.score4 + without, size=(64, 128), mode="bilinear", align_corners=False)
    assert fused.score4.shape == (1, 2, 16, 32)
    torch.testing.assert_close(with_fine, expected)
    net.train()
    output = net.step(images, images)
    balanced_cross_entropy(output.logits, (images[:, 0] > 0.5).long())[0].backward()
    assert net.score_heads.fuse4[0].weight.grad.abs().sum() > 0


def test_bad_input_sizes_are_named(tiny_config):
    net = SegFlowNet(tiny_config)
    with pytest.raises(SegFlowError, match="multiple of 64"):
        net.step(torch.rand(1, 3, 60, 64), torch.rand(1, 3, 60, 64))
    with pytest.raises(SegFlowError, match="shapes differ"):
        net.estimate_flow(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 128))
    with pytest.raises(SegFlowError, match="unknown model setting"):
        preset_config("small", depth=3)
    with pytest.raises(SegFlowError, match="unknown model preset"):
        build_segflow("huge")


def test_tiny_model_overfits_one_synthetic_clip(tiny_config, synthetic_generator):
    """Segmentation and flow losses on one clip fall by 10x: the whole graph learns."""
    clip = synthetic_generator(3)
    frames = to_chw(clip.frames[:3])[None, :, :, :64, :128].contiguous()
    masks = torch.from_numpy(clip.masks[:3, :64, :128]).long()[None]
    flows = to_chw(clip.flows[:2, :64, :128])[None].contiguous()
    net = SegFlowNet(tiny_config)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss_value():
        output = net.segment_clip(frames)
        seg = sum(balanced_cross_entropy(output.logits[:, t], masks[:, t])[0] for t in range(3))
        flow = sum(
            multiscale_epe(output.flows[t].flows, flows[:, t], weights=output.flows[t].loss_weights)[0]
            for t in range(2)
        )
        return seg + flow

    first = loss_value().item()
    for _ in range(300):
        optimiser.zero_grad()
        loss = loss_value()
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 50)
        optimiser.step()
        if loss.item() < first / 10:
            break
    assert loss_value().item() < first / 10
