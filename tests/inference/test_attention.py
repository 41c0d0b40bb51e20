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


def test_suggestions_pass_over_frames_next_to_a_user_frame_and_spread_over_the_video():
    from napari_segflow.inference.attention import frames_worth_a_look

    # reach: a fifth of 100 frames. Frame 1's 0.9 counts 0.9 / 20 next to user frame 0
    attention = {1: 0.9, 50: 0.5, 51: 0.49, 52: 0.48, 80: 0.3, 95: 0.1}
    suggested = frames_worth_a_look(attention, [0], 100, limit=4)
    # 51 and 52, next to the suggested 50, count a twentieth and a tenth
    assert suggested == [50, 80, 95, 52]
    assert len(frames_worth_a_look(attention, [0], 100, limit=10)) == 6  # frames without a score: not reached yet
    assert frames_worth_a_look(attention, [0, 50], 100, limit=1) == [80]
    assert frames_worth_a_look(attention, [], 100, limit=1) == [1]  # no user frame: the score alone
    # a short video: every free frame once, the user's never
    assert sorted(frames_worth_a_look({t: 0.1 * t for t in range(5)}, [2], 5, limit=10)) == [0, 1, 3, 4]
