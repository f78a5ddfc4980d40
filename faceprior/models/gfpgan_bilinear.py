"""GFP-GAN, bilinear version (gfpgan ``gfpgan_bilinear_arch``): ``GFPGANBilinear``.

``GFPGANBilinear`` is :class:`faceprior.models.gfpgan_v1.GFPGANv1` (U-Net + StyleGAN2 decoder with
CS-SFT; same modules, state-dict keys and forward) with every FIR resampling replaced by
interpolation, see :mod:`faceprior.models.stylegan2_bilinear`:

* the U-Net encoder's ``conv_body_down`` blocks downsample with bilinear x0.5 + 'same' conv;
* the decoder is :class:`StyleGAN2GeneratorBilinearSFT` (bilinear x2 upsampling).

The U-Net decoder (``ResUpBlock``), the SFT condition branches, ``toRGB`` and ``final_linear``
are those of GFPGANv1, which were already bilinear / resampling-free.
Images are RGB in [-1, 1], ``[B, 3, out_size, out_size]``.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch

from faceprior.models.architecture import Architecture, ArchitectureError
from faceprior.models.gfpgan_decoder import (
    DEFAULT_LR_MLP,
    GFPGAN_CAPABILITIES,
    SFTDecoderMixin,
    gfpgan_layout,
    gfpgan_network_options,
    gfpgan_options,
    restore_faces,
)
from faceprior.models.gfpgan_v1 import GFPGANv1
from faceprior.models.stylegan2 import StyleGAN2Generator
from faceprior.models.stylegan2_bilinear import ResBlock, StyleGAN2GeneratorBilinear

__all__ = ["StyleGAN2GeneratorBilinearSFT", "GFPGANBilinear", "bilinear_to_clean_state_dict", "ARCHITECTURE"]


class StyleGAN2GeneratorBilinearSFT(SFTDecoderMixin, StyleGAN2GeneratorBilinear):
    """``StyleGAN2GeneratorBilinear`` whose features are modulated by SFT conditions.

    ``forward(styles, conditions, ...)``: see :meth:`faceprior.models.gfpgan_decoder.SFTDecoderMixin.forward`
    (``conditions = [scale_8, shift_8, scale_16, shift_16, ...]``). Same state dict as
    ``StyleGAN2GeneratorBilinear``.

    Args: those of ``StyleGAN2GeneratorBilinear`` (always bilinear), plus ``sft_half``.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 lr_mlp: float = 0.01, narrow: float = 1, sft_half: bool = False):
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, lr_mlp=lr_mlp, narrow=narrow)
        self.sft_half = sft_half


class GFPGANBilinear(GFPGANv1):
    """GFP-GAN generator, bilinear version: U-Net + bilinear StyleGAN2 decoder with CS-SFT.

    ``GFPGANer(arch='bilinear', channel_multiplier=2)`` builds it with ``out_size=512,
    channel_multiplier=2, input_is_latent=True, different_w=True, sft_half=True, fix_decoder=False``.
    The defaults below are the official constructor's.

    Args:
        out_size: input and output resolution, a power of two in 8 .. 1024.
        num_style_feat: size of w.
        channel_multiplier: decoder width at 64 px and above (the U-Net uses half the channels).
        decoder_load_path: optional ``StyleGAN2GeneratorBilinear`` checkpoint loaded (strictly) into
            ``stylegan_decoder`` (``params_ema`` preferred), with
            :func:`faceprior.models.gfpgan_decoder.load_decoder_checkpoint`.
        fix_decoder: freeze the decoder parameters (``requires_grad=False``).
        num_mlp, lr_mlp: style MLP of the decoder (unused in forward when ``input_is_latent``).
        input_is_latent: the style code is w (the decoder's style MLP is skipped).
        different_w: predict one w per decoder layer.
        narrow: scales every channel count.
        sft_half: apply SFT to half of the decoder channels (CS-SFT).

    ``forward(x, return_latents=False, return_rgb=True, randomize_noise=True, **kwargs)``:
    x [B, 3, S, S] in [-1, 1] -> (image [B, 3, S, S], out_rgbs [[B, 3, r, r] for r = 8 .. S] or []);
    see :meth:`GFPGANv1.forward`. (The inherited ``resample_kernel`` attribute is unused.)
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: Optional[str] = None, fix_decoder: bool = True, num_mlp: int = 8,
                 lr_mlp: float = 0.01, input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__(out_size, num_style_feat=num_style_feat, channel_multiplier=channel_multiplier,
                         decoder_load_path=decoder_load_path, fix_decoder=fix_decoder, num_mlp=num_mlp,
                         lr_mlp=lr_mlp, input_is_latent=input_is_latent, different_w=different_w, narrow=narrow,
                         sft_half=sft_half)

    def _make_down_block(self, in_channels: int, out_channels: int) -> ResBlock:
        """U-Net encoder block, [B, Cin, H, W] -> [B, Cout, H/2, W/2]: bilinear x0.5 ``ResBlock``."""
        return ResBlock(in_channels, out_channels)

    def _make_decoder(self, out_size: int, num_style_feat: int, num_mlp: int, channel_multiplier: float,
                      lr_mlp: float, narrow: float, sft_half: bool) -> StyleGAN2Generator:
        """The SFT-conditioned decoder: a ``StyleGAN2GeneratorBilinearSFT``."""
        return StyleGAN2GeneratorBilinearSFT(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                             channel_multiplier=channel_multiplier, lr_mlp=lr_mlp, narrow=narrow,
                                             sft_half=sft_half)


# ----------------------------------------------------------------------------------------------
# GFPGANBilinear -> GFPGANv1Clean: the same function with plain layers


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


def _to_clean(state_dict: dict, options: dict) -> tuple[dict, dict]:
    """(GFPGANv1Clean state dict, GFPGANv1Clean options) computing what a GFPGANBilinear computes."""
    clean_options = {k: v for k, v in options.items() if k != "lr_mlp"}
    return bilinear_to_clean_state_dict(state_dict, lr_mlp=options.get("lr_mlp", DEFAULT_LR_MLP)), clean_options


ARCHITECTURE = Architecture(
    name="GFPGANBilinear",
    network=GFPGANBilinear,
    purpose="restoration",
    layout=lambda shapes: gfpgan_layout(shapes, plain_first_conv=False),
    detect=lambda shapes: gfpgan_layout(shapes, plain_first_conv=False)
    and gfpgan_options("GFPGANv1", shapes)["channel_multiplier"] != 1,  # see GFPGANv1's ARCHITECTURE
    options=lambda shapes: gfpgan_options("GFPGANBilinear", shapes),
    options_of_network=gfpgan_network_options("GFPGANBilinear"),
    face_size=lambda options: options["out_size"],
    restore=restore_faces,
    capabilities=GFPGAN_CAPABILITIES,  # through its exact GFPGANv1Clean form
    equivalent=("GFPGANv1Clean", _to_clean),
    weights_license="Apache-2.0 (the GFPGAN releases)",
    description="GFP-GAN, bilinear architecture: equalized layers, bilinear resampling (GFPGANer(arch='bilinear'))",
)
