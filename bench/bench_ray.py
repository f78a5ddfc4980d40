"""Throughput of `faceprior restore --engine ray` beside one process, measured in the same run.

    .venv/bin/python bench/bench_ray.py                       # ../shared/data/realworld-whole
    .venv/bin/python bench/bench_ray.py --source DIR --limit 20

Restores the same photos four ways, each into a fresh folder: one process with this machine's
threads; one process with one thread; Ray with 1 actor and with 2 actors (1 CPU and 1 thread
each) on a local Ray instance (started once, not timed). Prints photos/s for each, the ratios, and
the Ray path's overhead per photo: (Ray with 1 actor - one process with 1 thread) / photos, the
cost of the stages, the object store and the actor beyond the same restoration work. Checks that
every Ray output equals the one-thread process's output byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def stage_means(manifest: Path) -> dict:
    """Mean milliseconds per photo of each stage recorded in a manifest (read ... write)."""
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    order = ("read", "detect", "align", "restore", "upsample", "paste", "encode", "write")
    return {name: sum(r["timings_ms"].get(name, 0.0) for r in records) / len(records) for name in order}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "realworld-whole")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import ray

    from faceprior.archive.ray_restore import restore_with_ray
    from faceprior.cli import main as cli_main
    from faceprior.restoration.batch import find_inputs

    work = Path(tempfile.mkdtemp(prefix="faceprior-bench-ray-"))
    try:
        source = args.source
        inputs, _ = find_inputs([str(source)])
        if args.limit:
            source = work / "source"
            for item in inputs[:args.limit]:
                (source / item.relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item.path, source / item.relative)
            inputs, _ = find_inputs([str(source)])
        count = len(inputs)
        threads = torch.get_num_threads()
        rows = []

        def one_process(name: str, n_threads: int) -> float:
            torch.set_num_threads(n_threads)
            start = time.perf_counter()
            status = cli_main(["restore", str(source), "-o", str(work / name), "--batch-size", str(args.batch_size)])
            elapsed = time.perf_counter() - start
            torch.set_num_threads(threads)
            assert status == 0, f"faceprior restore failed ({name})"
            rows.append((f"one process, {n_threads} thread(s)", elapsed))
            return elapsed

        one_process("local", threads)
        single = one_process("local1", 1)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_times = {}
        for actors in (1, 2):
            start = time.perf_counter()
            summary = restore_with_ray(str(source), str(work / f"ray{actors}"), {"model": None, "batch_size": args.batch_size},
                                       actors=actors, batch_size=args.batch_size, log=open(os.devnull, "w"))
            ray_times[actors] = time.perf_counter() - start
            assert summary.images == count and not summary.failures, summary.line()
            rows.append((f"Ray, {actors} actor(s) x 1 CPU", ray_times[actors]))
            if actors == 1:
                stages = stage_means(summary.manifest)
            for item in inputs:
                relative = item.relative
                assert (work / f"ray{actors}" / relative).read_bytes() == (work / "local1" / relative).read_bytes(), relative
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{count} photos from {args.source}{f' (first {args.limit})' if args.limit else ''}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, torch {threads} thread(s) by default")
    base = rows[0][1]
    for name, seconds in rows:
        print(f"{name:32s} {seconds:7.1f} s  {count / seconds:6.3f} photos/s  {base / seconds:5.2f} x one process")
    work_ms = sum(stages.values())
    print("mean per photo by stage (Ray, 1 actor; from the manifest): "
          + ", ".join(f"{name} {ms:.0f} ms" for name, ms in stages.items()) + f"; together {work_ms:.0f} ms")
    print(f"Ray overhead per photo (1 actor - one process with 1 thread): {(ray_times[1] - single) / count * 1000:+.0f} ms "
          f"= {work_ms - single / count * 1000:+.0f} ms in the stages + {(ray_times[1] - work_ms * count / 1000):.1f} s "
          f"once (actor start and model load, Ray Data start, pipeline ramp-up and tail) over {count} photos")
    print("every Ray output equals the one-thread process's output byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
