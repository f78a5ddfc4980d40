"""RestoreFormer and RestoreFormer++: face restoration by cross-attention to a learned codebook.

RestoreFormer (Wang et al., CVPR 2022) and RestoreFormer++ (Wang et al., TPAMI 2023) are VQ-GAN
style encoder / decoder networks:

1. An **encoder** of ``len(ch_mult)`` levels (``num_res_blocks`` ResNet blocks each, a stride-2
   conv between levels, multi-head *self*-attention at the resolutions in ``attn_resolutions``,
   then a middle block ResNet -> attention -> ResNet) maps the degraded face x [B, 3, S, S] to a
   latent z [B, z_channels, S/2^(L-1), S/2^(L-1)] (16 x 16 for the released 512 px models), and
   keeps its intermediate features ``hs`` (a dict, see :meth:`MultiHeadEncoder.forward`).
2. ``quant_conv`` projects z to ``embed_dim`` channels and the **vector quantizer** replaces each
   position by its nearest entry of a codebook of ``n_embed`` high-quality face "priors"
   (nearest by squared Euclidean distance; the codebook is learned beforehand on clean faces and
   frozen during restoration training).
3. The **decoder** mirrors the encoder (``num_res_blocks + 1`` blocks per level, nearest-neighbour
   2x upsampling + conv between levels). Its attention blocks are **multi-head cross-attention**
   (:class:`MultiHeadAttnBlock` with a context): the *queries* come from the degraded face's
   encoder features (the identity cues), the *keys and values* from the decoder's own features,
   which stem from the quantized priors; the result is added to the decoder features. The middle
   block's attention is queried by ``hs['mid_atten']`` (the encoder's middle-block output), the
   attention blocks at the latent resolution by the encoder's middle ``block_1`` output.
4. **RestoreFormer++** (``ex_multi_scale_num = 1``) adds cross-attention at the next resolution
   too (32 px in the released model, with the encoder's 32 px level output as queries): a
   multi-scale fusion of the degraded face's features with the priors.

Both are deterministic (no noise, dropout 0 in the released models). Input and output are RGB
faces in [-1, 1]; the output is not clamped (the official post-processing clamps to [-1, 1]).

Official code: ``gfpgan`` 1.3.8 ``gfpgan/archs/restoreformer_arch.py`` (:class:`RestoreFormer`, as
used by ``GFPGANer(arch='RestoreFormer')``) and wzhouxiff/RestoreFormerPlusPlus @ 59d250f4,
``RestoreFormer/modules/vqvae/vqvae_arch.py`` (:class:`VQVAEGANMultiHeadTransformer`). This file is
an independent implementation: state-dict keys, their order, the shapes, the random
initialisation order and the outputs equal the official ones (checked against the reference pack
in ``tests/test_models_restoreformer.py``).

``head_size`` is, as in the official code, the **number of attention heads** (each head has
``channels // head_size`` channels). It leaves no trace in a state dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, ArchitectureError, Capabilities, Shapes, indices, require

__all__ = [
    "ARCHITECTURE_RESTOREFORMER",
    "ARCHITECTURE_RESTOREFORMER_PP",
    "MultiHeadAttnBlock",
    "MultiHeadDecoderTransformer",
    "MultiHeadEncoder",
    "ResnetBlock",
    "RestoreFormer",
    "VQVAEGANMultiHeadTransformer",
    "VectorQuantizer",
    "multi_scale_attn_resolutions",
    "restoreformer_keys",
]

#: Features of the encoder, by name (see MultiHeadEncoder.forward).
Features = dict[str, torch.Tensor]


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), the non-linearity used throughout (also called SiLU)."""
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups and eps 1e-6 (so ``channels`` must be a multiple of 32)."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


# ----------------------------------------------------------------------------------------------
# Building blocks


class ResnetBlock(nn.Module):
    """Pre-activation residual block: ``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``.

    A 1x1 ``nin_shortcut`` maps x to ``out_channels`` when the channel count changes.
    Shapes: [B, in_channels, H, W] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        # Registration order = official state-dict order and random-init order.
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class MultiHeadAttnBlock(nn.Module):
    """Multi-head attention over the spatial positions, residual: ``x + proj_out(attention)``.

    ``forward(x)`` is self-attention (queries, keys and values from ``norm1(x)``; ``norm2`` is
    unused). ``forward(x, context)`` is the cross-attention of the decoder: queries from
    ``norm2(context)`` (the encoder's features of the degraded face), keys and values from
    ``norm1(x)``. Channels are split into ``head_size`` heads of ``in_channels // head_size``
    channels (head h = channels ``h * att_size ... (h + 1) * att_size - 1``); scores are scaled by
    ``att_size ** -0.5`` and softmax-normalised over the key positions.

    Shapes: x and context [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, in_channels: int, head_size: int = 1):
        super().__init__()
        if in_channels % head_size != 0:
            raise ValueError(f"{in_channels} channels cannot be split into {head_size} attention heads")
        self.in_channels = in_channels
        self.head_size = head_size  # the number of heads (official name)
        self.att_size = in_channels // head_size  # channels per head
        self.norm1 = group_norm(in_channels)
        self.norm2 = group_norm(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        context = h if context is None else self.norm2(context)
        q, k, v = self.q(context), self.k(h), self.v(h)

        b, c, height, width = q.shape
        heads, d = self.head_size, self.att_size
        q = q.reshape(b, heads, d, height * width).transpose(2, 3)  # [B, heads, HW, d]
        k = k.reshape(b, heads, d, height * width)  # [B, heads, d, HW]
        v = v.reshape(b, heads, d, height * width).transpose(2, 3)  # [B, heads, HW, d]

        weights = torch.softmax(torch.matmul(q * d**-0.5, k), dim=3)  # [B, heads, HW (q), HW (k)]
        out = torch.matmul(weights, v)  # [B, heads, HW, d]
        # [B, C, H, W] in channels-last memory layout, as officially: the 1x1 conv then sums in the
        # same order and the result is bit-identical to the official one.
        out = out.transpose(1, 2).contiguous().view(b, height, width, c).permute(0, 3, 1, 2)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halves the resolution: zero-pad right and bottom by 1, then a 3x3 stride-2 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    """Doubles the resolution: nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """The middle of encoder and decoder: ResNet block, attention, ResNet block (C channels)."""

    def __init__(self, channels: int, dropout: float, head_size: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = MultiHeadAttnBlock(channels, head_size)
        self.block_2 = ResnetBlock(channels, channels, dropout)


class Level(nn.Module):
    """One resolution level: ``block`` (ResNet blocks) and ``attn`` (one attention block after each
    ResNet block, or none); the encoder / decoder adds ``downsample`` / ``upsample`` to all levels
    but its last."""

    def __init__(self, blocks: Sequence[nn.Module], attns: Sequence[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)


# ----------------------------------------------------------------------------------------------
# Encoder, vector quantizer, decoder


class MultiHeadEncoder(nn.Module):
    """Image [B, in_channels, S, S] -> features ``hs`` (the latent is ``hs['out']``).

    Level i works at S / 2^i px with ``ch * ch_mult[i]`` channels; self-attention after every
    ResNet block of the levels whose resolution is in ``attn_resolutions`` (given ``resolution`` = S).
    """

    def __init__(self, ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, in_channels: int = 3,
                 resolution: int = 512, z_channels: int = 256, double_z: bool = True, enable_mid: bool = True,
                 head_size: int = 1):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.enable_mid = enable_mid

        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, padding=1)
        levels = []
        block_in, curr_res = ch, resolution
        for i, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, ch * mult, dropout))
                block_in = ch * mult
                if curr_res in attn_resolutions:
                    attns.append(MultiHeadAttnBlock(block_in, head_size))
            level = Level(blocks, attns)
            if i != self.num_resolutions - 1:
                level.downsample = Downsample(block_in)
                curr_res //= 2
            levels.append(level)
        self.down = nn.ModuleList(levels)
        if enable_mid:
            self.mid = MidBlock(block_in, dropout, head_size)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> Features:
        """x [B, in_channels, S, S] (S divisible by 2^(L-1)) -> ``hs`` with the official keys:

        ``'in'``: ``conv_in`` output; ``'block_<i>'`` for every level i but the last: its output
        before downsampling, [B, ch * ch_mult[i], S / 2^i, S / 2^i]; with ``enable_mid``,
        ``'block_<L-1>_atten'``: the middle ``block_1`` output and ``'mid_atten'``: the middle
        block's output; ``'out'``: the latent [B, z_channels (x2 if double_z), S / 2^(L-1), ...].
        """
        hs: Features = {}
        h = self.conv_in(x)
        hs["in"] = h
        last = self.num_resolutions - 1
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if i != last:
                hs[f"block_{i}"] = h
                h = level.downsample(h)
        if self.enable_mid:
            h = self.mid.block_1(h)
            hs[f"block_{last}_atten"] = h
            h = self.mid.attn_1(h)
            h = self.mid.block_2(h)
            hs["mid_atten"] = h
        hs["out"] = self.conv_out(swish(self.norm_out(h)))
        return hs


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantization (VQ-VAE), with the straight-through gradient.

    ``embedding.weight`` [n_e, e_dim] is the codebook, initialised U(-1/n_e, 1/n_e) as officially.
    """

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_e = n_e
        self.e_dim = e_dim
        self.beta = beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """z [B, e_dim, H, W] -> ``(z_q, loss, (perplexity, min_encodings, min_encoding_indices, d))``.

        z_q [B, e_dim, H, W]: each position replaced by its nearest code (``z + (z_q - z).detach()``,
        so gradients pass straight through to z); loss: ``mean((z_q - z)^2) * (1 + beta)`` (the
        codebook term and the commitment term, differing only in where gradients stop);
        min_encodings [B*H*W, n_e] one-hot, min_encoding_indices int64 [B*H*W, 1] in (b, h, w)
        order, d [B*H*W, n_e] the squared distances ``|z|^2 + |e|^2 - 2 z.e``.
        """
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, self.e_dim)
        codebook = self.embedding.weight
        d = (torch.sum(flat**2, dim=1, keepdim=True) + torch.sum(codebook**2, dim=1)
             - 2 * torch.matmul(flat, codebook.t()))
        min_encoding_indices = torch.min(d, dim=1).indices.unsqueeze(1)
        min_encodings = torch.zeros(flat.shape[0], self.n_e, dtype=z.dtype, device=z.device)
        min_encodings.scatter_(1, min_encoding_indices, 1)
        z_q = torch.matmul(min_encodings, codebook).view(z.shape)

        loss = torch.mean((z_q.detach() - z) ** 2) + self.beta * torch.mean((z_q - z.detach()) ** 2)
        z_q = z + (z_q - z).detach()

        e_mean = torch.mean(min_encodings, dim=0)
        perplexity = torch.exp(-torch.sum(e_mean * torch.log(e_mean + 1e-10)))
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, (perplexity, min_encodings, min_encoding_indices, d)

    def get_codebook_entry(self, indices: torch.Tensor, shape: Sequence[int] | None) -> torch.Tensor:
        """Codes of ``indices`` (int [N]); with ``shape`` = (B, H, W, e_dim): as [B, e_dim, H, W]."""
        z_q = F.embedding(indices, self.embedding.weight)
        if shape is not None:
            z_q = z_q.view(shape).permute(0, 3, 1, 2).contiguous()
        return z_q


def _queries(hs: Mapping[str, torch.Tensor], level: int) -> torch.Tensor:
    """The encoder feature that queries the decoder's cross-attention at ``level``."""
    for key in (f"block_{level}_atten", f"block_{level}"):
        if key in hs:
            return hs[key]
    raise ValueError(f"decoder attention at level {level} needs the encoder feature 'block_{level}_atten' or "
                     f"'block_{level}' (the bottom level's comes from the middle block: enable_mid=False cannot "
                     f"attend there)")


class MultiHeadDecoderTransformer(nn.Module):
    """Latent [B, z_channels, s, s] + encoder features ``hs`` -> image [B, out_ch, s * 2^(L-1), ...].

    Mirror of :class:`MultiHeadEncoder` with ``num_res_blocks + 1`` ResNet blocks per level; the
    attention blocks are cross-attentions whose queries come from ``hs`` (see :meth:`forward`).
    ``up[i]`` is the level at ``resolution / 2^i`` px (index 0 = full resolution, built last).
    """

    def __init__(self, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, resolution: int = 512,
                 z_channels: int = 256, enable_mid: bool = True, head_size: int = 1):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.enable_mid = enable_mid

        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, padding=1)
        if enable_mid:
            self.mid = MidBlock(block_in, dropout, head_size)
        # Built from the bottom level up (the official init order), stored with index 0 = top.
        levels = []
        for i in reversed(range(self.num_resolutions)):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, ch * ch_mult[i], dropout))
                block_in = ch * ch_mult[i]
                if curr_res in attn_resolutions:
                    attns.append(MultiHeadAttnBlock(block_in, head_size))
            level = Level(blocks, attns)
            if i != 0:
                level.upsample = Upsample(block_in)
                curr_res *= 2
            levels.append(level)
        self.up = nn.ModuleList(reversed(levels))
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor, hs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """z [B, z_channels, s, s], hs from :meth:`MultiHeadEncoder.forward` -> [B, out_ch, S, S].

        Queries of the cross-attentions: ``hs['mid_atten']`` in the middle block; at level i
        ``hs['block_<i>_atten']`` if the encoder made one (the bottom level), else
        ``hs['block_<i>']`` (the encoder's level-i output; RestoreFormer++'s extra scale).
        """
        h = self.conv_in(z)
        if self.enable_mid:
            h = self.mid.block_1(h)
            h = self.mid.attn_1(h, hs["mid_atten"])
            h = self.mid.block_2(h)
        for i in reversed(range(self.num_resolutions)):
            level = self.up[i]
            context = _queries(hs, i) if len(level.attn) > 0 else None
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h, context)
            if i != 0:
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------
# The two networks


def multi_scale_attn_resolutions(attn_resolutions: Sequence[int], ex_multi_scale_num: int) -> tuple[int, ...]:
    """The decoder's attention resolutions of :class:`VQVAEGANMultiHeadTransformer`.

    Follows the official loop exactly: each step replaces the list by ``[first, last * 2]``, so
    (16,) gives (16, 32) for 1 (the released RestoreFormer++), (16, 64) for 2 -- not (16, 32, 64).
    """
    resolutions = tuple(attn_resolutions)
    for _ in range(ex_multi_scale_num):
        resolutions = (resolutions[0], resolutions[-1] * 2)
    return resolutions


class _VQTransformer(nn.Module):
    """Encoder, vector quantizer and cross-attention decoder (shared by both networks)."""

    def __init__(self, n_embed: int, embed_dim: int, ch: int, out_ch: int, ch_mult: Sequence[int],
                 num_res_blocks: int, attn_resolutions: Sequence[int], decoder_attn_resolutions: Sequence[int],
                 dropout: float, in_channels: int, resolution: int, z_channels: int, double_z: bool,
                 enable_mid: bool, head_size: int):
        super().__init__()
        self.encoder = MultiHeadEncoder(ch, ch_mult, num_res_blocks, attn_resolutions, dropout, in_channels,
                                        resolution, z_channels, double_z, enable_mid, head_size)
        self.decoder = MultiHeadDecoderTransformer(ch, out_ch, ch_mult, num_res_blocks, decoder_attn_resolutions,
                                                   dropout, resolution, z_channels, enable_mid, head_size)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, kernel_size=1)

    def _freeze(self, *modules: nn.Module) -> None:
        for module in modules:
            for param in module.parameters():
                param.requires_grad = False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], Features]:
        """x [B, 3, S, S] in [-1, 1] -> ``(quant, emb_loss, info, hs)``.

        quant [B, embed_dim, S/2^(L-1), ...]: the quantized latent; emb_loss, info: see
        :meth:`VectorQuantizer.forward`; hs: the encoder features.
        """
        hs = self.encoder(x)
        quant, emb_loss, info = self.quantize(self.quant_conv(hs["out"]))
        return quant, emb_loss, info, hs

    def decode(self, quant: torch.Tensor, hs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Quantized latent + encoder features -> restored face [B, out_ch, S, S] (about [-1, 1], unclamped)."""
        return self.decoder(self.post_quant_conv(quant), hs)


class RestoreFormer(_VQTransformer):
    """RestoreFormer as in gfpgan 1.3.8 (``GFPGANer(arch='RestoreFormer')``; same defaults).

    Defaults are the released 512 px model (72.7 M parameters): ``RestoreFormer()``.
    ``forward(x)`` with x [B, in_channels, S, S] RGB in [-1, 1], S = ``resolution`` (any S
    divisible by 2^(len(ch_mult)-1) runs) returns ``(restored, None)``, restored
    [B, out_ch, S, S] about [-1, 1], unclamped. Extra keyword arguments (``GFPGANer`` passes
    ``return_rgb`` and ``weight``) are ignored, as officially. ``fix_*`` only set
    ``requires_grad`` (training).

    gfpgan's decoder can only attend at the bottom level (``attn_resolutions`` other than the
    latent size raise a KeyError there); this one then uses the RestoreFormer++ rule (queries from
    the encoder's output of that level), i.e. computes what ``VQVAEGANMultiHeadTransformer(...,
    ex_multi_scale_num=0)`` computes. For every configuration gfpgan runs, the two are identical.
    """

    def __init__(self, n_embed: int = 1024, embed_dim: int = 256, ch: int = 64, out_ch: int = 3,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, in_channels: int = 3,
                 resolution: int = 512, z_channels: int = 256, double_z: bool = False, enable_mid: bool = True,
                 fix_decoder: bool = False, fix_codebook: bool = True, fix_encoder: bool = False,
                 head_size: int = 8):
        super().__init__(n_embed, embed_dim, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions,
                         attn_resolutions, dropout, in_channels, resolution, z_channels, double_z, enable_mid,
                         head_size)
        if fix_decoder:
            self._freeze(self.decoder, self.post_quant_conv, self.quantize)
        elif fix_codebook:
            self._freeze(self.quantize)
        if fix_encoder:
            self._freeze(self.encoder)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
        quant, _, _, hs = self.encode(x)
        return self.decode(quant, hs), None


class VQVAEGANMultiHeadTransformer(_VQTransformer):
    """RestoreFormer++ (RestoreFormerPlusPlus repository; same defaults = the released model).

    ``ex_multi_scale_num`` extra decoder cross-attention scales (see
    :func:`multi_scale_attn_resolutions`); ``head_size=8, ex_multi_scale_num=0`` is RestoreFormer as
    released by that repository (same keys and function as :class:`RestoreFormer`).
    ``forward(x)`` with x [B, in_channels, S, S] RGB in [-1, 1] returns
    ``(restored, emb_loss, info, hs)``: restored [B, out_ch, S, S] about [-1, 1], unclamped; the rest
    as in :meth:`encode`. ``fix_*`` only set ``requires_grad`` (training).
    """

    def __init__(self, n_embed: int = 1024, embed_dim: int = 256, ch: int = 64, out_ch: int = 3,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, in_channels: int = 3,
                 resolution: int = 512, z_channels: int = 256, double_z: bool = False, enable_mid: bool = True,
                 fix_decoder: bool = False, fix_codebook: bool = True, fix_encoder: bool = False,
                 head_size: int = 4, ex_multi_scale_num: int = 1):
        super().__init__(n_embed, embed_dim, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions,
                         multi_scale_attn_resolutions(attn_resolutions, ex_multi_scale_num), dropout, in_channels,
                         resolution, z_channels, double_z, enable_mid, head_size)
        if fix_decoder:
            self._freeze(self.decoder, self.post_quant_conv, self.quantize)
        elif fix_codebook:
            self._freeze(self.quantize)
        if fix_encoder:  # unlike gfpgan's RestoreFormer, this also freezes quant_conv
            self._freeze(self.encoder, self.quant_conv)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], Features]:
        quant, emb_loss, info, hs = self.encode(x)
        return self.decode(quant, hs), emb_loss, info, hs


# ----------------------------------------------------------------------------------------------
# Recognising the state dicts


LIGHTNING_PREFIX = "vqvae."

#: Keys every RestoreFormer / RestoreFormer++ state dict has (``encoder.down.`` tells them from
#: CodeFormer's ``encoder.blocks.``; CodeFormer also has ``quantize.embedding.weight``).
_SIGNATURE = (
    "encoder.conv_in.weight",
    "encoder.down.0.block.0.conv1.weight",
    "encoder.conv_out.weight",
    "decoder.conv_in.weight",
    "decoder.up.0.block.0.conv1.weight",
    "decoder.conv_out.weight",
    "quantize.embedding.weight",
    "quant_conv.weight",
    "post_quant_conv.weight",
)
#: An attention block with two norms (taming-transformers' VQGAN has one, ``norm``). Note that the
#: RestoreFormerPlusPlus repository's first-stage ``VQVAEGAN`` (the codebook training, self-attention
#: decoder) has exactly RestoreFormer's keys: nothing in a state dict tells the two apart.
_TWO_NORM_ATTENTION = re.compile(r"(?:encoder|decoder)\.(?:mid\.attn_1|(?:down|up)\.\d+\.attn\.\d+)\.norm2\.weight")


def restoreformer_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The network's state dict from a released file's (already unwrapped) state dict.

    The RestoreFormerPlusPlus releases (``RestoreFormer++.ckpt``, ``RestoreFormer.ckpt``) are
    PyTorch-Lightning checkpoints of the training model, whose ``state_dict`` holds the network
    under ``vqvae.`` next to other entries (e.g. the losses, ``loss.*``). When any key starts with
    ``vqvae.``, only those are kept, without the prefix (what the official loader keeps with
    ``strict=False``); otherwise (gfpgan's ``params_ema``) the dict is returned as it is.
    """
    if not any(key.startswith(LIGHTNING_PREFIX) for key in state_dict):
        return state_dict
    return {key[len(LIGHTNING_PREFIX):]: value for key, value in state_dict.items()
            if key.startswith(LIGHTNING_PREFIX)}


def _attention_levels(shapes: Shapes, prefix: str) -> list[int]:
    """Levels of the encoder (``prefix`` "encoder.down") or decoder ("decoder.up") with attention."""
    return indices(shapes, re.escape(prefix) + r"\.(\d+)\.attn\.0\.q\.weight")


def _is_family(shapes: Shapes) -> bool:
    return all(key in shapes for key in _SIGNATURE) and any(_TWO_NORM_ATTENTION.fullmatch(key) for key in shapes)


def _has_extra_scales(shapes: Shapes) -> bool:
    """The decoder has cross-attention at levels where the encoder has no attention (RestoreFormer++)."""
    return _attention_levels(shapes, "decoder.up") != _attention_levels(shapes, "encoder.down")


def _common_options(shapes: Shapes, what: str) -> tuple[dict[str, Any], list[int]]:
    """Every shared constructor kwarg, and the decoder's attention resolutions (for ex_multi_scale_num)."""
    ch, in_channels = require(shapes, "encoder.conv_in.weight", what)[:2]
    levels = indices(shapes, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    if levels != list(range(len(levels))):
        raise ArchitectureError(f"{what}: encoder levels {levels} are not 0..{len(levels) - 1}")
    num_levels = len(levels)
    ch_mult = []
    for i in levels:
        channels = require(shapes, f"encoder.down.{i}.block.0.conv1.weight", what)[0]
        if channels % ch:
            raise ArchitectureError(f"{what}: level {i} has {channels} channels, not a multiple of ch={ch}")
        ch_mult.append(channels // ch)
    num_res_blocks = len(indices(shapes, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight"))
    n_embed, codebook_dim = require(shapes, "quantize.embedding.weight", what)
    embed_dim, z_channels = require(shapes, "quant_conv.weight", what)[:2]
    if codebook_dim != embed_dim:
        raise ArchitectureError(f"{what}: codebook entries have {codebook_dim} channels, quant_conv gives {embed_dim}")
    latent_channels = require(shapes, "encoder.conv_out.weight", what)[0]
    if latent_channels not in (z_channels, 2 * z_channels):
        raise ArchitectureError(f"{what}: encoder gives {latent_channels} channels, quant_conv takes {z_channels}")

    # Nothing in the shapes tells the pixel size: only at which level attention sits. The released
    # models attend at 16 px (attn_resolutions=(16,)); the deepest encoder attention level is taken
    # to be at 16 px, which fixes `resolution` (512 for the released 6-level models). Without any
    # encoder attention, the latent is taken to be 16 px (as released).
    encoder_levels = _attention_levels(shapes, "encoder.down")
    deepest = encoder_levels[-1] if encoder_levels else num_levels - 1
    resolution = 16 * 2**deepest
    attn_resolutions = tuple(sorted(resolution >> i for i in encoder_levels))
    decoder_resolutions = sorted(resolution >> i for i in _attention_levels(shapes, "decoder.up"))

    options = {
        "n_embed": n_embed,
        "embed_dim": embed_dim,
        "ch": ch,
        "out_ch": require(shapes, "decoder.conv_out.weight", what)[0],
        "ch_mult": tuple(ch_mult),
        "num_res_blocks": num_res_blocks,
        "attn_resolutions": attn_resolutions,
        "dropout": 0.0,  # no trace in a state dict; 0 in every released config (inference: no effect)
        "in_channels": in_channels,
        "resolution": resolution,
        "z_channels": z_channels,
        "double_z": latent_channels == 2 * z_channels,
        "enable_mid": "encoder.mid.block_1.conv1.weight" in shapes,
        # Training-only switches (requires_grad), no trace in a state dict: official defaults.
        "fix_decoder": False,
        "fix_codebook": True,
        "fix_encoder": False,
    }
    return options, decoder_resolutions


def restoreformer_options(shapes: Shapes) -> dict[str, Any]:
    """RestoreFormer's constructor kwargs read off a state dict's names and shapes."""
    what = "RestoreFormer"
    options, decoder_resolutions = _common_options(shapes, what)
    if decoder_resolutions != list(options["attn_resolutions"]):
        raise ArchitectureError(f"{what}: decoder attention at {decoder_resolutions} px, encoder attention at "
                                f"{list(options['attn_resolutions'])} px (a RestoreFormer++ state dict?)")
    # The number of heads leaves no trace in the shapes: the released RestoreFormer has 8
    # (gfpgan's default; also configs/RestoreFormer.yaml of the RestoreFormerPlusPlus repo).
    options["head_size"] = 8
    return options


def restoreformer_pp_options(shapes: Shapes) -> dict[str, Any]:
    """VQVAEGANMultiHeadTransformer's (RestoreFormer++) constructor kwargs read off names and shapes."""
    what = "VQVAEGANMultiHeadTransformer"
    options, decoder_resolutions = _common_options(shapes, what)
    attn = options["attn_resolutions"]
    max_levels = len(options["ch_mult"])
    for ex in range(max_levels + 1):
        expected = multi_scale_attn_resolutions(attn, ex) if attn else ()
        if sorted({r for r in expected if r <= options["resolution"]}) == decoder_resolutions:
            break
    else:
        raise ArchitectureError(f"{what}: decoder attention at {decoder_resolutions} px follows from no "
                                f"ex_multi_scale_num with encoder attention at {list(attn)} px")
    # The number of heads leaves no trace in the shapes: the released models have 4 for
    # RestoreFormer++ (ex_multi_scale_num=1, configs/RestoreFormerPlusPlus.yaml) and 8 for
    # RestoreFormer (ex_multi_scale_num=0, configs/RestoreFormer.yaml, RestoreFormer/RestoreFormer.py).
    options["head_size"] = 8 if ex == 0 else 4
    options["ex_multi_scale_num"] = ex
    return options


def _restore(network: nn.Module, x: torch.Tensor, fidelity: float | None, randomize_noise: bool) -> torch.Tensor:
    return network(x)[0]


ARCHITECTURE_RESTOREFORMER = Architecture(
    name="RestoreFormer",
    network=RestoreFormer,
    purpose="restoration",
    layout=lambda shapes: _is_family(shapes) and not _has_extra_scales(shapes),
    options=restoreformer_options,
    # gfpgan's RestoreFormer.pth is a plain {'params_ema'|'params': sd}; the RestoreFormerPlusPlus
    # repository releases RestoreFormer.ckpt in its Lightning layout ('vqvae.' keys), same network.
    convert_keys=restoreformer_keys,
    face_size=lambda options: options["resolution"],
    framing="ffhq",
    restore=_restore,
    capabilities=Capabilities(fidelity=False, stochastic=False, fast_cpu=True, bf16=False, onnx=True),
    # GFPGAN (v1.3.4 release asset RestoreFormer.pth) states no separate licence for the weights;
    # the GFPGAN repository and the original wzhouxiff/RestoreFormer repository are Apache-2.0.
    weights_license="Apache-2.0 (GFPGAN release)",
    description="RestoreFormer (CVPR 2022): VQ codebook of face priors + multi-head cross-attention decoder, 512 px",
)

ARCHITECTURE_RESTOREFORMER_PP = Architecture(
    name="VQVAEGANMultiHeadTransformer",
    network=VQVAEGANMultiHeadTransformer,
    purpose="restoration",
    layout=lambda shapes: _is_family(shapes) and _has_extra_scales(shapes),
    options=restoreformer_pp_options,
    convert_keys=restoreformer_keys,
    face_size=lambda options: options["resolution"],
    framing="ffhq",
    restore=_restore,
    capabilities=Capabilities(fidelity=False, stochastic=False, fast_cpu=True, bf16=False, onnx=True),
    weights_license="Apache-2.0",
    description="RestoreFormer++ (TPAMI 2023): RestoreFormer with multi-scale cross-attention (16 and 32 px), 512 px",
)
