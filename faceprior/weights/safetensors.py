"""safetensors files, read and written with the ``safetensors`` library (huggingface/safetensors).

A safetensors file holds nothing but tensors and strings, so reading one never runs code. The
library validates the whole header (its length, the JSON, every dtype, shape and offset, that
the tensors tile the data exactly) before any tensor is read; every failure becomes one
:class:`CheckpointError` line naming the file.

This module also defines :class:`CheckpointError` (re-exported by
:mod:`faceprior.weights.checkpoint`), the error of every weight-file reader.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _serialize

from faceprior.errors import FacepriorError, one_line
from faceprior.paths import PathLike, write_bytes_atomically

__all__ = ["CheckpointError", "load_safetensors", "read_safetensors_header", "save_safetensors"]

#: The reference implementation refuses headers above 100 MB; so do we, before reading them.
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(FacepriorError, ValueError):
    """A weight file cannot be read (or is refused). The message is one line naming the file and the reason.

    ``str(error)`` is ``"cannot load <path>: <reason>"``, or ``"refusing to load <path>: <reason>"``
    when the file was readable but is unsafe to load (``refused=True``).
    """

    def __init__(self, path: PathLike, reason: str, *, refused: bool = False):
        self.path = str(path)
        self.reason = one_line(reason)
        self.refused = refused
        super().__init__(f"{'refusing to load' if refused else 'cannot load'} {self.path}: {self.reason}")


def _library_reason(error: Exception) -> str:
    reason = one_line(error)
    for prefix in ("Error while deserializing header: ",):
        reason = reason.replace(prefix, "")
    return f"invalid safetensors file ({reason[:300]})"


def _check_length(path: Path) -> None:
    """Errors the library would report less clearly: an empty file, a header running past the end."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(path, "empty file (0 bytes); a download or copy was probably interrupted")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(path, f"not a safetensors file: only {size} bytes, shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"not a safetensors file or corrupted: header length {header_len} is implausible")
    if 8 + header_len > size:
        raise CheckpointError(path, f"truncated safetensors file: the header needs {header_len} bytes but the file "
                                    f"has {size - 8} after the length field")


def read_safetensors_header(path: PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """``({name: {"dtype", "shape", "data_offsets"}}, metadata)`` of a valid safetensors file, tensor
    entries in the file's header order. Raises :class:`CheckpointError` (one line) for an invalid one."""
    path = Path(path)
    try:
        _check_length(path)
        with safe_open(path, "pt"):  # the library validates the header (and refuses bad ones) first
            pass
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len).decode("utf-8"))
    except SafetensorError as error:
        raise CheckpointError(path, _library_reason(error)) from None
    except OSError as error:
        raise CheckpointError(path, f"cannot read file ({error.strerror or error})") from None
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata


def load_safetensors(path: PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU, in the file's header order.

    Raises :class:`CheckpointError` (one line) for a truncated, corrupted or unsupported file.
    """
    path = Path(path)
    entries, _ = read_safetensors_header(path)
    try:
        with safe_open(path, "pt") as f:
            return {name: f.get_tensor(name) for name in entries}
    except SafetensorError as error:
        raise CheckpointError(path, _library_reason(error)) from None
    except (OSError, RuntimeError, TypeError) as error:
        raise CheckpointError(path, f"cannot read tensors ({type(error).__name__}: {one_line(error)[:200]})") from None


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: PathLike,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` in the safetensors format, atomically.

    Tensors are copied to contiguous CPU memory first (views and shared storage are written as
    independent tensors). ``metadata`` maps str to str. Raises ``TypeError`` / ``ValueError`` for
    anything the format cannot hold; nothing is written then.
    """
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")
    prepared: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.is_complex():
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store")
        prepared[name] = tensor.detach().to("cpu").contiguous().clone()
    try:
        data = _serialize(prepared, metadata=metadata or None)
    except SafetensorError as error:
        raise ValueError(f"cannot write {os.fspath(path)} as safetensors: {one_line(error)}") from None
    write_bytes_atomically(path, data)
