"""Paste restored faces back into the (upsampled) photo with soft masks.

Each restored face lives in aligned-face coordinates (the crop made by
``faceprior.face.align.align_face`` with matrix ``M_align``: photo -> crop). It is warped back
with the inverse transform, composed with the background upscale (pixel-centre convention of
``faceprior.face.align.scale_affine``), and blended over the photo with a soft mask that is
exactly zero near the crop border, so the crop edges never show. Given the crops the faces were
restored from, only each face's change is pasted, so the photo keeps the detail that the crop
(and the model) is too small to hold. Only the bounding box of each
face is touched; pixels outside every mask keep their exact input values.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from faceprior.face.align import compose_affine, invert_affine, scale_affine, warp_affine
from faceprior.imaging.pixels import from_float01, to_float01

_MASK_CACHE: Dict[Tuple[int, float, float], np.ndarray] = {}


def _mask_profile(size: int, erosion: float, feather: float) -> np.ndarray:
    """1-D mask profile [size] float64: 0 within ``erosion`` pixels of either end, a Gaussian
    (sigma ``feather``, truncated at 3 sigma) ramp, then exactly 1."""
    index = np.arange(size, dtype=np.float64)
    distance = np.minimum(index + 0.5, size - 0.5 - index)  # pixel centre to the nearest edge
    radius = int(math.ceil(3.0 * feather)) if feather > 0 else 0
    box = (distance > erosion + radius).astype(np.float64)
    if radius == 0:
        return box
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / feather) ** 2)
    return np.convolve(box, kernel / kernel.sum(), mode="same")


def _mask_sizes(size: int, erosion: Optional[float], feather: Optional[float]) -> Tuple[float, float]:
    """``face_mask``'s erosion and feather in pixels (defaults S / 20 and S / 60)."""
    return (size / 20.0 if erosion is None else float(erosion)), (size / 60.0 if feather is None else float(feather))


def face_mask(out_size: int, erosion: Optional[float] = None, feather: Optional[float] = None) -> np.ndarray:
    """Soft blending mask in aligned-face coordinates.

    out_size: S, the size of the aligned face crop.
    erosion: width in pixels of the border band where the mask is exactly 0 (default S / 20,
        about facexlib's eroded border).
    feather: sigma in pixels of the Gaussian that softens the edge (default S / 60); the ramp
        from 0 to 1 spans 6 sigma inside the eroded border.
    Returns [S, S] float32 in [0, 1] (a product of two 1-D profiles, so corners are rounded).
    """
    erosion, feather = _mask_sizes(out_size, erosion, feather)
    if erosion < 0 or feather < 0:
        raise ValueError(f"erosion and feather must be >= 0, got {erosion} and {feather}")
    key = (int(out_size), erosion, feather)
    if key not in _MASK_CACHE:
        profile = _mask_profile(int(out_size), erosion, feather)
        mask = np.outer(profile, profile).astype(np.float32)
        mask.setflags(write=False)
        _MASK_CACHE[key] = mask
    return _MASK_CACHE[key]


def photo_edge_mask(out_size: int, to_image: np.ndarray, photo_hw: Tuple[int, int],
                    erosion: Optional[float] = None, feather: Optional[float] = None) -> np.ndarray:
    """``face_mask(out_size)`` that fades out only towards the crop edges that lie inside the photo.

    The fade hides the step between a restored crop and the unrestored photo around it. Where a
    crop edge lies on or beyond the photo's edge (a close portrait, a face cut by the frame) there
    is no photo beyond it to meet, and the face is restored up to the photo's edge instead of
    leaving a degraded band there. Each edge's fade is weighted, point by point along it, by how far
    inside the photo that point of the edge lies: not at all on or beyond the photo's edge, fully
    from a quarter of the eroded band's width (in photo pixels) inside. With all four edges inside
    the photo this is ``face_mask`` exactly.

    out_size: S. to_image: [2, 3] map from crop pixels to photo pixels (``face_to_image_matrix``).
    photo_hw: (H, W) of that photo. erosion, feather: as ``face_mask``.
    Returns [S, S] float32 in [0, 1].
    """
    size = int(out_size)
    erosion, feather = _mask_sizes(size, erosion, feather)
    centre = np.arange(size, dtype=np.float64)
    edges = {"top": (centre, np.full(size, -0.5)), "bottom": (centre, np.full(size, size - 0.5)),
             "left": (np.full(size, -0.5), centre), "right": (np.full(size, size - 0.5), centre)}
    height, width = photo_hw
    scale = math.sqrt(abs(np.linalg.det(to_image[:, :2])))  # photo pixels per crop pixel
    full_fade_at = max(erosion * scale / 4.0, 1.0)
    openness = {}
    for name, (x, y) in edges.items():
        px = to_image[0, 0] * x + to_image[0, 1] * y + to_image[0, 2]
        py = to_image[1, 0] * x + to_image[1, 1] * y + to_image[1, 2]
        inside = np.minimum(np.minimum(px + 0.5, width - 0.5 - px), np.minimum(py + 0.5, height - 0.5 - py))
        openness[name] = np.clip(inside / full_fade_at, 0.0, 1.0)
    if all((value == 1).all() for value in openness.values()):
        return face_mask(size, erosion, feather)  # cached
    profile = _mask_profile(size, erosion, feather)
    near_start = np.where(centre < size / 2, profile, 1.0)  # the fade of the first edge alone
    near_end = np.where(centre < size / 2, 1.0, profile)
    fades = {"top": near_start[:, None], "bottom": near_end[:, None],
             "left": near_start[None, :], "right": near_end[None, :]}
    result = np.ones((size, size), np.float64)
    for name, value in openness.items():
        along = value[None, :] if name in ("top", "bottom") else value[:, None]
        result *= 1.0 - along * (1.0 - fades[name])
    return result.astype(np.float32)


def face_to_image_matrix(align_matrix: np.ndarray, upscale: float = 1.0) -> np.ndarray:
    """[2, 3] map from aligned-face pixels to pixels of the photo upsampled by ``upscale``,
    given ``align_matrix`` [2, 3] (photo -> aligned face)."""
    return compose_affine(scale_affine(upscale), invert_affine(align_matrix))


def paste_faces(
    background: np.ndarray,
    faces: Sequence[Tuple[np.ndarray, np.ndarray]],
    masks: Optional[Sequence[Optional[np.ndarray]]] = None,
    upscale: float = 1.0,
    inputs: Optional[Sequence[np.ndarray]] = None,
    keep_detail: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """Blend restored faces into a photo.

    background: [H, W, C] photo, uint8, uint16 or float in [0, 1], already upsampled by
        ``upscale`` from the photo the faces were aligned in.
    faces: list of (restored_face [S, S, C] uint8/uint16/float in [0, 1], M_align [2, 3]
        mapping original-photo pixels to aligned-face pixels, as returned by align_face).
    masks: optional per-face [S, S] float masks in [0, 1] (e.g. from a face parser) replacing
        the default ``photo_edge_mask`` (``face_mask(S)``, not faded towards crop edges on or
        beyond the photo's edge); None entries use the default.
    upscale: factor between the background and the photo the faces were aligned in.
    inputs: optional per-face aligned crops [S, S, C] the faces were restored from. Given, what
        is pasted is each face's *change*: within the mask the photo becomes
        ``background + warp(face - input)``, so it keeps its own detail finer than the crop's
        resolution (a face larger in the photo than S loses no sharpness), and a face returned
        unchanged leaves the photo exactly as it was. Without: ``warp(face)`` replaces the photo
        within the mask (the official paste-back).
    keep_detail: with ``inputs``, per face in [0, 1] (default 1): how much of the photo's own
        detail the crop does not hold, ``background - warp(input)``, stays. 1 is the change
        alone (above); 0 is ``warp(face)`` replacing the photo. In between: the photo becomes
        ``background + warp(face - input) - (1 - d) * (background - warp(input))``.
    Returns a new [H, W, C] array with the dtype of ``background``. Faces are blended in order
    (later faces over earlier ones, each over the background's own pixels); pixels where every
    mask is 0 equal the input exactly.
    """
    background = np.asarray(background)
    if background.ndim != 3:
        raise ValueError(f"expected a background image [H, W, C], got shape {background.shape}")
    if masks is not None and len(masks) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(masks)} masks")
    if inputs is not None and len(inputs) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(inputs)} input crops")
    if keep_detail is not None and (inputs is None or len(keep_detail) != len(faces)):
        raise ValueError("keep_detail needs the input crops and one value per face")
    out = background.copy()
    height, width, channels = background.shape
    for index, (face, align_matrix) in enumerate(faces):
        face = np.asarray(face)
        size = face.shape[0]
        if face.ndim != 3 or face.shape[1] != size or face.shape[2] != channels:
            raise ValueError(f"face {index}: expected [S, S, {channels}], got shape {face.shape}")
        to_image = face_to_image_matrix(align_matrix, upscale)
        mask = None if masks is None else masks[index]
        mask = photo_edge_mask(size, to_image, (height, width)) if mask is None else \
            np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
        if mask.shape != (size, size):
            raise ValueError(f"mask {index}: expected [{size}, {size}], got shape {mask.shape}")

        corners = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0],
                            [-0.5, size - 0.5, 1.0], [size - 0.5, size - 0.5, 1.0]]) @ to_image.T
        x0 = max(int(math.floor(corners[:, 0].min())) - 1, 0)
        y0 = max(int(math.floor(corners[:, 1].min())) - 1, 0)
        x1 = min(int(math.ceil(corners[:, 0].max())) + 2, width)
        y1 = min(int(math.ceil(corners[:, 1].max())) + 2, height)
        if x1 <= x0 or y1 <= y0:
            continue  # the face lies outside the photo
        to_region = to_image.copy()
        to_region[:, 2] -= (x0, y0)
        # Warp the mask and the mask-weighted face together (premultiplied alpha), so the
        # interpolation never mixes face pixels with what lies outside the crop.
        pasted = to_float01(face)
        detail = 0.0
        if inputs is not None:
            source = np.asarray(inputs[index])
            if source.shape != face.shape:
                raise ValueError(f"input crop {index}: expected shape {face.shape}, got {source.shape}")
            detail = 1.0 if keep_detail is None else float(np.clip(keep_detail[index], 0.0, 1.0))
            pasted = pasted - np.float32(detail) * to_float01(source)
        premultiplied = np.concatenate([pasted * mask[:, :, None], mask[:, :, None]], axis=2)
        warped = warp_affine(premultiplied, to_region, (y1 - y0, x1 - x0), border="constant", border_value=0.0)
        alpha = np.clip(warped[:, :, -1:], 0.0, 1.0)
        touched = alpha > 0
        if not touched.any():
            continue
        region = out[y0:y1, x0:x1]
        current = to_float01(region)
        blended = current * (1.0 - alpha) + warped[:, :, :-1]
        if detail > 0:  # the photo's own pixels under the change
            blended += to_float01(background[y0:y1, x0:x1]) * (alpha * np.float32(detail))
        np.copyto(region, from_float01(blended, region.dtype), where=touched)
    return out
