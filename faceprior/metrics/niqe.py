"""NIQE (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
IEEE SPL 2013), with the conventions of basicsr 1.4.2 ``calculate_niqe`` (the values papers quote).

Evaluation (basicsr ``calculate_niqe(img, crop_border, input_order='HWC', convert_to='y')``):
  1. BT.601 luma in float32 (``faceprior.metrics.color.rgb_to_y``), crop, round to integers;
  2. crop to whole 96x96 blocks (top-left anchored);
  3. at two scales (full, then MATLAB bicubic ``imresize`` by 1/2 with antialiasing):
     mean-subtracted contrast-normalised coefficients (7x7 Gaussian window, sigma 7/6, edge
     replication, ``(I - mu) / (sigma + 1)``) and, per block (96 then 48 pixels), 18 features:
     the generalised Gaussian fit of the coefficients (shape, scale) and the asymmetric
     generalised Gaussian fits of the products of horizontally, vertically and diagonally
     adjacent coefficients (circular shifts within the block; shape, mean, left and right scale);
  4. a Gaussian fitted to the 36-dimensional block features (NaN-aware mean, covariance of the
     NaN-free rows) and the distance to the pristine model:
     ``sqrt((mu_p - mu_d)^T pinv((cov_p + cov_d) / 2) (mu_p - mu_d))``.
The coefficients are kept in float32 where basicsr keeps them in float32.

Fitting a pristine model (``fit_niqe_params``) follows the MATLAB release's
``estimatemodelparam(folder, 96, 96, 0, 0, 0.75)``: MATLAB ``rgb2gray``, the same features in
float64, only blocks whose mean local deviation (sharpness) exceeds 0.75 times the image's
largest, NaN-aware mean and covariance over all kept blocks of all images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from faceprior.errors import FacepriorError
from faceprior.imaging.files import IMAGE_SUFFIXES, list_image_files
from faceprior.metrics.color import ImageInputError, check_image, rgb_to_gray_matlab, rgb_to_y
from faceprior.weights.pypi_wheel import extract_from_pypi
from faceprior.weights.store import WeightsUnavailableError, verify_file, weights_dir

NIQE_BLOCK_SIZE = 96
NIQE_SHARPNESS_THRESHOLD = 0.75
NIQE_WINDOW_SIZE = 7
NIQE_WINDOW_SIGMA = 7.0 / 6.0
NIQE_NUM_FEATURES = 36  # 18 per scale, two scales

# The pristine model of the original NIQE release (modelparameters.mat, 125 pristine images,
# 96x96 blocks, sharpness threshold 0.75), as basicsr ships it. basicsr's wheels (<= 1.3.3.3)
# do not contain it; the basicsr 1.4.2 source distribution does, fetched with pip.
OFFICIAL_PARAMS_PACKAGE = "basicsr"
OFFICIAL_PARAMS_VERSION = "1.4.2"
OFFICIAL_PARAMS_SDIST_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
OFFICIAL_PARAMS_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"
OFFICIAL_PARAMS_FILENAME = "niqe_pris_params.npz"
OFFICIAL_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"

ImageSource = Union[str, Path, np.ndarray]


class NiqeParamsError(FacepriorError, ValueError):
    """A NIQE parameter file is missing keys or has arrays of the wrong shape."""


@dataclass(frozen=True)
class NiqeParams:
    """A pristine NIQE model.

    Attributes:
        mu_prisparam: [36] float64 mean of the pristine block features.
        cov_prisparam: [36, 36] float64 covariance of the pristine block features.
        gaussian_window: [7, 7] float64 window of the local mean / deviation (sums to 1).
        block_size: side of the square blocks the model was fitted with (96 officially).
    """

    mu_prisparam: np.ndarray
    cov_prisparam: np.ndarray
    gaussian_window: np.ndarray
    block_size: int = NIQE_BLOCK_SIZE


def gaussian_window_matlab(size: int = NIQE_WINDOW_SIZE, sigma: float = NIQE_WINDOW_SIGMA) -> np.ndarray:
    """[size, size] float64 window of MATLAB ``fspecial('gaussian', size, sigma)``, summing to 1."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    return window / window.sum()


# --------------------------------------------------------------------------- parameter files


def load_niqe_params(path: str | Path) -> NiqeParams:
    """Read a NIQE model from an .npz with arrays ``mu_pris_param`` ([36] or [1, 36]),
    ``cov_pris_param`` ([36, 36]) and ``gaussian_window`` ([k, k]), basicsr's layout; an optional
    integer ``block_size`` (default 96). Never unpickles anything."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise NiqeParamsError(f"{path}: cannot read as .npz ({error})") from None
    for key in ("mu_pris_param", "cov_pris_param", "gaussian_window"):
        if key not in arrays:
            raise NiqeParamsError(f"{path}: missing array {key!r}")
    mu = arrays["mu_pris_param"].astype(np.float64).reshape(-1)
    cov = arrays["cov_pris_param"].astype(np.float64)
    window = arrays["gaussian_window"].astype(np.float64)
    if mu.shape != (NIQE_NUM_FEATURES,) or cov.shape != (NIQE_NUM_FEATURES, NIQE_NUM_FEATURES):
        raise NiqeParamsError(f"{path}: expected mu [36] and cov [36, 36], got {mu.shape} and {cov.shape}")
    if window.ndim != 2 or window.shape[0] != window.shape[1] or window.shape[0] % 2 == 0:
        raise NiqeParamsError(f"{path}: gaussian_window must be square with an odd side, got {window.shape}")
    block_size = int(arrays["block_size"]) if "block_size" in arrays else NIQE_BLOCK_SIZE
    return NiqeParams(mu, cov, window, block_size)


def save_niqe_params(params: NiqeParams, path: str | Path) -> None:
    """Write ``params`` as an .npz readable by ``load_niqe_params`` (and by basicsr)."""
    np.savez(
        Path(path),
        mu_pris_param=params.mu_prisparam.reshape(1, -1),
        cov_pris_param=params.cov_prisparam,
        gaussian_window=params.gaussian_window,
        block_size=np.int64(params.block_size),
    )


def niqe_params_path(cache_dir: str | Path | None = None) -> Path:
    """Path of the official pristine NIQE model (basicsr's ``niqe_pris_params.npz``) in the weight
    cache (``faceprior.weights.store.weights_dir``).

    The first call downloads basicsr 1.4.2's source distribution with pip (172 KB, pinned to its
    SHA-256, not installed; see ``faceprior.weights.pypi_wheel``) and extracts that one member
    (SHA-256 checked). Offline, copy ``niqe_pris_params.npz`` into the weight folder by hand.
    Raises ``faceprior.weights.store.WeightsUnavailableError`` when it cannot be obtained.
    """
    target = weights_dir(cache_dir) / OFFICIAL_PARAMS_FILENAME
    if not target.is_file():
        try:
            extract_from_pypi(
                OFFICIAL_PARAMS_PACKAGE,
                OFFICIAL_PARAMS_VERSION,
                [OFFICIAL_PARAMS_MEMBER],
                target.parent,
                sha256={OFFICIAL_PARAMS_MEMBER: OFFICIAL_PARAMS_SHA256},
                sdist=True,
                archive_sha256=OFFICIAL_PARAMS_SDIST_SHA256,
            )
        except WeightsUnavailableError as error:
            raise WeightsUnavailableError(f"{error}; or copy basicsr's {OFFICIAL_PARAMS_FILENAME} to {target}") from None
    verify_file(target, sha256=OFFICIAL_PARAMS_SHA256)
    return target


@functools.lru_cache(maxsize=1)
def official_niqe_params() -> NiqeParams:
    """The pristine model of the original NIQE release (see ``niqe_params_path``)."""
    return load_niqe_params(niqe_params_path())


# --------------------------------------------------------------------------- MATLAB imresize


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def matlab_resize_matrix(in_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """[out_length, in_length] float64 matrix of MATLAB ``imresize(..., scale, 'bicubic')`` along
    one axis (out_length = ceil(in_length * scale)), symmetric edge padding folded in."""
    out_length = math.ceil(in_length * scale)
    kernel_width = 4.0
    widen = scale < 1 and antialiasing
    if widen:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # output pixel centres in 1-based input coordinates
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if widen else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # 1-based index -> 0-based, mirrored at the edges with the edge pixel repeated ('symmetric').
    index0 = indices.astype(np.int64) - 1
    index0 = np.where(index0 < 0, -index0 - 1, index0)
    index0 = np.where(index0 >= in_length, 2 * in_length - index0 - 1, index0)
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), index0.reshape(-1)), weights.reshape(-1))
    return matrix


def imresize_matlab(
    img: np.ndarray, scale: float, antialiasing: bool = True, dtype: type = np.float64
) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiased when shrinking) of a [H, W] image.

    Resizes along H, then along W (as MATLAB and basicsr's ``imresize``), each pass summed in
    float64 and stored as ``dtype``: float32 gives the correctly rounded version of basicsr's
    float32 passes (for scale 1/2 the taps are multiples of 1/256, so the float64 sums are exact).
    Returns ``dtype`` [ceil(H * scale), ceil(W * scale)], not rounded to integers or clipped.
    """
    h, w = img.shape
    rows = matlab_resize_matrix(h, scale, antialiasing)
    cols = matlab_resize_matrix(w, scale, antialiasing)
    resized_h = (rows @ img.astype(np.float64)).astype(dtype)
    return (resized_h.astype(np.float64) @ cols.T).astype(dtype)


# --------------------------------------------------------------------------- features


def _filter_replicate(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """'Same'-size correlation of a [H, W] image with a [k, k] window (k odd), edges replicated:
    MATLAB ``imfilter(img, window, 'replicate')``; for the symmetric Gaussian window also scipy's
    ``convolve(mode='nearest')`` that basicsr uses. Summed in float64."""
    k = window.shape[0]
    r = k // 2
    h, w = img.shape
    padded = np.pad(img.astype(np.float64), r, mode="edge")
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            out += window[i, j] * padded[i : i + h, j : j + w]
    return out


def _mscn(img: np.ndarray, window: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and local deviation of a [H, W] image.

    ``dtype`` float32 stores the filter outputs and the arithmetic in float32, as basicsr does
    (scipy's convolve returns the input's dtype); float64 is MATLAB's double.
    """
    img = img.astype(dtype)
    mu = _filter_replicate(img, window).astype(dtype)
    mean_sq = _filter_replicate(img * img, window).astype(dtype)
    sigma = np.sqrt(np.abs(mean_sq - mu * mu))
    return (img - mu) / (sigma + dtype(1.0)), sigma


class _AggdTable:
    """The shape grid 0.2:0.001:10 of the NIQE release with Gamma-function ratios."""

    def __init__(self) -> None:
        self.shape = np.arange(0.2, 10.001, 0.001)
        inv = np.reciprocal(self.shape)
        gamma = np.vectorize(math.gamma, otypes=[np.float64])
        self.gamma1 = gamma(inv)
        self.gamma2 = gamma(inv * 2.0)
        self.gamma3 = gamma(inv * 3.0)
        # Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), strictly increasing in a on this grid.
        self.ratio = self.gamma2**2 / (self.gamma1 * self.gamma3)

    def nearest(self, rhatnorm: np.ndarray) -> np.ndarray:
        """Index of the grid ratio nearest to each value (first on ties; 0 for NaN, like argmin)."""
        ratio = self.ratio
        hi = np.clip(np.searchsorted(ratio, rhatnorm), 1, len(ratio) - 1)
        lo = hi - 1
        take_lo = (ratio[lo] - rhatnorm) ** 2 <= (ratio[hi] - rhatnorm) ** 2
        index = np.where(take_lo, lo, hi)
        return np.where(np.isnan(rhatnorm), 0, index)


@functools.lru_cache(maxsize=1)
def _aggd_table() -> _AggdTable:
    return _AggdTable()


def _fit_aggd_on_grid(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``fit_aggd`` that also returns the [N] grid index of each shape (first)."""
    x = samples.astype(np.float64)
    sq = x * x
    negative = x < 0
    positive = x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt(np.where(negative, sq, 0.0).sum(axis=1) / negative.sum(axis=1))
        right_std = np.sqrt(np.where(positive, sq, 0.0).sum(axis=1) / positive.sum(axis=1))
        gammahat = left_std / right_std
        rhat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    table = _aggd_table()
    index = table.nearest(rhatnorm)
    scale = np.sqrt(table.gamma1[index] / table.gamma3[index])
    return index, table.shape[index], left_std * scale, right_std * scale


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each row of [N, M] samples
    (NIQE's ``estimateaggdparam``: shape picked on the grid 0.2:0.001:10).

    Returns float64 [N] arrays: shape alpha, left scale beta_l, right scale beta_r. A side
    without samples gives NaN scales and alpha = 0.2, as in the MATLAB release.
    """
    _, alpha, beta_l, beta_r = _fit_aggd_on_grid(samples)
    return alpha, beta_l, beta_r


def _block_features(coeffs: np.ndarray, block: int) -> np.ndarray:
    """[n_blocks, 18] features of the non-overlapping ``block`` x ``block`` tiles of a [H, W] map
    (H and W multiples of ``block``), tiles in row-major order."""
    h, w = coeffs.shape
    tiles = coeffs.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block, block)
    n = tiles.shape[0]
    table = _aggd_table()
    alpha, beta_l, beta_r = fit_aggd(tiles.reshape(n, -1))
    features = [alpha, (beta_l + beta_r) / 2.0]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        products = tiles * np.roll(tiles, shift, axis=(1, 2))
        index, alpha, beta_l, beta_r = _fit_aggd_on_grid(products.reshape(n, -1))
        mean = (beta_r - beta_l) * (table.gamma2[index] / table.gamma1[index])
        features += [alpha, mean, beta_l, beta_r]
    return np.stack(features, axis=1)


def niqe_block_features(
    luma: np.ndarray, window: np.ndarray, block_size: int = NIQE_BLOCK_SIZE, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Two-scale NIQE features of each block of a [H, W] luma image on the 0..255 scale.

    The image is first cropped to whole blocks (top-left anchored).
    Returns:
        features: [n_blocks, 36] float64 (18 at full scale, then 18 at half scale).
        sharpness: [n_blocks] float64 mean local deviation of each block at full scale.
    """
    h, w = luma.shape
    rows, cols = h // block_size, w // block_size
    if rows == 0 or cols == 0:
        raise ImageInputError(f"img: NIQE needs at least {block_size}x{block_size} pixels, got {h}x{w}")
    img = luma[: rows * block_size, : cols * block_size].astype(dtype)
    coeffs, sigma = _mscn(img, window, dtype)
    full = _block_features(coeffs, block_size)
    sharpness = (
        sigma.astype(np.float64).reshape(rows, block_size, cols, block_size).mean(axis=(1, 3)).reshape(-1)
    )
    # basicsr resizes img / 255 in float32 and multiplies back by 255 (a no-op up to rounding
    # in float64, where MATLAB resizes the image directly).
    unit = img / dtype(255.0)
    half = imresize_matlab(unit, 0.5, dtype=dtype) * dtype(255.0)
    coeffs_half, _ = _mscn(half, window, dtype)
    return np.concatenate([full, _block_features(coeffs_half, block_size // 2)], axis=1), sharpness


def _gaussian_of_features(features: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean (per column) and covariance of the NaN-free rows of [N, 36] features."""
    complete = features[~np.isnan(features).any(axis=1)]
    if complete.shape[0] < 2:
        raise ImageInputError(f"{what}: fewer than 2 blocks with finite NIQE features")
    return np.nanmean(features, axis=0), np.cov(complete, rowvar=False)


def niqe_of_features(features: np.ndarray, params: NiqeParams) -> float:
    """NIQE distance between the Gaussian of [N, 36] block features and a pristine model."""
    mu, cov = _gaussian_of_features(features, "img")
    diff = params.mu_prisparam - mu
    inv = np.linalg.pinv((params.cov_prisparam + cov) / 2.0)
    return float(np.sqrt(diff @ inv @ diff))


def niqe(img: np.ndarray, crop_border: int = 0, params: NiqeParams | None = None) -> float:
    """NIQE of one image (lower is better), as basicsr 1.4.2 ``calculate_niqe(convert_to='y')``.

    Args:
        img: [H, W, 3] RGB or [H, W] grey; uint8 in [0, 255] or float in [0, 1]; at least
            ``params.block_size`` pixels on each side after cropping.
        crop_border: pixels removed on each side before the computation.
        params: pristine model; ``None`` uses the official one (``official_niqe_params()``).
    Returns:
        The NIQE score.
    """
    img = check_image(img)
    if crop_border < 0:
        raise ImageInputError(f"crop_border: must be >= 0, got {crop_border}")
    if params is None:
        params = official_niqe_params()
    luma = rgb_to_y(img)
    if crop_border > 0:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    luma = np.round(luma)  # basicsr rounds the float32 luma "to be consistent with MATLAB"
    features, _ = niqe_block_features(luma, params.gaussian_window, params.block_size, np.float32)
    return niqe_of_features(features, params)


# --------------------------------------------------------------------------- fitting


def _load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise ImageInputError(f"{path}: cannot read the image ({error})") from None


def _image_sources(images: str | Path | Sequence[ImageSource]) -> list[ImageSource]:
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise ImageInputError(f"{folder}: not a folder of images")
        files = list_image_files(folder, recursive=False)
        if not files:
            raise ImageInputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return list(files)
    return list(images)


def fit_niqe_params(
    images: str | Path | Sequence[ImageSource],
    block_size: int = NIQE_BLOCK_SIZE,
    sharpness_threshold: float = NIQE_SHARPNESS_THRESHOLD,
    y_channel: bool = False,
) -> NiqeParams:
    """Fit a pristine NIQE model on your own high-quality images (MATLAB ``estimatemodelparam``).

    Args:
        images: a folder of image files, or a sequence of file paths and/or arrays
            ([H, W, 3] RGB or [H, W] grey, uint8 in [0, 255] or float in [0, 1]).
        block_size: block side (96 in the release; must be even).
        sharpness_threshold: keep the blocks whose mean local deviation exceeds this fraction of
            the largest one in the same image (0.75 in the release).
        y_channel: use the rounded BT.601 luma (the input ``niqe`` evaluates) instead of MATLAB's
            ``rgb2gray`` (what the release was fitted on).
    Returns:
        NiqeParams with the NaN-aware mean and the covariance (NaN-free rows, N - 1
        normalisation) of the kept block features, and the 7x7 sigma 7/6 window.
    """
    if block_size < 2 or block_size % 2:
        raise ValueError(f"block_size: must be a positive even number, got {block_size}")
    window = gaussian_window_matlab()
    kept = []
    for source in _image_sources(images):
        img = _load_rgb(Path(source)) if isinstance(source, (str, Path)) else check_image(source)
        luma = np.round(rgb_to_y(img)).astype(np.float64) if y_channel else rgb_to_gray_matlab(img)
        features, sharpness = niqe_block_features(luma, window, block_size, np.float64)
        kept.append(features[sharpness > sharpness_threshold * sharpness.max()])
    if not kept:
        raise ImageInputError("images: no images given")
    mu, cov = _gaussian_of_features(np.concatenate(kept, axis=0), "images")
    return NiqeParams(mu, cov, window, block_size)
