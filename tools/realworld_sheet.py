"""A comparison sheet of real-world faces: the aligned input face next to the restored one.

    python tools/realworld_sheet.py ../shared/data/realworld-aligned -o sheet.png
        [--model faceprior-256 | --model CKPT --template celeba-hq] [--limit 24] [--columns 4] [--tile 192]
        [--aligned] [--weight auto|W]

Runs the whole pipeline (``FaceRestorer``: MTCNN, alignment to the model's own template,
restoration) on every image of the folder (sorted, recursive) and tiles, for the largest face of
each image, its aligned input crop and the restored crop side by side, ``--columns`` pairs per
row. With ``--aligned`` the images are taken as FFHQ-aligned faces (``faceprior restore --aligned``)
and each whole input is tiled beside the whole output. The weight each face got is printed.
Images where no face is found are listed on stdout. The sheet is written atomically and an
existing file is kept. (Never commit a sheet made from ../shared/data: its images' terms forbid it.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.face.templates import TEMPLATES  # noqa: E402
from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import read_image, write_image  # noqa: E402
from faceprior.imaging.pixels import from_float01, to_float01, to_rgb_array  # noqa: E402
from faceprior.imaging.resize import upscale_lanczos  # noqa: E402
from faceprior.restoration.restorer import FaceRestorer  # noqa: E402


def tile(face: np.ndarray, size: int) -> np.ndarray:
    """A uint8 [size, size, 3] copy of a square face crop (Lanczos-resized)."""
    if face.shape[0] != size:
        face = upscale_lanczos(face, size / face.shape[0])
    return from_float01(to_float01(face), np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", default="faceprior-256")
    parser.add_argument("--template", default=None, choices=tuple(TEMPLATES),
                        help="face framing of a model given as a file (celeba-hq for faces-train-256 models)")
    parser.add_argument("--limit", type=int, default=24, help="images to use (default 24)")
    parser.add_argument("--columns", type=int, default=4, help="input|restored pairs per row (default 4)")
    parser.add_argument("--tile", type=int, default=192, help="side of each face tile in pixels (default 192)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--aligned", action="store_true", help="the images are FFHQ-aligned faces of any size")
    parser.add_argument("--weight", default="auto", help="auto (default) or a number in [0, 1]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    weight = args.weight if args.weight == "auto" else float(args.weight)
    if args.aligned:
        restorer = FaceRestorer(model=args.model, aligned=args.template or "ffhq", weight=weight)
    else:
        restorer = FaceRestorer(model=args.model, max_faces=1, template=args.template, weight=weight)
    print(f"model {restorer.choice.name} ({restorer.choice.reason}); {restorer.precision_note}")
    pairs = []
    for path in list_image_files(args.folder):
        if len(pairs) == args.limit:
            break
        pixels = read_image(path).pixels
        result = restorer.restore(pixels)
        if not result.faces:
            print(f"{path}: no face found")
            continue
        face = result.faces[0]
        print(f"{len(pairs) + 1:3d} {path.relative_to(args.folder)}: weight {face.weight:.2f}, "
              f"output {result.image.shape[1]}x{result.image.shape[0]}")
        before, after = (to_rgb_array(pixels)[0], result.image) if args.aligned else (face.aligned, face.restored)
        pairs.append(np.concatenate([tile(before, args.tile), tile(after, args.tile)], axis=1))
    if not pairs:
        raise SystemExit(f"{args.folder}: no faces")
    blank = np.full_like(pairs[0], 255)
    pairs += [blank] * (-len(pairs) % args.columns)
    rows = [np.concatenate(pairs[i:i + args.columns], axis=1) for i in range(0, len(pairs), args.columns)]
    write_image(args.output, np.concatenate(rows, axis=0))
    print(f"wrote {args.output}: {len(pairs)} pairs (left: input, right: restored)")


if __name__ == "__main__":
    main()
