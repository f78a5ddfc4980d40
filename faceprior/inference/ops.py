"""The primitive operations of the fast CPU path: oneDNN fused convolutions into reused buffers.

:class:`Ops` is what the fast networks (:mod:`faceprior.inference.fast_gfpgan`) call for every conv,
resampling and buffer; :class:`Workspace` is the pool of large channels-last buffers it reuses
from call to call; :func:`upsample_into` runs PyTorch's bilinear x2 kernel on row bands in
parallel threads. Measurements behind each choice: docs/speed.md.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["NEGATIVE_SLOPE", "POOL_MIN_BYTES", "Ops", "Workspace", "upsample_into"]

NEGATIVE_SLOPE = 0.2



class Workspace:
    """Large channels-last buffers reused from call to call (best fit by size, any shape and dtype).

    A fresh large tensor costs page faults on first touch (the allocator returns big blocks to the
    OS when they are freed), which costs more than the elementwise op that fills it. ``take``
    returns a view of the smallest free block that fits (at most twice the size asked for) or of a
    new block; ``give`` frees the block of a tensor from ``take`` (and ignores other tensors). After
    the first call the blocks cover the largest set of buffers alive at once.
    """

    def __init__(self):
        self.free: List[torch.Tensor] = []  # flat uint8 blocks, smallest first
        self.used: Dict[int, torch.Tensor] = {}  # data_ptr of a taken view -> its block

    def take(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised channels-last tensor of ``shape`` [B, C, H, W]."""
        b, c, h, w = shape
        nbytes = b * c * h * w * torch.finfo(dtype).bits // 8
        index = next((i for i, block in enumerate(self.free) if nbytes <= block.numel() <= 2 * nbytes), None)
        block = self.free.pop(index) if index is not None else torch.empty(nbytes, dtype=torch.uint8)
        view = block[:nbytes].view(dtype).view(b, h, w, c).permute(0, 3, 1, 2)
        self.used[view.data_ptr()] = block
        return view

    def give(self, *tensors: torch.Tensor) -> None:
        """Free the blocks of tensors from :meth:`take`; the caller must hold no other reference to them."""
        for t in tensors:
            block = self.used.pop(t.data_ptr(), None)
            if block is not None:
                self.free.append(block)
                self.free.sort(key=torch.Tensor.numel)

    def nbytes(self) -> int:
        """Bytes held in blocks (free and in use)."""
        return sum(block.numel() for block in self.free + list(self.used.values()))


_upsample_threads: Optional[ThreadPoolExecutor] = None


def _upsample_band(x: torch.Tensor, out: torch.Tensor, rows: int, w: int) -> None:
    # Worker threads do not inherit the caller's inference / no-grad mode (thread-local): enter the
    # one that lets them write into ``out``.
    with torch.inference_mode(out.is_inference()):
        torch._C._nn.upsample_bilinear2d(x, [2 * rows, 2 * w], False, 2.0, 2.0, out=out)


def upsample_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 of x [B, C, h, w] (channels-last) into ``out`` [B, C, 2h, 2w], row bands in parallel.

    PyTorch's channels-last bilinear kernel runs on one thread at batch 1, so with n intra-op
    threads the output rows are cut into n bands, each computed by ``upsample_bilinear2d`` on its
    input rows (plus one row below) from its own Python thread (the op releases the GIL). With the
    explicit scale 2 every output row of a band is exact except the first of each band after the
    first, which needs the input row above the band; those rows are recomputed at the end.
    """
    global _upsample_threads
    b, c, h, w = x.shape
    parts = min(torch.get_num_threads(), h // 2)
    if b != 1 or parts < 2 or h % parts:
        return torch._C._nn.upsample_bilinear2d(x, [2 * h, 2 * w], False, 2.0, 2.0, out=out)
    if _upsample_threads is None:
        _upsample_threads = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="faceprior-upsample")
    rows = h // parts
    jobs = [_upsample_threads.submit(_upsample_band, x[:, :, k * rows:min((k + 1) * rows + 1, h)],
                                     out[:, :, 2 * k * rows:2 * (k + 1) * rows], rows, w)
            for k in range(parts)]
    for job in jobs:
        job.result()
    for k in range(1, parts):  # output row 2 k rows = 0.25 * x[k rows - 1] + 0.75 * x[k rows] (bilinear along w)
        seam = torch._C._nn.upsample_bilinear2d(x[:, :, k * rows - 1:k * rows + 1], [4, 2 * w], False, 2.0, 2.0)
        out[:, :, 2 * k * rows] = seam[:, :, 2]
    return out


# Feature maps smaller than POOL_MIN_BYTES come from the allocator, larger ones from the Workspace,
# conv outputs included: for those, the zero fill + separate leaky ReLU that a pooled output needs
# cost less than the page faults of a fresh tensor (the allocator hands large blocks back to the OS
# and glibc's heap reuse is not dependable between calls): pooling conv outputs from 1 MiB instead
# of 32 MiB made the full-size forward faster (docs/speed.md).
POOL_MIN_BYTES = 1 << 20


class Ops:
    """The primitive operations of :class:`FastGFPGAN`, on channels-last feature maps [B, C, H, W].

    ``fused=True`` (eager, oneDNN present): convolutions are ``torch.ops.mkldnn`` calls with the
    bias and the leaky ReLU or a residual sum fused. Outputs of POOL_MIN_BYTES or more are
    :class:`Workspace` buffers, zero-filled, that the conv adds into in place (then a separate
    in-place leaky ReLU): cheaper than the page faults of a fresh tensor of that size on every call,
    in float32 and bfloat16 alike, and it keeps the time per call steady.
    ``fused=False``: plain ``F.conv2d`` / ``F.interpolate`` ... (for ``torch.compile``, ONNX export
    and PyTorch builds without oneDNN); ``give`` is then a no-op.
    """

    def __init__(self, fused: bool, workspace: Optional[Workspace] = None):
        self.fused = fused
        self.ws = workspace if fused else None

    def _buffer(self, shape: Sequence[int], dtype: torch.dtype) -> Optional[torch.Tensor]:
        if self.ws is None or math.prod(shape) * torch.finfo(dtype).bits // 8 < POOL_MIN_BYTES:
            return None
        return self.ws.take(shape, dtype)

    def buffer(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised channels-last tensor: reused if large, else freshly allocated."""
        out = self._buffer(shape, dtype)
        return torch.empty(tuple(shape), dtype=dtype, memory_format=torch.channels_last) if out is None else out

    def give(self, *tensors: torch.Tensor) -> None:
        """Hand buffers back for reuse; the caller must hold no other reference to them (views included)."""
        if self.ws is not None:
            self.ws.give(*tensors)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding: int,
             groups: int = 1, leaky_relu: bool = False) -> torch.Tensor:
        """``[leaky_relu_0.2](conv2d(x, weight, bias))``, stride 1, padding ``k // 2``. -> [B, C_out, H, W]."""
        if not self.fused:
            out = F.conv2d(x, weight, bias, padding=padding, groups=groups)
            return F.leaky_relu(out, NEGATIVE_SLOPE) if leaky_relu else out
        b, _, h, w = x.shape
        out = self._buffer((b, weight.shape[0], h, w), x.dtype)
        if out is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, [padding, padding], [1, 1], [1, 1], groups,
                "leaky_relu" if leaky_relu else "none", [NEGATIVE_SLOPE] if leaky_relu else [], "")
        out.zero_()
        self.conv_add_(out, x, weight, bias, padding, groups)
        return F.leaky_relu_(out, NEGATIVE_SLOPE) if leaky_relu else out

    def conv_add_(self, out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  padding: int, groups: int = 1) -> torch.Tensor:
        """``out += conv2d(x, weight, bias)`` in place (``out`` channels-last, same shape as the conv output)."""
        if not self.fused:
            return out.add_(F.conv2d(x, weight, bias, padding=padding, groups=groups))
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            out, x, weight, bias, [padding, padding], [1, 1], [1, 1], groups, "add", None, None, [], None)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Bilinear x2, ``align_corners=False`` (the reference's). [B, C, H, W] -> [B, C, 2H, 2W]."""
        b, c, h, w = x.shape
        out = self._buffer((b, c, 2 * h, 2 * w), x.dtype)
        if out is None:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return upsample_into(x, out)

    def packed(self, cache: Dict[Tuple[int, ...], torch.Tensor], weight: torch.Tensor, x: torch.Tensor,
               padding: int, groups: int = 1) -> torch.Tensor:
        """``weight`` [C_out, C_in / groups, k, k] reordered once into oneDNN's blocked layout for inputs
        shaped like x (kept in ``cache``, keyed by x's [C, H, W]); ``weight`` itself when not fused."""
        if not self.fused:
            return weight
        key = tuple(x.shape[1:])
        packed = cache.get(key)
        if packed is None:
            packed = cache[key] = torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight.to_mkldnn(), [padding, padding], [1, 1], [1, 1], groups, list(x.shape))
        return packed

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        """Bilinear x0.5 with ``align_corners=False``, which is exactly the 2x2 mean. -> [B, C, H/2, W/2]."""
        return F.avg_pool2d(x, 2)
