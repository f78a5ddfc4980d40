"""What an architecture says about itself, and the helpers that read options off a state dict.

Each network file declares one :class:`Architecture` per class that can be loaded from a weight
file, next to the class itself (e.g. ``faceprior.models.gfpgan_clean.ARCHITECTURE``)::

    ARCHITECTURE = Architecture(
        name="GFPGANv1Clean",                 # the official class name
        network=GFPGANv1Clean,
        purpose="restoration",
        layout=lambda shapes: "conv_body_first.weight" in shapes and ...,   # is this state dict mine?
        options=gfpgan_clean_options,         # constructor kwargs read off the key names and shapes
        face_size=lambda options: options["out_size"],
        restore=lambda network, x, fidelity, randomize_noise: network(x, return_rgb=False, ...)[0],
        capabilities=Capabilities(stochastic=True, fast_cpu=True, bf16=True, onnx=True),
    )

and ``faceprior.models.ARCHITECTURES`` lists them, in the order in which a state dict is tried.
Adding an architecture is its own file plus one entry in that table; the resolver
(:mod:`faceprior.models.loading`) recognises its state dicts with no other change.

A "shapes" mapping is ``{key: shape}`` (a state dict's key names and tensor shapes); only names
and shapes are ever read to recognise an architecture, never values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from faceprior.errors import FacepriorError

__all__ = [
    "PURPOSES",
    "Architecture",
    "ArchitectureError",
    "Capabilities",
    "Shapes",
    "StateDictLike",
    "channel_multiplier_of",
    "check_state_dict",
    "indices",
    "load_state_dict_strict",
    "plain_number",
    "require",
    "shapes_of",
]

Shapes = Mapping[str, Sequence[int]]
StateDictLike = Mapping[str, Union[torch.Tensor, Sequence[int]]]

#: What a network is for. Only "restoration" networks restore faces (FaceRestorer, evaluate, export).
PURPOSES = ("restoration", "generator", "discriminator", "identity", "upsampler", "background", "features", "estimator",
            "landmarks")

#: restore(network, x, fidelity, randomize_noise) -> restored faces; see Architecture.restore.
RestoreCall = Callable[[nn.Module, torch.Tensor, Optional[float], bool], torch.Tensor]


class ArchitectureError(FacepriorError, ValueError):
    """A state dict matches no known architecture, or not the requested one, or does not fit it."""


@dataclass(frozen=True)
class Capabilities:
    """What a network of an architecture can do beyond its plain forward.

    fidelity: the forward takes a fidelity weight in [0, 1] (CodeFormer's ``w``): 0 = the most
        generative result, 1 = the closest to the input. ``restore(..., fidelity=w)`` passes it.
    stochastic: the forward can draw random noise (StyleGAN2 decoders); ``randomize_noise=False``
        uses stored noise and is deterministic.
    fast_cpu: ``faceprior.inference.optimize`` has a faster CPU forward computing the same function
        (a rewritten forward for GFP-GAN, channels-last memory format for the others).
    bf16: results hold in bfloat16 (PSNR against float32 in docs/models.md): the fast forward runs
        in bfloat16 (GFP-GAN), or the reference forward under bfloat16 autocast (GPEN).
    onnx: ``faceprior.inference.export_onnx`` can export it.
    """

    fidelity: bool = False
    stochastic: bool = False
    fast_cpu: bool = False
    bf16: bool = False
    onnx: bool = False

    def names(self) -> list[str]:
        """The names of the capabilities that are on, e.g. ``["stochastic", "fast_cpu"]``."""
        return [name for name in ("fidelity", "stochastic", "fast_cpu", "bf16", "onnx") if getattr(self, name)]


def _no_conversion(state_dict: dict[str, Any]) -> dict[str, Any]:
    return state_dict


@dataclass(frozen=True)
class Architecture:
    """One loadable network class and everything needed to build it from a weight file.

    Attributes:
        name: the official class name (as in the code the weights were released with).
        network: faceprior's class; ``network(**options)`` builds it with random weights.
        purpose: one of :data:`PURPOSES`.
        layout: ``layout(shapes) -> bool``: the state dict has this architecture's key layout.
        options: ``options(shapes) -> kwargs``: every constructor argument, read off the key names
            and shapes (values that leave no trace take the official released configuration).
            Raises :class:`ArchitectureError` when the layout is this one but the shapes are
            inconsistent.
        detect: ``detect(shapes) -> bool`` for automatic recognition, where several architectures
            share one key layout (GFPGANv1 / GFPGANBilinear); default: ``layout``. A forced
            ``arch=`` only needs ``layout``.
        convert_keys: maps the state dict as stored in released files to the network's keys
            (e.g. strips a wrapper prefix); applied before ``layout`` is tested. Default: none.
        face_size: restoration networks: ``face_size(options) -> S``, the side of the square
            aligned face they take and return.
        framing: restoration networks: the face framing of the released weights (a template name
            of ``faceprior.face.templates``: "ffhq" or "celeba-hq").
        value_range: the pixel range of the input and output faces, (-1, 1) for all GAN-based ones.
        restore: restoration networks: ``restore(network, x, fidelity, randomize_noise) -> y``
            with x, y [B, 3, S, S] in ``value_range``; ``fidelity`` is None unless
            ``capabilities.fidelity``. ``network`` may also be the fast CPU module built for it.
        capabilities: see :class:`Capabilities`.
        equivalent: ``(name, convert)``: another architecture that computes the same function
            once the weights are converted, ``convert(state_dict, options) -> (state_dict, options)``
            (GFPGANBilinear -> GFPGANv1Clean). None if there is none.
        options_of_network: ``options_of_network(network) -> kwargs`` for a network built elsewhere,
            where some option leaves no trace in its weights but the network keeps it (GFP-GAN's
            ``input_is_latent``). Default: ``options`` of the network's own state dict.
        weights_license: the licence of the officially released weights of this architecture,
            shown for files that are not in the weight catalogue (whose licence is then unknown).
        description: one line on what it is.
    """

    name: str
    network: type[nn.Module]
    purpose: str
    layout: Callable[[Shapes], bool]
    options: Callable[[Shapes], dict[str, Any]]
    detect: Optional[Callable[[Shapes], bool]] = None
    convert_keys: Callable[[dict[str, Any]], dict[str, Any]] = field(default=_no_conversion)
    face_size: Optional[Callable[[Mapping[str, Any]], int]] = None
    framing: str = "ffhq"
    value_range: tuple[float, float] = (-1.0, 1.0)
    restore: Optional[RestoreCall] = None
    capabilities: Capabilities = Capabilities()
    equivalent: Optional[tuple[str, Callable[[dict, dict], tuple[dict, dict]]]] = None
    options_of_network: Optional[Callable[[nn.Module], dict[str, Any]]] = None
    weights_license: Optional[str] = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"{self.name}: purpose must be one of {', '.join(PURPOSES)}, got {self.purpose!r}")
        if self.purpose == "restoration" and (self.face_size is None or self.restore is None):
            raise ValueError(f"{self.name}: a restoration architecture declares face_size and restore")

    def recognises(self, shapes: Shapes) -> bool:
        """Whether automatic recognition picks this architecture for ``shapes``."""
        return (self.detect or self.layout)(shapes)

    def network_options(self, network: nn.Module) -> dict[str, Any]:
        """The constructor options of a built ``network`` of this architecture."""
        if self.options_of_network is not None:
            return self.options_of_network(network)
        return self.options(shapes_of(network.state_dict()))


# ----------------------------------------------------------------------------------------------
# Reading options off shapes (shared by the architecture files)


def shapes_of(state_dict: StateDictLike) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a state dict whose values are tensors or shapes."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state_dict.items()}


def plain_number(x: float) -> Union[float, int]:
    """1.0 -> 1, 0.0625 -> 0.0625 (so inferred kwargs read like hand-written ones)."""
    return int(x) if float(x).is_integer() else x


def indices(shapes: Shapes, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (a regex with one group) over all keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := regex.fullmatch(k))})


def require(shapes: Shapes, key: str, what: str) -> tuple[int, ...]:
    """The shape of ``key``; :class:`ArchitectureError` naming ``what`` if the key is missing."""
    if key not in shapes:
        raise ArchitectureError(f"looks like a {what} state dict but has no {key!r}")
    return tuple(shapes[key])


def channel_multiplier_of(channels_64: Optional[int], narrow: float, default: float) -> Union[float, int]:
    """StyleGAN2's channel multiplier from the channels at 64 px: ``channels[64] = 256 * multiplier * narrow``.

    ``channels_64`` None (networks below 64 px, where the multiplier changes no shape): ``default``.
    """
    if channels_64 is None:
        return default
    return plain_number(round(channels_64 / (256 * narrow), 6))


# ----------------------------------------------------------------------------------------------
# Strict loading


def _is_optional_key(key: str) -> bool:
    # BatchNorm's counter: PyTorch's own loader fills it in when a checkpoint lacks it.
    return key.endswith("num_batches_tracked")


def check_state_dict(expected: StateDictLike, state_dict: StateDictLike, what: str, source: str) -> None:
    """Raise :class:`ArchitectureError` unless ``state_dict`` has exactly ``expected``'s keys and shapes.

    A missing ``num_batches_tracked`` is allowed. The message is one line: counts and first examples.
    """
    expected_shapes, shapes = shapes_of(expected), shapes_of(state_dict)
    missing = [k for k in expected_shapes if k not in shapes and not _is_optional_key(k)]
    unexpected = [k for k in shapes if k not in expected_shapes]
    wrong = [
        f"{k} {list(shapes[k])} vs {list(expected_shapes[k])}" for k in expected_shapes if k in shapes and shapes[k] != expected_shapes[k]
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("with another shape", wrong)):
        if items:
            problems.append(f"{len(items)} {label} (e.g. {'; '.join(items[:2])})")
    if problems:
        raise ArchitectureError(f"{source} does not fit {what}: {', '.join(problems)}")


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with one-line errors.

    Tensors are cast to the model's dtypes (float16 files load into float32 models).
    """
    check_state_dict(model.state_dict(), state_dict, type(model).__name__, source)
    own = model.state_dict()
    complete = dict(state_dict)
    for key in own:
        if key not in complete and _is_optional_key(key):
            complete[key] = own[key]
    model.load_state_dict(complete, strict=True)
