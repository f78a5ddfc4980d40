"""Derive a model's face template from its training faces: the mean MTCNN landmarks.

    python tools/derive_template.py ../shared/data/faces-train-256 [--limit N] [--json OUT.json]

Runs faceprior's MTCNN on every image of the folder (sorted; the first ``--limit`` if given),
keeps the highest-scoring face of each image whose box covers at least ``--min-box`` of the
image side (the face the crop was made around), and prints the mean of its 5 landmarks
(left eye, right eye, nose, left mouth corner, right mouth corner; (x, y) in pixels of the
crop) with the per-point standard deviation and how many images had no such face. The pipeline
aligns faces to this template, so a model sees faces framed as in its training data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.face.mtcnn import MTCNN  # noqa: E402
from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import ImageReadError, read_image  # noqa: E402
from faceprior.imaging.pixels import convert_bit_depth  # noqa: E402


def mean_landmarks(folder: Path, detector: MTCNN, limit: int | None, min_box: float) -> dict:
    """Mean and std [5, 2] of the main face's landmarks over the images of ``folder``."""
    files = list_image_files(folder)[:limit]
    if not files:
        raise SystemExit(f"{folder}: no images")
    found, missed, size = [], [], None
    for path in files:
        try:
            pixels = read_image(path).pixels
        except ImageReadError as error:
            missed.append(f"{path.name}: {error}")
            continue
        pixels = convert_bit_depth(pixels, 8)
        if size is None:
            size = pixels.shape[:2]
        elif pixels.shape[:2] != size:
            raise SystemExit(f"{path}: size {pixels.shape[1]}x{pixels.shape[0]} differs from the first image's")
        boxes, scores, landmarks = detector.detect_arrays(pixels)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
        keep = np.flatnonzero(sides >= min_box * min(size))
        if keep.size == 0:
            missed.append(f"{path.name}: no face covering {min_box:.0%} of the side")
            continue
        found.append(landmarks[keep[np.argmax(scores[keep])]])
    points = np.stack(found).astype(np.float64)
    return {"folder": str(folder), "images": len(files), "faces": len(found), "missed": missed,
            "height": int(size[0]), "width": int(size[1]),
            "mean": points.mean(axis=0).round(3).tolist(), "std": points.std(axis=0).round(3).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="use the first N images (sorted by path)")
    parser.add_argument("--min-box", type=float, default=0.4,
                        help="smallest face box side, as a fraction of the image side (default 0.4)")
    parser.add_argument("--min-face", type=float, default=64.0,
                        help="MTCNN's smallest face side in pixels (default 64; larger is faster)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = MTCNN(min_face_size=args.min_face)
    result = mean_landmarks(args.folder, detector, args.limit, args.min_box)
    print(f"{result['faces']} of {result['images']} images of {args.folder} "
          f"({result['width']}x{result['height']}) have a main face; {len(result['missed'])} without")
    for name, mean, std in zip(("left eye", "right eye", "nose", "left mouth", "right mouth"), result["mean"], result["std"]):
        print(f"  {name:12s} x {mean[0]:8.3f}  y {mean[1]:8.3f}   (std {std[0]:.2f}, {std[1]:.2f})")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
