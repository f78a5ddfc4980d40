"""StyleGAN2 with interpolation instead of FIR filtering (gfpgan ``stylegan2_bilinear_arch``).

This is the decoder of GFP-GAN's "bilinear" model (``GFPGANBilinear``). It is the
original StyleGAN2 of :mod:`faceprior.models.stylegan2` (equalized-lr layers, fused leaky ReLU,
same parameters and state-dict keys) with one change: every 2x resampling is
``F.interpolate(mode=interpolation_mode)`` (bilinear, ``align_corners=False``) instead of the
transposed conv + FIR blur / FIR upsampling / blur + strided conv:

* ``StyleConv`` with ``sample_mode='upsample'``: interpolate x2, then the plain 3x3 modulated conv.
* ``ToRGB``: the RGB skip is interpolated x2.
* ``ConvLayer(downsample=True)`` (U-Net encoder): interpolate x0.5, then a 'same' conv.

Only these pieces are defined here; ``StyleGAN2GeneratorBilinear`` is ``StyleGAN2Generator`` with
its ``_make_style_conv`` / ``_make_to_rgb`` factories returning them, and everything else is
imported from :mod:`faceprior.models.stylegan2`. Each piece is built once, in the official order,
so ``torch.manual_seed(s)`` gives the official initial weights.
Feature maps are ``[B, C, H, W]``; images are RGB, nominally in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models import stylegan2
from faceprior.models.stylegan2 import StyleGAN2Generator

__all__ = ["Interpolate", "StyleConv", "ToRGB", "ConvLayer", "ResBlock", "StyleGAN2GeneratorBilinear"]

# F.interpolate scale factor of each StyleConv sample_mode.
_SCALE_FACTORS = {None: None, "upsample": 2, "downsample": 0.5}


class Interpolate(nn.Module):
    """Resize by a fixed factor: ``F.interpolate(x, scale_factor, mode)``, as the official code calls it.

    ``align_corners`` is None for ``mode='nearest'`` and False otherwise.
    [B, C, H, W] -> [B, C, H * scale_factor, W * scale_factor]. No parameters.
    """

    def __init__(self, scale_factor: float, mode: str = "bilinear"):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = None if mode == "nearest" else False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


class StyleConv(stylegan2.StyleConv):
    """Optional x2 / x0.5 interpolation, then the StyleGAN2 ``StyleConv`` (modulated conv, noise, fused lrelu).

    Shapes: x [B, Cin, H, W], style [B, num_style_feat], noise [1 or B, 1, H', W'] or None ->
    [B, Cout, H', W'] with H' = 2H (``'upsample'``), H/2 (``'downsample'``) or H (None).
    Same parameters as :class:`faceprior.models.stylegan2.StyleConv`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None, interpolation_mode: str = "bilinear"):
        if sample_mode not in _SCALE_FACTORS:
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, num_style_feat, demodulate=demodulate,
                         sample_mode=None)
        self.sample_mode = sample_mode
        self.resample = None if sample_mode is None else Interpolate(_SCALE_FACTORS[sample_mode], interpolation_mode)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.resample is not None:
            x = self.resample(x)
        return super().forward(x, style, noise)


class ToRGB(stylegan2.ToRGB):
    """StyleGAN2 ``ToRGB`` whose RGB skip is upsampled by interpolation.

    Shapes: x [B, C, H, W], style [B, num_style_feat], skip [B, 3, H/2, W/2] (or [B, 3, H, W] when
    ``upsample=False``) -> [B, 3, H, W]. Same parameters as :class:`faceprior.models.stylegan2.ToRGB`.
    """

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True,
                 interpolation_mode: str = "bilinear"):
        super().__init__(in_channels, num_style_feat, upsample=False)
        # Same parameters as the FIR ToRGB; only the (parameter-free) skip upsampler differs.
        self.upsample = Interpolate(2, interpolation_mode) if upsample else None


class ConvLayer(nn.Sequential):
    """[Interpolate x0.5] -> 'same' EqualConv2d -> [FusedLeakyReLU | ScaledLeakyReLU].

    Without ``downsample`` this is exactly :class:`faceprior.models.stylegan2.ConvLayer`; with it, the
    input is first resized by interpolation (index 0, no parameters), so the keys become
    ``1.weight`` / ``2.bias`` as officially. [B, Cin, H, W] -> [B, Cout, H/2 or H, W/2 or W].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True, interpolation_mode: str = "bilinear"):
        layers = list(stylegan2.ConvLayer(in_channels, out_channels, kernel_size, downsample=False, bias=bias,
                                          activate=activate))
        if downsample:
            layers.insert(0, Interpolate(0.5, interpolation_mode))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block of the U-Net encoder: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``.

    [B, Cin, H, W] -> [B, Cout, H/2, W/2]. ``conv1`` 3x3; ``conv2`` interpolate x0.5 + 3x3;
    ``skip`` interpolate x0.5 + 1x1 without bias or activation.
    """

    def __init__(self, in_channels: int, out_channels: int, interpolation_mode: str = "bilinear"):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, bias=True, activate=True)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, bias=True, activate=True,
                               interpolation_mode=interpolation_mode)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False,
                              interpolation_mode=interpolation_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class StyleGAN2GeneratorBilinear(StyleGAN2Generator):
    """StyleGAN2 generator with interpolating ``StyleConv`` / ``ToRGB`` (gfpgan ``StyleGAN2GeneratorBilinear``).

    Same structure, state dict, latents, noise convention and ``forward`` as
    :class:`faceprior.models.stylegan2.StyleGAN2Generator` (see there); only the 2x upsampling differs,
    through the two layer factories below. (The inherited ``resample_kernel`` attribute is unused.)

    Args:
        out_size: output resolution, a power of two in 4 .. 1024.
        num_style_feat: size of z and w.
        num_mlp: number of linear layers in the style MLP.
        channel_multiplier: widens the layers at 64 px and above.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
        interpolation_mode: ``F.interpolate`` mode of the upsampling ('bilinear' officially).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 lr_mlp: float = 0.01, narrow: float = 1, interpolation_mode: str = "bilinear"):
        # Set before StyleGAN2Generator.__init__, which calls the factories below. (A plain attribute
        # may be set before nn.Module.__init__.)
        self.interpolation_mode = interpolation_mode
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, lr_mlp=lr_mlp, narrow=narrow)

    def _make_style_conv(self, in_channels: int, out_channels: int, sample_mode: Optional[str]) -> nn.Module:
        """A 3x3 ``StyleConv``; ``sample_mode='upsample'`` interpolates x2 first."""
        return StyleConv(in_channels, out_channels, kernel_size=3, num_style_feat=self.num_style_feat,
                         demodulate=True, sample_mode=sample_mode, interpolation_mode=self.interpolation_mode)

    def _make_to_rgb(self, in_channels: int, upsample: bool) -> nn.Module:
        """A ``ToRGB``; ``upsample`` interpolates the RGB skip x2."""
        return ToRGB(in_channels, self.num_style_feat, upsample=upsample, interpolation_mode=self.interpolation_mode)
