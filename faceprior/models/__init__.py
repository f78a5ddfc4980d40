"""The networks, under their official class names.

``ARCHITECTURES`` maps each official class name (as in gfpgan / basicsr) to faceprior's class, so
that a checkpoint's architecture can be named the way the official code names it::

    from faceprior.models import create_model
    model = create_model("GFPGANv1Clean", out_size=512, channel_multiplier=2, different_w=True, sft_half=True)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from faceprior.models.arcface import ResNetArcFace
from faceprior.models.gfpgan_bilinear import GFPGANBilinear
from faceprior.models.gfpgan_clean import GFPGANv1Clean
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator, GFPGANv1
from faceprior.models.rrdbnet import RRDBNet
from faceprior.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean

__all__ = [
    "ARCHITECTURES",
    "FacialComponentDiscriminator",
    "GFPGANBilinear",
    "GFPGANv1",
    "GFPGANv1Clean",
    "RRDBNet",
    "ResNetArcFace",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "StyleGAN2GeneratorClean",
    "create_model",
]

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "GFPGANv1": GFPGANv1,
    "GFPGANv1Clean": GFPGANv1Clean,
    "GFPGANBilinear": GFPGANBilinear,
    "StyleGAN2Generator": StyleGAN2Generator,
    "StyleGAN2GeneratorClean": StyleGAN2GeneratorClean,
    "StyleGAN2Discriminator": StyleGAN2Discriminator,
    "FacialComponentDiscriminator": FacialComponentDiscriminator,
    "ResNetArcFace": ResNetArcFace,
    "RRDBNet": RRDBNet,
}


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build the network whose official class name is ``arch`` with constructor ``kwargs``.

    The weights are the constructor's random init; use :func:`faceprior.load_model` to load a
    checkpoint. Raises ``KeyError`` (listing the known names) for an unknown ``arch``.
    """
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}") from None
    return cls(**kwargs)
