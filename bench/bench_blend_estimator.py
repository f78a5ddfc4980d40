"""What `--weight auto` costs: the blend-weight estimator against the restoration it weighs, the
photo restorer that restores the photo around the faces as much as they were restored, and the
landmark refiner.

Times, per face and interleaved in one run (median of --repeats rounds after a warm-up):
  estimator-256   BlendWeightNet on a 256 px face pair (faceprior-256's size)
  estimator-512   BlendWeightNet on a 512 px pair (resized to 256 inside: the official models' size)
  faceprior-256   the shipped default model, fast CPU path, float32
  gfpgan-512      a full-size GFPGANv1Clean (random weights), fast CPU path, float32
  photo-512       PhotoRestorerNet on a whole 512 x 512 photo (per photo; a photo of N pixels
                  costs about N / 512^2 times this)
  landmarks       refine_landmarks (alignment to a 256 px crop, LandmarkRefinerNet) per face of a 512 photo
and prints the estimator's time as a fraction of each restoration's, and the photo restorer's
against one face's restoration.

    .venv/bin/python bench/bench_blend_estimator.py [--threads 2] [--repeats 5] [--batch 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceprior.face.landmark_refinement import refine_landmarks
from faceprior.face.templates import named_template
from faceprior.inference import optimize
from faceprior.models.gfpgan_clean import RELEASED_OPTIONS
from faceprior.models.loading import describe_network, resolve_model
from faceprior.models.photo_restorer import macs_per_pixel
from faceprior.models import GFPGANv1Clean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = args.batch
    estimator = resolve_model("blend-weight").network.eval()
    photo_restorer = resolve_model("photo-restorer").network.eval()
    refiner = resolve_model("landmark-refiner").network.eval()
    photo = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    faces = np.repeat(named_template("ffhq", 512)[None], batch, axis=0)
    small = resolve_model("faceprior-256")
    small_fast = optimize(small)
    big = describe_network(GFPGANv1Clean(**RELEASED_OPTIONS).eval())
    big_fast = optimize(big)
    x256, x512 = torch.rand(batch, 3, 256, 256), torch.rand(batch, 3, 512, 512)
    calls = {
        "estimator-256": lambda: estimator(x256, x256.flip(3)),
        "estimator-512": lambda: estimator(x512, x512.flip(3)),
        "faceprior-256": lambda: small.restore(x256 * 2 - 1, network=small_fast),
        "gfpgan-512": lambda: big.restore(x512 * 2 - 1, network=big_fast),
        "photo-512": lambda: photo_restorer(x512),
        "landmarks": lambda: refine_landmarks(refiner, photo, faces),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for round_index in range(args.repeats + 1):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if round_index:
                    times[name].append((time.perf_counter() - start) / batch)
    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    print(f"batch {batch}, {args.threads} threads, median of {args.repeats} rounds, ms per face (per photo for photo-512):")
    for name, value in ms.items():
        print(f"  {name:14s} {value:8.2f}")
    print(f"estimator / faceprior-256 restoration: {ms['estimator-256'] / ms['faceprior-256']:.3f}")
    print(f"estimator / gfpgan-512 restoration:    {ms['estimator-512'] / ms['gfpgan-512']:.4f}")
    print(f"photo restorer: {macs_per_pixel(photo_restorer) / 1e3:.1f} k multiply-adds per photo pixel")
    print(f"photo restorer on a 512 photo / one faceprior-256 face: {ms['photo-512'] / ms['faceprior-256']:.2f}")
    print(f"photo restorer on a 512 photo / one gfpgan-512 face:    {ms['photo-512'] / ms['gfpgan-512']:.3f}")
    print(f"landmark refiner / faceprior-256 restoration: {ms['landmarks'] / ms['faceprior-256']:.3f}")
    print(f"landmark refiner / gfpgan-512 restoration:    {ms['landmarks'] / ms['gfpgan-512']:.4f}")


if __name__ == "__main__":
    main()
