"""Does libx264 give one file for identical frames? (docs/video.md, "Reproducible files")

    .venv/bin/python tools/x264_reproducibility.py [--runs 20] [--size 160x128] [--frames 18]

Makes ``--frames`` frames of a slow pan over examples/astronaut-old-print.jpg, encodes them
``--runs`` times in this process with each x264 option set below (CRF 18, yuv420p, as faceprior
writes videos), and prints how many different files each set gave, and the PSNR between the
decoded frames of the first two different files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.imaging.resize import resize_bilinear_to  # noqa: E402

OPTION_SETS = {
    "x264 defaults": {},
    "one thread": {"threads": "1", "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0"},
    "no assembly": {"x264-params": "asm=0"},
    "no macroblock-tree": {"x264-params": "mbtree=0"},
}


def frames_of(photo: np.ndarray, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """A slow pan: [H, W, 3] uint8 frames of ``size`` (width, height)."""
    width, height = size
    big = resize_bilinear_to(photo, (height + count, width + 2 * count))
    return [np.ascontiguousarray(big[i:i + height, 2 * i:2 * i + width]) for i in range(count)]


def encode(frames: list[np.ndarray], options: dict) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "18", **options}
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", default="160x128", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=18)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    photo = read_image(REPO / "examples" / "astronaut-old-print.jpg").pixels
    frames = frames_of(photo, (width, height), args.frames)
    print(f"{args.frames} frames of {width}x{height}, CRF 18, {args.runs} encodes per option set")
    for name, options in OPTION_SETS.items():
        files: dict[str, bytes] = {}
        for _ in range(args.runs):
            data = encode(frames, options)
            files.setdefault(hashlib.sha256(data).hexdigest(), data)
        line = f"{name:20s} {len(files):3d} different file(s) of {args.runs}"
        if len(files) > 1:
            first, second = (decoded(data) for data in list(files.values())[:2])
            mse = max(float(((first - second) ** 2).mean()), 1e-12)
            line += f"; two of them decode {10 * np.log10(255 ** 2 / mse):.1f} dB apart"
        print(line, flush=True)


if __name__ == "__main__":
    main()
