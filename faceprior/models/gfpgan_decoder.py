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
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["apply_sft", "SFTDecoderMixin", "load_decoder_checkpoint", "load_and_fix_decoder"]


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
    (``params_ema`` > ``params`` > bare state dict; a ``module.`` prefix is stripped).
    Raises :class:`faceprior.weights.checkpoint.CheckpointError` (one line naming the file) when
    the file cannot be read or its keys / shapes do not fit ``decoder``.
    """
    # Imported here: faceprior.weights imports faceprior.models, not the other way round at import time.
    from faceprior.weights.checkpoint import CheckpointError, read_state_dict

    state_dict = read_state_dict(path)
    expected = decoder.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k} {list(state_dict[k].shape)} != {list(v.shape)}"
                   for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = [f"{len(found)} {what} (first: {found[0]})" for what, found in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape))
                if found]
    if problems:
        raise CheckpointError(path, f"does not fit the StyleGAN2 decoder ({type(decoder).__name__}): "
                                    + "; ".join(problems))
    decoder.load_state_dict(state_dict, strict=True)


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
