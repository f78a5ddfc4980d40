"""Toned monochrome photos: sepia, selenium, cyanotype prints and tinted black-and-white scans.

In such a photo the colour is a function of the brightness alone: every pixel of a given luma has
the same tint. :func:`photo_tone` recognises that and measures the tint at each brightness (a
:class:`Tone`); :meth:`Tone.apply` gives any RGB pixels that tint, keeping their luma. A face
restoration model trained on colour faces paints pink skin into a sepia print; the restorer
passes its faces through the photo's tone instead (black-and-white photos, whose tint is zero,
are handled by ``looks_gray`` / ``gray_as_rgb``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from faceprior.imaging.pixels import dtype_max, from_float01, rgb_to_gray, to_float01

__all__ = ["Tone", "photo_tone"]

#: block means :func:`photo_tone` looks at, at most
MAX_SAMPLES = 250_000

@dataclass(frozen=True)
class Tone:
    """The tint of a toned photo at each brightness.

    luma: [K] increasing luma values in [0, 1] (the knots); offsets: [K, 3] RGB minus luma of the
    photo's pixels at those brightnesses (between knots linear, beyond them constant).
    """

    luma: np.ndarray
    offsets: np.ndarray

    def tint(self, luma: np.ndarray) -> np.ndarray:
        """[...] luma in [0, 1] -> [..., 3] float32 RGB offsets."""
        return np.stack([np.interp(luma, self.luma, self.offsets[:, c]) for c in range(3)], axis=-1).astype(np.float32)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """[..., 3] RGB float32 in [0, 1] -> the same luma with the photo's tint, clipped to [0, 1]."""
        luma = rgb_to_gray(np.asarray(pixels, np.float32))
        return np.clip(luma[..., None] + self.tint(luma), 0.0, 1.0)

    def apply_change(self, changed: np.ndarray, original: np.ndarray) -> np.ndarray:
        """``original`` plus the toned change to ``changed``: ``original + apply(changed) - apply(original)``.

        changed, original: [..., 3] RGB of one dtype (uint8, uint16 or float in [0, 1]). Where
        ``changed`` equals ``original`` the result is ``original`` exactly, whatever the tone fit
        leaves out. Returns the dtype of ``original``.
        """
        source = to_float01(original)
        toned = source + self.apply(to_float01(changed)) - self.apply(source)
        return from_float01(np.clip(toned, 0.0, 1.0), np.asarray(original).dtype)


def photo_tone(pixels: np.ndarray, tolerance: float = 8 / 255, max_fraction: float = 0.01,
               min_tint: float = 3 / 255, bins: int = 32) -> Optional[Tone]:
    """The tone of a toned monochrome photo, or None for a colour (or plain grey) photo.

    pixels: [H, W, 3] RGB, uint8, uint16 or float in [0, 1]; looked at as the means of 4 x 4 blocks,
        one every 4th row and column (or further apart: at most about ``MAX_SAMPLES`` blocks).
    The photo is toned when, after taking off the mean tint of its brightness (``bins`` luma
    bins), at most ``max_fraction`` of the pixels have channels further apart than ``tolerance``
    (the test of ``looks_gray``, with the tint taken off and on block means: JPEG chroma noise and
    colour noise pass, a second hue does not), and its tint reaches ``min_tint`` somewhere (else it
    is grey).
    """
    pixels = np.asarray(pixels)[:, :, :3]
    step = max(4, math.ceil(math.sqrt(pixels.shape[0] * pixels.shape[1] / MAX_SAMPLES)))
    rows, cols = pixels.shape[0] // step, pixels.shape[1] // step
    # Means of 4 x 4 blocks, one every ``step`` pixels: colour noise (a print photographed or
    # scanned) averages out, a second hue does not, and a tint linear in luma keeps block means on
    # the tone curve.
    blocks = pixels[:rows * step, :cols * step].reshape(rows, step, cols, step, 3)[:, :4, :, :4]
    sample = blocks.mean(axis=(1, 3), dtype=np.float32).reshape(-1, 3) / np.float32(dtype_max(pixels.dtype))
    if len(sample) < 64:
        return None
    luma = rgb_to_gray(sample)
    chroma = sample - luma[:, None]
    index = np.minimum((luma * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    filled = counts >= max(8, len(sample) // 2000)  # a bin of a few stray pixels is not a tint
    if filled.sum() < 2:
        return None
    knots = (np.bincount(index, weights=luma, minlength=bins)[filled] / counts[filled]).astype(np.float32)
    offsets = np.stack([np.bincount(index, weights=chroma[:, c], minlength=bins)[filled] / counts[filled]
                        for c in range(3)], axis=-1).astype(np.float32)
    tone = Tone(knots, offsets)
    residual = chroma - tone.tint(luma)
    spread = residual.max(axis=-1) - residual.min(axis=-1)
    if np.mean(spread > tolerance) > max_fraction:
        return None
    tint = offsets.max(axis=-1) - offsets.min(axis=-1)
    return tone if float(tint.max()) >= min_tint else None
