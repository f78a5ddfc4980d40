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

from faceprior.image_io import dtype_max, from_float01, to_float01
from faceprior.models.rrdbnet import padding_multiple, upsample_tiled
from faceprior.weights.loading import load_model

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
        seen with tile_pad pixels of context, to bound memory on large photos
        (``faceprior.models.rrdbnet.upsample_tiled`` does the tiling).
    pad_multiple: inputs are reflect-padded to a multiple of this; default ``model.unshuffle``
        (RRDBNet: 2 for x2, whose pixel-unshuffle needs even sizes; 4 for x1), else 1.
    dtype: torch dtype to run the network in (e.g. torch.float16 on GPU); default the model's.
    """

    def __init__(self, model: torch.nn.Module, model_scale: int, tile_size: int = 400,
                 tile_pad: int = 10, pad_multiple: Optional[int] = None, dtype: Optional[torch.dtype] = None):
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = dtype or (parameter.dtype if parameter is not None else torch.float32)
        self.model = model.eval().to(self.dtype)
        self.model_scale = int(model_scale)
        self.tile_size = int(tile_size)
        self.tile_pad = int(tile_pad)
        self.pad_multiple = grid = padding_multiple(model, pad_multiple)
        if self.tile_size < 0 or self.tile_pad < 0 or self.tile_size % grid or self.tile_pad % grid:
            raise ValueError(f"tile size and tile padding must be multiples of {grid} and >= 0, "
                             f"got {self.tile_size} and {self.tile_pad}")

    @torch.no_grad()
    def upsample_native(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8/uint16/float[0, 1] -> [H * model_scale, W * model_scale, 3] float32 in [0, 1]."""
        x = torch.from_numpy(to_float01(np.asarray(image))).permute(2, 0, 1)[None].to(self.device, self.dtype)
        out = upsample_tiled(self.model, x, tile=self.tile_size, tile_pad=self.tile_pad,
                             scale=self.model_scale, pad_multiple=self.pad_multiple)
        return out[0].float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()

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


# Real-ESRGAN x2 (BSD-3-Clause), the background upsampler of the official GFP-GAN command line.
REALESRGAN_X2PLUS_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth"
REALESRGAN_X2PLUS_KWARGS = dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=64, num_block=23, num_grow_ch=32)
DEFAULT_TILE = 400
DEFAULT_TILE_PAD = 10


def make_realesrgan_upsampler(device: str | torch.device = "cpu", tile: int = DEFAULT_TILE,
                              tile_pad: int = DEFAULT_TILE_PAD, half: Optional[bool] = None,
                              cache_dir: Optional[str] = None) -> NetworkUpsampler:
    """Real-ESRGAN x2 (RRDBNet, 23 blocks) with ``RealESRGAN_x2plus.pth`` (``params_ema``, else
    ``params``) from the weight cache or downloaded, set up as the official GFP-GAN command line
    does: tiles of ``tile`` pixels (0: whole image) with ``tile_pad`` pixels of context, no pre-pad,
    float16 on CUDA (``half=None``: float16 exactly when ``device`` is a CUDA device).
    Factors other than 2 resize the x2 output with Lanczos.
    """
    device = torch.device(device)
    half = device.type == "cuda" if half is None else half
    model = load_model(REALESRGAN_X2PLUS_URL, arch="RRDBNet", device=device, cache_dir=cache_dir,
                       **REALESRGAN_X2PLUS_KWARGS)
    return NetworkUpsampler(model, model_scale=2, tile_size=tile, tile_pad=tile_pad,
                            dtype=torch.float16 if half else torch.float32)
