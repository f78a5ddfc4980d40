"""Replay the blow-up guard of the training loop over finished runs' logs.

For each run's ``metrics.jsonl`` (written by ``faceprior train``), feeds the logged training
scalars to the same check the loop runs (``train.blowup_factor``) and prints where it would have
stopped the run, or that it never fires. Used to pick the default factor without stopping healthy runs:

    python tools/replay_blowup_guard.py /work/runs/*/metrics.jsonl [--factor 1000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faceprior.training.logging import read_metrics
from faceprior.training.loop import TrainingDivergedError, check_loss_blowup


def replay(path: Path, factor: float) -> str:
    """Where the guard fires on the run logged in ``path`` (its message), or 'never fires'."""
    history: dict[str, list[float]] = {}
    for record in read_metrics(path, "train"):
        losses = {k: float(v) for k, v in record.items() if k.startswith("l_")}
        try:
            check_loss_blowup(losses, history, factor, int(record["iter"]), str(path.parent))
        except TrainingDivergedError as error:
            return str(error).split(": the weights")[0]
    return "never fires"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help="metrics.jsonl files of training runs")
    parser.add_argument("--factor", type=float, default=1000.0, help="train.blowup_factor to replay (default 1000)")
    args = parser.parse_args()
    for path in args.logs:
        print(f"{path.parent.name}: {replay(path, args.factor)}")


if __name__ == "__main__":
    main()
