import numpy as np
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


def test_suggestions_shorten_the_most_carrying_not_the_longest_carry():
    from napari_segflow.inference.attention import frames_worth_a_look

    # even doubt from user frame 0: the score grows with the carry, highest on the last frame; a correction at c
    # shortens frame f's carry by f - |f - c| where positive, about c(100 - c) + c^2 / 4 in all, largest near
    # c = 200 / 3 (66 and 67 tie exactly; ties go to the earlier frame)
    even = {t: 0.5 * (t + 1) for t in range(1, 100)}
    assert max(even, key=even.get) == 99
    suggested = frames_worth_a_look(even, [0], 100, limit=3)
    assert suggested[0] == 66
    # then the stretches either side: 0..66 at its middle, and 66..99 two thirds in, as from frame 0
    assert suggested[1:] == [33, 88]
    # doubt gathered around one frame draws the suggestion there
    doubtful = {t: (6.0 if 20 <= t <= 30 else 0.5) * (t + 1) for t in range(1, 100)}
    assert 20 <= frames_worth_a_look(doubtful, [0], 100, limit=1)[0] <= 30


def test_suggestions_skip_user_frames_and_frames_not_reached():
    from napari_segflow.inference.attention import frames_worth_a_look

    attention = {1: 0.9, 50: 0.5, 51: 0.49, 52: 0.48, 80: 0.3, 95: 0.1}
    assert len(frames_worth_a_look(attention, [0], 100, limit=10)) == 6  # frames without a score: not reached yet
    assert frames_worth_a_look(attention, [], 100, limit=1) == [1]  # no user frame: the score alone
    # a short video: every free frame once, the user's never
    assert sorted(frames_worth_a_look({t: 0.1 * t for t in range(5)}, [2], 5, limit=10)) == [0, 1, 3, 4]


def test_correction_gains_are_the_doubt_taken_off_each_frame_summed():
    from napari_segflow.inference.attention import correction_gains

    def by_definition(attention, users, anchors, count):
        gains = np.zeros(count)
        for c in range(count):
            for f, score in attention.items():
                doubt = score / (min(abs(f - u) for u in users) + 1)
                gains[c] += doubt * max(0, min(abs(f - a) for a in anchors) - abs(f - c))
        return gains

    rng = np.random.default_rng(0)
    for _ in range(100):
        count = int(rng.integers(2, 40))
        users = set(rng.choice(count, size=int(rng.integers(1, 4))).tolist())
        anchors = users | set(rng.choice(count, size=int(rng.integers(0, 3))).tolist())
        scored = rng.choice(count, size=int(rng.integers(1, count + 1)), replace=False)
        attention = {int(t): float(rng.random() * 5) for t in scored}
        np.testing.assert_allclose(correction_gains(attention, users, anchors, count),
                                   by_definition(attention, users, anchors, count), atol=1e-9)
