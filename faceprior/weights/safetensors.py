"""A small, dependency-free reader and writer for the safetensors format.

File layout (https://github.com/huggingface/safetensors):

    [8 bytes]  N, the header length, unsigned 64-bit little-endian
    [N bytes]  a UTF-8 JSON object:
                 {"<tensor name>": {"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]},
                  ...,
                  "__metadata__": {"<str>": "<str>", ...}}        (optional)
    [rest]     the data buffer; tensor bytes lie at buffer[begin:end], row-major, little-endian

A safetensors file holds nothing but tensors and strings, so reading one never runs code.
The reader checks everything it relies on: the header length, the JSON, every dtype, shape and
offset, that the tensors tile the data buffer exactly (no gaps, no overlap), and that the file is
neither truncated nor longer than its header says.

This module is the lowest layer of :mod:`faceprior.weights`, so it also defines
:class:`CheckpointError` (re-exported by :mod:`faceprior.weights.checkpoint`) and
:func:`atomic_write`, which both file formats use.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

import torch

__all__ = [
    "CheckpointError",
    "SAFETENSORS_DTYPES",
    "atomic_write",
    "load_safetensors",
    "read_safetensors_header",
    "save_safetensors",
]

# safetensors dtype code <-> torch dtype. Only these are read and written.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_CODES: dict[torch.dtype, str] = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}

# The reference implementation refuses headers above 100 MB; so do we (a corrupted length field
# would otherwise make us allocate gigabytes).
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(ValueError):
    """A weight file cannot be read (or is refused). The message is one line naming the file and the reason.

    ``str(error)`` is ``"cannot load <path>: <reason>"``, or ``"refusing to load <path>: <reason>"``
    when the file was readable but is unsafe to load (``refused=True``).
    """

    def __init__(self, path: str | os.PathLike, reason: str, *, refused: bool = False):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always a single line
        self.refused = refused
        super().__init__(f"{'refusing to load' if refused else 'cannot load'} {self.path}: {self.reason}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; on success rename it to ``path``.

    The rename (``os.replace``) is atomic, so ``path`` is either absent/unchanged or complete:
    an interrupted write never leaves a half-written file under the final name. On error the
    temporary file is removed and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _check_little_endian() -> None:
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI machine
        raise NotImplementedError("faceprior's safetensors reader/writer needs a little-endian machine")


def _parse_header(path: Path, f: BinaryIO, file_size: int) -> tuple[int, dict, dict[str, str]]:
    """Read and validate the header. Returns (data start offset, tensor entries, metadata)."""
    if file_size < 8:
        raise CheckpointError(path, f"not a safetensors file: only {file_size} bytes, shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", f.read(8))
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"not a safetensors file or corrupted: header length {header_len} is implausible")
    if 8 + header_len > file_size:
        raise CheckpointError(
            path, f"truncated safetensors file: header needs {header_len} bytes but the file has {file_size - 8} after the length field"
        )
    raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"not a safetensors file or corrupted: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "corrupted safetensors file: header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(path, "corrupted safetensors file: __metadata__ must map strings to strings")

    data_size = file_size - 8 - header_len
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise CheckpointError(path, f"corrupted safetensors file: entry {name!r} lacks dtype/shape/data_offsets")
        dtype_code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_code not in SAFETENSORS_DTYPES:
            raise CheckpointError(
                path, f"unsupported safetensors dtype {dtype_code!r} for tensor {name!r} (supported: {', '.join(SAFETENSORS_DTYPES)})"
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CheckpointError(path, f"corrupted safetensors file: tensor {name!r} has invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(path, f"corrupted safetensors file: tensor {name!r} has invalid data_offsets {offsets!r}")
        numel = 1
        for d in shape:
            numel *= d
        itemsize = torch.empty((), dtype=SAFETENSORS_DTYPES[dtype_code]).element_size()
        if offsets[1] - offsets[0] != numel * itemsize:
            raise CheckpointError(
                path,
                f"corrupted safetensors file: tensor {name!r} ({dtype_code} {shape}) needs {numel * itemsize} bytes "
                f"but its data_offsets span {offsets[1] - offsets[0]}",
            )
        spans.append((offsets[0], offsets[1], name))

    # The tensors must tile the data buffer exactly: no gap, no overlap, nothing missing or extra.
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else f"leaves a gap of {begin - position} bytes"
            raise CheckpointError(path, f"corrupted safetensors file: tensor {name!r} {what}")
        position = end
    if position > data_size:
        raise CheckpointError(
            path, f"truncated safetensors file: the header describes {position} data bytes but only {data_size} are present"
        )
    if position < data_size:
        raise CheckpointError(
            path, f"corrupted safetensors file: {data_size - position} bytes after the last tensor that the header does not describe"
        )
    return 8 + header_len, header, metadata


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """The validated header of a safetensors file, without reading tensor data.

    Returns ``(entries, metadata)``: ``entries[name] = {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}``
    and the ``__metadata__`` string map (empty if absent). Raises :class:`CheckpointError`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            _, entries, metadata = _parse_header(path, f, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise CheckpointError(path, f"cannot read file ({e.strerror or e})") from None
    return entries, metadata


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file into CPU memory.

    Returns ``{name: tensor}`` in the order of the header entries. Each tensor is
    a fresh, contiguous, properly aligned CPU tensor with the stored dtype and shape.
    Raises :class:`CheckpointError` (one line) for a truncated, corrupted or unsupported file.
    """
    _check_little_endian()
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with open(path, "rb") as f:
            data_start, entries, _ = _parse_header(path, f, os.fstat(f.fileno()).st_size)
            for name, info in entries.items():  # header order, which save_safetensors makes the input order
                tensor = torch.empty(info["shape"], dtype=SAFETENSORS_DTYPES[info["dtype"]])
                nbytes = info["data_offsets"][1] - info["data_offsets"][0]
                if nbytes:
                    f.seek(data_start + info["data_offsets"][0])
                    buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
                    if f.readinto(buffer) != nbytes:
                        raise CheckpointError(path, f"truncated safetensors file: data of tensor {name!r} ends early")
                tensors[name] = tensor
    except OSError as e:
        raise CheckpointError(path, f"cannot read file ({e.strerror or e})") from None
    return tensors


def save_safetensors(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` to ``path`` in the safetensors format, atomically.

    Tensors are copied to contiguous CPU memory first (views and shared storage are written as
    independent tensors). They are laid out by decreasing element size, then name, so that every
    tensor starts at an offset aligned to its element size; the header keeps the order of
    ``tensors``, so :func:`load_safetensors` returns the same order. ``metadata`` maps str to str.
    Raises ``TypeError`` / ``ValueError`` for anything the format cannot hold.
    """
    _check_little_endian()
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot be a tensor name")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.dtype not in _DTYPE_CODES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store here")

    # Data layout: by decreasing element size (so every tensor is aligned), then name. The header
    # lists the tensors in the caller's order, which the reader returns them in.
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    offsets: dict[str, list[int]] = {}
    offset = 0
    for name in order:
        nbytes = tensors[name].numel() * tensors[name].element_size()
        offsets[name] = [offset, offset + nbytes]
        offset += nbytes
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    for name, tensor in tensors.items():
        header[name] = {"dtype": _DTYPE_CODES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": offsets[name]}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # the data buffer starts 8-byte aligned

    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for name in order:
            tensor = tensors[name].detach().to("cpu").contiguous()
            if tensor.numel():
                f.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
