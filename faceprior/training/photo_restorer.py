"""Train the photo restorer (:class:`faceprior.models.photo_restorer.PhotoRestorerNet`).

Run by ``tools/train_photo_restorer.py``. Each sample is a training photo (a CelebA-HQ face,
256 px), flipped at random, degraded one of three ways and cut to a random square crop, the
same for its clean copy:

- ``clean`` (15 %): not degraded; the network must return it as it is (a sharp photo is left alone);
- ``mild`` (25 %): blur sigma <= 1.5, downsampling <= 2x, noise <= 5, JPEG >= 70;
- ``paper`` (60 %): the paper's recipe (blur, downsampling, noise, JPEG) without its colour steps
  (the photo's colours are its own: the network does not learn to take casts off), 5 % of them
  grey with a grey reference.

The whole photo is degraded before it is cropped, so that the degradations have the sizes they
have in a photo. Loss: L1. Adam, cosine learning-rate decay over the run; held-out photos (the
last ``holdout`` training files, each with fixed degradations) are measured every
``eval_every`` iterations and the state with the best mean PSNR on the ``paper`` ones is kept:
the photo restorer is applied as much as a photo's faces were restored, so it is the degraded
photos it must restore best; on clean ones it only needs to stay close (printed beside it).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from faceprior.metrics.psnr_ssim import psnr
from faceprior.models.photo_restorer import PhotoRestorerNet
from faceprior.paths import PathLike
from faceprior.training.blend_estimator import MILD
from faceprior.training.degradations import (DegradationConfig, apply_degradation, gray_image, read_float_image,
                                             sample_degradation)

__all__ = ["MODES", "PHOTO_PAPER", "degraded_photo", "held_out_psnr", "photo_batches", "summary_line",
           "train_photo_restorer"]

#: the ways a training photo is degraded, and how often
MODES = {"clean": 0.15, "mild": 0.25, "paper": 0.6}
#: the paper's recipe without its colour changes; grey photos stay grey in the reference
PHOTO_PAPER = DegradationConfig(color_jitter_prob=None, color_jitter_pt_prob=None, gray_prob=0.05, gt_gray=True)


def degraded_photo(gt: np.ndarray, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(input, reference) float32 [H, W, 3] in [0, 1] of one photo for ``mode`` (see the module)."""
    if mode == "clean":
        return gt, gt
    params = sample_degradation(MILD if mode == "mild" else PHOTO_PAPER, rng)
    lq = apply_degradation(gt, params)
    if params.gray and params.gt_gray:
        gt = gray_image(gt)
    return lq, gt


def photo_batches(files: Sequence[PathLike], batch_size: int, crop: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (input, reference) batches [B, 3, crop, crop] in [0, 1] from ``files``."""
    rng = np.random.default_rng(seed)
    names, weights = list(MODES), np.array(list(MODES.values()))
    while True:
        inputs, references = [], []
        for _ in range(batch_size):
            gt = read_float_image(files[rng.integers(len(files))])
            if rng.random() < 0.5:
                gt = np.ascontiguousarray(gt[:, ::-1])
            lq, gt = degraded_photo(gt, names[rng.choice(len(names), p=weights / weights.sum())], rng)
            y = rng.integers(gt.shape[0] - crop + 1)
            x = rng.integers(gt.shape[1] - crop + 1)
            inputs.append(lq[y:y + crop, x:x + crop])
            references.append(gt[y:y + crop, x:x + crop])
        yield tuple(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous() for images in (inputs, references))


def held_out_set(files: Sequence[PathLike], seed: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(mode, input, reference) for each held-out file, its mode and degradation fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(MODES)
    return [(names[i % len(names)], *degraded_photo(read_float_image(path), names[i % len(names)], rng))
            for i, path in enumerate(files)]


@torch.no_grad()
def held_out_psnr(network: PhotoRestorerNet, samples: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Mean PSNR per mode (and "all") of the network's output and of the input, against the references."""
    network.eval()
    rows: dict[str, list[tuple[float, float]]] = {}
    for mode, lq, gt in samples:
        x = torch.from_numpy(lq).permute(2, 0, 1)[None]
        out = network(x)[0].permute(1, 2, 0).numpy()
        values = [min(psnr(image, gt), 100.0) for image in (out, lq)]  # a photo returned exactly: 100 dB
        rows.setdefault(mode, []).append(values)
        rows.setdefault("all", []).append(values)
    network.train()
    return {mode: {"output": float(np.mean([r[0] for r in values])), "input": float(np.mean([r[1] for r in values]))}
            for mode, values in rows.items()}


def summary_line(summary: dict[str, dict[str, float]]) -> str:
    """A :func:`held_out_psnr` summary on one line: the output's PSNR per mode, the input's beside it."""
    return ", ".join(f"{mode} {row['output']:.2f} dB (input {row['input']:.2f})" for mode, row in summary.items())


def train_photo_restorer(files: Sequence[PathLike], out_path: PathLike, iterations: int = 3000, minutes: float = math.inf,
                         batch_size: int = 12, crop: int = 160, lr: float = 4e-4, holdout: int = 60,
                         eval_every: int = 250, seed: int = 0, init: Optional[PathLike] = None,
                         log: Callable[[str], None] = print) -> dict:
    """Train on ``files`` but the last ``holdout``; stop after ``iterations`` or ``minutes``.
    ``init``: a safetensors file of weights to start from (a second run at a lower ``lr``).

    The learning rate decays along a cosine over ``iterations``. The state with the best held-out
    mean PSNR on the ``paper`` photos is written to ``out_path`` (safetensors). Returns the held-out
    summary of that state."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    files = list(files)
    train_files, held_files = files[:-holdout], files[-holdout:]
    held = held_out_set(held_files)
    network = PhotoRestorerNet()
    if init is not None:
        from safetensors.torch import load_file

        network.load_state_dict(load_file(str(init)))
    optimizer = torch.optim.Adam(network.parameters(), lr=lr, betas=(0.9, 0.99))
    batches = photo_batches(train_files, batch_size, crop, seed)
    best, best_summary, losses = -math.inf, {}, []
    start = time.perf_counter()
    for iteration in range(1, iterations + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (iteration - 1) / iterations))
        inputs, references = next(batches)
        loss = F.l1_loss(network(inputs), references)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        out_of_time = (time.perf_counter() - start) / 60 >= minutes
        if iteration % eval_every == 0 or iteration == iterations or out_of_time:
            summary = held_out_psnr(network, held)
            kept = summary["paper"]["output"] > best
            if kept:
                best, best_summary = summary["paper"]["output"], summary
                save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(out_path))
            log(f"iteration {iteration} ({time.perf_counter() - start:.0f} s, L1 {np.mean(losses):.4f})"
                f"{' kept' if kept else ''}; held out: {summary_line(summary)}")
            losses = []
        if out_of_time:
            break
    return best_summary
