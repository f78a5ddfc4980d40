"""How much of a restoration to keep: :class:`BlendWeightNet`, a small no-reference estimator.

Given an aligned face ``a`` and a model's restoration ``r`` of it, the network predicts the blend
weight ``w`` in [0, 1] for which ``a + w * (r - a)`` is closest to the clean face, which it never
sees: 0 for a face that was sharp already (the restoration can only take from it), near 1 for a
badly degraded one that the model helps, in between where the model helps part of the way.

It is trained here (``faceprior.training.blend_estimator``) on faces degraded with the paper's
recipe and milder and clean variants, with the loss ``log(mean((a + w (r - a) - gt)^2))`` over
the face, i.e. the PSNR of the blended face; docs/no_harm.md has the recipe and the curves.

Input: both faces at any size, resized (antialiased) to 256 x 256 when they are not. The
restoration is first moved to the input's mean colour over the face (:func:`same_colour`): a colour
change alone (a restoration taking the photo's own cast off a sharp face) is not help, only a change
of detail is. They enter as ``[a, r - a]`` (6 channels), so what the model changed is explicit. Five strided 3x3 convs reduce
them to 16 x 16 features, averaged with a fixed window centred on the face (the paste mask's
region), then two linear layers and a sigmoid. About 80 MMAC per face: a few milliseconds on a CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, Shapes, indices, require

__all__ = ["ANALYSIS_SIZE", "ARCHITECTURE", "BlendWeightNet", "centre_window", "same_colour"]

#: the side at which faces are analysed
ANALYSIS_SIZE = 256
#: the change r - a enters multiplied by this
CHANGE_GAIN = 8.0


def centre_window(size: int) -> torch.Tensor:
    """[size, size] float32 pooling weights summing to 1: a raised cosine over the central 80 %
    of each axis (the region a paste mask keeps), zero at the border."""
    position = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # pixel centres in (0, 1)
    inner = ((position - 0.1) / 0.8).clamp(0, 1)
    profile = 0.5 - 0.5 * torch.cos(2 * math.pi * inner)
    window = torch.outer(profile, profile)
    return (window / window.sum()).float()


def same_colour(restored: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``restored`` with each channel's mean over the face (the centre window) moved to that of
    ``faces``: what the estimator judges, so that a colour change alone (a restoration that takes
    the photo's own colour cast off a sharp face) is not taken for help. [B, 3, S, S] in [0, 1]."""
    window = centre_window(faces.shape[-1]).to(faces)
    shift = ((faces - restored) * window).sum(dim=(2, 3), keepdim=True)
    return (restored + shift).clamp(0, 1)


class BlendWeightNet(nn.Module):
    """(a, r) -> w. a, r: [B, 3, H, W] in [0, 1] (H = W); returns w [B] in [0, 1].

    widths: output channels of the five convs (the first four halve the resolution: 256 -> 16).
    hidden: width of the hidden linear layer.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 32, 48, 64, 64), hidden: int = 32):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"BlendWeightNet takes five conv widths, got {widths}")
        layers: list[nn.Module] = []
        channels = 6
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, stride=2 if index < 4 else 1, padding=1),
                       nn.GroupNorm(4, width), nn.LeakyReLU(0.2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.register_buffer("window", centre_window(ANALYSIS_SIZE // 16), persistent=False)

    def forward(self, inputs: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(inputs, restored))

    def logits(self, inputs: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid output [B] (what training differentiates through)."""
        if inputs.shape != restored.shape or inputs.dim() != 4 or inputs.shape[1] != 3:
            raise ValueError(f"expected two [B, 3, H, W] batches of one shape, got {tuple(inputs.shape)} "
                             f"and {tuple(restored.shape)}")
        restored = same_colour(restored, inputs)
        if inputs.shape[-2:] != (ANALYSIS_SIZE, ANALYSIS_SIZE):
            pair = F.interpolate(torch.cat([inputs, restored]), size=(ANALYSIS_SIZE, ANALYSIS_SIZE),
                                 mode="bilinear", align_corners=False, antialias=True)
            inputs, restored = pair.chunk(2)
        # centred input, and the change scaled up: it is a few levels where the model did little
        features = self.features(torch.cat([inputs * 2 - 1, (restored - inputs) * CHANGE_GAIN], dim=1))  # [B, C, 16, 16]
        pooled = (features * self.window).sum(dim=(2, 3))                          # [B, C]
        return self.head(pooled).squeeze(1)


def _conv_indices(shapes: Shapes) -> list[int]:
    """Indices of the convs in ``features`` (4-d weights; the norms' weights are 1-d)."""
    return [i for i in indices(shapes, r"features\.(\d+)\.weight") if len(shapes[f"features.{i}.weight"]) == 4]


def _layout(shapes: Shapes) -> bool:
    return "features.0.weight" in shapes and "head.2.weight" in shapes and tuple(shapes["features.0.weight"])[1:] == (6, 3, 3) \
        and len(_conv_indices(shapes)) == 5


def _options(shapes: Shapes) -> dict[str, Any]:
    widths = tuple(int(require(shapes, f"features.{i}.weight", "BlendWeightNet")[0]) for i in _conv_indices(shapes))
    return {"widths": widths, "hidden": int(require(shapes, "head.0.weight", "BlendWeightNet")[0])}


ARCHITECTURE = Architecture(
    name="BlendWeightNet",
    network=BlendWeightNet,
    purpose="estimator",
    layout=_layout,
    options=_options,
    value_range=(0.0, 1.0),
    description="faceprior's per-face blend-weight estimator (--weight auto): how much of a restoration to keep",
)
