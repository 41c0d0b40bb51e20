"""Rebuild sample_data/bear from the DAVIS 2016 training copy in ../shared/data.

    python tools/make_sample_data.py [--davis ../shared/data/davis2016-train-240p]

Frames and masks are cropped from 427 to 426 columns (H.264 in yuv420p needs an even width);
the video is H.264 at CRF 17, 24 frames/s; masks are indexed PNGs with the DAVIS palette (object id 1).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np

from napari_segflow.data.io import write_label_png

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, default=ROOT.parent / "shared/data/davis2016-train-240p")
    parser.add_argument("--sequence", default="bear")
    args = parser.parse_args()
    source = args.davis / args.sequence
    target = ROOT / "sample_data" / args.sequence
    frames = [iio.imread(p)[:, :426] for p in sorted((source / "frames").glob("*.jpg"))]
    masks = [(iio.imread(p)[:, :426] > 127).astype(np.uint8) for p in sorted((source / "masks").glob("*.png"))]
    if len(frames) != len(masks):
        raise SystemExit(f"{source}: {len(frames)} frames but {len(masks)} masks")
    if (target / "masks").exists():
        shutil.rmtree(target / "masks")
    target.mkdir(parents=True, exist_ok=True)
    with av.open(str(target / f"{args.sequence}.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "17", "preset": "slow"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    write_label_png(masks[0], target / "first_frame_mask.png")
    for index, mask in enumerate(masks):
        write_label_png(mask, target / "masks" / f"{index:05d}.png")
    print(f"wrote {len(frames)} frames and masks to {target}")


if __name__ == "__main__":
    main()
