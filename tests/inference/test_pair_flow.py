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


def horizontal_shift(image, next_image, search: int, margin: int) -> int:
    """The whole-pixel horizontal shift in [-search, search] that best maps ``image`` onto ``next_image`` (3, H, W),
    judged away from the ``margin`` the roll wraps around."""
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    errors = [float((image - torch.roll(next_image, -k, dims=-1))[inner].abs().mean())
              for k in range(-search, search + 1)]
    return int(np.argmin(errors)) - search


class ShiftFlow(GradientFlow):
    """One that finds the pair's horizontal shift (whole pixels, up to 4) and adds a bias of its own: a bias
    that looking the other way cancels, as an estimator's own errors partly do."""

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def estimate_flow(self, image, next_image):
        flows = torch.zeros(image.shape[0], 2, *image.shape[-2:])
        for flow, a, b in zip(flows, image, next_image):
            flow[0] = horizontal_shift(a, b, search=4, margin=8) + self.bias
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


class ReachFlow(GradientFlow):
    """One that finds the pair's horizontal shift (whole pixels) but cannot report more than ``reach`` of it, as a
    branch whose coarsest level misses a motion beyond its search range reports only part of it."""

    def __init__(self, reach: int) -> None:
        self.reach = reach

    def estimate_flow(self, image, next_image):
        flows = torch.zeros(image.shape[0], 2, *image.shape[-2:])
        for flow, a, b in zip(flows, image, next_image):
            flow[0] = float(np.clip(horizontal_shift(a, b, search=10, margin=12), -self.reach, self.reach))
        return SimpleNamespace(flow=flows)


def test_refinement_finds_the_motion_left_after_warping_beyond_one_estimate_reach():
    from napari_segflow.inference.pair_flow import refined_pair_flow

    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    second = np.roll(first, 7, axis=1)  # 7 px right, beyond the estimator's reach of 4
    centre = (slice(None), slice(12, 60))
    unrefined = refined_pair_flow(ReachFlow(4), first, second, rounds=0, polish_rounds=0)
    np.testing.assert_allclose(unrefined[centre][..., 0], 4.0, atol=1e-4)
    once = refined_pair_flow(ReachFlow(4), first, second, rounds=1, polish_rounds=0)
    np.testing.assert_allclose(once[centre][..., 0], 7.0, atol=1e-4)  # 4, then the 3 left
    np.testing.assert_allclose(once[..., 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(
        refined_pair_flow(ReachFlow(4), first, second, rounds=2, polish_rounds=0)[centre], once[centre], atol=1e-4
    )  # nothing left to find


def test_sample_at_flow_reads_each_pixel_target_and_holds_the_edge_outside():
    from napari_segflow.inference.pair_flow import sample_at_flow

    values = np.arange(20, dtype=np.float32).reshape(4, 5, 1).repeat(2, axis=2)
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0] = 1.5
    sampled = sample_at_flow(values, flow)
    np.testing.assert_allclose(sampled[0, :3, 0], [1.5, 2.5, 3.5])
    np.testing.assert_allclose(sampled[0, 3:, 0], [4.0, 4.0])  # past the last column: the edge value


class RestlessFlow(GradientFlow):
    """One that finds a pair's horizontal shift (whole pixels) but, where there is none, reports motion that is
    not there (the first image's gradients, as a branch's error on small motions follows the texture)."""

    def estimate_flow(self, image, next_image):
        flows = super().estimate_flow(image, next_image).flow
        for flow, a, b in zip(flows, image, next_image):
            shift = horizontal_shift(a, b, search=5, margin=8)
            if shift:
                flow[0], flow[1] = float(shift), 0.0
        return SimpleNamespace(flow=flows)


def test_refinement_keeps_the_flow_before_it_where_the_round_matches_the_images_worse():
    from napari_segflow.inference.pair_flow import refined_pair_flow, sample_at_flow, two_way_pair_flow

    rng = np.random.default_rng(2)
    first = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=1)
    centre = (slice(12, 48), slice(12, 70))
    before = refined_pair_flow(RestlessFlow(), first, second, rounds=0, polish_rounds=0)
    np.testing.assert_allclose(before[centre], np.broadcast_to([3.0, 0.0], before[centre].shape), atol=1e-4)
    # the round's residual on the warped pair is motion that is not there ...
    residual = two_way_pair_flow(RestlessFlow(), first, sample_at_flow(second, before))
    assert np.abs(residual[centre]).mean() > 1.0
    # ... and the images reject it: the flow before the round stays
    after = refined_pair_flow(RestlessFlow(), first, second, rounds=1, polish_rounds=0)
    np.testing.assert_allclose(after[centre], before[centre], atol=1e-4)


def test_mismatch_is_lowest_for_the_true_flow():
    from napari_segflow.inference.pair_flow import mismatch

    rng = np.random.default_rng(3)
    first = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    second = np.roll(first, 2, axis=1)
    flows = [np.full((40, 60, 2), (u, 0.0), np.float32) for u in (0.0, 1.0, 2.0, 3.0)]
    centre = (slice(10, 30), slice(10, 50))
    costs = [mismatch(first, second, flow)[centre].mean() for flow in flows]
    assert int(np.argmin(costs)) == 2 and costs[2] < 1e-3


def test_refined_flow_loses_an_isolated_outlier_to_the_median():
    from napari_segflow.inference.pair_flow import refined_pair_flow

    class OutlierFlow(ShiftFlow):
        def estimate_flow(self, image, next_image):
            flows = super().estimate_flow(image, next_image).flow
            flows[:, :, 30, 40] += 5.0  # one wrong pixel in every pass
            return SimpleNamespace(flow=flows)

    first, second = _pair()
    flow = refined_pair_flow(OutlierFlow(0.0), first, second, rounds=0, polish_rounds=0)
    np.testing.assert_allclose(flow[20:50, 20:80, 0], 2.0, atol=1e-4)
    np.testing.assert_allclose(flow[20:50, 20:80, 1], 0.0, atol=1e-4)


def _smooth_texture(seed: int, shape=(64, 96)) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (*shape, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 256, 0, 255).astype(np.uint8)


def _shifted(image: np.ndarray, dx: float) -> np.ndarray:
    import cv2

    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), image.shape[1::-1], flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def test_polish_settles_the_sub_pixel_motion_whole_pixel_estimates_miss():
    from napari_segflow.inference.pair_flow import polished_flow

    first = _smooth_texture(4)
    second = _shifted(first, 1.4)  # second(x) = first(x - 1.4): the flow is 1.4 px along x
    start = np.zeros((*first.shape[:2], 2), np.float32)
    start[..., 0] = 1.0  # a whole-pixel estimate, as the branch's upsampled flow is coarse
    untouched = start.copy()
    polished = polished_flow(first, second, start, rounds=8)
    centre = (slice(12, 52), slice(12, 84))
    assert np.abs(polished[centre][..., 0] - 1.4).mean() < 0.1 < np.abs(start[centre][..., 0] - 1.4).mean()
    assert np.abs(polished[centre][..., 1]).mean() < 0.1
    np.testing.assert_array_equal(start, untouched)  # OpenCV refines in place; the caller's flow is kept
    np.testing.assert_array_equal(polished_flow(first, second, start, rounds=0), start)


def test_refined_flow_is_polished_as_asked():
    from napari_segflow.inference.pair_flow import polished_flow, refined_pair_flow

    first = _smooth_texture(5)
    second = _shifted(first, 2.4)
    unpolished = refined_pair_flow(ShiftFlow(0.0), first, second, rounds=0, polish_rounds=0)
    polished = refined_pair_flow(ShiftFlow(0.0), first, second, rounds=0, polish_rounds=3)
    np.testing.assert_allclose(polished, polished_flow(first, second, unpolished, rounds=3), atol=1e-5)
    centre = (slice(12, 52), slice(12, 84))
    assert np.abs(polished[centre][..., 0] - 2.4).mean() < np.abs(unpolished[centre][..., 0] - 2.4).mean()


def test_a_pair_larger_than_the_working_size_is_polished_there_and_scaled_back():
    from napari_segflow.inference.pair_flow import refined_pair_flow

    first = _smooth_texture(6, (128, 192))
    second = _shifted(first, 1.6)  # 0.8 px at the working size, half the images' own
    unpolished = refined_pair_flow(ShiftFlow(0.0), first, second, long_side=96, rounds=0, polish_rounds=0)
    polished = refined_pair_flow(ShiftFlow(0.0), first, second, long_side=96, rounds=0, polish_rounds=8)
    assert polished.shape == (128, 192, 2) and polished.dtype == np.float32
    centre = (slice(24, 104), slice(24, 168))
    assert np.abs(polished[centre][..., 0] - 1.6).mean() < 0.15 < np.abs(unpolished[centre][..., 0] - 1.6).mean()
    assert np.abs(polished[centre][..., 1]).mean() < 0.15
