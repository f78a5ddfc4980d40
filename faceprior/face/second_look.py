"""A detector that looks again, with other settings, at photos where it found no face.

MTCNN's cascade misses some heavily degraded faces (blurred, noisy, turned away): its pyramid
steps past the scale where P-Net would answer, or R-Net rejects the candidate that O-Net would have
kept with a high score. Where the first look finds nothing, the same networks look again with a
finer pyramid and, last, a lower threshold for the first two stages (O-Net's is kept). Photos
where a face was found are not looked at again, so their faces, landmarks and time are unchanged.

Measured (one-off scripts, docs/no_harm.md section 4): of 1500 faces-train-256 photos degraded
with the paper's recipe, the first look missed 100; the second look found 45 of them, 41 within
an IoU of 0.6 or more of the face found on the sharp photo. On 434 faceless 128 and 256 px tiles
of realworld-whole, as they are and degraded, neither look found a face.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# MTCNN's second looks, in turn: (pyramid ratio, thresholds of P-Net, R-Net, O-Net). The first look
# is MTCNN's usual (0.709, (0.6, 0.7, 0.7)).
MTCNN_SECOND_LOOKS: tuple[tuple[float, tuple[float, float, float]], ...] = (
    (0.8, (0.6, 0.7, 0.7)),
    (0.85, (0.5, 0.5, 0.7)),
)


class SecondLookDetector:
    """Runs ``first``; where it finds no face, each of ``second_looks`` in turn until one finds some.

    Every detector is an object with ``detect_arrays(image uint8 [H, W, 3] RGB) -> (boxes [N, 4],
    scores [N], landmarks [N, 5, 2])``; so is this one (the answer of the look that found faces).
    """

    def __init__(self, first: Any, second_looks: Sequence[Any]):
        self.first = first
        self.second_looks = tuple(second_looks)

    def detect_arrays(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = self.first.detect_arrays(image)
        for detector in self.second_looks:
            if len(found[0]):
                break
            found = detector.detect_arrays(image)
        return found
