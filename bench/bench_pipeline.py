"""Whole-image restoration speed on real photos: images/s and per-stage milliseconds.

    python bench/bench_pipeline.py [--folder ../shared/data/realworld-whole] [--limit N]
                                   [--model gfpgan-1.4|PATH] [--detector mtcnn] [--save]

Without --model, a full-size GFPGANv1Clean (the v1.3/v1.4 architecture) with random weights is
timed: the cost is the same as with the released weights. Each image goes through
read -> detect -> align -> restore -> upsample -> paste -> write, as `faceprior restore` runs
it. Prints a table per stage (median and total ms) and images/s, and, when a previous result
file exists (bench/results/pipeline-*.json), the ratio against the newest one. ``--save`` writes
this run's figures there for the next comparison.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.batch import IMAGE_SUFFIXES  # noqa: E402
from faceprior.image_io import read_image, write_image  # noqa: E402
from faceprior.models import create_model  # noqa: E402
from faceprior.restorer import FaceRestorer  # noqa: E402
from faceprior.weights.registry import MODELS  # noqa: E402

RESULTS = REPO / "bench" / "results"
STAGES = ("read", "detect", "align", "restore", "upsample", "paste", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "realworld-whole")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--model", default=None, help="registered name or checkpoint; default: random full-size GFPGANv1Clean")
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--upscale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true", help="store the figures in bench/results/")
    args = parser.parse_args()

    if not args.folder.is_dir():
        sys.exit(f"bench_pipeline: {args.folder} not found (the real photos live in ../shared/data)")
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    model = args.model
    if model is None:
        torch.manual_seed(0)
        model = create_model(MODELS["gfpgan-1.4"].arch, **MODELS["gfpgan-1.4"].kwargs).eval()
    restorer = FaceRestorer(model=model, detector=args.detector, upscale=args.upscale)

    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    faces = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        for index, path in enumerate(files):
            t0 = time.perf_counter()
            loaded = read_image(path)
            per_stage["read"].append((time.perf_counter() - t0) * 1000)
            result = restorer.restore(loaded.pixels)
            for stage, ms in result.timings_ms.items():
                per_stage[stage].append(ms)
            t0 = time.perf_counter()
            write_image(Path(out_dir) / f"{index}{path.suffix}", result.image, format=loaded.format)
            per_stage["write"].append((time.perf_counter() - t0) * 1000)
            faces += len(result.faces)
            print(f"  {path.name}: {loaded.width}x{loaded.height}, {len(result.faces)} face(s), "
                  + ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items()) + " ms", flush=True)
    seconds = time.perf_counter() - start

    figures = {
        "images": len(files),
        "faces": faces,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(files) / seconds, 4),
        "stage_median_ms": {s: round(statistics.median(v), 1) for s, v in per_stage.items() if v},
        "stage_total_ms": {s: round(sum(v), 1) for s, v in per_stage.items() if v},
        "model": str(args.model or "random full-size GFPGANv1Clean"),
        "detector": args.detector,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    previous = sorted(RESULTS.glob("pipeline-*.json"))
    baseline = json.loads(previous[-1].read_text()) if previous else None

    print(f"\n{len(files)} images, {faces} faces, {seconds:.1f} s, {figures['images_per_s']:.3f} images/s")
    print(f"{'stage':<10}{'median ms':>12}{'total ms':>12}" + (f"{'prev total':>12}{'ratio':>8}" if baseline else ""))
    for stage in STAGES:
        if stage not in figures["stage_total_ms"]:
            continue
        line = f"{stage:<10}{figures['stage_median_ms'][stage]:>12.1f}{figures['stage_total_ms'][stage]:>12.1f}"
        if baseline and stage in baseline["stage_total_ms"]:
            before = baseline["stage_total_ms"][stage]
            line += f"{before:>12.1f}{figures['stage_total_ms'][stage] / max(before, 1e-9):>8.2f}"
        print(line)
    if baseline:
        print(f"images/s vs {previous[-1].name}: {figures['images_per_s'] / baseline['images_per_s']:.2f}x")
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
        target.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"saved {target}")


if __name__ == "__main__":
    main()
