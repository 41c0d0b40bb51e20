"""Where to look: a per-frame score of how likely a frame's mask is wrong, from what propagation already has.

Two signs, each in [0, 1], averaged:

- disagreement: the frame's mask against the mask it was expected to have, the previous frame's carried by the
  flow (1 - their soft IoU, over the pixels the carried mask covers); a mask that jumps is suspect;
- uncertainty: the share of the object's pixels whose foreground probability lies between 0.2 and 0.8.

Both read the stride-4 grid of the network's input; no extra network pass.

Which frames to suggest repainting (``frames_worth_a_look``) weighs the score by what a correction there would
add: right after a user's frame the score is high (the next frame is judged against the user's exact mask, so it
shows the network's whole error), yet repainting it teaches the session little that the user's frame did not.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

UNCERTAIN_BAND = (0.2, 0.8)
#: a frame's score counts in full this share of the video away from every user frame (and every frame suggested
#: before it), and in proportion to the distance nearer (chosen on the validation sequences; README)
SUGGESTION_REACH = 0.2


def attention_score(expected: torch.Tensor | None, probabilities: torch.Tensor) -> float:
    """expected: (1, K+1, h, w) the carried mask of the frame before (zeros where unknown), or None;
    probabilities: (1, K+1, h, w) this frame's. Returns the score in [0, 1]."""
    foreground = 1 - probabilities[:, 0].float()
    low, high = UNCERTAIN_BAND
    uncertain = ((foreground > low) & (foreground < high)).sum()
    confident = (foreground >= high).sum()
    uncertainty = float(uncertain / (uncertain + confident).clamp_min(1))
    if expected is None:
        return uncertainty
    known = expected.float().sum(1) > 0.5
    carried = expected[:, 1:].float().sum(1)
    union = torch.maximum(carried, foreground)[known].sum()
    overlap = torch.minimum(carried, foreground)[known].sum()
    disagreement = float(1 - overlap / union) if union > 0.5 else 0.0
    return (disagreement + uncertainty) / 2


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
