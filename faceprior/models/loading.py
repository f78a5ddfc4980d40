"""From a model spec to a network: recognising state dicts, strict loading, ``resolve_model``.

:func:`resolve_model` is the one place where any spec becomes a model:

============================  ==================================================================
spec                          what happens
============================  ==================================================================
catalogue name                the file is fetched and checked (``faceprior.weights.catalogue``)
http(s) URL                   downloaded into the weight cache (checked if it is a catalogue URL)
path / ``file://`` URL        read in place
``nn.Module``                 described as it is (its class must be in the table)
``ModelDescriptor``           returned as it is
============================  ==================================================================

The file is read safely (``faceprior.weights.checkpoint``), its architecture is recognised from
the key names and tensor shapes alone by the table ``faceprior.models.ARCHITECTURES`` (each entry
declared next to its network), the network is built with the options read off the shapes, and
every key and shape is compared before any weight is loaded. The result is a
:class:`~faceprior.models.descriptor.ModelDescriptor`; :func:`load_model` returns its network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from faceprior.models import ARCHITECTURES, get_architecture
from faceprior.models.architecture import (
    Architecture,
    ArchitectureError,
    StateDictLike,
    check_state_dict,
    load_state_dict_strict,
    shapes_of,
)
from faceprior.models.descriptor import ModelDescriptor
from faceprior.paths import PathLike
from faceprior.weights.catalogue import WeightFile, locate_weights
from faceprior.weights.checkpoint import read_state_dict

__all__ = [
    "ModelSpec",
    "build_from_state_dict",
    "check_state_dict",
    "describe_network",
    "infer_architecture",
    "load_model",
    "load_state_dict_strict",
    "recognise",
    "resolve_model",
]

#: Anything :func:`resolve_model` accepts.
ModelSpec = Union[str, os.PathLike, nn.Module, ModelDescriptor]


# ----------------------------------------------------------------------------------------------
# Recognising a state dict


def _layout_names(shapes: Mapping[str, Any]) -> list[str]:
    """Names of the architectures whose key layout ``shapes`` has."""
    return [a.name for a in ARCHITECTURES.values() if a.layout(a.convert_keys(dict(shapes)))]


def recognise(state_dict: StateDictLike, arch: Optional[str] = None) -> tuple[Architecture, dict[str, Any]]:
    """The architecture a state dict belongs to and the constructor options it was made with.

    Args:
        state_dict: ``{key: tensor}`` or ``{key: shape}`` (only names and shapes are read), as
            stored in the file (an architecture's ``convert_keys`` is applied here).
        arch: force this architecture (official name or alias, e.g. GFPGANer's "clean" /
            "original" / "bilinear"); it must have the state dict's key layout. Needed only where
            layouts are shared (a channel-multiplier-1 file as GFPGANBilinear, say).

    Raises:
        ArchitectureError: unknown layout, or a layout that is not ``arch``'s; inconsistent shapes.
            (Whether every shape fits exactly is checked by :func:`check_state_dict`.)
    """
    shapes = shapes_of(state_dict)
    if arch is not None:
        architecture = get_architecture(arch)
        converted = architecture.convert_keys(dict(shapes))
        if not architecture.layout(converted):
            found = _layout_names(shapes)
            what = f"the {'|'.join(found)} layout" if found else "an unknown layout"
            raise ArchitectureError(f"the state dict has {what}, not the {architecture.name} one")
        return architecture, architecture.options(converted)
    for architecture in ARCHITECTURES.values():
        converted = architecture.convert_keys(dict(shapes))
        if architecture.recognises(converted):
            return architecture, architecture.options(converted)
    sample = ", ".join(list(shapes)[:4])
    raise ArchitectureError(f"unknown state-dict layout (first keys: {sample}); none of {', '.join(ARCHITECTURES)} matches")


def infer_architecture(state_dict: StateDictLike, arch: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """``(official class name, constructor kwargs)`` of a state dict; see :func:`recognise`."""
    architecture, options = recognise(state_dict, arch)
    return architecture.name, options


# ----------------------------------------------------------------------------------------------
# Any spec -> ModelDescriptor


def describe_network(network: nn.Module, name: Optional[str] = None) -> ModelDescriptor:
    """The descriptor of a network built elsewhere (its class must be in ``ARCHITECTURES``).

    Its options are read off its own state dict, as for a file, and off the network where the
    architecture says so (:meth:`Architecture.network_options`). The network is not changed (not
    even its mode).
    """
    architecture = next((a for a in ARCHITECTURES.values() if type(network) is a.network), None)
    if architecture is None:
        raise ArchitectureError(f"{type(network).__name__} is not a known architecture; known: {', '.join(ARCHITECTURES)}")
    options = architecture.network_options(network)
    return ModelDescriptor(network, architecture, options, name=name or type(network).__name__,
                           source="a module passed in")


def resolve_model(
    spec: ModelSpec,
    arch: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
    *,
    key: Optional[str] = None,
    progress: bool = True,
    cache_dir: Optional[PathLike] = None,
    **kwargs: Any,
) -> ModelDescriptor:
    """A network with loaded weights (eval mode, on ``device``) and what it is.

    Args:
        spec: a catalogue name (``faceprior models``, e.g. ``"gfpgan-1.4"``), a path to a
            ``.pth``/``.ckpt``/``.safetensors`` file, an http(s) or ``file://`` URL, an
            ``nn.Module`` of a known architecture, or a ModelDescriptor (returned as is).
        arch: the architecture (official class name, or GFPGANer's ``"clean"``/``"original"``/
            ``"bilinear"``). Default: the catalogue entry's, else recognised from the weights.
        device: where to put the network.
        key: the checkpoint entry holding the weights (default ``params_ema``, then ``params``,
            then ``state_dict``, then the whole file).
        progress: show a download progress bar (terminal only).
        cache_dir: the weight cache root (default: ``$FACEPRIOR_HOME`` etc., see ``store``).
        **kwargs: constructor arguments overriding the recognised ones.

    Raises (all :class:`~faceprior.errors.FacepriorError`, one line):
        UnknownWeightsError: ``spec`` is neither a catalogue name, an existing file nor a URL.
        CheckpointError: the file cannot be read safely.
        WeightsUnavailableError: the file could not be downloaded, or fails its checksum.
        ArchitectureError: the weights match no known architecture (or not ``arch``/``kwargs``).
    """
    if isinstance(spec, ModelDescriptor):
        return spec
    if isinstance(spec, nn.Module):
        return describe_network(spec.eval().to(device))
    path, entry = locate_weights(spec, progress=progress, cache_dir=cache_dir)
    return _load_file(path, entry, arch, device, key, kwargs)


def _load_file(path: Path, entry: Optional[WeightFile], arch: Optional[str], device: Union[str, torch.device],
               key: Optional[str], overrides: dict[str, Any]) -> ModelDescriptor:
    descriptor = build_from_state_dict(read_state_dict(path, key=key), str(path),
                                       arch or (entry.arch if entry is not None else None), device, **overrides)
    descriptor.entry = entry
    descriptor.name = entry.name if entry is not None else path.name
    return descriptor


def build_from_state_dict(state_dict: Mapping[str, torch.Tensor], source: str, arch: Optional[str] = None,
                          device: Union[str, torch.device] = "cpu", **overrides: Any) -> ModelDescriptor:
    """The network a state dict already in memory belongs to (e.g. the EMA generator of a training
    state), built and loaded strictly, in eval mode on ``device``: what :func:`resolve_model` does
    once it has read a file. ``source`` names the state dict in messages."""
    architecture, options = recognise(state_dict, arch)
    options.update(overrides)
    try:
        network = architecture.network(**options)
    except (TypeError, ValueError) as error:
        raise ArchitectureError(f"cannot build {architecture.name} for {source}: {error}") from None
    load_state_dict_strict(network, architecture.convert_keys(dict(state_dict)), source=source)
    return ModelDescriptor(network.eval().to(device), architecture, options, name=Path(source).name, source=source)


def load_model(spec: ModelSpec, arch: Optional[str] = None, device: Union[str, torch.device] = "cpu",
               **kwargs: Any) -> nn.Module:
    """The network of :func:`resolve_model` (same arguments), in eval mode on ``device``."""
    return resolve_model(spec, arch, device, **kwargs).network
