"""Train the landmark refiner (:class:`faceprior.models.landmark_refiner.LandmarkRefinerNet`).

Run by ``tools/train_landmark_refiner.py``. Each sample is a training photo (a CelebA-HQ face,
256 px): MTCNN's landmarks on the sharp photo are the target; the photo is degraded one of three
ways (``paper`` 60 %: the paper's whole recipe, colour steps included, as make-testset degrades;
``mild`` 25 %: the blend estimator's mild range; ``clean`` 15 %: as it is), MTCNN runs again on the
degraded photo (its face nearest the sharp one's, left out if more than half an eye distance off on
average), the degraded photo is aligned with those landmarks to the reference framing, and the
target is the sharp photo's landmarks in that crop, less the template (the offsets the network
learns). Photos where either detection finds no face are left out. Samples are made once (the
detector is the slow part), then the network trains on them for ``epochs`` epochs with L1, Adam and
a one-cycle learning rate, flipped left-right at random (the landmarks swapped and mirrored); the
last ``holdout`` samples are held out and the state with the lowest held-out error is kept.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from faceprior.face.landmark_refinement import refiner_view
from faceprior.face.templates import named_template
from faceprior.imaging.io import read_image
from faceprior.models.landmark_refiner import REFERENCE_FRAMING, REFERENCE_SIZE, LandmarkRefinerNet
from faceprior.paths import PathLike
from faceprior.training.blend_estimator import MILD
from faceprior.training.degradations import DegradationConfig, apply_degradation, sample_degradation

__all__ = ["MODES", "held_out_error", "landmark_samples", "train_landmark_refiner"]

#: the ways a training photo is degraded, and how often
MODES = {"clean": 0.15, "mild": 0.25, "paper": 0.6}
#: a degraded photo's face whose landmarks lie further than this many eye distances (on average) from the
#: sharp photo's is not the same detection: the pair is left out
MAX_DETECTION_ERROR = 0.5
#: mirrored faces: left and right eyes and mouth corners swap
FLIPPED = [1, 0, 2, 4, 3]


def landmark_samples(files: Sequence[PathLike], detector, seed: int = 0,
                     log: Optional[Callable[[str], None]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(faces [N, 64, 64, 3] uint8, offsets [N, 5, 2] float32) of the files where both detections
    found a face: the degraded face aligned with its detected landmarks, seen at 64 px, and where the
    sharp face's landmarks lie in that crop less the template (256 px crop pixels)."""
    template = named_template(REFERENCE_FRAMING, REFERENCE_SIZE)
    names, weights = list(MODES), np.array(list(MODES.values()))
    rng = np.random.default_rng(seed)
    faces, offsets, start = [], [], time.perf_counter()
    for index, path in enumerate(files):
        mode = names[rng.choice(len(names), p=weights / weights.sum())]
        sharp = read_image(path).pixels
        found = detector.detect_arrays(sharp)[2]
        if mode == "clean":
            degraded = sharp
        else:
            params = sample_degradation(MILD if mode == "mild" else DegradationConfig(), rng)
            degraded = (apply_degradation(sharp, params) * 255).round().astype(np.uint8)
        detected = detector.detect_arrays(degraded)[2]
        # the degraded photo's detection of the same face: the nearest; none if it is far (another
        # face, or a false detection): more than half the eye distance off on average
        distances = np.linalg.norm(detected - found[0], axis=2).mean(axis=1) if len(found) and len(detected) else None
        nearest = None if distances is None else int(np.argmin(distances))
        if nearest is not None and distances[nearest] <= MAX_DETECTION_ERROR * np.linalg.norm(found[0][1] - found[0][0]):
            (face,), (matrix,) = refiner_view(degraded, detected[nearest:nearest + 1])
            faces.append(face.round().astype(np.uint8))
            offsets.append((found[0] @ matrix[:, :2].T + matrix[:, 2] - template).astype(np.float32))
        if log and (index + 1) % 1000 == 0:
            log(f"{index + 1} photos, {len(faces)} samples, {time.perf_counter() - start:.0f} s")
    return np.stack(faces), np.stack(offsets)


def held_out_error(network: LandmarkRefinerNet, faces: torch.Tensor, offsets: torch.Tensor) -> tuple[float, float]:
    """Mean distance (256 px crop pixels) from the sharp face's landmarks, of the detected ones and of
    the refined ones: (before, after)."""
    with torch.inference_mode():
        predicted = network.eval()(faces)
    return float(offsets.norm(dim=-1).mean()), float((predicted - offsets).norm(dim=-1).mean())


def train_landmark_refiner(faces: np.ndarray, offsets: np.ndarray, out_path: PathLike, epochs: int = 20,
                           holdout: int = 400, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                           log: Optional[Callable[[str], None]] = None) -> dict[str, float]:
    """Train on samples of :func:`landmark_samples`; write the best held-out state (safetensors) to
    ``out_path``; return its held-out errors ({"before": px, "after": px, "epoch": e})."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(offsets)
    x_train, y_train, x_held, y_held = x[:-holdout], y[:-holdout], x[-holdout:], y[-holdout:]
    template = torch.from_numpy(named_template(REFERENCE_FRAMING, REFERENCE_SIZE).astype(np.float32))
    mirrored = template[FLIPPED] * torch.tensor([-1.0, 1.0]) + torch.tensor([REFERENCE_SIZE - 1.0, 0.0])
    network = LandmarkRefinerNet()
    optimizer = torch.optim.Adam(network.parameters(), lr)
    steps = math.ceil(len(x_train) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps)
    best = {"before": math.nan, "after": math.inf, "epoch": -1}
    for epoch in range(epochs):
        network.train()
        order = torch.from_numpy(generator.permutation(len(x_train)))
        for step in range(steps):
            batch = order[step * batch_size:(step + 1) * batch_size]
            inputs, targets = x_train[batch], y_train[batch]
            if generator.random() < 0.5:  # the mirrored face: its landmarks swapped and mirrored
                inputs = inputs.flip(-1)
                targets = targets[:, FLIPPED] * torch.tensor([-1.0, 1.0]) + (mirrored - template)
            loss = (network(inputs) - targets).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        before, after = held_out_error(network, x_held, y_held)
        kept = after < best["after"]
        if kept:
            best = {"before": before, "after": after, "epoch": epoch}
            save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(out_path))
        if log:
            log(f"epoch {epoch + 1}/{epochs}: held-out landmark error {after:.2f} px (detected {before:.2f})"
                + (" kept" if kept else ""))
    return best
