"""GFPGANv1, the GFP-GAN paper model (gfpgan ``gfpganv1_arch``), and its facial-component discriminator.

GFPGANv1 = a U-Net degradation-removal network + the original StyleGAN2 decoder (see
``faceprior.models.stylegan2``) modulated by Channel-Split Spatial Feature Transform (CS-SFT):

1. Encoder: ``conv_body_first`` (1x1) then ``ResBlock`` s down to 4x4 (the U-Net skips), then
   ``final_conv``.
2. ``final_linear`` maps the 4x4 features to the style code: one w [B, F] or, with
   ``different_w``, one w per decoder layer [B, num_latent, F].
3. Decoder: for each level 8 .. out_size px, add the U-Net skip, upsample with ``ResUpBlock``
   (bilinear + conv), and compute the SFT ``scale`` / ``shift`` maps (``condition_scale`` /
   ``condition_shift``) and an intermediate RGB image (``toRGB``, for the pyramid loss).
4. ``stylegan_decoder`` (``StyleGAN2GeneratorSFT``) synthesizes the face, applying
   ``feat * scale + shift`` after the upsampling StyleConv of each level (to the second half of the
   channels when ``sft_half``); see :mod:`faceprior.models.gfpgan_decoder`.

Module and parameter names follow the official code so that ``GFPGANv1.pth`` loads strictly, and
building a model right after ``torch.manual_seed(s)`` draws the official initial weights.
``GFPGANBilinear`` (:mod:`faceprior.models.gfpgan_bilinear`) subclasses ``GFPGANv1`` and overrides
its two factory methods ``_make_down_block`` and ``_make_decoder``.
Images are RGB in [-1, 1], ``[B, 3, out_size, out_size]``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, Capabilities
from faceprior.models.gfpgan_decoder import (
    SFTDecoderMixin,
    apply_sft,
    check_faces,
    gfpgan_layout,
    gfpgan_network_options,
    gfpgan_options,
    load_and_fix_decoder,
    restore_faces,
)
from faceprior.models.ops import FusedLeakyReLU
from faceprior.models.stylegan2 import (
    DEFAULT_RESAMPLE_KERNEL,
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    ResBlock,
    ScaledLeakyReLU,
    StyleGAN2Generator,
    log2_out_size,
    stylegan2_channels,
)

__all__ = [
    "ARCHITECTURE",
    "COMPONENT_DISCRIMINATOR_ARCHITECTURE",
    "apply_sft",
    "StyleGAN2GeneratorSFT",
    "ConvUpLayer",
    "ResUpBlock",
    "GFPGANv1",
    "FacialComponentDiscriminator",
]


class StyleGAN2GeneratorSFT(SFTDecoderMixin, StyleGAN2Generator):
    """``StyleGAN2Generator`` whose features are modulated by SFT conditions.

    ``forward(styles, conditions, ...)``: see :meth:`faceprior.models.gfpgan_decoder.SFTDecoderMixin.forward`
    (``conditions = [scale_8, shift_8, scale_16, shift_16, ...]``). Same state dict as
    ``StyleGAN2Generator``.

    Args: those of ``StyleGAN2Generator``, plus ``sft_half`` (CS-SFT on half of the channels).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, lr_mlp: float = 0.01,
                 narrow: float = 1, sft_half: bool = False):
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, resample_kernel=resample_kernel, lr_mlp=lr_mlp,
                         narrow=narrow)
        self.sft_half = sft_half


class ConvUpLayer(EqualConv2d):
    """Bilinear x2 upsampling, then an equalized-lr conv, then an optional activation.

    [B, Cin, H, W] -> [B, Cout, 2H, 2W] (with 'same' padding). As in ``ConvLayer``, when
    ``activate`` the bias lives in ``activation`` (``FusedLeakyReLU``) if ``bias``, else the
    activation is a ``ScaledLeakyReLU``; without ``activate`` the conv has the bias if ``bias``.
    Parameters: ``weight``, ``bias`` (conv, optional), ``activation.bias`` (optional).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, bias_init_val: float = 0, activate: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias and not activate, bias_init_val=bias_init_val)
        if activate:
            self.activation = FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2)
        else:
            self.activation = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = super().forward(out)
        if self.activation is not None:
            out = self.activation(out)
        return out


class ResUpBlock(nn.Module):
    """Residual upsampling block: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``.

    [B, Cin, H, W] -> [B, Cout, 2H, 2W]. ``conv1``: 3x3 ``ConvLayer``; ``conv2``: 3x3
    ``ConvUpLayer`` with fused leaky ReLU; ``skip``: 1x1 ``ConvUpLayer`` without bias or activation.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, bias=True, activate=True)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, stride=1, padding=1, bias=True, activate=True)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return (out + self.skip(x)) / math.sqrt(2)


class GFPGANv1(nn.Module):
    """GFP-GAN (paper version): U-Net + StyleGAN2 decoder with CS-SFT.

    The released ``GFPGANv1.pth`` uses ``out_size=512, channel_multiplier=1, input_is_latent=True,
    different_w=True, sft_half=True`` (the other defaults below are the official ones).

    Args:
        out_size: input and output resolution, a power of two in 8 .. 1024.
        num_style_feat: size of w.
        channel_multiplier: decoder width at 64 px and above (the U-Net uses half the channels).
        resample_kernel: 1-D FIR taps for the StyleGAN2 up/down-sampling.
        decoder_load_path: optional StyleGAN2Generator checkpoint loaded (strictly) into
            ``stylegan_decoder``; ``params_ema`` is preferred, then ``params``, then a bare state dict.
        fix_decoder: freeze the decoder parameters (``requires_grad=False``).
        num_mlp, lr_mlp: style MLP of the decoder.
        input_is_latent: the style code is w (the decoder's style MLP is skipped).
        different_w: predict one w per decoder layer.
        narrow: scales every channel count.
        sft_half: apply SFT to half of the decoder channels (CS-SFT).

    Subclasses with other resampling (``GFPGANBilinear``) override the factories
    ``_make_down_block`` (U-Net encoder block) and ``_make_decoder`` (``stylegan_decoder``).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 resample_kernel: Sequence[float] = DEFAULT_RESAMPLE_KERNEL, decoder_load_path: Optional[str] = None,
                 fix_decoder: bool = True, num_mlp: int = 8, lr_mlp: float = 0.01, input_is_latent: bool = False,
                 different_w: bool = False, narrow: float = 1, sft_half: bool = False):
        super().__init__()
        self.resample_kernel = tuple(resample_kernel)  # read by the FIR factories below
        self.log_size = log2_out_size(out_size, 8)
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        channels = stylegan2_channels(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide

        # The statements below follow the official order: it fixes both the state-dict order and
        # the order of the random init draws.
        # U-Net encoder: out_size -> 4 px.
        self.conv_body_first = ConvLayer(3, channels[f"{out_size}"], 1, bias=True, activate=True)
        in_channels = channels[f"{out_size}"]
        self.conv_body_down = nn.ModuleList()
        for log_res in range(self.log_size, 2, -1):
            out_channels = channels[f"{2 ** (log_res - 1)}"]
            self.conv_body_down.append(self._make_down_block(in_channels, out_channels))
            in_channels = out_channels
        self.final_conv = ConvLayer(in_channels, channels["4"], 3, bias=True, activate=True)

        # U-Net decoder: 4 px -> out_size, with an intermediate RGB image per level.
        in_channels = channels["4"]
        self.conv_body_up = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[f"{2**log_res}"]
            self.conv_body_up.append(ResUpBlock(in_channels, out_channels))
            in_channels = out_channels
        self.toRGB = nn.ModuleList([
            EqualConv2d(channels[f"{2**log_res}"], 3, 1, stride=1, padding=0, bias=True, bias_init_val=0)
            for log_res in range(3, self.log_size + 1)])

        num_latent = self.log_size * 2 - 2
        linear_out_channel = num_latent * num_style_feat if different_w else num_style_feat
        self.final_linear = EqualLinear(channels["4"] * 4 * 4, linear_out_channel, bias=True, bias_init_val=0,
                                        lr_mul=1, activation=None)

        self.stylegan_decoder = self._make_decoder(out_size=out_size, num_style_feat=num_style_feat,
                                                   num_mlp=num_mlp, channel_multiplier=channel_multiplier,
                                                   lr_mlp=lr_mlp, narrow=narrow, sft_half=sft_half)
        # Loading is strict: a one-line CheckpointError naming the file on any mismatch.
        load_and_fix_decoder(self.stylegan_decoder, decoder_load_path, fix_decoder)

        # SFT condition networks, one scale and one shift branch per level: U-Net features
        # [B, C, r, r] -> [B, C_sft, r, r]. The StyleGAN2 decoder is twice as wide (2C), so C_sft = C
        # modulates half of its channels (sft_half) and 2C all of them.
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[f"{2**log_res}"]
            sft_out_channels = out_channels if sft_half else out_channels * 2
            self.condition_scale.append(self._condition_branch(out_channels, sft_out_channels, final_bias=1))
            self.condition_shift.append(self._condition_branch(out_channels, sft_out_channels, final_bias=0))

    # -- factories (overridden by GFPGANBilinear) ------------------------------------------------

    def _make_down_block(self, in_channels: int, out_channels: int) -> nn.Module:
        """U-Net encoder block, [B, Cin, H, W] -> [B, Cout, H/2, W/2]: a FIR-downsampling ``ResBlock``."""
        return ResBlock(in_channels, out_channels, self.resample_kernel)

    def _make_decoder(self, out_size: int, num_style_feat: int, num_mlp: int, channel_multiplier: float,
                      lr_mlp: float, narrow: float, sft_half: bool) -> StyleGAN2Generator:
        """The SFT-conditioned StyleGAN2 decoder: a ``StyleGAN2GeneratorSFT``."""
        return StyleGAN2GeneratorSFT(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                     channel_multiplier=channel_multiplier, resample_kernel=self.resample_kernel,
                                     lr_mlp=lr_mlp, narrow=narrow, sft_half=sft_half)

    @staticmethod
    def _condition_branch(channels: int, out_channels: int, final_bias: float) -> nn.Sequential:
        """3x3 conv -> scaled leaky ReLU -> 3x3 conv (bias initialised to ``final_bias``)."""
        return nn.Sequential(
            EqualConv2d(channels, channels, 3, stride=1, padding=1, bias=True, bias_init_val=0),
            ScaledLeakyReLU(0.2),
            EqualConv2d(channels, out_channels, 3, stride=1, padding=1, bias=True, bias_init_val=final_bias))

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Restore faces.

        Args:
            x: degraded faces [B, 3, out_size, out_size] in [-1, 1].
            return_latents: passed to the decoder; its latents are not returned (as official).
            return_rgb: also return the intermediate U-Net RGB images.
            randomize_noise: fresh decoder noise per call (official default) instead of the stored
                ``stylegan_decoder.noises`` buffers.
            **kwargs: ignored (``GFPGANer`` passes ``weight``).
        Returns:
            (image [B, 3, out_size, out_size], out_rgbs: [B, 3, r, r] for r = 8 .. out_size, or []).
        """
        check_faces(self, x)
        conditions: list[torch.Tensor] = []
        unet_skips: list[torch.Tensor] = []
        out_rgbs: list[torch.Tensor] = []

        feat = self.conv_body_first(x)
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)  # lowest resolution first
        feat = self.final_conv(feat)

        style_code = self.final_linear(feat.view(feat.size(0), -1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)

        for level, up in enumerate(self.conv_body_up):
            feat = up(feat + unet_skips[level])
            conditions.append(self.condition_scale[level](feat))
            conditions.append(self.condition_shift[level](feat))
            if return_rgb:
                out_rgbs.append(self.toRGB[level](feat))

        image, _ = self.stylegan_decoder([style_code], conditions, return_latents=return_latents,
                                         input_is_latent=self.input_is_latent, randomize_noise=randomize_noise)
        return image, out_rgbs


class FacialComponentDiscriminator(nn.Module):
    """VGG-style patch discriminator for facial components (eyes, mouth); fixed size.

    conv1 3->64, conv2 64->128 (/2), conv3 128->128, conv4 128->256 (/2), conv5 256->256, all 3x3
    with fused leaky ReLU; ``final_conv`` 256->1 3x3 with bias, no activation.

    ``forward(x [B, 3, H, W], return_feats)`` -> (logits [B, 1, H/4, W/4], feats or None), where
    feats = [after conv3: [B, 128, H/2, W/2], after conv5: [B, 256, H/4, W/4]] (for the
    feature-style loss).
    """

    def __init__(self):
        super().__init__()
        kernel = DEFAULT_RESAMPLE_KERNEL
        self.conv1 = ConvLayer(3, 64, 3, downsample=False, resample_kernel=kernel, bias=True, activate=True)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True, resample_kernel=kernel, bias=True, activate=True)
        self.conv3 = ConvLayer(128, 128, 3, downsample=False, resample_kernel=kernel, bias=True, activate=True)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True, resample_kernel=kernel, bias=True, activate=True)
        self.conv5 = ConvLayer(256, 256, 3, downsample=False, resample_kernel=kernel, bias=True, activate=True)
        self.final_conv = ConvLayer(256, 1, 3, bias=True, activate=False)

    def forward(self, x: torch.Tensor, return_feats: bool = False,
                **kwargs) -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]:
        feat = self.conv3(self.conv2(self.conv1(x)))
        feats = [feat] if return_feats else None
        feat = self.conv5(self.conv4(feat))
        if feats is not None:
            feats.append(feat)
        return self.final_conv(feat), feats


# ----------------------------------------------------------------------------------------------
# Recognising state dicts (faceprior.models.ARCHITECTURES)

ARCHITECTURE = Architecture(
    name="GFPGANv1",
    network=GFPGANv1,
    purpose="restoration",
    layout=lambda shapes: gfpgan_layout(shapes, plain_first_conv=False),
    # GFPGANv1 and GFPGANBilinear have identical keys and shapes for the same options; the released
    # files differ by channel multiplier (GFPGANv1.pth: 1; GFPGANer's bilinear configuration: 2), so
    # automatic recognition reads multiplier 1 as GFPGANv1 (pass arch= to override).
    detect=lambda shapes: gfpgan_layout(shapes, plain_first_conv=False)
    and gfpgan_options("GFPGANv1", shapes)["channel_multiplier"] == 1,
    options=lambda shapes: gfpgan_options("GFPGANv1", shapes),
    options_of_network=gfpgan_network_options("GFPGANv1"),
    face_size=lambda options: options["out_size"],
    restore=restore_faces,
    capabilities=Capabilities(stochastic=True),  # FIR resampling: no fast path, no ONNX export
    weights_license="Apache-2.0 (the GFPGAN releases)",
    description="GFP-GAN v1, the paper model: equalized layers and FIR resampling (GFPGANv1.pth)",
)

COMPONENT_DISCRIMINATOR_ARCHITECTURE = Architecture(
    name="FacialComponentDiscriminator",
    network=FacialComponentDiscriminator,
    purpose="discriminator",
    layout=lambda shapes: "conv5.0.weight" in shapes and "final_conv.0.weight" in shapes,
    options=lambda shapes: {},
    description="facial-component (eye, mouth) discriminator of GFP-GAN's component loss",
)
