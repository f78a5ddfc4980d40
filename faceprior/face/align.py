"""Face alignment: similarity transforms from landmarks, and affine warping with torch.

Coordinates are (x, y) in pixels with pixel centres at integer positions, as in OpenCV: the
pixel ``image[y, x]`` covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]. An affine matrix ``M``
[2, 3] maps a source point p = (x, y) to ``M @ [x, y, 1]`` in the output, so
``warp_affine(image, M, size)`` gives the same result as ``cv2.warpAffine(image, M, (w, h))``
with bilinear interpolation (plus optional antialiasing when shrinking, which OpenCV lacks).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from faceprior.face.templates import FFHQ_TEMPLATE_512, scale_template
from faceprior.imaging.pixels import dtype_max

Size = Union[int, Tuple[int, int]]
BorderValue = Union[float, Sequence[float]]

# Grey that facexlib fills the outside of the image with when cropping faces (RGB, 8-bit units).
FACEXLIB_BORDER_RGB = (132.0, 133.0, 135.0)  # facexlib passes (135, 133, 132) to BGR images

_PADDING_MODES = {"constant": "zeros", "replicate": "border", "reflect": "reflection"}


def estimate_similarity(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
    taking ``src_points`` [N, 2] onto ``dst_points`` [N, 2] (N >= 2), by Umeyama's method.

    Returns M [2, 3] float64 with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src_points, dtype=np.float64)
    dst = np.asarray(dst_points, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"expected two [N, 2] point arrays with N >= 2, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinite values")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred ** 2).sum(axis=1).mean()
    if src_variance <= 1e-12:
        raise ValueError("source points all coincide; a similarity transform is undefined")
    covariance = dst_centred.T @ src_centred / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / src_variance
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of an affine map: M [..., 2, 3] -> M_inv [..., 2, 3] (float64)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(matrix[..., :2])
    translation = -(linear_inv @ matrix[..., 2:3])
    return np.concatenate([linear_inv, translation], axis=-1)


def compose_affine(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The affine map "apply ``first``, then ``second``" (both [2, 3]) as one [2, 3] float64."""
    second = np.asarray(second, dtype=np.float64)
    first = np.asarray(first, dtype=np.float64)
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = second[:, :2] @ first[:, :2]
    out[:, 2] = second[:, :2] @ first[:, 2] + second[:, 2]
    return out


def scale_affine(scale: float) -> np.ndarray:
    """[2, 3] map from pixel coordinates of an image to those of the image resized by ``scale``
    (pixel-centre convention: x -> scale * x + (scale - 1) / 2)."""
    offset = (scale - 1.0) / 2.0
    return np.array([[scale, 0.0, offset], [0.0, scale, offset]], dtype=np.float64)


def _out_hw(out_size: Size) -> Tuple[int, int]:
    if isinstance(out_size, (int, np.integer)):
        return int(out_size), int(out_size)
    height, width = (int(v) for v in out_size)
    return height, width


def _border_indices(indices: np.ndarray, length: int, border: str) -> Tuple[np.ndarray, np.ndarray]:
    """Source indices for possibly out-of-range positions, and a mask of in-range positions."""
    inside = (indices >= 0) & (indices < length)
    if border == "reflect":  # ... c b a | a b c ... | c b a ...
        period = np.mod(indices, 2 * length)
        return np.where(period >= length, 2 * length - 1 - period, period), inside
    return np.clip(indices, 0, length - 1), inside


def _warp_single(image: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int, border: str,
                 value: np.ndarray, antialias: bool) -> np.ndarray:
    """image [H, W, C] (any real dtype) -> float32 (or float64) [out_h, out_w, C]."""
    height, width, channels = image.shape
    inverse = invert_affine(matrix)
    corners = np.array([[-0.5, -0.5, 1.0], [out_w - 0.5, -0.5, 1.0],
                        [-0.5, out_h - 0.5, 1.0], [out_w - 0.5, out_h - 0.5, 1.0]])
    source_corners = corners @ inverse.T  # [4, 2] (x, y)

    # Shrinking by a factor >= 2: average f x f blocks first, so the bilinear taps see a
    # pre-filtered image (f = how many source pixels one output pixel spans, at least).
    shrink = float(np.linalg.svd(inverse[:, :2], compute_uv=False).min())
    factor = int(math.floor(shrink)) if antialias and shrink >= 2.0 else 1
    margin = factor + 2

    bounds = []
    for axis, length in ((0, width), (1, height)):
        start = int(math.floor(source_corners[:, axis].min())) - margin
        stop = int(math.ceil(source_corners[:, axis].max())) + margin + 1
        if border != "reflect":  # outside the image + margin everything is the border value
            low, high = -margin, length + margin
            start = min(max(start, low), high - factor)
            stop = max(min(stop, high), start + factor)
        stop = start + -(-(stop - start) // factor) * factor  # a whole number of blocks
        bounds.append((start, stop))
    (x0, x1), (y0, y1) = bounds

    # The source region, with border pixels filled in; for "constant" the border value is
    # subtracted so that grid_sample's zero padding stands for it.
    compute_dtype = np.float64 if image.dtype == np.float64 else np.float32
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        region = image[y0:y1, x0:x1].astype(compute_dtype)
        if border == "constant":
            region -= value.astype(compute_dtype)
    else:
        rows, rows_inside = _border_indices(np.arange(y0, y1), height, border)
        cols, cols_inside = _border_indices(np.arange(x0, x1), width, border)
        region = image[np.ix_(rows, cols)].astype(compute_dtype)
        if border == "constant":
            region -= value.astype(compute_dtype)
            region[~rows_inside] = 0
            region[:, ~cols_inside] = 0

    tensor = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None]
    if factor > 1:
        tensor = F.avg_pool2d(tensor, factor)
    region_h, region_w = tensor.shape[2], tensor.shape[3]

    # theta maps output coordinates in grid_sample's [-1, 1] convention (align_corners=False)
    # to region coordinates in the same convention: output [-1, 1] -> output pixels -> source
    # pixels (M^-1) -> pooled-region pixels -> region [-1, 1].
    from_output = np.array([[out_w / 2.0, 0.0, (out_w - 1) / 2.0],
                            [0.0, out_h / 2.0, (out_h - 1) / 2.0], [0.0, 0.0, 1.0]])
    to_pooled = np.array([[1.0 / factor, 0.0, -(x0 + (factor - 1) / 2.0) / factor],
                          [0.0, 1.0 / factor, -(y0 + (factor - 1) / 2.0) / factor], [0.0, 0.0, 1.0]])
    to_normalised = np.array([[2.0 / region_w, 0.0, 1.0 / region_w - 1.0],
                              [0.0, 2.0 / region_h, 1.0 / region_h - 1.0], [0.0, 0.0, 1.0]])
    inverse_3x3 = np.vstack([inverse, [0.0, 0.0, 1.0]])
    theta = (to_normalised @ to_pooled @ inverse_3x3 @ from_output)[:2]
    grid = F.affine_grid(torch.from_numpy(theta)[None].to(tensor.dtype), [1, channels, out_h, out_w],
                         align_corners=False)
    out = F.grid_sample(tensor, grid, mode="bilinear", padding_mode=_PADDING_MODES[border],
                        align_corners=False)
    out = out[0].permute(1, 2, 0).contiguous().numpy()
    if border == "constant":
        out += value.astype(out.dtype)
    return out


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    out_size: Size,
    border: str = "constant",
    border_value: BorderValue = 0.0,
    antialias: bool = True,
) -> np.ndarray:
    """Bilinear affine warp: output pixel (u, v) takes the source value at M^-1 @ [u, v, 1].

    image: [H, W], [H, W, C] or a batch [B, H, W, C]; uint8, uint16 or float (any range).
    matrix: M [2, 3] (source -> output pixel coordinates), or [B, 2, 3] to warp one image with
        several transforms (e.g. several faces) or a batch of images one transform each.
    out_size: S or (height, width) of the output.
    border: "constant" (``border_value``), "replicate" (edge pixels) or "reflect" (mirror about
        the image edge, like OpenCV's BORDER_REFLECT) for source points outside the image.
    border_value: scalar or per-channel values, in the units of ``image`` (e.g. 0..255).
    antialias: when the map shrinks the image by 2x or more, average f x f pixel blocks
        (f = floor of the shrink factor) before the bilinear sampling, against aliasing.
    Returns [out_h, out_w(, C)] or [B, out_h, out_w(, C)] with the dtype of ``image``
    (integers rounded and clipped to their range).
    """
    if border not in _PADDING_MODES:
        raise ValueError(f"border must be 'constant', 'replicate' or 'reflect', got {border!r}")
    image = np.asarray(image)
    matrix = np.asarray(matrix, dtype=np.float64)
    image_batched = image.ndim == 4
    matrix_batched = matrix.ndim == 3
    if matrix.shape[-2:] != (2, 3) or matrix.ndim not in (2, 3):
        raise ValueError(f"expected an affine matrix [2, 3] or [B, 2, 3], got {matrix.shape}")
    if image_batched and not matrix_batched:
        matrix = np.broadcast_to(matrix, (image.shape[0], 2, 3))
    if image_batched and matrix.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {matrix.shape[0]} matrices")
    if not image_batched and image.ndim not in (2, 3):
        raise ValueError(f"expected an image [H, W], [H, W, C] or [B, H, W, C], got {image.shape}")
    gray = image.ndim == 2
    images = image[None, :, :, None] if gray else (image if image_batched else image[None])
    matrices = matrix if matrix.ndim == 3 else matrix[None]
    out_h, out_w = _out_hw(out_size)
    value = np.broadcast_to(np.asarray(border_value, dtype=np.float64), (images.shape[-1],))

    outputs = []
    for index, single in enumerate(matrices):
        source = images[index if image_batched else 0]
        warped = _warp_single(source, single, out_h, out_w, border, value, antialias)
        if image.dtype.kind in "ui":
            warped = np.clip(np.rint(warped), 0, dtype_max(image.dtype)).astype(image.dtype)
        else:
            warped = warped.astype(image.dtype, copy=False)
        outputs.append(warped[:, :, 0] if gray else warped)
    return np.stack(outputs) if (image_batched or matrix_batched) else outputs[0]


def aligned_crops(pixels: np.ndarray, matrices: np.ndarray, size: int, border: str = "reflect") -> np.ndarray:
    """The crops [N, S, S, 3] (the pixels' dtype) of a photo [H, W, 3] through ``matrices`` [N, 2, 3]
    (photo -> crop).

    border: what fills a crop where it leaves the photo (a face cut by the photo's edge):
        "reflect", the photo mirrored about its edge (what the restorer feeds its models: the FFHQ
        and CelebA-HQ alignment scripts pad their faces by mirroring too, so a model has seen it,
        while a grey band changes how it restores the face beside it: docs/no_harm.md, section 4);
        or "grey", facexlib's grey (132, 133, 135) (the official pipeline's; the landmark refiner
        was trained on it).
    """
    if border not in ("reflect", "grey"):
        raise ValueError(f"border must be 'reflect' or 'grey', got {border!r}")
    if not len(matrices):
        return np.zeros((0, size, size, 3), pixels.dtype)
    matrices = np.asarray(matrices).reshape(-1, 2, 3)
    if border == "reflect":
        crops = warp_affine(pixels, matrices, size, border="reflect")
    else:
        grey = np.array(FACEXLIB_BORDER_RGB) / 255.0 * dtype_max(pixels.dtype)
        crops = warp_affine(pixels, matrices, size, border="constant", border_value=grey)
    return crops if crops.ndim == 4 else crops[None]


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: Optional[np.ndarray] = None,
    out_size: int = 512,
    border: str = "constant",
    border_value: Optional[BorderValue] = None,
    antialias: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Crop one face to the model's alignment.

    image: [H, W, 3] RGB, uint8, uint16 or float in [0, 1].
    landmarks: [5, 2] (x, y) in image pixels, order of faceprior.face.templates.
    template: [5, 2] target positions in the crop; default FFHQ_TEMPLATE_512 scaled to out_size.
    border_value: default facexlib's grey (132, 133, 135)/255 of the image's full range.
    Returns (crop [out_size, out_size, 3] with the dtype of ``image``, M [2, 3] float64 mapping
    image coordinates to crop coordinates).
    """
    if template is None:
        template = scale_template(FFHQ_TEMPLATE_512, 512, out_size)
    matrix = estimate_similarity(landmarks, template)
    if border_value is None:
        image = np.asarray(image)
        grey = np.array(FACEXLIB_BORDER_RGB) / 255.0 * dtype_max(image.dtype)
        border_value = grey if image.ndim == 3 and image.shape[2] == 3 else float(grey.mean())
    crop = warp_affine(image, matrix, out_size, border=border, border_value=border_value,
                       antialias=antialias)
    return crop, matrix
