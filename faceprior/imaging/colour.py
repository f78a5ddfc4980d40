"""Affine colour maps: the colour change a restoration made to faces, carried over to their photo.

A face model trained on the paper's degradations takes colour casts, faded contrast and wrong
brightness off the faces it restores; the photo around them keeps them, so a restored face sits
in a photo of other colours. :func:`fit_colour_map` measures the faces' change as one affine map
of RGB (``out = M @ [r, g, b, 1]``: gains, offsets, and the mixing of channels that saturation and
hue changes are), least squares over the faces' pixels, pulled towards the identity so that
directions the faces' few colours do not pin down stay as they are; :func:`apply_colour_map`
gives it to every pixel of the photo.
"""

from __future__ import annotations

import numpy as np

from faceprior.imaging.pixels import from_float01, to_float01

__all__ = ["IDENTITY_COLOUR_MAP", "apply_colour_map", "fit_colour_map", "keep_greys"]

#: [3, 4]: changes nothing
IDENTITY_COLOUR_MAP = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)


def fit_colour_map(sources: np.ndarray, targets: np.ndarray, weights: np.ndarray, ridge: float = 0.05) -> np.ndarray:
    """The [3, 4] affine map M minimising ``sum w |M [s, 1] - t|^2 + ridge |M - I|^2``.

    sources, targets: [P, 3] pixels in [0, 1] (float); weights: [P] >= 0, summing to 1 (so that
    ``ridge`` does not depend on the number of pixels). Returns float64 [3, 4].
    """
    x = np.concatenate([np.asarray(sources, np.float64), np.ones((len(sources), 1))], axis=1)
    y = np.asarray(targets, np.float64)
    w = np.asarray(weights, np.float64)[:, None]
    gram = x.T @ (w * x) + ridge * np.eye(4)
    return np.linalg.solve(gram, x.T @ (w * y) + ridge * IDENTITY_COLOUR_MAP.T).T


def keep_greys(matrix: np.ndarray) -> np.ndarray:
    """The [3, 4] map nearest to ``matrix`` (least squares over its entries) that takes every grey
    to a grey: the same brightness, contrast, saturation and hue changes, without the colour cast
    (a grey moved towards a colour) that ``matrix`` adds or takes off. Its three rows sum alike and
    its three offsets are equal. Returns float64 [3, 4]."""
    matrix = np.array(matrix, np.float64)
    sums = matrix[:, :3].sum(axis=1)
    matrix[:, :3] -= ((sums - sums.mean()) / 3)[:, None]
    matrix[:, 3] = matrix[:, 3].mean()
    return matrix


def apply_colour_map(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[3, 4] ``matrix`` applied to every pixel of ``image`` [H, W, 3] (uint8, uint16 or float in
    [0, 1]); returns the image's dtype, clipped to its range."""
    x = to_float01(image).astype(np.float32)
    out = x @ np.asarray(matrix)[:, :3].T.astype(np.float32) + np.asarray(matrix)[:, 3].astype(np.float32)
    return from_float01(np.clip(out, 0.0, 1.0), np.asarray(image).dtype)
