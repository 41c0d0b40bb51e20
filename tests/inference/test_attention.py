import torch

from napari_segflow.inference.attention import attention_score


def _probabilities(top, left, confidence=1.0, size=8):
    foreground = torch.zeros(1, 32, 32)
    foreground[:, top : top + size, left : left + size] = confidence
    return torch.stack([1 - foreground, foreground], dim=1)


def test_unsure_pixels_raise_the_score_and_a_sure_mask_scores_zero():
    assert attention_score(_probabilities(10, 10), 5) == 0.0
    half_sure = _probabilities(10, 10, confidence=0.5)
    assert attention_score(half_sure, 0) == 1.0  # every object pixel unsure
    partly = _probabilities(10, 10)
    partly[:, 1, 10:14, 10:18] = 0.6  # half the object's pixels unsure
    partly[:, 0] = 1 - partly[:, 1]
    assert attention_score(partly, 0) == 0.5
    assert attention_score(torch.stack([torch.ones(1, 32, 32), torch.zeros(1, 32, 32)], 1), 3) == 0.0  # no object


def test_the_same_doubt_weighs_more_the_further_the_mask_was_carried():
    half_sure = _probabilities(10, 10, confidence=0.5)
    assert attention_score(half_sure, 9) == 10 * attention_score(half_sure, 0)
    assert attention_score(half_sure, 1) < attention_score(half_sure, 2)
    import pytest

    with pytest.raises(ValueError, match="frames_carried"):
        attention_score(half_sure, -1)


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
