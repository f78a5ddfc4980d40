"""Time the MTCNN face detector on the whole photos in ../shared/data/realworld-whole.

Prints, for every photo, its size, the number of faces and the detection time (best of
``--repeats`` runs after one warm-up run, which absorbs one-off kernel set-up), then the median
and mean over all photos.

``--second-look`` times the restorer's detector (``make_detector("mtcnn")``: edge margin, and the
second look where nothing is found, face/second_look.py) against its first look alone, on each
photo and on a faceless image of the same size (smoothed noise, fixed seed): it prints the ratio
of the two on each kind.

    .venv/bin/python bench/bench_detect.py [--threads 2] [--repeats 3] [--min-face-size 20] [--second-look]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from faceprior.face.edge_margin import EdgeMarginDetector
from faceprior.face.mtcnn import MTCNN
from faceprior.restoration.restorer import make_detector

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "realworld-whole"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos (searched recursively)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo; the best is reported")
    parser.add_argument("--min-face-size", type=float, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--second-look", action="store_true",
                        help="time the restorer's detector against its first look, on the photos and faceless images")
    args = parser.parse_args()

    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"{args.data}: no photos found (needs ../shared/data/realworld-whole)")
    torch.set_num_threads(args.threads)
    if args.second_look:
        time_second_look(paths, args.repeats, args.device)
        return
    detector = MTCNN(device=args.device, min_face_size=args.min_face_size)

    times_ms = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        best, faces = best_ms(detector.detect, pixels, args.repeats, args.device)
        times_ms.append(best)
        height, width = pixels.shape[:2]
        print(f"{path.relative_to(args.data)!s:40s} {width:5d}x{height:<5d} faces={len(faces):3d} {best:8.1f} ms")
    print(
        f"{len(paths)} photos, {args.threads} threads: median {statistics.median(times_ms):.1f} ms, "
        f"mean {statistics.mean(times_ms):.1f} ms per image"
    )


def best_ms(detect: Callable[[np.ndarray], Any], pixels: np.ndarray, repeats: int, device: str) -> tuple[float, Any]:
    """(best time in ms of ``repeats`` calls of ``detect(pixels)`` after one warm-up call, the
    warm-up call's answer)."""
    found = detect(pixels)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        detect(pixels)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1000, found


def faceless_like(pixels: np.ndarray, seed: int) -> np.ndarray:
    """Smoothed noise of the photo's size, uint8 [H, W, 3]: an image with no face in it."""
    noise = torch.from_numpy(np.random.default_rng(seed).random((1, 3) + pixels.shape[:2], np.float32))
    smooth = F.avg_pool2d(noise, 9, stride=1, padding=4) * 255
    return np.ascontiguousarray(smooth[0].permute(1, 2, 0).numpy().astype(np.uint8))


def time_second_look(paths: list[Path], repeats: int, device: str) -> None:
    detector = make_detector("mtcnn", device)
    first_look = EdgeMarginDetector(MTCNN(device=device))
    totals = {"photos": [0.0, 0.0], "faceless": [0.0, 0.0]}
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        for kind, image in (("photos", pixels), ("faceless", faceless_like(pixels, index))):
            first_ms, (first_faces, _, _) = best_ms(first_look.detect_arrays, image, repeats, device)
            both_ms, (faces, _, _) = best_ms(detector.detect_arrays, image, repeats, device)
            totals[kind][0] += first_ms
            totals[kind][1] += both_ms
            print(f"{path.name:28s} {kind:8s} faces {len(first_faces):3d} -> {len(faces):3d}: first look {first_ms:8.1f} ms, "
                  f"with the second look {both_ms:8.1f} ms")
    for kind, (first_ms, both_ms) in totals.items():
        print(f"{kind}: {len(paths)} images, first look {first_ms / len(paths):.1f} ms, with the second look "
              f"{both_ms / len(paths):.1f} ms per image: ratio {both_ms / first_ms:.2f}")


if __name__ == "__main__":
    main()
