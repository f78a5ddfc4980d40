"""Where tools/no_harm.py's degraded-set gain is lost: the paste's coverage, the landmarks, the model.

    .venv/bin/python tools/no_harm_gap.py [--sets lq-256,lq-512] [--sample 60]

For each LQ set (evenly spaced sample), whole photos through `faceprior restore`'s pipeline with the
defaults, four ways, each printed as the mean per-photo PSNR gain over the input:

  pipeline        as tools/no_harm.py (detection on the degraded photo)
  no background   the same with `--no-background`: only the faces restored, the photo around them
                  left as it was
  gt landmarks    the same, but the faces detected on the ground truth (what better landmarks on
                  degraded faces could give at most)
  model's crop    the whole photo given to the model as its crop (FaceRestorer(aligned="model"));
                  only meaningful where the photos are in the model's framing (lq-256 for
                  faceprior-256): the model's own gain, without detection, alignment or paste

and with --tried, two ways that are not the default (docs/no_harm.md):

  re-detected     the faces detected again on the restored photo, restored again from the input
                  with those landmarks (better landmarks for twice the time; not adopted)
  surroundings    `faceprior restore --surroundings`: each face's FFHQ-framed surroundings restored
                  too, under the face (an option, off by default)

and where the pipeline's pixels are: the share of the photo's area that the paste masks cover fully
(alpha 1), partly, or not at all, with each region's share of the set's squared error (sum over
the region / photo size, mean over photos) in the input and in the output.
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.face.align import warp_affine  # noqa: E402
from faceprior.face.paste import face_to_image_matrix, photo_edge_mask  # noqa: E402
from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.metrics.psnr_ssim import psnr  # noqa: E402
from faceprior.restoration.restorer import FaceRestorer  # noqa: E402

NO_HARM = runpy.run_path(str(REPO / "tools" / "no_harm.py"), run_name="no_harm")


def coverage(result, size: int, shape: tuple[int, ...]) -> np.ndarray:
    """[H, W] the largest paste-mask value over the photo's faces (0 where no face was pasted)."""
    alpha = np.zeros(shape[:2], np.float32)
    for face in result.faces:
        to_image = face_to_image_matrix(face.affine)
        mask = photo_edge_mask(size, to_image, shape[:2])
        alpha = np.maximum(alpha, warp_affine(mask, to_image, shape[:2], border="constant"))
    return alpha


def redetected(restorer: FaceRestorer, lq: np.ndarray, first) -> np.ndarray:
    """The photo restored again from ``lq``, its faces aligned with landmarks found on ``first``."""
    if not first.faces:
        return first.image
    boxes, scores, landmarks = restorer.detect(first.image)
    return restorer.restore_prepared([restorer.prepare_faces(lq, None, boxes, scores, landmarks)])[0].image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="lq-256,lq-512")
    parser.add_argument("--sample", type=int, default=60)
    parser.add_argument("--tried", action="store_true", help="also the two ways that are not the default")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "faceprior" / "no-harm")
    args = parser.parse_args()
    restorer = FaceRestorer()
    bare = FaceRestorer(background=False)
    as_crop = FaceRestorer(aligned="model")
    around = FaceRestorer(surroundings=True) if args.tried else None
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        gains = {"pipeline": [], "no background": [], "gt landmarks": [], "model's crop": []}
        if args.tried:
            gains.update({"re-detected": [], "surroundings": []})
        shares = {key: [] for key in ("area", "input", "output")}
        missed = 0
        for lq_path, gt_path in NO_HARM["pairs_of"](name, args.work, args.sample):
            lq, gt = read_image(lq_path).pixels, read_image(gt_path).pixels
            before = psnr(lq, gt)
            result = restorer.restore(lq)
            missed += not result.faces
            gains["pipeline"].append(psnr(result.image, gt) - before)
            gains["no background"].append(psnr(bare.restore(lq).image, gt) - before)
            boxes, scores, landmarks = restorer.detect(gt)
            guided = restorer.restore_prepared([restorer.prepare_faces(lq, None, boxes, scores, landmarks)])[0]
            gains["gt landmarks"].append(psnr(guided.image, gt) - before)
            gains["model's crop"].append(psnr(as_crop.restore(lq).image, gt) - before)
            if args.tried:
                gains["re-detected"].append(psnr(redetected(restorer, lq, result), gt) - before)
                gains["surroundings"].append(psnr(around.restore(lq).image, gt) - before)
            alpha = coverage(result, restorer.input_size, lq.shape)
            regions = (alpha >= 0.999, (alpha > 0) & (alpha < 0.999), alpha == 0)
            error_in = ((lq.astype(np.float64) - gt) ** 2).mean(-1)
            error_out = ((result.image.astype(np.float64) - gt) ** 2).mean(-1)
            shares["area"].append([region.mean() for region in regions])
            shares["input"].append([error_in[region].sum() / error_in.size for region in regions])
            shares["output"].append([error_out[region].sum() / error_out.size for region in regions])
        count = len(gains["pipeline"])
        print(f"{name}: {count} photos ({missed} without a face found by the pipeline)")
        for way, values in gains.items():
            print(f"  gain, {way}: {statistics.mean(values):+.2f} dB")
        area, error_in, error_out = (np.mean(shares[key], axis=0) for key in ("area", "input", "output"))
        print("  region (paste mask)   area    squared error in -> out")
        for label, a, e_in, e_out in zip(("covered fully", "covered partly", "not covered"), area, error_in, error_out):
            print(f"  {label:<20} {a:6.1%}   {e_in:8.1f} -> {e_out:8.1f}")
        print(f"  {'whole photo':<20} {1:6.1%}   {error_in.sum():8.1f} -> {error_out.sum():8.1f}", flush=True)


if __name__ == "__main__":
    main()
