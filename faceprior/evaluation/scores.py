"""The metrics of an evaluation, as adapters with one interface: per-image metrics (PSNR, SSIM,
NIQE, LPIPS, ArcFace Deg., dlib-id, LMD; the table shows their means) and FID over the whole set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from faceprior.evaluation.cache import CACHE_VERSION
from faceprior.evaluation.pairs import EvaluationError, ImagePair, load_rgb
from faceprior.imaging.pixels import to_float01
from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.color import ImageInputError
from faceprior.metrics.fid import (
    FIDInputError,
    extract_features,
    load_fid_inception,
    load_statistics,
    model_fingerprint,
    statistics_of_features,
)
from faceprior.metrics.identity import angle_degrees, arcface_embeddings, load_arcface_identity, load_dlib_identity
from faceprior.metrics.landmarks import landmark_distance, load_landmark_detector
from faceprior.metrics.lpips import load_lpips
from faceprior.metrics.niqe import NIQE_BLOCK_SIZE, niqe, official_niqe_params
from faceprior.metrics.psnr_ssim import psnr, ssim
from faceprior.paths import PathLike
from faceprior.weights.store import WeightsUnavailableError

__all__ = ["DEFAULT_METRICS", "METRIC_NAMES", "FidMetric", "PerImageMetric", "make_metric", "parse_metric_names"]

DEFAULT_METRICS = ("psnr", "ssim", "lpips", "fid", "niqe", "deg", "dlib-id", "lmd")


@dataclass
class PerImageMetric:
    """A metric with one value per image; the table shows the mean.

    name / label / higher_is_better / decimals: see ``MetricColumn``. full_reference: needs
    the GT. settings: what the values depend on besides the images (part of the cache key).
    """

    name: str
    label: str
    higher_is_better: bool
    decimals: int = 4
    full_reference: bool = True

    def settings(self) -> Dict[str, Any]:
        return {"version": CACHE_VERSION}

    def prepare(self) -> None:
        """Load what the metric needs; MetricUnavailable (one line naming the file) if absent."""

    def compute(self, outputs: List[np.ndarray], references: List[Optional[np.ndarray]]) -> List[float]:
        """Values for a batch: outputs and references [H, W, 3] uint8 (or float32 in [0, 1])."""
        raise NotImplementedError


class PsnrMetric(PerImageMetric):
    """PSNR in dB, basicsr ``calculate_psnr`` conventions (``faceprior.metrics.psnr_ssim``)."""

    name, label, higher_is_better, decimals = "psnr", "PSNR", True, 2

    def __init__(self, crop_border: int = 0, y_channel: bool = False):
        self.crop_border, self.y_channel = int(crop_border), bool(y_channel)

    def settings(self):
        return {"crop_border": self.crop_border, "y_channel": self.y_channel, "version": CACHE_VERSION}

    def compute(self, outputs, references):
        return [psnr(x, y, self.crop_border, self.y_channel) for x, y in zip(outputs, references)]


class SsimMetric(PsnrMetric):
    """SSIM, basicsr ``calculate_ssim`` conventions (``faceprior.metrics.psnr_ssim``)."""

    name, label, higher_is_better, decimals = "ssim", "SSIM", True, 4

    def compute(self, outputs, references):
        return [ssim(x, y, self.crop_border, self.y_channel) for x, y in zip(outputs, references)]


class NiqeMetric(PerImageMetric):
    """NIQE (lower is better) with the official pristine model, basicsr conventions."""

    name, label, higher_is_better, decimals, full_reference = "niqe", "NIQE", False, 3, False

    def __init__(self, crop_border: int = 0):
        self.crop_border = int(crop_border)
        self.params = None

    def settings(self):
        return {"crop_border": self.crop_border, "params": "official", "version": CACHE_VERSION}

    def prepare(self):
        try:
            self.params = official_niqe_params()
        except WeightsUnavailableError as error:
            raise MetricUnavailable(str(error)) from None

    def compute(self, outputs, references):
        values = []
        for x in outputs:
            try:
                values.append(niqe(x, self.crop_border, self.params))
            except ImageInputError as error:  # too small for two 96 x 96 blocks
                raise MetricUnavailable(f"NIQE: {error} in a {x.shape[1]}x{x.shape[0]} image "
                                        f"(needs at least two {NIQE_BLOCK_SIZE}x{NIQE_BLOCK_SIZE} blocks)") from None
        return values


def _to_tensor(images: List[np.ndarray], device: Union[str, torch.device]) -> torch.Tensor:
    """[H, W, 3] uint8 / float32 [0, 1] images of one size -> [N, 3, H, W] float32 in [0, 1]."""
    batch = np.stack([to_float01(image, np.float32) for image in images])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)


def _same_size_groups(images: List[np.ndarray]) -> List[List[int]]:
    """Indices of ``images`` grouped by shape, in order of first appearance."""
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return list(groups.values())


class LpipsMetric(PerImageMetric):
    """LPIPS v0.1 (``faceprior.metrics.lpips``) to the GT; VGG backbone by default, as basicsr's
    ``scripts/metrics/calculate_lpips.py`` (images mapped to [-1, 1])."""

    name, label, higher_is_better, decimals = "lpips", "LPIPS", False, 4

    def __init__(self, net: str = "vgg", device: Union[str, torch.device] = "cpu"):
        self.net, self.device, self.model = net, device, None

    def settings(self):
        return {"net": self.net, "version": CACHE_VERSION}

    def prepare(self):
        self.model = load_lpips(self.net, device=self.device)

    @torch.inference_mode()
    def compute(self, outputs, references):
        values = [0.0] * len(outputs)
        for group in _same_size_groups(outputs):
            x = _to_tensor([outputs[i] for i in group], self.device)
            y = _to_tensor([references[i] for i in group], self.device)
            for i, value in zip(group, self.model(x, y, normalize=True).tolist()):
                values[i] = float(value)
        return values


class ArcFaceDegreesMetric(PerImageMetric):
    """The GFP-GAN paper's identity metric "Deg.": the angle in degrees between the ArcFace
    embeddings of the output and of the GT (``faceprior.metrics.identity``)."""

    name, label, higher_is_better, decimals = "deg", "Deg.", False, 2

    def __init__(self, device: Union[str, torch.device] = "cpu"):
        self.device, self.model = device, None

    def settings(self):
        return {"network": "arcface_resnet18.pth", "version": CACHE_VERSION}

    def prepare(self):
        self.model = load_arcface_identity(self.device)

    def compute(self, outputs, references):
        values = [0.0] * len(outputs)
        for group in _same_size_groups(outputs):
            x = _to_tensor([outputs[i] for i in group], "cpu") * 2 - 1
            y = _to_tensor([references[i] for i in group], "cpu") * 2 - 1
            embeddings = arcface_embeddings(self.model, torch.cat([x, y]))
            angles = angle_degrees(embeddings[:len(group)], embeddings[len(group):])
            for i, value in zip(group, angles.tolist()):
                values[i] = float(value)
        return values


class DlibIdentityMetric(PerImageMetric):
    """dlib-id distance (``faceprior.metrics.identity.DlibIdentity``): Euclidean distance of
    dlib's face descriptors of output and GT, < 0.6 = same person. None where no face is found
    (left out of the mean; the table notes how many)."""

    name, label, higher_is_better, decimals = "dlib-id", "dlib-id", False, 4

    def __init__(self):
        self.model = None

    def prepare(self):
        self.model = load_dlib_identity()

    def compute(self, outputs, references):
        return [self.model.distance(x, y) for x, y in zip(outputs, references)]


class LandmarkDistanceMetric(PerImageMetric):
    """LMD (``faceprior.metrics.landmarks``): mean distance in GT pixels between the five MTCNN
    landmarks of output and GT. None where a face is missing (left out of the mean)."""

    name, label, higher_is_better, decimals = "lmd", "LMD", False, 2

    def __init__(self, device: Union[str, torch.device] = "cpu"):
        self.device, self.detector = device, None

    def settings(self):
        return {"detector": "mtcnn", "version": CACHE_VERSION}

    def prepare(self):
        self.detector = load_landmark_detector(self.device)

    def compute(self, outputs, references):
        return [landmark_distance(x, y, self.detector) for x, y in zip(outputs, references)]


class FidMetric:
    """FID (``faceprior.metrics.fid``, pytorch-fid conventions) of each method's outputs against
    the GT images' statistics, or against a given statistics file. One value per method.

    Features are cached per method in metrics/<key>/fid-features.npz (and for the GT in
    metrics/gt/fid-features.npz), keyed by the SHA-256 of each image file and by the
    Inception weights' fingerprint.
    """

    name, label, higher_is_better, decimals, full_reference = "fid", "FID", False, 2, True

    def __init__(self, device: Union[str, torch.device] = "cpu", batch_size: int = 16,
                 stats_file: Optional[PathLike] = None):
        self.device, self.batch_size, self.stats_file = device, int(batch_size), stats_file
        self.model: Optional[nn.Module] = None
        self.fingerprint = ""

    def settings(self) -> Dict[str, Any]:
        return {"inception": self.fingerprint, "version": CACHE_VERSION}

    def prepare(self) -> None:
        self.model = load_fid_inception(self.device)
        self.fingerprint = model_fingerprint(self.model)

    def features(self, files: Sequence[Path], hashes: Sequence[str], cache_path: Path) -> Tuple[np.ndarray, int]:
        """[N, 2048] float64 features of ``files`` (content ``hashes``), reusing and updating the
        cache file. Returns (features, number computed now)."""
        cached: Dict[str, np.ndarray] = {}
        try:
            with np.load(cache_path, allow_pickle=False) as data:
                if str(data["fingerprint"]) == self.fingerprint:
                    cached = dict(zip(data["keys"].tolist(), data["features"]))
        except (OSError, KeyError, ValueError):
            cached = {}
        missing = [i for i, key in enumerate(hashes) if key not in cached]
        if missing:
            computed = extract_features([load_rgb(files[i]) for i in missing], self.model, self.batch_size)
            cached.update({hashes[i]: row for i, row in zip(missing, computed)})
            keys = list(dict.fromkeys(hashes))
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_path.with_name(f".{cache_path.stem}.part.npz")
            np.savez(temporary, fingerprint=np.array(self.fingerprint), keys=np.array(keys),
                     features=np.stack([cached[key] for key in keys]))
            temporary.replace(cache_path)
        return np.stack([cached[key] for key in hashes]).astype(np.float64), len(missing)

    def reference_statistics(self, pairs: Sequence[ImagePair], out_dir: Path) -> Tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the reference: the statistics file if given, else the GT images."""
        if self.stats_file is not None:
            try:
                return load_statistics(self.stats_file)
            except FIDInputError as error:
                raise EvaluationError(str(error)) from None
        features, _ = self.features([pair.gt for pair in pairs], [pair.gt_sha256 for pair in pairs],
                                    out_dir / "metrics" / "gt" / "fid-features.npz")
        return statistics_of_features(features)


def make_metric(name: str, crop_border: int = 0, y_channel: bool = False,
                device: Union[str, torch.device] = "cpu", lpips_net: str = "vgg",
                fid_stats: Optional[PathLike] = None) -> Any:
    """The metric object for a command-line name (see ``METRIC_NAMES``)."""
    if name == "psnr":
        return PsnrMetric(crop_border, y_channel)
    if name == "ssim":
        return SsimMetric(crop_border, y_channel)
    if name == "niqe":
        return NiqeMetric(crop_border)
    if name == "lpips":
        return LpipsMetric(lpips_net, device)
    if name == "fid":
        return FidMetric(device, stats_file=fid_stats)
    if name == "deg":
        return ArcFaceDegreesMetric(device)
    if name == "dlib-id":
        return DlibIdentityMetric()
    if name == "lmd":
        return LandmarkDistanceMetric(device)
    raise EvaluationError(f"unknown metric {name!r} (known: {', '.join(METRIC_NAMES)})")


METRIC_NAMES = DEFAULT_METRICS


def parse_metric_names(text: str) -> List[str]:
    """"psnr,ssim,niqe" -> ["psnr", "ssim", "niqe"]; EvaluationError for unknown names."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown or not names:
        raise EvaluationError(f"--metrics: unknown metric(s) {', '.join(unknown) or '(none given)'} "
                              f"(known: {', '.join(METRIC_NAMES)})")
    return list(dict.fromkeys(names))
