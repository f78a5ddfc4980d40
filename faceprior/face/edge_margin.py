"""A detector wrapper that also finds faces cut by the photo's edge.

Close portraits and tight crops put a face's chin, forehead or ear outside the photo; MTCNN and
RetinaFace then often miss the face. Detecting on the photo surrounded by a margin of replicated
edge pixels finds most of them (47 -> 17 missed of the 300 degraded faces-val-256 photos:
tools/no_harm.py); the coordinates are shifted back to the photo's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Largest margin (px) of replicated edge pixels added around a photo for detection.
MAX_EDGE_MARGIN = 64
# Photos of more pixels are detected as they are: there the margin (at most 64 px) is a sliver of a
# face cut by the edge, while the padded copy would cost 3 bytes per pixel of peak memory
# (bench/bench_memory.py: 17.4 -> 19.9 bytes per pixel on a 25 Mpx photo).
MAX_MARGIN_PIXELS = 4_000_000


class EdgeMarginDetector:
    """Wraps a detector (an object with ``detect_arrays``) so it looks at the photo with a margin
    of ``min(min(H, W) // 8, max_margin)`` replicated edge pixels on every side (photos of up to
    :data:`MAX_MARGIN_PIXELS` pixels; larger ones as they are).

    detect_arrays(image uint8 [H, W, 3] RGB) -> (boxes [N, 4], scores [N], landmarks [N, 5, 2]) in
    the photo's coordinates (boxes and landmarks may reach outside it, by up to the margin).
    """

    def __init__(self, detector: Any, max_margin: int = MAX_EDGE_MARGIN):
        self.detector = detector
        self.max_margin = max_margin

    def detect_arrays(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        margin = min(min(height, width) // 8, self.max_margin) if height * width <= MAX_MARGIN_PIXELS else 0
        if margin:
            image = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
        boxes, scores, landmarks = self.detector.detect_arrays(np.ascontiguousarray(image))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) - margin
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2) - margin
        return boxes, np.asarray(scores, np.float32).reshape(-1), landmarks
