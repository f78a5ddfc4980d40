"""Finding image and video files in folders."""

from __future__ import annotations

from pathlib import Path

from faceprior.imaging.io import IMAGE_SUFFIXES
from faceprior.paths import PathLike

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_hidden", "is_image_file", "is_media_file", "is_video_file",
           "list_image_files", "list_media_files"]

#: file suffixes treated as videos (lower case); reading them needs PyAV (faceprior[video])
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` has an image suffix (:data:`IMAGE_SUFFIXES`, any case); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: PathLike) -> bool:
    """Whether ``path`` has a video suffix (:data:`VIDEO_SUFFIXES`, any case); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_media_file(path: PathLike) -> bool:
    """An image or a video file, by its suffix."""
    return is_image_file(path) or is_video_file(path)


def is_hidden(relative: Path) -> bool:
    """Whether a relative path has a hidden (dot-named) file or folder in it."""
    return any(part.startswith(".") for part in relative.parts)


def list_image_files(folder: PathLike, recursive: bool = True) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, any case) in ``folder`` (and its sub-folders when
    ``recursive``), sorted by their relative POSIX path. Hidden files and folders (names starting
    with a dot) are skipped, and so is anything that is not a regular file."""
    return _list(folder, recursive, is_image_file)


def list_media_files(folder: PathLike, recursive: bool = True) -> list[Path]:
    """:func:`list_image_files` for images and videos."""
    return _list(folder, recursive, is_media_file)


def _list(folder: PathLike, recursive: bool, accept) -> list[Path]:
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = [path for path in candidates
             if accept(path) and not is_hidden(path.relative_to(folder)) and path.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
