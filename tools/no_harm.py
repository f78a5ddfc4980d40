"""Does `faceprior restore` leave sharp faces alone and help degraded ones? (issue 18's acceptance)

Whole-photo restoration (detection, alignment, restoration, paste-back: what `faceprior restore`
does) on four sets built from ../shared/data:

  sharp-512  faces-gt-512 as they are (117 CelebRef-HQ photos, 512 px)   PSNR/SSIM of the output against its input
  sharp-256  faces-val-256 as they are (300 CelebA-HQ photos, 256 px)     same
  lq-512     faces-gt-512 degraded with the paper's recipe (make-testset, seed 0, 512 px)  against the GT
  lq-256     faces-val-256 degraded the same way (seed 0, 256 px)                         against the GT

For the LQ sets the input's own PSNR/SSIM/identity against the GT are printed beside the output's,
and the gain. The identity metric is dlib's face descriptor distance (offline; < 0.6 = same person).
Per face, the weight the restorer chose is summarised (``--weight auto``).

    .venv/bin/python tools/no_harm.py [--weight auto|W] [--model NAME|PATH] [--sets sharp-512,lq-512,...]
        [--sample N] [--surroundings] [--no-background] [--keep-white-balance] [--no-refine-landmarks] [--work DIR]

Test sets are made once in --work (default ~/.cache/faceprior/no-harm), outside the repository.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.evaluation.testset import make_testset
from faceprior.imaging.files import list_image_files
from faceprior.imaging.io import read_image
from faceprior.metrics.psnr_ssim import psnr, ssim
from faceprior.restoration.restorer import BACKGROUND_MIN_WEIGHT, FaceRestorer

DATA = REPO.parent / "shared" / "data"
SETS = {"sharp-512": ("faces-gt-512", 512, False), "sharp-256": ("faces-val-256", 256, False),
        "lq-512": ("faces-gt-512", 512, True), "lq-256": ("faces-val-256", 256, True)}


def pairs_of(name: str, work: Path, sample: int | None) -> list[tuple[Path, Path]]:
    """(input, reference) files of a set: sharp sets compare with the input itself."""
    folder, size, degraded = SETS[name]
    if degraded:
        testset = make_testset(DATA / folder, work / f"{folder}-seed0-{size}", seed=0, size=size)
        lq = {p.relative_to(testset.lq_dir).with_suffix(""): p for p in list_image_files(testset.lq_dir)}
        gt = {p.relative_to(testset.gt_dir).with_suffix(""): p for p in list_image_files(testset.gt_dir)}
        pairs = [(lq[key], gt[key]) for key in sorted(lq) if key in gt]
    else:
        pairs = [(p, p) for p in sorted(list_image_files(DATA / folder))]
    if sample and sample < len(pairs):
        pairs = [pairs[round(i * (len(pairs) - 1) / (sample - 1))] for i in range(sample)] if sample > 1 else pairs[:1]
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", default="auto", help="auto or a number in [0, 1]")
    parser.add_argument("--model", default=None)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--sample", type=int, default=None, help="evenly spaced images per set")
    parser.add_argument("--surroundings", action="store_true", help="also restore each face's surroundings (faceprior restore --surroundings)")
    parser.add_argument("--background", action=argparse.BooleanOptionalAction, default=True,
                        help="restore the photo around the faces (default; faceprior restore --no-background turns it off)")
    parser.add_argument("--refine-landmarks", action=argparse.BooleanOptionalAction, default=True,
                        help="refine the detected landmarks (default; faceprior restore --no-refine-landmarks turns it off)")
    parser.add_argument("--keep-white-balance", action="store_true",
                        help="keep each colour photo's white balance (faceprior restore --keep-white-balance)")
    parser.add_argument("--identity", action=argparse.BooleanOptionalAction, default=True,
                        help="dlib identity distance on the LQ sets (needs dlib-bin)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("FACEPRIOR_HOME", Path.home() / ".cache" / "faceprior")) / "no-harm")
    args = parser.parse_args()
    if not (DATA / "README.md").is_file():
        raise SystemExit(f"needs the face photos in {DATA}")
    weight = args.weight if args.weight == "auto" else float(args.weight)
    restorer = FaceRestorer(model=args.model, weight=weight, surroundings=args.surroundings, background=args.background,
                            keep_white_balance=args.keep_white_balance, refine_landmarks=args.refine_landmarks)
    print(f"model {restorer.choice.name}, weight {args.weight}, {restorer.precision_note}"
          + (", surroundings restored" if restorer.surroundings_template is not None else "")
          + (", background restored" if args.background else ", background not restored")
          + (", white balance kept" if args.keep_white_balance else "")
          + ("" if args.refine_landmarks else ", landmarks as detected"))
    identity = None
    if args.identity:
        try:
            from faceprior.metrics.identity import load_dlib_identity

            identity = load_dlib_identity()
        except Exception as error:  # optional metric: say why and go on
            print(f"no identity metric: {error}")

    rows = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        pairs = pairs_of(name, args.work, args.sample)
        degraded = SETS[name][2]
        out_psnr, out_ssim, in_psnr, in_ssim, out_id, in_id, weights, faces_missed = [], [], [], [], [], [], [], 0
        backgrounds = []
        start = time.perf_counter()
        for lq_path, ref_path in pairs:
            lq = read_image(lq_path).pixels
            ref = read_image(ref_path).pixels
            result = restorer.restore(lq)
            if not result.faces:
                faces_missed += 1
            weights += [face.weight for face in result.faces if face.weight is not None]
            if result.background_weight is not None:
                backgrounds.append(result.background_weight)
            out_psnr.append(psnr(result.image, ref))
            out_ssim.append(ssim(result.image, ref))
            if degraded:
                in_psnr.append(psnr(lq, ref))
                in_ssim.append(ssim(lq, ref))
                if identity is not None:
                    a, b = identity.distance(result.image, ref), identity.distance(lq, ref)
                    if a is not None and b is not None:
                        out_id.append(a)
                        in_id.append(b)
        seconds = time.perf_counter() - start
        finite = [v for v in out_psnr if np.isfinite(v)]
        row = {"set": name, "n": len(pairs), "no face": faces_missed, "s": seconds,
               "psnr": statistics.mean(min(v, 100.0) for v in out_psnr), "psnr_min": min(out_psnr),
               "psnr_of_mean_mse": psnr_of_mean_mse(out_psnr),
               "ssim": statistics.mean(out_ssim), "unchanged": len(out_psnr) - len(finite)}
        if degraded:
            row.update(in_psnr=statistics.mean(in_psnr), in_ssim=statistics.mean(in_ssim))
            if out_id:
                row.update(id=statistics.mean(out_id), in_id=statistics.mean(in_id), id_n=len(out_id))
        if weights:
            row.update(w_mean=statistics.mean(weights), w_min=min(weights), w_max=max(weights))
        if backgrounds:
            row.update(bg_mean=statistics.mean(backgrounds), bg_restored=sum(b >= BACKGROUND_MIN_WEIGHT for b in backgrounds))
        rows.append(row)
        print(format_row(row), flush=True)
    print("\nPSNR: mean of per-photo PSNRs, each capped at 100 dB / of the mean MSE (min)")
    print("\n| set | images | output PSNR (min) | output SSIM | input PSNR | input SSIM | gain dB | identity out / in | weight mean (min..max) |")
    print("|---|---:|---|---|---|---|---|---|---|")
    for row in rows:
        gain = f"{row['psnr'] - row['in_psnr']:+.2f}" if "in_psnr" in row else "-"
        ident = f"{row['id']:.4f} / {row['in_id']:.4f}" if "id" in row else "-"
        wts = f"{row['w_mean']:.2f} ({row['w_min']:.2f}..{row['w_max']:.2f})" if "w_mean" in row else "-"
        print(f"| {row['set']} | {row['n']} | {row['psnr']:.2f} / {row['psnr_of_mean_mse']:.2f} ({row['psnr_min']:.2f}) | {row['ssim']:.4f} | "
              f"{row.get('in_psnr', float('nan')):.2f} | {row.get('in_ssim', float('nan')):.4f} | {gain} | {ident} | {wts} |")


def psnr_of_mean_mse(values: list[float]) -> float:
    """PSNR of the set's mean squared error (from each photo's PSNR; an unchanged photo, +inf dB,
    counts as MSE 0): unlike the mean of PSNRs it is not carried by a few untouched photos."""
    mean_mse = statistics.mean(10 ** (-v / 10) for v in values)  # relative to the peak squared
    return float("inf") if mean_mse == 0 else -10 * np.log10(mean_mse)


def format_row(row: dict) -> str:
    text = (f"{row['set']}: {row['n']} photos in {row['s']:.0f} s ({row['no face']} without a face found), "
            f"output PSNR {row['psnr']:.2f} dB (mean, each capped at 100; of the mean MSE "
            f"{row['psnr_of_mean_mse']:.2f}; min {row['psnr_min']:.2f}), SSIM {row['ssim']:.4f}")
    if "in_psnr" in row:
        text += f"; input PSNR {row['in_psnr']:.2f}, SSIM {row['in_ssim']:.4f}; gain {row['psnr'] - row['in_psnr']:+.2f} dB"
    if "id" in row:
        text += f"; dlib identity {row['id']:.4f} (input {row['in_id']:.4f}, {row['id_n']} photos)"
    if "w_mean" in row:
        text += f"; weight {row['w_mean']:.2f} ({row['w_min']:.2f}..{row['w_max']:.2f})"
    if "bg_mean" in row:
        text += f"; background weight {row['bg_mean']:.2f}, restored in {row['bg_restored']} photos"
    return text


if __name__ == "__main__":
    main()
