"""Identity preservation between restored and ground-truth faces: ArcFace "Deg." and dlib-id distance.

ArcFace "Deg." (the GFP-GAN paper's identity metric)
    The angle, in degrees, between the ArcFace embeddings of the restored face and of the
    ground truth: ``degrees(arccos(cos_sim(e_restored, e_gt)))``, in [0, 180], lower is better
    (0 = same embedding direction); the cosine similarity (in [-1, 1], higher is better) is
    reported with it. Preprocessing is that of GFP-GAN's identity loss: an aligned RGB face in
    [-1, 1] -> grey ``0.2989 R + 0.5870 G + 0.1140 B`` -> bilinear resize to 128x128
    (``align_corners=False``) -> ``ResNetArcFace`` (IRBlock, [2, 2, 2, 2], no SE) -> 512-d
    embedding (not normalised; the angle does not depend on its length).
    Weights: ``arcface_resnet18.pth`` of the GFPGAN release v0.1.0 (GitHub), through the weight
    store; the loader raises ``MetricUnavailable`` without it.

dlib-id distance (offline alternative; a different network, not comparable to "Deg.")
    The Euclidean distance between the 128-d descriptors of dlib's face-recognition ResNet
    (``dlib_face_recognition_resnet_model_v1.dat``; dlib's own convention: two faces with a
    distance below 0.6 are taken as the same person). The face box is found once, on the ground
    truth, by dlib's HOG frontal-face detector (largest face; on the restored face when the ground
    truth has none); the 5-point shape predictor then places each face's landmarks in that box and
    dlib aligns a 150x150 chip (padding 0.25) from them. Needs the optional packages of
    ``faceprior[eval]``: ``dlib-bin`` (dlib's binary wheels; Boost licence) and
    ``face-recognition-models`` (MIT package; the two model files used here are released into the
    public domain (CC0) by dlib's author).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from faceprior.metrics.availability import fetch_metric_weights, require_package
from faceprior.metrics.color import ImageInputError, check_image
from faceprior.models.arcface import ResNetArcFace, gray_resize_for_identity
from faceprior.models.loading import load_state_dict_strict
from faceprior.weights.checkpoint import read_state_dict

__all__ = [
    "DLIB_ID_THRESHOLD",
    "DlibIdentity",
    "IdentityDistance",
    "angle_degrees",
    "arcface_embeddings",
    "arcface_identity",
    "cosine_similarity",
    "dlib_model_paths",
    "load_arcface_identity",
    "load_dlib_identity",
    "rgb_image_to_tensor",
    "rgb_image_to_uint8",
]

ARCFACE_INPUT_SIZE = 128

DLIB_ID_THRESHOLD = 0.6
DLIB_RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"


# ----------------------------------------------------------------------------------------------
# ArcFace "Deg."


@dataclass(frozen=True)
class IdentityDistance:
    """ArcFace identity comparison of one face pair: angle in degrees [0, 180] and cosine [-1, 1]."""

    degrees: float
    cosine: float


def load_arcface_identity(device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None) -> ResNetArcFace:
    """GFP-GAN's ArcFace (``arcface_resnet18.pth``) in eval mode; MetricUnavailable without the file."""
    path = fetch_metric_weights("identity (ArcFace Deg.)", "arcface-resnet18", cache_dir=cache_dir)
    model = ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False)
    load_state_dict_strict(model, read_state_dict(path), source=str(path))
    return model.eval().to(device)


def arcface_embeddings(model: ResNetArcFace, faces: torch.Tensor) -> torch.Tensor:
    """Aligned RGB faces [N, 3, H, W] in [-1, 1] -> embeddings [N, 512] (grey, 128x128, eval mode)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(gray_resize_for_identity(faces.to(device).float(), ARCFACE_INPUT_SIZE))


def cosine_similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity of embeddings [N, D] and [N, D] -> [N] float64 in [-1, 1]."""
    a = np.atleast_2d(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12), -1.0, 1.0)


def angle_degrees(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Row-wise angle between embeddings [N, D] and [N, D] in degrees -> [N] float64 in [0, 180]."""
    return np.degrees(np.arccos(cosine_similarity(a, b)))


def rgb_image_to_tensor(img: np.ndarray, name: str = "img") -> torch.Tensor:
    """[H, W, 3] RGB image (uint8, or float in [0, 1]) -> [1, 3, H, W] float32 in [-1, 1]."""
    img = check_image(img, name)
    if img.ndim != 3:
        raise ImageInputError(f"{name}: expected an [H, W, 3] RGB image, got shape {img.shape}")
    array = img.astype(np.float32) / np.float32(255.0 if img.dtype == np.uint8 else 1.0)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None] * 2 - 1


def rgb_image_to_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """[H, W, 3] RGB image (uint8, or float in [0, 1]) -> contiguous uint8 (floats clipped and rounded)."""
    image = check_image(image, name)
    if image.ndim != 3:
        raise ImageInputError(f"{name}: expected an [H, W, 3] RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.rint(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(image)


def arcface_identity(img: np.ndarray, ref: np.ndarray, model: ResNetArcFace) -> IdentityDistance:
    """ArcFace angle and cosine between a restored face and its ground truth.

    img, ref: aligned RGB faces [H, W, 3] (uint8, or float in [0, 1]); sizes may differ (both are
    resized to 128x128).
    """
    restored = arcface_embeddings(model, rgb_image_to_tensor(img, "img"))
    ground_truth = arcface_embeddings(model, rgb_image_to_tensor(ref, "ref"))
    cosine = float(cosine_similarity(restored, ground_truth)[0])
    return IdentityDistance(degrees=math.degrees(math.acos(cosine)), cosine=cosine)


# ----------------------------------------------------------------------------------------------
# dlib-id distance


def dlib_model_paths() -> tuple[Path, Path]:
    """(recognition model, 5-point shape predictor) from the installed ``face-recognition-models``
    (catalogue entries ``dlib-face-recognition`` and ``dlib-shape-predictor-5``).

    The package is located without importing it (its ``__init__`` needs setuptools'
    ``pkg_resources``). Raises MetricUnavailable when it or a file is missing.
    """
    return (fetch_metric_weights("dlib-id distance", "dlib-face-recognition"),
            fetch_metric_weights("dlib-id distance", "dlib-shape-predictor-5"))


class DlibIdentity:
    """dlib's face-recognition ResNet with its HOG face detector and 5-point shape predictor.

    Args:
        recognition_model, shape_predictor: the ``.dat`` files (default: :func:`dlib_model_paths`).
    Raises MetricUnavailable when dlib or the files are missing.
    """

    def __init__(self, recognition_model: str | os.PathLike | None = None, shape_predictor: str | os.PathLike | None = None):
        self.dlib: Any = require_package("dlib-id distance", "dlib", "dlib-bin")
        if recognition_model is None or shape_predictor is None:
            default_recognition, default_predictor = dlib_model_paths()
            recognition_model = recognition_model or default_recognition
            shape_predictor = shape_predictor or default_predictor
        self.recognition_model_path = Path(recognition_model)
        self.detector = self.dlib.get_frontal_face_detector()
        self.predictor = self.dlib.shape_predictor(os.fspath(shape_predictor))
        self.recognizer = self.dlib.face_recognition_model_v1(os.fspath(recognition_model))

    def face_box(self, image: np.ndarray) -> Optional[tuple[int, int, int, int]]:
        """(left, top, right, bottom) of the largest face in an [H, W, 3] uint8 RGB image, or None.

        Detection runs on the image as is, then once more upsampled 2x when nothing was found.
        """
        image = rgb_image_to_uint8(image, "image")
        for upsample in (0, 1):
            faces = list(self.detector(image, upsample))
            if faces:
                face = max(faces, key=lambda r: r.width() * r.height())
                return face.left(), face.top(), face.right(), face.bottom()
        return None

    def chip_box(self, image: np.ndarray) -> Optional[tuple[float, float, float, float]]:
        """Where dlib would cut the 150x150 recognition chip (padding 0.25) from the largest face
        of an RGB image: (left, top, right, bottom) in pixels (before its rotation), or None."""
        image = rgb_image_to_uint8(image, "image")
        box = self.face_box(image)
        if box is None:
            return None
        shape = self.predictor(image, self.dlib.rectangle(*box))
        rect = self.dlib.get_face_chip_details(shape, 150, 0.25).rect
        return float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom())

    def descriptor(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """128-d descriptor [128] float64 of the face in ``box`` (from :meth:`face_box`) of an RGB image."""
        image = rgb_image_to_uint8(image, "image")
        shape = self.predictor(image, self.dlib.rectangle(*(int(v) for v in box)))
        return np.asarray(self.recognizer.compute_face_descriptor(image, shape), dtype=np.float64)

    def distance(self, img: np.ndarray, ref: np.ndarray) -> Optional[float]:
        """dlib-id distance (>= 0; < 0.6 means "same person") of a restored face and its ground truth.

        img, ref: RGB faces [H, W, 3] of one size (uint8, or float in [0, 1]). The face box is
        detected on ``ref`` (else on ``img``) and used for both. Returns None when neither
        image has a detectable face.
        """
        img, ref = rgb_image_to_uint8(img, "img"), rgb_image_to_uint8(ref, "ref")
        if img.shape != ref.shape:
            raise ImageInputError(f"dlib-id distance: image shapes differ: {img.shape} vs {ref.shape}")
        box = self.face_box(ref) or self.face_box(img)
        if box is None:
            return None
        return float(np.linalg.norm(self.descriptor(img, box) - self.descriptor(ref, box)))


def load_dlib_identity() -> DlibIdentity:
    """:class:`DlibIdentity` with the installed model files; MetricUnavailable without dlib or the files."""
    return DlibIdentity()
