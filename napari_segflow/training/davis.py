"""DAVIS-style sequence folders: ``<seq>/frames/*.jpg`` with ``<seq>/masks/*.png``, or the official layout
``JPEGImages/480p/<seq>`` with ``Annotations/480p/<seq>``. Checked on opening; frames load on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_segflow.data.io import is_frame_file, open_video, read_label_image
from napari_segflow.errors import SegFlowError

#: The real sequences the project never trains on, nor chooses weights or settings by: the model card's test.
HELD_OUT = ("bear", "boat", "dance-jump", "kite-walk", "motocross-bumps", "stroller")
#: Training sequences set aside to choose weights and stop phases (validation), never trained on.
VALIDATION = ("car-turn", "dog-agility", "mallard-water")


@dataclass
class Sequence:
    name: str
    frame_folder: Path
    mask_paths: list[Path]

    def __post_init__(self) -> None:
        self.frames = open_video(self.frame_folder)
        if len(self.frames) != len(self.mask_paths):
            raise SegFlowError(
                f"{self.frame_folder}: {len(self.frames)} frames but {len(self.mask_paths)} masks in the mask folder"
            )
        frame_stems = self.frames.names
        mask_stems = [p.stem for p in self.mask_paths]
        if frame_stems != mask_stems:
            first = next(i for i, (a, b) in enumerate(zip(frame_stems, mask_stems)) if a != b)
            raise SegFlowError(
                f"{self.frame_folder}: frame {frame_stems[first]!r} has no mask of the same name "
                f"(mask {mask_stems[first]!r} stands in its place)"
            )
        mask = read_label_image(self.mask_paths[0])
        if mask.shape != self.frames.shape[1:3]:
            raise SegFlowError(
                f"{self.mask_paths[0]}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                f"frames are {self.frames.shape[2]}x{self.frames.shape[1]}"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        return self.frames[index]

    def mask(self, index: int) -> np.ndarray:
        return read_label_image(self.mask_paths[index])

    def object_masks(self) -> np.ndarray:
        """(T, H, W) uint8: 1 on the object (any id), 0 elsewhere, every frame."""
        return np.stack([(self.mask(i) > 0).astype(np.uint8) for i in range(len(self))])


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_frame_file(p))


def find_sequences(root, names: list[str] | None = None, exclude: tuple[str, ...] = ()) -> list[Sequence]:
    """All sequences under ``root`` (either layout), or those named; ``exclude`` names are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise SegFlowError(f"{root}: no such data folder")
    official = root / "JPEGImages" / "480p"
    if official.is_dir():
        pairs = {p.name: (p, root / "Annotations" / "480p" / p.name) for p in official.iterdir() if p.is_dir()}
    else:
        pairs = {p.name: (p / "frames", p / "masks") for p in root.iterdir() if (p / "frames").is_dir()}
    if not pairs:
        raise SegFlowError(f"{root}: no sequences (expected <seq>/frames + <seq>/masks, or JPEGImages/480p/<seq>)")
    if names is not None:
        missing = sorted(set(names) - set(pairs))
        if missing:
            raise SegFlowError(f"{root}: no sequence named {', '.join(missing)}")
        chosen = list(names)
    else:
        chosen = sorted(pairs)
    sequences = []
    for name in chosen:
        if name in exclude:
            continue
        frames, masks = pairs[name]
        if not masks.is_dir():
            raise SegFlowError(f"{masks}: sequence {name!r} has no mask folder")
        sequences.append(Sequence(name, frames, _images(masks)))
    return sequences
