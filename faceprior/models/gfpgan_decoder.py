"""The StyleGAN2 decoder side of GFP-GAN, shared by GFPGANv1, GFPGANv1Clean and GFPGANBilinear.

Each GFP-GAN generator feeds its U-Net features into a pretrained StyleGAN2 generator (the
"decoder", attribute ``stylegan_decoder``) through spatial feature transforms (SFT). The three
variants differ only in which StyleGAN2 generator they use; what they share is here:

* :func:`apply_sft`: the (channel-split) spatial feature transform ``feat * scale + shift``.
* :class:`SFTDecoderMixin`: the conditioned ``forward(styles, conditions, ...)`` of the decoder,
  combined with a StyleGAN2 generator class, e.g.
  ``class StyleGAN2GeneratorSFT(SFTDecoderMixin, StyleGAN2Generator)``.
* :func:`load_decoder_checkpoint` and :func:`load_and_fix_decoder`: the ``decoder_load_path`` /
  ``fix_decoder`` constructor options (load a pretrained generator strictly, freeze it).
* :func:`gfpgan_options`: the constructor options of any of the three, read off a state dict.
* :func:`restore_faces`: the restoration call of all three (``Architecture.restore``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

import torch
from torch import nn

from faceprior.models.architecture import (
    ArchitectureError,
    Capabilities,
    Shapes,
    load_state_dict_strict,
    require,
    shapes_of,
)
from faceprior.models.stylegan2 import DEFAULT_RESAMPLE_KERNEL, stylegan2_generator_options
from faceprior.weights.checkpoint import read_state_dict

__all__ = ["apply_sft", "check_faces", "SFTDecoderMixin", "load_decoder_checkpoint", "load_and_fix_decoder", "gfpgan_options",
           "gfpgan_layout", "gfpgan_network_options", "restore_faces", "GFPGAN_CAPABILITIES"]


def check_faces(network: nn.Module, x: torch.Tensor) -> None:
    """ValueError (one line, saying what to do) unless ``x`` is [B, 3, S, S] with S the network's face size."""
    size = 2 ** int(network.log_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != (3, size, size):
        raise ValueError(f"{type(network).__name__} (out_size={size}) takes aligned faces [B, 3, {size}, {size}] in [-1, 1], "
                         f"got {list(x.shape)}; resize the faces to {size} px (FaceRestorer does) or use a model of that size")


def apply_sft(feat: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, sft_half: bool) -> torch.Tensor:
    """(Channel-split) spatial feature transform.

    Args:
        feat: decoder features [B, C, H, W].
        scale, shift: [B, C/2, H, W] when ``sft_half``, else [B, C, H, W].
        sft_half: CS-SFT: keep the first C/2 channels unchanged (for realness) and modulate only
            the second half (for fidelity); otherwise modulate all channels.
    Returns:
        [B, C, H, W]: ``feat * scale + shift`` on the modulated channels.
    """
    if not sft_half:
        return feat * scale + shift
    feat_same, feat_sft = torch.split(feat, feat.shape[1] // 2, dim=1)
    return torch.cat([feat_same, feat_sft * scale + shift], dim=1)


class SFTDecoderMixin:
    """GFP-GAN's SFT-conditioned ``forward`` for a :class:`~faceprior.models.stylegan2.StyleGAN2Generator` subclass.

    The class it is mixed into must set ``self.sft_half``. The state dict is that of the generator.
    """

    def forward(self, styles: Sequence[torch.Tensor], conditions: Sequence[torch.Tensor],
                input_is_latent: bool = False, noise: Optional[Sequence[Optional[torch.Tensor]]] = None,
                randomize_noise: bool = True, truncation: float = 1,
                truncation_latent: Optional[torch.Tensor] = None, inject_index: Optional[int] = None,
                return_latents: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Generate images under spatial conditions.

        Args:
            conditions: ``[scale_8, shift_8, scale_16, shift_16, ...]``, a (scale, shift) pair per
                level starting at 8 px, each [B, C_sft, r, r] (C_sft = C/2 with ``sft_half``, else
                C); applied with :func:`apply_sft` right after the level's upsampling StyleConv.
                Levels without a pair (a shorter list) are left unmodulated.
            Other arguments: as :meth:`StyleGAN2Generator.forward`.
        Returns:
            (image [B, 3, out_size, out_size], latent [B, num_latent, F] or None).
        """
        latent = self.styles_to_latent(styles, input_is_latent, truncation, truncation_latent, inject_index)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()

        def sft_hook(feat: torch.Tensor, level: int) -> torch.Tensor:
            if 2 * level + 1 >= len(conditions):
                return feat
            return apply_sft(feat, conditions[2 * level], conditions[2 * level + 1], self.sft_half)

        image = self.synthesize(latent, noise, feature_hook=sft_hook)
        return image, (latent if return_latents else None)


def load_decoder_checkpoint(decoder: nn.Module, path: str | os.PathLike) -> None:
    """Load a StyleGAN2 generator checkpoint into ``decoder``, strictly.

    The state dict is read with :func:`faceprior.weights.checkpoint.read_state_dict`
    (``params_ema`` > ``params`` > bare state dict; a ``module.`` prefix is stripped). Raises
    :class:`~faceprior.weights.checkpoint.CheckpointError` when the file cannot be read and
    :class:`~faceprior.models.architecture.ArchitectureError` when its keys / shapes do not fit
    ``decoder`` (one line naming the file).
    """
    load_state_dict_strict(decoder, read_state_dict(path), source=str(path))


def load_and_fix_decoder(decoder: nn.Module, decoder_load_path: Optional[str | os.PathLike],
                         fix_decoder: bool) -> None:
    """The official ``decoder_load_path`` / ``fix_decoder`` options.

    Loads ``decoder_load_path`` (if given) with :func:`load_decoder_checkpoint`, then, if
    ``fix_decoder``, sets ``requires_grad=False`` on every decoder parameter.
    """
    if decoder_load_path:
        load_decoder_checkpoint(decoder, decoder_load_path)
    if fix_decoder:
        for param in decoder.parameters():
            param.requires_grad = False


# ----------------------------------------------------------------------------------------------
# What the three GFP-GAN variants declare about themselves (faceprior.models.ARCHITECTURES)

#: Values that leave no trace in the weights take the official released configuration.
DEFAULT_LR_MLP = 0.01

#: The fast CPU path and ONNX export handle GFPGANv1Clean and, through its exact clean form,
#: GFPGANBilinear; GFPGANv1 (FIR resampling) overrides this.
GFPGAN_CAPABILITIES = Capabilities(stochastic=True, fast_cpu=True, bf16=True, onnx=True)


def gfpgan_layout(shapes: Shapes, plain_first_conv: bool) -> bool:
    """The GFP-GAN key layout: a StyleGAN2 decoder under ``stylegan_decoder.`` and a U-Net whose first
    conv is plain (``conv_body_first.weight``, the clean variant) or equalized (``conv_body_first.0.weight``)."""
    first = "conv_body_first.weight" if plain_first_conv else "conv_body_first.0.weight"
    return "stylegan_decoder.constant_input.weight" in shapes and first in shapes


def gfpgan_options(arch: str, shapes: Shapes) -> dict[str, Any]:
    """Every constructor argument of a GFP-GAN generator (``arch``: GFPGANv1, GFPGANBilinear or
    GFPGANv1Clean), read off a state dict's shapes.

    From the shapes: the decoder's out_size, num_style_feat, num_mlp, channel_multiplier and narrow
    (:func:`stylegan2_generator_options`), ``different_w`` (``final_linear`` outputs one w or one per
    decoder layer), ``sft_half`` (SFT condition channels), and for GFPGANv1Clean ``input_gate=True``
    when ``input_gate.*`` tensors are present (this project's extension). The rest takes the released
    configuration: ``input_is_latent=True``, ``lr_mlp=0.01``, ``resample_kernel=(1, 3, 3, 1)``,
    ``decoder_load_path=None`` and ``fix_decoder`` as ``GFPGANer`` sets it.
    """
    default_multiplier = 1 if arch == "GFPGANv1" else 2
    decoder = stylegan2_generator_options(shapes, "stylegan_decoder.", default_multiplier)
    log_size = int(math.log2(decoder["out_size"]))
    num_style_feat = decoder["num_style_feat"]
    linear_out = require(shapes, "final_linear.weight", arch)[0]
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
    hidden = require(shapes, "condition_scale.0.0.weight", arch)[0]
    sft_out = require(shapes, "condition_scale.0.2.weight", arch)[0]
    if sft_out not in (hidden, 2 * hidden):
        raise ArchitectureError(f"{arch}: condition_scale.0 maps {hidden} to {sft_out} channels; expected {hidden} or {2 * hidden}")

    options: dict[str, Any] = dict(
        out_size=decoder["out_size"],
        num_style_feat=num_style_feat,
        channel_multiplier=decoder["channel_multiplier"],
    )
    if arch == "GFPGANv1":
        options["resample_kernel"] = DEFAULT_RESAMPLE_KERNEL
    options.update(
        decoder_load_path=None,
        fix_decoder=arch == "GFPGANv1",  # as GFPGANer builds them; only sets requires_grad
        num_mlp=decoder["num_mlp"],
    )
    if arch != "GFPGANv1Clean":
        options["lr_mlp"] = DEFAULT_LR_MLP
    options.update(input_is_latent=True, different_w=different_w, narrow=decoder["narrow"], sft_half=sft_out == hidden)
    if arch == "GFPGANv1Clean" and "input_gate.spatial.weight" in shapes:
        options["input_gate"] = True  # this project's extension (faceprior-256); absent from official files
    return options


def gfpgan_network_options(arch: str) -> Any:
    """``Architecture.options_of_network`` of the GFP-GAN variants: the options read off the
    network's state dict, and ``input_is_latent`` (which leaves no trace in the weights) off the network."""
    def options_of(network: nn.Module) -> dict[str, Any]:
        return {**gfpgan_options(arch, shapes_of(network.state_dict())), "input_is_latent": bool(network.input_is_latent)}
    return options_of


def restore_faces(network: nn.Module, x: torch.Tensor, fidelity: Optional[float], randomize_noise: bool) -> torch.Tensor:
    """GFP-GAN's restoration call: faces x [B, 3, S, S] in [-1, 1] -> restored faces [B, 3, S, S]
    (about [-1, 1]); ``randomize_noise=False`` uses the decoder's stored noise (deterministic)."""
    return network(x, return_rgb=False, randomize_noise=randomize_noise)[0]
