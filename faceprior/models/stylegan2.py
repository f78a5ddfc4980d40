"""The original StyleGAN2 generator and discriminator (basicsr ``stylegan2_arch``).

This is the StyleGAN2 variant used by the GFP-GAN paper model (``GFPGANv1``): equalized learning
rate layers, modulated convolutions that upsample with a transposed convolution followed by a FIR
blur, and fused leaky ReLUs with a learned bias. Module and parameter names follow basicsr exactly,
so that official checkpoints load with ``load_state_dict(..., strict=True)``.

Reading order:

1. Building blocks shared with the other StyleGAN2 variants: ``NormStyleCode``, ``EqualLinear``,
   ``EqualConv2d``, ``ScaledLeakyReLU``, ``ConstantInput``.
2. FIR resampling modules: ``FIRUpsample`` (upsample x2 + blur) and ``FIRBlur`` (the blur placed
   before a strided conv or after a transposed conv).
3. The generator: ``ModulatedConv2d`` -> ``StyleConv`` (+ ``inject_noise``) / ``ToRGB`` ->
   ``StyleGAN2Generator``.
4. The discriminator: ``ConvLayer`` -> ``ResBlock`` -> ``minibatch_stddev`` ->
   ``StyleGAN2Discriminator``.

Feature maps are ``[B, C, H, W]``; images are RGB, nominally in [-1, 1].
"""

from __future__ import annotations

import math
import random
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

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
    "ModulatedConv2d",
    "inject_noise",
    "StyleConv",
    "ToRGB",
    "StyleGAN2Generator",
    "ConvLayer",
    "ResBlock",
    "minibatch_stddev",
    "StyleGAN2Discriminator",
]

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


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias).

    For each sample, the weight is scaled per input channel by ``s = modulation(style)`` and, if
    ``demodulate``, renormalised per output channel to unit L2 norm. The per-sample weights are
    applied with one grouped convolution (``groups=B``).

    ``sample_mode``:
      * None: 'same' conv, [B, Cin, H, W] -> [B, Cout, H, W].
      * 'upsample': stride-2 transposed conv then ``FIRBlur`` -> [B, Cout, 2H, 2W].
      * 'downsample': ``FIRBlur`` then stride-2 conv -> [B, Cout, H/2, W/2].

    ``style`` is [B, num_style_feat]. Parameters: ``weight`` [1, Cout, Cin, k, k] and
    ``modulation`` (``EqualLinear``, bias initialised to 1).
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
        style = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * style  # [B, Cout, Cin, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)

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

    Shapes as ``ModulatedConv2d``. Parameters: ``weight`` [1] is the noise strength (zero at
    init; the official name, hence not a sub-module), ``modulated_conv``, ``activate.bias`` [Cout].
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
    ``upsample=False``) -> [B, 3, H, W]. Parameters: ``bias`` [1, 3, 1, 1], ``modulated_conv``.
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

    Structure: ``style_mlp`` (``NormStyleCode`` + ``num_mlp`` x ``EqualLinear``) maps z to w; a
    4x4 ``constant_input`` goes through ``style_conv1`` and ``to_rgb1``; then, for each resolution
    8 .. out_size, two ``style_convs`` (the first upsamples) and one ``to_rgbs`` entry.

    Sizes: ``num_layers = 2 * log2(out_size) - 3`` StyleConvs (= noise buffers ``noises.noise{i}``
    of shape [1, 1, r, r], r = 2 ** ((i + 5) // 2)); ``num_latent = 2 * log2(out_size) - 2`` w
    vectors (one per StyleConv plus one for the last ToRGB).

    Args:
        out_size: output resolution, a power of two in 4 .. 1024.
        num_style_feat: size of z and w.
        num_mlp: number of linear layers in the style MLP.
        channel_multiplier: widens the layers at 64 px and above.
        resample_kernel: 1-D FIR taps for up/down-sampling.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, lr_mlp: float = 0.01,
                 narrow: float = 1):
        super().__init__()
        self.log_size = log2_out_size(out_size, 4)
        self.num_style_feat = num_style_feat
        self.style_mlp = nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, bias=True, bias_init_val=0, lr_mul=lr_mlp,
                        activation="fused_lrelu") for _ in range(num_mlp)])

        channels = stylegan2_channels(channel_multiplier, narrow)
        self.channels = channels
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = StyleConv(channels["4"], channels["4"], kernel_size=3, num_style_feat=num_style_feat,
                                     demodulate=True, sample_mode=None, resample_kernel=resample_kernel)
        self.to_rgb1 = ToRGB(channels["4"], num_style_feat, upsample=False, resample_kernel=resample_kernel)

        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        # Registration order (style_convs, to_rgbs, noises) fixes the state-dict order.
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))

        in_channels = channels["4"]
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[f"{2**log_res}"]
            self.style_convs.append(StyleConv(in_channels, out_channels, kernel_size=3, num_style_feat=num_style_feat,
                                              demodulate=True, sample_mode="upsample",
                                              resample_kernel=resample_kernel))
            self.style_convs.append(StyleConv(out_channels, out_channels, kernel_size=3,
                                              num_style_feat=num_style_feat, demodulate=True, sample_mode=None,
                                              resample_kernel=resample_kernel))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True, resample_kernel=resample_kernel))
            in_channels = out_channels

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
        """w = style_mlp(z). [B, num_style_feat] -> [B, num_style_feat]."""
        return self.style_mlp(z)

    def mean_latent(self, num_latent: int) -> torch.Tensor:
        """Mean w over ``num_latent`` z ~ N(0, I) drawn from the default generator. -> [1, num_style_feat]."""
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def stored_noise(self) -> list[torch.Tensor]:
        """The noise buffers ``noises.noise{i}`` in layer order."""
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def styles_to_latent(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False, truncation: float = 1,
                         truncation_latent: Optional[torch.Tensor] = None,
                         inject_index: Optional[int] = None) -> torch.Tensor:
        """Turn 1 or 2 style codes into per-layer latents [B, num_latent, num_style_feat].

        Each style is z (mapped through the MLP unless ``input_is_latent``) of shape [B, F], or,
        with a single style, already per-layer latents [B, num_latent, F]. Truncation moves w
        towards ``truncation_latent``. With two styles, layers ``< inject_index`` use the first and
        the rest the second (``inject_index`` random in [1, num_latent - 1] if None, drawn with
        Python's ``random``, as official).
        """
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            if styles[0].ndim == 3:
                return styles[0]
            return styles[0].unsqueeze(1).repeat(1, self.num_latent, 1)
        if len(styles) == 2:
            if inject_index is None:
                inject_index = random.randint(1, self.num_latent - 1)
            latent1 = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
            latent2 = styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)
            return torch.cat([latent1, latent2], 1)
        raise ValueError(f"StyleGAN2Generator takes 1 or 2 style codes, got {len(styles)}")

    # -- synthesis --------------------------------------------------------------------------

    def synthesize(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]],
                   feature_hook: Optional[FeatureHook] = None) -> torch.Tensor:
        """Run the synthesis network.

        Args:
            latent: [B, num_latent, num_style_feat].
            noise: ``num_layers`` entries, each [1 or B, 1, r, r] or None (draw fresh noise).
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
            styles: list of 1 or 2 codes [B, num_style_feat] (see ``styles_to_latent``).
            input_is_latent: the codes are w (skip the style MLP).
            noise: explicit noise maps per layer; if None, fresh noise when ``randomize_noise``
                (drawn per layer, in layer order, from the default generator), else the stored
                buffers ``noises.noise{i}``.
            truncation, truncation_latent: truncation trick (applied when truncation < 1).
            inject_index: style-mixing crossover layer for two codes.
            return_latents: also return the latents [B, num_latent, num_style_feat].
        Returns:
            (image [B, 3, out_size, out_size], latents or None).
        """
        latent = self.styles_to_latent(styles, input_is_latent, truncation, truncation_latent, inject_index)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()
        image = self.synthesize(latent, noise)
        return image, (latent if return_latents else None)


# ---------------------------------------------------------------------------------------------
# 4. Discriminator
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
        self.padding = padding


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
