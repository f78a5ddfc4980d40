"""Build the blend-weight dataset and train the estimator behind `--weight auto` (docs/no_harm.md).

    .venv/bin/python tools/train_blend_estimator.py [--model faceprior-256] [--work DIR]
        [--samples-per-image 2] [--limit N] [--epochs 12] [--psnr-epochs 4] [--identity-weight L]
        [--init FILE.safetensors] [--out FILE.safetensors]

Step 1 (resumable) restores degraded copies of ../shared/data/faces-train-256 with the model and
keeps inputs, outputs and the three numbers the loss needs; step 2 trains BlendWeightNet on them
and writes its weights (by default into the package, where `--weight auto` finds them) with the
held-out PSNR table. faces-val-256 and faces-gt-512 are never used: they are the test sets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np

from faceprior.face.align import estimate_similarity
from faceprior.imaging.files import list_image_files
from faceprior.restoration.restorer import FaceRestorer
from faceprior.metrics.identity import load_dlib_identity
from faceprior.models.dlib_resnet import load_dlib_face_resnet
from faceprior.training.blend_estimator import build_blend_dataset, build_identity_table, train_blend_estimator
from faceprior.training.train_gfpgan import measure_dlib_chip_box

DATA = REPO.parent / "shared" / "data" / "faces-train-256"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="faceprior-256", help="the restoration model whose outputs are blended")
    parser.add_argument("--data", type=Path, default=DATA, help="aligned training faces in the model's framing")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("FACEPRIOR_HOME", Path.home() / ".cache" / "faceprior")) / "blend-dataset-v2")
    parser.add_argument("--samples-per-image", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images (tiny runs)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--psnr-epochs", type=int, default=4, help="last epochs on the PSNR loss itself")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--holdout", type=int, default=500, help="samples held out for validation")
    parser.add_argument("--identity-weight", type=float, default=0.0,
                        help="weight, in the PSNR epochs' loss, of how much farther from the person (dlib-id "
                             "distance) a blend is than the input (0: none; needs faceprior[eval]; builds the "
                             "dataset's identity table first)")
    parser.add_argument("--init", type=Path, default=None,
                        help="estimator weights to start from (then --epochs equal to --psnr-epochs fine-tunes them)")
    parser.add_argument("--out", type=Path, default=REPO / "faceprior" / "data" / "blend-weight.safetensors")
    args = parser.parse_args()

    images = sorted(list_image_files(args.data))[:args.limit]
    if not images:
        raise SystemExit(f"no training images in {args.data}")
    restorer = FaceRestorer(model=args.model, aligned="model", weight=1.0, batch_size=16)
    print(f"model {restorer.choice.name} ({restorer.input_size} px), {len(images)} training images, "
          f"{args.samples_per_image} samples each, dataset in {args.work}", flush=True)
    detector = FaceRestorer(model=args.model, weight=1.0)  # the whole-photo pipeline's detection and alignment

    def align(photo: np.ndarray) -> Optional[np.ndarray]:
        _, _, landmarks = detector.detect(photo)
        return estimate_similarity(landmarks[0], detector.template) if len(landmarks) else None

    dataset = build_blend_dataset(images, lambda crops: restorer.restore_crops(crops)[0], args.work,
                                  restorer.input_size, samples_per_image=args.samples_per_image, align=align,
                                  log=lambda line: print(line, flush=True))
    if args.identity_weight:
        identity = load_dlib_identity()
        box = measure_dlib_chip_box(args.data, restorer.input_size, identity)
        print(f"identity table: dlib chip box ({', '.join(f'{v:.1f}' for v in box)})", flush=True)
        dataset = build_identity_table(args.work, images, load_dlib_face_resnet(identity.recognition_model_path),
                                       box, align=align, log=lambda line: print(line, flush=True))
    _, summary = train_blend_estimator(dataset, args.out, holdout=min(args.holdout, len(dataset.stats) // 5),
                                       epochs=args.epochs, psnr_epochs=args.psnr_epochs, batch_size=args.batch_size,
                                       identity_weight=args.identity_weight, init=args.init,
                                       log=lambda line: print(line, flush=True))
    print(f"wrote {args.out}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
