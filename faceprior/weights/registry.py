"""The registered models: the officially released GFP-GAN weights, by name.

``MODELS`` is a plain dict ``{name: RegisteredModel}``; every entry says where the file is
published, how to check it, and exactly which network (class name + constructor kwargs) it
belongs to. :func:`faceprior.load_model` accepts these names.

SHA-256 values and sizes are the ones published for the official release files. Where no value
could be established from public sources the field is None and that check is skipped:
``gfpgan-1`` has neither, ``gfpgan-1.2`` has no size (see docs/weights.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from faceprior.face.templates import FFHQ_TEMPLATE_512
from faceprior.weights.store import fetch, weights_dir

__all__ = ["MODELS", "RegisteredModel", "cached_models", "fetch_registered", "get_registered", "registered_path"]

_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"

_GFPGAN_LICENSE = "Apache-2.0"


@dataclass(frozen=True)
class RegisteredModel:
    """One released weight file and the network it belongs to.

    Attributes:
        name: the name users pass to ``load_model`` (e.g. ``"gfpgan-1.4"``).
        filename: file name of the release asset, also its name in the weight cache.
        url: official download URL.
        sha256: hex SHA-256 of the release file, or None if unknown (then not checked).
        size: size in bytes, or None if unknown.
        arch: official class name of the network (a key of ``faceprior.models.ARCHITECTURES``).
        kwargs: exact constructor kwargs, as the official ``GFPGANer`` passes them.
        input_size: side of the square aligned face the model takes and returns, in pixels.
        face_template: [5, 2] landmark template (x, y) of the aligned input, in pixels.
        license: licence of the released weights, as stated by the publisher.
        description: one line on what the model is.
        mirrors: extra download locations of the same file (tried after ``url``).
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    arch: str
    kwargs: Mapping[str, Any]
    input_size: int
    face_template: np.ndarray = field(repr=False, compare=False)
    license: str
    description: str
    mirrors: tuple[str, ...] = ()


def _gfpgan_kwargs(**overrides: Any) -> Mapping[str, Any]:
    # GFPGANer(arch='clean', channel_multiplier=2) builds exactly these (gfpgan 1.3.8, gfpgan/utils.py).
    kwargs = dict(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    kwargs.update(overrides)
    return MappingProxyType(kwargs)


MODELS: dict[str, RegisteredModel] = {
    entry.name: entry
    for entry in (
        RegisteredModel(
            name="gfpgan-1",
            filename="GFPGANv1.pth",
            url=f"{_RELEASES}/v0.1.0/GFPGANv1.pth",
            sha256=None,  # no published checksum found
            size=None,
            arch="GFPGANv1",
            # GFPGANer(arch='original', channel_multiplier=1)
            kwargs=_gfpgan_kwargs(channel_multiplier=1, fix_decoder=True),
            input_size=512,
            face_template=FFHQ_TEMPLATE_512,
            license=_GFPGAN_LICENSE,
            description="The paper model (CVPR 2021): original architecture with UpFirDn resampling; also colourises",
        ),
        RegisteredModel(
            name="gfpgan-1.2",
            filename="GFPGANCleanv1-NoCE-C2.pth",
            url=f"{_RELEASES}/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
            sha256="29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c",
            size=None,  # about 332.5 MiB; the exact byte count is not published
            arch="GFPGANv1Clean",
            kwargs=_gfpgan_kwargs(),
            input_size=512,
            face_template=FFHQ_TEMPLATE_512,
            license=_GFPGAN_LICENSE,
            description="Clean architecture (plain PyTorch ops), no colourisation, sharper output",
        ),
        RegisteredModel(
            name="gfpgan-1.3",
            filename="GFPGANv1.3.pth",
            url=f"{_RELEASES}/v1.3.0/GFPGANv1.3.pth",
            sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
            size=348632874,
            arch="GFPGANv1Clean",
            kwargs=_gfpgan_kwargs(),
            input_size=512,
            face_template=FFHQ_TEMPLATE_512,
            license=_GFPGAN_LICENSE,
            description="Clean architecture; more natural results, better on very low quality inputs",
        ),
        RegisteredModel(
            name="gfpgan-1.4",
            filename="GFPGANv1.4.pth",
            url=f"{_RELEASES}/v1.3.0/GFPGANv1.4.pth",
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            size=348632874,
            arch="GFPGANv1Clean",
            kwargs=_gfpgan_kwargs(),
            input_size=512,
            face_template=FFHQ_TEMPLATE_512,
            license=_GFPGAN_LICENSE,
            description="Clean architecture; more details and better identity than 1.3",
            mirrors=(f"{_RELEASES}/v1.3.4/GFPGANv1.4.pth",),
        ),
    )
}


def get_registered(name: str) -> RegisteredModel:
    """The registry entry called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"no registered model {name!r}; known models: {', '.join(MODELS)}") from None


def registered_path(entry: RegisteredModel, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``entry``'s file lives in the weight cache (whether or not it is there)."""
    return weights_dir(cache_dir) / entry.filename


def cached_models(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{name: path}`` of the registered models whose file is present in the weight cache.

    Presence only (a file with the registered name); checksums are verified when a model is loaded.
    """
    return {name: registered_path(entry, cache_dir) for name, entry in MODELS.items() if registered_path(entry, cache_dir).is_file()}


def fetch_registered(entry: RegisteredModel, progress: bool = True, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (if needed) and verify ``entry``'s file; returns its path in the cache."""
    return fetch(
        entry.url,
        filename=entry.filename,
        sha256=entry.sha256,
        size=entry.size,
        mirrors=entry.mirrors,
        progress=progress,
        cache_dir=cache_dir,
    )
