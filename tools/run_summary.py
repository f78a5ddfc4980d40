"""Compute and validation curve of finished training runs, from their metrics.jsonl.

    python tools/run_summary.py /work/runs/gfpgan_256_wide/metrics.jsonl [more runs ...]

Per run: the iterations its train records cover, the training time they add up to (each record's
``sec_per_iter`` times the iterations since the previous record: time spent training, not waiting
or validating), the median seconds per iteration, and the ``[val]`` curve (iteration: PSNR / SSIM
of the EMA generator, with the degraded input's). A run resumed several times has one record
per logged iteration of every attempt; records of an iteration logged again after a resume
replace the earlier ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.training.logging import read_metrics  # noqa: E402


def summarize(path: Path) -> str:
    train = {int(r["iter"]): r for r in read_metrics(path, "train")}
    val = {int(r["iter"]): r for r in read_metrics(path, "val")}
    if not train:
        return f"{path}: no train records"
    iterations = sorted(train)
    seconds, previous = 0.0, None
    for it in iterations:
        if previous is not None:
            seconds += train[it]["sec_per_iter"] * (it - previous)
        previous = it
    median = statistics.median(train[it]["sec_per_iter"] for it in iterations)
    lines = [f"{path}: train records {iterations[0]}-{iterations[-1]}, {seconds / 60:.0f} min of training "
             f"between them, median {median:.2f} s/iteration"]
    if val:
        first = val[min(val)]
        lines.append(f"  val (EMA; degraded input {first.get('psnr_lq', float('nan')):.2f} dB / "
                     f"{first.get('ssim_lq', float('nan')):.4f}): " +
                     ", ".join(f"{it}: {val[it]['psnr']:.2f} / {val[it]['ssim']:.4f}" for it in sorted(val)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="RUN/metrics.jsonl files")
    args = parser.parse_args()
    for path in args.metrics:
        print(summarize(path))


if __name__ == "__main__":
    main()
