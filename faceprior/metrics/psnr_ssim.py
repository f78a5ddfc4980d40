"""PSNR and SSIM with the conventions of basicsr 1.4.2 (the numbers face-restoration papers quote).

Conventions (basicsr ``calculate_psnr`` / ``calculate_ssim``):
  * ``crop_border`` pixels are removed on every side before anything else;
  * ``y_channel=True`` compares the BT.601 luma (MATLAB ``rgb2ycbcr``, Y in [16, 235], not
    rounded, see ``faceprior.metrics.color.rgb_to_y``), otherwise all three channels;
  * PSNR: one MSE over all pixels and channels, in float64, peak 255; identical images -> inf;
  * SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), 'valid' filtering (no
    padding), C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, mean of the SSIM map per channel and
    then the mean over channels.

Images: [H, W, 3] RGB or [H, W] grey, uint8 in [0, 255] or float in [0, 1] (see
``faceprior.metrics.color``); the batched ``psnr_torch`` / ``ssim_torch`` take [N, 3, H, W] or
[N, 1, H, W] tensors with the same value conventions and give the same numbers per image.
Channel order does not change PSNR / SSIM on all channels; for the luma the input must be RGB
(basicsr reads BGR with cv2 and converts accordingly).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from faceprior.metrics.color import ImageInputError, check_image, rgb_to_y, rgb_to_y_torch, to_float255

SSIM_WINDOW_SIZE = 11
SSIM_WINDOW_SIGMA = 1.5
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2


def _prepare_pair(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check, crop and convert both images to float64 [C, H, W] arrays on the 0..255 scale."""
    img = check_image(img, "img")
    ref = check_image(ref, "ref")
    if img.shape != ref.shape:
        raise ImageInputError(f"img and ref: shapes differ, {img.shape} vs {ref.shape}")
    if crop_border < 0:
        raise ImageInputError(f"crop_border: must be >= 0, got {crop_border}")
    if crop_border > 0:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[crop_border:-crop_border, crop_border:-crop_border]
    out = []
    for x in (img, ref):
        if y_channel:
            x = rgb_to_y(x).astype(np.float64)
        else:
            x = to_float255(x)
        x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
        out.append(np.ascontiguousarray(x))
    return out[0], out[1]


def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (peak 255), as basicsr ``calculate_psnr``.

    Args:
        img, ref: [H, W, 3] RGB or [H, W] grey images of the same shape; uint8 in [0, 255] or
            float in [0, 1].
        crop_border: pixels removed on each side before the comparison.
        y_channel: compare the BT.601 luma instead of the RGB channels.
    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    x, y = _prepare_pair(img, ref, crop_border, y_channel)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def gaussian_kernel_1d(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_WINDOW_SIGMA) -> np.ndarray:
    """[size] float64 Gaussian taps summing to 1 (OpenCV ``getGaussianKernel`` for sigma > 0)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _filter_valid(x, taps: list[float]):
    """Separable 'valid' correlation of a [..., H, W] numpy array or torch tensor with ``taps``
    along H and W -> [..., H-k+1, W-k+1] (shifted sums: fast for float64 in numpy and torch)."""
    k = len(taps)
    h, w = x.shape[-2:]
    rows = taps[0] * x[..., 0 : h - k + 1, :]
    for i in range(1, k):
        rows = rows + taps[i] * x[..., i : h - k + 1 + i, :]
    out = taps[0] * rows[..., 0 : w - k + 1]
    for i in range(1, k):
        out = out + taps[i] * rows[..., i : w - k + 1 + i]
    return out


def _ssim_map(x, y):
    """SSIM map of two float64 [..., H, W] numpy arrays or torch tensors on the 0..255 scale,
    'valid' part only -> [..., H-10, W-10]."""
    taps = [float(t) for t in gaussian_kernel_1d()]
    mu_x = _filter_valid(x, taps)
    mu_y = _filter_valid(y, taps)
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    mu_xy = mu_x * mu_y
    var_x = _filter_valid(x * x, taps) - mu_xx
    var_y = _filter_valid(y * y, taps) - mu_yy
    cov_xy = _filter_valid(x * y, taps) - mu_xy
    return ((2.0 * mu_xy + SSIM_C1) * (2.0 * cov_xy + SSIM_C2)) / (
        (mu_xx + mu_yy + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )


def ssim_per_channel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean SSIM of each channel of two float64 [C, H, W] arrays on the 0..255 scale -> [C]."""
    return _ssim_map(x, y).mean(axis=(-2, -1))


def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity, as basicsr ``calculate_ssim`` (and the authors' MATLAB ssim.m).

    Args:
        img, ref: [H, W, 3] RGB or [H, W] grey images of the same shape; uint8 in [0, 255] or
            float in [0, 1]. At least 11x11 pixels after cropping.
        crop_border: pixels removed on each side before the comparison.
        y_channel: compare the BT.601 luma instead of the RGB channels.
    Returns:
        SSIM, the mean over channels of each channel's mean SSIM map; 1.0 for identical images.
    """
    x, y = _prepare_pair(img, ref, crop_border, y_channel)
    if min(x.shape[-2:]) < SSIM_WINDOW_SIZE:
        raise ImageInputError(
            f"img: SSIM needs at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels after cropping, got {x.shape[-2:]}"
        )
    return float(ssim_per_channel(x, y).mean())


# --------------------------------------------------------------------------- batched torch versions


def _prepare_pair_torch(
    img: torch.Tensor, ref: torch.Tensor, crop_border: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check, crop and convert both batches to float64 [N, C, H, W] on the 0..255 scale."""
    if img.shape != ref.shape:
        raise ImageInputError(f"img and ref: shapes differ, {tuple(img.shape)} vs {tuple(ref.shape)}")
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ImageInputError(f"img: expected [N, 3, H, W] or [N, 1, H, W], got {tuple(img.shape)}")
    if crop_border < 0:
        raise ImageInputError(f"crop_border: must be >= 0, got {crop_border}")
    if crop_border > 0:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[..., crop_border:-crop_border, crop_border:-crop_border]
    out = []
    for x in (img, ref):
        if y_channel and x.shape[1] == 3:
            x = rgb_to_y_torch(x).to(torch.float64)
        elif x.dtype == torch.uint8:
            x = x.to(torch.float64)
        elif x.is_floating_point():
            x = x.to(torch.float64) * 255.0
        else:
            raise ImageInputError(f"img: expected uint8 (0..255) or float (0..1) values, got dtype {x.dtype}")
        out.append(x)
    return out[0], out[1]


def psnr_torch(img: torch.Tensor, ref: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Batched ``psnr``: [N, 3 or 1, H, W] uint8 in [0, 255] or float in [0, 1] -> [N] float64 dB
    (``inf`` where the images are identical)."""
    x, y = _prepare_pair_torch(img, ref, crop_border, y_channel)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0 * 255.0 / mse)


def ssim_torch(img: torch.Tensor, ref: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Batched ``ssim``: [N, 3 or 1, H, W] uint8 in [0, 255] or float in [0, 1] -> [N] float64."""
    x, y = _prepare_pair_torch(img, ref, crop_border, y_channel)
    h, w = x.shape[-2:]
    if min(h, w) < SSIM_WINDOW_SIZE:
        raise ImageInputError(
            f"img: SSIM needs at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels after cropping, got {(h, w)}"
        )
    return _ssim_map(x, y).mean(dim=(2, 3)).mean(dim=1)
