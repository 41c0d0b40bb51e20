import pytest
import torch
import torch.nn.functional as F

from napari_segflow.model.correlation import (
    centred_unit_features,
    displacements,
    local_correlation,
    matching_loss,
    soft_argmax_flow,
)


def _shifted(dx: int, dy: int):
    """Random features and the same shifted so that second(p + (dx, dy)) = first(p)."""
    first = torch.randn(1, 16, 20, 30)
    return first, torch.roll(first, shifts=(dy, dx), dims=(2, 3))


def test_correlation_peaks_at_the_shift_and_soft_argmax_reads_it():
    first, second = _shifted(2, -1)
    unit_first, unit_second = centred_unit_features(first, second)
    cost = local_correlation(unit_first, unit_second, 3) * 16  # cosines
    inner = (slice(None), slice(None), slice(4, 16), slice(4, 26))  # away from the wrapped border
    peak = cost[inner].argmax(1)
    assert (displacements(3, cost)[peak.flatten()] == torch.tensor([2.0, -1.0])).all()
    assert cost[inner].max(1).values.min() == pytest.approx(1.0, abs=1e-5)
    flow = soft_argmax_flow(cost * 30, 3, 1.0)[inner]
    torch.testing.assert_close(flow.mean((2, 3))[0], torch.tensor([2.0, -1.0]), atol=1e-3, rtol=0)


def test_correlation_outside_the_image_is_zero():
    ones = torch.ones(1, 4, 5, 5)
    cost = local_correlation(ones, ones, 1)
    # top-left pixel: displacements with dx = -1 or dy = -1 read padding
    assert cost[0, :, 0, 0].tolist() == [0, 0, 0, 0, 1, 1, 0, 1, 1]


def _correlation_by_definition(first, second, radius):
    height, width = first.shape[-2:]
    padded = F.pad(second, (radius,) * 4)
    size = 2 * radius + 1
    return torch.stack(
        [(first * padded[:, :, dy : dy + height, dx : dx + width]).mean(1) for dy in range(size) for dx in range(size)],
        dim=1,
    )


@pytest.mark.parametrize(("width", "tile", "channels_last"), [(30, 16, False), (7, 16, True), (33, 8, True)])
def test_correlation_by_tiles_equals_the_definition_and_its_gradient(width, tile, channels_last):
    first = torch.randn(2, 5, 9, width, requires_grad=True)
    second = torch.randn(2, 5, 9, width, requires_grad=True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    cost = local_correlation(first.contiguous(memory_format=layout), second.contiguous(memory_format=layout), 2, tile)
    expected = _correlation_by_definition(first, second, 2)
    torch.testing.assert_close(cost, expected, atol=1e-6, rtol=1e-5)
    weights = torch.randn_like(expected)
    gradients = torch.autograd.grad((cost * weights).sum(), (first, second))
    expected_gradients = torch.autograd.grad((expected * weights).sum(), (first, second))
    for got, want in zip(gradients, expected_gradients):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_centring_removes_what_both_frames_share():
    first, second = _shifted(1, 0)
    unit_first, unit_second = centred_unit_features(first + 5, second + 5)
    expected_first, expected_second = centred_unit_features(first, second)
    torch.testing.assert_close(unit_first, expected_first)
    torch.testing.assert_close(unit_norm := unit_second.norm(dim=1), torch.ones_like(unit_norm))


def test_matching_loss_is_low_at_the_true_displacement_and_skips_what_it_cannot_reach():
    radius, size = 2, 5
    offset = torch.zeros(1, 2, 3, 3)
    offset[:, 0] = 1.0  # one to the right: bin (dy=0, dx=+1)
    valid = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    right = torch.full((1, size * size, 3, 3), -10.0)
    right[:, 2 * size + 3] = 10.0
    wrong = torch.full((1, size * size, 3, 3), -10.0)
    wrong[:, 2 * size + 1] = 10.0
    assert matching_loss(right, offset, radius, valid) < 1e-3
    assert matching_loss(wrong, offset, radius, valid) > 10
    far = torch.full((1, 2, 3, 3), 7.0)
    assert matching_loss(wrong, far, radius, valid) == 0  # beyond the radius: no pixel kept
    half = torch.zeros(1, 2, 3, 3)
    half[:, 0] = 0.5  # splits between dx = 0 and dx = 1
    even = torch.zeros(1, size * size, 3, 3)
    even[:, 2 * size + 2] = even[:, 2 * size + 3] = 10.0
    assert matching_loss(even, half, radius, valid) == pytest.approx(float(-torch.log_softmax(even, 1)[0, 12, 0, 0]))


def test_matching_loss_trains_features_to_match():
    """Gradient descent on the matching loss alone makes a random convolution's features find a shift."""
    torch.manual_seed(0)
    image = F.avg_pool2d(torch.rand(1, 3, 64, 64), 3, 1, 1)
    moved = torch.roll(image, shifts=(0, 2), dims=(2, 3))
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    optimiser = torch.optim.Adam(conv.parameters(), lr=1e-2)
    offset = torch.zeros(1, 2, 64, 64)
    offset[:, 0] = 2.0
    valid = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    valid[..., :4], valid[..., -4:] = False, False

    def loss():
        a, b = centred_unit_features(conv(image), conv(moved))
        return matching_loss(local_correlation(a, b, 3) * 8 * 10, offset, 3, valid)

    before = loss().item()
    for _ in range(60):
        optimiser.zero_grad()
        value = loss()
        value.backward()
        optimiser.step()
    assert loss().item() < before / 2
