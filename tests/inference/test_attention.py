import torch

from napari_segflow.inference.attention import attention_score


def _probabilities(top, left, confidence=1.0, size=8):
    foreground = torch.zeros(1, 32, 32)
    foreground[:, top : top + size, left : left + size] = confidence
    return torch.stack([1 - foreground, foreground], dim=1)


def test_a_mask_that_keeps_to_its_expected_place_scores_low_and_one_that_jumps_high():
    expected = _probabilities(10, 10)
    assert attention_score(expected, _probabilities(10, 10)) == 0.0
    moved_a_little = attention_score(expected, _probabilities(10, 11))
    jumped = attention_score(expected, _probabilities(20, 20))
    assert 0 < moved_a_little < 0.2 and jumped == 0.5  # no overlap at all: disagreement 1, certainty full


def test_unsure_pixels_raise_the_score_and_unknown_areas_are_not_compared():
    expected = _probabilities(10, 10)
    assert attention_score(expected, _probabilities(10, 10, confidence=0.5)) > 0.5
    assert attention_score(None, _probabilities(10, 10, confidence=0.5)) == 1.0
    assert attention_score(None, _probabilities(10, 10)) == 0.0
    unknown = torch.zeros_like(expected)  # the carried mask came from outside the image
    assert attention_score(unknown, _probabilities(20, 20)) == 0.0
