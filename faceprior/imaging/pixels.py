"""Pixel arrays: the conventions every faceprior module uses, and conversions between them.

- colour images are numpy arrays [H, W, 3] in RGB order; transparency is a separate [H, W] plane;
- integer images are uint8 (0..255) or uint16 (0..65535); float images are float32 in [0, 1].

``to_rgb_array`` turns anything image-like (numpy arrays of any of these types, grey or with
alpha, and PIL images) into that form; ``to_float01`` / ``from_float01`` convert between integer
and float pixels; ``looks_gray`` / ``gray_as_rgb`` handle black-and-white content.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from PIL import Image

__all__ = [
    "convert_bit_depth",
    "dtype_max",
    "from_float01",
    "gray_as_rgb",
    "looks_gray",
    "pil_to_arrays",
    "rgb_to_gray",
    "to_float01",
    "to_rgb_array",
    "to_uint8",
]

_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's RGB -> L


def dtype_max(dtype: Any) -> float:
    """The value of "full white" for an image dtype: 255 (uint8), 65535 (uint16), 1.0 (float)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise TypeError(f"unsupported image dtype {dtype} (expected uint8, uint16 or float)")


def to_float01(array: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """uint8 / uint16 / float image (any shape) -> float array in [0, 1] (float input is cast)."""
    scale = dtype_max(array.dtype)
    out = np.asarray(array, dtype=dtype)
    if scale != 1.0:
        out = out / np.asarray(scale, dtype=dtype)
    return out


def from_float01(array: np.ndarray, dtype: Any) -> np.ndarray:
    """Float array with values in [0, 1] (any shape) -> ``dtype`` image: clipped, and for
    integer dtypes scaled to 0..255 / 0..65535 and rounded to nearest."""
    dtype = np.dtype(dtype)
    scale = dtype_max(dtype)
    if dtype.kind == "f":
        return np.clip(array, 0.0, 1.0).astype(dtype, copy=False)
    return np.rint(np.clip(array, 0.0, 1.0) * scale).astype(dtype)


def convert_bit_depth(array: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8 / uint16 / float[0, 1] image -> uint8 (bit_depth 8) or uint16 (bit_depth 16).

    uint8 -> uint16 multiplies by 257 (255 -> 65535); uint16 -> uint8 rounds v / 257.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    target = np.uint8 if bit_depth == 8 else np.uint16
    if array.dtype == target:
        return array
    if array.dtype == np.uint8:  # -> uint16
        return array.astype(np.uint16) * np.uint16(257)
    if array.dtype == np.uint16:  # -> uint8
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return from_float01(array, target)


def to_uint8(array: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """uint8 / uint16 / float[0, 1] image [H, ...] -> uint8, as :func:`convert_bit_depth` (uint8 is
    returned as it is), converted ``band_rows`` rows at a time so that a large photo never has a
    full-size wider copy (a 25 Mpx RGB float copy is 300 MB)."""
    if array.dtype == np.uint8:
        return array
    out = np.empty(array.shape, dtype=np.uint8)
    for top in range(0, array.shape[0], band_rows):
        out[top:top + band_rows] = convert_bit_depth(array[top:top + band_rows], 8)
    return out


def _validated_float(array: np.ndarray) -> np.ndarray:
    """Float image -> float32 clipped to [0, 1]; refuses NaN/inf and values clearly off-range."""
    array = np.asarray(array, dtype=np.float32)
    if array.size == 0:
        return array
    if not np.isfinite(array).all():
        raise ValueError("float image contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < -0.01 or hi > 1.01:
        raise ValueError(f"float images must hold values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return np.clip(array, 0.0, 1.0)


def to_rgb_array(image: Any) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """An in-memory image -> (pixels [H, W, 3], alpha [H, W] or None).

    Accepts numpy arrays [H, W] (grey), [H, W, 1], [H, W, 2] (grey + alpha), [H, W, 3] (RGB) or
    [H, W, 4] (RGBA) of dtype uint8, uint16, bool or float (values in [0, 1]; other float widths
    become float32), and PIL images of any mode (converted like ``read_image`` does, 8 bits
    except for 16-bit grey). Integer outputs keep their dtype (uint8 / uint16); float outputs
    are float32 in [0, 1]. The returned arrays may share memory with the input.
    """
    if isinstance(image, Image.Image):
        pixels, alpha, _, _ = pil_to_arrays(image)
        return pixels, alpha
    array = np.asarray(image)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype.kind == "f":
        array = _validated_float(array)
    elif array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported image dtype {array.dtype} (expected uint8, uint16 or float in [0, 1])")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape[:2]:
        raise ValueError(f"expected an image array [H, W], [H, W, 1|2|3|4], got shape {tuple(np.shape(image))}")
    channels = array.shape[2]
    alpha = array[:, :, channels - 1] if channels in (2, 4) else None
    colour = array[:, :, : 3 if channels >= 3 else 1]
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return colour, alpha


def rgb_to_gray(pixels: np.ndarray) -> np.ndarray:
    """[..., 3] RGB -> [...] grey (BT.601 luma), same dtype (integers rounded)."""
    gray = pixels.astype(np.float64) @ _LUMA_WEIGHTS
    if pixels.dtype.kind == "f":
        return gray.astype(pixels.dtype)
    return np.clip(np.rint(gray), 0, dtype_max(pixels.dtype)).astype(pixels.dtype)


def looks_gray(pixels: np.ndarray, tolerance: float = 8 / 255, max_fraction: float = 0.01) -> bool:
    """Whether an [H, W, 3] RGB image is grey in content (e.g. a black-and-white scan stored as RGB).

    True when at most ``max_fraction`` of the pixels (every 4th row and column looked at) have
    channels further apart than ``tolerance`` of the full range: JPEG chroma noise passes, any real
    colour does not.
    """
    sample = to_float01(np.ascontiguousarray(pixels[::4, ::4]))
    spread = sample.max(axis=-1) - sample.min(axis=-1)
    return bool(np.mean(spread > tolerance) <= max_fraction)


def gray_as_rgb(pixels: np.ndarray) -> np.ndarray:
    """[..., 3] RGB -> [..., 3] with the BT.601 luma in all three channels, same dtype."""
    return np.repeat(rgb_to_gray(pixels)[..., None], 3, axis=-1)




def pil_to_arrays(im: Image.Image) -> Tuple[np.ndarray, Optional[np.ndarray], int, bool]:
    """A loaded PIL image -> (pixels [H, W, 3], alpha [H, W] or None, bit_depth, was_gray)."""
    mode = im.mode
    has_transparency = "transparency" in im.info
    if mode == "1" or (mode == "L" and not has_transparency):
        gray = np.asarray(im.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2), None, 8, True
    if mode in ("LA", "La", "L"):
        la = np.asarray(im.convert("LA"))
        return np.repeat(la[:, :, :1], 3, axis=2), np.ascontiguousarray(la[:, :, 1]), 8, True
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im)
        if mode == "F":  # float samples, taken as [0, 1]
            values = np.rint(np.clip(np.nan_to_num(values), 0.0, 1.0) * 65535.0)
        gray = np.clip(values, 0, 65535).astype(np.uint16)
        return np.repeat(gray[:, :, None], 3, axis=2), None, 16, True
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if (has_transparency or mode == "PA") else "RGB")
    elif mode == "RGB" and has_transparency:
        im = im.convert("RGBA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode != "RGBA" and mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX
        im = im.convert("RGB")
    array = np.array(im)  # a writable copy (np.asarray of a PIL image is read-only)
    if im.mode == "RGBA":
        return np.ascontiguousarray(array[:, :, :3]), np.ascontiguousarray(array[:, :, 3]), 8, False
    return array, None, 8, False
