"""The networks, under their official class names, and the table of loadable architectures.

Each network file declares, next to its class, an :class:`~faceprior.models.architecture.Architecture`:
how to recognise the class's state dicts, how to read its constructor options off them, what it is
for and what it can do. ``ARCHITECTURES`` lists them; a state dict is matched against them in this
order. Adding an architecture is one new file plus one line here::

    from faceprior.models import create_model
    model = create_model("GFPGANv1Clean", out_size=512, channel_multiplier=2, different_w=True, sft_half=True)

    from faceprior.models.loading import resolve_model   # name / path / URL / module -> ModelDescriptor
"""

from __future__ import annotations

from typing import Any

from torch import nn

from faceprior.models import (
    arcface,
    blend_estimator,
    codeformer,
    gfpgan_bilinear,
    gfpgan_clean,
    gfpgan_v1,
    gpen,
    landmark_refiner,
    photo_restorer,
    restoreformer,
    rrdbnet,
    stylegan2,
    stylegan2_clean,
)
from faceprior.models.arcface import ResNetArcFace
from faceprior.models.architecture import Architecture, ArchitectureError
from faceprior.models.codeformer import CodeFormer
from faceprior.models.gfpgan_bilinear import GFPGANBilinear
from faceprior.models.gfpgan_clean import GFPGANv1Clean
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator, GFPGANv1
from faceprior.models.gpen import FullGenerator
from faceprior.models.restoreformer import RestoreFormer, VQVAEGANMultiHeadTransformer
from faceprior.models.rrdbnet import RRDBNet
from faceprior.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean

__all__ = [
    "ARCHITECTURES",
    "ARCH_ALIASES",
    "CodeFormer",
    "FacialComponentDiscriminator",
    "FullGenerator",
    "GFPGANBilinear",
    "GFPGANv1",
    "GFPGANv1Clean",
    "RRDBNet",
    "ResNetArcFace",
    "RestoreFormer",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "StyleGAN2GeneratorClean",
    "VQVAEGANMultiHeadTransformer",
    "create_model",
    "get_architecture",
]

#: Every architecture a weight file can be loaded as, by official class name, in recognition order.
ARCHITECTURES: dict[str, Architecture] = {
    architecture.name: architecture
    for architecture in (
        gfpgan_clean.ARCHITECTURE,
        gfpgan_v1.ARCHITECTURE,
        gfpgan_bilinear.ARCHITECTURE,
        restoreformer.ARCHITECTURE_RESTOREFORMER,
        restoreformer.ARCHITECTURE_RESTOREFORMER_PP,
        codeformer.ARCHITECTURE,
        gpen.ARCHITECTURE,
        stylegan2_clean.ARCHITECTURE,
        stylegan2.GENERATOR_ARCHITECTURE,
        stylegan2.DISCRIMINATOR_ARCHITECTURE,
        gfpgan_v1.COMPONENT_DISCRIMINATOR_ARCHITECTURE,
        arcface.ARCHITECTURE,
        rrdbnet.ARCHITECTURE,
        blend_estimator.ARCHITECTURE,
        photo_restorer.ARCHITECTURE,
        landmark_refiner.ARCHITECTURE,
    )
}

#: Other names of architectures: GFPGANer's ``arch`` strings, and the short names of the others.
ARCH_ALIASES = {"clean": "GFPGANv1Clean", "original": "GFPGANv1", "bilinear": "GFPGANBilinear",
                "RestoreFormer++": "VQVAEGANMultiHeadTransformer", "FullGenerator": "GPEN"}


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name`` (official class name or alias); ArchitectureError otherwise."""
    name = ARCH_ALIASES.get(name, name)
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build the network whose official class name is ``arch`` with constructor ``kwargs``.

    The weights are the constructor's random init; use :func:`faceprior.load_model` to load a
    checkpoint. Raises ``ArchitectureError`` (listing the known names) for an unknown ``arch``.
    """
    return get_architecture(arch).network(**kwargs)
