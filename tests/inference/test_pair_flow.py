from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from napari_segflow.inference.pair_flow import segflow_pair_flow


class GradientFlow:
    """A stand-in flow branch that commutes with mirroring, as a good one does: its "flow" is the first image's
    central differences (u along x, v along y), which change sign with the image's axis."""

    def eval(self):
        return self

    def estimate_flow(self, image, next_image):
        grey = F.pad(image.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        u = grey[..., 1:-1, 2:] - grey[..., 1:-1, :-2]
        v = grey[..., 2:, 1:-1] - grey[..., :-2, 1:-1]
        return SimpleNamespace(flow=torch.cat([u, v], dim=1) * 10)


class ConstantFlow(GradientFlow):
    """One that does not: the same motion whatever the images."""

    def estimate_flow(self, image, next_image):
        flow = torch.zeros(image.shape[0], 2, *image.shape[-2:])
        flow[:, 0], flow[:, 1] = 3.0, -2.0
        return SimpleNamespace(flow=flow)


def _pair():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)
    return first, np.roll(first, 2, axis=1)


def test_mirrored_passes_are_mirrored_back_exactly():
    first, second = _pair()
    one = segflow_pair_flow(GradientFlow(), first, second, mirrored=False)
    assert one.shape == (70, 100, 2) and np.abs(one).max() > 1
    np.testing.assert_allclose(segflow_pair_flow(GradientFlow(), first, second), one, atol=1e-4)
    # an estimator that ignores the images is not undone: its mirrored passes vote for mirrored motions
    constant = segflow_pair_flow(ConstantFlow(), first, second)
    np.testing.assert_allclose(constant[..., 0], 1.0, atol=1e-5)  # (3 - 3 + 3) / 3
    np.testing.assert_allclose(constant[..., 1], -2 / 3, atol=1e-5)  # (-2 - 2 + 2) / 3


class ShiftFlow(GradientFlow):
    """One that finds the pair's horizontal shift (whole pixels, up to 4) and adds a bias of its own: a bias
    that looking the other way cancels, as an estimator's own errors partly do."""

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def estimate_flow(self, image, next_image):
        flows = torch.zeros(image.shape[0], 2, *image.shape[-2:])
        for flow, a, b in zip(flows, image, next_image):
            errors = [float((a - torch.roll(b, -k, dims=-1))[..., 8:-8, 8:-8].abs().mean()) for k in range(-4, 5)]
            flow[0] = int(np.argmin(errors)) - 4 + self.bias
        return SimpleNamespace(flow=flows)


def test_two_way_flow_averages_where_the_ways_agree_and_keeps_the_forward_flow_elsewhere():
    from napari_segflow.inference.pair_flow import two_way_pair_flow

    first, second = _pair()  # the second is the first moved 2 px right
    forward = segflow_pair_flow(ShiftFlow(0.6), first, second)
    np.testing.assert_allclose(forward[..., 0], 2.2, atol=1e-4)  # mirrored passes: 2 + (0.6 - 0.6 + 0.6) / 3
    both = two_way_pair_flow(ShiftFlow(0.6), first, second)
    np.testing.assert_allclose(both[:, :97, 0], 2.0, atol=1e-4)  # the bias cancels, the motion stays
    np.testing.assert_allclose(both[..., 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(both[:, 97:, 0], 2.2, atol=1e-4)  # landing past the last column: forward kept
    # ways that fail to undo each other by more than the agreement: the forward flow as it was
    far = two_way_pair_flow(ShiftFlow(9.0), first, second)
    np.testing.assert_allclose(far, segflow_pair_flow(ShiftFlow(9.0), first, second), atol=1e-5)
