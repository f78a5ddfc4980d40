"""Per-image results of ``faceprior evaluate``, split by how degraded the input is.

    python tools/by_severity.py /work/runs/eval256_v2/results.json --metric dlib-id [--by psnr] [--bins 5]

Sorts the test images by the degraded input's value of ``--by`` (default: ``--metric`` itself),
from the mildest to the worst degradation, cuts them into ``--bins`` groups of equal size, and
prints per group the mean ``--metric`` of every method and how often each model beats the input
on that image, then each model's paired mean difference from the input with a 95 % interval.
Only images where every method has a value count (as in the results table). A mean that hides a
loss on mild inputs and a gain on bad ones shows up here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="results.json written by faceprior evaluate")
    parser.add_argument("--metric", required=True, help="metric to report, e.g. dlib-id")
    parser.add_argument("--by", help="metric of the input that orders the images (default: --metric)")
    parser.add_argument("--bins", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        parser.error(f"{args.results}: cannot read ({e})")
    columns = {c["name"]: c for c in results.get("metrics", [])}
    by = args.by or args.metric
    for name in (args.metric, by):
        if name not in columns:
            parser.error(f"{args.results}: no metric {name!r} (has: {', '.join(columns)})")
    methods = results["methods"]
    if methods[0]["key"] != "input":
        parser.error(f"{args.results}: the first method is {methods[0]['key']!r}, not the degraded input")
    values = [m["per_image"][args.metric] for m in methods]
    order_values = methods[0]["per_image"][by]
    names = [n for n in results["settings"]["image_names"]
             if order_values.get(n) is not None and all(v.get(n) is not None for v in values)]
    if len(names) < args.bins:
        parser.error(f"{args.results}: {len(names)} images with values, fewer than --bins {args.bins}")
    # Mildest first: a better input value means a milder degradation.
    sign = -1 if columns[by]["higher_is_better"] else 1
    names.sort(key=lambda n: sign * order_values[n])
    table = np.array([[v[n] for n in names] for v in values])  # [methods, images]
    better = (lambda a, b: a > b) if columns[args.metric]["higher_is_better"] else (lambda a, b: a < b)

    labels = [m["label"] for m in methods]
    print(f"{args.metric} by the input's {by}, mildest first ({len(names)} images, {args.bins} groups); "
          f"'wins' = share of images where the method beats the input")
    print("group  images  " + "  ".join(f"{label:>14}" for label in labels)
          + "".join(f"  {label + ' wins':>20}" for label in labels[1:]))
    for index, chunk in enumerate(np.array_split(np.arange(len(names)), args.bins)):
        means = table[:, chunk].mean(axis=1)
        wins = [better(table[m, chunk], table[0, chunk]).mean() for m in range(1, len(methods))]
        print(f"{index + 1:>5}  {len(chunk):>6}  " + "  ".join(f"{v:>14.4f}" for v in means)
              + "".join(f"  {w:>20.2f}" for w in wins))
    means = table.mean(axis=1)
    print(f"{'all':>5}  {len(names):>6}  " + "  ".join(f"{v:>14.4f}" for v in means))
    # Paired over the same images: is a model's difference from the input more than noise?
    print("paired difference from the input, mean and 95 % interval (mean +- 1.96 standard errors):")
    for label, row in zip(labels[1:], table[1:]):
        diff = row - table[0]
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
        print(f"  {label}: {diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
