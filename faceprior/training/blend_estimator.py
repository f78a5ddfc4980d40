"""Train the blend-weight estimator (:class:`faceprior.models.blend_estimator.BlendWeightNet`).

Two steps, both resumable, run by ``tools/train_blend_estimator.py``:

1. :func:`build_blend_dataset`: each training face ``gt`` (aligned, the model's framing and
   size) is degraded in one of three ways: ``clean`` (not at all: the input is its own
   reference), ``mild`` (blur sigma <= 1.5, downsample <= 2, noise <= 5, JPEG >= 70) or
   ``paper`` (the paper's recipe, as the test sets), and cropped in one of two ways: ``direct``
   (a slightly re-framed copy: random similarity, scale 0.95-1.05, rotation +-3 degrees, shift
   +-2 px), as aligned inputs are; or ``photo`` (sometimes enlarged 1.2-2x first, degraded as a
   photo, its face found by the detector and aligned as ``faceprior restore`` does, the photo mirrored
   where the crop leaves it), as whole photos are. The model restores the crop (``r``);
   the dataset keeps the input ``a`` and ``r`` (uint8) and three numbers per
   sample, mask-weighted means over the face (the paste mask ``face_mask``):
   ``A = <(r - a)^2>``, ``B = <(r - a)(gt - a)>``, ``C = <(gt - a)^2>``, so that the error of any
   blend ``a + w (r - a)`` is ``w^2 A - 2 w B + C`` without keeping ``gt``.
   Optional step 1b, :func:`build_identity_table`: the identity distance (dlib's face
   descriptors) of each sample's blend to its reference at five weights, the reference made again
   from the same seed (:func:`training_sample`, the one function that makes a sample).
2. :func:`train_blend_estimator`: minimise the mean of ``log(w^2 A - 2 w B + C + eps)`` (the
   negative PSNR of the blended face, up to constants) over the samples, with horizontal flips;
   with an identity table, plus a multiple of how much farther from the person the blend is than
   the input (interpolated in the table; not below 0). The best blend of a sample is
   ``w* = clip(B / A, 0, 1)``: the loss needs no label of it.

Only the input and the model's output are seen at test time; ``gt`` never is.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from faceprior.face.align import aligned_crops, warp_affine
from faceprior.face.paste import face_mask
from faceprior.imaging.io import read_image
from faceprior.imaging.pixels import from_float01, to_float01
from faceprior.models.blend_estimator import BlendWeightNet
from faceprior.models.dlib_resnet import DLIB_CHIP_SIZE, DlibFaceResNet
from faceprior.paths import PathLike, write_bytes_atomically
from faceprior.training.degradations import DegradationConfig, apply_degradation, sample_degradation
from faceprior.training.losses import resample_box

__all__ = ["IDENTITY_WEIGHTS", "MILD", "MODES", "BlendDataset", "TrainingSample", "blend_loss", "blend_plan",
           "build_blend_dataset", "build_identity_table", "best_weights", "identity_harm", "identity_of_blend",
           "train_blend_estimator", "training_sample"]

#: the ways a training face is degraded, and how often
MODES = {"clean": 0.25, "mild": 0.25, "paper": 0.5}
#: the "mild" degradations: a little blur, a small downsampling, a little noise, good JPEG; no colour changes
MILD = DegradationConfig(blur_sigma=(0.1, 1.5), downsample_range=(0.8, 2.0), noise_range=(0.0, 5.0),
                         jpeg_range=(70.0, 100.0), color_jitter_prob=None, gray_prob=None, color_jitter_pt_prob=None)
PAPER = DegradationConfig()
#: floor of the per-sample mean squared error in the loss (a 50 dB PSNR cap): without it the
#: clean samples (error -> 0 as w -> 0) outweigh all others and the network learns w = 0 everywhere
EPS = 1e-5
#: logits beyond this size are pulled back (a saturated sigmoid passes no gradient)
LOGIT_LIMIT = 5.0

Restore = Callable[[np.ndarray], np.ndarray]  # [B, S, S, 3] uint8 -> [B, S, S, 3] uint8


def reframe(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random small similarity resample of a square face (the pipeline's alignment jitter)."""
    size = image.shape[0]
    scale = rng.uniform(0.95, 1.05)
    angle = math.radians(rng.uniform(-3.0, 3.0))
    shift = rng.uniform(-2.0, 2.0, size=2)
    centre = (size - 1) / 2.0
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
    matrix[:, 2] = centre - matrix[:, :2] @ np.array([centre, centre]) + shift
    return warp_affine(image, matrix, size, border="replicate")


#: how the training crops are made, and how often (see the module docstring)
FRAMINGS = {"direct": 0.4, "photo": 0.6}
#: photo -> crop matrix of the largest face the pipeline finds in a uint8 photo, or None
Align = Callable[[np.ndarray], Optional[np.ndarray]]


def photo_pair(gt: np.ndarray, mode: str, rng: np.random.Generator, align: Align,
               size: int) -> Optional[tuple[np.ndarray, np.ndarray, float]]:
    """(input crop, reference crop, enlargement) made as whole photos are restored (None: no face
    found); enlargement is the factor the photo was enlarged by before degrading (1: not)."""
    factor = 1.0
    if rng.random() < 0.3:  # a larger photo: its crop is downsampled, as for 512 px photos and a 256 px model
        factor = rng.uniform(1.2, 2.0)
        side = int(round(gt.shape[0] * factor))
        scale = side / gt.shape[0]
        gt = warp_affine(gt, np.array([[scale, 0.0, 0.5 * scale - 0.5], [0.0, scale, 0.5 * scale - 0.5]]), side,
                         border="replicate")
    lq, reference = degraded_pair(gt, mode, rng)
    matrix = align(np.rint(np.clip(lq, 0, 1) * 255).astype(np.uint8))
    if matrix is None:
        return None
    # cropped as the pipeline crops (``FaceRestorer.prepare_faces``)
    return aligned_crops(lq, matrix[None], size)[0], aligned_crops(reference, matrix[None], size)[0], factor


@dataclass
class TrainingSample:
    """One planned sample: input uint8 [S, S, 3], reference float32 [S, S, 3] in [0, 1], and how it
    was framed ("direct", "photo", or "photo-larger" for a photo enlarged before degrading)."""

    input: np.ndarray
    reference: np.ndarray
    framing: str


def training_sample(image: PathLike, kind: str, seed: int, number: int, size: int,
                    align: Optional[Align]) -> TrainingSample:
    """Sample ``number`` of a dataset built with ``seed``: the face in ``image`` degraded as ``kind``
    says and cropped one of the :data:`FRAMINGS` ways (``direct`` where ``align`` is None or finds
    no face). The same arguments give the same sample (the dataset's inputs and the identity
    table's references are made by this one function)."""
    rng = np.random.default_rng([seed, number])
    gt = to_float01(read_image(image).pixels, np.float32)
    if gt.shape[:2] != (size, size):
        scale = np.array([[size / gt.shape[1], 0, 0.5 * size / gt.shape[1] - 0.5],
                          [0, size / gt.shape[0], 0.5 * size / gt.shape[0] - 0.5]])
        gt = warp_affine(gt, scale, size, border="replicate")
    if align is not None and rng.random() < FRAMINGS["photo"]:
        photo = photo_pair(gt, kind, rng, align, size)
        if photo is not None:
            lq, reference, factor = photo
            return TrainingSample(from_float01(lq, np.uint8), reference, "photo" if factor == 1.0 else "photo-larger")
    lq, reference = degraded_pair(gt, kind, rng)
    return TrainingSample(from_float01(lq, np.uint8), reference, "direct")


def degraded_pair(gt: np.ndarray, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(input, reference), float32 [S, S, 3] in [0, 1], of one training face for ``mode``."""
    reference = reframe(gt, rng)
    if mode == "clean":
        return reference, reference
    params = sample_degradation(MILD if mode == "mild" else PAPER, rng)
    return apply_degradation(reference, params), reference


def blend_statistics(inputs: np.ndarray, restored: np.ndarray, references: np.ndarray) -> np.ndarray:
    """[B, 3] (A, B, C): mask-weighted means over face and channels, images [B, S, S, 3] in [0, 1]."""
    mask = face_mask(inputs.shape[1]).astype(np.float64)[None, :, :, None]
    weight = mask.sum() * 3
    change = restored.astype(np.float64) - inputs
    error = references.astype(np.float64) - inputs
    return np.stack([(mask * change * change).sum(axis=(1, 2, 3)) / weight,
                     (mask * change * error).sum(axis=(1, 2, 3)) / weight,
                     (mask * error * error).sum(axis=(1, 2, 3)) / weight], axis=1)


@dataclass
class BlendDataset:
    """A built dataset: inputs, restored [N, S, S, 3] uint8 (memory-mapped), stats [N, 3] float64,
    modes [N]; with its identity table (:func:`build_identity_table`), identity [N, K] float32
    (the distances at :data:`IDENTITY_WEIGHTS`) and framing [N] ("direct", "photo", "photo-larger");
    None without it."""

    inputs: np.ndarray
    restored: np.ndarray
    stats: np.ndarray
    modes: np.ndarray
    identity: Optional[np.ndarray] = None
    framing: Optional[np.ndarray] = None

    @classmethod
    def open(cls, folder: PathLike) -> "BlendDataset":
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        count, size = int(meta["done"]), int(meta["size"])
        shape = (int(meta["count"]), size, size, 3)
        inputs = np.memmap(folder / "inputs.u8", np.uint8, "r", shape=shape)[:count]
        restored = np.memmap(folder / "restored.u8", np.uint8, "r", shape=shape)[:count]
        stats = np.load(folder / "stats.npy")[:count]
        modes = np.array(meta["modes"][:count])
        identity = framing = None
        if (folder / "identity.npy").is_file():
            table = np.load(folder / "identity.npy")[:count]
            codes = np.load(folder / "framing.npy")[:count]
            if not np.isnan(table).any():
                identity, framing = table, np.array(list(FRAMING_NAMES))[codes]
        return cls(inputs, restored, stats, modes, identity, framing)


def blend_plan(image_count: int, samples_per_image: int, seed: int) -> list[tuple[int, str]]:
    """(image index, degradation mode) of each sample of a dataset, in the dataset's order."""
    rng = np.random.default_rng(seed)
    plan = [(index, str(mode)) for index in range(image_count) for mode in
            rng.choice(list(MODES), size=samples_per_image, p=list(MODES.values()))]
    rng.shuffle(plan)
    return plan


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` that leaves the old file or the new one, never a part (a killed run resumes)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_bytes_atomically(path, buffer.getvalue())


def build_blend_dataset(images: Sequence[PathLike], restore: Restore, out_dir: PathLike, size: int,
                        samples_per_image: int = 2, seed: int = 0, chunk: int = 64, align: Optional[Align] = None,
                        log: Callable[[str], None] = print) -> BlendDataset:
    """Write the dataset of step 1 into ``out_dir`` (resumes where a killed run stopped).

    images: aligned training faces (any size; resized to ``size`` when not square of it).
    restore: the model on aligned crops, uint8 [B, S, S, 3] -> uint8 [B, S, S, 3].
    align: the pipeline's face alignment, for the ``photo`` crops (None: ``direct`` crops only;
        a photo whose face is not found gets a ``direct`` crop).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(images) * samples_per_image
    plan = blend_plan(len(images), samples_per_image, seed)
    meta_path = out_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    wanted = {"count": count, "size": size, "seed": seed, "images": [str(p) for p in images],
              "modes": [mode for _, mode in plan], "photo_crops": align is not None,
              "crop_border": "reflect"}
    if meta is not None and any(meta.get(key) != value for key, value in wanted.items()):
        raise ValueError(f"{out_dir}: holds a dataset built with other settings; use another folder")
    done = int(meta["done"]) if meta else 0
    mode = "r+" if meta else "w+"
    shape = (count, size, size, 3)
    inputs = np.memmap(out_dir / "inputs.u8", np.uint8, mode, shape=shape)
    restored = np.memmap(out_dir / "restored.u8", np.uint8, mode, shape=shape)
    stats = np.load(out_dir / "stats.npy") if meta else np.zeros((count, 3))
    start = time.perf_counter()
    first = done
    while done < count:
        batch = plan[done:done + chunk]
        samples = [training_sample(images[index], kind, seed, done + offset, size, align)
                   for offset, (index, kind) in enumerate(batch)]
        lq = np.stack([sample.input for sample in samples])
        out = restore(lq)
        references = np.stack([sample.reference for sample in samples])
        end = done + len(batch)
        inputs[done:end], restored[done:end] = lq, out
        stats[done:end] = blend_statistics(lq / 255.0, out / 255.0, references)
        inputs.flush()
        restored.flush()
        save_array(out_dir / "stats.npy", stats)
        done = end
        write_bytes_atomically(meta_path, json.dumps({**wanted, "done": done}).encode())
        rate = (done - first) / (time.perf_counter() - start)
        log(f"blend dataset: {done}/{count} samples ({rate:.1f}/s, ETA {(count - done) / rate / 60:.0f} min)")
    return BlendDataset.open(out_dir)


#: the blend weights at which the identity table holds each sample's identity distance
IDENTITY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: framing codes of ``framing.npy``
FRAMING_NAMES = ("direct", "photo", "photo-larger")


def build_identity_table(folder: PathLike, images: Sequence[PathLike], net: DlibFaceResNet,
                         box: Sequence[float], align: Optional[Align] = None, chunk: int = 64,
                         log: Callable[[str], None] = print) -> BlendDataset:
    """Step 1b: how far each sample's blends are from the person, for the identity term of the loss.

    For each sample of the dataset in ``folder`` (built by :func:`build_blend_dataset` from the same
    ``images`` and ``align``), the reference is made again (:func:`training_sample`; the made input
    must equal the stored one, else ValueError) and the dlib-id distance (the Euclidean distance
    between dlib face-recognition descriptors, ``net``) between the blend ``a + w (r - a)`` and the
    reference is kept for each ``w`` of :data:`IDENTITY_WEIGHTS`: ``identity.npy`` [N, K] float32,
    with ``framing.npy`` [N] (codes of :data:`FRAMING_NAMES`). The descriptor is taken of a 150x150
    RGB chip resampled from ``box`` (left, top, right, bottom, pixels of the aligned crop: where
    dlib cuts its chip on faces of this framing). Resumes where a killed run stopped.
    """
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if meta["images"] != [str(p) for p in images] or int(meta["done"]) != int(meta["count"]):
        raise ValueError(f"{folder}: not a complete dataset of these {len(images)} images")
    if meta["photo_crops"] != (align is not None):
        raise ValueError(f"{folder}: built {'with' if meta['photo_crops'] else 'without'} photo crops")
    dataset = BlendDataset.open(folder)
    count, size, seed = len(dataset.stats), int(meta["size"]), int(meta["seed"])
    plan = blend_plan(len(images), count // len(images), seed)
    table_path, framing_path = folder / "identity.npy", folder / "framing.npy"
    if table_path.is_file():
        table, codes = np.load(table_path), np.load(framing_path)
    else:
        table, codes = np.full((count, len(IDENTITY_WEIGHTS)), np.nan, np.float32), np.full(count, -1, np.int8)
    done = int(np.isnan(table).any(axis=1).argmax()) if np.isnan(table).any() else count
    start, first = time.perf_counter(), done
    weights = torch.tensor(IDENTITY_WEIGHTS, dtype=torch.float32).view(1, -1, 1, 1, 1)
    while done < count:
        end = min(done + chunk, count)
        samples = [training_sample(images[plan[number][0]], plan[number][1], seed, number, size, align)
                   for number in range(done, end)]
        for number, sample in zip(range(done, end), samples):
            if not np.array_equal(sample.input, dataset.inputs[number]):
                raise ValueError(f"{folder}: sample {number} is not the one this code makes; rebuild the dataset")
        a, r = (torch.from_numpy(np.array(array[done:end])).permute(0, 3, 1, 2).float() / 255
                for array in (dataset.inputs, dataset.restored))
        reference = torch.from_numpy(np.stack([sample.reference for sample in samples])).permute(0, 3, 1, 2)
        blends = (a[:, None] + weights * (r - a)[:, None]).flatten(0, 1)  # [n * K, 3, S, S]
        with torch.inference_mode():
            target = net.descriptor_from_unit_range(resample_box(reference.float() * 2 - 1, box, DLIB_CHIP_SIZE))
            found = net.descriptor_from_unit_range(resample_box(blends * 2 - 1, box, DLIB_CHIP_SIZE))
        distance = (found.view(end - done, len(IDENTITY_WEIGHTS), -1) - target[:, None]).norm(dim=2)
        table[done:end] = distance.numpy()
        codes[done:end] = [FRAMING_NAMES.index(sample.framing) for sample in samples]
        save_array(framing_path, codes)
        save_array(table_path, table)
        done = end
        rate = (done - first) / (time.perf_counter() - start)
        log(f"identity table: {done}/{count} samples ({rate:.1f}/s, ETA {(count - done) / rate / 60:.0f} min)")
    return BlendDataset.open(folder)


def identity_of_blend(weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """[N] identity distance of each sample's blend at ``weights`` [N] in [0, 1], linearly
    interpolated in its row of the identity table [N, K] (at :data:`IDENTITY_WEIGHTS`, evenly spaced)."""
    steps = table.shape[1] - 1
    position = weights.clamp(0, 1) * steps
    low = position.detach().floor().clamp(max=steps - 1).long()
    share = position - low
    rows = torch.arange(len(table))
    return table[rows, low] * (1 - share) + table[rows, low + 1] * share


def identity_harm(weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """[N] how much farther from the person each blend at ``weights`` [N] is than the input
    (:func:`identity_of_blend` minus the table's w = 0 column, not below 0): the identity term."""
    return (identity_of_blend(weights, table) - table[:, 0]).clamp_min(0)


def best_weights(stats: np.ndarray) -> np.ndarray:
    """The best blend weight of each sample, clip(B / A, 0, 1) (0 where the model changed nothing)."""
    a, b = stats[:, 0], stats[:, 1]
    return np.clip(np.divide(b, a, out=np.zeros_like(b), where=a > 0), 0.0, 1.0)


def blend_loss(weights: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Mean over samples of log(w^2 A - 2 w B + C + EPS): weights [N], stats [N, 3]."""
    a, b, c = stats.unbind(1)
    error = (weights * weights * a - 2 * weights * b + c).clamp_min(0)
    return torch.log(error + EPS).mean()


def blend_error(weights: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Per-sample mean squared error [N] of a + w (r - a) against the reference, plus EPS."""
    a, b, c = stats[:, 0], stats[:, 1], stats[:, 2]
    return np.maximum(weights * weights * a - 2 * weights * b + c, 0) + EPS


def psnr_of_blend(weights: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Per-sample PSNR (dB) of a + w (r - a) against the reference (capped by EPS)."""
    return -10 * np.log10(blend_error(weights, stats))


def train_blend_estimator(dataset: BlendDataset, out_path: PathLike, holdout: int = 500, epochs: int = 12,
                          psnr_epochs: int = 4, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                          identity_weight: float = 0.0, init: Optional[PathLike] = None,
                          log: Callable[[str], None] = print) -> tuple[BlendWeightNet, dict]:
    """Step 2: train on all but the last ``holdout`` samples; returns (network, validation summary).

    The first ``epochs - psnr_epochs`` epochs fit each sample's best weight (binary cross-entropy
    against ``w*``, which learns fast and evenly); the last ``psnr_epochs`` minimise
    :func:`blend_loss` itself (the blended PSNR; from scratch it only learns w = 0 everywhere: the
    clean samples' gradients dwarf the others), at a tenth of the learning rate, plus
    ``identity_weight`` times the mean of how much farther from the person the blends are than the
    inputs (:func:`identity_harm`; needs the dataset's identity table). The state dict of the
    epoch with the lowest held-out objective (that loss; with no identity term, the best mean
    PSNR) is written to ``out_path`` (safetensors). The summary holds, on the held-out samples per mode, for the larger photos
    ("photo-larger", with an identity table) and overall, the mean PSNR of the blend with the
    predicted weights, with w = 1 (the model as is), w = 0 (the input) and the best w, and with an
    identity table the mean identity distance of the predicted blend, of the model and of the input.
    ``init``: weights to start from (safetensors; e.g. an estimator trained without the identity
    term, fine-tuned with it for ``psnr_epochs = epochs``).
    """
    if identity_weight and dataset.identity is None:
        raise ValueError("identity_weight needs the dataset's identity table (build_identity_table)")
    from safetensors.torch import load_file, save_file

    torch.manual_seed(seed)
    network = BlendWeightNet()
    if init is not None:
        network.load_state_dict(load_file(str(init)))
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    count = len(dataset.stats) - holdout
    steps = count // batch_size
    targets = best_weights(dataset.stats)
    rng = np.random.default_rng(seed)
    best_objective, best_summary = math.inf, {}
    for epoch in range(epochs):
        fitting_psnr = epoch >= epochs - psnr_epochs
        for group in optimizer.param_groups:  # cosine decay within each phase
            phase_lr = lr / 10 if fitting_psnr else lr
            position = (epoch - (epochs - psnr_epochs)) / psnr_epochs if fitting_psnr else epoch / (epochs - psnr_epochs)
            group["lr"] = phase_lr * 0.5 * (1 + math.cos(math.pi * position))
        network.train()
        order = rng.permutation(count)
        losses = []
        start = time.perf_counter()
        for step in range(steps):
            chosen = np.sort(order[step * batch_size:(step + 1) * batch_size])
            a, r = (torch.from_numpy(np.asarray(array[chosen])).permute(0, 3, 1, 2).float() / 255
                    for array in (dataset.inputs, dataset.restored))
            if rng.random() < 0.5:
                a, r = a.flip(3), r.flip(3)
            logits = network.logits(a, r)
            if fitting_psnr:
                weights = torch.sigmoid(logits)
                loss = blend_loss(weights, torch.from_numpy(dataset.stats[chosen]).float())
                if identity_weight:
                    table = torch.from_numpy(dataset.identity[chosen]).float()
                    loss = loss + identity_weight * identity_harm(weights, table).mean()
                loss = loss + 1e-2 * (logits.abs() - LOGIT_LIMIT).clamp_min(0).pow(2).mean()
            else:
                loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(targets[chosen]).float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        summary = evaluate_blend_estimator(network, dataset, range(count, len(dataset.stats)), identity_weight)
        kept = summary["all"]["objective"] < best_objective
        if kept:
            best_objective, best_summary = summary["all"]["objective"], summary
            save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(out_path))
        log(f"epoch {epoch + 1}/{epochs} ({'PSNR' if fitting_psnr else 'w*'} loss {np.mean(losses):.4f}, "
            f"{time.perf_counter() - start:.0f} s){' kept' if kept else ''}; held out: "
            + ", ".join(f"{mode} {row['predicted']:.2f} dB at w {row['weight']:.2f} (w=1 {row['model']:.2f}, "
                        f"w=0 {row['input']:.2f}, best {row['best']:.2f} at w {row['best_weight']:.2f})"
                        + (f" identity {row['identity']:.4f} (w=1 {row['identity_model']:.4f}, "
                           f"w=0 {row['identity_input']:.4f})" if "identity" in row else "")
                        for mode, row in summary.items()))
    network.load_state_dict(load_file(str(out_path)))
    return network.eval(), best_summary


@torch.no_grad()
def evaluate_blend_estimator(network: BlendWeightNet, dataset: BlendDataset, indices: Sequence[int],
                             identity_weight: float = 0.0, batch_size: int = 64) -> dict:
    """Mean PSNR per group (modes, "photo-larger" with an identity table, and "all") of the
    predicted, w=1, w=0 and best blends, the mean weights, the identity distances (with an identity
    table) and the objective of :func:`train_blend_estimator` (mean log error + identity_weight x
    mean identity harm of the predicted blends)."""
    network.eval()
    indices = np.asarray(list(indices))
    predicted = []
    for start in range(0, len(indices), batch_size):
        chosen = indices[start:start + batch_size]
        a, r = (torch.from_numpy(np.asarray(array[chosen])).permute(0, 3, 1, 2).float() / 255
                for array in (dataset.inputs, dataset.restored))
        predicted.append(network(a, r).numpy())
    weights = np.concatenate(predicted) if predicted else np.zeros(0)
    stats, modes = dataset.stats[indices], dataset.modes[indices]
    best = best_weights(stats)
    groups = {mode: modes == mode for mode in MODES}
    identity = None
    if dataset.identity is not None:
        groups["photo-larger"] = dataset.framing[indices] == "photo-larger"
        table = torch.from_numpy(dataset.identity[indices]).float()
        predicted_weights = torch.from_numpy(weights).float()
        identity = {"identity": identity_of_blend(predicted_weights, table).numpy(),
                    "identity_harm": identity_harm(predicted_weights, table).numpy(),
                    "identity_model": table[:, -1].numpy(), "identity_input": table[:, 0].numpy()}
    groups["all"] = np.ones(len(indices), bool)
    summary = {}
    for mode, keep in groups.items():
        if not keep.any():
            continue
        summary[mode] = {
            "objective": float(np.log(blend_error(weights[keep], stats[keep])).mean()
                               + (identity_weight * identity["identity_harm"][keep].mean() if identity else 0.0)),
            "n": int(keep.sum()),
            "predicted": float(psnr_of_blend(weights[keep], stats[keep]).mean()),
            "model": float(psnr_of_blend(np.ones(keep.sum()), stats[keep]).mean()),
            "input": float(psnr_of_blend(np.zeros(keep.sum()), stats[keep]).mean()),
            "best": float(psnr_of_blend(best[keep], stats[keep]).mean()),
            "weight": float(weights[keep].mean()),
            "best_weight": float(best[keep].mean()),
            **({name: float(values[keep].mean()) for name, values in identity.items()} if identity else {}),
        }
    return summary

