"""One entry point for the faster CPU forwards: :func:`optimize`.

* The GFP-GAN family (GFPGANv1Clean, GFPGANBilinear): :class:`~faceprior.inference.fast_gfpgan.FastGFPGAN`,
  a rewritten forward in float32 or bfloat16 (docs/speed.md).
* RestoreFormer, RestoreFormer++ and CodeFormer (``capabilities.fast_cpu`` without a rewrite):
  :class:`ChannelsLastNetwork`, the reference modules with their conv weights and input in
  channels-last memory format, the layout oneDNN convolves fastest (0.81-0.87x the reference time
  at 512 px here, bench/bench_models.py). The same function up to float summation order. These
  models have no bfloat16 path: their nearest-code choices flip under bf16 (21-38 dB against
  float32 in bench/bench_models.py).
* Anything else: :class:`UnsupportedModelError`; keep using the reference network.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Union

import torch
from torch import nn

from faceprior.hardware import default_dtype
from faceprior.inference.fast_gfpgan import UnsupportedModelError, optimize_gfpgan
from faceprior.models.architecture import ArchitectureError
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import describe_network

__all__ = ["ChannelsLastNetwork", "is_gfpgan_family", "optimize"]


class ChannelsLastNetwork(nn.Module):
    """A copy of ``network`` whose 4-d weights are channels-last; the input is made channels-last too.

    Called exactly like ``network`` (the first argument is the image batch [B, C, H, W]); returns
    what it returns. The copy's outputs equal the reference up to float summation order.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = copy.deepcopy(network).eval()
        with torch.no_grad():
            for param in self.network.parameters():
                if param.dim() == 4:
                    param.data = param.data.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.network(x.contiguous(memory_format=torch.channels_last), *args, **kwargs)


def is_gfpgan_family(descriptor: ModelDescriptor) -> bool:
    """GFPGANv1Clean, or an architecture with an exact GFPGANv1Clean form (GFPGANBilinear)."""
    equivalent = descriptor.architecture.equivalent
    return descriptor.arch == "GFPGANv1Clean" or (equivalent is not None and equivalent[0] == "GFPGANv1Clean")


def optimize(model: Union[ModelDescriptor, nn.Module], dtype: Optional[torch.dtype | str] = torch.float32,
             compile: bool = False) -> nn.Module:
    """A faster CPU module computing what ``model`` computes, called like its network.

    Args:
        model: a loaded model's descriptor, or the network itself (it is not changed).
        dtype: torch.float32, torch.bfloat16, or "auto" / None (bfloat16 where the CPU computes it
            natively and the architecture keeps its quality in it, else float32). See
            :func:`~faceprior.inference.fast_gfpgan.optimize_gfpgan` for the GFP-GAN family.
        compile: GFP-GAN family only: ``torch.compile`` the forward.
    Raises:
        UnsupportedModelError: no fast path for the architecture, or bfloat16 asked of one that
            has none.
    """
    if isinstance(model, nn.Module) and not isinstance(model, ModelDescriptor):
        try:
            descriptor = describe_network(model)
        except ArchitectureError as error:
            raise UnsupportedModelError(f"optimize: {error}") from None
    else:
        descriptor = model
    if is_gfpgan_family(descriptor):
        return optimize_gfpgan(descriptor, dtype, compile)
    if not descriptor.capabilities.fast_cpu:
        raise UnsupportedModelError(f"optimize: {descriptor.arch} has no fast CPU path; keep using the reference model")
    if dtype is None or dtype == "auto":
        dtype = default_dtype() if descriptor.capabilities.bf16 else torch.float32
    if dtype != torch.float32:
        raise UnsupportedModelError(f"optimize: {descriptor.arch} has a float32 fast path only "
                                    "(its nearest-code choices flip in bfloat16)")
    if compile:
        raise UnsupportedModelError(f"optimize: compile=True is for the GFP-GAN family, not {descriptor.arch}")
    return ChannelsLastNetwork(descriptor.network)
