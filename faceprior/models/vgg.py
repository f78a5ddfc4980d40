"""VGG feature extractors for the perceptual and style losses.

The convolutions live in ``self.features``, an ``nn.Sequential`` laid out exactly like
torchvision's ``vgg19().features`` (``features.0`` = conv1_1, ``features.1`` = its ReLU, ...), so the
state-dict keys are ``features.{i}.weight`` / ``features.{i}.bias`` and a torchvision weight file
(e.g. ``vgg19-dcbb9e9d.pth``) loads with :func:`load_vgg_weights`; its ``classifier.*`` tensors are
ignored.

Layers are named as in basicsr's ``VGGFeatureExtractor``: ``conv3_4`` is the output of the fourth
convolution of block 3 *before* its ReLU, ``relu3_4`` the same after the ReLU, ``pool3`` the max-pool
closing block 3. GFP-GAN's perceptual loss uses the before-ReLU features ``conv1_2``, ``conv2_2``,
``conv3_4``, ``conv4_4`` and ``conv5_4``.

Input normalisation follows basicsr: with ``range_norm`` the input is mapped from [-1, 1] to
[0, 1], then with ``use_input_norm`` it is standardised with the ImageNet mean/std.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch
from torch import nn

from faceprior.models.architecture import load_state_dict_strict
from faceprior.weights.checkpoint import CheckpointError, read_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_CONFIG",
    "VGG19_CONFIG",
    "VGG16Features",
    "VGG19Features",
    "VGGFeatures",
    "load_vgg19_weights",
    "load_vgg_weights",
    "vgg19_layer_names",
    "vgg_layer_names",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Output channels of each 3x3 convolution; "M" is a 2x2 max-pool (torchvision configs "D" and "E").
VGG16_CONFIG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_CONFIG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg_layer_names(config: Sequence[Union[int, str]]) -> list[str]:
    """Names of the modules of ``features`` in order: conv{b}_{i}, relu{b}_{i}, ..., pool{b}."""
    names: list[str] = []
    block, index = 1, 1
    for item in config:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def vgg19_layer_names() -> list[str]:
    """The 37 layer names of VGG19 (conv1_1, relu1_1, conv1_2, relu1_2, pool1, ..., pool5)."""
    return vgg_layer_names(VGG19_CONFIG)


class VGGFeatures(nn.Module):
    """The convolutional part of a VGG network, returning named intermediate features.

    Args:
        config: conv output channels and "M" (max-pool) entries, e.g. :data:`VGG19_CONFIG`.
        layers: names returned by ``forward`` when it is not given ``layers`` (default: all
            ``conv*`` layers, i.e. before-ReLU features).
        use_input_norm: standardise the [0, 1] input with the ImageNet mean/std.
        range_norm: first map the input from [-1, 1] to [0, 1].
        requires_grad: train the VGG weights (default False: frozen, as in basicsr).

    Weights are randomly initialised (torchvision's scheme); load ImageNet weights with
    :func:`load_vgg_weights`.
    """

    def __init__(self, config: Sequence[Union[int, str]], layers: Optional[Sequence[str]] = None,
                 use_input_norm: bool = True, range_norm: bool = False, requires_grad: bool = False):
        super().__init__()
        self.layer_names = vgg_layer_names(config)
        modules: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
                in_channels = int(item)
        self.features = nn.Sequential(*modules)
        self.layers = self._checked_layers(layers if layers is not None else
                                           [n for n in self.layer_names if n.startswith("conv")])
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        # Not persistent: the state dict holds exactly torchvision's features.* keys.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.requires_grad_(requires_grad)

    def _checked_layers(self, layers: Sequence[str]) -> list[str]:
        unknown = [name for name in layers if name not in self.layer_names]
        if unknown:
            raise ValueError(f"unknown VGG layer(s) {unknown}; known: {', '.join(self.layer_names)}")
        return list(layers)

    def forward(self, x: torch.Tensor, layers: Optional[Sequence[str]] = None) -> dict[str, torch.Tensor]:
        """x: images [B, 3, H, W] in [-1, 1] (``range_norm``) or [0, 1] -> {name: feature [B, C, h, w]}.

        ``layers`` (default: the constructor's) selects the returned features; the forward pass
        stops after the deepest one. Conv features are the pre-activation outputs.
        """
        wanted = self.layers if layers is None else self._checked_layers(layers)
        if not wanted:
            return {}
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        last = max(self.layer_names.index(name) for name in wanted)
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.layer_names[:last + 1], self.features):
            x = module(x)  # ReLUs are not in-place, so stored conv outputs stay pre-activation
            if name in wanted:
                out[name] = x
        return {name: out[name] for name in wanted}


class VGG19Features(VGGFeatures):
    """VGG19 features (torchvision ``vgg19().features`` layout: 16 convs, 37 modules)."""

    def __init__(self, layers: Optional[Sequence[str]] = None, use_input_norm: bool = True,
                 range_norm: bool = False, requires_grad: bool = False):
        super().__init__(VGG19_CONFIG, layers, use_input_norm, range_norm, requires_grad)


class VGG16Features(VGGFeatures):
    """VGG16 features (torchvision ``vgg16().features`` layout: 13 convs, 31 modules)."""

    def __init__(self, layers: Optional[Sequence[str]] = None, use_input_norm: bool = True,
                 range_norm: bool = False, requires_grad: bool = False):
        super().__init__(VGG16_CONFIG, layers, use_input_norm, range_norm, requires_grad)


def load_vgg_weights(model: VGGFeatures, path: Union[str, os.PathLike]) -> None:
    """Load a torchvision-format VGG weight file (``features.*`` keys; ``classifier.*`` ignored).

    Strict on the ``features.*`` keys and shapes. Raises ``CheckpointError`` (unreadable file or no
    ``features.*`` tensors) or ``ArchitectureError`` (keys/shapes do not fit), one line naming the file.
    """
    state_dict = read_state_dict(path)
    features = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    if not features:
        raise CheckpointError(path, "no 'features.*' tensors; not a torchvision VGG weight file")
    load_state_dict_strict(model, features, source=str(path))


def load_vgg19_weights(model: VGG19Features, path: Union[str, os.PathLike]) -> None:
    """Load torchvision's ``vgg19-dcbb9e9d.pth`` (or any torchvision-format VGG19 file) into ``model``."""
    if not isinstance(model, VGG19Features):
        raise TypeError(f"load_vgg19_weights needs a VGG19Features model, got {type(model).__name__}")
    load_vgg_weights(model, path)
