"""Landmarks of degraded faces, refined (docs/no_harm.md, section 9).

:func:`refine_landmarks` aligns each detected face to the reference framing of
:class:`~faceprior.models.landmark_refiner.LandmarkRefinerNet` with its detected landmarks, asks the
network where the detector would have put them on the sharp face, and maps those points back to the
photo. A sharp face's landmarks hardly move; a blurred one's move towards where its model expects them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceprior.face.align import aligned_crops, estimate_similarity, invert_affine
from faceprior.face.templates import named_template
from faceprior.imaging.pixels import to_uint8
from faceprior.models.landmark_refiner import INPUT_SIZE, REFERENCE_FRAMING, REFERENCE_SIZE

__all__ = ["refine_landmarks", "refiner_view"]


def refiner_view(pixels: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the refiner sees of each face of an RGB photo ``pixels`` [H, W, 3] (uint8, uint16 or
    float in [0, 1]) with landmarks [N, 5, 2]: the face aligned with them to the reference framing
    (256 px crop, facexlib's grey outside the photo), averaged over 4 x 4 blocks: float32
    [N, 64, 64, 3] in [0, 255]; and the matrices [N, 2, 3] photo -> 256 px crop."""
    template = named_template(REFERENCE_FRAMING, REFERENCE_SIZE)
    matrices = np.stack([estimate_similarity(points, template) for points in np.asarray(landmarks).reshape(-1, 5, 2)])
    crops = aligned_crops(to_uint8(pixels), matrices, REFERENCE_SIZE, border="grey")
    block = REFERENCE_SIZE // INPUT_SIZE
    return crops.reshape(-1, INPUT_SIZE, block, INPUT_SIZE, block, 3).astype(np.float32).mean(axis=(2, 4)), matrices


@torch.inference_mode()
def refine_landmarks(network: nn.Module, pixels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Refined landmarks [N, 5, 2] float32 (photo pixel-centre coordinates) of the faces of an RGB
    photo ``pixels`` [H, W, 3] (uint8, uint16 or float in [0, 1]) whose detected landmarks are
    ``landmarks`` [N, 5, 2] (MTCNN's order)."""
    landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    if not len(landmarks):
        return landmarks
    faces, matrices = refiner_view(pixels, landmarks)
    device = next(network.parameters()).device
    offsets = network(torch.from_numpy(faces / 255.0).permute(0, 3, 1, 2).to(device)).float().cpu().numpy()
    refined = named_template(REFERENCE_FRAMING, REFERENCE_SIZE)[None] + offsets                                            # in each face's crop
    back = np.stack([invert_affine(matrix) for matrix in matrices])               # crop -> photo
    return (np.einsum("nij,nkj->nki", back[:, :, :2], refined) + back[:, None, :, 2]).astype(np.float32)
