"""Training logs: JSON-lines scalars always, TensorBoard scalars and images when available.

``metrics.jsonl`` in the run folder gets one JSON object per logged step::

    {"kind": "train", "iter": 1200, "time": 1712345678.9, "l_g_pix": 0.021, "lr_g": 0.002, ...}
    {"kind": "val", "iter": 1000, "psnr": 24.1, "ssim": 0.71, "psnr_lq": 21.3, ...}

It is appended to (a resumed run continues the same file; lines of iterations after the resumed
checkpoint, written by the interrupted run, stay in the file: readers keep the last line per
(kind, iter)). If ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package), the
same scalars and the image grids also go to ``tb/``; otherwise one note says so.
Only rank 0 creates a logger; the other ranks get a :class:`NullLogger`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np

from faceprior.imaging.io import write_image

__all__ = ["NullLogger", "ScalarLogger", "image_grid", "read_metrics"]


def image_grid(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile images into a grid: ``rows`` is a list of [N, H, W, 3] uint8 arrays (one per grid row,
    same N, H, W). Returns [R*H + (R-1)*gap, N*W + (N-1)*gap, 3] uint8 with white gaps."""
    num_rows = len(rows)
    n, h, w, _ = rows[0].shape
    canvas = np.full((num_rows * (h + gap) - gap, n * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i in range(n):
            canvas[r * (h + gap):r * (h + gap) + h, i * (w + gap):i * (w + gap) + w] = row[i]
    return canvas


class NullLogger:
    """Logger of non-zero ranks: ignores everything."""

    def log_scalars(self, kind: str, iteration: int, scalars: Mapping[str, float]) -> None:
        pass

    def log_image(self, tag: str, iteration: int, image: np.ndarray) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class ScalarLogger(NullLogger):
    """Rank-0 logger: ``metrics.jsonl``, printed lines, PNG sample grids, optional TensorBoard.

    Args:
        out_dir: the run folder.
        use_tensorboard: try TensorBoard (skipped with a note if it cannot be imported).
        stream: where progress lines are printed (stdout).
    """

    def __init__(self, out_dir: Union[str, Path], use_tensorboard: bool = True, stream=None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stream = stream if stream is not None else sys.stdout
        self.jsonl_path = self.out_dir / "metrics.jsonl"
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self.tensorboard = None
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.info("tensorboard is not installed: scalars go to metrics.jsonl, images to samples/ only")
            else:
                self.tensorboard = SummaryWriter(str(self.out_dir / "tb"))

    def info(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def log_scalars(self, kind: str, iteration: int, scalars: Mapping[str, float]) -> None:
        """Append one JSON line and (if enabled) TensorBoard scalars ``{kind}/{name}``."""
        record = {"kind": kind, "iter": int(iteration), "time": round(time.time(), 3)}
        record.update({k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in scalars.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self.tensorboard is not None:
            for name, value in scalars.items():
                self.tensorboard.add_scalar(f"{kind}/{name}", float(value), iteration)

    def log_image(self, tag: str, iteration: int, image: np.ndarray) -> None:
        """Write ``samples/{tag}_{iteration:08d}.png`` and the TensorBoard image. image: [H, W, 3] uint8."""
        (self.out_dir / "samples").mkdir(exist_ok=True)
        write_image(self.out_dir / "samples" / f"{tag}_{iteration:08d}.png", image, overwrite=True)
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, image, iteration, dataformats="HWC")

    def close(self) -> None:
        self._jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(path: Union[str, Path], kind: Optional[str] = None) -> list[dict]:
    """The records of a ``metrics.jsonl`` (optionally of one kind), the last one per (kind, iter),
    sorted by iteration."""
    latest: dict[tuple[str, int], dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if kind is None or record["kind"] == kind:
                    latest[(record["kind"], record["iter"])] = record
    return sorted(latest.values(), key=lambda r: (r["iter"], r["kind"]))
