"""What this machine can compute fast: CPU feature flags and native bfloat16, and device names.

Used by every layer that picks a code path by hardware (the fast CPU inference path, the
restorer's ``--precision``, training's bf16 autocast).
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = ["cpu_flags", "default_dtype", "mkldnn_available", "native_bf16_available"]



@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (e.g. 'avx512f', 'avx512_bf16', 'amx_bf16'); empty if unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def mkldnn_available() -> bool:
    """True when this PyTorch build has oneDNN with the fused pointwise convolutions the fast path uses."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def native_bf16_available() -> bool:
    """True when oneDNN can run bfloat16 convolutions natively here (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags()
    if not mkldnn_available() or not ({"amx_bf16", "avx512_bf16"} & flags):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def default_dtype() -> torch.dtype:
    """bfloat16 where the CPU computes it natively (see :func:`native_bf16_available`), else float32."""
    return torch.bfloat16 if native_bf16_available() else torch.float32
