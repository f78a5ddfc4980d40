"""Train the landmark refiner that `faceprior restore` applies to detected faces (docs/no_harm.md, section 9).

    .venv/bin/python tools/train_landmark_refiner.py [--limit N] [--epochs 20] [--seed S]
        [--samples FILE.npz] [--out FILE.safetensors]

Makes the samples (faceprior/training/landmark_refiner.py says how) from ../shared/data/faces-train-256,
saved to --samples (reused when it exists: the detector is the slow part), trains
LandmarkRefinerNet (faceprior/models/landmark_refiner.py) on them and writes the best held-out
state, by default into the package. faces-val-256 and faces-gt-512 are never used: they are the test sets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.files import list_image_files
from faceprior.restoration.restorer import make_detector
from faceprior.training.landmark_refiner import landmark_samples, train_landmark_refiner

DATA = REPO.parent / "shared" / "data" / "faces-train-256"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="training photos")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training files")
    parser.add_argument("--samples", type=Path, default=Path("landmark-samples.npz"), help="samples file, made once")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--holdout", type=int, default=400, help="samples held out for validation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "faceprior" / "data" / "landmark-refiner.safetensors")
    args = parser.parse_args()

    if args.samples.is_file():
        stored = np.load(args.samples)
        faces, offsets = stored["faces"], stored["offsets"]
        print(f"{len(faces)} samples from {args.samples}", flush=True)
    else:
        files = sorted(list_image_files(args.data))[:args.limit]
        if not files:
            raise SystemExit(f"no training photos in {args.data}")
        faces, offsets = landmark_samples(files, make_detector("mtcnn"), seed=args.seed,
                                          log=lambda line: print(line, flush=True))
        np.savez(args.samples, faces=faces, offsets=offsets)
        print(f"{len(faces)} samples of {len(files)} photos, saved to {args.samples}", flush=True)
    if len(faces) <= args.holdout:
        raise SystemExit(f"need more than {args.holdout} samples, got {len(faces)}")
    best = train_landmark_refiner(faces, offsets, args.out, epochs=args.epochs, holdout=args.holdout, seed=args.seed,
                                  log=lambda line: print(line, flush=True))
    print(f"best held out (epoch {best['epoch'] + 1}): landmark error {best['after']:.2f} px, "
          f"detected {best['before']:.2f} px (256 px crop pixels); wrote {args.out}")


if __name__ == "__main__":
    main()
