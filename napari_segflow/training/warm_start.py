"""Warm starts: a training stage begins from the previous stage's checkpoint, tensor by tensor, strictly.

Every tensor of the new network is taken from the file unless its name starts with one of ``fresh`` (those keep
their fresh initialisation: a part whose design changed). Anything else that does not match, a tensor missing
from the file, one the network lacks, or one of another shape, is an error naming the file and the tensors: a
warm start never loads part of a model silently.
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_segflow.errors import SegFlowError


def warm_start(net: torch.nn.Module, path, fresh: tuple[str, ...] = ()) -> list[str]:
    """Copy the checkpoint's tensors into ``net``; returns the names copied."""
    from napari_segflow.checkpoint import load_checkpoint

    path = Path(path)
    source, _ = load_checkpoint(path)
    loaded = source.state_dict()
    target = net.state_dict()
    is_fresh = lambda key: any(key.startswith(prefix) for prefix in fresh)  # noqa: E731
    missing = sorted(k for k in target if k not in loaded and not is_fresh(k))
    unexpected = sorted(k for k in loaded if k not in target and not is_fresh(k))
    reshaped = sorted(
        f"{k} {tuple(loaded[k].shape)} -> {tuple(v.shape)}"
        for k, v in target.items()
        if k in loaded and not is_fresh(k) and loaded[k].shape != v.shape
    )
    problems = [
        f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for label, keys in (("missing from the file", missing), ("not in the network", unexpected),
                            ("of another shape", reshaped))
        if keys
    ]
    if problems:
        raise SegFlowError(
            f"{path}: cannot warm-start from this checkpoint ({'; '.join(problems)}); list the parts that changed "
            "in init_fresh"
        )
    copied = [k for k in target if not is_fresh(k)]
    with torch.no_grad():
        for key in copied:
            target[key].copy_(loaded[key])
    return copied
