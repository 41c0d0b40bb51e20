"""Where to look: a per-frame score of how likely a frame's mask is wrong, from what propagation already has.

The score is the share of the object's pixels whose foreground probability lies between 0.2 and 0.8 (how unsure the
network is of the object), times the frames the mask was carried over from the user's frame that began its sweep,
plus one (a frame between two user frames, whose mask fuses the carries from both: the two unsure shares weighed as
the masks were, times the frames from the nearer user frame, plus one): the errors a mask gathers grow with the
frames it was carried over, so an unsure frame far from every user frame is likelier wrong than one as unsure next
to it. It reads the stride-4 grid of the network's input; no extra network pass. A score is comparable within a run,
not across videos (the timeline shows it relative to its highest).

Chosen on the validation sequences and ten training sequences (README, "Where to look"): ranked against each
frame's error (1 - J), the unsure share alone, the frames carried alone and the earlier score (the mean of the
unsure share and the mask's disagreement with the previous frame's mask carried by the flow) each ranked worse.

Which frames to suggest repainting (``frames_worth_a_look``) reads the score as a model of the error: each frame's
doubt (its score over the frames it was carried, plus one) times the frames it was carried. A correction at a
frame brings every frame nearer it than any user frame closer to a user frame, so it takes off each such frame's
doubt times the frames by which its carry shortens; the suggestion is the frame where that sum is largest. The
last frame, carried furthest, is worst now, but a correction there shortens the carry of the second half only;
one nearer the middle shortens more (held-out rounds with the frame of the highest damped score, README).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

UNCERTAIN_BAND = (0.2, 0.8)


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
    """Up to ``limit`` frames of a ``count``-frame video to repaint next, best first: the scored frame whose
    correction would take the most modelled error off the video (``correction_gains``). Each suggestion counts as
    a user frame for the next, so the list spreads over the video; user frames and frames without a score (not
    reached yet) are never suggested."""
    users = sorted(set(user_frames))
    anchors = set(users)
    scored = sorted(attention)
    suggested: list[int] = []
    while len(suggested) < limit:
        free = [t for t in scored if t not in anchors]
        if not free:
            break
        if anchors:
            gains = correction_gains(attention, users, anchors, count)
            best = max(free, key=lambda t: (gains[t], -t))  # ties: the earlier frame
        else:  # nothing to carry from: the score alone
            best = max(free, key=lambda t: (attention[t], -t))
        suggested.append(best)
        anchors.add(best)
    return suggested


def correction_gains(attention: dict[int, float], user_frames: Iterable[int], anchors: Iterable[int],
                     count: int) -> np.ndarray:
    """(count,) float64: for each frame c, the modelled error a correction at c would take off the video: the sum
    over scored frames f of doubt(f) * max(0, carried(f) - |f - c|), where doubt(f) is the score over the frames
    from the nearest of ``user_frames`` plus one (as the score was made) and carried(f) the frames to the nearest
    of ``anchors`` (the user frames and any frames already suggested). O(frames): the sum of these tents is
    built from their second differences."""
    frames = np.array(sorted(attention), dtype=np.int64)
    scores = np.array([attention[t] for t in frames], dtype=np.float64)
    users = np.array(sorted(set(user_frames)), dtype=np.int64)
    anchors = np.array(sorted(set(anchors)), dtype=np.int64)
    if frames.size == 0 or anchors.size == 0:
        return np.zeros(count)
    from_user = _distance_to_nearest(frames, users) if users.size else np.zeros_like(frames)
    carried = _distance_to_nearest(frames, anchors)
    doubt = scores / (from_user + 1)
    # a tent of slope doubt, zero at f -/+ carried, peaking at f: second differences +doubt, -2 doubt, +doubt
    pad = int(carried.max()) + 1
    second = np.zeros(count + 2 * pad + 2)
    np.add.at(second, frames - carried + pad, doubt)
    np.add.at(second, frames + pad, -2 * doubt)
    np.add.at(second, frames + carried + pad, doubt)
    return np.cumsum(np.cumsum(second))[pad - 1 : pad - 1 + count]


def _distance_to_nearest(frames: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """For each frame, the distance to the nearest anchor (both sorted int arrays, anchors not empty)."""
    right = np.clip(np.searchsorted(anchors, frames), 0, anchors.size - 1)
    left = np.clip(right - 1, 0, anchors.size - 1)
    return np.minimum(np.abs(frames - anchors[left]), np.abs(frames - anchors[right]))
