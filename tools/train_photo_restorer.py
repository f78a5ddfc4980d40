"""Train the photo restorer behind the background restoration of `faceprior restore` (docs/no_harm.md).

    .venv/bin/python tools/train_photo_restorer.py [--iterations 3000] [--minutes M] [--limit N]
        [--lr 4e-4] [--init FILE.safetensors] [--seed S] [--out FILE.safetensors]

Trains PhotoRestorerNet (faceprior/models/photo_restorer.py) on ../shared/data/faces-train-256
(faceprior/training/photo_restorer.py says how) and writes the best held-out state, by default
into the package. faces-val-256 and faces-gt-512 are never used: they are the test sets.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.files import list_image_files
from faceprior.training.photo_restorer import summary_line, train_photo_restorer

DATA = REPO.parent / "shared" / "data" / "faces-train-256"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="training photos")
    parser.add_argument("--iterations", type=int, default=3000, help="length of the learning-rate schedule")
    parser.add_argument("--minutes", type=float, default=math.inf, help="stop after this long")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--holdout", type=int, default=60, help="training files held out for validation")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=4e-4, help="peak learning rate")
    parser.add_argument("--init", type=Path, default=None, help="weights to start from (a second, lower-lr run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training crops")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training files (tiny runs)")
    parser.add_argument("--out", type=Path, default=REPO / "faceprior" / "data" / "photo-restorer.safetensors")
    args = parser.parse_args()

    files = sorted(list_image_files(args.data))[:args.limit]
    if len(files) <= args.holdout:
        raise SystemExit(f"need more than {args.holdout} training photos in {args.data}, found {len(files)}")
    print(f"{len(files) - args.holdout} training photos, {args.holdout} held out, {args.iterations} iterations "
          f"of {args.batch_size} crops of {args.crop} px; writes {args.out}", flush=True)
    summary = train_photo_restorer(files, args.out, iterations=args.iterations, minutes=args.minutes,
                                   batch_size=args.batch_size, crop=args.crop, holdout=args.holdout,
                                   eval_every=args.eval_every, lr=args.lr, init=args.init, seed=args.seed,
                                   log=lambda line: print(line, flush=True))
    print(f"best held out: {summary_line(summary)}")


if __name__ == "__main__":
    main()
