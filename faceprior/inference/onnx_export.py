"""ONNX export of restoration models (``faceprior export``).

The exported graph is the model's restoration of aligned faces, ``descriptor.restore(x)``: input
``"input"`` [N, 3, S, S] float32 in the model's value range ([-1, 1] for every architecture here),
output ``"image"`` [N, 3, S, S] float32, with a dynamic batch dimension N. StyleGAN2 decoders use
the checkpoint's stored noise (deterministic, as ``FaceRestorer`` uses it by default); a fidelity
control (CodeFormer's ``w``) is fixed when the graph is written.

Which architectures export is what each declares (``capabilities.onnx``): GFPGANv1Clean,
GFPGANBilinear, RestoreFormer, RestoreFormer++ and CodeFormer. GFPGANv1 (FIR up/downsampling) and
GPEN (modulated convolutions whose kernels an ONNX graph cannot hold for a dynamic batch) do not.

For GFP-GAN, the reference modules apply each sample's modulated weights with a grouped convolution whose
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
from faceprior.inference.fast_cpu import is_gfpgan_family
from faceprior.inference.fast_gfpgan import FastGFPGAN, UnsupportedModelError, clean_state_dict
from faceprior.inference.ops import Ops
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import describe_network
from faceprior.paths import atomic_write

__all__ = ["ExportError", "OnnxGenerator", "OnnxRestoration", "export_onnx", "onnx_max_abs_diff"]

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


class OnnxRestoration(nn.Module):
    """What the ONNX graph computes for the other architectures: ``descriptor.restore(x, fidelity)``.

    x [N, 3, S, S] in the model's value range -> restored faces [N, 3, S, S]; ``fidelity`` (None =
    the model's default) is a constant of the graph.
    """

    def __init__(self, descriptor: ModelDescriptor, fidelity: Optional[float] = None):
        super().__init__()
        self.descriptor = descriptor
        self.network = descriptor.network  # registered so that tracing sees its parameters
        self.fidelity = fidelity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor.restore(x, self.fidelity, randomize_noise=False, network=self.network)


def graph_module(descriptor: ModelDescriptor, fidelity: Optional[float] = None) -> nn.Module:
    """The module traced into the ONNX graph of ``descriptor`` (ExportError if it has none)."""
    name = descriptor.name or descriptor.arch
    if not descriptor.capabilities.onnx:
        raise ExportError(f"{name}: {descriptor.arch} cannot be exported to ONNX")
    if fidelity is not None and not descriptor.capabilities.fidelity:
        raise ExportError(f"{name}: {descriptor.arch} has no fidelity control")
    if is_gfpgan_family(descriptor):  # constant conv weights through FastGFPGAN
        try:
            return OnnxGenerator(descriptor)
        except UnsupportedModelError as e:
            raise ExportError(f"{name}: cannot export: {e}") from None
    return OnnxRestoration(descriptor, fidelity)


def export_onnx(model: Union[ModelDescriptor, nn.Module], path: str | os.PathLike, opset: int = DEFAULT_OPSET, batch_size: int = 1,
                check: bool = False, fidelity: Optional[float] = None, overwrite: bool = True) -> Path:
    """Write a restoration model as an ONNX file.

    Args:
        model: a restoration model's descriptor (:func:`faceprior.models.loading.resolve_model`) or
            the network itself; its architecture must declare ``capabilities.onnx`` (eval mode is
            used; the weights are read, not changed).
        path: the .onnx file to write (parent folders are made). It appears only when complete.
        opset: ONNX opset version (>= 11 for bilinear ``Resize`` with half-pixel centres).
        batch_size: batch of the example input used for tracing (the batch axis stays dynamic).
        check: run the file with onnxruntime on a random batch of two and raise
            :class:`ExportError` (removing the file) if it differs from the model by more than 1e-4.
        fidelity: models with a fidelity control: the value fixed in the graph (None: the model's
            default).
        overwrite: replace an existing ``path`` (else FileExistsError, nothing written).
    Returns:
        the path written.
    Raises:
        ExportError: the architecture cannot be exported (GFPGANv1, GPEN, not a restoration
            model), opset too old, or the check failed.
    """
    path = Path(path)
    descriptor = model if isinstance(model, ModelDescriptor) else describe_network(model)
    descriptor.require_restoration()
    if opset < 11:
        raise ExportError(f"{path}: opset {opset} is too old; bilinear resizing needs opset >= 11")
    module = graph_module(descriptor, fidelity).eval()
    size = descriptor.face_size
    low, high = descriptor.value_range
    example = torch.rand(batch_size, 3, size, size) * (high - low) + low
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=overwrite) as handle:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter: no onnxscript needed
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants
            warnings.filterwarnings("ignore", message="Constant folding")  # strided slices left unfolded
            torch.onnx.export(module, (example,), handle, opset_version=opset, dynamo=False,
                              input_names=["input"], output_names=["image"],
                              dynamic_axes={"input": {0: "batch"}, "image": {0: "batch"}}, do_constant_folding=True)
    if check:
        x = torch.rand(2, 3, size, size) * (high - low) + low
        try:
            diff = onnx_max_abs_diff(path, descriptor, x, fidelity)
        except BaseException:
            path.unlink()
            raise
        if not diff <= 1e-4:
            path.unlink()
            raise ExportError(f"{path}: onnxruntime output differs from the model by {diff:.3g} (> 1e-4); not kept")
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


def onnx_max_abs_diff(path: str | os.PathLike, model: Union[ModelDescriptor, nn.Module], x: torch.Tensor,
                      fidelity: Optional[float] = None) -> float:
    """max |ORT(path)(x) - the model's restoration with stored noise| for x [N, 3, S, S]."""
    descriptor = model if isinstance(model, ModelDescriptor) else describe_network(model)
    session = onnx_session(path)
    out = session.run(["image"], {"input": x.float().numpy()})[0]
    with torch.no_grad():
        ref = descriptor.restore(x, fidelity, randomize_noise=False)
    return (torch.from_numpy(out) - ref.float()).abs().max().item()
