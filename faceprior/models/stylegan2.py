"""The original StyleGAN2 generator and discriminator (basicsr ``stylegan2_arch``).

This is the StyleGAN2 variant used by the GFP-GAN paper model (``GFPGANv1``): equalized learning
rate layers, modulated convolutions that upsample with a transposed convolution followed by a FIR
blur, and fused leaky ReLUs with a learned bias. Module and parameter names follow basicsr exactly,
so that official checkpoints load with ``load_state_dict(..., strict=True)``, and building a model
right after ``torch.manual_seed(s)`` draws the official initial weights.

``StyleGAN2Generator`` is also the base of the two other generators of the family, which differ
only in their layers: :mod:`faceprior.models.stylegan2_clean` (plain PyTorch layers, bilinear
resampling; GFP-GAN v1.3 / v1.4) and :mod:`faceprior.models.stylegan2_bilinear` (these layers, with
interpolation instead of FIR resampling).

Reading order:

1. Building blocks shared with the other StyleGAN2 variants: ``NormStyleCode``, ``EqualLinear``,
   ``EqualConv2d``, ``ScaledLeakyReLU``, ``ConstantInput``.
2. FIR resampling modules: ``FIRUpsample`` (upsample x2 + blur) and ``FIRBlur`` (the blur placed
   before a strided conv or after a transposed conv).
3. The generator: ``modulate_weight`` -> ``ModulatedConv2d`` -> ``StyleConv`` (+ ``inject_noise``)
   / ``ToRGB`` -> ``StyleGAN2Generator``.
4. The discriminator: ``ConvLayer`` -> ``ResBlock`` -> ``minibatch_stddev`` ->
   ``StyleGAN2Discriminator``.

Helpers used by every StyleGAN2 / GFP-GAN model: ``stylegan2_channels`` (channels per resolution)
and ``log2_out_size`` (checks an output size).

Feature maps are ``[B, C, H, W]``; images are RGB, nominally in [-1, 1]; F is ``num_style_feat``.
"""

from __future__ import annotations

import math
import random
import re
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import (
    Architecture,
    ArchitectureError,
    Capabilities,
    Shapes,
    channel_multiplier_of,
    indices,
    plain_number,
    require,
)
from faceprior.models.ops import FusedLeakyReLU, fused_leaky_relu, make_fir_kernel, upfirdn2d

__all__ = [
    "stylegan2_channels",
    "log2_out_size",
    "NormStyleCode",
    "EqualLinear",
    "EqualConv2d",
    "ScaledLeakyReLU",
    "ConstantInput",
    "FIRUpsample",
    "FIRBlur",
    "modulate_weight",
    "ModulatedConv2d",
    "inject_noise",
    "StyleConv",
    "ToRGB",
    "FeatureHook",
    "StyleGAN2Generator",
    "ConvLayer",
    "ResBlock",
    "minibatch_stddev",
    "StyleGAN2Discriminator",
    "stylegan2_generator_options",
    "GENERATOR_ARCHITECTURE",
    "DISCRIMINATOR_ARCHITECTURE",
]

# 1-D taps of the FIR low-pass filter used around every 2x resampling (made 2-D and normalised
# by ``make_fir_kernel``).
DEFAULT_RESAMPLE_KERNEL = (1, 3, 3, 1)


def stylegan2_channels(channel_multiplier: float = 2, narrow: float = 1) -> dict[str, int]:
    """StyleGAN2 channel counts per resolution, keyed by the resolution as a string ('4' .. '1024').

    512 channels up to 32 px, then ``(256, 128, 64, 32, 16) * channel_multiplier`` at 64 .. 1024 px;
    everything scaled by ``narrow`` and truncated to int, as in the official code.
    """
    return {
        "4": int(512 * narrow),
        "8": int(512 * narrow),
        "16": int(512 * narrow),
        "32": int(512 * narrow),
        "64": int(256 * channel_multiplier * narrow),
        "128": int(128 * channel_multiplier * narrow),
        "256": int(64 * channel_multiplier * narrow),
        "512": int(32 * channel_multiplier * narrow),
        "1024": int(16 * channel_multiplier * narrow),
    }


def log2_out_size(out_size: int, smallest: int) -> int:
    """Return log2(out_size); raise ValueError unless out_size is a power of two in [smallest, 1024]."""
    if not isinstance(out_size, int) or out_size < smallest or out_size > 1024 or out_size & (out_size - 1):
        raise ValueError(f"out_size must be a power of two between {smallest} and 1024, got {out_size!r}")
    return int(math.log2(out_size))


# ---------------------------------------------------------------------------------------------
# 1. Shared building blocks
# ---------------------------------------------------------------------------------------------


class NormStyleCode(nn.Module):
    """Pixel norm of style codes: ``x / sqrt(mean(x ** 2, dim=1) + 1e-8)``. [B, C] -> [B, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    The stored weight is ``N(0, 1) / lr_mul``; at run time it is scaled by ``lr_mul / sqrt(in)``
    and the bias by ``lr_mul``. With ``activation='fused_lrelu'`` the output is
    ``leaky_relu(x W^T + b, 0.2) * sqrt(2)``.

    Shapes: [B, in_channels] -> [B, out_channels].
    Parameters: ``weight`` [out, in], ``bias`` [out] (if ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, bias_init_val: float = 0,
                 lr_mul: float = 1, activation: Optional[str] = None):
        super().__init__()
        if activation not in ("fused_lrelu", None):
            raise ValueError(f"EqualLinear activation must be 'fused_lrelu' or None, got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lr_mul = lr_mul
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels).div_(lr_mul))
        if bias:
            self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            out = F.linear(x, self.weight * self.scale)
            if bias is None:
                return F.leaky_relu(out, 0.2) * math.sqrt(2)
            return fused_leaky_relu(out, bias)
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"bias={self.bias is not None}, lr_mul={self.lr_mul}, activation={self.activation}")


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate: the weight ``N(0, 1)`` is scaled by ``1 / sqrt(in * k * k)``.

    Shapes: [B, in_channels, H, W] -> [B, out_channels, H', W'] (as ``F.conv2d`` with the given
    stride and padding). Parameters: ``weight`` [out, in, k, k], ``bias`` [out] (if ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, bias_init_val: float = 0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x, negative_slope) * sqrt(2)`` (no bias). Any shape."""

    def __init__(self, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, negative_slope=self.negative_slope) * math.sqrt(2)


class ConstantInput(nn.Module):
    """The learned constant that starts the generator. ``weight`` [1, C, size, size] -> [B, C, size, size]."""

    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# 2. FIR resampling
# ---------------------------------------------------------------------------------------------


class FIRUpsample(nn.Module):
    """Upsample by ``factor`` with zero insertion + FIR low-pass (basicsr ``UpFirDnUpsample``).

    Used for the RGB skip path of the generator. [B, C, H, W] -> [B, C, H*factor, W*factor].
    The kernel is a non-persistent buffer (it is not in the official state dict).
    """

    def __init__(self, resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(resample_kernel) * factor**2, persistent=False)
        self.factor = factor
        pad = self.kernel.shape[0] - factor
        self.pad = ((pad + 1) // 2 + factor - 1, pad // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class FIRBlur(nn.Module):
    """FIR blur that accompanies a resampling convolution (basicsr ``UpFirDnSmooth``).

    * ``upsample_factor > 1``: applied *after* a stride-2 transposed conv of size ``kernel_size``;
      the kernel is multiplied by ``upsample_factor ** 2`` and the padding trims the transposed
      conv output to exactly ``2 * H``: [B, C, 2H+1, 2W+1] -> [B, C, 2H, 2W] for a 3x3 conv.
    * ``downsample_factor > 1``: applied *before* a stride-2 conv of size ``kernel_size``
      ('same'-style padding so the strided conv yields H/2): [B, C, H, W] -> [B, C, H+1, W+1] for
      a 3x3 conv and the (1, 3, 3, 1) kernel, [B, C, H-1, W-1] for a 1x1 conv.
    """

    def __init__(self, resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, upsample_factor: int = 1,
                 downsample_factor: int = 1, kernel_size: int = 1):
        super().__init__()
        self.upsample_factor = upsample_factor
        self.downsample_factor = downsample_factor
        kernel = make_fir_kernel(resample_kernel)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor**2
            pad = (kernel.shape[0] - upsample_factor) - (kernel_size - 1)
            self.pad = ((pad + 1) // 2 + upsample_factor - 1, pad // 2 + 1)
        elif downsample_factor > 1:
            pad = (kernel.shape[0] - downsample_factor) + (kernel_size - 1)
            self.pad = ((pad + 1) // 2, pad // 2)
        else:
            raise ValueError("FIRBlur needs upsample_factor > 1 or downsample_factor > 1")
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=1, down=1, pad=self.pad)

    def extra_repr(self) -> str:
        return f"upsample_factor={self.upsample_factor}, downsample_factor={self.downsample_factor}"


# ---------------------------------------------------------------------------------------------
# 3. Generator
# ---------------------------------------------------------------------------------------------


def modulate_weight(weight: torch.Tensor, scales: torch.Tensor, demodulate: bool, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample weights of a StyleGAN2 modulated convolution.

    Args:
        weight: the shared conv weight [1, Cout, Cin, k, k] (with any equalized-lr scale applied).
        scales: one scale per sample and input channel, [B, Cin] (the output of the modulation layer).
        demodulate: renormalise the weights of each output channel to unit L2 norm
            (``rsqrt(sum(w ** 2) + eps)``), as in the StyleConvs; ToRGB does not.
    Returns:
        [B, Cout, Cin, k, k].
    """
    b = scales.shape[0]
    weight = weight * scales.view(b, 1, -1, 1, 1)
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + eps)  # [B, Cout]
        weight = weight * demod.view(b, -1, 1, 1, 1)
    return weight


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), with FIR resampling.

    Each sample gets its own weights (:func:`modulate_weight` with ``scales = modulation(style)``);
    they are applied to the whole batch with one grouped convolution (``groups=B``).

    ``sample_mode``:
      * None: 'same' conv, [B, Cin, H, W] -> [B, Cout, H, W].
      * 'upsample': stride-2 transposed conv then ``FIRBlur`` -> [B, Cout, 2H, 2W].
      * 'downsample': ``FIRBlur`` then stride-2 conv -> [B, Cout, H/2, W/2].

    ``style`` is [B, num_style_feat]. Parameters: ``weight`` [1, Cout, Cin, k, k] (N(0, 1), scaled by
    ``1 / sqrt(Cin * k * k)`` at run time) and ``modulation`` (``EqualLinear``, bias initialised to 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, eps: float = 1e-8):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.eps = eps
        if sample_mode == "upsample":
            self.smooth = FIRBlur(resample_kernel, upsample_factor=2, kernel_size=kernel_size)
        elif sample_mode == "downsample":
            self.smooth = FIRBlur(resample_kernel, downsample_factor=2, kernel_size=kernel_size)
        elif sample_mode is not None:
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(num_style_feat, in_channels, bias=True, bias_init_val=1, lr_mul=1)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size
        weight = modulate_weight(self.scale * self.weight, self.modulation(style), self.demodulate, self.eps)

        if self.sample_mode == "upsample":
            # conv_transpose2d wants [groups * Cin, Cout, k, k].
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channels, k, k)
            out = F.conv_transpose2d(x.reshape(1, b * c, h, w), weight, padding=0, stride=2, groups=b)
            out = out.view(b, self.out_channels, out.shape[2], out.shape[3])
            return self.smooth(out)

        weight = weight.reshape(b * self.out_channels, c, k, k)
        if self.sample_mode == "downsample":
            x = self.smooth(x)
            out = F.conv2d(x.reshape(1, b * c, x.shape[2], x.shape[3]), weight, padding=0, stride=2, groups=b)
        else:
            out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, out.shape[2], out.shape[3])

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, demodulate={self.demodulate}, sample_mode={self.sample_mode}")


def inject_noise(x: torch.Tensor, strength: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """StyleGAN2 noise injection: ``x + strength * noise``.

    Args:
        x: [B, C, H, W] features.
        strength: learned scalar, shape [1].
        noise: [1 or B, 1, H, W], broadcast over channels (and over the batch if it has one
            sample). If None, a fresh map ``x.new_empty(B, 1, H, W).normal_()`` is drawn from the
            default generator of x's device, one per sample, exactly as the official code does.
    """
    if noise is None:
        b, _, h, w = x.shape
        noise = x.new_empty(b, 1, h, w).normal_()
    return x + strength * noise


class StyleConv(nn.Module):
    """Modulated conv -> noise injection -> fused leaky ReLU (with bias).

    Shapes as ``ModulatedConv2d``; ``noise`` as :func:`inject_noise`. Parameters: ``weight`` [1] is
    the noise strength (zero at init; the official name, hence not a sub-module), ``modulated_conv``,
    ``activate.bias`` [Cout].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=demodulate, sample_mode=sample_mode,
                                              resample_kernel=resample_kernel)
        self.weight = nn.Parameter(torch.zeros(1))
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.modulated_conv(x, style)
        out = inject_noise(out, self.weight, noise)
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus bias, added to the upsampled RGB skip.

    Shapes: x [B, C, H, W], style [B, num_style_feat], skip [B, 3, H/2, W/2] (or [B, 3, H, W] when
    ``upsample=False``; or None for the first ToRGB) -> [B, 3, H, W]. Parameters: ``bias``
    [1, 3, 1, 1], ``modulated_conv``. ``upsample`` is the parameter-free skip upsampler or None.
    """

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL):
        super().__init__()
        self.upsample = FIRUpsample(resample_kernel, factor=2) if upsample else None
        self.modulated_conv = ModulatedConv2d(in_channels, 3, kernel_size=1, num_style_feat=num_style_feat,
                                              demodulate=False, sample_mode=None)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample is not None:
                skip = self.upsample(skip)
            out = out + skip
        return out


# Hook applied to the features after the upsampling StyleConv of each level, before the second
# StyleConv: ``(features [B, C, H, W], level) -> features``. Level 0 is 8 px. Used for SFT.
FeatureHook = Callable[[torch.Tensor, int], torch.Tensor]


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (basicsr ``StyleGAN2Generator``).

    Synthesis at a glance, for ``out_size = 2 ** log_size``::

        z [B, F] --style_mlp--> w [B, F] --repeat--> latent [B, num_latent, F]
        constant 4x4 -> style_conv1 -> to_rgb1 ---------------------------> skip (RGB, 4x4)
        for each level k = 0, 1, ... (resolution r = 8, 16, ..., out_size):
            feat = style_convs[2k](feat)      (upsampling 3x3 StyleConv; feature_hook applies here)
            feat = style_convs[2k + 1](feat)  (3x3 StyleConv)
            skip = to_rgbs[k](feat) + upsample(skip)
        image = skip [B, 3, out_size, out_size]

    Sizes: ``num_layers = 2 * log_size - 3`` StyleConvs, layer ``i`` using latent ``i`` and noise
    buffer ``noises.noise{i}`` of shape [1, 1, r, r], r = 2 ** ((i + 5) // 2); the ToRGB after layer
    ``i`` uses latent ``i + 1``, hence ``num_latent = 2 * log_size - 2``.

    The other generators of the family (``StyleGAN2GeneratorClean``, ``StyleGAN2GeneratorBilinear``)
    subclass this one and override only the layer factories ``_make_style_mlp``,
    ``_make_style_conv`` and ``_make_to_rgb``; the structure, registration order (= state-dict order
    and order of the random init draws), latents, noise and synthesis are defined here once.

    Args:
        out_size: output resolution, a power of two in 4 .. 1024.
        num_style_feat: F, the size of z and w.
        num_mlp: number of linear layers in the style MLP.
        channel_multiplier: widens the layers at 64 px and above (see :func:`stylegan2_channels`).
        resample_kernel: 1-D FIR taps for up-sampling.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, lr_mlp: float = 0.01,
                 narrow: float = 1):
        super().__init__()
        self.resample_kernel = tuple(resample_kernel)  # read by the FIR layer factories below
        self.lr_mlp = lr_mlp
        self.log_size = log2_out_size(out_size, 4)
        self.num_layers = 2 * self.log_size - 3
        self.num_latent = 2 * self.log_size - 2
        self.num_style_feat = num_style_feat
        self.channels = stylegan2_channels(channel_multiplier, narrow)
        channels = self.channels

        # The statements below follow the official order: it fixes both the state-dict order and
        # the order of the random init draws (so torch.manual_seed(s) gives the official weights).
        self.style_mlp = self._make_style_mlp(num_style_feat, num_mlp)
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = self._make_style_conv(channels["4"], channels["4"], sample_mode=None)
        self.to_rgb1 = self._make_to_rgb(channels["4"], upsample=False)

        # Containers are registered before they are filled, and the noise buffers drawn before the
        # layer weights.
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))

        in_channels = channels["4"]
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[f"{2**log_res}"]
            self.style_convs.append(self._make_style_conv(in_channels, out_channels, sample_mode="upsample"))
            self.style_convs.append(self._make_style_conv(out_channels, out_channels, sample_mode=None))
            self.to_rgbs.append(self._make_to_rgb(out_channels, upsample=True))
            in_channels = out_channels

    # -- layer factories (overridden by the other generator variants) -------------------------

    def _make_style_mlp(self, num_style_feat: int, num_mlp: int) -> nn.Sequential:
        """z [B, F] -> w [B, F]: ``NormStyleCode`` then ``num_mlp`` equalized-lr linears with fused lrelu."""
        return nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, bias=True, bias_init_val=0, lr_mul=self.lr_mlp,
                        activation="fused_lrelu") for _ in range(num_mlp)])

    def _make_style_conv(self, in_channels: int, out_channels: int, sample_mode: Optional[str]) -> nn.Module:
        """A 3x3 ``StyleConv``; ``sample_mode='upsample'`` doubles the resolution."""
        return StyleConv(in_channels, out_channels, kernel_size=3, num_style_feat=self.num_style_feat,
                         demodulate=True, sample_mode=sample_mode, resample_kernel=self.resample_kernel)

    def _make_to_rgb(self, in_channels: int, upsample: bool) -> nn.Module:
        """A ``ToRGB``; ``upsample`` doubles the resolution of the incoming RGB skip."""
        return ToRGB(in_channels, self.num_style_feat, upsample=upsample, resample_kernel=self.resample_kernel)

    # -- latents and noise ------------------------------------------------------------------

    def make_noise(self) -> list[torch.Tensor]:
        """Fresh noise maps, one per StyleConv: [1, 1, 4, 4], then two [1, 1, r, r] per resolution r."""
        device = self.constant_input.weight.device
        noises = [torch.randn(1, 1, 4, 4, device=device)]
        for log_res in range(3, self.log_size + 1):
            for _ in range(2):
                noises.append(torch.randn(1, 1, 2**log_res, 2**log_res, device=device))
        return noises

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """w = style_mlp(z). [B, F] -> [B, F]."""
        return self.style_mlp(z)

    def mean_latent(self, num_latent: int) -> torch.Tensor:
        """Mean w over ``num_latent`` z ~ N(0, I) drawn from the default generator. -> [1, F]."""
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def stored_noise(self) -> list[torch.Tensor]:
        """The fixed noise buffers ``noises.noise{i}`` in layer order, each [1, 1, r, r]."""
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def styles_to_latent(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False, truncation: float = 1,
                         truncation_latent: Optional[torch.Tensor] = None,
                         inject_index: Optional[int] = None) -> torch.Tensor:
        """Per-layer latents [B, num_latent, F] from one or two style inputs.

        Args:
            styles: ``[s]`` or ``[s1, s2]`` (style mixing). Each s is [B, F] (z, or w when
                ``input_is_latent``); a single s may also be [B, num_latent, F], one w per layer
                (GFP-GAN with ``different_w``).
            input_is_latent: skip the style MLP (styles are already w).
            truncation: ``w <- w_avg + truncation * (w - w_avg)`` when < 1.
            truncation_latent: w_avg, [1, F].
            inject_index: with two styles, latents ``[0, inject_index)`` come from s1 and the rest
                from s2; None draws it with Python's ``random.randint(1, num_latent - 1)``, as official.
        Raises:
            ValueError: for other than 1 or 2 styles.
        """
        if len(styles) not in (1, 2):
            raise ValueError(f"{type(self).__name__} takes 1 or 2 style codes, got {len(styles)}")
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            if styles[0].ndim == 3:
                return styles[0]
            return styles[0].unsqueeze(1).repeat(1, self.num_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.num_latent - 1)
        latent1 = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        latent2 = styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)
        return torch.cat([latent1, latent2], 1)

    # -- synthesis --------------------------------------------------------------------------

    def synthesize(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]],
                   feature_hook: Optional[FeatureHook] = None) -> torch.Tensor:
        """Run the synthesis network.

        Args:
            latent: [B, num_latent, F].
            noise: ``num_layers`` entries, each [1 or B, 1, r, r] or None (fresh per-sample noise,
                drawn in layer order).
            feature_hook: optional ``(features, level) -> features`` applied after the upsampling
                StyleConv of each resolution level (level 0 = 8 px); GFP-GAN puts its SFT here.
        Returns:
            image [B, 3, out_size, out_size].
        """
        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1  # index of this level's first StyleConv in the layer / latent order
            out = self.style_convs[2 * level](out, latent[:, i], noise=noise[i])
            if feature_hook is not None:
                out = feature_hook(out, level)
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noise=noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip

    def forward(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False,
                noise: Optional[Sequence[Optional[torch.Tensor]]] = None, randomize_noise: bool = True,
                truncation: float = 1, truncation_latent: Optional[torch.Tensor] = None,
                inject_index: Optional[int] = None,
                return_latents: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Generate images.

        Args:
            styles, input_is_latent, truncation, truncation_latent, inject_index: see
                :meth:`styles_to_latent`.
            noise: explicit noise maps per layer; if None, fresh noise when ``randomize_noise``
                (drawn per layer, in layer order, from the default generator), else the stored
                buffers ``noises.noise{i}``.
            return_latents: also return the latents [B, num_latent, F].
        Returns:
            (image [B, 3, out_size, out_size], latents or None).
        """
        latent = self.styles_to_latent(styles, input_is_latent, truncation, truncation_latent, inject_index)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()
        image = self.synthesize(latent, noise)
        return image, (latent if return_latents else None)


# ---------------------------------------------------------------------------------------------
# 4. Discriminator (its ConvLayer and ResBlock are also the U-Net encoder blocks of GFPGANv1)
# ---------------------------------------------------------------------------------------------


class ConvLayer(nn.Sequential):
    """[FIRBlur] -> EqualConv2d -> [FusedLeakyReLU | ScaledLeakyReLU] (basicsr ``ConvLayer``).

    ``downsample=True`` blurs then convolves with stride 2 (no padding): [B, Cin, H, W] ->
    [B, Cout, H/2, W/2]; otherwise a 'same' conv. With ``activate``, the bias lives in the
    ``FusedLeakyReLU`` (``bias=True``) or there is none (``ScaledLeakyReLU``); without, the
    conv has the bias if ``bias``. Sequential indices give the official keys, e.g.
    ``0.weight``/``1.bias``, or ``1.weight``/``2.bias`` after a blur.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, bias: bool = True,
                 activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            layers.append(FIRBlur(resample_kernel, downsample_factor=2, kernel_size=kernel_size))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``.

    [B, Cin, H, W] -> [B, Cout, H/2, W/2]. ``conv1`` 3x3, ``conv2`` 3x3 stride 2, ``skip`` 1x1
    stride 2 without bias or activation.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, bias=True, activate=True)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, resample_kernel=resample_kernel,
                               bias=True, activate=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, resample_kernel=resample_kernel,
                              bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return (out + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int, num_feat: int = 1) -> torch.Tensor:
    """Append minibatch standard-deviation channels, exactly as basicsr / rosinality.

    The batch is split as ``x.view(group, B // group, ...)`` with ``group = min(B, group_size)``,
    so samples i and j share a statistic iff ``i % (B // group) == j % (B // group)`` (strided,
    not consecutive, groups). The statistic is the mean over channels (split into ``num_feat``
    chunks) and pixels of ``sqrt(var + 1e-8)`` (biased variance over the group).

    Shapes: [B, C, H, W] -> [B, C + num_feat, H, W].
    """
    b, c, h, w = x.shape
    group = min(b, group_size)
    if b % group != 0:
        raise ValueError(f"minibatch stddev: batch size {b} is not divisible by the group size {group}")
    stddev = x.view(group, -1, num_feat, c // num_feat, h, w)
    stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)  # [B/group, num_feat, C/num_feat, H, W]
    stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)  # [B/group, num_feat, 1, 1]
    stddev = stddev.repeat(group, 1, h, w)  # [B, num_feat, H, W]
    return torch.cat([x, stddev], 1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (basicsr ``StyleGAN2Discriminator``).

    ``conv_body``: a 1x1 ``ConvLayer`` then ``ResBlock`` s down to 4x4; minibatch stddev (+1
    channel); ``final_conv`` 3x3; ``final_linear``: EqualLinear(C*16 -> C, fused lrelu) ->
    EqualLinear(C -> 1).

    Args:
        out_size: input resolution, a power of two in 8 .. 1024.
        channel_multiplier, narrow: channel widths, as in the generator.
        resample_kernel: 1-D FIR taps of the downsampling blur.
        stddev_group: minibatch-stddev group size (the batch must be divisible by
            ``min(batch, stddev_group)``).

    ``forward``: images [B, 3, out_size, out_size] -> logits [B, 1].
    """

    def __init__(self, out_size: int, channel_multiplier: float = 2,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, stddev_group: int = 4,
                 narrow: float = 1):
        super().__init__()
        log_size = log2_out_size(out_size, 8)
        channels = stylegan2_channels(channel_multiplier, narrow)

        conv_body: list[nn.Module] = [ConvLayer(3, channels[f"{out_size}"], 1, bias=True, activate=True)]
        in_channels = channels[f"{out_size}"]
        for log_res in range(log_size, 2, -1):
            out_channels = channels[f"{2 ** (log_res - 1)}"]
            conv_body.append(ResBlock(in_channels, out_channels, resample_kernel))
            in_channels = out_channels
        self.conv_body = nn.Sequential(*conv_body)

        self.final_conv = ConvLayer(in_channels + 1, channels["4"], 3, bias=True, activate=True)
        self.final_linear = nn.Sequential(
            EqualLinear(channels["4"] * 4 * 4, channels["4"], bias=True, bias_init_val=0, lr_mul=1,
                        activation="fused_lrelu"),
            EqualLinear(channels["4"], 1, bias=True, bias_init_val=0, lr_mul=1, activation=None),
        )
        self.stddev_group = stddev_group
        self.stddev_feat = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_body(x)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.view(out.shape[0], -1))


# ----------------------------------------------------------------------------------------------
# Recognising state dicts (faceprior.models.ARCHITECTURES)


def stylegan2_generator_options(shapes: Shapes, prefix: str, default_multiplier: float) -> dict:
    """out_size, num_style_feat, num_mlp, channel_multiplier and narrow of a StyleGAN2 generator
    whose keys start with ``prefix`` (e.g. "stylegan_decoder." inside GFP-GAN), read off the shapes:
    out_size from the number of noise buffers, narrow from the 4x4 channels, channel_multiplier
    from the channels at 64 px (``default_multiplier`` below 64 px, where it changes no shape)."""
    what = f"StyleGAN2 decoder ({prefix or 'no prefix'})"
    noise_ids = indices(shapes, re.escape(prefix) + r"noises\.noise(\d+)")
    if not noise_ids or noise_ids != list(range(len(noise_ids))) or len(noise_ids) % 2 == 0:
        raise ArchitectureError(f"{what}: the noise buffers {prefix}noises.noise<i> are missing or not 1, 3, 5, ... in number")
    log_size = (len(noise_ids) - 1) // 2 + 2
    narrow = require(shapes, prefix + "constant_input.weight", what)[1] / 512
    modulation = require(shapes, prefix + "style_conv1.modulated_conv.modulation.weight", what)
    channels_64 = None
    if log_size >= 6:  # style_convs[2 * (i - 3)] outputs the channels of resolution 2**i; 64 px is i = 6
        channels_64 = require(shapes, prefix + "style_convs.6.modulated_conv.weight", what)[1]
    return dict(
        out_size=2**log_size,
        num_style_feat=modulation[1],
        num_mlp=len(indices(shapes, re.escape(prefix) + r"style_mlp\.(\d+)\.weight")),
        channel_multiplier=channel_multiplier_of(channels_64, narrow, default_multiplier),
        narrow=plain_number(narrow),
    )


def _discriminator_options(shapes: Shapes) -> dict:
    what = "StyleGAN2Discriminator"
    blocks = indices(shapes, r"conv_body\.(\d+)\.conv1\.0\.weight")
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise ArchitectureError(f"{what}: the residual blocks conv_body.1 ... are missing or not numbered consecutively")
    log_size = len(blocks) + 2  # one down-sampling block per halving from out_size to 4
    # channels[out_size] is conv_body.0's output, block j outputs channels[out_size / 2**j].
    channels = {2**log_size: require(shapes, "conv_body.0.0.weight", what)[0]}
    for j in blocks:
        channels[2 ** (log_size - j)] = require(shapes, f"conv_body.{j}.conv2.1.weight", what)[0]
    narrow = channels[4] / 512
    return dict(
        out_size=2**log_size,
        channel_multiplier=channel_multiplier_of(channels.get(64), narrow, 2),
        resample_kernel=DEFAULT_RESAMPLE_KERNEL,
        stddev_group=4,
        narrow=plain_number(narrow),
    )


GENERATOR_ARCHITECTURE = Architecture(
    name="StyleGAN2Generator",
    network=StyleGAN2Generator,
    purpose="generator",
    layout=lambda shapes: "constant_input.weight" in shapes and "style_conv1.activate.bias" in shapes,
    options=lambda shapes: {**stylegan2_generator_options(shapes, "", 2),
                            "resample_kernel": DEFAULT_RESAMPLE_KERNEL, "lr_mlp": 0.01},
    capabilities=Capabilities(stochastic=True),
    description="StyleGAN2 generator with FIR resampling (basicsr): the paper model's generative prior",
)

DISCRIMINATOR_ARCHITECTURE = Architecture(
    name="StyleGAN2Discriminator",
    network=StyleGAN2Discriminator,
    purpose="discriminator",
    layout=lambda shapes: "conv_body.0.0.weight" in shapes and "final_linear.1.weight" in shapes,
    options=_discriminator_options,
    description="StyleGAN2 residual discriminator (basicsr): GFP-GAN's adversarial loss",
)
