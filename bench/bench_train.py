"""Time GFP-GAN training iterations: fp32 against bf16 autocast, same config, same batch, same run.

Builds the trainer of a config twice (identical initial weights), once in fp32 and once with bf16
autocast, and times ``train_step`` on one fixed batch: ``--warmup`` untimed iterations (oneDNN
builds its kernels for each new shape on the first ones), then ``--iters`` timed ones, alternating
between the two so that load from other processes hits both alike. Prints seconds per iteration
(median and min) for each and the ratio bf16 / fp32, plus the data-loading time per batch.
Validation, logging and checkpointing are not included (see ``sec_per_iter`` in a run's metrics).

    .venv/bin/python bench/bench_train.py [--config configs/gfpgan_clean_256_small.yaml] [--iters 5]
        [--warmup 2] [--threads 2] [--set data.batch_size=2 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from faceprior.training.config import load_config
from faceprior.training.distributed import BatchStream, DistributedContext
from faceprior.training.logging import NullLogger
from faceprior.training.loop import seed_everything
from faceprior.training.train_gfpgan import GFPGANTrainer

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "gfpgan_clean_256_small.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per precision")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per precision first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = load_config(args.config, overrides=[*args.set, "data.val=null"])
    if config.task != "gfpgan":
        raise SystemExit(f"{args.config}: bench_train times task gfpgan configs")
    device = torch.device("cuda" if config.train.device != "cpu" and torch.cuda.is_available() else "cpu")

    trainers = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        seed_everything(config.train.seed)
        trainers[name] = GFPGANTrainer(config, DistributedContext(device=device, amp_dtype=dtype), NullLogger())
    stream = BatchStream(trainers["fp32"].train_dataset, config.data.batch_size, DistributedContext(device=device),
                         seed=0)
    start = time.perf_counter()
    batches = [[next(stream) for _ in range(config.train.grad_accum)] for _ in range(2)]
    data_seconds = (time.perf_counter() - start) / (2 * config.train.grad_accum)

    times: dict[str, list[float]] = {name: [] for name in trainers}
    for iteration in range(1, args.warmup + args.iters + 1):
        for name, trainer in trainers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step(iteration, batches[iteration % 2])
            if device.type == "cuda":
                torch.cuda.synchronize()
            if iteration > args.warmup:
                times[name].append(time.perf_counter() - start)

    g_params = sum(p.numel() for p in trainers["fp32"].net_g.parameters())
    print(f"config {args.config} ({' '.join(args.set) or 'no overrides'}): {config.model.arch} {config.data.size} px, "
          f"{g_params / 1e6:.2f}M generator parameters, batch {config.data.batch_size} x {config.train.grad_accum}, "
          f"device {device}, {args.threads} threads")
    print(f"data loading: {data_seconds:.3f} s per batch (one worker's work; overlapped by DataLoader workers)")
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.3f} s/iter median (fastest {min(values):.3f}) over {len(values)} iterations")
    ratio = statistics.median(times["bf16"]) / statistics.median(times["fp32"])
    print(f"bf16 autocast / fp32 = {ratio:.2f} (median time per iteration; < 1: bf16 is faster)")


if __name__ == "__main__":
    main()
