"""Restore a whole photo around its faces: :class:`PhotoRestorerNet`, a small blind restorer.

A face model restores faces only; in a degraded photo the hair, ears, neck and background around
them stay as blurred, noisy and blocky as they came (at 512 px half of an FFHQ-aligned portrait lies
outside faceprior-256's crop). The official GFP-GAN runs Real-ESRGAN on the background for that;
this network does the same job at the photo's own size, small enough for a CPU. It is trained here
(``faceprior.training.photo_restorer``) with an L1 loss on CelebA-HQ photos degraded with the
paper's recipe without its colour steps (blur, downsampling, noise, JPEG), milder versions and
clean copies, so that it takes blur, noise and blocks off and leaves a sharp photo, and every
photo's colours, as they are.

Layout: the photo is folded into 2 x 2 blocks (``pixel_unshuffle``; 12 channels at half size), two
convs there, folded again (1/4 size), a chain of residual blocks at 1/4 size, unfolded back to half
size and joined with the half-size features, two convs, unfolded to full size and added to the
input. ``macs_per_pixel`` counts its cost.

Input and output: [B, 3, H, W] RGB in [0, 1], any H, W (padded to a multiple of 4 inside).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, Shapes, indices, require

__all__ = ["ARCHITECTURE", "PhotoRestorerNet"]


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3 convs of ``width`` channels."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class PhotoRestorerNet(nn.Module):
    """Degraded photo -> restored photo, [B, 3, H, W] in [0, 1] (the output is clamped to [0, 1]).

    half_width: channels at half size. width: channels at quarter size. blocks: residual blocks
    at quarter size.
    """

    def __init__(self, half_width: int = 32, width: int = 64, blocks: int = 6):
        super().__init__()
        self.half_in = nn.Conv2d(12, half_width, 3, padding=1)
        self.half_mid = nn.Conv2d(half_width, half_width, 3, padding=1)
        self.quarter_in = nn.Conv2d(4 * half_width, width, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.quarter_out = nn.Conv2d(width, 4 * half_width, 3, padding=1)
        self.half_join = nn.Conv2d(2 * half_width, half_width, 3, padding=1)
        self.half_out = nn.Conv2d(half_width, 12, 3, padding=1)

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        if photos.dim() != 4 or photos.shape[1] != 3:
            raise ValueError(f"expected photos [B, 3, H, W], got {tuple(photos.shape)}")
        height, width = photos.shape[-2:]
        pad_y, pad_x = -height % 4, -width % 4
        x = F.pad(photos, (0, pad_x, 0, pad_y), mode="replicate") if pad_x or pad_y else photos
        half = F.relu(self.half_in(F.pixel_unshuffle(x * 2 - 1, 2)))        # [B, C, H/2, W/2]
        half = F.relu(self.half_mid(half))
        quarter = F.relu(self.quarter_in(F.pixel_unshuffle(half, 2)))        # [B, C', H/4, W/4]
        quarter = self.body(quarter)
        up = F.relu(F.pixel_shuffle(self.quarter_out(quarter), 2))           # [B, C, H/2, W/2]
        half = F.relu(self.half_join(torch.cat([half, up], dim=1)))
        out = x + F.pixel_shuffle(self.half_out(half), 2) * 0.5
        return out[..., :height, :width].clamp(0.0, 1.0)


def macs_per_pixel(network: PhotoRestorerNet) -> float:
    """Multiply-accumulates per photo pixel of one forward (convs only)."""
    total = 0.0
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            area = 1 / 4 if name.startswith("half") else 1 / 16
            total += module.weight.numel() * area
    return total


def _layout(shapes: Shapes) -> bool:
    return "half_in.weight" in shapes and "quarter_in.weight" in shapes and "half_out.weight" in shapes \
        and tuple(shapes["half_in.weight"])[1:] == (12, 3, 3)


def _options(shapes: Shapes) -> dict[str, Any]:
    return {"half_width": int(require(shapes, "half_in.weight", "PhotoRestorerNet")[0]),
            "width": int(require(shapes, "quarter_in.weight", "PhotoRestorerNet")[0]),
            "blocks": len(indices(shapes, r"body\.(\d+)\.conv1\.weight"))}


ARCHITECTURE = Architecture(
    name="PhotoRestorerNet",
    network=PhotoRestorerNet,
    purpose="background",
    layout=_layout,
    options=_options,
    value_range=(0.0, 1.0),
    description="faceprior's small blind restorer of whole photos (blur, noise, JPEG) around the faces",
)
