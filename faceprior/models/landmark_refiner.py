"""Where would the detector have put a degraded face's landmarks on the sharp face? :class:`LandmarkRefinerNet`.

MTCNN places the five landmarks of a blurred, noisy or blocky face less precisely than those of a
sharp one, and a face aligned with them sits off the template its model was trained on, which
restores it worse (docs/no_harm.md, section 9). This small CNN looks at the face as aligned with the
detected landmarks (to the CelebA-HQ template of a 256 px crop, seen at 64 px) and predicts where
MTCNN would have put the landmarks on the sharp face, as offsets from the template in that crop.
It is trained here (``faceprior.training.landmark_refiner``) on CelebA-HQ faces degraded with the
paper's recipe, milder versions and clean copies. ``faceprior.face.landmark_refinement`` applies it.

Input: [B, 3, 64, 64] RGB in [0, 1]: the 256 px crop averaged over 4 x 4 blocks.
Output: [B, 5, 2] offsets (x, y) in pixels of the 256 px crop, landmarks in MTCNN's order (left eye,
right eye, nose, left and right mouth corners).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from faceprior.models.architecture import Architecture, Shapes, indices, require

__all__ = ["ARCHITECTURE", "INPUT_SIZE", "LandmarkRefinerNet", "REFERENCE_FRAMING", "REFERENCE_SIZE"]

#: The framing and crop size the offsets are given in, and the size the network sees the crop at.
REFERENCE_FRAMING = "celeba-hq"
REFERENCE_SIZE = 256
INPUT_SIZE = 64
#: Crop pixels per unit of the network's raw output (keeps its targets near unit size).
OFFSET_UNIT = REFERENCE_SIZE / 10


class LandmarkRefinerNet(nn.Module):
    """Aligned degraded face [B, 3, 64, 64] in [0, 1] -> landmark offsets [B, 5, 2] in 256 px crop pixels.

    widths: channels of the four stages; each halves the size (64 -> 4) with a stride-2 3x3 conv
    followed by a 3x3 conv; a linear layer maps the 4 x 4 features to the ten offsets.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        stages, channels = [], 3
        for width in widths:
            stages.append(nn.Sequential(nn.Conv2d(channels, width, 3, 2, 1), nn.LeakyReLU(0.2),
                                        nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2)))
            channels = width
        self.stages = nn.Sequential(*stages)
        side = INPUT_SIZE >> len(widths)
        self.head = nn.Linear(channels * side * side, 10)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.dim() != 4 or tuple(faces.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected faces [B, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {tuple(faces.shape)}")
        return self.head(self.stages(faces).flatten(1)).view(-1, 5, 2) * OFFSET_UNIT


def _layout(shapes: Shapes) -> bool:
    return "stages.0.0.weight" in shapes and "head.weight" in shapes and tuple(shapes["head.weight"])[0] == 10


def _options(shapes: Shapes) -> dict[str, Any]:
    stages = indices(shapes, r"stages\.(\d+)\.0\.weight")
    return {"widths": tuple(int(require(shapes, f"stages.{i}.0.weight", "LandmarkRefinerNet")[0]) for i in stages)}


ARCHITECTURE = Architecture(
    name="LandmarkRefinerNet",
    network=LandmarkRefinerNet,
    purpose="landmarks",
    layout=_layout,
    options=_options,
    value_range=(0.0, 1.0),
    description="faceprior's landmark refiner: where the detector would have put a degraded face's landmarks on the sharp face",
)
