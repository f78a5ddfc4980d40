"""FID (Heusel, Ramsauer, Unterthiner, Nessler and Hochreiter, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS 2017) with pytorch-fid's conventions.

  * Features: 2048-d pool3 activations of the FID Inception-v3 (``faceprior.models.inception``)
    with pytorch-fid's weights ``pt_inception-2015-12-05-6726825d.pth``; every image is read as
    RGB, scaled to [0, 1], resized to 299x299 (bilinear) and mapped to [-1, 1] inside the model.
  * Statistics: ``mu`` = mean of the features, ``sigma`` = their unbiased covariance
    (``np.cov(features, rowvar=False)``), both float64.
  * Distance: ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2))``, >= 0,
    lower is better. The trace of the matrix square root is computed without scipy, in float64:
    ``sigma1 sigma2`` is similar to the symmetric PSD matrix ``S = sqrt(sigma1) sigma2 sqrt(sigma1)``,
    so ``tr(sqrt(sigma1 sigma2))`` is the sum of the square roots of S's eigenvalues (tiny negative
    round-off eigenvalues are clipped to 0). This agrees with pytorch-fid's ``scipy.linalg.sqrtm``
    up to round-off and needs no diagonal offset for singular covariances.
  * Dataset statistics files are ``.npz`` with arrays ``mu`` [D] and ``sigma`` [D, D], the format
    pytorch-fid reads and writes (``--save-stats``).
  * Folders: the image files directly inside (not sub-folders) with the extensions pytorch-fid
    reads (bmp, jpg, jpeg, pgm, png, ppm, tif, tiff, webp; any letter case), sorted by name.
    Files are decoded with ``faceprior.imaging.io.read_image`` (EXIF orientation applied, grey
    expanded to RGB, 16-bit scaled to [0, 1]).
  * Feature cache: with ``cache_dir``, the features of a folder are kept in one ``.npz`` file per
    (folder, model) pair, keyed per image by file name, size and modification time, and by a
    fingerprint (SHA-256) of the model's weights; a later call computes features only for new or
    changed files.

FID depends on the number of images (it is biased upward for small sets): quote it with the count.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.imaging.io import read_image
from faceprior.imaging.pixels import to_float01
from faceprior.metrics.availability import fetch_metric_weights
from faceprior.models.inception import FIDInceptionV3
from faceprior.models.loading import load_state_dict_strict
from faceprior.weights.checkpoint import read_state_dict

__all__ = [
    "FID_IMAGE_EXTENSIONS",
    "FIDInputError",
    "ImageSource",
    "compute_statistics",
    "extract_features",
    "fid",
    "fid_from_features",
    "frechet_distance",
    "list_images",
    "load_fid_inception",
    "load_statistics",
    "model_fingerprint",
    "save_statistics",
    "statistics_of_features",
]

FID_IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")

# A folder of image files, a sequence of [H, W, 3] images (uint8 or float in [0, 1]), or a tensor
# [N, 3, H, W] in [0, 1].
ImageSource = Union[str, os.PathLike, Sequence[np.ndarray], torch.Tensor]


class FIDInputError(FacepriorError, ValueError):
    """Bad input to the FID functions (one line naming the file or array and the reason)."""


# ----------------------------------------------------------------------------------------------
# Model


def load_fid_inception(device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None) -> FIDInceptionV3:
    """The FID Inception-v3 with pytorch-fid's weights, in eval mode on ``device``.

    The weight file ``pt_inception-2015-12-05-6726825d.pth`` (about 91 MiB, pytorch-fid's GitHub
    release) comes through the weight store and is checked against the SHA-256 prefix in its name.
    Raises ``MetricUnavailable`` when it cannot be obtained.
    """
    path = fetch_metric_weights("FID", "fid-inception", cache_dir=cache_dir)
    model = FIDInceptionV3()
    load_state_dict_strict(model, read_state_dict(path), source=str(path))
    return model.eval().to(device)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's class, preprocessing flags and state dict (names, shapes, values)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for flag in ("resize_input", "normalize_input"):
        digest.update(f"{flag}={getattr(model, flag, None)}".encode())
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Statistics and distance


def statistics_of_features(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] (N >= 2) -> (mu [D], sigma [D, D]) in float64 (unbiased covariance)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise FIDInputError(f"FID statistics need a feature array [N >= 2, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64; >= 0.

    mu: [D]; sigma: [D, D] symmetric positive semi-definite covariance.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise FIDInputError(
            f"FID statistics do not match: mu {mu1.shape} and {mu2.shape}, sigma {sigma1.shape} and {sigma2.shape}"
        )
    for name, array in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(array).all():
            raise FIDInputError(f"FID statistics: {name} has non-finite values")
    root1 = _sqrt_psd(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets [N1, D] and [N2, D] (each N >= 2)."""
    return frechet_distance(*statistics_of_features(features1), *statistics_of_features(features2))


def save_statistics(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write ``mu`` [D] and ``sigma`` [D, D] as a pytorch-fid statistics file (compressed .npz)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise FIDInputError(f"{path}: a statistics file must end with .npz")
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise FIDInputError(f"{path}: mu must be [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(temporary, mu=mu, sigma=sigma)
    os.replace(temporary, path)


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) float64 from a pytorch-fid statistics ``.npz`` file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise FIDInputError(f"{path}: not an FID statistics file (needs arrays 'mu' and 'sigma', has {', '.join(data.files)})")
            mu, sigma = np.asarray(data["mu"], dtype=np.float64), np.asarray(data["sigma"], dtype=np.float64)
    except (OSError, ValueError) as error:
        if isinstance(error, FIDInputError):
            raise
        raise FIDInputError(f"{path}: cannot read FID statistics ({' '.join(str(error).split())})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise FIDInputError(f"{path}: mu must be [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    return mu, sigma


# ----------------------------------------------------------------------------------------------
# Features of image sets


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` with an FID extension (any case), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FIDInputError(f"{folder}: not a folder")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix[1:].lower() in FID_IMAGE_EXTENSIONS
    )


def _read_float01(path: Path) -> np.ndarray:
    return to_float01(read_image(path).pixels)


def _array_to_float01(image: np.ndarray, index: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise FIDInputError(f"image {index}: expected an [H, W, 3] RGB array, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(image.dtype, np.floating):
        raise FIDInputError(f"image {index}: expected uint8 or float in [0, 1], got dtype {image.dtype}")
    return image.astype(np.float32)


def _run_model(model: nn.Module, images: list[np.ndarray], batch_size: int, device: torch.device) -> np.ndarray:
    """Features [N, D] (float32) of [H, W, 3] float32 images in [0, 1]; consecutive images of one size share a batch."""
    outputs: list[np.ndarray] = []
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and end - start < batch_size and images[end].shape == images[start].shape:
            end += 1
        batch = torch.from_numpy(np.stack(images[start:end])).permute(0, 3, 1, 2).to(device)
        with torch.inference_mode():
            features = model(batch)
        if features.dim() == 4:  # a model returning feature maps: global average pool
            features = features.mean(dim=(2, 3))
        outputs.append(features.float().cpu().numpy())
        start = end
    return np.concatenate(outputs)


def _cache_file(cache_dir: Path, folder: Path, fingerprint: str) -> Path:
    folder_key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"fid-features-{folder_key}-{fingerprint[:16]}.npz"


def _read_cache(path: Path, fingerprint: str) -> dict[tuple[str, int, int], np.ndarray]:
    """{(file name, size, mtime_ns): features} from a cache file; empty when absent, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["model"]) != fingerprint:
                return {}
            return {
                (str(name), int(size), int(mtime)): features
                for name, size, mtime, features in zip(data["files"], data["sizes"], data["mtimes_ns"], data["features"])
            }
    except (OSError, ValueError, KeyError):
        return {}


def _write_cache(path: Path, fingerprint: str, keys: list[tuple[str, int, int]], features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        temporary,
        model=np.array(fingerprint),
        files=np.array([k[0] for k in keys], dtype=str),
        sizes=np.array([k[1] for k in keys], dtype=np.int64),
        mtimes_ns=np.array([k[2] for k in keys], dtype=np.int64),
        features=features.astype(np.float32),
    )
    os.replace(temporary, path)


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def extract_features(
    source: ImageSource,
    model: nn.Module,
    batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Features [N, D] float64 of an image set (a folder, a list of images, or a tensor).

    Args:
        source: a folder (see :func:`list_images`), a sequence of [H, W, 3] arrays (uint8, or
            float in [0, 1]), or a tensor [N, 3, H, W] in [0, 1].
        model: maps [B, 3, H, W] in [0, 1] to [B, D] (e.g. :func:`load_fid_inception`), run on
            the device of its weights.
        batch_size: images per forward pass.
        cache_dir: folder for the per-folder feature cache (folders only); None disables it.
    """
    if batch_size < 1:
        raise FIDInputError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    if isinstance(source, torch.Tensor):
        if source.dim() != 4 or source.shape[1] != 3:
            raise FIDInputError(f"image tensor: expected [N, 3, H, W] in [0, 1], got {list(source.shape)}")
        images = list(source.detach().float().permute(0, 2, 3, 1).cpu().numpy())
        return _run_model(model, images, batch_size, device).astype(np.float64)
    if not isinstance(source, (str, os.PathLike)):
        images = [_array_to_float01(image, i) for i, image in enumerate(source)]
        if not images:
            raise FIDInputError("no images given")
        return _run_model(model, images, batch_size, device).astype(np.float64)

    folder = Path(source)
    files = list_images(folder)
    if not files:
        raise FIDInputError(f"{folder}: no image files ({', '.join(FID_IMAGE_EXTENSIONS)})")
    keys = []
    for path in files:
        stat = path.stat()
        keys.append((path.name, stat.st_size, stat.st_mtime_ns))
    if cache_dir is None:
        return _run_model(model, [_read_float01(p) for p in files], batch_size, device).astype(np.float64)

    fingerprint = model_fingerprint(model)
    cache_path = _cache_file(Path(cache_dir), folder, fingerprint)
    cached = _read_cache(cache_path, fingerprint)
    missing = [i for i, key in enumerate(keys) if key not in cached]
    if missing:
        computed = _run_model(model, [_read_float01(files[i]) for i in missing], batch_size, device)
        cached.update({keys[i]: features for i, features in zip(missing, computed)})
    features = np.stack([cached[key] for key in keys])
    if missing or len(cached) != len(keys):
        _write_cache(cache_path, fingerprint, keys, features)
    return features.astype(np.float64)


def compute_statistics(
    source: ImageSource,
    model: nn.Module,
    batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) of an image set's features; arguments as :func:`extract_features`."""
    return statistics_of_features(extract_features(source, model, batch_size, cache_dir))


def _statistics_of(source: ImageSource, model: nn.Module, batch_size: int, cache_dir) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".npz" and not Path(source).is_dir():
        return load_statistics(source)
    return compute_statistics(source, model, batch_size, cache_dir)


def fid(
    source1: ImageSource,
    source2: ImageSource,
    model: nn.Module,
    batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
) -> float:
    """FID between two image sets; each may also be a pytorch-fid statistics ``.npz`` file."""
    return frechet_distance(*_statistics_of(source1, model, batch_size, cache_dir),
                            *_statistics_of(source2, model, batch_size, cache_dir))
