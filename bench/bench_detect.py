"""Time the MTCNN face detector on the whole photos in ../shared/data/realworld-whole.

Prints, for every photo, its size, the number of faces and the detection time (best of
``--repeats`` runs after one warm-up run, which absorbs one-off kernel set-up), then the median
and mean over all photos.

    .venv/bin/python bench/bench_detect.py [--threads 2] [--repeats 3] [--min-face-size 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceprior.face.mtcnn import MTCNN

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "realworld-whole"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos (searched recursively)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo; the best is reported")
    parser.add_argument("--min-face-size", type=float, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"{args.data}: no photos found (needs ../shared/data/realworld-whole)")
    torch.set_num_threads(args.threads)
    detector = MTCNN(device=args.device, min_face_size=args.min_face_size)

    times_ms = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        faces = detector.detect(pixels)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            detector.detect(pixels)
            if args.device != "cpu":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        times_ms.append(best * 1000)
        height, width = pixels.shape[:2]
        print(f"{path.relative_to(args.data)!s:40s} {width:5d}x{height:<5d} faces={len(faces):3d} {best * 1000:8.1f} ms")
    print(
        f"{len(paths)} photos, {args.threads} threads: median {statistics.median(times_ms):.1f} ms, "
        f"mean {statistics.mean(times_ms):.1f} ms per image"
    )


if __name__ == "__main__":
    main()
