"""The "clean" StyleGAN2 generator of GFP-GAN: plain PyTorch ops, bilinear up-sampling.

This is the decoder of the released GFP-GAN v1.3 / v1.4 models (gfpgan ``stylegan2_clean_arch``).
It has the structure, latents, noise convention and synthesis of
:class:`faceprior.models.stylegan2.StyleGAN2Generator` (which it subclasses), with other layers:

* resampling is ``F.interpolate(mode='bilinear', align_corners=False)`` instead of FIR filtering;
* the style MLP and the modulations are plain ``nn.Linear`` layers (no equalized learning rate),
  re-initialised with Kaiming-normal weights as basicsr's ``default_init_weights`` does;
* activations are ``nn.LeakyReLU(0.2)``, with an explicit ``sqrt(2)`` gain in :class:`StyleConv`,
  and the StyleConv bias is a [1, C, 1, 1] parameter of its own.

Module and parameter names (``style_mlp.1.weight``, ``style_convs.0.modulated_conv.weight``,
``noises.noise0``, ...) and their registration order equal the official ones, so official
checkpoints load with ``load_state_dict(strict=True)``. Constructing a model right after
``torch.manual_seed(s)`` also draws the same random initial weights as the official code.

Feature maps are ``[B, C, H, W]``; images are RGB, nominally in [-1, 1]; F is ``num_style_feat``.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, Capabilities
from faceprior.models.stylegan2 import (
    NormStyleCode,
    StyleGAN2Generator,
    inject_noise,
    modulate_weight,
    stylegan2_generator_options,
)

__all__ = ["ModulatedConv2d", "StyleConv", "ToRGB", "StyleGAN2GeneratorClean", "ARCHITECTURE"]


def kaiming_normal_linear_(layer: nn.Linear, bias_fill: float, negative_slope: float,
                           nonlinearity: str) -> None:
    """Re-initialise a linear layer like basicsr's ``default_init_weights`` (scale=1, fan_in)."""
    with torch.no_grad():
        nn.init.kaiming_normal_(layer.weight, a=negative_slope, mode="fan_in", nonlinearity=nonlinearity)
        layer.bias.fill_(bias_fill)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), with optional bilinear 2x up/down-sampling.

    The style [B, F] is mapped by ``modulation`` (a linear layer, bias 1 at init) to one scale per
    input channel; :func:`~faceprior.models.stylegan2.modulate_weight` gives the per-sample weights,
    which are applied as one grouped convolution (``groups = B``). Resampling is applied to the
    input, before the conv.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: k (odd; padding ``k // 2`` keeps the size).
        num_style_feat: F, the length of the style vector.
        demodulate: normalise the modulated weights (True for StyleConv, False for ToRGB).
        sample_mode: None, ``'upsample'`` (x2) or ``'downsample'`` (x0.5), bilinear,
            ``align_corners=False``.
        eps: added under the square root of the demodulation.

    Parameters: ``weight`` [1, C_out, C_in, k, k] (stored pre-scaled by ``1 / sqrt(C_in * k * k)``),
    ``modulation`` (``nn.Linear`` F -> C_in).
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
        weight = modulate_weight(self.weight, self.modulation(style), self.demodulate, self.eps)
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
    """Modulated conv, then ``* sqrt(2)``, noise injection, bias and leaky ReLU(0.2).

    ``out = lrelu(sqrt(2) * modconv(x, w) + weight * noise + bias)`` where ``weight`` [1] is the
    learned noise strength (zero at init) and ``bias`` is [1, C_out, 1, 1] (zero at init).

    Shapes: x [B, C_in, H, W], style [B, F], noise as
    :func:`~faceprior.models.stylegan2.inject_noise` (None: fresh per-sample noise) -> [B, C_out, H', W'].
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
        out = self.modulated_conv(x, style) * 2 ** 0.5
        out = inject_noise(out, self.weight, noise)
        out = out + self.bias
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus bias, plus the (bilinearly upsampled) skip image.

    Shapes: x [B, C, H, W], style [B, F], skip [B, 3, H/2, W/2] (or [B, 3, H, W] when
    ``upsample=False``; or None for the first ToRGB) -> [B, 3, H, W].
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


class StyleGAN2GeneratorClean(StyleGAN2Generator):
    """StyleGAN2 generator without custom CUDA ops (GFP-GAN's ``StyleGAN2GeneratorClean``).

    Structure, attributes (``log_size``, ``num_layers``, ``num_latent``, ``channels``, ``noises``)
    and methods (``forward``, ``synthesize``, ``styles_to_latent``, ``make_noise``, ...) are those of
    :class:`faceprior.models.stylegan2.StyleGAN2Generator`; only the layers built by the three
    factory methods below differ. (The inherited ``resample_kernel`` and ``lr_mlp`` attributes are
    unused: these layers have neither.)

    Args:
        out_size: output resolution, a power of two in 4 .. 1024 (e.g. 512).
        num_style_feat: F, the length of z and w.
        num_mlp: number of linear + leaky ReLU layers in the style MLP.
        channel_multiplier: channel width of the 64 px and larger levels (see
            :func:`~faceprior.models.stylegan2.stylegan2_channels`).
        narrow: global channel width ratio.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, narrow: float = 1):
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow)

    def _make_style_mlp(self, num_style_feat: int, num_mlp: int) -> nn.Sequential:
        """z [B, F] -> w [B, F]: pixel norm, then ``num_mlp`` x (linear, leaky ReLU 0.2)."""
        layers: List[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            layers += [nn.Linear(num_style_feat, num_style_feat, bias=True), nn.LeakyReLU(0.2)]
        style_mlp = nn.Sequential(*layers)
        # Re-initialised after all layers exist, as officially (this fixes the random draw order).
        for layer in style_mlp:
            if isinstance(layer, nn.Linear):
                kaiming_normal_linear_(layer, bias_fill=0.0, negative_slope=0.2, nonlinearity="leaky_relu")
        return style_mlp

    def _make_style_conv(self, in_channels: int, out_channels: int, sample_mode: Optional[str]) -> nn.Module:
        """A 3x3 clean ``StyleConv``; ``sample_mode='upsample'`` doubles the resolution (bilinear)."""
        return StyleConv(in_channels, out_channels, kernel_size=3, num_style_feat=self.num_style_feat,
                         demodulate=True, sample_mode=sample_mode)

    def _make_to_rgb(self, in_channels: int, upsample: bool) -> nn.Module:
        """A clean ``ToRGB``; ``upsample`` doubles the RGB skip (bilinear)."""
        return ToRGB(in_channels, self.num_style_feat, upsample=upsample)


ARCHITECTURE = Architecture(
    name="StyleGAN2GeneratorClean",
    network=StyleGAN2GeneratorClean,
    purpose="generator",
    layout=lambda shapes: "constant_input.weight" in shapes and "style_conv1.bias" in shapes,
    options=lambda shapes: stylegan2_generator_options(shapes, "", 2),
    capabilities=Capabilities(stochastic=True),
    description="StyleGAN2 generator with plain ops and bilinear resampling: the prior of GFP-GAN v1.3 / v1.4",
)
