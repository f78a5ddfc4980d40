"""A toy restoration architecture, written the way a new architecture is added to faceprior: this one
module (the network and its :class:`~faceprior.models.architecture.Architecture`), plus one entry in
``faceprior.models.ARCHITECTURES`` (which the test adds). Nothing else in the package changes."""

from __future__ import annotations

import torch
from torch import nn

from faceprior.models.architecture import Architecture, Shapes, require


class ToyRestorer(nn.Module):
    """x [B, 3, S, S] in [-1, 1] -> x + a learned correction (one 3x3 conv and a learned bias map)."""

    def __init__(self, channels: int = 8, size: int = 32):
        super().__init__()
        self.toy_body = nn.Conv2d(3, channels, 3, padding=1)
        self.toy_head = nn.Conv2d(channels, 3, 3, padding=1)
        self.toy_bias = nn.Parameter(torch.zeros(1, 3, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.toy_head(torch.relu(self.toy_body(x))) + self.toy_bias


def _options(shapes: Shapes) -> dict:
    return {"channels": require(shapes, "toy_body.weight", "ToyRestorer")[0],
            "size": require(shapes, "toy_bias", "ToyRestorer")[-1]}


ARCHITECTURE = Architecture(
    name="ToyRestorer",
    network=ToyRestorer,
    purpose="restoration",
    layout=lambda shapes: "toy_body.weight" in shapes and "toy_head.weight" in shapes,
    options=_options,
    face_size=lambda options: options["size"],
    restore=lambda network, x, fidelity, randomize_noise: network(x),
    description="a toy network for the structure tests",
)
