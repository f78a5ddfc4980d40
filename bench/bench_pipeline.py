"""Whole-image restoration speed and memory on real photos: images/s, per-stage ms, RSS.

    python bench/bench_pipeline.py [--folder ../shared/data/realworld-whole] [--limit N] [--images N]
        [--model gfpgan-1.4|faceprior-256|PATH] [--precisions reference,fp32,bf16] [--max-faces N]
        [--detector mtcnn] [--threads N] [--save]

Without --model, a full-size GFPGANv1Clean (the v1.3/v1.4 architecture) with random weights is
timed: the cost is the same as with the released weights. Each image goes through
read -> detect -> align -> restore -> upsample -> paste -> write, as `faceprior restore` runs
it, once per precision of ``--precisions`` (FaceRestorer's ``precision``: "reference" is the
unmodified official forward, the baseline). Prints per stage the median and total ms of each
precision and its ratio against the first one, images/s, and memory: peak RSS of the process,
and the RSS after the first tenth of the images against the RSS at the end (``--images`` cycles
through the folder to reach N images, e.g. 200, to show whether memory grows over a long batch).
``--save`` writes the figures to bench/results/pipeline-DATE.json.
"""

from __future__ import annotations

import argparse
import itertools
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

from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import read_image, write_image  # noqa: E402
from faceprior.models import create_model  # noqa: E402
from faceprior.models.gfpgan_clean import RELEASED_OPTIONS  # noqa: E402
from faceprior.restoration.restorer import PRECISIONS, FaceRestorer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import current_rss_mib, peak_rss_mib  # noqa: E402

RESULTS = REPO / "bench" / "results"
STAGES = ("read", "detect", "align", "restore", "upsample", "paste", "write")


def run_once(restorer: FaceRestorer, files: list[Path], out_dir: Path) -> dict:
    """Restore ``files`` in order; per-stage ms lists, face count, seconds, RSS after each image."""
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    faces, rss = 0, []
    start = time.perf_counter()
    for index, path in enumerate(files):
        t0 = time.perf_counter()
        loaded = read_image(path)
        per_stage["read"].append((time.perf_counter() - t0) * 1000)
        result = restorer.restore(loaded.pixels)
        for stage, ms in result.timings_ms.items():
            per_stage[stage].append(ms)
        t0 = time.perf_counter()
        write_image(out_dir / f"{index}{path.suffix}", result.image, format=loaded.format, overwrite=True)
        per_stage["write"].append((time.perf_counter() - t0) * 1000)
        faces += len(result.faces)
        rss.append(current_rss_mib())
    return {"per_stage": per_stage, "faces": faces, "seconds": time.perf_counter() - start, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "realworld-whole")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the folder")
    parser.add_argument("--images", type=int, default=None, help="cycle through the images until N have run")
    parser.add_argument("--model", default=None, help="registered name or checkpoint; default: random full-size GFPGANv1Clean")
    parser.add_argument("--precisions", default="reference,fp32",
                        help="comma-separated FaceRestorer precisions; the first is the baseline (default reference,fp32)")
    parser.add_argument("--max-faces", type=int, default=None, help="restore at most the N largest faces per image")
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--upscale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true", help="store the figures in bench/results/")
    args = parser.parse_args()

    if not args.folder.is_dir():
        sys.exit(f"bench_pipeline: {args.folder} not found (the real photos live in ../shared/data)")
    precisions = args.precisions.split(",")
    if any(p not in PRECISIONS for p in precisions):
        sys.exit(f"bench_pipeline: --precisions takes {', '.join(PRECISIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    files = list_image_files(args.folder)[: args.limit]
    if args.images:
        files = list(itertools.islice(itertools.cycle(files), args.images))
    model = args.model
    if model is None:
        torch.manual_seed(0)
        model = create_model("GFPGANv1Clean", **RELEASED_OPTIONS).eval()

    runs = {}
    with tempfile.TemporaryDirectory() as out_dir:
        for precision in precisions:
            restorer = FaceRestorer(model=model, detector=args.detector, upscale=args.upscale,
                                    max_faces=args.max_faces, precision=precision)
            print(f"{precision}: {restorer.choice.name}, {restorer.precision_note}", flush=True)
            runs[precision] = run_once(restorer, files, Path(out_dir))
            del restorer

    base = precisions[0]
    first_tenth = max(len(files) // 10, 1) - 1
    figures = {
        "images": len(files),
        "faces": runs[base]["faces"],
        "model": str(args.model or "random full-size GFPGANv1Clean"),
        "detector": args.detector,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "runs": {
            p: {
                "seconds": round(r["seconds"], 2),
                "images_per_s": round(len(files) / r["seconds"], 4),
                "stage_median_ms": {s: round(statistics.median(v), 1) for s, v in r["per_stage"].items() if v},
                "stage_total_ms": {s: round(sum(v), 1) for s, v in r["per_stage"].items() if v},
                "rss_mib_after_first_tenth": round(r["rss"][first_tenth], 1),
                "rss_mib_at_end": round(r["rss"][-1], 1),
            }
            for p, r in runs.items()
        },
    }

    print(f"\n{len(files)} images, {runs[base]['faces']} faces per pass; baseline: {base}")
    header = f"{'stage':<10}" + "".join(f"{p + ' med':>14}{p + ' total':>16}" for p in precisions)
    print(header + "".join(f"{p + '/' + base:>16}" for p in precisions[1:]))
    for stage in STAGES:
        med = {p: figures["runs"][p]["stage_median_ms"].get(stage) for p in precisions}
        tot = {p: figures["runs"][p]["stage_total_ms"].get(stage) for p in precisions}
        if tot[base] is None:
            continue
        line = f"{stage:<10}" + "".join(f"{med[p]:>14.1f}{tot[p]:>16.1f}" for p in precisions)
        line += "".join(f"{tot[p] / max(tot[base], 1e-9):>16.2f}" for p in precisions[1:])
        print(line)
    for p in precisions:
        r = figures["runs"][p]
        ratio = "" if p == base else f", {r['images_per_s'] / figures['runs'][base]['images_per_s']:.2f}x {base}"
        print(f"{p}: {r['images_per_s']:.3f} images/s{ratio}; RSS {r['rss_mib_after_first_tenth']:.0f} MiB after "
              f"{first_tenth + 1} images, {r['rss_mib_at_end']:.0f} MiB after {len(files)}")
    print(f"peak RSS of the process: {figures['peak_rss_mib']:.0f} MiB")
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
        target.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"saved {target}")


if __name__ == "__main__":
    main()
