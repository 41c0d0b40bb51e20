"""Where to look: a per-frame score of how likely a frame's mask is wrong, from what propagation already has.

The score is the share of the object's pixels whose foreground probability lies between 0.2 and 0.8 (how unsure
the network is of the object), times the frames the mask was carried over from the user's frame that began its
sweep, plus one: the errors a mask gathers grow with the frames it was carried over, so an unsure frame far from
every user frame is likelier wrong than one as unsure next to it. It reads the stride-4 grid of the network's
input; no extra network pass. A score is comparable within a run, not across videos (the timeline shows it
relative to its highest).

Chosen on the validation sequences and ten training sequences (README, "Where to look"): ranked against each
frame's error (1 - J), the unsure share alone, the frames carried alone and the earlier score (the mean of the
unsure share and the mask's disagreement with the previous frame's mask carried by the flow) each ranked worse.

Which frames to suggest repainting (``frames_worth_a_look``) weighs the score by what a correction there would
add: right after a user's frame a correction teaches the session little that the user's frame did not.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

UNCERTAIN_BAND = (0.2, 0.8)
#: a frame's score counts in full this share of the video away from every user frame (and every frame suggested
#: before it), and in proportion to the distance nearer (chosen on the validation sequences; README)
SUGGESTION_REACH = 0.2


def attention_score(probabilities: torch.Tensor, frames_carried: int) -> float:
    """probabilities: (1, K+1, h, w) a frame's class probabilities; frames_carried: how many frames its sweep
    carried the mask from the user's frame (0 on that frame). Returns the score, 0 or more."""
    if frames_carried < 0:
        raise ValueError(f"frames_carried must be 0 or more, got {frames_carried}")
    foreground = 1 - probabilities[:, 0].float()
    low, high = UNCERTAIN_BAND
    uncertain = ((foreground > low) & (foreground < high)).sum()
    confident = (foreground >= high).sum()
    return float(uncertain / (uncertain + confident).clamp_min(1)) * (frames_carried + 1)


def frames_worth_a_look(attention: dict[int, float], user_frames: Iterable[int], count: int,
                        limit: int = 5) -> list[int]:
    """Up to ``limit`` frames of a ``count``-frame video to repaint next, best first: each scored frame's
    ``attention`` (frame -> score) times min(1, distance to the nearest user frame / reach), where reach is
    ``SUGGESTION_REACH`` of the video. Each suggestion counts as a user frame for the next, so the list spreads
    over the video; user frames and frames without a score (not reached yet) are never suggested."""
    anchors = set(user_frames)
    reach = max(1.0, SUGGESTION_REACH * count)

    def worth(t: int) -> tuple[float, int]:
        nearest = min((abs(t - a) for a in anchors), default=reach)
        return attention[t] * min(1.0, nearest / reach), -t  # ties: the earlier frame

    suggested: list[int] = []
    candidates = sorted(attention)
    while len(suggested) < limit:
        free = [t for t in candidates if t not in anchors]
        if not free:
            break
        best = max(free, key=worth)
        suggested.append(best)
        anchors.add(best)
    return suggested
