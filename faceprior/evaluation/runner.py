"""Evaluate restoration methods on a folder of aligned LQ faces (optionally with GT faces).

``evaluate`` runs every method on every LQ image, computes the metrics and writes, under OUT:

    restored/<method-key>/<name>.png       outputs (cached, see below)
    restored/<method-key>/index.json       which LQ file (SHA-256) each output was made from
    metrics/<method-key>/<metric>.json     per-image metric values (cached)
    metrics/<method-key>/fid-features.npz  FID features of the outputs (cached)
    metrics/gt/fid-features.npz            FID features of the GT images (cached)
    results.md / results.csv / results.json    the table (see faceprior.evaluation.report)
    compare.png / compare.html             sample faces x (input, methods, GT)

Methods (rows of the table), in order:

    input     the LQ image itself. Where its size differs from the reference size (the GT's;
              the LQ's own without GT) it is resized to it with the degradation model's
              bilinear resize (half-pixel centres, no antialiasing), the resize with which the
              CelebA-Test protocol itself brings LQ faces back to the GT size.
    lanczos   the LQ image resampled to the reference size with Lanczos-3 (antialiased when
              shrinking), the classical-interpolation baseline. When the LQ is already at the
              reference size (as in the CelebA-Test protocol) it is the LQ itself, identical
              to "input", and the table says so.
    <model>   each model (registered name or checkpoint path) in aligned mode
              (``FaceRestorer(aligned=True)``, stored decoder noise, weight 1): LQ faces of the
              model's size S go in as they are, others are resized to S by the restorer; an
              output whose size differs from the reference size is resized to it with Lanczos-3.

Caching. A model's outputs live in restored/<name>-<hash>/, where the hash covers the SHA-256 of
the weights (of the state dict for an nn.Module) and the settings above; an output is reused
when the SHA-256 of its LQ file and the reference size are unchanged, and the model is only
loaded when some output is missing. Per-image metric values are kept per method and metric,
keyed by the SHA-256 of the output (and of the GT), so a second run only computes what changed.

Metrics (``METRIC_NAMES``): psnr, ssim (basicsr conventions, all three channels unless
``y_channel``), niqe, and the learned ones lpips, fid, deg (ArcFace angle), dlib-id, lmd, which
need weight files. A metric that cannot run (weights absent, no GT for a full-reference metric)
is reported as unavailable with its reason; the others still run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.evaluation.report import (
    MethodRow,
    MetricColumn,
    ResultsTable,
    SheetColumn,
    format_value,
    write_comparison_sheet,
    write_table_files,
)
from faceprior.imaging.files import list_image_files
from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.pixels import to_float01
from faceprior.imaging.resize import resize_bilinear_to, resize_lanczos_to
from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.color import ImageInputError
from faceprior.metrics.fid import (
    FIDInputError,
    extract_features,
    frechet_distance,
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
from faceprior.models.loading import ModelSpec
from faceprior.paths import PathLike
from faceprior.restoration.restorer import FaceRestorer
from faceprior.weights.catalogue import UnknownWeightsError, locate_weights
from faceprior.weights.store import WeightsUnavailableError, sha256_of_file

Log = Callable[[str], None]

CACHE_VERSION = 1
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "fid", "niqe", "deg", "dlib-id", "lmd")
BASELINES = ("input", "lanczos")


class EvaluationError(FacepriorError, ValueError):
    """Bad evaluation input (folders, names, models, metrics); the message is one line."""


def _log_to_stderr(message: str) -> None:
    print(f"faceprior: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# images and pairs


@dataclass(frozen=True)
class ImagePair:
    """One evaluated face.

    name: relative path of the LQ file without its suffix (POSIX), e.g. "00005__0".
    lq / gt: the files (gt None without a GT folder). lq_sha256 / gt_sha256: their contents.
    lq_size: (height, width) of the LQ. reference_size: (height, width) every method's output
    is brought to (the GT's; the LQ's without GT).
    """

    name: str
    lq: Path
    gt: Optional[Path]
    lq_sha256: str
    gt_sha256: Optional[str]
    lq_size: Tuple[int, int]
    reference_size: Tuple[int, int]


def image_size(path: PathLike) -> Tuple[int, int]:
    """(height, width) of an image file as ``read_image`` returns it (EXIF rotation applied),
    from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except OSError as error:
        raise EvaluationError(f"{path}: unreadable image ({' '.join(str(error).split())})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def load_rgb(path: PathLike) -> np.ndarray:
    """An image file as [H, W, 3] RGB: uint8 for 8-bit files, float32 in [0, 1] for 16-bit ones
    (the value conventions of faceprior.metrics)."""
    pixels = read_image(path).pixels
    return pixels if pixels.dtype == np.uint8 else to_float01(pixels, np.float32)


def find_pairs(lq_dir: PathLike, gt_dir: Optional[PathLike] = None) -> List[ImagePair]:
    """Every image under ``lq_dir`` (recursive, sorted), each with the GT file of the same
    relative name (any image suffix) under ``gt_dir``. EvaluationError names the first LQ
    image without a GT, or a folder without images."""
    lq_dir = Path(lq_dir)
    if not lq_dir.is_dir():
        raise EvaluationError(f"{lq_dir}: not a folder")
    lq_files = list_image_files(lq_dir)
    if not lq_files:
        raise EvaluationError(f"{lq_dir}: no images found")
    gt_by_name: Dict[str, Path] = {}
    if gt_dir is not None:
        gt_dir = Path(gt_dir)
        if not gt_dir.is_dir():
            raise EvaluationError(f"{gt_dir}: not a folder")
        for path in list_image_files(gt_dir):
            name = path.relative_to(gt_dir).with_suffix("").as_posix()
            if name in gt_by_name:
                raise EvaluationError(f"{path}: two GT images named {name} with different suffixes")
            gt_by_name[name] = path
    pairs, seen = [], set()
    for lq in lq_files:
        name = lq.relative_to(lq_dir).with_suffix("").as_posix()
        if name in seen:
            raise EvaluationError(f"{lq}: two LQ images named {name} with different suffixes")
        seen.add(name)
        gt = None
        if gt_dir is not None:
            gt = gt_by_name.get(name)
            if gt is None:
                raise EvaluationError(f"{lq}: no GT image {name}.* in {gt_dir}")
        lq_size = image_size(lq)
        pairs.append(ImagePair(name, lq, gt, sha256_of_file(lq), None if gt is None else sha256_of_file(gt),
                               lq_size, lq_size if gt is None else image_size(gt)))
    return pairs


def subsample(pairs: Sequence[ImagePair], count: Optional[int]) -> List[ImagePair]:
    """``count`` pairs evenly spaced over ``pairs`` (first and last included), deterministic;
    all of them for None or count >= len(pairs)."""
    if count is None or count >= len(pairs):
        return list(pairs)
    if count < 1:
        raise EvaluationError(f"--sample must be >= 1, got {count}")
    picks = np.round(np.linspace(0, len(pairs) - 1, count)).astype(int)
    return [pairs[i] for i in sorted(set(picks.tolist()))]


# ----------------------------------------------------------------------------------------------
# methods


def _slug(text: str) -> str:
    """Folder-safe version of a name: letters, digits, '.', '_', '-' (others become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def _short_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:10]


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, values), for cache keys."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class Method:
    """A row of the table: maps LQ images to outputs at the reference size.

    key: folder name under restored/ and metrics/. label: shown name. settings: everything the
    outputs depend on besides the LQ image (part of the cache key).
    """

    key: str
    label: str
    description: str
    settings: Dict[str, Any]

    def passes_through(self, lq_size: Tuple[int, int], reference_size: Tuple[int, int]) -> bool:
        """True when the output is the LQ file itself (nothing to compute or store)."""
        return False

    def run(self, images: List[np.ndarray], reference_sizes: List[Tuple[int, int]]) -> List[np.ndarray]:
        """Outputs for a batch of LQ images [H, W, 3] (uint8 or float32 in [0, 1]), each at its
        reference size, same dtype."""
        raise NotImplementedError


class InputBaseline(Method):
    """The LQ image, bilinear-resized to the reference size when it differs (see module doc)."""

    def __init__(self):
        self.key = self.label = "input"
        self.description = "the degraded input (bilinear to the reference size where it differs)"
        self.settings = {"method": "input", "resize": "bilinear half-pixel, no antialias", "version": CACHE_VERSION}

    def passes_through(self, lq_size, reference_size) -> bool:
        return tuple(lq_size) == tuple(reference_size)

    def run(self, images, reference_sizes):
        return [resize_bilinear_to(image, size) for image, size in zip(images, reference_sizes)]


class LanczosBaseline(Method):
    """The LQ image resampled to the reference size with Lanczos-3 (see module doc)."""

    def __init__(self):
        self.key = self.label = "lanczos"
        self.description = "the degraded input resampled to the reference size with Lanczos-3"
        self.settings = {"method": "lanczos", "lobes": 3, "version": CACHE_VERSION}

    def passes_through(self, lq_size, reference_size) -> bool:
        return tuple(lq_size) == tuple(reference_size)

    def run(self, images, reference_sizes):
        return [resize_lanczos_to(image, size) for image, size in zip(images, reference_sizes)]


class ModelMethod(Method):
    """A restoration network in aligned mode (see module doc); loaded on first use.

    spec: catalogue name (``faceprior models``), checkpoint path or URL, or an nn.Module.
    label: shown name (default: the name, or the file name, or the class name).
    description: longer text for results.json (default: the file and its SHA-256).
    extra_settings: anything else the outputs depend on (e.g. a forward hook on the module),
        added to the cache key.
    """

    def __init__(self, spec: ModelSpec, device: Union[str, torch.device] = "cpu", batch_size: int = 4,
                 label: Optional[str] = None, description: Optional[str] = None,
                 extra_settings: Optional[Dict[str, Any]] = None, cache_dir: Optional[str] = None):
        self.spec = spec
        self.device = device
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.restorer: Optional[FaceRestorer] = None
        if isinstance(spec, nn.Module):
            weights, default_label = state_dict_sha256(spec), type(spec).__name__
            default_description = f"{default_label} module (state dict SHA-256 {weights[:12]})"
        else:
            try:
                path, entry = locate_weights(spec, cache_dir=cache_dir)  # the file, fetched if needed; not loaded
            except UnknownWeightsError:
                raise EvaluationError(f"{spec}: no such checkpoint file, and not in the weight catalogue "
                                      "(faceprior models lists it)") from None
            weights = sha256_of_file(path)
            default_label = entry.name if entry is not None else path.name
            default_description = f"{path} (SHA-256 {weights[:12]})"
        self.label = label or default_label
        self.description = description or default_description
        self.settings = {"method": "model", "weights_sha256": weights, "aligned": True, "weight": 1.0,
                         "noise": "stored", "resize_out": "lanczos-3", "grey_images": "grey faces", "version": CACHE_VERSION,
                         **(extra_settings or {})}
        stem = self.label if isinstance(spec, nn.Module) or label else Path(self.label).stem
        self.key = f"{_slug(stem)}-{_short_hash(self.settings)}"

    def _load(self) -> FaceRestorer:
        if self.restorer is None:
            self.restorer = FaceRestorer(model=self.spec, aligned=True, batch_size=self.batch_size,
                                         device=self.device, cache_dir=self.cache_dir)
        return self.restorer

    def run(self, images, reference_sizes):
        # As `faceprior restore --aligned` would: every image scaled to the model's input size
        # (unchanged when it has it), grey images give grey faces. One batch of images at a time, so
        # that no copy of every crop is held at once.
        restorer = self._load()
        outputs = []
        for start in range(0, len(images), self.batch_size):
            results = restorer.restore_many(images[start:start + self.batch_size])
            outputs += [resize_lanczos_to(result.image, ref)
                        for result, ref in zip(results, reference_sizes[start:start + self.batch_size])]
        return outputs


# ----------------------------------------------------------------------------------------------
# restoring with caching


@dataclass(frozen=True)
class MethodOutputs:
    """The output of one method per image name: file and its SHA-256, plus how many outputs
    were computed in this run (0 when all came from the cache) and the time spent on them."""

    files: Dict[str, Path]
    sha256: Dict[str, str]
    computed: int
    seconds: float


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)


def produce_outputs(method: Method, pairs: Sequence[ImagePair], out_dir: PathLike, batch_size: int = 4,
                    log: Log = _log_to_stderr) -> MethodOutputs:
    """Outputs of ``method`` for every pair, from the cache under out_dir/restored/<key>/ where
    valid, computed (in batches) and stored there otherwise; see the module docstring."""
    folder = Path(out_dir) / "restored" / method.key
    index_path = folder / "index.json"
    index = _read_json(index_path)
    if index is None or index.get("settings") != method.settings:
        index = {"format": "faceprior.evaluation.restored", "method": method.label, "settings": method.settings,
                 "files": {}}
    entries: Dict[str, Any] = index["files"]
    files, hashes, todo = {}, {}, []
    for pair in pairs:
        if method.passes_through(pair.lq_size, pair.reference_size):
            files[pair.name], hashes[pair.name] = pair.lq, pair.lq_sha256
            continue
        entry = entries.get(pair.name)
        target = folder / f"{pair.name}.png"
        if (entry and entry.get("lq_sha256") == pair.lq_sha256 and entry.get("reference_size") == list(pair.reference_size)
                and target.is_file()):
            files[pair.name], hashes[pair.name] = target, entry["output_sha256"]
        else:
            todo.append(pair)
    start = time.perf_counter()
    if todo:
        log(f"{method.label}: restoring {len(todo)} of {len(pairs)} images")
    for first in range(0, len(todo), batch_size):
        chunk = todo[first:first + batch_size]
        outputs = method.run([load_rgb(pair.lq) for pair in chunk], [pair.reference_size for pair in chunk])
        for pair, output in zip(chunk, outputs):
            target = folder / f"{pair.name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, output, format="PNG", bit_depth=16 if output.dtype != np.uint8 else 8, overwrite=True)
            digest = sha256_of_file(target)
            entries[pair.name] = {"lq": str(pair.lq), "lq_sha256": pair.lq_sha256,
                                  "reference_size": list(pair.reference_size), "output_sha256": digest}
            files[pair.name], hashes[pair.name] = target, digest
        _write_json(index_path, index)  # after every batch: an interrupted run keeps its work
    return MethodOutputs(files, hashes, len(todo), time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# metrics


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


def _content_key(metric: PerImageMetric, pair: ImagePair, output_sha256: str) -> str:
    return f"{output_sha256}:{pair.gt_sha256}" if metric.full_reference else output_sha256


def _means_over_common_images(metric: PerImageMetric, rows: Sequence[MethodRow]) -> List[str]:
    """Set each row's mean of ``metric`` over the images where every row has a value, so that the
    rows compare the same faces; returns notes naming what was left out (e.g. no face found)."""
    names = list(rows[0].per_image[metric.name]) if rows else []
    common = [n for n in names if all(row.per_image[metric.name][n] is not None for row in rows)]
    for row in rows:
        row.values[metric.name] = _mean([row.per_image[metric.name][n] for n in common])
    if len(common) == len(names):
        return []
    missing = [f"{row.label} {sum(v is None for v in row.per_image[metric.name].values())}" for row in rows]
    return [f"{metric.label}: mean over the {len(common)} of {len(names)} images where every method has a value "
            f"(images without a value, e.g. no face found: {', '.join(missing)})"]


def per_image_values(metric: PerImageMetric, method: Method, pairs: Sequence[ImagePair], outputs: MethodOutputs,
                     out_dir: PathLike, memo: Dict[Tuple[str, str], Optional[float]], batch_size: int = 8
                     ) -> Tuple[Dict[str, Optional[float]], int]:
    """{image name: value} of ``metric`` on the outputs of ``method``, from the cache file
    out_dir/metrics/<method key>/<metric>.json and ``memo`` (values already computed in this
    run, by content) where possible; None where the metric has no value for an image (e.g.
    no face found). Returns (values, number of values computed now)."""
    path = Path(out_dir) / "metrics" / method.key / f"{metric.name}.json"
    cache = _read_json(path)
    if cache is None or cache.get("settings") != metric.settings():
        cache = {"format": "faceprior.evaluation.metric", "metric": metric.name, "settings": metric.settings(),
                 "values": {}}
    stored: Dict[str, Any] = cache["values"]
    values: Dict[str, Optional[float]] = {}
    todo = []
    for pair in pairs:
        key = _content_key(metric, pair, outputs.sha256[pair.name])
        entry = stored.get(pair.name)
        if entry and entry.get("key") == key:
            values[pair.name] = _optional_float(entry["value"])
        elif (metric.name, key) in memo:
            values[pair.name] = memo[(metric.name, key)]
            stored[pair.name] = {"key": key, "value": values[pair.name]}
        else:
            todo.append(pair)
    for first in range(0, len(todo), batch_size):
        chunk = todo[first:first + batch_size]
        images = [load_rgb(outputs.files[pair.name]) for pair in chunk]
        references = [load_rgb(pair.gt) if metric.full_reference else None for pair in chunk]
        for pair, value in zip(chunk, metric.compute(images, references)):
            key = _content_key(metric, pair, outputs.sha256[pair.name])
            values[pair.name] = memo[(metric.name, key)] = _optional_float(value)
            stored[pair.name] = {"key": key, "value": values[pair.name]}
    if todo or not path.is_file():
        _write_json(path, cache)
    return {pair.name: values[pair.name] for pair in pairs}, len(todo)


def _optional_float(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)


def _mean(values: Sequence[Optional[float]]) -> float:
    """Mean of the values that are not None (NaN when there are none)."""
    present = [value for value in values if value is not None]
    return float(np.mean(np.asarray(present, dtype=np.float64))) if present else math.nan


# ----------------------------------------------------------------------------------------------
# the whole evaluation


@dataclass
class Evaluation:
    """What ``evaluate`` did: the table, the files written, and for each method key how many
    outputs were computed (not cached) and how many metric values were computed."""

    table: ResultsTable
    files: Dict[str, Path]
    restored: Dict[str, int] = field(default_factory=dict)
    metric_values_computed: Dict[str, int] = field(default_factory=dict)


def evaluate(lq_dir: PathLike, out_dir: PathLike, gt_dir: Optional[PathLike] = None,
             models: Sequence[Union[ModelSpec, Method]] = (), metrics: Sequence[str] = DEFAULT_METRICS,
             sample: Optional[int] = None, fid_stats: Optional[PathLike] = None,
             device: Union[str, torch.device] = "cpu", batch_size: int = 4, crop_border: int = 0,
             y_channel: bool = False, lpips_net: str = "vgg", compare_rows: int = 8, compare_tile: int = 256,
             baselines: Sequence[str] = BASELINES, title: str = "Evaluation",
             log: Log = _log_to_stderr) -> Evaluation:
    """Evaluate the baselines and ``models`` on ``lq_dir`` and write the reports into ``out_dir``.

    Args:
        lq_dir: aligned LQ faces (any image format, recursive).
        out_dir: output folder (created); caches live in it, see the module docstring.
        gt_dir: GT faces with the same relative names (any suffix); None: no-reference only.
        models: registered names, checkpoint paths, nn.Modules, or ready ``Method`` objects.
        metrics: names from ``METRIC_NAMES``.
        sample: evaluate only this many images, evenly spaced over the sorted list.
        fid_stats: .npz with the reference FID statistics (mu, sigma); default: the GT's.
        device, batch_size: for the models and learned metrics.
        crop_border, y_channel: PSNR / SSIM (and NIQE crop) conventions (basicsr's).
        lpips_net: LPIPS backbone, "vgg" (default) or "alex".
        compare_rows, compare_tile: rows and tile size of compare.png / compare.html.
        baselines: which of "input", "lanczos" to include (both by default).
        title: heading of results.md.
        log: progress messages.
    Returns:
        An Evaluation (table, files written, work done).
    """
    out_dir = Path(out_dir)
    unknown = [name for name in metrics if name not in METRIC_NAMES]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRIC_NAMES)})")
    all_pairs = find_pairs(lq_dir, gt_dir)
    pairs = subsample(all_pairs, sample)
    log(f"{len(pairs)} of {len(all_pairs)} images from {lq_dir}" + (f" with GT from {gt_dir}" if gt_dir else ""))

    methods: List[Method] = []
    for name in baselines:
        if name not in BASELINES:
            raise EvaluationError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
        methods.append(InputBaseline() if name == "input" else LanczosBaseline())
    for spec in models:
        methods.append(spec if isinstance(spec, Method) else ModelMethod(spec, device=device, batch_size=batch_size))
    keys = [method.key for method in methods]
    if len(set(keys)) != len(keys):
        raise EvaluationError(f"the same method is listed twice ({', '.join(keys)})")

    produced = {method.key: produce_outputs(method, pairs, out_dir, batch_size, log) for method in methods}

    columns: List[MetricColumn] = []
    rows = [MethodRow(method.key, method.label, method.description) for method in methods]
    computed = {method.key: 0 for method in methods}
    memo: Dict[Tuple[str, str], Optional[float]] = {}
    notes: List[str] = []
    reference = None  # FID statistics of the reference set
    for name in metrics:
        metric = make_metric(name, crop_border, y_channel, device, lpips_net, fid_stats)
        reason = None
        if isinstance(metric, FidMetric) and len(pairs) < 2:
            reason = "needs at least 2 images"
        elif metric.full_reference and gt_dir is None and not (isinstance(metric, FidMetric) and fid_stats):
            reason = "needs the GT images (--gt)"
        else:
            try:
                metric.prepare()
                for method, row in zip(methods, rows):
                    if isinstance(metric, FidMetric):
                        if reference is None:
                            reference = metric.reference_statistics(pairs, out_dir)
                        outputs = produced[method.key]
                        features, count = metric.features([outputs.files[p.name] for p in pairs],
                                                          [outputs.sha256[p.name] for p in pairs],
                                                          out_dir / "metrics" / method.key / "fid-features.npz")
                        row.values[metric.name] = frechet_distance(*statistics_of_features(features), *reference)
                    else:
                        values, count = per_image_values(metric, method, pairs, produced[method.key], out_dir, memo)
                        row.per_image[metric.name] = values
                    computed[method.key] += count
                if not isinstance(metric, FidMetric):
                    notes.extend(_means_over_common_images(metric, rows))
            except MetricUnavailable as error:
                reason = str(error)
        columns.append(MetricColumn(metric.name, metric.label, metric.higher_is_better, metric.decimals, reason))
        if reason is None:
            log(f"{metric.label}: " + ", ".join(
                f"{row.label} {format_value(row.values[metric.name], metric.decimals)}" for row in rows))
        else:
            log(f"{metric.label}: unavailable: {reason}")
            for row in rows:
                row.values[metric.name] = None
                row.per_image.pop(metric.name, None)

    for method, row in zip(methods, rows):
        outputs = produced[method.key]
        row.extra = {"outputs": str(Path(out_dir) / "restored" / method.key), "settings": method.settings,
                     "computed_now": outputs.computed,
                     "seconds_per_image_now": outputs.seconds / outputs.computed if outputs.computed else None}

    head = [f"{len(pairs)} images from {lq_dir}" + (f", GT from {gt_dir}" if gt_dir else " (no GT)") +
            (f" (an evenly spaced sample of {len(all_pairs)})" if len(pairs) < len(all_pairs) else "")]
    if "lanczos" in keys and all(pair.lq_size == pair.reference_size for pair in pairs):
        head.append("lanczos is identical to input here: the LQ images already have the reference size")
    if crop_border or y_channel:
        head.append(f"PSNR/SSIM with crop_border {crop_border}" + (", on the Y channel" if y_channel else ""))
    if any(column.name == "fid" and column.unavailable is None for column in columns):
        head.append(f"FID over {len(pairs)} images against "
                    + (f"the statistics in {fid_stats}" if fid_stats else "the GT images")
                    + " (FID is biased upward for small sets: compare only at equal counts)")
    notes = head + notes
    table = ResultsTable(title, columns, rows, notes, settings={
        "lq_dir": str(lq_dir), "gt_dir": None if gt_dir is None else str(gt_dir), "images": len(pairs),
        "image_names": [pair.name for pair in pairs], "crop_border": crop_border, "y_channel": y_channel,
        "fid_stats": None if fid_stats is None else str(fid_stats)})
    files = write_table_files(table, out_dir)
    files.update(_write_sheet(methods, rows, pairs, produced, out_dir, compare_rows, compare_tile, columns))
    return Evaluation(table, files, {key: produced[key].computed for key in keys}, computed)


def _write_sheet(methods: Sequence[Method], rows: Sequence[MethodRow], pairs: Sequence[ImagePair],
                 produced: Dict[str, MethodOutputs], out_dir: Path, count: int, tile: int,
                 columns: Sequence[MetricColumn]) -> Dict[str, Path]:
    """compare.png / compare.html: ``count`` evenly spaced faces; columns input (the LQ file),
    every other method whose outputs differ from the LQ files, GT."""
    if count < 1:
        return {}
    chosen = subsample(pairs, count)

    def captions(row: MethodRow) -> List[str]:
        texts = []
        for pair in chosen:
            parts = [f"{c.label} {format_value(row.per_image[c.name][pair.name], c.decimals)}"
                     for c in columns if c.name in row.per_image]
            texts.append(" · ".join(parts))
        return texts

    input_row = next((row for row in rows if row.key == "input"), None)
    sheet = [SheetColumn("input", [pair.lq for pair in chosen], captions(input_row) if input_row else ())]
    for method, row in zip(methods, rows):
        files = [produced[method.key].files[pair.name] for pair in chosen]
        if method.key == "input" or all(f == pair.lq for f, pair in zip(files, chosen)):
            continue
        sheet.append(SheetColumn(method.label, files, captions(row)))
    if all(pair.gt is not None for pair in chosen):
        sheet.append(SheetColumn("GT", [pair.gt for pair in chosen]))
    tile = min(tile, max(max(pair.reference_size) for pair in chosen))
    return write_comparison_sheet(sheet, [pair.name for pair in chosen], out_dir, tile=tile)
