"""Build a network from a checkpoint: architecture inference, strict loading, ``load_model``.

``infer_architecture(state_dict)`` reads the official class name and constructor kwargs off the
key names and tensor shapes of a state dict:

============================  =========================================================================
layout                        recognised by
============================  =========================================================================
GFPGANv1Clean                 ``conv_body_first.weight`` (plain convs) + ``stylegan_decoder.*``
GFPGANv1 / GFPGANBilinear     ``conv_body_first.0.weight`` (equalized convs) + ``stylegan_decoder.*``
StyleGAN2GeneratorClean       ``constant_input.weight``, ``style_conv1.bias`` (no prefix)
StyleGAN2Generator            ``constant_input.weight``, ``style_conv1.activate.bias``
StyleGAN2Discriminator        ``conv_body.0.0.weight`` + ``final_linear.1.weight``
FacialComponentDiscriminator  ``conv1.0.weight`` ... ``conv5.0.weight`` + ``final_conv.0.weight``
ResNetArcFace                 ``layer1.0.conv1.weight`` + ``fc5.weight``
RRDBNet                       ``conv_first.weight`` + ``body.0.rdb1.conv1.weight``
============================  =========================================================================

and, from shapes: ``out_size`` (number of noise buffers / down-sampling blocks), ``narrow``
(channels at 4x4), ``channel_multiplier`` (channels at 64x64), ``num_style_feat`` (modulation
input features), ``num_mlp`` (style-MLP linear layers), ``different_w`` (``final_linear`` output
features: one w or one per decoder layer), ``sft_half`` (SFT condition channels), and for
GFPGANv1Clean ``input_gate=True`` when ``input_gate.*`` tensors are present.

GFPGANv1 and GFPGANBilinear have identical key names and shapes for the same kwargs; nothing in a
state dict tells them apart. The released files differ by channel multiplier (GFPGANv1.pth: 1;
GFPGANer's bilinear configuration: 2), so ``channel_multiplier == 1`` is read as GFPGANv1 and
anything else as GFPGANBilinear; pass ``arch=`` to override. Values that leave no trace in the
weights take the official released configuration: ``input_is_latent=True``, ``lr_mlp=0.01``,
``resample_kernel=(1, 3, 3, 1)``, ``stddev_group=4``, ``decoder_load_path=None`` and
``fix_decoder`` as ``GFPGANer`` sets it. Every inference is checked by building the network and
comparing every key and shape before any weight is loaded.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
from torch import nn

from faceprior.models import ARCHITECTURES, create_model
from faceprior.weights.checkpoint import read_state_dict
from faceprior.weights.registry import MODELS, fetch_registered
from faceprior.weights.store import fetch

__all__ = [
    "ARCH_ALIASES",
    "ArchitectureError",
    "bilinear_to_clean_state_dict",
    "check_state_dict",
    "infer_architecture",
    "load_model",
    "load_state_dict_strict",
]

# GFPGANer's ``arch`` strings, accepted by load_model(arch=...) besides the official class names.
ARCH_ALIASES = {"clean": "GFPGANv1Clean", "original": "GFPGANv1", "bilinear": "GFPGANBilinear"}

DEFAULT_RESAMPLE_KERNEL = (1, 3, 3, 1)
DEFAULT_LR_MLP = 0.01

Shapes = Mapping[str, Sequence[int]]
StateDictLike = Mapping[str, Union[torch.Tensor, Sequence[int]]]


class ArchitectureError(ValueError):
    """A state dict does not match any known architecture, or not the requested one. One line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


# ----------------------------------------------------------------------------------------------
# Architecture inference


def _shapes_of(state_dict: StateDictLike) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state_dict.items()}


def _plain_number(x: float) -> float | int:
    """1.0 -> 1, 0.0625 -> 0.0625 (so inferred kwargs read like hand-written ones)."""
    return int(x) if float(x).is_integer() else x


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over all keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := regex.fullmatch(k))})


def _require(shapes: Shapes, key: str, what: str) -> tuple[int, ...]:
    if key not in shapes:
        raise ArchitectureError(f"looks like a {what} state dict but has no {key!r}")
    return tuple(shapes[key])


def _channel_multiplier(channels_64: int | None, narrow: float, default: float) -> float | int:
    # The official channel table: channels[64] = int(256 * channel_multiplier * narrow).
    if channels_64 is None:
        return default  # out_size < 64: the multiplier changes no shape, any value loads
    return _plain_number(round(channels_64 / (256 * narrow), 6))


def _infer_stylegan_decoder(shapes: Shapes, prefix: str, default_multiplier: float) -> dict[str, Any]:
    """out_size, num_style_feat, num_mlp, channel_multiplier, narrow of a StyleGAN2 generator under ``prefix``."""
    what = f"StyleGAN2 decoder ({prefix or 'no prefix'})"
    noise_ids = _indices(shapes, re.escape(prefix) + r"noises\.noise(\d+)")
    if not noise_ids or noise_ids != list(range(len(noise_ids))) or len(noise_ids) % 2 == 0:
        raise ArchitectureError(f"{what}: the noise buffers {prefix}noises.noise<i> are missing or not 1, 3, 5, ... in number")
    log_size = (len(noise_ids) - 1) // 2 + 2
    constant = _require(shapes, prefix + "constant_input.weight", what)
    narrow = constant[1] / 512
    modulation = _require(shapes, prefix + "style_conv1.modulated_conv.modulation.weight", what)
    num_mlp = len(_indices(shapes, re.escape(prefix) + r"style_mlp\.(\d+)\.weight"))
    channels_64 = None
    if log_size >= 6:  # style_convs[2 * (i - 3)] outputs the channels of resolution 2**i; 64 px is i = 6
        channels_64 = _require(shapes, prefix + "style_convs.6.modulated_conv.weight", what)[1]
    return dict(
        out_size=2**log_size,
        num_style_feat=modulation[1],
        num_mlp=num_mlp,
        channel_multiplier=_channel_multiplier(channels_64, narrow, default_multiplier),
        narrow=_plain_number(narrow),
    )


def _gfpgan_kwargs(arch: str, shapes: Shapes) -> dict[str, Any]:
    default_multiplier = 1 if arch == "GFPGANv1" else 2
    decoder = _infer_stylegan_decoder(shapes, "stylegan_decoder.", default_multiplier)
    log_size = int(math.log2(decoder["out_size"]))
    num_style_feat = decoder["num_style_feat"]
    linear_out = _require(shapes, "final_linear.weight", arch)[0]
    num_latent = log_size * 2 - 2
    if linear_out == num_style_feat * num_latent:
        different_w = True
    elif linear_out == num_style_feat:
        different_w = False
    else:
        raise ArchitectureError(
            f"{arch}: final_linear has {linear_out} outputs, neither num_style_feat={num_style_feat} nor {num_latent} x {num_style_feat}"
        )
    # SFT conditions: conv(C -> C), then conv(C -> C) with sft_half, conv(C -> 2C) without.
    hidden = _require(shapes, "condition_scale.0.0.weight", arch)[0]
    sft_out = _require(shapes, "condition_scale.0.2.weight", arch)[0]
    if sft_out not in (hidden, 2 * hidden):
        raise ArchitectureError(f"{arch}: condition_scale.0 maps {hidden} to {sft_out} channels; expected {hidden} or {2 * hidden}")

    kwargs: dict[str, Any] = dict(
        out_size=decoder["out_size"],
        num_style_feat=num_style_feat,
        channel_multiplier=decoder["channel_multiplier"],
    )
    if arch == "GFPGANv1":
        kwargs["resample_kernel"] = DEFAULT_RESAMPLE_KERNEL
    kwargs.update(
        decoder_load_path=None,
        fix_decoder=arch == "GFPGANv1",  # as GFPGANer builds them; only sets requires_grad
        num_mlp=decoder["num_mlp"],
    )
    if arch != "GFPGANv1Clean":
        kwargs["lr_mlp"] = DEFAULT_LR_MLP
    kwargs.update(input_is_latent=True, different_w=different_w, narrow=decoder["narrow"], sft_half=sft_out == hidden)
    if arch == "GFPGANv1Clean" and "input_gate.spatial.weight" in shapes:
        kwargs["input_gate"] = True  # this project's extension (faceprior-256); absent from official files
    return kwargs


def _discriminator_kwargs(shapes: Shapes) -> dict[str, Any]:
    what = "StyleGAN2Discriminator"
    blocks = _indices(shapes, r"conv_body\.(\d+)\.conv1\.0\.weight")
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise ArchitectureError(f"{what}: the residual blocks conv_body.1 ... are missing or not numbered consecutively")
    log_size = len(blocks) + 2  # one down-sampling block per halving from out_size to 4
    # channels[out_size] is conv_body.0's output, block j outputs channels[out_size / 2**j].
    channels = {2**log_size: _require(shapes, "conv_body.0.0.weight", what)[0]}
    for j in blocks:
        channels[2 ** (log_size - j)] = _require(shapes, f"conv_body.{j}.conv2.1.weight", what)[0]
    narrow = channels[4] / 512
    return dict(
        out_size=2**log_size,
        channel_multiplier=_channel_multiplier(channels.get(64), narrow, 2),
        resample_kernel=DEFAULT_RESAMPLE_KERNEL,
        stddev_group=4,
        narrow=_plain_number(narrow),
    )


def _arcface_kwargs(shapes: Shapes) -> dict[str, Any]:
    layers = [len(_indices(shapes, rf"layer{k}\.(\d+)\.conv1\.weight")) for k in (1, 2, 3, 4)]
    if "layer1.0.bn0.weight" in shapes:
        block = "IRBlock"
    elif "layer1.0.conv3.weight" in shapes:
        block = "Bottleneck"
    else:
        block = "BasicBlock"
    use_se = any(k.startswith("layer1.0.se.") for k in shapes)
    return dict(block=block, layers=layers, use_se=use_se)


def _rrdbnet_kwargs(shapes: Shapes) -> dict[str, Any]:
    what = "RRDBNet"
    first = _require(shapes, "conv_first.weight", what)
    num_out_ch = _require(shapes, "conv_last.weight", what)[0]
    # conv_first takes num_in_ch * r * r channels (pixel-unshuffle by r = 1, 2, 4 for scale 4, 2, 1).
    # Real-ESRGAN models have num_in_ch == num_out_ch, which fixes r.
    scale_by_unshuffle_area = {1: 4, 4: 2, 16: 1}
    ratio = first[1] / num_out_ch
    if ratio not in scale_by_unshuffle_area:
        raise ArchitectureError(f"{what}: conv_first takes {first[1]} channels for {num_out_ch} output channels; cannot tell the scale")
    return dict(
        num_in_ch=num_out_ch,
        num_out_ch=num_out_ch,
        scale=scale_by_unshuffle_area[int(ratio)],
        num_feat=first[0],
        num_block=len(_indices(shapes, r"body\.(\d+)\.rdb1\.conv1\.weight")),
        num_grow_ch=_require(shapes, "body.0.rdb1.conv1.weight", what)[0],
    )


def _layout_family(shapes: Shapes) -> str:
    """The architecture (or, for GFPGANv1/GFPGANBilinear, the shared layout) of a state dict."""
    if "stylegan_decoder.constant_input.weight" in shapes:
        if "conv_body_first.weight" in shapes:
            return "GFPGANv1Clean"
        if "conv_body_first.0.weight" in shapes:
            return "GFPGANv1|GFPGANBilinear"
    if "constant_input.weight" in shapes:
        return "StyleGAN2Generator" if "style_conv1.activate.bias" in shapes else "StyleGAN2GeneratorClean"
    if "conv_body.0.0.weight" in shapes and "final_linear.1.weight" in shapes:
        return "StyleGAN2Discriminator"
    if "conv5.0.weight" in shapes and "final_conv.0.weight" in shapes:
        return "FacialComponentDiscriminator"
    if "layer1.0.conv1.weight" in shapes and "fc5.weight" in shapes:
        return "ResNetArcFace"
    if "conv_first.weight" in shapes and "body.0.rdb1.conv1.weight" in shapes:
        return "RRDBNet"
    sample = ", ".join(list(shapes)[:4])
    raise ArchitectureError(f"unknown state-dict layout (first keys: {sample}); none of {', '.join(ARCHITECTURES)} matches")


def infer_architecture(state_dict: StateDictLike, arch: str | None = None) -> tuple[str, dict[str, Any]]:
    """The official class name and constructor kwargs that ``state_dict`` was made with.

    Args:
        state_dict: ``{key: tensor}`` or ``{key: shape}`` (only names and shapes are read).
        arch: force this class (official name, or GFPGANer's "clean"/"original"/"bilinear");
            it must have the same key layout as the state dict. Needed only to load a
            channel_multiplier=1 file as GFPGANBilinear or a multiplier-2 file as GFPGANv1.

    Returns:
        ``(arch_name, kwargs)`` with every constructor argument spelled out.

    Raises:
        ArchitectureError: unknown layout, or a layout that is not ``arch``'s. (Whether the shapes
        fit exactly is checked by :func:`check_state_dict`.)
    """
    shapes = _shapes_of(state_dict)
    family = _layout_family(shapes)
    if arch is not None:
        arch = ARCH_ALIASES.get(arch, arch)
        if arch not in ARCHITECTURES:
            raise ArchitectureError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        if arch not in family.split("|"):
            raise ArchitectureError(f"the state dict has the {family} layout, not the {arch} one")
    if family == "GFPGANv1|GFPGANBilinear":
        if arch is None:
            multiplier = _gfpgan_kwargs("GFPGANv1", shapes)["channel_multiplier"]
            arch = "GFPGANv1" if multiplier == 1 else "GFPGANBilinear"
        return arch, _gfpgan_kwargs(arch, shapes)
    if family == "GFPGANv1Clean":
        return family, _gfpgan_kwargs(family, shapes)
    if family == "StyleGAN2GeneratorClean":
        return family, _infer_stylegan_decoder(shapes, "", 2)
    if family == "StyleGAN2Generator":
        kwargs = _infer_stylegan_decoder(shapes, "", 2)
        kwargs.update(resample_kernel=DEFAULT_RESAMPLE_KERNEL, lr_mlp=DEFAULT_LR_MLP)
        return family, kwargs
    if family == "StyleGAN2Discriminator":
        return family, _discriminator_kwargs(shapes)
    if family == "FacialComponentDiscriminator":
        return family, {}
    if family == "ResNetArcFace":
        return family, _arcface_kwargs(shapes)
    return family, _rrdbnet_kwargs(shapes)


# ----------------------------------------------------------------------------------------------
# Strict loading


def _is_optional_key(key: str) -> bool:
    # BatchNorm's counter: PyTorch's own loader fills it in when a checkpoint lacks it.
    return key.endswith("num_batches_tracked")


def check_state_dict(expected: StateDictLike, state_dict: StateDictLike, what: str, source: str) -> None:
    """Raise :class:`ArchitectureError` unless ``state_dict`` has exactly ``expected``'s keys and shapes.

    A missing ``num_batches_tracked`` is allowed. The message is one line: counts and first examples.
    """
    expected_shapes, shapes = _shapes_of(expected), _shapes_of(state_dict)
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


# ----------------------------------------------------------------------------------------------
# load_model


def _is_url(text: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text) is not None


def load_model(
    spec: str | os.PathLike,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    *,
    key: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A network with loaded weights, in eval mode, on ``device``.

    Args:
        spec: a registered model name (``faceprior.weights.registry.MODELS``, e.g. ``"gfpgan-1.4"``;
            fetched through the weight store), a path to a ``.pth``/``.safetensors`` file, an
            http(s) URL (downloaded into the weight cache) or a ``file://`` URL.
        arch: the network class (official name, e.g. ``"GFPGANv1Clean"``, or GFPGANer's
            ``"clean"``/``"original"``/``"bilinear"``). Default: the registry entry's, or inferred
            from the weights (:func:`infer_architecture`).
        device: where to put the model.
        key: the checkpoint entry holding the weights (default ``params_ema``, then ``params``).
        progress: show a download progress bar (terminal only).
        cache_dir: the weight cache root (default: ``$FACEPRIOR_HOME`` etc., see ``store``).
        **kwargs: constructor kwargs overriding the registered / inferred ones.

    Raises:
        KeyError: ``spec`` is neither a registered name, an existing file nor a URL.
        faceprior.weights.checkpoint.CheckpointError: the file cannot be read safely.
        faceprior.weights.store.WeightsUnavailableError: the file could not be downloaded.
        ArchitectureError: the weights do not match a known architecture (or ``arch``/``kwargs``).
    """
    spec_text = os.fspath(spec)
    registered = MODELS.get(spec_text) if isinstance(spec, str) else None
    if registered is not None:
        path = fetch_registered(registered, progress=progress, cache_dir=cache_dir)
    elif _is_url(spec_text):
        path = fetch(spec_text, progress=progress, cache_dir=cache_dir)
    elif Path(spec_text).expanduser().exists():
        path = Path(spec_text).expanduser()
    else:
        raise KeyError(f"{spec_text!r} is neither a registered model ({', '.join(MODELS)}) nor an existing file")

    state_dict = read_state_dict(path, key=key)
    if registered is not None and arch is None:
        arch_name, model_kwargs = registered.arch, dict(registered.kwargs)
    else:
        arch_name, model_kwargs = infer_architecture(state_dict, arch)
    model_kwargs.update(kwargs)
    try:
        model = create_model(arch_name, **model_kwargs)
    except (TypeError, ValueError) as e:
        raise ArchitectureError(f"cannot build {arch_name} for {path}: {e}") from None
    load_state_dict_strict(model, state_dict, source=str(path))
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------
# Official GFPGANBilinear -> GFPGANv1Clean weight conversion


def bilinear_to_clean_state_dict(state_dict: Mapping[str, torch.Tensor], lr_mlp: float = DEFAULT_LR_MLP) -> dict[str, torch.Tensor]:
    """Convert GFPGANBilinear weights to the GFPGANv1Clean layout (same function, plain layers).

    This is the mapping of the official ``scripts/convert_gfpganv_to_clean.py``: GFPGANBilinear
    uses equalized-learning-rate layers (weights scaled by 1/sqrt(fan_in) at run time, MLP also by
    ``lr_mlp``) and fused leaky ReLUs (output times sqrt(2)); GFPGANv1Clean uses plain layers, so
    those factors are folded into the weights and biases, and a few keys are renamed. Both
    networks up-sample bilinearly, so the converted model computes the same outputs up to float
    rounding. GFPGANv1 (the paper model) up-samples with an FIR filter instead and has no exact
    GFPGANv1Clean equivalent; do not convert it.
    """
    sqrt2 = math.sqrt(2)
    converted: dict[str, torch.Tensor] = {}

    def fan_in_scale(weight: torch.Tensor) -> float:
        # 1 / sqrt(fan_in): a conv weight [out, in, k, k] / modulated [1, out, in, k, k] / linear [out, in].
        return 1 / math.sqrt(math.prod(weight.shape[-3:]) if weight.dim() >= 4 else weight.shape[1])

    for name, value in state_dict.items():
        parts = name.split(".")
        if name.startswith("stylegan_decoder."):
            if parts[1] == "style_mlp":  # EqualLinear(lr_mul, fused lrelu) i -> nn.Linear at 2i - 1
                new_name = f"stylegan_decoder.style_mlp.{int(parts[2]) * 2 - 1}.{parts[3]}"
                factor = lr_mlp * sqrt2 * (fan_in_scale(value) if parts[3] == "weight" else 1)
                converted[new_name] = value * factor
            elif "modulation" in parts:  # EqualLinear (lr_mul 1) -> nn.Linear
                converted[name] = value * fan_in_scale(value) if parts[-1] == "weight" else value.clone()
            elif "modulated_conv" in parts:  # the modulated conv weight [1, out, in, k, k]
                converted[name] = value * fan_in_scale(value)
            elif parts[1] in ("style_conv1", "style_convs") and "activate" in parts:  # FusedLeakyReLU bias
                new_name = ".".join(p for p in parts if p != "activate")
                converted[new_name] = (value * sqrt2).view(1, -1, 1, 1)
            elif parts[1] in ("style_conv1", "style_convs") and parts[-1] == "weight":  # noise strength
                converted[name] = value * sqrt2
            else:  # constant input, to-RGB biases, noise buffers
                converted[name] = value.clone()
        elif parts[0] in ("conv_body_first", "final_conv"):  # EqualConv2d + FusedLeakyReLU
            weight_or_bias = parts[-1]
            factor = sqrt2 * (fan_in_scale(value) if weight_or_bias == "weight" else 1)
            converted[f"{parts[0]}.{weight_or_bias}"] = value * factor
        elif parts[0] in ("conv_body_down", "conv_body_up"):
            block, index, layer, weight_or_bias = parts[0], parts[1], parts[2], parts[-1]
            new_name = f"{block}.{index}.{layer}.{weight_or_bias}"
            if layer == "skip":  # the residual sum's 1/sqrt(2) is folded into the skip conv
                converted[new_name] = value * fan_in_scale(value) / sqrt2
            else:
                factor = fan_in_scale(value) if weight_or_bias == "weight" else 1.0
                if layer == "conv1":  # conv1's fused leaky ReLU gain
                    factor *= sqrt2
                converted[new_name] = value * factor
        elif parts[0] == "toRGB" or parts[0] == "final_linear":
            converted[name] = value * fan_in_scale(value) if parts[-1] == "weight" else value.clone()
        elif parts[0] in ("condition_scale", "condition_shift"):
            layer, weight_or_bias = parts[2], parts[3]
            factor = fan_in_scale(value) if weight_or_bias == "weight" else 1.0
            if layer == "0":  # first conv is followed by a fused leaky ReLU
                factor *= sqrt2
            converted[name] = value * factor
        else:
            raise ArchitectureError(f"unexpected key {name!r} in a GFPGANBilinear state dict")
    return converted
