"""ONNX export of the GFP-GAN generators (``faceprior export``).

The exported graph is the inference function ``image = model(x, return_rgb=False,
randomize_noise=False)[0]``: input ``"input"`` [N, 3, S, S] float32 in [-1, 1], output ``"image"``
[N, 3, S, S] float32, with a dynamic batch dimension N. The decoder noise is the checkpoint's
stored noise (deterministic, as ``FaceRestorer`` uses it by default).

The reference modules apply each sample's modulated weights with a grouped convolution whose
group count is the batch size, which an ONNX graph cannot express for a dynamic batch. The
export therefore traces :class:`~faceprior.inference.fast_gfpgan.FastGFPGAN` in its plain-op mode
with the style applied to the conv inputs and the demodulation to its outputs
(``conv(x * s, W) * d``, the same function), so every conv has constant weights. onnx and
onnxruntime are optional: ``pip install onnx onnxruntime`` (the export itself needs only torch;
``check=True`` needs onnxruntime).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.inference.fast_gfpgan import FastGFPGAN, UnsupportedModelError, clean_state_dict
from faceprior.inference.ops import Ops
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import describe_network

__all__ = ["ExportError", "OnnxGenerator", "export_onnx", "onnx_max_abs_diff"]

DEFAULT_OPSET = 17


class ExportError(FacepriorError, RuntimeError):
    """The model cannot be exported (one line naming the file or model and the reason)."""


class OnnxGenerator(nn.Module):
    """What the ONNX graph computes: x [N, 3, S, S] in [-1, 1] -> image [N, 3, S, S] (stored noise).

    Built from a GFPGANv1Clean or GFPGANBilinear; plain PyTorch ops only, all conv weights constant.
    """

    def __init__(self, model: Union[ModelDescriptor, nn.Module]):
        super().__init__()
        sd, kwargs = clean_state_dict(model)
        self.net = FastGFPGAN(sd, dtype=torch.float32, fused=False,
                              input_modulation_max_res=2 ** kwargs["log_size"], **kwargs).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._forward(Ops(False, None), x, return_rgb=False, randomize_noise=False)[0]


def export_onnx(model: Union[ModelDescriptor, nn.Module], path: str | os.PathLike, opset: int = DEFAULT_OPSET, batch_size: int = 1,
                check: bool = False) -> Path:
    """Write ``model`` (a loaded GFPGANv1Clean or GFPGANBilinear) as an ONNX file.

    Args:
        model: the descriptor of a GFPGANv1Clean or GFPGANBilinear generator, or the network itself
            (eval mode is used; its weights are read, not changed).
        path: the .onnx file to write (parent folders are made).
        opset: ONNX opset version (>= 11 for bilinear ``Resize`` with half-pixel centres).
        batch_size: batch of the example input used for tracing (the batch axis stays dynamic).
        check: run the file with onnxruntime on a random batch and raise :class:`ExportError` if
            it differs from the reference model by more than 1e-4.
    Returns:
        the path written.
    Raises:
        ExportError: unsupported model (e.g. GFPGANv1, whose FIR layers have no export path here),
            opset too old, or the check failed.
    """
    path = Path(path)
    if opset < 11:
        raise ExportError(f"{path}: opset {opset} is too old; bilinear resizing needs opset >= 11")
    try:
        generator = OnnxGenerator(model)
    except UnsupportedModelError as e:
        raise ExportError(f"{path}: cannot export: {e}") from None
    size = generator.net.out_size
    example = torch.rand(batch_size, 3, size, size) * 2 - 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter: no onnxscript needed
        torch.onnx.export(generator, (example,), str(path), opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=["image"],
                          dynamic_axes={"input": {0: "batch"}, "image": {0: "batch"}}, do_constant_folding=True)
    if check:
        diff = onnx_max_abs_diff(path, model, torch.rand(2, 3, size, size) * 2 - 1)
        if not diff <= 1e-4:
            raise ExportError(f"{path}: onnxruntime output differs from the model by {diff:.3g} (> 1e-4)")
    return path


def onnx_session(path: str | os.PathLike, num_threads: Optional[int] = None):
    """An onnxruntime CPU InferenceSession for ``path`` (ImportError with a hint if onnxruntime is missing)."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("onnxruntime is not installed: pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_max_abs_diff(path: str | os.PathLike, model: Union[ModelDescriptor, nn.Module], x: torch.Tensor) -> float:
    """max |ORT(path)(x) - the model's restoration with stored noise| for x [N, 3, S, S]."""
    descriptor = model if isinstance(model, ModelDescriptor) else describe_network(model)
    session = onnx_session(path)
    out = session.run(["image"], {"input": x.float().numpy()})[0]
    with torch.no_grad():
        ref = descriptor.restore(x, randomize_noise=False)
    return (torch.from_numpy(out) - ref.float()).abs().max().item()
