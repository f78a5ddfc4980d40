"""Fast CPU inference for the GFP-GAN generators: GFPGANv1Clean, and GFPGANBilinear through its exact clean form.

:func:`optimize_gfpgan` (called by :func:`faceprior.inference.optimize`) takes a loaded reference model
and returns a :class:`FastGFPGAN`, an inference-only module with the reference call signature, e.g.
``fast(x, return_rgb=False, randomize_noise=False) -> (image [B, 3, S, S], [])`` for aligned faces
x [B, 3, S, S] in [-1, 1]. It computes the reference function: in float32 to ~1e-5 (only the
summation order differs), in bfloat16 to ~50 dB PSNR on the uint8 face (random weights).

What it does differently from the reference forward (measurements in docs/speed.md):

* Constants are computed once per checkpoint: the stored noise times its strength, the squared
  conv weights of the demodulation, the concatenated weights of the paired SFT branches, oneDNN's
  pre-packed layout of every constant conv weight.
* Feature maps are channels-last (NHWC), the layout oneDNN convolves fastest; convs are
  ``torch.ops.mkldnn`` calls with the bias and the residual sum fused, writing into reused
  buffers (a fresh large tensor costs page faults on every call).
* ``condition_scale[i]`` and ``condition_shift[i]`` read the same features: their first convs run
  as one conv with twice the outputs, their second convs as one grouped conv (groups=2).
* Modulation: all style scales come from one batched matmul, all demodulations
  ``rsqrt(s**2 @ sum_k(W**2) + eps)`` from another. Up to 64 px the weights are larger than the
  feature maps, so the conv weight stays constant: ``conv(x * s, W) * d``; above, each sample's
  weights ``W * s * d`` go through a plain (not grouped) conv.
* The 1x1 skip conv of a U-Net up block runs before the bilinear up-sampling (they commute), on
  4x fewer pixels; bilinear x0.5 is the 2x2 mean.
* The U-Net decoder and the StyleGAN2 decoder run interleaved, level by level, so the SFT maps
  are used right after they are made; activations and the SFT are in place.
* bfloat16 (AMX / AVX512-BF16 via oneDNN): conv weights and feature maps in bfloat16; the
  modulation, demodulation, noise draws and the RGB image in float32.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.hardware import default_dtype, mkldnn_available, native_bf16_available
from faceprior.inference.ops import NEGATIVE_SLOPE, Ops, Workspace
from faceprior.models.architecture import ArchitectureError
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import describe_network

__all__ = [
    "UnsupportedModelError",
    "FastGFPGAN",
    "CompiledGFPGAN",
    "clean_state_dict",
    "optimize_gfpgan",
]

SQRT2 = math.sqrt(2)
DEMOD_EPS = 1e-8


class UnsupportedModelError(FacepriorError, TypeError):
    """The network has no fast path (the caller should keep using the reference model). One line."""


# ----------------------------------------------------------------------------------------------
# Layers, built from a GFPGANv1Clean-layout state dict


def _buffer(module: nn.Module, name: str, value: Optional[torch.Tensor]) -> None:
    module.register_buffer(name, value, persistent=False)


class StaticConv(nn.Module):
    """A plain conv of the U-Net: weight [C_out, C_in / groups, k, k], bias [C_out] or None, in the compute dtype."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], dtype: torch.dtype, groups: int = 1):
        super().__init__()
        _buffer(self, "weight", weight.detach().to(dtype).contiguous())
        _buffer(self, "bias", None if bias is None else bias.detach().to(dtype).contiguous())
        self.padding = weight.shape[-1] // 2
        self.groups = groups
        self.packed: Dict[Tuple[int, ...], torch.Tensor] = {}  # oneDNN layouts of weight, per input shape

    def forward(self, ops: Ops, x: torch.Tensor, leaky_relu: bool = False) -> torch.Tensor:
        weight = ops.packed(self.packed, self.weight, x, self.padding, self.groups)
        return ops.conv(x, weight, self.bias, self.padding, self.groups, leaky_relu)

    def add_(self, ops: Ops, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out += self(x)`` in place."""
        weight = ops.packed(self.packed, self.weight, x, self.padding, self.groups)
        return ops.conv_add_(out, x, weight, self.bias, self.padding, self.groups)


class _ResBlockConvs(nn.Module):
    """The three convs of a U-Net ResBlock: conv1 and conv2 (3x3, bias), skip (1x1, no bias)."""

    def __init__(self, prefix: str, sd: Dict[str, torch.Tensor], dtype: torch.dtype):
        super().__init__()
        self.conv1 = StaticConv(sd[prefix + "conv1.weight"], sd[prefix + "conv1.bias"], dtype)
        self.conv2 = StaticConv(sd[prefix + "conv2.weight"], sd[prefix + "conv2.bias"], dtype)
        self.skip = StaticConv(sd[prefix + "skip.weight"], None, dtype)


class DownBlock(_ResBlockConvs):
    """U-Net ResBlock(mode='down'): ``lrelu(conv2(pool(lrelu(conv1(x))))) + skip(pool(x))``, pool = 2x2 mean."""

    def forward(self, ops: Ops, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, r, r] -> [B, C_out, r/2, r/2]."""
        hidden = self.conv1(ops, x, leaky_relu=True)
        pooled = ops.downsample(hidden)
        ops.give(hidden)
        out = self.conv2(ops, pooled, leaky_relu=True)
        ops.give(pooled)
        pooled = ops.downsample(x)
        out = self.skip.add_(ops, out, pooled)
        ops.give(pooled)
        return out


class UpBlock(_ResBlockConvs):
    """U-Net ResBlock(mode='up'): ``lrelu(conv2(up(lrelu(conv1(x))))) + up(skip(x))``.

    The 1x1 skip conv (no bias) runs before the bilinear x2 up-sampling, on 4x fewer pixels; the
    two commute.
    """

    def forward(self, ops: Ops, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, r/2, r/2] -> [B, C_out, r, r]."""
        hidden = self.conv1(ops, x, leaky_relu=True)
        upsampled = ops.upsample(hidden)
        ops.give(hidden)
        out = self.conv2(ops, upsampled, leaky_relu=True)
        ops.give(upsampled)
        skip = self.skip(ops, x)
        upsampled = ops.upsample(skip)
        ops.give(skip)
        out.add_(upsampled)
        ops.give(upsampled)
        return out


class SFTBranches(nn.Module):
    """``condition_scale[i]`` and ``condition_shift[i]`` fused.

    One conv C -> 2C + lrelu (the two first convs), one grouped conv 2C -> 2 C_sft (groups=2).

    ``forward``: U-Net features [B, C, r, r] -> (maps [B, 2 C_sft, r, r], scale, shift): scale and
    shift are the two channel halves of ``maps``, [B, C_sft, r, r] each.
    """

    def __init__(self, index: int, sd: Dict[str, torch.Tensor], dtype: torch.dtype):
        super().__init__()
        scale, shift = f"condition_scale.{index}.", f"condition_shift.{index}."
        self.first = StaticConv(torch.cat([sd[scale + "0.weight"], sd[shift + "0.weight"]]),
                                torch.cat([sd[scale + "0.bias"], sd[shift + "0.bias"]]), dtype)
        self.second = StaticConv(torch.cat([sd[scale + "2.weight"], sd[shift + "2.weight"]]),
                                 torch.cat([sd[scale + "2.bias"], sd[shift + "2.bias"]]), dtype, groups=2)
        self.sft_channels = sd[scale + "2.weight"].shape[0]

    def forward(self, ops: Ops, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.first(ops, feat, leaky_relu=True)
        maps = self.second(ops, hidden)
        ops.give(hidden)
        return maps, maps[:, :self.sft_channels], maps[:, self.sft_channels:]


class StyleLayer(nn.Module):
    """One StyleConv of the clean StyleGAN2 decoder: [bilinear x2], modulated 3x3 conv, * sqrt(2), noise, bias, lrelu.

    ``lrelu(conv(up(x), W * s * d) + noise + bias)`` with the per-sample style scales s [B, C_in]
    and demodulations d (times sqrt 2) [B, C_out] from :class:`Modulations`. With
    ``input_modulation`` the conv weight stays constant: ``conv(x * s, W) * d`` (cheaper when the
    feature maps are smaller than the weights, and batch-independent); otherwise each sample gets
    its own modulated weights, applied with a plain conv per sample.
    """

    def __init__(self, prefix: str, sd: Dict[str, torch.Tensor], upsample: bool, out_res: int,
                 dtype: torch.dtype, input_modulation: bool):
        super().__init__()
        weight = sd[prefix + "modulated_conv.weight"].detach().float()[0]  # [C_out, C_in, k, k]
        self.out_channels, self.in_channels, kernel_size, _ = weight.shape
        self.padding = kernel_size // 2
        self.upsample = upsample
        self.out_res = out_res
        self.input_modulation = input_modulation
        self.dtype = dtype
        # Channels-last like the feature maps (oneDNN would otherwise reorder it on every call).
        _buffer(self, "weight", (weight.to(dtype) if input_modulation else weight)
                .contiguous(memory_format=torch.channels_last))
        _buffer(self, "bias", sd[prefix + "bias"].detach().float().view(1, -1, 1, 1).to(dtype))
        _buffer(self, "noise_strength", sd[prefix + "weight"].detach().float().view(1))
        self.packed: Dict[Tuple[int, ...], torch.Tensor] = {}  # oneDNN layouts of weight, per input shape

    def scaled_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """``strength * noise`` in the compute dtype; noise [1 or B, 1, r, r] float32."""
        return (noise.float() * self.noise_strength).to(self.dtype)

    def forward(self, ops: Ops, x: torch.Tensor, style: torch.Tensor, demod: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, r', r'] channels-last (r' = r/2 when up-sampling); style [B, C_in], demod
        [B, C_out] float32; noise: :meth:`scaled_noise` [1 or B, 1, r, r]. -> [B, C_out, r, r]."""
        b = x.shape[0]
        if self.input_modulation:
            x = x * style.to(self.dtype).unsqueeze(-1).unsqueeze(-1)
            if self.upsample:
                x = ops.upsample(x)
            out = ops.conv(x, ops.packed(self.packed, self.weight, x, self.padding), None, self.padding)
            ops.give(x)
            out.mul_(demod.to(self.dtype).unsqueeze(-1).unsqueeze(-1)).add_(self.bias).add_(noise)
            return F.leaky_relu_(out, NEGATIVE_SLOPE)

        if self.upsample:
            x = ops.upsample(x)
        scales = (demod.unsqueeze(2) * style.unsqueeze(1)).view(b, self.out_channels, self.in_channels, 1, 1)
        weights = [(self.weight * scales[i]).to(self.dtype).contiguous(memory_format=torch.channels_last)
                   for i in range(b)]  # per sample [C_out, C_in, k, k]
        shape = (b, self.out_channels, x.shape[2], x.shape[3])
        if ops.fused:
            out = ops.buffer(shape, self.dtype)
            torch.add(noise.expand(b, 1, shape[2], shape[3]), self.bias, out=out)
            for i in range(b):
                ops.conv_add_(out[i:i + 1], x[i:i + 1], weights[i], None, self.padding)
        else:
            out = torch.cat([F.conv2d(x[i:i + 1], weights[i], None, padding=self.padding) for i in range(b)])
            out = out + self.bias + noise
        if self.upsample:
            ops.give(x)
        return F.leaky_relu_(out, NEGATIVE_SLOPE)


class RGBLayer(nn.Module):
    """A ToRGB: 1x1 modulated conv (no demodulation) to RGB, + bias, + the bilinearly up-sampled skip image.

    Computed as a matmul on the channels-last features; the RGB image is float32.
    """

    def __init__(self, prefix: str, sd: Dict[str, torch.Tensor]):
        super().__init__()
        _buffer(self, "weight", sd[prefix + "modulated_conv.weight"].detach().float()[0, :, :, 0, 0])  # [3, C]
        _buffer(self, "bias", sd[prefix + "bias"].detach().float().view(1, 3, 1, 1))

    def forward(self, ops: Ops, x: torch.Tensor, style: torch.Tensor, skip: Optional[torch.Tensor]) -> torch.Tensor:
        """x [B, C, r, r] channels-last; style [B, C] float32; skip [B, 3, r/2, r/2] float32 or None
        -> [B, 3, r, r] float32."""
        b, c, h, wd = x.shape
        weights = (self.weight.unsqueeze(0) * style.unsqueeze(1)).to(x.dtype)  # [B, 3, C]
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * wd, c)  # a view for channels-last x
        rgb = torch.bmm(pixels, weights.transpose(1, 2)).float().view(b, h, wd, 3).permute(0, 3, 1, 2)
        rgb = rgb + self.bias
        if skip is not None:
            upsampled = ops.upsample(skip)
            rgb = rgb.add_(upsampled)
            ops.give(upsampled)
        return rgb


class Modulations(nn.Module):
    """The style scales of all modulated convs and the demodulations of the StyleConvs, in two batched matmuls.

    Layer ``j`` (a StyleConv or a ToRGB, key prefix ``prefixes[j]``) has the modulation
    ``s_j = w_j @ A_j^T + a_j`` (A_j [C_in_j, F]); a StyleConv also has the demodulation (with the
    StyleConv's sqrt 2 gain) ``d_j = sqrt(2) * rsqrt(s_j**2 @ Q_j^T + eps)``, where
    ``Q_j = sum_k W_j**2`` [C_out_j, C_in_j] is the demodulation of the reference written as a
    matmul. All A_j and Q_j are zero-padded to the widest layer and stacked, so one ``baddbmm`` and
    one ``bmm`` do every layer at once (the padding leaves the real entries unchanged).
    """

    def __init__(self, prefixes: Sequence[str], demodulate: Sequence[bool], sd: Dict[str, torch.Tensor]):
        super().__init__()
        mod_weights = [sd[p + "modulated_conv.modulation.weight"].detach().float() for p in prefixes]
        conv_weights = [sd[p + "modulated_conv.weight"].detach().float()[0] for p in prefixes]
        self.in_channels = [a.shape[0] for a in mod_weights]
        self.out_channels = [w.shape[0] if d else 0 for w, d in zip(conv_weights, demodulate)]
        num, c_in, c_out = len(prefixes), max(self.in_channels), max(self.out_channels + [1])
        mod_weight = torch.zeros(num, mod_weights[0].shape[1], c_in)
        mod_bias = torch.zeros(num, 1, c_in)
        weight_sq = torch.zeros(num, c_in, c_out)
        for j, (prefix, a, w, d) in enumerate(zip(prefixes, mod_weights, conv_weights, demodulate)):
            mod_weight[j, :, :a.shape[0]] = a.t()
            mod_bias[j, 0, :a.shape[0]] = sd[prefix + "modulated_conv.modulation.bias"].detach().float()
            if d:
                weight_sq[j, :w.shape[1], :w.shape[0]] = w.pow(2).sum([2, 3]).t()
        _buffer(self, "mod_weight", mod_weight)  # [L, F, C_in_max]
        _buffer(self, "mod_bias", mod_bias)  # [L, 1, C_in_max]
        _buffer(self, "weight_sq", weight_sq)  # [L, C_in_max, C_out_max]

    def forward(self, w: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """w [L, B, F] float32 (each layer's latent) -> (styles: L x [B, C_in_j], demods: L x [B, C_out_j])."""
        styles = torch.baddbmm(self.mod_bias, w, self.mod_weight)  # [L, B, C_in_max]
        demods = torch.rsqrt(torch.bmm(styles * styles, self.weight_sq) + DEMOD_EPS) * SQRT2
        return ([styles[j, :, :c] for j, c in enumerate(self.in_channels)],
                [demods[j, :, :c] for j, c in enumerate(self.out_channels)])


# ----------------------------------------------------------------------------------------------
# The fast network


class FastGFPGAN(nn.Module):
    """Inference-only GFP-GAN generator built from a GFPGANv1Clean-layout state dict.

    Use :func:`faceprior.inference.optimize` to build one from a reference model. Call it like the reference:
    ``forward(x, return_latents=False, return_rgb=True, randomize_noise=True, **kwargs)`` with
    x [B, 3, S, S] in [-1, 1] (any float dtype) -> (image [B, 3, S, S] float32, out_rgbs: list of
    [B, 3, r, r] float32 for r = 8 .. S, or [] when ``return_rgb`` is False). With
    ``randomize_noise=True`` the noise maps are drawn from torch's default CPU generator in the
    reference order (float32 ``normal_`` of shape [B, 1, r, r] per StyleConv), so seeded runs
    match the reference.

    Args:
        sd: state dict in the GFPGANv1Clean layout (float32).
        log_size: log2 of the face size S.
        num_style_feat: F.
        different_w: one w per decoder layer ([B, num_latent, F]) or one shared w.
        input_is_latent: the codes are w (True) or z, which goes through the style MLP.
        sft_half: CS-SFT on the second half of the decoder channels (True) or on all of them.
        dtype: torch.float32 or torch.bfloat16 (feature maps and conv weights).
        input_modulation_max_res: StyleConvs whose output is at most this size apply the style to
            the input / output channels around a constant-weight conv (see :class:`StyleLayer`).
        fused: oneDNN fused ops and reused buffers (:class:`Ops`; default where oneDNN exists), or
            plain PyTorch ops (what ``torch.compile`` should trace).

    Large intermediate buffers are kept between calls (one set per calling thread; see
    :meth:`release_buffers`).
    """

    def __init__(self, sd: Dict[str, torch.Tensor], log_size: int, num_style_feat: int, different_w: bool,
                 input_is_latent: bool, sft_half: bool, dtype: torch.dtype = torch.float32,
                 input_modulation_max_res: int = 64, fused: Optional[bool] = None):
        super().__init__()
        self.fused = mkldnn_available() if fused is None else bool(fused and mkldnn_available())
        self._workspaces: Dict[int, Workspace] = {}  # one per calling thread
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"FastGFPGAN: dtype must be torch.float32 or torch.bfloat16, got {dtype}")
        if dtype == torch.bfloat16 and self.fused and not native_bf16_available():
            raise ValueError("FastGFPGAN: oneDNN has no bfloat16 convolutions on this CPU (they need AVX512-BF16 or "
                             "AMX); use dtype=torch.float32 (optimize(model, 'auto') picks it)")
        self.dtype = dtype
        self.log_size = log_size
        self.out_size = 2 ** log_size
        self.num_style_feat = num_style_feat
        self.different_w = different_w
        self.input_is_latent = input_is_latent
        self.sft_half = sft_half
        self.num_latent = 2 * log_size - 2
        num_levels = log_size - 2  # 8 .. S px

        # U-Net encoder and decoder.
        self.first = StaticConv(sd["conv_body_first.weight"], sd["conv_body_first.bias"], dtype)
        self.down = nn.ModuleList([DownBlock(f"conv_body_down.{i}.", sd, dtype) for i in range(num_levels)])
        self.final_conv = StaticConv(sd["final_conv.weight"], sd["final_conv.bias"], dtype)
        _buffer(self, "final_linear_weight", sd["final_linear.weight"].detach().float())
        _buffer(self, "final_linear_bias", sd["final_linear.bias"].detach().float())
        self.up = nn.ModuleList([UpBlock(f"conv_body_up.{i}.", sd, dtype) for i in range(num_levels)])
        self.to_rgb_unet = nn.ModuleList([StaticConv(sd[f"toRGB.{i}.weight"], sd[f"toRGB.{i}.bias"], torch.float32)
                                          for i in range(num_levels)])
        self.sft = nn.ModuleList([SFTBranches(i, sd, dtype) for i in range(num_levels)])
        # GFPGANv1Clean(input_gate=True): g = sigmoid(conv(last U-Net feature) + linear(F_latent))
        # blends the input back in (gfpgan_clean.InputGate).
        self.input_gate = None
        if "input_gate.spatial.weight" in sd:
            self.input_gate = StaticConv(sd["input_gate.spatial.weight"], sd["input_gate.spatial.bias"], torch.float32)
            _buffer(self, "input_gate_face_weight", sd["input_gate.face.weight"].detach().float())
            _buffer(self, "input_gate_face_bias", sd["input_gate.face.bias"].detach().float())

        # Style MLP (only used when the codes are z).
        mlp_indices = sorted(int(k.split(".")[2]) for k in sd
                             if k.startswith("stylegan_decoder.style_mlp.") and k.endswith(".weight"))
        self.style_mlp = nn.ModuleList()
        if not input_is_latent:
            for i in mlp_indices:
                linear = nn.Linear(num_style_feat, num_style_feat)
                linear.weight.data.copy_(sd[f"stylegan_decoder.style_mlp.{i}.weight"])
                linear.bias.data.copy_(sd[f"stylegan_decoder.style_mlp.{i}.bias"])
                self.style_mlp.append(linear.requires_grad_(False))

        # StyleGAN2 decoder.
        dec = "stylegan_decoder."
        _buffer(self, "constant_input", sd[dec + "constant_input.weight"].detach().to(dtype)
                .contiguous(memory_format=torch.channels_last))
        # StyleConv j (0 = style_conv1 at 4 px, then two per level) uses latent j and noise j;
        # ToRGB k (0 = to_rgb1) uses latent 2k + 1.
        conv_prefixes = [dec + "style_conv1."] + [f"{dec}style_convs.{j}." for j in range(2 * num_levels)]
        rgb_prefixes = [dec + "to_rgb1."] + [f"{dec}to_rgbs.{k}." for k in range(num_levels)]
        resolutions = [4] + [2 ** (j // 2 + 3) for j in range(2 * num_levels)]
        self.style_layers = nn.ModuleList([
            StyleLayer(prefix, sd, upsample=j % 2 == 1, out_res=res, dtype=dtype,
                       input_modulation=res <= input_modulation_max_res)
            for j, (prefix, res) in enumerate(zip(conv_prefixes, resolutions))])
        self.to_rgbs = nn.ModuleList([RGBLayer(prefix, sd) for prefix in rgb_prefixes])
        self.modulations = Modulations(conv_prefixes + rgb_prefixes,
                                       [True] * len(conv_prefixes) + [False] * len(rgb_prefixes), sd)
        self.latent_index = list(range(len(conv_prefixes))) + [2 * k + 1 for k in range(len(rgb_prefixes))]
        self.fixed_noise = [layer.scaled_noise(sd[f"{dec}noises.noise{j}"])
                            for j, layer in enumerate(self.style_layers)]

    def extra_repr(self) -> str:
        return (f"out_size={self.out_size}, dtype={self.dtype}, different_w={self.different_w}, "
                f"input_is_latent={self.input_is_latent}, sft_half={self.sft_half}, "
                f"input_gate={self.input_gate is not None}")

    def _latents(self, feat: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, C, 4, 4] -> per-layer latents [B, num_latent, F] float32."""
        code = F.linear(feat.float().reshape(feat.shape[0], -1),
                        self.final_linear_weight, self.final_linear_bias)
        b = code.shape[0]
        if self.different_w:
            code = code.view(b, -1, self.num_style_feat)
        if not self.input_is_latent:
            code = code * torch.rsqrt(torch.mean(code ** 2, dim=-1, keepdim=True) + 1e-8)
            for linear in self.style_mlp:
                code = F.leaky_relu(linear(code), NEGATIVE_SLOPE)
        if not self.different_w:
            code = code.unsqueeze(1).expand(b, self.num_latent, self.num_style_feat)
        return code

    def _noises(self, batch: int, randomize_noise: bool) -> List[torch.Tensor]:
        """Strength-scaled noise per StyleConv [1 or B, 1, r, r], in the compute dtype."""
        if not randomize_noise:
            return self.fixed_noise
        # One float32 draw per layer, in layer order, from the default generator, like the reference.
        return [layer.scaled_noise(torch.empty(batch, 1, layer.out_res, layer.out_res).normal_())
                for layer in self.style_layers]

    def _sft(self, ops: Ops, feat: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """(CS-)SFT: ``feat * scale + shift`` on the second half of the channels (or on all); in place when fused."""
        part = feat[:, feat.shape[1] // 2:] if self.sft_half else feat
        if ops.fused:
            torch.addcmul(shift, part, scale, out=part)
            return feat
        if self.sft_half:
            return torch.cat([feat[:, :feat.shape[1] // 2], part * scale + shift], dim=1)
        return feat * scale + shift

    def _ops(self) -> Ops:
        if not self.fused:
            return Ops(False, None)
        ident = threading.get_ident()
        workspace = self._workspaces.get(ident)
        if workspace is None:
            workspace = self._workspaces[ident] = Workspace()
        return Ops(True, workspace)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is [B, 3, S, S] on the CPU."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != self.out_size or x.shape[3] != self.out_size:
            raise ValueError(f"FastGFPGAN: expected faces [B, 3, {self.out_size}, {self.out_size}], "
                             f"got {list(x.shape)}")
        if x.device.type != "cpu":
            raise ValueError(f"FastGFPGAN: runs on the CPU, got a tensor on {x.device}")

    def release_buffers(self) -> None:
        """Free the buffers kept for reuse between calls (they are made again on the next call)."""
        self._workspaces.clear()

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True, **kwargs: Any) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """x [B, 3, S, S] in [-1, 1] -> (image [B, 3, S, S] float32, out_rgbs list or []); see the class docstring."""
        self.check_input(x)
        with torch.no_grad():
            return self._forward(self._ops(), x, return_rgb, randomize_noise)

    def _forward(self, ops: Ops, x: torch.Tensor, return_rgb: bool,
                 randomize_noise: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        b = x.shape[0]
        feat = x.to(self.dtype).contiguous(memory_format=torch.channels_last)

        # U-Net encoder; its outputs are the skips of the U-Net decoder.
        feat = self.first(ops, feat, leaky_relu=True)
        unet_skips = []
        for block in self.down:
            down = block(ops, feat)
            if not unet_skips:
                ops.give(feat)  # the first conv's output is not a skip: its buffer is free again
            feat = down
            unet_skips.append(feat)
        feat = self.final_conv(ops, feat, leaky_relu=True)
        latent = self._latents(feat)  # [B, num_latent, F]
        if self.input_gate is not None:  # the gate's whole-face term, [B, 1, 1, 1]
            gate_face = F.linear(feat.float().reshape(b, -1), self.input_gate_face_weight,
                                 self.input_gate_face_bias)[:, :, None, None]
        styles, demods = self.modulations(latent[:, self.latent_index].transpose(0, 1))
        rgb_styles = styles[len(self.style_layers):]
        noises = self._noises(b, randomize_noise)

        # Decoder at 4 px.
        out = self.style_layers[0](ops, self.constant_input.expand(b, -1, -1, -1), styles[0], demods[0], noises[0])
        image = self.to_rgbs[0](ops, out, rgb_styles[0], None)

        # Level by level (8 px .. S): U-Net up block, its SFT maps, the two StyleConvs, ToRGB.
        out_rgbs: List[torch.Tensor] = []
        for level, up in enumerate(self.up):
            skip = unet_skips.pop()
            feat_in = feat.add_(skip) if ops.fused else feat + skip
            ops.give(skip)
            feat = up(ops, feat_in)
            ops.give(feat_in)
            maps, scale, shift = self.sft[level](ops, feat)
            if return_rgb:
                out_rgbs.append(self.to_rgb_unet[level](Ops(False, None), feat.float()))
            i = 2 * level + 1
            hidden = self.style_layers[i](ops, out, styles[i], demods[i], noises[i])
            ops.give(out)
            hidden = self._sft(ops, hidden, scale, shift)
            ops.give(maps)
            out = self.style_layers[i + 1](ops, hidden, styles[i + 1], demods[i + 1], noises[i + 1])
            ops.give(hidden)
            image = self.to_rgbs[level + 1](ops, out, rgb_styles[level + 1], image)
        if self.input_gate is not None:
            gate = torch.sigmoid(self.input_gate(Ops(False, None), feat.float()) + gate_face)
            image = torch.lerp(image, x.float(), gate)
        ops.give(out, feat)
        return image.contiguous(), out_rgbs


# ----------------------------------------------------------------------------------------------
# Building from a reference model


def clean_state_dict(model: Union[ModelDescriptor, nn.Module]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """(GFPGANv1Clean-layout float32 state dict, FastGFPGAN kwargs) of a GFP-GAN generator.

    ``model`` is a descriptor (or a network of a known architecture) whose architecture is
    GFPGANv1Clean or has an exact GFPGANv1Clean equivalent (GFPGANBilinear). Raises
    UnsupportedModelError (one line) for anything else.
    """
    if isinstance(model, (FastGFPGAN, CompiledGFPGAN)):
        raise UnsupportedModelError(f"the model is already a {type(model).__name__}")
    try:
        descriptor = model if isinstance(model, ModelDescriptor) else describe_network(model)
    except ArchitectureError as error:
        raise UnsupportedModelError(str(error)) from None
    state_dict = {k: v.detach().float() for k, v in descriptor.network.state_dict().items()}
    options = dict(descriptor.options)
    equivalent = descriptor.architecture.equivalent
    if descriptor.arch != "GFPGANv1Clean":
        if not descriptor.capabilities.fast_cpu or equivalent is None or equivalent[0] != "GFPGANv1Clean":
            raise UnsupportedModelError(f"{descriptor.arch} is not supported; supported: GFPGANv1Clean, GFPGANBilinear")
        state_dict, options = equivalent[1](state_dict, options)
    kwargs = dict(log_size=int(math.log2(options["out_size"])), num_style_feat=int(options["num_style_feat"]),
                  different_w=bool(options["different_w"]), input_is_latent=bool(options["input_is_latent"]),
                  sft_half=bool(options["sft_half"]))
    return state_dict, kwargs


def optimize_gfpgan(model: Union[ModelDescriptor, nn.Module], dtype: Optional[torch.dtype | str] = torch.float32,
             compile: bool = False) -> nn.Module:
    """A fast CPU inference module computing what ``model`` computes (see :class:`FastGFPGAN`).

    Args:
        model: the descriptor of a loaded GFPGANv1Clean or GFPGANBilinear, or the network itself (its
            weights are copied; it is not changed).
        dtype: torch.float32 (the reference results to ~1e-5), torch.bfloat16 (about 4x faster with
            AMX / AVX512-BF16, ~50 dB PSNR), or ``"auto"`` / None: bfloat16 where the CPU computes it
            natively (:func:`native_bf16_available`), else float32. bfloat16 on a CPU without native
            support warns once and uses float32.
        compile: run the forward through ``torch.compile`` (:class:`CompiledGFPGAN`; minutes of
            compiling per batch size, and measured no faster here). Falls back to the eager module
            with a one-line warning when compiling fails.
    Returns:
        an nn.Module called like the reference (``forward(x, return_latents=False, return_rgb=True,
        randomize_noise=True, **kwargs)``) with ``log_size`` / ``out_size`` attributes.
    Raises:
        UnsupportedModelError: GFPGANv1 (FIR resampling) or another class; keep using ``model``.
    """
    if dtype is None or dtype == "auto":
        dtype = default_dtype()
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"optimize: dtype must be torch.float32, torch.bfloat16 or 'auto', got {dtype!r}")
    if dtype == torch.bfloat16 and not native_bf16_available():
        warnings.warn("optimize: no native bfloat16 on this CPU (AMX / AVX512-BF16 with oneDNN); using float32",
                      RuntimeWarning, stacklevel=2)
        dtype = torch.float32
    try:
        sd, kwargs = clean_state_dict(model)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"optimize: {e}; keep using the reference model") from None
    fast = FastGFPGAN(sd, dtype=dtype, **kwargs).eval()
    return CompiledGFPGAN(fast) if compile else fast


class CompiledGFPGAN(nn.Module):
    """A :class:`FastGFPGAN` whose stored-noise forward runs through ``torch.compile`` (inductor).

    The compiled graph uses the plain ops (:class:`Ops` with ``fused=False``), which inductor fuses
    itself; it is compiled on the first call for each (batch size, return_rgb) and recompiled for a
    new one. Calls with ``randomize_noise=True`` run the eager module (the compiled graph would
    draw its noise from inductor's own generator). If compiling or running the compiled graph
    fails, one warning is printed and every later call runs the eager module.
    """

    def __init__(self, fast: FastGFPGAN):
        super().__init__()
        self.fast = fast
        self.log_size, self.out_size = fast.log_size, fast.out_size
        self.failed = False
        self._compiled: Optional[Any] = None  # made on the first call (importing inductor takes seconds)

    def _forward_plain(self, x: torch.Tensor, return_rgb: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.fast._forward(Ops(False), x, return_rgb, False)

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True, **kwargs: Any) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if randomize_noise or self.failed:
            return self.fast(x, return_rgb=return_rgb, randomize_noise=randomize_noise)
        self.fast.check_input(x)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self._forward_plain, dynamic=False)
            with torch.no_grad():
                return self._compiled(x, return_rgb)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
            self.failed = True
            message = " ".join(str(e).split())[:200]
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {message}); running the eager module",
                          RuntimeWarning, stacklevel=2)
            return self.fast(x, return_rgb=return_rgb, randomize_noise=False)
