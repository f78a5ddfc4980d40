"""Reading and writing weight files safely.

Two file formats are read:

* PyTorch checkpoints (``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin``, zip or legacy format), always with
  ``torch.load(..., map_location="cpu", weights_only=True)``. That unpickler only rebuilds tensors,
  plain containers and scalars, so a file that would need arbitrary Python objects (and could run
  code while loading) is refused. Plain unpickling is never used.
* safetensors files, with the ``safetensors`` library (:mod:`faceprior.weights.safetensors`).

The format is recognised from the first bytes of the file (the suffix only matters for error
messages), so a mis-named file still loads. Every failure raises :class:`CheckpointError` with a
one-line message naming the file and the reason.

The official GFP-GAN checkpoints are ``{"params_ema": state_dict}`` (discriminators and some
training files use ``"params"``; PyTorch Lightning checkpoints such as RestoreFormer++'s use
``"state_dict"``); :func:`read_state_dict` unwraps them.

A zip checkpoint is checked before anything is inflated: the sizes its members declare must fit
the file (``torch.save`` stores them uncompressed), so a small file that would expand to
gigabytes (a "zip bomb") is refused at once.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from faceprior.errors import one_line
from faceprior.paths import atomic_write
from faceprior.weights.safetensors import CheckpointError, load_safetensors, read_safetensors_header, save_safetensors

__all__ = [
    "CheckpointError",
    "STATE_DICT_KEYS",
    "read_checkpoint",
    "read_state_dict",
    "read_state_dict_and_key",
    "save_state_dict",
    "select_state_dict",
]

# Wrapper keys of basicsr-style checkpoints, in order of preference (EMA weights first).
STATE_DICT_KEYS = ("params_ema", "params", "state_dict")

# safetensors metadata entry recording the wrapper key of the .pth the tensors came from.
CHECKPOINT_KEY_METADATA = "faceprior.checkpoint_key"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first opcode of every pickle of protocol >= 2 (torch's legacy format)


def _sniff_format(head: bytes, file_size: int) -> str | None:
    """'zip', 'pickle' or 'safetensors' from the first 9+ bytes of a file, or None."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head[:1] == bytes([_PICKLE_PROTO]):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= file_size - 8:
            return "safetensors"
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _explain_torch_load_error(path: Path, error: BaseException, kind: str) -> CheckpointError:
    """Turn an exception of ``torch.load(weights_only=True)`` on a ``kind`` ("zip"/"pickle") file into a one-line CheckpointError."""
    message = str(error)
    if kind == "zip" and isinstance(error, OSError):  # torch's zip reader fails this way on some truncations
        return CheckpointError(path, f"truncated or corrupted zip checkpoint ({error.strerror or message})")
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", message)
        if found:
            return CheckpointError(
                path, f"it contains Python objects other than tensors ({found.group(1)}); loading it could run arbitrary code", refused=True
            )
        found = re.search(r"Unsupported operand (\d+)", message)
        if found:
            return CheckpointError(
                path,
                f"corrupted, or not a plain weights file (pickle opcode {found.group(1)} is not allowed in a weights-only checkpoint)",
                refused=True,
            )
        detail = message.split("WeightsUnpickler error:")[-1] if "WeightsUnpickler error:" in message else message
        return CheckpointError(path, f"corrupted or unsupported pickle ({_first_line(detail)})", refused=True)
    if isinstance(error, EOFError):
        return CheckpointError(path, "truncated file (unexpected end of data)")
    found = re.search(r"zip archive: (.*?)\.", message)
    if found:
        return CheckpointError(path, f"truncated or corrupted zip checkpoint ({found.group(1)})")
    if "unexpected EOF" in message:
        return CheckpointError(path, f"truncated file ({_first_line(message).split('. ')[0].rstrip('.')})")
    if "Invalid magic number" in message:
        return CheckpointError(path, "not a PyTorch checkpoint (a pickle without torch's header)")
    return CheckpointError(path, f"unreadable checkpoint ({type(error).__name__}: {_first_line(message)})")


#: A zip checkpoint may declare at most this many times its file size (plus the slack below) of
#: uncompressed data. ``torch.save`` writes its members uncompressed (ratio 1); weights that some
#: other tool deflated shrink by far less than 4x.
MAX_ZIP_EXPANSION = 4
_ZIP_SLACK_BYTES = 16 * 2**20


def _check_zip_sizes(path: Path, file_size: int) -> None:
    """Refuse a zip checkpoint whose members declare more data than the file can hold."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(path, f"truncated or corrupted zip checkpoint ({one_line(error)})") from None
    if declared > MAX_ZIP_EXPANSION * file_size + _ZIP_SLACK_BYTES:
        raise CheckpointError(
            path, f"its zip members declare {declared} bytes of data in a {file_size}-byte file (a compression bomb, "
                  "not a file torch.save writes)", refused=True)


def read_checkpoint(path: str | os.PathLike) -> object:
    """The object stored in a weight file, read safely (see the module docstring).

    A PyTorch checkpoint gives whatever ``torch.load(weights_only=True)`` returns (usually a dict);
    a safetensors file gives ``{name: tensor}``. Raises :class:`CheckpointError`.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise CheckpointError(path, "is a directory, not a weight file")
        file_size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot read file ({e.strerror or e})") from None
    if file_size == 0:
        raise CheckpointError(path, "empty file (0 bytes); a download or copy was probably interrupted")

    kind = _sniff_format(head, file_size)
    if kind == "safetensors" or (kind is None and path.suffix == ".safetensors"):
        return load_safetensors(path)
    if kind == "zip":
        _check_zip_sizes(path, file_size)
    if kind is None:
        raise CheckpointError(path, f"not a PyTorch or safetensors checkpoint (unrecognised content starting with {head[:8]!r})")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it does not expect; the error (if any) says more.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # A file object, not the path: torch.load would otherwise pick a reader by suffix.
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for bad input; all become one-line errors
        raise _explain_torch_load_error(path, e, kind) from None


def select_state_dict(checkpoint: object, path: str | os.PathLike = "<checkpoint>", key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object.

    Picks ``checkpoint[key]`` if ``key`` is given, else ``checkpoint["params_ema"]``, else
    ``checkpoint["params"]``, else the checkpoint itself (a bare state dict). Keeps the tensor
    entries only and strips a leading ``"module."`` (left by DataParallel) from every key.
    ``path`` is only used in error messages.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(path, f"expected a dict of tensors, found a {type(checkpoint).__name__}")
    if key is not None:
        if key not in checkpoint:
            raise CheckpointError(path, f"no entry {key!r} (top-level keys: {_key_list(checkpoint)})")
        state_dict, where = checkpoint[key], f"under {key!r}"
    else:
        key = _default_key(checkpoint)
        state_dict, where = (checkpoint[key], f"under {key!r}") if key else (checkpoint, "at the top level")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(path, f"the entry {where} is a {type(state_dict).__name__}, not a dict of tensors")

    tensors: dict[str, torch.Tensor] = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(name)
        stripped = name[len("module.") :] if name.startswith("module.") else name
        if stripped in tensors:
            raise CheckpointError(path, f"key {stripped!r} appears both with and without the 'module.' prefix")
        tensors[stripped] = value
    if not tensors:
        raise CheckpointError(path, f"no tensors {where} (keys: {_key_list(state_dict)})")
    return tensors


def _default_key(checkpoint: Mapping) -> str | None:
    """The first of STATE_DICT_KEYS present in ``checkpoint``, or None (a bare state dict)."""
    return next((k for k in STATE_DICT_KEYS if k in checkpoint), None)


def _key_list(mapping: Mapping, limit: int = 8) -> str:
    keys = [str(k) for k in mapping]
    shown = ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
    return shown or "none"


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read the state dict of a weight file (``.pth``/``.pt``/``.ckpt`` or ``.safetensors``).

    PyTorch files are read with ``weights_only=True`` only. The state dict is taken from
    ``key`` if given, else ``"params_ema"``, else ``"params"``, else the whole file (bare state
    dict); a leading ``"module."`` is stripped from every key. A file that is already a flat
    ``{name: tensor}`` dict (every safetensors file) has nothing to unwrap, so ``key`` is ignored
    for it. Tensors keep their stored dtype and are on CPU.

    Raises :class:`CheckpointError` (a ``ValueError``) with a one-line message for a missing,
    empty, truncated, corrupted or unsafe file, or one without tensors.
    """
    return read_state_dict_and_key(path, key)[0]


def read_state_dict_and_key(path: str | os.PathLike, key: str | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """:func:`read_state_dict`, plus the wrapper key the tensors came from.

    The key is ``"params_ema"``/``"params"``/``key`` for a wrapped PyTorch checkpoint, the key
    recorded by :func:`save_state_dict` in a safetensors file's metadata, or None (bare state dict).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    if isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        stored_key = None
        if _is_safetensors_file(path):
            stored_key = read_safetensors_header(path)[1].get(CHECKPOINT_KEY_METADATA)
        return select_state_dict(checkpoint, path), stored_key
    if key is None and isinstance(checkpoint, Mapping):
        key = _default_key(checkpoint)
    return select_state_dict(checkpoint, path, key), key


def _is_safetensors_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return _sniff_format(f.read(16), path.stat().st_size) == "safetensors"


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    key: str | None = "params_ema",
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a state dict atomically, in the format chosen by the suffix of ``path``.

    * ``.safetensors``: the tensors, flat; ``key`` is recorded in the metadata (so converting back
      restores the wrapper), together with ``metadata``.
    * anything else: a PyTorch zip checkpoint ``{key: state_dict}`` (the official GFP-GAN layout),
      or the bare state dict when ``key`` is None. ``metadata`` is not stored.

    Only tensors are written; they are copied to CPU.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().to("cpu") for name, value in state_dict.items() if isinstance(value, torch.Tensor)}
    if path.suffix == ".safetensors":
        meta = {"format": "pt", **dict(metadata or {})}
        if key is not None:
            meta[CHECKPOINT_KEY_METADATA] = key
        save_safetensors(tensors, path, metadata=meta)
        return
    with atomic_write(path) as f:
        torch.save(tensors if key is None else {key: tensors}, f)
