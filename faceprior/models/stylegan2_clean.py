"""The "clean" StyleGAN2 generator of GFP-GAN: plain PyTorch ops, bilinear up/down-sampling.

This is the decoder of the released GFP-GAN v1.3 / v1.4 models (gfpgan ``stylegan2_clean_arch``).
It differs from the original StyleGAN2 generator in three ways: resampling is
``F.interpolate(mode='bilinear')`` instead of FIR filtering, the style MLP and the modulations are
plain ``nn.Linear`` layers (no equalized learning rate), and activations are ``nn.LeakyReLU`` with
an explicit ``sqrt(2)`` gain in :class:`StyleConv`.

Module and parameter names (``style_mlp.1.weight``, ``style_convs.0.modulated_conv.weight``,
``noises.noise0``, ...) and their registration order equal the official ones, so official
checkpoints load with ``load_state_dict(strict=True)``. Constructing a model right after
``torch.manual_seed(s)`` also draws the same random initial weights as the official code.

Synthesis at a glance, for ``out_size = 2 ** log_size``::

    z [B, F] --style_mlp--> w [B, F] --repeat--> latent [B, num_latent, F]
    constant 4x4 -> style_conv1 -> to_rgb1 ------------------------------> skip (RGB, 4x4)
    for each resolution r = 8, 16, ..., out_size:
        feat = style_convs[2k](feat)    (bilinear 2x upsample + 3x3 modulated conv)
        feat = style_convs[2k+1](feat)  (3x3 modulated conv)
        skip = to_rgbs[k](feat) + upsample(skip)
    image = skip [B, 3, out_size, out_size]

Layer ``i`` of the ``num_layers = 2 * log_size - 3`` StyleConvs uses latent ``i``; the ToRGB after
layer ``i`` uses latent ``i + 1``, hence ``num_latent = 2 * log_size - 2``.
"""

from __future__ import annotations

import math
import random
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Blocks that are identical in every StyleGAN2 variant (re-exported here).
from faceprior.models.stylegan2 import ConstantInput, NormStyleCode, log2_out_size, stylegan2_channels

__all__ = [
    "NormStyleCode",
    "ModulatedConv2d",
    "StyleConv",
    "ToRGB",
    "ConstantInput",
    "StyleGAN2GeneratorClean",
]


def kaiming_normal_linear_(layer: nn.Linear, bias_fill: float, negative_slope: float,
                           nonlinearity: str) -> None:
    """Re-initialise a linear layer like basicsr's ``default_init_weights`` (scale=1, fan_in)."""
    with torch.no_grad():
        nn.init.kaiming_normal_(layer.weight, a=negative_slope, mode="fan_in", nonlinearity=nonlinearity)
        layer.bias.fill_(bias_fill)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), with optional bilinear 2x up/down-sampling.

    The style ``w`` [B, F] is mapped by ``modulation`` (a linear layer, bias 1 at init) to one
    scale per input channel; the shared weight [1, C_out, C_in, k, k] is scaled per sample and,
    with ``demodulate``, renormalised to unit L2 norm per output channel. The batch is then run as
    one grouped convolution (``groups = B``). Resampling is applied to the input, before the conv.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: k (odd; padding ``k // 2`` keeps the size).
        num_style_feat: F, the length of the style vector.
        demodulate: normalise the modulated weights (True for StyleConv, False for ToRGB).
        sample_mode: None, ``'upsample'`` (x2) or ``'downsample'`` (x0.5), bilinear,
            ``align_corners=False``.
        eps: added under the square root of the demodulation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None, eps: float = 1e-8):
        super().__init__()
        if sample_mode not in (None, "upsample", "downsample"):
            raise ValueError(f"ModulatedConv2d: sample_mode must be None, 'upsample' or 'downsample', "
                             f"got {sample_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.eps = eps

        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        kaiming_normal_linear_(self.modulation, bias_fill=1.0, negative_slope=0.0, nonlinearity="linear")
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
            / math.sqrt(in_channels * kernel_size ** 2))
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W], style [B, F] -> [B, C_out, H', W'] (H' = 2H, H/2 or H)."""
        b, c_in, _, _ = x.shape
        scales = self.modulation(style).view(b, 1, c_in, 1, 1)
        weight = self.weight * scales                                    # [B, C_out, C_in, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)  # [B, C_out]
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)
        weight = weight.view(b * self.out_channels, c_in, self.kernel_size, self.kernel_size)

        if self.sample_mode == "upsample":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        elif self.sample_mode == "downsample":
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)

        _, _, h, w = x.shape
        out = F.conv2d(x.reshape(1, b * c_in, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, out.shape[2], out.shape[3])

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, demodulate={self.demodulate}, "
                f"sample_mode={self.sample_mode}")


class StyleConv(nn.Module):
    """Modulated 3x3 conv, then ``* sqrt(2)``, noise injection, bias and leaky ReLU(0.2).

    ``out = lrelu(sqrt(2) * modconv(x, w) + weight * noise + bias)`` where ``weight`` [1] is the
    learned noise strength (zero at init) and ``bias`` is [1, C_out, 1, 1].

    Noise: a given tensor broadcastable to [B, 1, H', W'] (the stored ``noises.noise{i}`` is
    [1, 1, H', W'], shared by the batch), or None to draw a fresh map per sample with
    ``out.new_empty(B, 1, H', W').normal_()`` from the global generator of ``out``'s device.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=demodulate, sample_mode=sample_mode)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.activate = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, C_in, H, W], style [B, F] -> [B, C_out, H', W']."""
        out = self.modulated_conv(x, style) * 2 ** 0.5
        if noise is None:
            b, _, h, w = out.shape
            noise = out.new_empty(b, 1, h, w).normal_()
        out = out + self.weight * noise
        out = out + self.bias
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus bias, plus the (upsampled) skip image.

    Shapes: x [B, C, H, W], style [B, F], skip [B, 3, H/2, W/2] (or [B, 3, H, W] when
    ``upsample=False``) -> [B, 3, H, W].
    """

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, kernel_size=1, num_style_feat=num_style_feat,
                                              demodulate=False, sample_mode=None)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


# A per-level feature transform: (features [B, C, H, W], level index k) -> features.
LevelTransform = Callable[[torch.Tensor, int], torch.Tensor]


class StyleGAN2GeneratorClean(nn.Module):
    """StyleGAN2 generator without custom CUDA ops (GFP-GAN's ``StyleGAN2GeneratorClean``).

    Args:
        out_size: output resolution, a power of two (e.g. 512).
        num_style_feat: F, the length of z and w.
        num_mlp: number of linear + leaky ReLU layers in the style MLP.
        channel_multiplier: channel width of the 64 px and larger levels (see
            :func:`stylegan2_channels`).
        narrow: global channel width ratio.

    Attributes:
        log_size: ``log2(out_size)``.
        num_layers: number of StyleConv layers, ``2 * log_size - 3`` (also the number of noise maps).
        num_latent: number of latents consumed by synthesis, ``2 * log_size - 2``.
        noises: a plain module holding the fixed noise buffers ``noise{i}``, [1, 1, r, r] with
            ``r = 2 ** ((i + 5) // 2)``.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, narrow: float = 1):
        super().__init__()
        self.log_size = log2_out_size(out_size, smallest=8)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        self.num_style_feat = num_style_feat
        self.channels = stylegan2_channels(channel_multiplier, narrow)
        channels = self.channels

        # Mapping network z -> w: pixel norm, then num_mlp x (linear, leaky ReLU).
        mlp_layers: List[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            mlp_layers += [nn.Linear(num_style_feat, num_style_feat, bias=True), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp_layers)
        for layer in self.style_mlp:
            if isinstance(layer, nn.Linear):
                kaiming_normal_linear_(layer, bias_fill=0.0, negative_slope=0.2, nonlinearity="leaky_relu")

        # 4x4 level.
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = StyleConv(channels["4"], channels["4"], kernel_size=3, num_style_feat=num_style_feat,
                                     demodulate=True, sample_mode=None)
        self.to_rgb1 = ToRGB(channels["4"], num_style_feat, upsample=False)

        # Containers are registered before they are filled, as officially: this fixes the
        # state-dict order (style_convs, to_rgbs, noises) and the order of the random draws
        # (noise buffers before the layer weights).
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))

        # 8x8 ... out_size levels: upsampling StyleConv, StyleConv, ToRGB.
        in_channels = channels["4"]
        for level in range(3, self.log_size + 1):
            out_channels = channels[str(2 ** level)]
            self.style_convs.append(StyleConv(in_channels, out_channels, kernel_size=3,
                                              num_style_feat=num_style_feat, demodulate=True,
                                              sample_mode="upsample"))
            self.style_convs.append(StyleConv(out_channels, out_channels, kernel_size=3,
                                              num_style_feat=num_style_feat, demodulate=True,
                                              sample_mode=None))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    # ---------------------------------------------------------------- latents and noise

    def make_noise(self) -> List[torch.Tensor]:
        """Fresh noise maps, one per StyleConv layer: [1, 1, 4, 4], then two [1, 1, r, r] per level."""
        device = self.constant_input.weight.device
        noises = [torch.randn(1, 1, 4, 4, device=device)]
        for level in range(3, self.log_size + 1):
            for _ in range(2):
                noises.append(torch.randn(1, 1, 2 ** level, 2 ** level, device=device))
        return noises

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map style codes to W space: z [B, F] -> w [B, F]."""
        return self.style_mlp(z)

    def mean_latent(self, num_latent: int) -> torch.Tensor:
        """Mean of ``style_mlp(randn(num_latent, F))`` (draws from the global generator) -> [1, F]."""
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def stored_noise(self) -> List[torch.Tensor]:
        """The fixed noise buffers ``noises.noise{i}`` in layer order, each [1, 1, r, r]."""
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def styles_to_latent(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False,
                         truncation: float = 1, truncation_latent: Optional[torch.Tensor] = None,
                         inject_index: Optional[int] = None) -> torch.Tensor:
        """Per-layer latents [B, num_latent, F] from one or two style inputs.

        Args:
            styles: ``[s]`` or ``[s1, s2]`` (style mixing). Each s is [B, F] (z, or w when
                ``input_is_latent``); a single s may also be [B, num_latent, F], one w per layer.
            input_is_latent: skip the style MLP (styles are already w).
            truncation: ``w <- w_avg + truncation * (w - w_avg)`` when < 1.
            truncation_latent: w_avg, [1, F].
            inject_index: with two styles, latents ``[0, inject_index)`` come from s1 and the rest
                from s2; None draws it with ``random.randint(1, num_latent - 1)`` as officially.
        """
        if len(styles) not in (1, 2):
            raise ValueError(f"{type(self).__name__}: styles must hold 1 or 2 tensors, got {len(styles)}")
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) == 1:
            if styles[0].ndim == 3:  # already one latent per layer (GFP-GAN with different_w)
                return styles[0]
            return styles[0].unsqueeze(1).repeat(1, self.num_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.num_latent - 1)
        latent1 = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        latent2 = styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)
        return torch.cat([latent1, latent2], 1)

    # ---------------------------------------------------------------- synthesis

    def synthesize(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]],
                   transform: Optional[LevelTransform] = None) -> torch.Tensor:
        """Run the synthesis network.

        Args:
            latent: [B, num_latent, F] per-layer w.
            noise: ``num_layers`` entries, each a noise map or None (fresh per-sample noise,
                drawn in layer order).
            transform: optional ``f(feat, k)`` applied to the features of level k (k = 0 at 8 px)
                right after its upsampling StyleConv. GFP-GAN's decoder puts its SFT here.
        Returns:
            image [B, 3, out_size, out_size].
        """
        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])

        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k + 1  # layer index of the upsampling StyleConv of this level
            out = self.style_convs[2 * k](out, latent[:, i], noise=noise[i])
            if transform is not None:
                out = transform(out, k)
            out = self.style_convs[2 * k + 1](out, latent[:, i + 1], noise=noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip

    def forward(self, styles: Sequence[torch.Tensor], input_is_latent: bool = False,
                noise: Optional[Sequence[Optional[torch.Tensor]]] = None, randomize_noise: bool = True,
                truncation: float = 1, truncation_latent: Optional[torch.Tensor] = None,
                inject_index: Optional[int] = None,
                return_latents: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Generate images.

        Args:
            styles, input_is_latent, truncation, truncation_latent, inject_index: see
                :meth:`styles_to_latent`.
            noise: per-layer noise maps; when None, ``randomize_noise`` picks fresh noise (True)
                or the stored buffers ``noises.noise{i}`` (False).
            return_latents: also return the per-layer latents.
        Returns:
            (image [B, 3, out_size, out_size], latent [B, num_latent, F] or None).
        """
        latent = self.styles_to_latent(styles, input_is_latent, truncation, truncation_latent, inject_index)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()
        image = self.synthesize(latent, noise)
        return image, (latent if return_latents else None)
