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

from typing import Optional

from faceprior.models.gfpgan_decoder import SFTDecoderMixin
from faceprior.models.gfpgan_v1 import GFPGANv1
from faceprior.models.stylegan2 import StyleGAN2Generator
from faceprior.models.stylegan2_bilinear import ResBlock, StyleGAN2GeneratorBilinear

__all__ = ["StyleGAN2GeneratorBilinearSFT", "GFPGANBilinear"]


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
