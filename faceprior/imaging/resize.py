"""Resizing images: Lanczos-3 (antialiased when shrinking), bilinear and bicubic.

Every resize here follows the pixel-centre convention of ``faceprior.face.align.scale_affine``:
the source pixel centre x lands at ``scale * x + (scale - 1) / 2`` in the output, whose size is
``round(H * scale) x round(W * scale)``.

- :func:`upscale_lanczos` / :func:`resize_lanczos_to`: Lanczos-3 on numpy images of any pixel
  type (background upsampling, evaluation baselines, comparison sheets).
- :func:`resize_bilinear` / :func:`resize_bilinear_to`: bilinear without antialiasing, as
  ``cv2.resize(INTER_LINEAR)`` (the degradation model's down- and up-sampling).
- :func:`resize_bicubic`: bicubic with antialiasing (bringing ground-truth faces to a size).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from faceprior.imaging.pixels import dtype_max, from_float01, to_float01

__all__ = [
    "LANCZOS_LOBES",
    "lanczos_taps",
    "resize_bicubic",
    "resize_bilinear",
    "resize_bilinear_to",
    "resize_lanczos",
    "resize_lanczos_to",
    "upscale_lanczos",
    "upscaled_size",
]

LANCZOS_LOBES = 3


def upscaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """(round(H * scale), round(W * scale)), at least 1 each."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _lanczos_kernel(centres: torch.Tensor, scale: float, lobes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Unclipped Lanczos taps for sample ``centres`` [n] (input pixel coordinates).

    Returns (first tap position [n] int64, weights [n, K] float64); the kernel is widened by
    1 / scale when shrinking (antialiasing)."""
    stretch = max(1.0, 1.0 / scale)
    support = lobes * stretch
    taps = int(math.ceil(2 * support)) + 1
    first = torch.floor(centres - support) + 1
    t = (first[:, None] + torch.arange(taps, dtype=torch.float64) - centres[:, None]) / stretch
    weights = torch.sinc(t) * torch.sinc(t / lobes) * (t.abs() < lobes)
    return first.long(), weights


def lanczos_taps(in_size: int, out_size: int, scale: float, lobes: int = LANCZOS_LOBES
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """1-D Lanczos resampling from ``in_size`` to ``out_size`` samples, output sample i centred
    on input position (i + 0.5) / scale - 0.5. The kernel is widened by 1 / scale when
    shrinking; taps outside the input are dropped and each row renormalised (as Pillow does).

    Returns (indices [out_size, K] int64 into the input, weights [out_size, K] float64 summing
    to 1 per row).
    """
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) / scale - 0.5
    first, weights = _lanczos_kernel(centres, scale, lobes)
    positions = first[:, None] + torch.arange(weights.shape[1])
    weights = weights * ((positions >= 0) & (positions < in_size))
    empty = weights.sum(dim=1) <= 1e-12  # only when shrinking a lot: take the nearest pixel
    if empty.any():
        weights[empty] = 0.0
        weights[empty, 0] = 1.0
        positions[empty, 0] = torch.round(centres[empty]).long()
    weights = weights / weights.sum(dim=1, keepdim=True)
    return positions.clamp(0, in_size - 1), weights


def _axis_slice(ndim: int, dim: int, index: slice) -> Tuple[slice, ...]:
    key = [slice(None)] * ndim
    key[dim] = index
    return tuple(key)


def _resample_axis(x: torch.Tensor, dim: int, out_size: int, scale: float,
                   lobes: int = LANCZOS_LOBES) -> torch.Tensor:
    """Lanczos resampling of float tensor ``x`` along ``dim`` to ``out_size`` samples.

    When scale = q / p with q <= 16 (2, 3, 4, 1.5, 0.5 ...), output samples q * j + r use the
    same weights for every j (phase r), so away from the edges each phase is a few strided
    multiply-adds over the whole array; edge samples (and other scales) gather their taps.
    """
    length = x.shape[dim]
    ndim = x.dim()
    indices, weights = lanczos_taps(length, out_size, scale, lobes)
    shape = list(x.shape)
    shape[dim] = out_size
    out = torch.empty(shape, dtype=x.dtype)
    done = torch.zeros(out_size, dtype=torch.bool)
    fraction = Fraction(scale).limit_denominator(16)
    if abs(float(fraction) - scale) < 1e-12 * scale and fraction.numerator <= 16:
        q, p = fraction.numerator, fraction.denominator
        centres = (torch.arange(q, dtype=torch.float64) + 0.5) * p / q - 0.5
        firsts, phase_weights = _lanczos_kernel(centres, scale, lobes)
        phase_weights = phase_weights / phase_weights.sum(dim=1, keepdim=True)
        taps = phase_weights.shape[1]
        for r in range(q):
            first = int(firsts[r])
            j_start = max(0, -(first // p))  # all taps inside the input from here ...
            j_stop = min((length - taps - first) // p + 1, (out_size - 1 - r) // q + 1)  # ... to here
            if j_stop <= j_start:
                continue
            count = j_stop - j_start
            acc = None
            for k, w in enumerate(phase_weights[r].tolist()):
                if w == 0.0:
                    continue
                start = p * j_start + first + k
                taps_k = x[_axis_slice(ndim, dim, slice(start, start + p * (count - 1) + 1, p))]
                acc = taps_k * w if acc is None else acc.add_(taps_k, alpha=w)
            phase = slice(q * j_start + r, q * (j_stop - 1) + r + 1, q)
            out[_axis_slice(ndim, dim, phase)] = acc
            done[phase] = True
    rest = torch.nonzero(~done)[:, 0]
    if len(rest):
        weight_shape = [1] * ndim
        weight_shape[dim] = len(rest)
        acc = None
        for k in range(indices.shape[1]):
            term = x.index_select(dim, indices[rest, k]) * weights[rest, k].to(x.dtype).view(weight_shape)
            acc = term if acc is None else acc.add_(term)
        out.index_copy_(dim, rest, acc)
    return out


def resize_lanczos(image: np.ndarray, out_h: int, out_w: int, scale: float) -> np.ndarray:
    """Lanczos-3 resize of image [H, W(, C)] to [out_h, out_w(, C)] with sample centres placed
    by ``scale`` (see ``lanczos_taps``); same dtype out (integers rounded, values clipped to
    their range). One channel at a time, in float32."""
    planes = image[:, :, None] if image.ndim == 2 else image
    full = dtype_max(image.dtype)
    out = np.empty((out_h, out_w, planes.shape[2]), dtype=image.dtype)
    out_t = torch.from_numpy(out)
    for channel in range(planes.shape[2]):
        x = torch.empty(planes.shape[:2], dtype=torch.float32)
        x.copy_(torch.from_numpy(planes[:, :, channel]))
        if full != 1.0:
            x.div_(full)
        x = _resample_axis(_resample_axis(x, 0, out_h, scale), 1, out_w, scale)
        x = x.clamp_(0.0, 1.0)
        if full != 1.0:
            x = x.mul_(full).round_()
        out_t[:, :, channel].copy_(x)
    return out[:, :, 0] if image.ndim == 2 else out


def upscale_lanczos(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` (> 0; meant for >= 1) with a Lanczos-3 filter.

    image: [H, W] (e.g. an alpha plane) or [H, W, C]; uint8, uint16 or float in [0, 1].
    Returns [round(H * scale), round(W * scale)(, C)] of the same dtype: integers rounded and
    clipped to their range, floats clipped to [0, 1] (Lanczos overshoots slightly at edges).
    Computed in float32 with torch, a band of rows at a time to bound memory.
    """
    image = np.asarray(image)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"expected an image [H, W] or [H, W, C], got shape {image.shape}")
    dtype_max(image.dtype)  # refuses unsupported dtypes
    if scale == 1.0:
        return image.copy()
    out_h, out_w = upscaled_size(image.shape[0], image.shape[1], scale)
    return resize_lanczos(image, out_h, out_w, scale)


def resize_lanczos_to(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Lanczos-3 resize of [H, W(, C)] to ``size`` = (height, width) with the same aspect ratio
    (``upscale_lanczos``; antialiased when shrinking); same dtype. ValueError if the aspect
    ratios differ."""
    if image.shape[:2] == tuple(size):
        return image
    scale = size[0] / image.shape[0]
    if round(image.shape[1] * scale) != size[1]:
        raise ValueError(f"cannot resize a {image.shape[1]}x{image.shape[0]} image to {size[1]}x{size[0]}: "
                         "aspect ratios differ")
    return upscale_lanczos(image, scale)


def resize_bilinear(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """images [N, C, H, W] -> [N, C, height, width]: bilinear, half-pixel centres, no
    antialiasing (cv2.resize INTER_LINEAR, which computes float images in float)."""
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=False)


def resize_bilinear_to(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """:func:`resize_bilinear` of a numpy [H, W, 3] image to ``size`` = (height, width); same
    dtype (integers rounded)."""
    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(to_float01(image, np.float32)).permute(2, 0, 1)[None]
    y = resize_bilinear(x, size[0], size[1]).clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
    return from_float01(y, image.dtype)


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float32 [H, W, 3] image in [0, 1]: bicubic with antialiasing when shrinking,
    clipped to [0, 1]. Returns float32 [height, width, 3]."""
    if image.shape[:2] == (height, width):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return resized[0].clamp(0.0, 1.0).permute(1, 2, 0).contiguous().numpy()
