"""GPEN (Yang et al., CVPR 2021): GAN Prior Embedded Network for blind face restoration.

Official code: ``yangxy/GPEN`` @ 2c736702, ``face_model/gpen_model.py`` (``FullGenerator``) and
``face_model/op/`` (the StyleGAN2 ops of rosinality/stylegan2-pytorch). This is an independent
implementation of the same function with the same state-dict keys, shapes and order (the FIR
kernels are buffers and part of the state dict), so the released ``GPEN-BFR-512.pth`` /
``GPEN-BFR-256.pth`` (plain state dicts) load with ``load_state_dict(strict=True)``.

How it works: a StyleGAN2 generator is embedded as the decoder of a U-shaped network.

1. The **encoder** (``ecd0``: 1x1 conv at S px; ``ecd1`` ... ``ecd{log2(S)-2}``: blurred stride-2
   3x3 convs, all with fused leaky ReLU) reduces the degraded face x [B, 3, S, S] to 4x4 and keeps
   every intermediate feature map.
2. ``final_linear`` maps the flattened 4x4 feature to a style code [B, style_dim]; the StyleGAN2
   mapping network (``generator.style``: PixelNorm + ``n_mlp`` EqualLinears with lr multiplier
   ``lr_mlp``) turns it into the latent w, used by every layer.
3. The **StyleGAN2 generator** synthesises the face from a learned 4x4 constant. Where StyleGAN2
   adds random noise, GPEN *concatenates* ``strength * encoder feature`` of the same resolution
   (``isconcat=True``), so the next conv and the ToRGB see twice the channels. The output is
   deterministic: no random numbers are drawn at inference.

The ops (FIR ``upfirdn2d``, fused leaky ReLU) are the plain-PyTorch ones of
:mod:`faceprior.models.ops`, which compute GPEN's CPU code path (``upfirdn2d_native``,
``scale * leaky_relu(x + bias, 0.2)``) on any device.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

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
    "ARCHITECTURE",
    "Blur",
    "ConvLayer",
    "EqualConv2d",
    "EqualLinear",
    "FullGenerator",
    "GPENGenerator",
    "ModulatedConv2d",
    "NoiseInjection",
    "StyledConv",
    "ToRGB",
    "gpen_channels",
    "gpen_layout",
    "gpen_options",
]


def gpen_channels(channel_multiplier: float = 2, narrow: float = 1) -> dict[int, int]:
    """Feature channels per resolution, as GPEN computes them (``int()`` truncates)."""
    channels = {res: int(512 * narrow) for res in (4, 8, 16, 32)}
    for res, base in ((64, 256), (128, 128), (256, 64), (512, 32), (1024, 16), (2048, 8)):
        channels[res] = int(base * channel_multiplier * narrow)
    return channels


class ScaledLeakyReLU(nn.Module):
    """``sqrt(2) * leaky_relu(x, 0.2)`` (a ConvLayer with ``activate=True, bias=False``; unused by FullGenerator)."""

    def __init__(self, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, negative_slope=self.negative_slope) * math.sqrt(2)


class PixelNorm(nn.Module):
    """Normalise each vector to unit mean square over dim 1: [B, C] -> [B, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """x2 FIR upsampling (zero insertion, then the blur kernel times 4): [B, C, H, W] -> [B, C, 2H, 2W].

    ``kernel`` [k, k] is a buffer (in the state dict).
    """

    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_fir_kernel(kernel) * (factor ** 2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """FIR filter with padding ``pad`` = (before, after): the anti-aliasing of the resampling convs.

    ``kernel`` [k, k] is a buffer (in the state dict), multiplied by ``upsample_factor**2`` after
    an upsampling conv. [B, C, H, W] -> [B, C, H + p0 + p1 - k + 1, W + p0 + p1 - k + 1].
    """

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        weights = make_fir_kernel(kernel)
        if upsample_factor > 1:
            weights = weights * (upsample_factor ** 2)
        self.register_buffer("kernel", weights)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weight N(0, 1) scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and learning-rate multiplier ``lr_mul``.

    Weight stored as N(0, 1) / lr_mul, used as ``weight * lr_mul / sqrt(in_dim)``; bias used as
    ``bias * lr_mul``. ``activation`` (any truthy value, officially 'fused_lrelu'): the bias goes
    through the fused leaky ReLU. [..., in_dim] -> [..., out_dim].
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0, lr_mul: float = 1,
                 activation: Optional[str] = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, self.bias * self.lr_mul)
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.linear(x, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (rosinality's version, as in GPEN).

    The weight [1, out, in, k, k] is scaled per sample by the style (``modulation``: EqualLinear
    style_dim -> in, bias 1 at init), optionally demodulated to unit norm per output channel, and
    applied as a grouped conv. ``upsample``: transposed stride-2 conv, then ``blur``;
    ``downsample``: ``blur``, then a stride-2 conv.
    x [B, in, H, W], style [B, style_dim] -> [B, out, H', W'] (H' = 2H, H or H/2).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, downsample: bool = False, blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = x.shape
        k = self.kernel_size
        style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
        weight = self.scale * self.weight * style                                  # [B, out, in, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        x = x.view(1, batch * in_channel, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = self.blur(out.view(batch, self.out_channel, out.shape[2], out.shape[3]))
        elif self.downsample:
            x = self.blur(x.view(batch, in_channel, height, width))
            x = x.view(1, batch * in_channel, x.shape[2], x.shape[3])
            weight = weight.view(batch * self.out_channel, in_channel, k, k)
            out = F.conv2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
        else:
            weight = weight.view(batch * self.out_channel, in_channel, k, k)
            out = F.conv2d(x, weight, padding=self.padding, groups=batch)
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
        return out


class NoiseInjection(nn.Module):
    """``cat(x, weight * noise)`` along channels (``isconcat``), else ``x + weight * noise``.

    ``weight`` [1] is zero at init. In GPEN the "noise" is the encoder feature map of the same
    resolution; only when ``noise`` is None is N(0, 1) noise drawn (never by FullGenerator).
    """

    def __init__(self, isconcat: bool = True):
        super().__init__()
        self.isconcat = isconcat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape).normal_()
        if self.isconcat:
            return torch.cat((x, self.weight * noise), dim=1)
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input of the generator, ``input`` [1, C, 4, 4], repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise injection (concatenation in GPEN), fused leaky ReLU with bias.

    [B, in, H, W] -> [B, out * (2 if isconcat else 1), H', W'].
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), demodulate: bool = True, isconcat: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channel * (2 if isconcat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus ``bias`` [1, 3, 1, 1], added to the FIR-upsampled
    previous RGB ``skip``. [B, C, H, W] -> [B, 3, H, W]."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class GPENGenerator(nn.Module):
    """GPEN's StyleGAN2 generator (official ``Generator``, state-dict prefix ``generator.``).

    ``style``: PixelNorm + ``n_mlp`` EqualLinears (the mapping network); ``input``: the learned 4x4
    constant; ``conv1`` / ``to_rgb1`` at 4 px; per resolution 8 ... ``size``: an upsampling
    StyledConv, a StyledConv and a ToRGB (``convs``, ``to_rgbs``; ``upsamples`` is empty, as
    officially).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: float = 2,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1):
        super().__init__()
        self.size = size
        self.n_mlp = n_mlp
        self.style_dim = style_dim
        self.feat_multiplier = 2 if isconcat else 1
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = gpen_channels(channel_multiplier, narrow)
        fm = self.feat_multiplier
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel,
                                isconcat=isconcat)
        self.to_rgb1 = ToRGB(self.channels[4] * fm, style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel * fm, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, isconcat=isconcat))
            self.convs.append(StyledConv(out_channel * fm, out_channel, 3, style_dim, blur_kernel=blur_kernel,
                                         isconcat=isconcat))
            self.to_rgbs.append(ToRGB(out_channel * fm, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def forward(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        """Synthesise from per-layer latents.

        Args:
            latent: [B, n_latent, style_dim], the w of each layer (all equal in GPEN).
            noise: ``2 * log2(size) - 3`` maps: for conv1 [B, C4, 4, 4], then two per resolution
                8 ... size ([B, C_r, r, r]); None draws N(0, 1) noise of the conv's output shape.
        Returns:
            [B, 3, size, size], unbounded (about [-1, 1] for faces).
        """
        out = self.input(latent.shape[0])
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, noise_up, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                            noise[2::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=noise_up)
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class ConvLayer(nn.Sequential):
    """[Blur (downsample only)], EqualConv2d (stride 2 when downsampling), [FusedLeakyReLU | ScaledLeakyReLU].

    As officially, the conv has a bias only when there is no activation (the activation carries it).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)
        self.padding = padding


class FullGenerator(nn.Module):
    """GPEN for blind face restoration (official ``FullGenerator``; see the module docstring).

    Args (official names and defaults; the released BFR models: ``FullGenerator(512, 512, 8, 2,
    narrow=1)`` and ``FullGenerator(256, 512, 8, 1, narrow=0.5)``):
        size: face side S, a power of 2 (>= 8).
        style_dim: width of the style code and of the mapping network (512).
        n_mlp: layers of the mapping network (8).
        channel_multiplier: channel multiplier of the resolutions >= 64 px.
        blur_kernel: FIR taps of the resampling filters ([1, 3, 3, 1]).
        lr_mlp: learning-rate multiplier of the mapping network (0.01).
        isconcat: concatenate (True, all released models) rather than add the encoder features.
        narrow: width factor of all channels.
    The official ``device`` argument only chose between GPEN's CUDA extensions and its pure-PyTorch
    path; here there is only the latter (running on any device), so it is not taken.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1):
        super().__init__()
        channels = gpen_channels(channel_multiplier, narrow)
        self.size = size
        self.log_size = int(math.log2(size))
        self.generator = GPENGenerator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                       blur_kernel=blur_kernel, lr_mlp=lr_mlp, isconcat=isconcat, narrow=narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        in_channel = channels[size]
        self.names = [f"ecd{i}" for i in range(self.log_size - 1)]
        for i in range(self.log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            # As officially, ConvLayer's blur kernel is its default [1, 3, 3, 1], not blur_kernel.
            setattr(self, self.names[self.log_size - i + 1],
                    nn.Sequential(ConvLayer(in_channel, out_channel, 3, downsample=True)))
            in_channel = out_channel
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation="fused_lrelu"))

    def forward(self, inputs: torch.Tensor, return_latents: bool = False, inject_index: Optional[int] = None,
                truncation: float = 1, truncation_latent: Optional[torch.Tensor] = None,
                input_is_latent: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Restore faces.

        Args:
            inputs: [B, 3, S, S] RGB faces in [-1, 1].
            return_latents: also return the per-layer latents.
            inject_index: ignored (officially too: it only applies to style mixing of two codes).
            truncation, truncation_latent: if truncation < 1, w = w_avg + truncation * (w - w_avg)
                with ``truncation_latent`` w_avg [1, style_dim] (official behaviour).
            input_is_latent: skip the mapping network (the encoder's code is used as w).
        Returns:
            ``(image, latent)``: image [B, 3, S, S], unbounded (about [-1, 1]; the official
            post-processing clips to [-1, 1] and truncates to uint8); latent [B, n_latent,
            style_dim] if ``return_latents``, else None.
        """
        features = []
        x = inputs
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)
        style = self.final_linear(x.view(x.shape[0], -1))                    # [B, style_dim]
        if not input_is_latent:
            style = self.generator.style(style)
        if truncation < 1:
            style = truncation_latent + truncation * (style - truncation_latent)
        latent = style.unsqueeze(1).repeat(1, self.generator.n_latent, 1)      # [B, n_latent, style_dim]
        # Official noise list: every encoder feature twice, lowest resolution first, minus the first
        # -> [f4, f8, f8, f16, f16, ..., fS, fS].
        noise = [f for f in reversed(features) for _ in range(2)][1:]
        image = self.generator(latent, noise)
        return image, (latent if return_latents else None)


# ----------------------------------------------------------------------------------------------
# Recognising GPEN state dicts


def gpen_layout(shapes: Shapes) -> bool:
    """A GPEN ``FullGenerator`` state dict: rosinality-style StyleGAN2 keys under ``generator.``
    (``generator.style.1``, ``generator.input.input``, ``generator.conv1``; GFP-GAN's decoder is
    ``stylegan_decoder.*`` with ``style_mlp`` / ``constant_input``), the encoder ``ecd0`` ...
    and ``final_linear``, with one encoder level per generator level (``log2(S) - 1`` encoder
    convs, ``log2(S) - 2`` ``to_rgbs``); GPEN's ``FullGenerator_SR`` (fewer encoder levels than
    generator levels) is a different architecture and is not matched."""
    needed = ("generator.style.1.weight", "generator.input.input", "generator.conv1.conv.weight",
              "generator.to_rgb1.conv.weight", "ecd0.0.0.weight", "final_linear.0.weight")
    if not all(key in shapes for key in needed):
        return False
    n_ecd = len(indices(shapes, r"ecd(\d+)\..+"))
    n_rgb = len(indices(shapes, r"generator\.to_rgbs\.(\d+)\..+"))
    return n_ecd == n_rgb + 1


def gpen_options(shapes: Shapes) -> dict[str, Any]:
    """Every constructor argument of :class:`FullGenerator`, read off the key names and shapes.

    size from the number of ``to_rgbs`` (log2(size) - 2), style_dim and n_mlp from
    ``generator.style``, isconcat from the width of ``generator.conv1.activate.bias`` (2 x the conv
    width when concatenating), narrow from the 4-px width (``int(512 * narrow)``) and
    channel_multiplier from the 64-px width (``int(256 * channel_multiplier * narrow)``); every
    resolution's width is then checked. Not in the shapes, so the official values (those of the
    released models): ``blur_kernel=(1, 3, 3, 1)`` (only the tap count, 4, shows), ``lr_mlp=0.01``
    (a run-time scale), and ``channel_multiplier=2`` (the official default) below 64 px, where it
    changes no shape.
    """
    what = "GPEN"
    n_rgb = len(indices(shapes, r"generator\.to_rgbs\.(\d+)\..+"))
    size = 2 ** (n_rgb + 2)
    style_dim = int(require(shapes, "generator.style.1.weight", what)[0])
    n_mlp = len(indices(shapes, r"generator\.style\.(\d+)\.weight"))
    c4 = int(require(shapes, "generator.input.input", what)[1])
    act = int(require(shapes, "generator.conv1.activate.bias", what)[0])
    if act not in (c4, 2 * c4):
        raise ArchitectureError(f"GPEN: conv1 activation width {act} is neither {c4} nor 2 x {c4}")
    isconcat = act == 2 * c4
    fm = 2 if isconcat else 1
    narrow = plain_number(round(c4 / 512, 6))
    # Widths per resolution: 4 px from the constant, r >= 8 from the first (upsampling) conv of level r.
    widths = {4: c4}
    for j in range(n_rgb):
        widths[2 ** (j + 3)] = int(require(shapes, f"generator.convs.{2 * j}.conv.weight", what)[1])
    channel_multiplier = channel_multiplier_of(widths.get(64), narrow, default=2)
    expected = gpen_channels(channel_multiplier, narrow)
    wrong = {r: (c, expected[r]) for r, c in widths.items() if expected[r] != c}
    if wrong:
        raise ArchitectureError(f"GPEN: channel widths {wrong} (found, expected) do not follow "
                                f"narrow={narrow}, channel_multiplier={channel_multiplier}")
    for key, shape in shapes.items():
        if key.endswith(".kernel") and tuple(shape) != (4, 4):
            raise ArchitectureError(f"GPEN: FIR kernel {key} is {tuple(shape)}, not the [4, 4] of blur_kernel "
                                    "[1, 3, 3, 1] (other taps cannot be read off the shapes)")
    ecd0 = require(shapes, "ecd0.0.0.weight", what)
    if int(ecd0[0]) != expected[size]:
        raise ArchitectureError(f"GPEN: ecd0 has {ecd0[0]} channels, expected {expected[size]} at {size} px")
    if int(require(shapes, "generator.to_rgb1.conv.weight", what)[2]) != c4 * fm:
        raise ArchitectureError("GPEN: to_rgb1 width does not match isconcat")
    return {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": channel_multiplier,
        "blur_kernel": (1, 3, 3, 1),     # no trace beyond the tap count: official value
        "lr_mlp": 0.01,                  # no trace in the shapes: official value
        "isconcat": isconcat,
        "narrow": narrow,
    }


def _restore(network: nn.Module, x: torch.Tensor, fidelity: Optional[float], randomize_noise: bool) -> torch.Tensor:
    """The official call ``model(x)[0]``; GPEN has no fidelity control and draws no noise."""
    return network(x)[0]


# Named "GPEN" rather than by its official class name "FullGenerator": that name says nothing
# about the method and is generic enough to collide with other generators (GPEN's own repository
# also has FullGenerator_SR); "GPEN" is how the method and its released files (GPEN-BFR-*.pth)
# are known. The class itself keeps the official name FullGenerator.
ARCHITECTURE = Architecture(
    name="GPEN",
    network=FullGenerator,
    purpose="restoration",
    layout=gpen_layout,
    options=gpen_options,
    face_size=lambda options: options["size"],
    framing="gpen",  # GPEN aligns faces to its own, tighter template (faceprior.face.templates.GPEN_TEMPLATE_512)
    restore=_restore,
    capabilities=Capabilities(fidelity=False, stochastic=False, fast_cpu=False, bf16=True, onnx=False),
    weights_license=(
        "no licence granted: the GPEN repository has no licence file; its README said "
        "'(c) Alibaba, 2021. For academic and non-commercial use only.' from 2021 until that section "
        "was removed in March 2026 (commit 2c736702) with nothing in its place. Treat the released "
        "GPEN-BFR weights as academic / non-commercial use only; commercial use needs the authors' "
        "(Alibaba's) permission"),
    description="GPEN (CVPR 2021): a StyleGAN2 generator embedded in a U-shaped network whose encoder "
                "features replace the noise",
)
