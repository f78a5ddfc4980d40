"""GFP-GAN, "clean" version (gfpgan ``gfpganv1_clean_arch``): the architecture of GFPGAN v1.3 / v1.4.

GFP-GAN (Wang et al., CVPR 2021) restores a degraded face with a pretrained StyleGAN2 as a
generative facial prior:

1. A U-Net **encoder** (``conv_body_first``, ``conv_body_down``, ``final_conv``) maps the degraded
   face x [B, 3, S, S] to a 4x4 feature map, F_latent.
2. ``final_linear`` maps the flattened F_latent to **latent codes W**: one w [B, F] shared by all
   decoder layers, or (``different_w``) one w per layer, [B, num_latent, F].
3. The U-Net **decoder** (``conv_body_up``, with encoder skips) produces spatial features at
   8, 16, ..., S px. At each level, ``toRGB`` gives an intermediate RGB image (used by a
   pyramid restoration loss in training), and ``condition_scale`` / ``condition_shift`` turn the
   features into SFT parameters.
4. The **StyleGAN2 decoder** (:class:`StyleGAN2GeneratorCSFT`) synthesises the face from W. After
   the upsampling StyleConv of each level it applies the channel-split spatial feature transform
   (CS-SFT): ``feat * scale + shift`` on the second half of the channels (``sft_half``) or on all
   (see :mod:`faceprior.models.gfpgan_decoder`, shared with the other GFP-GAN variants).
5. Optional, not in the paper or the released models (``input_gate``): an **input gate**
   g [B, 1, S, S] in (0, 1) blends the input back in, ``image = g * x + (1 - g) * image``, so
   that the network can keep what a mildly degraded face already has (:class:`InputGate`).

The decoder is :class:`faceprior.models.stylegan2_clean.StyleGAN2GeneratorClean` (bilinear
resampling, no custom CUDA ops). Parameter names, their order, and the random initialisation
order equal the official ones, so the released ``{'params_ema': ...}`` checkpoints load with
``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# load_decoder_checkpoint and channel_split_sft (= apply_sft) were first defined here; they stay
# importable from this module.
from faceprior.models.architecture import Architecture
from faceprior.models.gfpgan_decoder import (
    GFPGAN_CAPABILITIES,
    SFTDecoderMixin,
    apply_sft,
    check_faces,
    gfpgan_layout,
    gfpgan_network_options,
    gfpgan_options,
    load_and_fix_decoder,
    load_decoder_checkpoint,
    restore_faces,
)
from faceprior.models.stylegan2 import log2_out_size, stylegan2_channels
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean

__all__ = ["channel_split_sft", "StyleGAN2GeneratorCSFT", "ResBlock", "load_decoder_checkpoint", "GFPGANv1Clean",
           "without_decoder_noise", "ARCHITECTURE", "RELEASED_OPTIONS"]

channel_split_sft = apply_sft

#: State-dict keys of the decoder's learned noise strengths (one [1] tensor per StyleConv).
DECODER_NOISE_STRENGTH = re.compile(r"^stylegan_decoder\.(style_conv1|style_convs\.\d+)\.weight$")


def without_decoder_noise(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A copy of a GFPGANv1Clean state dict with every decoder noise strength set to zero.

    Each StyleConv adds ``strength * noise`` to its output; at inference the noise is either drawn
    afresh or (``randomize_noise=False``) the stored buffers ``stylegan_decoder.noises.noise{i}``,
    one fixed pattern that then lands on every face. With the strengths at zero the decoder draws
    the mean of that term, the output no longer depends on ``randomize_noise``, and the state dict
    keeps its keys and shapes (it still loads strictly). Other tensors are shared, not copied.
    Raises ValueError when the state dict has no such keys.
    """
    keys = [k for k, v in state_dict.items() if DECODER_NOISE_STRENGTH.match(k) and v.numel() == 1]
    if not keys:
        raise ValueError("no decoder noise strengths (stylegan_decoder.style_conv1.weight, ...): not a GFPGANv1Clean")
    return {k: torch.zeros_like(v) if k in keys else v for k, v in state_dict.items()}


class StyleGAN2GeneratorCSFT(SFTDecoderMixin, StyleGAN2GeneratorClean):
    """The clean StyleGAN2 generator with CS-SFT after the upsampling conv of each level.

    ``forward(styles, conditions, ...)``: see :meth:`faceprior.models.gfpgan_decoder.SFTDecoderMixin.forward`
    (``conditions = [scale_8, shift_8, scale_16, shift_16, ...]``). Same parameters (and checkpoint
    keys) as :class:`StyleGAN2GeneratorClean`; ``sft_half`` selects half-channel or full-channel SFT.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, narrow: float = 1, sft_half: bool = False):
        super().__init__(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow)
        self.sft_half = sft_half


class ResBlock(nn.Module):
    """U-Net residual block with bilinear 2x down- or up-sampling.

    ``out = lrelu(conv2(resample(lrelu(conv1(x))))) + skip(resample(x))``, leaky slope 0.2,
    3x3 convs, 1x1 bias-free skip conv.

    Shapes: x [B, C_in, H, W] -> [B, C_out, H/2, W/2] (``mode='down'``) or [B, C_out, 2H, 2W] (``'up'``).
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"ResBlock: mode must be 'down' or 'up', got {mode!r}")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), negative_slope=0.2)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), negative_slope=0.2)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return out + self.skip(x)


#: Initial bias of the input gate (sigmoid(-3) = 0.047 everywhere).
INPUT_GATE_INIT_BIAS = -3.0


class InputGate(nn.Module):
    """g = sigmoid(conv3x3(F_S) + linear(F_latent)): how much of the input to keep, per pixel.

    The linear term on the flattened deepest U-Net feature F_latent [B, C_4, 4, 4] sees the whole
    face (how degraded it is); the 3x3 conv on the last U-Net feature F_S [B, C_S, S, S] varies
    the gate over the face. Both start at zero weights and the conv's bias at
    :data:`INPUT_GATE_INIT_BIAS`, so a generator trained without a gate continues from nearly its
    own outputs. (A conv on F_S alone barely moved in 200 fine-tuning iterations: whether a face
    is mildly or badly degraded is not a local property.)

    Args:
        spatial_channels: C_S. latent_features: C_4 * 16.
    Inputs: latent_feat [B, C_4, 4, 4], spatial_feat [B, C_S, S, S]. Returns g [B, 1, S, S].
    """

    def __init__(self, spatial_channels: int, latent_features: int):
        super().__init__()
        self.spatial = nn.Conv2d(spatial_channels, 1, 3, 1, 1)
        self.face = nn.Linear(latent_features, 1)
        for layer in (self.spatial, self.face):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.constant_(self.spatial.bias, INPUT_GATE_INIT_BIAS)

    def forward(self, latent_feat: torch.Tensor, spatial_feat: torch.Tensor) -> torch.Tensor:
        face = self.face(latent_feat.flatten(1))[:, :, None, None]
        return torch.sigmoid(self.spatial(spatial_feat) + face)


def _sft_condition_branch(channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv, leaky ReLU(0.2), 3x3 conv: U-Net features [B, C, r, r] -> SFT scale or shift."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(channels, out_channels, 3, 1, 1),
    )


class GFPGANv1Clean(nn.Module):
    """GFP-GAN generator: U-Net + StyleGAN2 decoder with CS-SFT (clean, bilinear version).

    Args:
        out_size: input and output resolution S (512 for the released models).
        num_style_feat: F, the length of w.
        channel_multiplier: StyleGAN2 channel multiplier (2 for the released clean models).
        decoder_load_path: optional path of a pretrained StyleGAN2GeneratorClean checkpoint
            (``params_ema`` preferred) loaded into ``stylegan_decoder``.
        fix_decoder: freeze the decoder (``requires_grad=False`` on all its parameters).
        num_mlp: layers in the decoder's style MLP (unused in forward when ``input_is_latent``).
        input_is_latent: the codes from ``final_linear`` are w (True) or z (False, passed through
            the style MLP).
        different_w: predict one w per decoder layer instead of a single shared w.
        narrow: channel width ratio; the U-Net uses half the decoder's width.
        sft_half: CS-SFT on half of the decoder channels (True) or on all of them.
        input_gate: add the input gate (step 5 above; extra ``input_gate.*`` tensors in the state
            dict). Off in every official model.

    The released v1.3 / v1.4 models use ``out_size=512, num_style_feat=512, channel_multiplier=2,
    input_is_latent=True, different_w=True, sft_half=True``; the defaults below are the official ones.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: Optional[str] = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False, input_gate: bool = False):
        super().__init__()
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.log_size = log2_out_size(out_size, smallest=8)
        unet_channels = stylegan2_channels(channel_multiplier, narrow * 0.5)
        resolutions = [2 ** level for level in range(3, self.log_size + 1)]  # 8, 16, ..., out_size

        # U-Net encoder: out_size -> 4 px.
        self.conv_body_first = nn.Conv2d(3, unet_channels[str(out_size)], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = unet_channels[str(out_size)]
        for resolution in reversed(resolutions):  # each block halves the size: r -> r/2
            out_channels = unet_channels[str(resolution // 2)]
            self.conv_body_down.append(ResBlock(in_channels, out_channels, mode="down"))
            in_channels = out_channels
        self.final_conv = nn.Conv2d(in_channels, unet_channels["4"], 3, 1, 1)

        # U-Net decoder: 4 px -> out_size, with intermediate RGB outputs.
        self.conv_body_up = nn.ModuleList()
        in_channels = unet_channels["4"]
        for resolution in resolutions:
            self.conv_body_up.append(ResBlock(in_channels, unet_channels[str(resolution)], mode="up"))
            in_channels = unet_channels[str(resolution)]
        self.toRGB = nn.ModuleList([nn.Conv2d(unet_channels[str(r)], 3, 1) for r in resolutions])

        # F_latent -> W.
        num_latent = self.log_size * 2 - 2
        linear_out_channels = num_latent * num_style_feat if different_w else num_style_feat
        self.final_linear = nn.Linear(unet_channels["4"] * 4 * 4, linear_out_channels)

        # StyleGAN2 decoder with CS-SFT.
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(
            out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
            channel_multiplier=channel_multiplier, narrow=narrow, sft_half=sft_half)
        load_and_fix_decoder(self.stylegan_decoder, decoder_load_path, fix_decoder)

        # SFT condition branches, one (scale, shift) pair per decoder level. The SFT modulates
        # half of the decoder channels (= the U-Net width) or all of them (twice the U-Net width).
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for resolution in resolutions:
            channels = unet_channels[str(resolution)]
            sft_channels = channels if sft_half else channels * 2
            self.condition_scale.append(_sft_condition_branch(channels, sft_channels))
            self.condition_shift.append(_sft_condition_branch(channels, sft_channels))

        # Registered last, so that the official parameters keep their order and initialisation.
        self.input_gate = None
        if input_gate:
            self.input_gate = InputGate(unet_channels[str(out_size)], unet_channels["4"] * 4 * 4)

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True, **kwargs: Any) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Restore faces.

        Args:
            x: degraded aligned faces [B, 3, S, S], RGB in [-1, 1].
            return_latents: accepted for API compatibility; the latents are discarded, as officially.
            return_rgb: also compute the intermediate U-Net RGB images.
            randomize_noise: fresh per-sample noise in the decoder (official default) or the
                stored buffers ``stylegan_decoder.noises.noise{i}``.
            **kwargs: ignored, as officially (``GFPGANer`` passes ``weight=0.5``).
        Returns:
            (image [B, 3, S, S], roughly in [-1, 1]; out_rgbs: list of [B, 3, r, r] for
            r = 8, 16, ..., S, low resolution first, or [] when ``return_rgb`` is False).
        """
        check_faces(self, x)
        # 1. U-Net encoder -> F_latent [B, C_4, 4, 4]; the skips are kept deepest first.
        feat = F.leaky_relu(self.conv_body_first(x), negative_slope=0.2)
        unet_skips = []
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), negative_slope=0.2)
        latent_feat = feat

        # 2. F_latent -> latent codes: [B, F], or [B, num_latent, F] with different_w.
        style_code = self.final_linear(feat.flatten(1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)

        # 3. U-Net decoder -> SFT conditions [scale_8, shift_8, scale_16, ...] and RGB images.
        conditions: List[torch.Tensor] = []
        out_rgbs: List[torch.Tensor] = []
        for level, up in enumerate(self.conv_body_up):
            feat = up(feat + unet_skips[level])
            conditions.append(self.condition_scale[level](feat))
            conditions.append(self.condition_shift[level](feat))
            if return_rgb:
                out_rgbs.append(self.toRGB[level](feat))

        # 4. StyleGAN2 prior, modulated by CS-SFT.
        image, _ = self.stylegan_decoder([style_code], conditions, input_is_latent=self.input_is_latent,
                                         randomize_noise=randomize_noise)

        # 5. Optional input gate, from F_latent and the last U-Net feature (S px).
        if self.input_gate is not None:
            image = torch.lerp(image, x.to(image.dtype), self.input_gate(latent_feat, feat).to(image.dtype))
        return image, out_rgbs


#: The configuration of the released GFPGAN v1.2 / v1.3 / v1.4 (``GFPGANer(arch='clean', channel_multiplier=2)``).
RELEASED_OPTIONS = dict(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                        num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)

ARCHITECTURE = Architecture(
    name="GFPGANv1Clean",
    network=GFPGANv1Clean,
    purpose="restoration",
    layout=lambda shapes: gfpgan_layout(shapes, plain_first_conv=True),
    options=lambda shapes: gfpgan_options("GFPGANv1Clean", shapes),
    options_of_network=gfpgan_network_options("GFPGANv1Clean"),
    face_size=lambda options: options["out_size"],
    restore=restore_faces,
    capabilities=GFPGAN_CAPABILITIES,
    weights_license="Apache-2.0 (the GFPGAN releases)",
    description="GFP-GAN, clean architecture (plain PyTorch ops): GFPGAN v1.2, v1.3, v1.4",
)
