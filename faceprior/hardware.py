"""What this machine can compute fast: CPU feature flags and native bfloat16, and device names.

Used by every layer that picks a code path by hardware (the fast CPU inference path, the
restorer's ``--precision``, training's bf16 autocast).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from faceprior.errors import OptionError

__all__ = ["cpu_flags", "default_dtype", "mkldnn_available", "native_bf16_available", "parse_device"]



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


def parse_device(device: "str | torch.device") -> torch.device:
    """A torch device that exists on this machine, from ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    or a ``torch.device``; :class:`~faceprior.errors.OptionError` (one line) for a name torch does not
    know or a device this machine does not have."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device {str(device)!r}: no CUDA GPU is available here (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise OptionError(f"device {str(device)!r}: there are {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError(f"device {str(device)!r}: Apple's MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"device {str(device)!r}: faceprior runs on cpu, cuda or mps")
    return parsed
