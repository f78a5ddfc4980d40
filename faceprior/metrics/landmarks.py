"""LMD: landmark distance between a restored face and its ground truth, with our MTCNN.

Both images are run through the MTCNN detector (``faceprior.face.mtcnn``); of each image the
largest detected face is kept and its five landmarks (left eye, right eye, nose tip, left and
right mouth corner) are compared:

    LMD = mean over the 5 points of || p_restored - p_gt ||_2,

in pixels of the ground-truth image (restored landmarks are rescaled to the ground-truth size
when the sizes differ, in pixel-centre coordinates: ``x_gt = (x + 0.5) * W_gt / W - 0.5``).
Lower is better; 0 = identical landmark positions. When either image has no detectable face the
pair has no LMD (``None``), to be reported as unavailable and left out of averages.

Weights: the three MTCNN files of facenet-pytorch (``pnet.pt``, ``rnet.pt``, ``onet.pt``; MIT), see
``faceprior.face.mtcnn.mtcnn_weights_dir``.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

from faceprior.face.mtcnn import MTCNN, mtcnn_weights_dir
from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.identity import rgb_image_to_uint8
from faceprior.weights.store import WeightsUnavailableError

__all__ = ["face_landmarks", "landmark_distance", "load_landmark_detector"]


def load_landmark_detector(device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None) -> MTCNN:
    """The MTCNN detector for LMD; MetricUnavailable (one line, where to put the files) without its weights."""
    try:
        folder = mtcnn_weights_dir()
    except WeightsUnavailableError as error:
        raise MetricUnavailable(f"LMD: {error}") from None
    return MTCNN(weights_dir=folder, device=device)


def face_landmarks(detector: MTCNN, image: np.ndarray) -> Optional[np.ndarray]:
    """Five landmarks [5, 2] float64 (x, y; pixel centres) of the largest face in an RGB image, or None.

    image: [H, W, 3] uint8, or float in [0, 1].
    """
    boxes, _, landmarks = detector.detect_arrays(rgb_image_to_uint8(image, "image"))
    if len(boxes) == 0:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return landmarks[int(np.argmax(areas))].astype(np.float64)


def landmark_distance(img: np.ndarray, ref: np.ndarray, detector: MTCNN) -> Optional[float]:
    """LMD in ground-truth pixels between a restored face ``img`` and its ground truth ``ref``.

    img, ref: RGB faces [H, W, 3] (uint8, or float in [0, 1]); sizes may differ. Returns None
    when a face is found in neither or only one of them.
    """
    img, ref = rgb_image_to_uint8(img, "img"), rgb_image_to_uint8(ref, "ref")
    points_ref = face_landmarks(detector, ref)
    if points_ref is None:
        return None
    points = face_landmarks(detector, img)
    if points is None:
        return None
    scale = np.array([ref.shape[1] / img.shape[1], ref.shape[0] / img.shape[0]])
    points = (points + 0.5) * scale - 0.5
    return float(np.linalg.norm(points - points_ref, axis=1).mean())
