"""Where to look: a per-frame score of how likely a frame's mask is wrong, from what propagation already has.

Two signs, each in [0, 1], averaged:

- disagreement: the frame's mask against the mask it was expected to have, the previous frame's carried by the
  flow (1 - their soft IoU, over the pixels the carried mask covers); a mask that jumps is suspect;
- uncertainty: the share of the object's pixels whose foreground probability lies between 0.2 and 0.8.

Both read the stride-4 grid of the network's input; no extra network pass.
"""

from __future__ import annotations

import torch

UNCERTAIN_BAND = (0.2, 0.8)


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
