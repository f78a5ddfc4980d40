"""The registered models: the officially released GFP-GAN weights and the bundled default, by name.

``MODELS`` is a plain dict ``{name: RegisteredModel}``; every entry says where the file is
published (or that it ships inside the package), how to check it, and exactly which network
(class name + constructor kwargs) it belongs to. :func:`faceprior.load_model` accepts these names.

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

from faceprior.face.templates import CELEBA_HQ_TEMPLATE_256, FFHQ_TEMPLATE_512
from faceprior.weights.store import WeightsUnavailableError, fetch, sha256_of_file, weights_dir

__all__ = ["MODELS", "RegisteredModel", "cached_models", "fetch_registered", "get_registered", "registered_path"]

_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"

_GFPGAN_LICENSE = "Apache-2.0"

# Where bundled weight files live: the package's data folder (installed with it, see pyproject.toml).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class RegisteredModel:
    """One released weight file and the network it belongs to.

    Attributes:
        name: the name users pass to ``load_model`` (e.g. ``"gfpgan-1.4"``).
        filename: file name of the release asset, also its name in the weight cache (or, for a
            bundled model, in the package's data folder).
        url: official download URL; None for a bundled model.
        sha256: hex SHA-256 of the release file, or None if unknown (then not checked).
        size: size in bytes, or None if unknown.
        arch: official class name of the network (a key of ``faceprior.models.ARCHITECTURES``).
        kwargs: exact constructor kwargs, as the official ``GFPGANer`` passes them.
        input_size: side of the square aligned face the model takes and returns, in pixels.
        face_template: [5, 2] landmark template (x, y) of the aligned input, in pixels.
        license: licence of the released weights, as stated by the publisher.
        description: one line on what the model is.
        mirrors: extra download locations of the same file (tried after ``url``).
        bundled: True when the file ships inside the package (``BUNDLED_DIR``): never downloaded.
    """

    name: str
    filename: str
    url: str | None
    sha256: str | None
    size: int | None
    arch: str
    kwargs: Mapping[str, Any]
    input_size: int
    face_template: np.ndarray = field(repr=False, compare=False)
    license: str
    description: str
    mirrors: tuple[str, ...] = ()
    bundled: bool = False


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
        RegisteredModel(
            name="faceprior-256",
            filename="faceprior-256.safetensors",
            url=None,
            sha256="2d75f48881efe43ea33398e6684ab03e3c42833e504f2da943895e8e40a25946",
            size=7076756,
            arch="GFPGANv1Clean",
            # configs/gfpgan_clean_256_cpu_eye_l1.yaml, shipped with --zero-noise (version 5: version 4 fine-tuned
            # with an L1 loss on eye and mouth crops; version 4: version 3, configs/gfpgan_clean_256_cpu_gate.yaml,
            # with the decoder noise strengths at zero; version 3: version 2, configs/gfpgan_clean_256_cpu_wide_id.yaml,
            # plus a trained input gate; version 1: configs/gfpgan_clean_256_cpu.yaml)
            kwargs=_gfpgan_kwargs(out_size=256, num_style_feat=64, channel_multiplier=1, num_mlp=4, narrow=0.25,
                                  input_gate=True),
            input_size=256,
            face_template=CELEBA_HQ_TEMPLATE_256,
            license="non-commercial research (trained on CelebA-HQ)",
            description="Small GFP-GAN trained by this project on a CPU; ships with the package (docs/default_model.md)",
            bundled=True,
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
    """Where ``entry``'s file lives: the weight cache (whether or not it is there), or the
    package's data folder for a bundled model."""
    if entry.bundled:
        return BUNDLED_DIR / entry.filename
    return weights_dir(cache_dir) / entry.filename


def cached_models(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{name: path}`` of the registered models whose file is present (weight cache or package).

    Presence only (a file with the registered name); checksums are verified when a model is loaded.
    """
    return {name: registered_path(entry, cache_dir) for name, entry in MODELS.items() if registered_path(entry, cache_dir).is_file()}


def fetch_registered(entry: RegisteredModel, progress: bool = True, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (if needed) and verify ``entry``'s file; returns its path (cache or package)."""
    if entry.bundled:
        return _verified_bundled_file(entry)
    return fetch(
        entry.url,
        filename=entry.filename,
        sha256=entry.sha256,
        size=entry.size,
        mirrors=entry.mirrors,
        progress=progress,
        cache_dir=cache_dir,
    )


def _verified_bundled_file(entry: RegisteredModel) -> Path:
    """The bundled file of ``entry`` after a size and SHA-256 check (never downloaded, never deleted)."""
    path = registered_path(entry)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: the bundled model file {entry.filename} is missing from this installation "
                                      "of faceprior; reinstall the package")
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsUnavailableError(f"{path}: bundled model file has {path.stat().st_size} bytes, expected {entry.size}; "
                                      "reinstall the package")
    if entry.sha256 is not None and sha256_of_file(path) != entry.sha256:
        raise WeightsUnavailableError(f"{path}: bundled model file does not match its SHA-256 {entry.sha256}; "
                                      "reinstall the package")
    return path
