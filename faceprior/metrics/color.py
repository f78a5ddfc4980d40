"""Input checks and luma conversions shared by the image metrics.

Image convention of every metric in ``faceprior.metrics``: a numpy array of shape [H, W, 3]
(RGB, channel last) or [H, W] (one grey channel), either
  * ``uint8`` with values in [0, 255], or
  * a floating dtype with values in [0, 1] (it is multiplied by 255 internally).

The luma conversions reproduce basicsr 1.4.2 bit for bit where basicsr works in float32
(``basicsr.metrics.metric_util.to_y_channel`` -> ``basicsr.utils.bgr2ycbcr(y_only=True)``),
because the quoted PSNR / SSIM / NIQE values depend on those roundings.
"""

from __future__ import annotations

import numpy as np
import torch

from faceprior.errors import FacepriorError

# ITU-R BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B)
# for R, G, B in [0, 1]; Y in [16, 235].
BT601_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)
BT601_Y_OFFSET = 16.0

# MATLAB's rgb2gray weights (R, G, B), used by the original NIQE release when fitting its model.
MATLAB_GRAY_WEIGHTS_RGB = (0.298936021293775, 0.587043074451121, 0.114020904255103)


class ImageInputError(FacepriorError, ValueError):
    """An image given to a metric has the wrong shape, dtype or size."""


def check_image(img: np.ndarray, name: str = "img") -> np.ndarray:
    """Return ``img`` as an array after checking it is [H, W] or [H, W, 3], uint8 or float.

    Raises ImageInputError with a one-line reason otherwise.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ImageInputError(f"{name}: expected an [H, W, 3] RGB or [H, W] grey image, got shape {img.shape}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ImageInputError(f"{name}: expected uint8 (0..255) or float (0..1) values, got dtype {img.dtype}")
    return img


def to_float255(img: np.ndarray) -> np.ndarray:
    """Image (uint8 in [0, 255] or float in [0, 1]) -> float64 array in [0, 255], same shape."""
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    return img.astype(np.float64) * 255.0


def to_float01_float32(img: np.ndarray) -> np.ndarray:
    """Image (uint8 or float in [0, 1]) -> float32 in [0, 1], same shape.

    For uint8 this is ``float32(u) / 255`` in float32, exactly what basicsr does before its colour
    conversions (float32 division is correctly rounded, so float input u / 255 gives the same).
    """
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return img.astype(np.float32)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image, as basicsr's ``to_y_channel`` computes it.

    Args:
        img: [H, W, 3] RGB, uint8 in [0, 255] or float in [0, 1]. A [H, W] grey image is
            returned as float32 in [0, 255] unchanged.
    Returns:
        [H, W] float32 luma in [16, 235] (scale of 0..255), not rounded.

    The float32 steps match basicsr: RGB / 255 in float32; the weighted sum and the offset in
    float64; divided by 255 and stored as float32; multiplied by 255 in float32.
    """
    img = check_image(img)
    rgb01 = to_float01_float32(img)
    if img.ndim == 2:
        return rgb01 * np.float32(255.0)
    r = rgb01[..., 0].astype(np.float64)
    g = rgb01[..., 1].astype(np.float64)
    b = rgb01[..., 2].astype(np.float64)
    w_r, w_g, w_b = BT601_Y_WEIGHTS_RGB
    # basicsr sums in BGR order: B * 24.966 + G * 128.553 + R * 65.481.
    y = b * w_b + g * w_g + r * w_r + BT601_Y_OFFSET
    y01 = (y / 255.0).astype(np.float32)
    return y01 * np.float32(255.0)


def rgb_to_gray_matlab(img: np.ndarray) -> np.ndarray:
    """Grey image as MATLAB's ``rgb2gray`` gives it, on the 0..255 scale.

    Args:
        img: [H, W, 3] RGB, uint8 in [0, 255] or float in [0, 1]; a [H, W] image passes through.
    Returns:
        [H, W] float64 in [0, 255]; rounded to integers for uint8 input (MATLAB returns uint8).
    """
    img = check_image(img)
    img255 = to_float255(img)
    if img.ndim == 2:
        return img255
    w_r, w_g, w_b = MATLAB_GRAY_WEIGHTS_RGB
    gray = img255[..., 0] * w_r + img255[..., 1] * w_g + img255[..., 2] * w_b
    if img.dtype == np.uint8:
        gray = np.floor(gray + 0.5)  # MATLAB rounds halves away from zero; values are >= 0
    return gray


def rgb_to_y_torch(img: torch.Tensor) -> torch.Tensor:
    """Batched ``rgb_to_y``: [N, 3, H, W] RGB (uint8 in [0, 255] or float in [0, 1]) ->
    [N, 1, H, W] float32 BT.601 luma in [16, 235], with the same float32 / float64 steps."""
    if img.dtype == torch.uint8:
        rgb01 = img.to(torch.float32) / 255.0
    else:
        rgb01 = img.to(torch.float32)
    r, g, b = (rgb01[:, i : i + 1].to(torch.float64) for i in range(3))
    w_r, w_g, w_b = BT601_Y_WEIGHTS_RGB
    y = b * w_b + g * w_g + r * w_r + BT601_Y_OFFSET
    return (y / 255.0).to(torch.float32) * 255.0
