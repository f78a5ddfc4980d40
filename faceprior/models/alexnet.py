"""AlexNet feature extractor (the LPIPS "alex" backbone), laid out like torchvision's ``alexnet().features``.

torchvision's AlexNet is the "one weird trick" variant (Krizhevsky 2014): 64/192/384/256/256
channels. ``self.features`` is an ``nn.Sequential`` with exactly torchvision's module indices::

    0 conv1 (3->64, 11x11, stride 4, pad 2)   1 relu1   2 pool1 (3x3, stride 2)
    3 conv2 (64->192, 5x5, pad 2)             4 relu2   5 pool2
    6 conv3 (192->384, 3x3, pad 1)            7 relu3
    8 conv4 (384->256, 3x3, pad 1)            9 relu4
    10 conv5 (256->256, 3x3, pad 1)           11 relu5  12 pool5

so the state-dict keys are ``features.{0,3,6,8,10}.{weight,bias}`` and torchvision's ImageNet file
``alexnet-owt-7be5be79.pth`` loads with :func:`load_alexnet_weights` (its ``classifier.*`` tensors
are ignored). The input is whatever the caller normalised (no normalisation inside).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch
from torch import nn

from faceprior.models.architecture import load_state_dict_strict
from faceprior.weights.checkpoint import CheckpointError, read_state_dict

__all__ = ["ALEXNET_LAYER_NAMES", "AlexNetFeatures", "load_alexnet_weights"]

ALEXNET_LAYER_NAMES = (
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
    "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5",
)


class AlexNetFeatures(nn.Module):
    """The convolutional part of AlexNet, returning named intermediate features.

    Args:
        layers: names (from :data:`ALEXNET_LAYER_NAMES`) returned by ``forward`` by default
            (default: the five ReLU outputs, the LPIPS taps).
        requires_grad: train the weights (default False: frozen).
    """

    def __init__(self, layers: Optional[Sequence[str]] = None, requires_grad: bool = False):
        super().__init__()
        self.layer_names = list(ALEXNET_LAYER_NAMES)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.layers = self._checked_layers(layers if layers is not None else ["relu1", "relu2", "relu3", "relu4", "relu5"])
        self.requires_grad_(requires_grad)

    def _checked_layers(self, layers: Sequence[str]) -> list[str]:
        unknown = [name for name in layers if name not in self.layer_names]
        if unknown:
            raise ValueError(f"unknown AlexNet layer(s) {unknown}; known: {', '.join(self.layer_names)}")
        return list(layers)

    def forward(self, x: torch.Tensor, layers: Optional[Sequence[str]] = None) -> dict[str, torch.Tensor]:
        """x: [B, 3, H, W] (H, W >= 63) -> {name: feature [B, C, h, w]} for the requested layers.

        The pass stops after the deepest requested layer. ReLUs are not in-place, so a stored
        ``conv*`` feature stays pre-activation.
        """
        wanted = self.layers if layers is None else self._checked_layers(layers)
        if not wanted:
            return {}
        last = max(self.layer_names.index(name) for name in wanted)
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.layer_names[: last + 1], self.features):
            x = module(x)
            if name in wanted:
                out[name] = x
        return {name: out[name] for name in wanted}


def load_alexnet_weights(model: AlexNetFeatures, path: Union[str, os.PathLike]) -> None:
    """Load a torchvision-format AlexNet file (``features.*`` keys, strict; ``classifier.*`` ignored).

    Raises ``CheckpointError`` (unreadable file, no ``features.*`` tensors) or ``ArchitectureError``
    (keys/shapes do not fit), one line naming the file.
    """
    state_dict = read_state_dict(path)
    features = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    if not features:
        raise CheckpointError(path, "no 'features.*' tensors; not a torchvision AlexNet weight file")
    load_state_dict_strict(model, features, source=str(path))
