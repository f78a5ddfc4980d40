"""LPIPS (Zhang, Isola, Efros, Shechtman and Wang, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", CVPR 2018), with the semantics of the ``lpips`` package v0.1 (0.1.4).

For images ``x``, ``y`` (RGB in [-1, 1], shape [N, 3, H, W]):
  1. the ScalingLayer: ``(x - shift) / scale`` with shift = (-0.030, -0.088, -0.188) and
     scale = (0.458, 0.448, 0.450) (the ImageNet statistics expressed in [-1, 1]);
  2. backbone features after the ReLUs of five stages: AlexNet ``relu1..relu5`` (torchvision
     ``features`` indices 1, 4, 7, 9, 11), or VGG16 ``relu1_2, relu2_2, relu3_3, relu4_3,
     relu5_3`` (indices 3, 8, 15, 22, 29);
  3. per stage: unit-normalise each pixel's channel vector (``f / (||f||_2 + 1e-10)``), square
     the difference of the two images, weight the channels with the learned non-negative 1x1
     convolution ``lin{k}`` (one output channel, no bias), average over space;
  4. sum over the five stages.
The result is one value per image pair, >= 0 (0 for identical images; typical values 0..~0.8,
lower is more similar). Dropout layers of the package's linear heads are only active in training and
are left out here (the weight keys ``lin{k}.model.1.weight`` are kept).

Weights (two files per variant, see :func:`load_lpips`):
  * backbone: torchvision's ImageNet files ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``
    (download.pytorch.org), through the weight store;
  * linear heads: ``lpips/weights/v0.1/{alex,vgg}.pth`` shipped in the ``lpips`` 0.1.4 wheel on
    PyPI (BSD-2-Clause), extracted with ``pip download`` into ``<weights dir>/lpips-v0.1/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceprior.metrics.availability import fetch_metric_weights
from faceprior.metrics.color import ImageInputError
from faceprior.metrics.identity import rgb_image_to_tensor
from faceprior.models.alexnet import AlexNetFeatures, load_alexnet_weights
from faceprior.models.loading import check_state_dict
from faceprior.models.vgg import VGG16Features, load_vgg_weights
from faceprior.weights.checkpoint import read_state_dict

__all__ = [
    "LPIPS",
    "LPIPS_CHANNELS",
    "LPIPS_NETS",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "LPIPS_TAPS",
    "load_lpips",
    "load_lpips_linear_weights",
    "lpips_distance",
    "lpips_linear_weights_path",
    "normalize_channels",
]

LPIPS_NETS = ("alex", "vgg")

# ScalingLayer constants of lpips v0.1 (inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

LPIPS_TAPS = {
    "alex": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
}
LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}

# The backbones (torchvision's ImageNet AlexNet and VGG16) by weight-catalogue name; the calibrated
# linear heads are the catalogue entries lpips-alex / lpips-vgg (the lpips 0.1.4 wheel's files).
_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}

_EPS = 1e-10


def _check_net(net: str) -> str:
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {', '.join(LPIPS_NETS)}")
    return net


def normalize_channels(features: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """[N, C, H, W] -> the same with each pixel's channel vector divided by (its L2 norm + eps)."""
    norm = torch.sqrt(torch.sum(features * features, dim=1, keepdim=True))
    return features / (norm + eps)


class LinearHead(nn.Module):
    """A 1x1 convolution C -> 1 without bias; ``model.0`` (lpips' training dropout) is an identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with an AlexNet (``net="alex"``) or VGG16 (``net="vgg"``) backbone.

    State dict: ``net.features.*`` (torchvision layout of the backbone's ``features``) and
    ``lin0..lin4.model.1.weight`` [1, C_k, 1, 1] (the lpips package's keys). Weights are random
    until loaded (:func:`load_lpips`). The module is frozen and starts in eval mode.
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        self.net_name = _check_net(net)
        taps = LPIPS_TAPS[net]
        if net == "alex":
            self.net: nn.Module = AlexNetFeatures(layers=taps)
        else:
            self.net = VGG16Features(layers=taps, use_input_norm=False, range_norm=False)
        channels = LPIPS_CHANNELS[net]
        self.lin0 = LinearHead(channels[0])
        self.lin1 = LinearHead(channels[1])
        self.lin2 = LinearHead(channels[2])
        self.lin3 = LinearHead(channels[3])
        self.lin4 = LinearHead(channels[4])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def heads(self) -> list[LinearHead]:
        return [self.lin0, self.lin1, self.lin2, self.lin3, self.lin4]

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        """The five per-stage terms, each [N] (their sum is ``forward``); arguments as ``forward``."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise ValueError(f"LPIPS expects two [N, 3, H, W] tensors of one shape, got {list(x.shape)} and {list(y.shape)}")
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        both = torch.cat([x, y]).to(self.shift.dtype)
        features = self.net((both - self.shift) / self.scale)
        n = x.shape[0]
        terms = []
        for head, tap in zip(self.heads, LPIPS_TAPS[self.net_name]):
            f = normalize_channels(features[tap])
            terms.append(head((f[:n] - f[n:]) ** 2).mean(dim=(1, 2, 3)))
        return terms

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """x, y: [N, 3, H, W] RGB in [-1, 1] (or [0, 1] with ``normalize=True``) -> distances [N].

        H and W must be at least 63 for AlexNet and 16 for VGG16 (the last stage must be non-empty).
        """
        return torch.stack(self.layer_distances(x, y, normalize)).sum(dim=0)


# ----------------------------------------------------------------------------------------------
# Weights


def lpips_linear_weights_path(net: str = "alex", cache_dir: str | os.PathLike | None = None) -> Path:
    """The lpips v0.1 linear heads ``{alex,vgg}.pth`` (catalogue entries ``lpips-alex`` / ``lpips-vgg``),
    read out of the lpips 0.1.4 wheel if missing (``pip download lpips==0.1.4 --no-deps`` with the user's
    pip configuration, unless ``FACEPRIOR_OFFLINE`` is set) and checked against their SHA-256.
    Raises MetricUnavailable (one line: what to put where) otherwise."""
    _check_net(net)
    return fetch_metric_weights(f"LPIPS ({net})", f"lpips-{net}", cache_dir=cache_dir)


def load_lpips_linear_weights(model: LPIPS, path: str | os.PathLike) -> None:
    """Load an lpips linear-head file (``lin{k}.model.1.weight``, exactly those five) into ``model``."""
    state_dict = read_state_dict(path)
    own = model.state_dict()
    expected = {k: v for k, v in own.items() if k.startswith("lin")}
    check_state_dict(expected, state_dict, f"LPIPS ({model.net_name}) linear layers", str(path))
    own.update(state_dict)
    model.load_state_dict(own, strict=True)


def load_lpips(net: str = "alex", device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None) -> LPIPS:
    """The LPIPS v0.1 metric with its published weights, in eval mode on ``device``.

    Needs the torchvision backbone file (``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``,
    checked against the SHA-256 prefix in its name) and the linear heads of the lpips wheel (see
    :func:`lpips_linear_weights_path`). Raises MetricUnavailable when either cannot be obtained.
    """
    _check_net(net)
    model = LPIPS(net)
    backbone = fetch_metric_weights(f"LPIPS ({net})", _BACKBONES[net], cache_dir=cache_dir)
    if net == "alex":
        load_alexnet_weights(model.net, backbone)
    else:
        load_vgg_weights(model.net, backbone)
    load_lpips_linear_weights(model, lpips_linear_weights_path(net, cache_dir))
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------
# numpy images


def lpips_distance(img: np.ndarray, ref: np.ndarray, model: LPIPS) -> float:
    """LPIPS between two [H, W, 3] RGB images (uint8, or float in [0, 1]) of one size; >= 0, lower is closer."""
    if np.shape(img) != np.shape(ref):
        raise ImageInputError(f"LPIPS: image shapes differ: {np.shape(img)} vs {np.shape(ref)}")
    device = model.shift.device
    x, y = rgb_image_to_tensor(img, "img").to(device), rgb_image_to_tensor(ref, "ref").to(device)
    with torch.inference_mode():
        return float(model(x, y)[0])
