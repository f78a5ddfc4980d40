"""File-system helpers used by every layer: the ``PathLike`` type and atomic writes.

Every file faceprior writes (images, reports, weight files, checkpoints, manifests) goes through
:func:`atomic_write`: the content goes to a temporary file in the destination folder, is flushed
to disk, and is then moved to its final name in one step. A reader therefore sees either the old
file (or none) or the complete new one, never a half-written file; a killed process leaves at
most a temporary ``.faceprior-<random>.tmp`` file, which never looks like a result.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator, Union

__all__ = ["PathLike", "TEMPORARY_PREFIX", "TEMPORARY_SUFFIX", "atomic_write", "is_temporary_file",
           "move_into_place", "remove_unfinished_temporaries", "temporary_path", "write_bytes_atomically"]

PathLike = Union[str, os.PathLike]

#: Temporary files are named ``.faceprior-<16 hex digits>.tmp``: short (a destination name of
#: 255 bytes still works), hidden, and recognisable by cleaners (:func:`is_temporary_file`).
TEMPORARY_PREFIX = ".faceprior-"
TEMPORARY_SUFFIX = ".tmp"

#: Temporary files this process named and has not yet moved into place or removed. A Ctrl-C can
#: land between creating a file and the ``try`` that would remove it; the CLI removes what is
#: left here when it is interrupted (:func:`remove_unfinished_temporaries`).
_unfinished: set[Path] = set()


def is_temporary_file(path: PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write`."""
    name = Path(path).name
    return name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX)


@contextlib.contextmanager
def atomic_write(path: PathLike, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; on success move it to ``path``.

    Args:
        path: the destination. Its folder must exist.
        overwrite: replace an existing ``path``. If False and ``path`` exists when the write is
            finished, ``FileExistsError`` is raised and nothing is replaced (the check and the move
            are one atomic step where the file system has hard links).
    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
        OSError: the folder is missing or not writable, the disk is full, ...
    On any error (including KeyboardInterrupt) the temporary file is removed.
    """
    path = Path(path)
    temporary = temporary_path(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        move_into_place(temporary, path, overwrite)
    finally:
        remove_temporary(temporary)


def temporary_path(path: PathLike) -> Path:
    """A fresh temporary name next to ``path`` (:func:`is_temporary_file` knows it), for writers
    that cannot use :func:`atomic_write` (e.g. a video muxer that opens the file itself). The name
    is remembered until :func:`move_into_place` or :func:`remove_temporary` is done with it."""
    temporary = Path(path).with_name(f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")
    _unfinished.add(temporary)
    return temporary


def remove_temporary(temporary: PathLike) -> None:
    """Delete a temporary file of :func:`temporary_path` if it is still there, and forget it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    _unfinished.discard(Path(temporary))


def remove_unfinished_temporaries() -> list[Path]:
    """Delete every temporary file this process named and did not finish (after an interrupt);
    returns those that were removed."""
    removed = []
    for temporary in list(_unfinished):
        if os.path.lexists(temporary):
            removed.append(temporary)
        remove_temporary(temporary)
    return removed


def move_into_place(temporary: PathLike, path: PathLike, overwrite: bool) -> None:
    """Move a complete temporary file onto ``path`` (FileExistsError instead of replacing an
    existing ``path`` unless ``overwrite``); the temporary name is gone afterwards either way.
    The caller has flushed it to disk."""
    try:
        if overwrite:
            os.replace(temporary, path)
        else:
            _move_without_replacing(Path(temporary), Path(path))
    finally:
        remove_temporary(temporary)


def _move_without_replacing(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)  # atomic, and fails when path exists
    except FileExistsError:
        raise FileExistsError(f"{path}: file exists") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(f"{path}: file exists") from None
        os.replace(temporary, path)


def write_bytes_atomically(path: PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_write`; returns the path."""
    with atomic_write(path, overwrite=overwrite) as handle:
        handle.write(data)
    return Path(path)
