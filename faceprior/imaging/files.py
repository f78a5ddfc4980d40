"""Finding image files in folders."""

from __future__ import annotations

from pathlib import Path

from faceprior.imaging.io import IMAGE_SUFFIXES
from faceprior.paths import PathLike

__all__ = ["IMAGE_SUFFIXES", "is_hidden", "is_image_file", "list_image_files"]


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` has an image suffix (:data:`IMAGE_SUFFIXES`, any case); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_hidden(relative: Path) -> bool:
    """Whether a relative path has a hidden (dot-named) file or folder in it."""
    return any(part.startswith(".") for part in relative.parts)


def list_image_files(folder: PathLike, recursive: bool = True) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, any case) in ``folder`` (and its sub-folders when
    ``recursive``), sorted by their relative POSIX path. Hidden files and folders (names starting
    with a dot) are skipped, and so is anything that is not a regular file."""
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = [path for path in candidates
             if is_image_file(path) and not is_hidden(path.relative_to(folder)) and path.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
