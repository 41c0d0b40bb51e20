"""Strict checkpoint files: a format tag, the ModelConfig, the state dict and free-form metadata.

Loading rebuilds the network from the stored config and loads every tensor strictly: a missing or
unexpected key, a shape mismatch or a config that differs from the one expected is a SegFlowError
naming the file. Saving writes a temporary file and renames it, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from napari_segflow.config import ModelConfig
from napari_segflow.errors import SegFlowError

#: The checkpoint the package ships (see weights/MODEL_CARD.md): the starting point of every fine-tune.
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "small.pt"

FORMAT = "napari-segflow-checkpoint"
VERSION = 1


def save_checkpoint(model, path, metadata: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``model`` with its config. ``half`` stores floating-point tensors as float16 (half the size;
    they load back as float32)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "metadata": metadata or {},
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def load_checkpoint(path, expected: ModelConfig | str | None = None, map_location: str = "cpu"):
    """Load (model, metadata). ``expected`` is a preset name or a full ModelConfig the file must hold
    (num_classes may differ from a full config: it is set per fine-tune)."""
    import torch

    from napari_segflow.model.segflow import SegFlowNet

    path = Path(path)
    if not path.is_file():
        raise SegFlowError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise SegFlowError(f"{path}: not a readable checkpoint ({_load_failure(error)})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SegFlowError(f"{path}: not a napari-segflow checkpoint (no '{FORMAT}' tag)")
    if payload.get("version") != VERSION:
        raise SegFlowError(f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    config = ModelConfig.from_dict(payload["config"], source=str(path))
    _check_expected(config, expected, path)
    model = SegFlowNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise SegFlowError(f"{path}: weights do not fit the stored model config: {detail}") from error
    return model, payload.get("metadata", {})


def _check_expected(config: ModelConfig, expected: ModelConfig | str | None, path: Path) -> None:
    if expected is None:
        return
    if isinstance(expected, str):
        if config.preset != expected:
            raise SegFlowError(f"{path}: checkpoint holds preset {config.preset!r}, expected {expected!r}")
        return
    differing = [
        f"{f.name}: file {getattr(config, f.name)!r}, expected {getattr(expected, f.name)!r}"
        for f in fields(ModelConfig)
        if f.name != "num_classes" and getattr(config, f.name) != getattr(expected, f.name)
    ]
    if differing:
        raise SegFlowError(f"{path}: checkpoint config differs from the expected one ({'; '.join(differing)})")


def _load_failure(error: Exception) -> str:
    """torch.load's reason in a line. Its message for a file that is not plain tensors advises loading it with
    ``weights_only=False``, which would run whatever code the file holds: not advice to pass on."""
    message = str(error)
    if "weights_only" in message:
        return "it is not a file of tensors written by torch.save; segflow writes its checkpoints with `segflow train`"
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__
