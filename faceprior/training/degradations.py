"""The GFP-GAN degradation model: synthetic low-quality (LQ) faces made from high-quality (GT) ones.

Image convention in this module: numpy float32 arrays [H, W, 3], RGB, values in [0, 1]
(integer uint8 / uint16 inputs are accepted and scaled to [0, 1]). Tensors inside are
[N, 3, H, W] float32 in [0, 1].

The recipe is the one of the official training code (gfpgan 1.3.8
``FFHQDegradationDataset`` + basicsr 1.4.2 ``degradations``), with the values of the official
``options/train_gfpgan_v1.yml`` as defaults (see ``DegradationConfig``). In order:

 1. blur: a normalised 41x41 Gaussian kernel, isotropic (p 0.5, sigma ~ U[0.1, 10]) or
    anisotropic (p 0.5, sigma_x, sigma_y ~ U[0.1, 10] independently, rotation ~ U[-pi, pi]),
    applied as a correlation with reflect-101 borders (``cv2.filter2D``'s default), via FFT;
 2. downsample by scale ~ U[0.8, 8] to (int(H // scale), int(W // scale)), bilinear with
    half-pixel centres and no antialiasing (``cv2.resize`` INTER_LINEAR);
 3. additive Gaussian colour noise, sigma ~ U[0, 20] / 255 independently per pixel and
    channel, then clipping to [0, 1];
 4. JPEG with quality int(U[60, 100]) (4:2:0 chroma subsampling, as cv2.imencode), via Pillow;
 5. bilinear resize back to the GT size;
 6. colour shift (p 0.3): one offset ~ U[-20, 20] / 255 per channel added, then clipping;
 7. grayscale (p 0.01): BT.601 luma 0.299 R + 0.587 G + 0.114 B in all three channels; with
    ``gt_gray`` the caller converts the GT as well (``DegradationParams.gt_gray``);
 8. tensor colour jitter (p 0.3): brightness, contrast, saturation and hue adjustments in a
    random order, each with a factor drawn from its range (torchvision semantics, see
    ``color_jitter``);
 9. rounding to multiples of 1/255 and clipping to [0, 1].

Every random choice of one sample is drawn up front by ``sample_degradation`` into a
``DegradationParams`` (JSON-serialisable with ``dataclasses.asdict``); ``apply_degradation``
is then a deterministic function of the GT image and those parameters (the noise comes from
``params.noise_seed``), so a manifest entry alone reproduces an LQ image bit for bit.
Random numbers come from numpy Generators (never the global numpy / torch / python RNGs), so
the LQ images do not depend on the official code's random streams, only on the seed given.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from faceprior.errors import FacepriorError
from faceprior.imaging.files import IMAGE_SUFFIXES, list_image_files
from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.pixels import rgb_to_gray, to_float01, to_rgb_array
from faceprior.imaging.resize import resize_bicubic, resize_bilinear
from faceprior.paths import PathLike

Range = Tuple[float, float]

KERNEL_TYPES = ("iso", "aniso")
JITTER_OPERATIONS = ("brightness", "contrast", "saturation", "hue")
# ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY (torchvision's rgb_to_grayscale uses 0.2989 for red).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
MANIFEST_FORMAT = "faceprior.degradations"


class DegradationConfigError(FacepriorError, ValueError):
    """A degradation setting is unknown or out of range; the message is one line."""


class DegradationError(FacepriorError, ValueError):
    """Degrading a folder failed (no images, output exists, bad image); one-line message."""


# ----------------------------------------------------------------------------------------------
# configuration


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _range(name: str, value: Any, minimum: float, maximum: float, optional: bool) -> Optional[Range]:
    """(low, high) with minimum <= low <= high <= maximum, as floats; None when allowed."""
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} must be a (low, high) pair, got None")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    low, high = _number(name, value[0]), _number(name, value[1])
    if not minimum <= low <= high <= maximum:
        raise ValueError(f"{name} must satisfy {minimum:g} <= low <= high <= {maximum:g}, got ({low:g}, {high:g})")
    return (low, high)


def _probability(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    value = _number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] or None, got {value:g}")
    return value


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges and probabilities of the degradation model; defaults = official train_gfpgan_v1.yml.

    Ranges are (low, high) pairs sampled uniformly; low == high fixes the value. A step whose
    range or probability is None is skipped (as in the official code). Units: sigmas of the
    blur in pixels, rotation in radians, noise sigma and colour shift in 0..255 levels.

    blur_kernel_size: odd side of the square blur kernel (41).
    kernel_list / kernel_prob: kernel types ("iso", "aniso") and their probabilities.
    blur_sigma: range of the Gaussian sigmas (both axes of anisotropic kernels).
    rotation_range: range of the anisotropic kernel's rotation (the official code hard-codes
        [-pi, pi]).
    downsample_range: range of the downsampling factor (> 1 shrinks, < 1 enlarges).
    noise_range: range of the Gaussian noise sigma; None: no noise.
    jpeg_range: range of the JPEG quality (1..100; truncated to an integer); None: no JPEG.
    color_jitter_prob / color_jitter_shift: probability of the per-channel colour shift and its
        largest magnitude.
    gray_prob: probability of turning the LQ image grey. gt_gray: convert the GT too when the
        LQ is grey (official default False: the network learns to colourise; the yml comment
        suggests True "if you do not want colorization").
    color_jitter_pt_prob: probability of the tensor colour jitter, whose factors are drawn
        from ``brightness``, ``contrast``, ``saturation`` and ``hue`` (None skips that one).
    enlarge_prob / enlarge_range (this project's, not the paper's): with this probability the
        face is degraded as part of a larger photo, as a 512 px photo's face is before the
        pipeline shrinks it into a 256 px model's crop: the GT is enlarged by a factor drawn from
        ``enlarge_range`` (bicubic), degraded, and the LQ shrunk back to the GT's size
        (antialiased), so blur, blocks and grain come out finer. None (default): never; the
        official recipe's random draws are then unchanged.
    """

    blur_kernel_size: int = 41
    kernel_list: Tuple[str, ...] = ("iso", "aniso")
    kernel_prob: Tuple[float, ...] = (0.5, 0.5)
    blur_sigma: Range = (0.1, 10.0)
    rotation_range: Range = (-math.pi, math.pi)
    downsample_range: Range = (0.8, 8.0)
    noise_range: Optional[Range] = (0.0, 20.0)
    jpeg_range: Optional[Range] = (60.0, 100.0)
    color_jitter_prob: Optional[float] = 0.3
    color_jitter_shift: float = 20.0
    gray_prob: Optional[float] = 0.01
    gt_gray: bool = False
    color_jitter_pt_prob: Optional[float] = 0.3
    brightness: Optional[Range] = (0.5, 1.5)
    contrast: Optional[Range] = (0.5, 1.5)
    saturation: Optional[Range] = (0.0, 1.5)
    hue: Optional[Range] = (-0.1, 0.1)
    enlarge_prob: Optional[float] = None
    enlarge_range: Range = (1.2, 2.0)

    def __post_init__(self):
        try:
            checked = _checked_config_fields(self)
        except ValueError as error:
            raise DegradationConfigError(f"DegradationConfig: {error}") from None
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "degradation config") -> "DegradationConfig":
        """Build from a mapping of field names (e.g. parsed JSON); missing keys keep their
        defaults, unknown keys raise DegradationConfigError naming ``source``."""
        if not isinstance(data, Mapping):
            raise DegradationConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise DegradationConfigError(
                f"{source}: unknown degradation setting(s) {', '.join(unknown)} (known: {', '.join(known)})"
            )
        try:
            return cls(**dict(data))
        except DegradationConfigError as error:
            reason = str(error).split(": ", 1)[1]
            raise DegradationConfigError(f"{source}: {reason}") from None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists) that ``from_dict`` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _checked_config_fields(config: DegradationConfig) -> Dict[str, Any]:
    """Validated, normalised field values of ``config``; ValueError names the bad field."""
    size = config.blur_kernel_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"blur_kernel_size must be a positive odd integer, got {size!r}")
    kernel_list = config.kernel_list
    if isinstance(kernel_list, str) or not isinstance(kernel_list, Sequence) or not kernel_list:
        raise ValueError(f"kernel_list must be a non-empty list of {KERNEL_TYPES}, got {kernel_list!r}")
    for kind in kernel_list:
        if kind not in KERNEL_TYPES:
            raise ValueError(f"kernel_list holds unknown kernel type {kind!r} (known: {', '.join(KERNEL_TYPES)})")
    kernel_prob = config.kernel_prob
    if isinstance(kernel_prob, str) or not isinstance(kernel_prob, Sequence) or len(kernel_prob) != len(kernel_list):
        raise ValueError(f"kernel_prob must hold one probability per kernel type, got {kernel_prob!r}")
    kernel_prob = tuple(_number("kernel_prob", p) for p in kernel_prob)
    if min(kernel_prob) < 0 or sum(kernel_prob) <= 0:
        raise ValueError(f"kernel_prob must be non-negative with a positive sum, got {kernel_prob}")
    shift = _number("color_jitter_shift", config.color_jitter_shift)
    if not 0 <= shift <= 255:
        raise ValueError(f"color_jitter_shift must be in [0, 255], got {shift:g}")
    if not isinstance(config.gt_gray, (bool, np.bool_)):
        raise ValueError(f"gt_gray must be true or false, got {config.gt_gray!r}")
    inf = math.inf
    return {
        "blur_kernel_size": int(size),
        "kernel_list": tuple(str(kind) for kind in kernel_list),
        "kernel_prob": kernel_prob,
        "blur_sigma": _range("blur_sigma", config.blur_sigma, 1e-6, inf, optional=False),
        "rotation_range": _range("rotation_range", config.rotation_range, -inf, inf, optional=False),
        "downsample_range": _range("downsample_range", config.downsample_range, 1e-6, inf, optional=False),
        "noise_range": _range("noise_range", config.noise_range, 0.0, inf, optional=True),
        "jpeg_range": _range("jpeg_range", config.jpeg_range, 1.0, 100.0, optional=True),
        "color_jitter_prob": _probability("color_jitter_prob", config.color_jitter_prob),
        "color_jitter_shift": shift,
        "gray_prob": _probability("gray_prob", config.gray_prob),
        "gt_gray": bool(config.gt_gray),
        "color_jitter_pt_prob": _probability("color_jitter_pt_prob", config.color_jitter_pt_prob),
        "brightness": _range("brightness", config.brightness, 0.0, inf, optional=True),
        "contrast": _range("contrast", config.contrast, 0.0, inf, optional=True),
        "saturation": _range("saturation", config.saturation, 0.0, inf, optional=True),
        "hue": _range("hue", config.hue, -0.5, 0.5, optional=True),
        "enlarge_prob": _probability("enlarge_prob", config.enlarge_prob),
        "enlarge_range": _range("enlarge_range", config.enlarge_range, 1.0, 8.0, optional=False),
    }


# ----------------------------------------------------------------------------------------------
# sampled parameters


@dataclass
class DegradationParams:
    """Everything random about one degraded sample (``sample_degradation`` draws it).

    kernel_type: "iso" or "aniso"; kernel_size: side of the kernel.
    sigma_x, sigma_y: Gaussian sigmas in pixels before rotation (equal for "iso").
    rotation: rotation of the kernel's x axis in radians (0 for "iso").
    scale: downsampling factor; the LQ is resized to (int(H // scale), int(W // scale)).
    noise_sigma: Gaussian noise sigma in 0..255 levels, or None (no noise step).
    noise_seed: seed of the numpy Generator that draws the noise pixels.
    jpeg_quality: JPEG quality 1..100, or None (no JPEG step).
    color_shift: per-channel (R, G, B) offsets in 0..255 levels, or None.
    gray: the LQ was turned grey. gt_gray: the GT should be turned grey too (``gray_image``).
    jitter_order: the tensor colour jitter operations in the order applied, or None.
    brightness, contrast, saturation, hue: their factors (None when not applied).
    enlarge: the face was degraded at this many times its size, then shrunk back (1: not).
    """

    kernel_type: str
    kernel_size: int
    sigma_x: float
    sigma_y: float
    rotation: float
    scale: float
    noise_sigma: Optional[float]
    noise_seed: int
    jpeg_quality: Optional[int]
    color_shift: Optional[Tuple[float, float, float]]
    gray: bool
    gt_gray: bool
    jitter_order: Optional[Tuple[str, ...]]
    brightness: Optional[float]
    contrast: Optional[float]
    saturation: Optional[float]
    hue: Optional[float]
    enlarge: float = 1.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "degradation parameters") -> "DegradationParams":
        """Inverse of ``dataclasses.asdict`` (e.g. one entry of a manifest); every field without a
        default is required (a field with one was added later: manifests written before it lack it
        and read as its default, e.g. ``enlarge`` 1) and unknown keys are refused
        (DegradationConfigError naming ``source``)."""
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        if isinstance(data, Mapping):
            data = {**{f.name: f.default for f in fields if f.default is not dataclasses.MISSING}, **data}
        if not isinstance(data, Mapping) or set(data) != set(names):
            given = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise DegradationConfigError(f"{source}: expected exactly the keys {', '.join(names)}, got {given}")
        values = dict(data)
        for name in ("color_shift", "jitter_order"):
            if values[name] is not None:
                values[name] = tuple(values[name])
        if values["kernel_type"] not in KERNEL_TYPES:
            raise DegradationConfigError(f"{source}: unknown kernel_type {values['kernel_type']!r}")
        if values["jitter_order"] is not None and not set(values["jitter_order"]) <= set(JITTER_OPERATIONS):
            raise DegradationConfigError(f"{source}: unknown jitter operation in {values['jitter_order']!r}")
        return cls(**values)


def sample_degradation(config: DegradationConfig, rng: np.random.Generator) -> DegradationParams:
    """Draw one sample's degradation parameters from ``config`` using ``rng`` only."""
    probabilities = np.asarray(config.kernel_prob, dtype=np.float64)
    kernel_type = config.kernel_list[int(rng.choice(len(config.kernel_list), p=probabilities / probabilities.sum()))]
    if kernel_type == "iso":
        sigma_x = sigma_y = float(rng.uniform(*config.blur_sigma))
        rotation = 0.0
    else:
        sigma_x = float(rng.uniform(*config.blur_sigma))
        sigma_y = float(rng.uniform(*config.blur_sigma))
        rotation = float(rng.uniform(*config.rotation_range))
    scale = float(rng.uniform(*config.downsample_range))
    noise_sigma = None if config.noise_range is None else float(rng.uniform(*config.noise_range))
    noise_seed = int(rng.integers(0, 2**32))
    # cv2.imencode receives the float quality of basicsr and truncates it to an integer.
    jpeg_quality = None if config.jpeg_range is None else int(rng.uniform(*config.jpeg_range))

    color_shift = None
    if config.color_jitter_prob is not None and rng.random() < config.color_jitter_prob:
        shift = config.color_jitter_shift
        color_shift = tuple(float(v) for v in rng.uniform(-shift, shift, 3))
    gray = bool(config.gray_prob) and bool(rng.random() < config.gray_prob)

    jitter_order = None
    factors: Dict[str, Optional[float]] = {name: None for name in JITTER_OPERATIONS}
    if config.color_jitter_pt_prob is not None and rng.random() < config.color_jitter_pt_prob:
        jitter_order = tuple(JITTER_OPERATIONS[i] for i in rng.permutation(len(JITTER_OPERATIONS)))
        for name in jitter_order:
            factor_range = getattr(config, name)
            if factor_range is not None:
                factors[name] = float(rng.uniform(*factor_range))
    enlarge = 1.0  # drawn last, and only when configured: the official draws above stay as they were
    if config.enlarge_prob is not None and rng.random() < config.enlarge_prob:
        enlarge = float(rng.uniform(*config.enlarge_range))

    return DegradationParams(
        kernel_type=kernel_type,
        kernel_size=config.blur_kernel_size,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        rotation=rotation,
        scale=scale,
        noise_sigma=noise_sigma,
        noise_seed=noise_seed,
        jpeg_quality=jpeg_quality,
        color_shift=color_shift,
        gray=gray,
        gt_gray=gray and config.gt_gray,
        jitter_order=jitter_order,
        **factors,
        enlarge=enlarge,
    )


# ----------------------------------------------------------------------------------------------
# blur and resize


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float = 0.0) -> np.ndarray:
    """Normalised bivariate Gaussian kernel [size, size] float64 (sums to 1).

    k(x, y) ~ exp(-(u^2 / sigma_x^2 + v^2 / sigma_y^2) / 2) with (u, v) = (x, y) rotated by
    -rotation, i.e. covariance R diag(sigma_x^2, sigma_y^2) R^T with R the rotation by
    ``rotation``; x runs along columns, y along rows, both in -(size // 2) .. size // 2.
    """
    half = size // 2
    axis = np.arange(-half, half + 1, dtype=np.float64)
    x, y = np.meshgrid(axis, axis)
    cos, sin = math.cos(rotation), math.sin(rotation)
    u = cos * x + sin * y
    v = -sin * x + cos * y
    kernel = np.exp(-0.5 * (u**2 / sigma_x**2 + v**2 / sigma_y**2))
    return kernel / kernel.sum()


def degradation_kernel(params: DegradationParams) -> np.ndarray:
    """The blur kernel [K, K] float64 of a sample."""
    return gaussian_kernel(params.kernel_size, params.sigma_x, params.sigma_y, params.rotation)


def reflect_101_indices(length: int, pad: int) -> torch.Tensor:
    """Indices [length + 2 * pad] of a 1-D signal padded by ``pad`` on each side with
    reflect-101 borders (cv2.BORDER_REFLECT_101: ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...),
    valid for any pad (repeated reflection)."""
    positions = np.arange(-pad, length + pad)
    if length == 1:
        return torch.zeros(len(positions), dtype=torch.long)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    folded = np.where(folded >= length, period - folded, folded)
    return torch.from_numpy(folded.astype(np.int64))


def filter2d(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of images [N, C, H, W] (float) with an odd kernel [K, K] (same
    output size, reflect-101 borders), like cv2.filter2D with its default border.

    Computed with FFTs of the padded image (as cv2.filter2D does for kernels of 50 taps or
    more): for the 41x41 blur kernels this is ~7x faster on CPU than torch's direct conv2d and
    agrees with it to ~2e-6. The result does not depend on the number of threads.
    """
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    height, width = images.shape[-2:]
    padded = images.index_select(2, reflect_101_indices(height, pad_y))
    padded = padded.index_select(3, reflect_101_indices(width, pad_x))
    padded_size = tuple(padded.shape[-2:])
    # Correlation = convolution with the flipped kernel; output pixel (i, j) of the valid
    # part sits at (i + 2 pad_y, j + 2 pad_x) of the (non-wrapping) circular convolution.
    kernel_spectrum = torch.fft.rfft2(kernel.to(images.dtype).flip(0, 1), s=padded_size)
    filtered = torch.fft.irfft2(torch.fft.rfft2(padded) * kernel_spectrum, s=padded_size)
    return filtered[..., 2 * pad_y:2 * pad_y + height, 2 * pad_x:2 * pad_x + width].contiguous()


def downsampled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """(int(height // scale), int(width // scale)) as the official code, at least 1 pixel."""
    return max(1, int(height // scale)), max(1, int(width // scale))


# ----------------------------------------------------------------------------------------------
# noise, JPEG, grey


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode a [3, H, W] float image in [0, 1] as JPEG (rounded to 8 bits, given quality,
    4:2:0 chroma subsampling) with Pillow and decode it: float32 [3, H, W] in [0, 1]."""
    pixels = (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=int(quality), subsampling=2)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.asarray(decoded.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def luma(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of [..., 3, H, W] RGB -> [..., 1, H, W]."""
    red, green, blue = images.unbind(-3)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).unsqueeze(-3)


def gray_image(image: np.ndarray) -> np.ndarray:
    """float32 [H, W, 3] RGB -> float32 [H, W, 3] with the BT.601 luma in every channel (what
    the caller applies to the GT when ``DegradationParams.gt_gray`` is set)."""
    gray = rgb_to_gray(np.asarray(image, dtype=np.float32))
    return np.repeat(gray[:, :, None], 3, axis=2)


# ----------------------------------------------------------------------------------------------
# colour jitter (torchvision.transforms.functional semantics on float images, without it)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """[..., 3, H, W] in [0, 1]: clip(factor * image). 1 is the identity."""
    return _blend(image, torch.zeros_like(image), factor)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """clip(factor * image + (1 - factor) * m), m = mean luma of each image. 1 is the identity."""
    mean = luma(image).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(image, mean, factor)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """clip(factor * image + (1 - factor) * luma(image)); 0 gives grey, 1 the identity."""
    return _blend(image, luma(image), factor)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [0, 1] -> HSV with h in [0, 1) (a full turn = 1), s, v in [0, 1].

    v = max, s = (max - min) / max (0 where max = 0), h from the sector of the largest channel:
    (g - b) / d for red, 2 + (b - r) / d for green, 4 + (r - g) / d for blue (d = max - min),
    divided by 6 and wrapped to [0, 1); h = 0 for greys.
    """
    red, green, blue = image.unbind(-3)
    maxc = image.amax(dim=-3)
    minc = image.amin(dim=-3)
    delta = maxc - minc
    is_gray = delta == 0
    saturation = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    safe_delta = torch.where(is_gray, torch.ones_like(delta), delta)
    hue_red = (green - blue) / safe_delta
    hue_green = 2.0 + (blue - red) / safe_delta
    hue_blue = 4.0 + (red - green) / safe_delta
    hue = torch.where(maxc == red, hue_red, torch.where(maxc == green, hue_green, hue_blue))
    hue = torch.where(is_gray, torch.zeros_like(hue), torch.remainder(hue / 6.0, 1.0))
    return torch.stack([hue, saturation, maxc], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``: [..., 3, H, W] HSV (h in [0, 1)) -> RGB in [0, 1].

    Channel c of (r, g, b) = v - v s clip(min(k_c, 4 - k_c), 0, 1) with k_c = (n_c + 6 h) mod 6
    and n = (5, 3, 1): the usual six-sector formula (e.g. h = 0 gives (v, v (1 - s), v (1 - s))).
    """
    hue, saturation, value = hsv.unbind(-3)
    hue6 = hue * 6.0
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = torch.remainder(offset + hue6, 6.0)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=-3)


def adjust_hue(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the hue by ``factor`` turns (in [-0.5, 0.5]; 0 is the identity up to rounding)."""
    hsv = rgb_to_hsv(image)
    hue, saturation, value = hsv.unbind(-3)
    hue = torch.remainder(hue + factor, 1.0)
    return hsv_to_rgb(torch.stack([hue, saturation, value], dim=-3))


_JITTER_FUNCTIONS = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


def color_jitter(
    image: torch.Tensor,
    order: Sequence[str],
    brightness: Optional[float] = None,
    contrast: Optional[float] = None,
    saturation: Optional[float] = None,
    hue: Optional[float] = None,
) -> torch.Tensor:
    """Apply the adjustments named in ``order`` (a permutation of JITTER_OPERATIONS) with the
    given factors, skipping those whose factor is None; image [..., 3, H, W] in [0, 1]."""
    factors = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    for name in order:
        if factors[name] is not None:
            image = _JITTER_FUNCTIONS[name](image, factors[name])
    return image


# ----------------------------------------------------------------------------------------------
# the whole model


def as_float_image(image: Any) -> np.ndarray:
    """An RGB image array (uint8, uint16 or float in [0, 1]; [H, W, 3]) -> float32 [H, W, 3]
    in [0, 1]; ValueError for other shapes."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {array.shape}")
    pixels, _ = to_rgb_array(array)
    return np.ascontiguousarray(to_float01(pixels, np.float32))


def apply_degradation(gt_image: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Degrade one GT image with fixed parameters (deterministic: same inputs, same bits).

    gt_image: [H, W, 3] RGB, float32 in [0, 1] (uint8 / uint16 accepted).
    Returns the LQ image, float32 [H, W, 3] in [0, 1], multiples of 1/255.
    The GT itself is not changed; if ``params.gt_gray``, the caller applies ``gray_image``.
    """
    gt = as_float_image(gt_image)
    height, width = gt.shape[:2]
    if params.enlarge != 1.0:  # degraded as part of a larger photo, shrunk back below
        gt = resize_bicubic(gt, round(height * params.enlarge), round(width * params.enlarge))
    images = torch.from_numpy(gt).permute(2, 0, 1)[None]
    big_height, big_width = gt.shape[:2]

    images = filter2d(images, torch.from_numpy(degradation_kernel(params)))
    images = resize_bilinear(images, *downsampled_size(big_height, big_width, params.scale))
    if params.noise_sigma is not None:
        noise_rng = np.random.default_rng(params.noise_seed)
        noise = noise_rng.standard_normal(tuple(images.shape), dtype=np.float32)
        images = (images + torch.from_numpy(noise) * np.float32(params.noise_sigma / 255.0)).clamp(0.0, 1.0)
    if params.jpeg_quality is not None:
        images = jpeg_roundtrip(images[0], params.jpeg_quality)[None]
    images = resize_bilinear(images, big_height, big_width)
    if (big_height, big_width) != (height, width):
        images = torch.from_numpy(resize_bicubic(images[0].permute(1, 2, 0).numpy(), height, width)).permute(2, 0, 1)[None]

    if params.color_shift is not None:
        shift = torch.tensor(params.color_shift, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
        images = (images + shift).clamp(0.0, 1.0)
    if params.gray:
        images = luma(images).expand(-1, 3, -1, -1)
    if params.jitter_order is not None:
        images = color_jitter(images, params.jitter_order, params.brightness, params.contrast,
                              params.saturation, params.hue)
    images = (images * 255.0).round().clamp(0.0, 255.0) / 255.0
    return images[0].permute(1, 2, 0).contiguous().numpy()


def degrade(
    gt_image: np.ndarray, config: DegradationConfig = DegradationConfig(), seed: Any = 0
) -> Tuple[np.ndarray, DegradationParams]:
    """Sample parameters with ``np.random.default_rng(seed)`` and degrade ``gt_image``.

    Returns (lq float32 [H, W, 3] in [0, 1], params). Same seed -> bit-identical output.
    """
    params = sample_degradation(config, np.random.default_rng(seed))
    return apply_degradation(gt_image, params), params


# ----------------------------------------------------------------------------------------------
# folders, files, grid


def read_float_image(path: PathLike) -> np.ndarray:
    """Read an image file as float32 [H, W, 3] RGB in [0, 1] (alpha dropped, grey expanded)."""
    return np.ascontiguousarray(to_float01(read_image(path).pixels, np.float32))


def file_rng(seed: int, relative_path: str) -> np.random.Generator:
    """Generator for one file of a folder, from (seed, SHA-256 of its relative POSIX path):
    a file's degradation does not change when other files are added or removed."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def _square_resized(image: np.ndarray, size: Optional[int], path: Path) -> np.ndarray:
    if size is None:
        return image
    if image.shape[0] != image.shape[1]:
        raise DegradationError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]}, resizing to size {size} needs square aligned faces"
        )
    return resize_bicubic(image, size, size)


def degrade_folder(
    in_dir: PathLike,
    out_dir: PathLike,
    seed: int = 0,
    config: DegradationConfig = DegradationConfig(),
    size: Optional[int] = None,
    gt_dir: Optional[PathLike] = None,
    suffix: Optional[str] = ".png",
    manifest_name: str = "degradations.json",
) -> Dict[str, Any]:
    """Write a degraded copy of every image under ``in_dir`` (see ``list_image_files``).

    Each file gets its own Generator (``file_rng(seed, relative path)``); its LQ image goes to
    ``out_dir / relative path`` with ``suffix`` (".png" lossless by default, ".jpg" writes JPEG
    quality 95, None keeps the input's suffix). ``size`` first resizes the (square) GT to
    size x size; the GT is then rounded to 8 bits. ``gt_dir`` also writes that GT (grey when
    ``params.gt_gray``) there under the same names, e.g. for ``faceprior make-testset``.
    A JSON manifest ``out_dir / manifest_name`` records the config, seed and every file's
    parameters. Nothing is ever overwritten: if any output exists, nothing is written.
    Returns the manifest dict. Raises DegradationError with a one-line message.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    gt_dir = None if gt_dir is None else Path(gt_dir)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DegradationError(f"{in_dir}: seed must be a non-negative integer, got {seed!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise DegradationError(f"{in_dir}: size must be a positive integer, got {size!r}")
    if suffix is not None and suffix.lower() not in IMAGE_SUFFIXES:
        raise DegradationError(f"{out_dir}: output suffix must be one of {', '.join(IMAGE_SUFFIXES)}, got {suffix!r}")
    if not in_dir.is_dir():
        raise DegradationError(f"{in_dir}: not a folder")
    sources = list_image_files(in_dir)
    if not sources:
        raise DegradationError(f"{in_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found")

    manifest_path = out_dir / manifest_name
    jobs = []
    claimed = {manifest_path}
    for source in sources:
        relative = source.relative_to(in_dir)
        target = relative if suffix is None else relative.with_suffix(suffix)
        outputs = [out_dir / target] + ([gt_dir / target] if gt_dir is not None else [])
        for output in outputs:
            if output in claimed:
                raise DegradationError(f"{output}: two inputs would be written to this file")
            claimed.add(output)
        jobs.append((source, relative.as_posix(), target.as_posix()))
    for output in sorted(claimed):
        if output.exists():
            raise DegradationError(f"{output}: exists (degrade_folder never overwrites files)")

    entries = []
    for source, relative, target in jobs:
        try:
            gt = _square_resized(read_float_image(source), size, source)
        except (OSError, ValueError) as error:
            if isinstance(error, DegradationError):
                raise
            raise DegradationError(" ".join(str(error).split())) from None
        gt = (np.rint(gt * 255.0) / 255.0).astype(np.float32)  # the 8-bit GT that gt_dir stores
        params = sample_degradation(config, file_rng(seed, relative))
        lq = apply_degradation(gt, params)
        lq_path = out_dir / target
        lq_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(lq_path, lq, quality=95)
        gt_entry = None
        if gt_dir is not None:
            gt_path = gt_dir / target
            gt_path.parent.mkdir(parents=True, exist_ok=True)
            write_image(gt_path, gray_image(gt) if params.gt_gray else gt, quality=95)
            gt_entry = gt_path.relative_to(gt_dir).as_posix()
        entries.append({"source": relative, "lq": target, "gt": gt_entry, "params": dataclasses.asdict(params)})

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "seed": int(seed),
        "size": None if size is None else int(size),
        "input": str(in_dir),
        "gt_dir": None if gt_dir is None else str(gt_dir),
        "config": config.to_dict(),
        "files": entries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(manifest_path, "x", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.write("\n")
    return manifest


def save_degradation_grid(
    image: Union[np.ndarray, PathLike],
    out_path: PathLike,
    n: int = 16,
    seed: int = 0,
    config: DegradationConfig = DegradationConfig(),
    size: Optional[int] = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG grid of ``n`` degradations (seeds seed .. seed + n - 1) of one image.

    image: float32 [H, W, 3] in [0, 1] (or uint8) or an image file; ``size`` resizes it to
    size x size first. Tiles are laid out in ceil(sqrt(n)) columns, 4-pixel white gaps.
    Returns the path written (refuses to replace a file unless ``overwrite``).
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_float_image(image)
    gt = as_float_image(image)
    if size is not None:
        gt = resize_bicubic(gt, size, size)
    height, width = gt.shape[:2]
    columns = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    gap = 4
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), dtype=np.float32)
    for i in range(n):
        lq, _ = degrade(gt, config, seed + i)
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = lq
    return write_image(out_path, canvas, format="PNG", overwrite=overwrite)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m faceprior.training.degradations IMAGE OUT.png``: write a degradation grid."""
    parser = argparse.ArgumentParser(description="Write a PNG grid of GFP-GAN degradations of one image.")
    parser.add_argument("image", help="input image file")
    parser.add_argument("out", help="output PNG file (never overwritten)")
    parser.add_argument("--n", type=int, default=16, help="number of degraded samples (16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample (0)")
    parser.add_argument("--size", type=int, default=None, help="resize the image to SIZE x SIZE first")
    args = parser.parse_args(argv)
    path = save_degradation_grid(args.image, args.out, n=args.n, seed=args.seed, size=args.size)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
