"""Fast inference: an optimised CPU forward for the GFP-GAN generators, and ONNX export of the
restoration models that declare ``capabilities.onnx`` (GFP-GAN, RestoreFormer(++), CodeFormer).

    from faceprior.inference import optimize
    fast = optimize(descriptor)                   # faceprior.resolve_model(...) of a GFPGANv1Clean or GFPGANBilinear
    fast = optimize(descriptor, dtype=torch.bfloat16)  # or "auto": bfloat16 where the CPU has AMX / AVX512-BF16
    image, _ = fast(x, return_rgb=False, randomize_noise=False)

    from faceprior.inference import export_onnx
    export_onnx(descriptor, "gfpgan.onnx")        # input "input" [N, 3, S, S] -> output "image"
    export_onnx(codeformer, "cf.onnx", fidelity=0.7)  # a fidelity control is a constant of the graph

See docs/speed.md for what is done and the measured speed-ups.
"""

from __future__ import annotations

from faceprior.inference.fast_cpu import ChannelsLastNetwork, optimize
from faceprior.inference.fast_gfpgan import CompiledGFPGAN, FastGFPGAN, UnsupportedModelError
from faceprior.inference.onnx_export import ExportError, export_onnx

__all__ = ["ChannelsLastNetwork", "CompiledGFPGAN", "ExportError", "FastGFPGAN", "UnsupportedModelError", "export_onnx", "optimize"]
