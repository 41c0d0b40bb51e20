import math

import pytest
import torch
from scipy import ndimage

from napari_segflow.model.losses import (
    MULTISCALE_WEIGHTS,
    balanced_cross_entropy,
    calibrated_segmentation_loss,
    forward_backward_loss,
    multiscale_epe,
    photometric_loss,
    smoothness_loss,
    temporal_consistency_loss,
)
from napari_segflow.model.warp import backward_warp
from tests.conftest import to_chw


def test_balanced_cross_entropy_matches_equation_one():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 0, 0] = 1  # one foreground pixel of four: w = 1/4
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    p_fg = torch.sigmoid(logits[0, 1] - logits[0, 0])
    w = 0.25
    expected_sum = -(1 - w) * torch.log(p_fg[0, 0]) - w * torch.log(1 - p_fg).flatten()[1:].sum()
    expected = expected_sum / ((1 - w) * 1 + w * 3)
    value, metrics = balanced_cross_entropy(logits, target)
    torch.testing.assert_close(value, expected)
    assert metrics["fg_share"] == pytest.approx(0.25)


def test_balanced_cross_entropy_single_class_is_plain():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    value, _ = balanced_cross_entropy(logits, target)
    torch.testing.assert_close(value, torch.nn.functional.cross_entropy(logits, target))


def test_calibrated_loss_does_not_reward_over_segmenting_a_small_object():
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[0, 8:12, 8:12] = 1  # 16 of 1024 pixels
    exact = torch.full((1, 2, 32, 32), -4.0)
    exact[:, 0] = 4.0
    exact[0, :, 8:12, 8:12] *= -1
    swollen = exact.clone()
    swollen[0, :, 4:16, 4:16] = exact[0, :, 8:12, 8:12].mean((1, 2))[:, None, None]  # 144 pixels called object
    value_exact, metrics = calibrated_segmentation_loss(exact, target)
    value_swollen, _ = calibrated_segmentation_loss(swollen, target)
    assert value_exact < 0.05 and metrics["dice"] < 0.02
    assert value_swollen > value_exact + 0.5
    # the class-balanced loss, by contrast, barely minds the swollen mask
    assert balanced_cross_entropy(swollen, target)[0] < value_swollen / 3


def test_multiscale_epe_of_identical_flows_is_zero():
    target = torch.randn(2, 2, 64, 64) * 5
    flows = tuple(torch.nn.functional.adaptive_avg_pool2d(target / 20, (64 // s, 64 // s)) for s in (4, 8, 16, 32, 64))
    value, metrics = multiscale_epe(flows, target)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert metrics["epe2"] == pytest.approx(0.0, abs=1e-5)


def test_multiscale_epe_reads_in_pixels():
    target = torch.zeros(1, 2, 64, 64)
    flows = [torch.zeros(1, 2, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    flows[0] = flows[0] + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1) / 20  # flow2 off by 1 px
    value, _ = multiscale_epe(tuple(flows), target)
    assert value.item() == pytest.approx(1.0)


def test_multiscale_epe_weights_scales():
    target = torch.zeros(1, 2, 64, 64)
    flows = [torch.zeros(1, 2, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    flows[4] = flows[4] + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # only flow6 is off, by 5 (in /20 units)
    value, metrics = multiscale_epe(tuple(flows), target)
    # flow6 is 1x1: its summed error 5 over flow2's 16x16 pixels, weighted 0.32 against flow2's 0.005, in pixels
    assert value.item() == pytest.approx(MULTISCALE_WEIGHTS[4] / MULTISCALE_WEIGHTS[0] * 5 / (16 * 16) * 20)
    assert metrics["epe6"] == pytest.approx(100.0)


def test_photometric_loss_of_a_perfect_warp_is_about_zero(synthetic_clip):
    frame = to_chw(synthetic_clip.frames[0])[None]
    following = to_chw(synthetic_clip.frames[1])[None]
    flow = to_chw(synthetic_clip.flows[0])[None]
    warped, inside = backward_warp(following, flow)
    # SSIM reads 3x3 windows: keep windows off aliased object edges and off occluded pixels
    edges = ndimage.morphological_gradient(synthetic_clip.instances[0], size=5) > 0
    near_occlusion = ndimage.binary_dilation(synthetic_clip.occlusions[0], iterations=2)
    visible = torch.from_numpy(~near_occlusion & ~edges)[None, None] & inside
    perfect, _ = photometric_loss(frame, warped, visible)
    unwarped, _ = photometric_loss(frame, following, visible)
    assert perfect.item() < 0.005
    assert unwarped.item() > 5 * perfect.item()
    identical, _ = photometric_loss(frame, frame)
    assert identical.item() == pytest.approx(0.0, abs=1e-6)


def test_smoothness_is_zero_for_constant_flow_and_edges_discount_it():
    image = torch.zeros(1, 3, 8, 8)
    flow = torch.ones(1, 2, 8, 8) * 3
    assert smoothness_loss(flow, image)[0].item() == 0.0
    flow[..., 4:] = -3
    flat, _ = smoothness_loss(flow, image)
    image[..., 4:] = 1.0  # an image edge where the flow jumps
    edged, _ = smoothness_loss(flow, image)
    assert flat.item() > 0 and edged.item() == pytest.approx(flat.item() * math.exp(-10))


def test_forward_backward_loss_is_zero_for_consistent_flows():
    forward = torch.zeros(1, 2, 16, 16)
    forward[:, 1] = 2.0
    value, metrics = forward_backward_loss(forward, -forward)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < metrics["occluded_share"] < 0.2  # the bottom rows leave the image
    # backward flow pointing the same way: every pixel fails the occlusion test, and masked pixels cost nothing
    bad, bad_metrics = forward_backward_loss(forward, forward * 0.8)
    assert bad_metrics["occluded_share"] == 1.0 and bad.item() == 0.0
    slightly, _ = forward_backward_loss(forward, -forward * 0.9)
    assert slightly.item() == pytest.approx(0.2, rel=1e-3)


def test_temporal_consistency_of_translated_features():
    features = torch.rand(1, 4, 16, 16)
    following = torch.zeros_like(features)
    following[..., 1:] = features[..., :-1]  # features moved 1 feature-pixel right
    flow = torch.zeros(1, 2, 64, 64)
    flow[:, 0] = 4.0  # 4 image pixels = 1 feature pixel at stride 4
    value, _ = temporal_consistency_loss(features, following, flow)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    still, _ = temporal_consistency_loss(features, following, torch.zeros_like(flow))
    assert still.item() > 0.1
