"""CodeFormer (Zhou et al., NeurIPS 2022): blind face restoration as code prediction over a learned codebook.

Official code: ``sczhou/CodeFormer`` @ b33cc7d6, ``basicsr/archs/codeformer_arch.py`` and
``basicsr/archs/vqgan_arch.py``. This is an independent implementation of the same function with the
same state-dict keys, shapes and order, so the released ``codeformer.pth`` (``{'params_ema': sd}``)
loads with ``load_state_dict(strict=True)``. It needs neither basicsr nor einops.

How it works:

1. A **VQGAN encoder** (``encoder.blocks``: conv, ResBlocks with a stride-2 Downsample between
   levels, self-attention at the 16-px level, a non-local Res/Attn/Res block, GroupNorm, conv)
   maps the degraded face x [B, 3, S, S] to a latent ``lq_feat`` [B, 256, s, s] (s = S / 32 = 16
   for the released model).
2. A **Transformer** (``feat_emb``, ``ft_layers``: pre-norm self-attention layers with a learned
   position embedding added to the queries and keys, GELU MLP) reads the s*s latent vectors as
   tokens and ``idx_pred_layer`` predicts, per token, logits over the ``codebook_size`` codes of
   the high-quality VQGAN codebook. The top-1 code is taken (no sampling).
3. The chosen codes are looked up in the **codebook** (``quantize.embedding``), optionally given
   the mean and std of ``lq_feat`` per channel (AdaIN, ``adain=True`` in the official inference),
   and decoded by the **VQGAN generator** (``generator.blocks``, the mirror of the encoder with
   nearest-neighbour Upsample).
4. **Controllable feature transformation**: at the resolutions of ``connect_list`` a
   ``Fuse_sft_block`` turns the encoder feature of that resolution (concatenated with the decoder
   feature) into an SFT scale and shift, and the decoder feature becomes
   ``dec + w * (dec * scale + shift)``. The fidelity weight ``w`` in [0, 1] trades quality
   (w = 0: the decoder sees only the codebook, no fuse block runs) for fidelity to the input
   (w = 1). The official inference default is 0.5.

The official ``CodeFormer.__init__`` hard-codes the VQGAN size (``img_size=512, nf=64,
ch_mult=[1, 2, 2, 4, 4, 8]``) and the dicts ``channels``, ``fuse_encoder_block`` and
``fuse_generator_block``; here they are constructor arguments whose defaults are the official
values, so smaller configurations (e.g. the reference pack's ``CodeFormer_small``) can be built.
:func:`fuse_block_indices` gives the two dicts from the VQGAN layout by the official rule.

Precision: the official model runs only in float32 (``get_codebook_feat`` multiplies a
``.float()`` one-hot matrix with the codebook). Here the code lookup and the AdaIN statistics are
computed in float32 whatever the network's dtype, and the result is cast to the dtype of
``lq_feat`` before the generator; in float32 this is exactly the official computation.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, ArchitectureError, Capabilities, Shapes, indices, require

__all__ = [
    "ARCHITECTURE",
    "OFFICIAL_CHANNELS",
    "OFFICIAL_FUSE_ENCODER_BLOCK",
    "OFFICIAL_FUSE_GENERATOR_BLOCK",
    "AttnBlock",
    "CodeFormer",
    "Downsample",
    "FuseSFTBlock",
    "ResBlock",
    "TransformerSALayer",
    "Upsample",
    "VQEncoder",
    "VQGenerator",
    "VectorQuantizer",
    "adaptive_instance_normalization",
    "codeformer_layout",
    "codeformer_options",
    "fuse_block_indices",
]

#: ``CodeFormer.channels`` of the official code: feature channels per resolution (= nf * ch_mult).
OFFICIAL_CHANNELS: Mapping[str, int] = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}
#: ``CodeFormer.fuse_encoder_block``: index in ``encoder.blocks`` whose output is the skip feature
#: of each resolution (the last ResBlock of the level, before the attention block at 16 px).
OFFICIAL_FUSE_ENCODER_BLOCK: Mapping[str, int] = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
#: ``CodeFormer.fuse_generator_block``: index in ``generator.blocks`` after which the fuse block of
#: each resolution runs (the first ResBlock of a level above 16 px; the last one, before its
#: attention block, at 16 px).
OFFICIAL_FUSE_GENERATOR_BLOCK: Mapping[str, int] = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}

#: The official ``CodeFormer.__init__`` VQGAN constants.
OFFICIAL_IMG_SIZE = 512
OFFICIAL_NF = 64
OFFICIAL_CH_MULT = (1, 2, 2, 4, 4, 8)

#: The official inference default of the fidelity weight (``inference_codeformer.py --fidelity_weight``).
DEFAULT_FIDELITY = 0.5


# ----------------------------------------------------------------------------------------------
# VQGAN building blocks (vqgan_arch.py)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, eps 1e-6, affine (VQGAN's ``normalize``); ``channels`` % 32 == 0."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` (SiLU), written as in the official code."""
    return x * torch.sigmoid(x)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, 3x3 conv) x 2, plus a 1x1 ``conv_out``
    on the skip path when the channel count changes.

    [B, in_channels, H, W] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: Optional[int] = None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        skip = self.conv_out(x) if self.in_channels != self.out_channels else x
        return h + skip


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions, with a residual connection.

    q, k, v and the output projection are 1x1 convs on the GroupNorm-ed input; attention weights
    ``softmax(q^T k / sqrt(C))``. [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.norm = group_norm(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, height, width = q.shape
        q = q.reshape(b, c, height * width).permute(0, 2, 1)          # [B, N, C]
        k = k.reshape(b, c, height * width)                           # [B, C, N]
        weights = torch.bmm(q, k) * (int(c) ** -0.5)                  # [B, N(query), N(key)]
        weights = F.softmax(weights, dim=2)
        v = v.reshape(b, c, height * width)                           # [B, C, N]
        h = torch.bmm(v, weights.permute(0, 2, 1))                    # [B, C, N(query)]
        h = h.reshape(b, c, height, width)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Zero-pad right and bottom by 1, then a 3x3 stride-2 conv: [B, C, H, W] -> [B, C, H/2, W/2]."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv: [B, C, H, W] -> [B, C, 2H, 2W]."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VQEncoder(nn.Module):
    """VQGAN encoder: ``blocks`` run in sequence, [B, in_channels, S, S] -> [B, emb_dim, s, s]
    with s = S / 2**(len(ch_mult) - 1).

    Block list: conv_in; per level i: ``res_blocks`` ResBlocks to ``nf * ch_mult[i]`` channels (each
    followed by an AttnBlock if the level's resolution is in ``attn_resolutions``) and a
    Downsample except after the last level; then ResBlock, AttnBlock, ResBlock, GroupNorm, and a
    3x3 conv to ``emb_dim``. (No activation between the GroupNorm and the last conv, as in the
    official code.)
    """

    def __init__(self, in_channels: int, nf: int, emb_dim: int, ch_mult: Sequence[int], num_res_blocks: int,
                 resolution: int, attn_resolutions: Sequence[int]):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        channels = nf
        res = resolution
        for i, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(channels, nf * mult))
                channels = nf * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(channels))
            if i != len(ch_mult) - 1:
                blocks.append(Downsample(channels))
                res //= 2
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        blocks += [group_norm(channels), nn.Conv2d(channels, emb_dim, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class VQGenerator(nn.Module):
    """VQGAN generator (decoder): [B, emb_dim, s, s] -> [B, 3, S, S], S = s * 2**(len(ch_mult) - 1).

    Block list: conv to ``nf * ch_mult[-1]``; ResBlock, AttnBlock, ResBlock; per level from the
    lowest resolution up: ``res_blocks`` ResBlocks to ``nf * ch_mult[i]`` (each followed by an
    AttnBlock at ``attn_resolutions``) and an Upsample except after the last level; GroupNorm;
    3x3 conv to 3 channels. The output is unbounded (no tanh); about [-1, 1] for faces.
    """

    def __init__(self, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int, img_size: int,
                 attn_resolutions: Sequence[int]):
        super().__init__()
        channels = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, channels, kernel_size=3, stride=1, padding=1)]
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        for i in reversed(range(len(ch_mult))):
            for _ in range(res_blocks):
                blocks.append(ResBlock(channels, nf * ch_mult[i]))
                channels = nf * ch_mult[i]
                if res in attn_resolutions:
                    blocks.append(AttnBlock(channels))
            if i != 0:
                blocks.append(Upsample(channels))
                res *= 2
        blocks += [group_norm(channels), nn.Conv2d(channels, 3, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class VectorQuantizer(nn.Module):
    """The VQGAN codebook, ``embedding.weight`` [codebook_size, emb_dim] (initialised U(-1/n, 1/n)).

    CodeFormer only looks codes up (:meth:`lookup`); the nearest-code quantisation used to train
    the VQGAN is not needed for restoration.
    """

    def __init__(self, codebook_size: int, emb_dim: int, beta: float = 0.25):
        super().__init__()
        self.codebook_size = codebook_size
        self.emb_dim = emb_dim
        self.beta = beta
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)

    def lookup(self, codes: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Code vectors of ``codes`` (int64, B * height * width entries in (b, h, w) order), as a
        float32 map [B, emb_dim, height, width].

        Equals the official ``get_codebook_feat`` (a float32 one-hot matrix times the codebook):
        multiplying by exact zeros and ones selects the rows exactly.
        """
        vectors = F.embedding(codes.reshape(-1), self.embedding.weight.float())     # [B*h*w, emb_dim]
        return vectors.view(-1, height, width, self.emb_dim).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# CodeFormer parts (codeformer_arch.py)


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std (unbiased variance + eps, then sqrt) of [B, C, H, W];
    both [B, C, 1, 1]."""
    b, c = feat.shape[:2]
    std = (feat.view(b, c, -1).var(dim=2) + eps).sqrt().view(b, c, 1, 1)
    mean = feat.view(b, c, -1).mean(dim=2).view(b, c, 1, 1)
    return mean, std


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """AdaIN: ``content`` [B, C, H, W] normalised per channel, then given the mean and std of ``style``
    [B, C, H', W'] (CodeFormer: the codebook features take the colour and illumination statistics
    of the degraded input's latent)."""
    style_mean, style_std = calc_mean_std(style)
    content_mean, content_std = calc_mean_std(content)
    size = content.shape
    normalized = (content - content_mean.expand(size)) / content_std.expand(size)
    return normalized * style_std.expand(size) + style_mean.expand(size)


class MultiheadSelfAttention(nn.Module):
    """Multi-head attention with the parameters of ``nn.MultiheadAttention(embed_dim, num_heads)``
    (``in_proj_weight`` [3E, E] packing the q, k, v projections, ``in_proj_bias`` [3E], ``out_proj``),
    computed as torch's reference path does when queries and keys differ from the values
    (``need_weights=True``: separate q/k/v projections, ``q / sqrt(head_dim)``, bmm, softmax, bmm).

    Sequence-first layout: ``query_key`` [L, B, E] (queries and keys are the same tensor),
    ``value`` [L, B, E] -> [L, B, E].
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        # nn.MultiheadAttention's init: xavier-uniform packed projection, zero biases.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query_key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        length, batch, dim = query_key.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        heads = batch * self.num_heads
        # [L, B, E] -> [B * heads, L, head_dim]
        q = F.linear(query_key, w_q, b_q).view(length, heads, self.head_dim).transpose(0, 1)
        k = F.linear(query_key, w_k, b_k).view(length, heads, self.head_dim).transpose(0, 1)
        v = F.linear(value, w_v, b_v).view(length, heads, self.head_dim).transpose(0, 1)
        weights = torch.bmm(q * math.sqrt(1.0 / float(self.head_dim)), k.transpose(-2, -1))
        weights = F.softmax(weights, dim=-1)                                          # [B*heads, L, L]
        out = torch.bmm(weights, v).transpose(0, 1).reshape(length * batch, dim)
        return self.out_proj(out).view(length, batch, dim)


class TransformerSALayer(nn.Module):
    """Pre-norm Transformer layer: self-attention with the position embedding added to queries and
    keys (not values), then a GELU MLP; both residual. [L, B, E] -> [L, B, E]."""

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048):
        super().__init__()
        self.self_attn = MultiheadSelfAttention(embed_dim, nhead)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, tokens: torch.Tensor, query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``tokens`` [L, B, E]; ``query_pos`` [L, B, E] or [L, 1, E] (broadcast over B), or None."""
        h = self.norm1(tokens)
        qk = h if query_pos is None else h + query_pos
        tokens = tokens + self.self_attn(qk, h)
        h = self.norm2(tokens)
        return tokens + self.linear2(F.gelu(self.linear1(h)))


class FuseSFTBlock(nn.Module):
    """Controllable feature transformation (official ``Fuse_sft_block``).

    ``encode_enc`` (a ResBlock 2C -> C) reads the encoder and decoder features concatenated; two
    conv-LeakyReLU-conv branches give ``scale`` and ``shift``; the result is
    ``dec + w * (dec * scale + shift)``. Shapes: enc, dec [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1))
        self.shift = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1))

    def forward(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor, w: float = 1.0) -> torch.Tensor:
        h = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        residual = w * (dec_feat * self.scale(h) + self.shift(h))
        return dec_feat + residual


def fuse_block_indices(img_size: int = OFFICIAL_IMG_SIZE, ch_mult: Sequence[int] = OFFICIAL_CH_MULT,
                       res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,)
                       ) -> tuple[dict[str, int], dict[str, int]]:
    """``(fuse_encoder_block, fuse_generator_block)`` for a VQGAN layout, by the official rule.

    Encoder: the last ResBlock of each level (the 2nd for ``res_blocks=2``), i.e. before the
    level's attention block. Generator: the first ResBlock of each level above the latent
    resolution, the last one (before its attention block) at the latent resolution. With the
    default (official) arguments this gives exactly the official dicts; keys are resolutions as
    strings, ordered as in the official dicts (encoder high to low, generator low to high).
    """
    levels = len(ch_mult)
    encoder: dict[str, int] = {}
    index, res = 0, img_size                      # block 0: conv_in
    for i in range(levels):
        for r in range(res_blocks):
            index += 1
            if r == res_blocks - 1:
                encoder[str(res)] = index
            if res in attn_resolutions:
                index += 1
        if i != levels - 1:
            index += 1                            # Downsample
            res //= 2
    generator: dict[str, int] = {}
    lowest = img_size // 2 ** (levels - 1)
    index, res = 3, lowest                        # blocks 0-3: conv, ResBlock, AttnBlock, ResBlock
    for i in reversed(range(levels)):
        for r in range(res_blocks):
            index += 1
            if (res == lowest and r == res_blocks - 1) or (res != lowest and r == 0):
                generator[str(res)] = index
            if res in attn_resolutions:
                index += 1
        if i != 0:
            index += 1                            # Upsample
            res *= 2
    return encoder, generator


class CodeFormer(nn.Module):
    """CodeFormer: VQGAN encoder, Transformer code prediction, codebook lookup, VQGAN generator with
    controllable feature transformation (see the module docstring).

    The first eight arguments are the official ones (``vqgan_path`` is not taken: load weights with
    ``load_state_dict``); the rest are the official hard-coded constants, made configurable.

    Args:
        dim_embd: Transformer width (512).
        n_head: attention heads (8); leaves no trace in the state dict.
        n_layers: Transformer layers (9).
        codebook_size: number of codes (1024).
        latent_size: number of latent tokens, s * s (256 = 16 x 16).
        connect_list: resolutions (strings) with a fuse block (official ['32', '64', '128', '256']).
        fix_modules: submodules whose parameters get ``requires_grad=False`` (training only).
        img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim: the VQGAN's image size, base
            width, width multipliers per level, ResBlocks per level, attention resolutions and
            latent/code dimension (official 512, 64, [1, 2, 2, 4, 4, 8], 2, [16], 256).
        channels: feature channels per resolution (official :data:`OFFICIAL_CHANNELS`); the fuse
            blocks of ``connect_list`` are ``FuseSFTBlock(channels[r], channels[r])``.
        fuse_encoder_block, fuse_generator_block: block indices of the skip features and of the
            fusions (official :data:`OFFICIAL_FUSE_ENCODER_BLOCK` / :data:`OFFICIAL_FUSE_GENERATOR_BLOCK`;
            :func:`fuse_block_indices` derives them for other layouts).
    """

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[Union[str, int]] = ("32", "64", "128", "256"),
                 fix_modules: Optional[Sequence[str]] = ("quantize", "generator"),
                 img_size: int = OFFICIAL_IMG_SIZE, nf: int = OFFICIAL_NF,
                 ch_mult: Sequence[int] = OFFICIAL_CH_MULT, res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), emb_dim: int = 256,
                 channels: Mapping[str, int] = OFFICIAL_CHANNELS,
                 fuse_encoder_block: Mapping[str, int] = OFFICIAL_FUSE_ENCODER_BLOCK,
                 fuse_generator_block: Mapping[str, int] = OFFICIAL_FUSE_GENERATOR_BLOCK):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        latent_side = img_size // 2 ** (len(ch_mult) - 1)
        if latent_side * latent_side != latent_size:
            raise ValueError(f"latent_size {latent_size} != ({img_size} / 2**{len(ch_mult) - 1})**2 latent tokens")
        self.img_size = img_size
        self.nf = nf
        self.ch_mult = ch_mult
        self.emb_dim = emb_dim
        self.latent_side = latent_side

        # The VQGAN (the official CodeFormer subclasses VQAutoEncoder; the keys are the same).
        self.encoder = VQEncoder(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        self.quantize = VectorQuantizer(codebook_size, emb_dim, 0.25)
        self.generator = VQGenerator(nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        for name in fix_modules or ():
            for param in getattr(self, name).parameters():
                param.requires_grad = False

        self.connect_list = [str(r) for r in connect_list]
        self.n_layers = n_layers
        self.dim_embd = dim_embd
        self.dim_mlp = dim_embd * 2
        # A direct parameter of this module, so it comes first in the state dict (as officially).
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*[TransformerSALayer(dim_embd, n_head, self.dim_mlp) for _ in range(n_layers)])
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))

        self.channels = {str(k): int(v) for k, v in channels.items()}
        self.fuse_encoder_block = {str(k): int(v) for k, v in fuse_encoder_block.items()}
        self.fuse_generator_block = {str(k): int(v) for k, v in fuse_generator_block.items()}
        self.fuse_convs_dict = nn.ModuleDict()
        for size in self.connect_list:
            self.fuse_convs_dict[size] = FuseSFTBlock(self.channels[size], self.channels[size])

    def forward(self, x: torch.Tensor, w: float = 0.0, detach_16: bool = True, code_only: bool = False,
                adain: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Restore faces.

        Args:
            x: [B, 3, S, S] RGB faces in [-1, 1] (S = ``img_size``, 512 for the released model).
            w: fidelity weight in [0, 1]; 0 runs no fuse block (official default of ``forward``: 0;
                of the inference script: 0.5).
            detach_16: detach the codebook features from the graph (training stage III; no effect
                on values).
            code_only: return ``(logits, lq_feat)`` only (training stage II).
            adain: give the codebook features the channel statistics of ``lq_feat`` (official
                inference: True).
        Returns:
            ``(out, logits, lq_feat)``: out [B, 3, S, S], unbounded, about [-1, 1] (the official
            post-processing clamps to [-1, 1]); logits [B, s*s, codebook_size]; lq_feat
            [B, emb_dim, s, s], the encoder output.
        """
        # Encoder, keeping the skip features of the fused resolutions.
        taps = {self.fuse_encoder_block[size] for size in self.connect_list}
        enc_feats: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in taps:
                enc_feats[str(int(x.shape[-1]))] = x
        lq_feat = x
        height, width = lq_feat.shape[-2:]

        # Transformer over the s*s latent tokens, sequence first: [HW, B, C].
        pos_emb = self.position_emb.unsqueeze(1)                                  # [HW, 1, D]
        tokens = self.feat_emb(lq_feat.flatten(2).permute(2, 0, 1))               # [HW, B, D]
        for layer in self.ft_layers:
            tokens = layer(tokens, query_pos=pos_emb)
        logits = self.idx_pred_layer(tokens).permute(1, 0, 2)                     # [B, HW, n]
        if code_only:
            return logits, lq_feat  # type: ignore[return-value]

        # Top-1 code per token (taken from the softmax, as officially, for identical tie-breaking).
        _, top_idx = torch.topk(F.softmax(logits, dim=2), 1, dim=2)              # [B, HW, 1]
        quant_feat = self.quantize.lookup(top_idx, height, width)                 # float32 [B, C, s, s]
        if detach_16:
            quant_feat = quant_feat.detach()
        if adain:
            quant_feat = adaptive_instance_normalization(quant_feat, lq_feat.float())
        x = quant_feat.to(lq_feat.dtype)

        # Generator, fusing the encoder features after the chosen blocks.
        fuse_at = {self.fuse_generator_block[size] for size in self.connect_list}
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in fuse_at and w > 0:
                size = str(int(x.shape[-1]))
                x = self.fuse_convs_dict[size](enc_feats[size].detach(), x, w)
        return x, logits, lq_feat


# ----------------------------------------------------------------------------------------------
# Recognising CodeFormer state dicts


def codeformer_layout(shapes: Shapes) -> bool:
    """A CodeFormer state dict: a VQGAN with ``encoder.blocks`` / ``generator.blocks`` and a codebook
    (not RestoreFormer's ``encoder.conv_in`` / ``encoder.down``), plus the Transformer
    (``position_emb``, ``feat_emb``, ``ft_layers``, ``idx_pred_layer``). A bare VQGAN (stage I) has
    no Transformer and is not CodeFormer; GFP-GAN and GPEN have none of these keys."""
    needed = ("position_emb", "feat_emb.weight", "quantize.embedding.weight", "encoder.blocks.0.weight",
              "generator.blocks.0.weight", "idx_pred_layer.1.weight", "ft_layers.0.self_attn.in_proj_weight")
    return all(key in shapes for key in needed)


def _block_kinds(shapes: Shapes, prefix: str) -> list[tuple[str, int]]:
    """``(kind, out_channels)`` of each block ``{prefix}.{i}`` in order; kinds: conv, norm, res, attn, resample."""
    found = indices(shapes, re.escape(prefix) + r"\.(\d+)\..+")
    if found != list(range(len(found))):
        raise ArchitectureError(f"CodeFormer state dict: {prefix} indices are not 0..{len(found) - 1}")
    kinds: list[tuple[str, int]] = []
    for i in found:
        key = f"{prefix}.{i}"
        if f"{key}.norm1.weight" in shapes:
            kinds.append(("res", int(require(shapes, f"{key}.conv1.weight", "CodeFormer")[0])))
        elif f"{key}.q.weight" in shapes:
            kinds.append(("attn", int(shapes[f"{key}.q.weight"][0])))
        elif f"{key}.conv.weight" in shapes:
            kinds.append(("resample", int(shapes[f"{key}.conv.weight"][0])))
        elif f"{key}.weight" in shapes and len(shapes[f"{key}.weight"]) == 4:
            kinds.append(("conv", int(shapes[f"{key}.weight"][0])))
        elif f"{key}.weight" in shapes and len(shapes[f"{key}.weight"]) == 1:
            kinds.append(("norm", int(shapes[f"{key}.weight"][0])))
        else:
            raise ArchitectureError(f"CodeFormer state dict: unknown block {key}")
    return kinds


def codeformer_options(shapes: Shapes) -> dict[str, Any]:
    """Every constructor argument of :class:`CodeFormer`, read off the key names and shapes.

    Read from the shapes: dim_embd and latent_size (``position_emb``), n_layers, codebook_size and
    emb_dim (``quantize.embedding.weight``), nf (first encoder conv), the VQGAN levels, ch_mult,
    res_blocks and attention levels (the encoder's block kinds), img_size (latent side
    sqrt(latent_size) times 2**(levels - 1)), connect_list (the ``fuse_convs_dict`` keys, in
    state-dict order), channels (nf * ch_mult per resolution, checked against the fuse blocks) and
    the two fuse-block dicts (:func:`fuse_block_indices`, the official rule).

    Not in the shapes, so the official released values: ``n_head=8`` (the head count changes no
    shape), ``fix_modules=('quantize', 'generator')`` (requires_grad only). Sequences are returned as
    tuples, resolutions as strings (as the official ``connect_list``).
    """
    what = "CodeFormer"
    latent_size, dim_embd = (int(n) for n in require(shapes, "position_emb", what))
    codebook_size, emb_dim = (int(n) for n in require(shapes, "quantize.embedding.weight", what))
    n_layers = len(indices(shapes, r"ft_layers\.(\d+)\.self_attn\.in_proj_weight"))
    if n_layers == 0:
        raise ArchitectureError("looks like a CodeFormer state dict but has no ft_layers")
    dim_mlp = require(shapes, "ft_layers.0.linear1.weight", what)[0]
    if dim_mlp != 2 * dim_embd:
        raise ArchitectureError(f"CodeFormer: MLP width {dim_mlp} is not 2 x dim_embd ({dim_embd})")

    kinds = _block_kinds(shapes, "encoder.blocks")
    tail = [k for k, _ in kinds[-5:]]
    if len(kinds) < 7 or kinds[0][0] != "conv" or tail != ["res", "attn", "res", "norm", "conv"]:
        raise ArchitectureError(f"CodeFormer: unexpected encoder block sequence {[k for k, _ in kinds]}")
    nf = kinds[0][1]
    levels: list[list[tuple[str, int]]] = [[]]
    for kind, ch in kinds[1:-5]:
        if kind == "resample":
            levels.append([])
        else:
            levels[-1].append((kind, ch))
    ch_mult: list[int] = []
    res_counts: list[int] = []
    has_attn: list[bool] = []
    for level in levels:
        res = [ch for kind, ch in level if kind == "res"]
        attn = [kind for kind, _ in level if kind == "attn"]
        if not res or (attn and len(attn) != len(res)) or res[-1] % nf:
            raise ArchitectureError(f"CodeFormer: unexpected encoder level {level}")
        ch_mult.append(res[-1] // nf)
        res_counts.append(len(res))
        has_attn.append(bool(attn))
    if len(set(res_counts)) != 1:
        raise ArchitectureError(f"CodeFormer: levels with different ResBlock counts {res_counts}")
    res_blocks = res_counts[0]
    side = math.isqrt(latent_size)
    if side * side != latent_size:
        raise ArchitectureError(f"CodeFormer: latent_size {latent_size} is not a square number of tokens")
    img_size = side * 2 ** (len(levels) - 1)
    attn_resolutions = [img_size // 2 ** i for i, attn in enumerate(has_attn) if attn]
    channels = {str(img_size // 2 ** i): nf * ch_mult[i] for i in reversed(range(len(levels)))}

    connect_list: list[str] = []
    for key in shapes:
        m = re.match(r"fuse_convs_dict\.(\d+)\.", key)
        if m and m.group(1) not in connect_list:
            connect_list.append(m.group(1))
    for size in connect_list:
        out = require(shapes, f"fuse_convs_dict.{size}.scale.0.weight", what)[0]
        if size not in channels or channels[size] != out:
            raise ArchitectureError(f"CodeFormer: fuse block {size} has {out} channels, the VQGAN "
                                    f"{channels.get(size)} at that resolution")
    fuse_encoder_block, fuse_generator_block = fuse_block_indices(img_size, ch_mult, res_blocks, attn_resolutions)
    return {
        "dim_embd": dim_embd,
        "n_head": 8,                                   # no trace in the shapes: official value
        "n_layers": n_layers,
        "codebook_size": codebook_size,
        "latent_size": latent_size,
        "connect_list": tuple(connect_list),
        "fix_modules": ("quantize", "generator"),      # no trace in the shapes: official value
        "img_size": img_size,
        "nf": nf,
        "ch_mult": tuple(ch_mult),
        "res_blocks": res_blocks,
        "attn_resolutions": tuple(attn_resolutions),
        "emb_dim": emb_dim,
        "channels": channels,
        "fuse_encoder_block": fuse_encoder_block,
        "fuse_generator_block": fuse_generator_block,
    }


def _restore(network: nn.Module, x: torch.Tensor, fidelity: Optional[float], randomize_noise: bool) -> torch.Tensor:
    """The official inference call ``net(x, w=w, adain=True)[0]``; fidelity None -> 0.5 (official
    default). ``randomize_noise`` has no effect: CodeFormer draws no random numbers."""
    w = DEFAULT_FIDELITY if fidelity is None else float(fidelity)
    return network(x, w=w, adain=True)[0]


ARCHITECTURE = Architecture(
    name="CodeFormer",
    network=CodeFormer,
    purpose="restoration",
    layout=codeformer_layout,
    options=codeformer_options,
    face_size=lambda options: options["img_size"],
    framing="ffhq",
    restore=_restore,
    capabilities=Capabilities(fidelity=True, stochastic=False, fast_cpu=True, bf16=False, onnx=True),
    weights_license="NTU S-Lab License 1.0 (non-commercial)",
    description="CodeFormer (NeurIPS 2022): Transformer code prediction over a VQGAN codebook, "
                "with a fidelity weight w in [0, 1]",
)
