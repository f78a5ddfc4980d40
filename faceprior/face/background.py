"""Background upsampling: Lanczos resizing in torch, and a pluggable upsampler interface.

The whole photo is upsampled by the output scale before the restored faces are pasted back
(faceprior.face.paste). Every upsampler here follows the pixel-centre convention of
``faceprior.face.align.scale_affine``: the source pixel centre x lands at ``scale * x +
(scale - 1) / 2`` in the output, whose size is ``round(H * scale) x round(W * scale)``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Protocol, Tuple, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from faceprior.image_io import dtype_max, from_float01, to_float01

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


def _lanczos_resize(image: np.ndarray, out_h: int, out_w: int, scale: float) -> np.ndarray:
    """Lanczos resize of image [H, W(, C)] to [out_h, out_w(, C)] with sample centres placed
    by ``scale`` (see ``lanczos_taps``); same dtype out. One channel at a time, in float32."""
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
    return _lanczos_resize(image, out_h, out_w, scale)


@runtime_checkable
class Upsampler(Protocol):
    """Anything that enlarges a whole photo: ``upsample(image, scale) -> image``.

    image: [H, W, 3] RGB, uint8, uint16 or float in [0, 1]. Returns [round(H * scale),
    round(W * scale), 3] of the same dtype, following the pixel-centre convention above.
    """

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        ...


class LanczosUpsampler:
    """The default background upsampler: Lanczos-3 resizing (``upscale_lanczos``)."""

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        return upscale_lanczos(image, scale)


class NetworkUpsampler:
    """A super-resolution network (e.g. Real-ESRGAN's RRDBNet x2) as an Upsampler.

    model: maps [1, 3, h, w] float RGB in [0, 1] to [1, 3, h * model_scale, w * model_scale].
    model_scale: the network's fixed factor. Other requested scales resize the network output
        with Lanczos (as Real-ESRGAN's ``outscale`` does).
    tile_size, tile_pad: run the network on tile_size x tile_size tiles (0: whole image) each
        seen with tile_pad pixels of context, to bound memory on large photos.
    pad_multiple: tile inputs are reflect-padded to a multiple of this (2 for RRDBNet x2,
        whose pixel-unshuffle needs even sizes; 4 for x1).
    dtype: torch dtype to run the network in (e.g. torch.float16 on GPU).
    """

    def __init__(self, model: torch.nn.Module, model_scale: int, tile_size: int = 400,
                 tile_pad: int = 10, pad_multiple: int = 1, dtype: Optional[torch.dtype] = None):
        self.model = model.eval()
        self.model_scale = int(model_scale)
        self.tile_size = int(tile_size)
        self.tile_pad = int(tile_pad)
        self.pad_multiple = int(pad_multiple)
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = dtype or (parameter.dtype if parameter is not None else torch.float32)

    @torch.no_grad()
    def _run(self, tile: torch.Tensor) -> torch.Tensor:
        """tile [1, 3, h, w] in [0, 1] -> [1, 3, h * s, w * s] float32 on the CPU."""
        height, width = tile.shape[2:]
        pad_h = -height % self.pad_multiple
        pad_w = -width % self.pad_multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            tile = F.pad(tile, (0, pad_w, 0, pad_h), mode=mode)
        out = self.model(tile.to(self.device, self.dtype)).float().cpu()
        s = self.model_scale
        return out[:, :, : height * s, : width * s]

    def upsample_native(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8/uint16/float[0, 1] -> [H * model_scale, W * model_scale, 3] float32 in [0, 1]."""
        x = torch.from_numpy(to_float01(np.asarray(image))).permute(2, 0, 1)[None]
        height, width = x.shape[2:]
        s = self.model_scale
        if self.tile_size <= 0 or (height <= self.tile_size and width <= self.tile_size):
            out = self._run(x)
        else:
            out = torch.empty(1, 3, height * s, width * s)
            for top in range(0, height, self.tile_size):
                for left in range(0, width, self.tile_size):
                    bottom, right = min(top + self.tile_size, height), min(left + self.tile_size, width)
                    top_p, left_p = max(top - self.tile_pad, 0), max(left - self.tile_pad, 0)
                    bottom_p = min(bottom + self.tile_pad, height)
                    right_p = min(right + self.tile_pad, width)
                    result = self._run(x[:, :, top_p:bottom_p, left_p:right_p])
                    out[:, :, top * s:bottom * s, left * s:right * s] = result[
                        :, :, (top - top_p) * s:(bottom - top_p) * s, (left - left_p) * s:(right - left_p) * s]
        return out[0].permute(1, 2, 0).clamp_(0, 1).numpy()

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            return upscale_lanczos(image, scale)
        native = self.upsample_native(image)
        height, width = image.shape[:2]
        out_h, out_w = upscaled_size(height, width, scale)
        if native.shape[:2] != (out_h, out_w):
            native = _lanczos_resize(native, out_h, out_w, scale / self.model_scale)
        return from_float01(native, image.dtype)

