"""Low-level ops of the original StyleGAN2: FIR up/down-sampling and the fused leaky ReLU.

The official code runs these as CUDA extensions (basicsr ``upfirdn2d`` / ``fused_act``); here they
are plain PyTorch, so they run on any device and under autograd.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

Pad = Union[int, Tuple[int, int]]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``, with ``bias`` [C] added along dim 1.

    Shapes: x [B, C, ...], bias [C]; output has the shape of x.
    """
    shape = (1, bias.shape[0]) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope=negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Leaky ReLU with a learned per-channel bias (``bias`` [C], zero at init) and gain sqrt(2)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = math.sqrt(2)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def make_fir_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Normalised 2-D FIR kernel from 1-D taps (outer product), summing to 1. [k, k] float32."""
    k = torch.tensor(taps, dtype=torch.float32)
    if k.dim() == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _pair(pad: Pad) -> Tuple[int, int]:
    return (pad, pad) if isinstance(pad, int) else (int(pad[0]), int(pad[1]))


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Pad = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with a FIR kernel, then keep every ``down``-th pixel.

    Same definition as StyleGAN2's ``upfirdn2d``: the kernel is applied as a true convolution
    (flipped), padding may be negative (crop), and the same ``pad = (before, after)`` applies to
    both axes.

    Args:
        x: [B, C, H, W] feature map.
        kernel: [kh, kw] FIR kernel.
        up, down: integer factors.
        pad: (before, after) padding in pixels of the upsampled grid.
    Returns:
        [B, C, (H*up + p0 + p1 - kh) // down + 1, (W*up + p0 + p1 - kw) // down + 1].
    """
    p0, p1 = _pair(pad)
    b, c, h, w = x.shape
    out = x.reshape(b * c, 1, h, w)
    if up > 1:
        out = out.reshape(b * c, 1, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(b * c, 1, h * up, w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        out = out[:, :, max(-p0, 0):out.shape[2] - max(-p1, 0), max(-p0, 0):out.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(out.dtype).view(1, 1, *kernel.shape)
    out = F.conv2d(out, weight, stride=down)
    return out.reshape(b, c, out.shape[2], out.shape[3])
