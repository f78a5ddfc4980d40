"""What is evaluated: the LQ faces of a folder, each paired with its ground truth (same relative name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from faceprior.errors import FacepriorError
from faceprior.imaging.files import list_image_files
from faceprior.imaging.io import read_image
from faceprior.imaging.pixels import to_float01
from faceprior.paths import PathLike
from faceprior.weights.store import sha256_of_file

__all__ = ["EvaluationError", "ImagePair", "find_pairs", "image_size", "load_rgb", "subsample"]


class EvaluationError(FacepriorError, ValueError):
    """Bad evaluation input (folders, names, models, metrics); the message is one line."""


@dataclass(frozen=True)
class ImagePair:
    """One evaluated face.

    name: relative path of the LQ file without its suffix (POSIX), e.g. "00005__0".
    lq / gt: the files (gt None without a GT folder). lq_sha256 / gt_sha256: their contents.
    lq_size: (height, width) of the LQ. reference_size: (height, width) every method's output
    is brought to (the GT's; the LQ's without GT).
    """

    name: str
    lq: Path
    gt: Optional[Path]
    lq_sha256: str
    gt_sha256: Optional[str]
    lq_size: Tuple[int, int]
    reference_size: Tuple[int, int]


def image_size(path: PathLike) -> Tuple[int, int]:
    """(height, width) of an image file as ``read_image`` returns it (EXIF rotation applied),
    from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except OSError as error:
        raise EvaluationError(f"{path}: unreadable image ({' '.join(str(error).split())})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def load_rgb(path: PathLike) -> np.ndarray:
    """An image file as [H, W, 3] RGB: uint8 for 8-bit files, float32 in [0, 1] for 16-bit ones
    (the value conventions of faceprior.metrics)."""
    pixels = read_image(path).pixels
    return pixels if pixels.dtype == np.uint8 else to_float01(pixels, np.float32)


def find_pairs(lq_dir: PathLike, gt_dir: Optional[PathLike] = None) -> List[ImagePair]:
    """Every image under ``lq_dir`` (recursive, sorted), each with the GT file of the same
    relative name (any image suffix) under ``gt_dir``. EvaluationError names the first LQ
    image without a GT, or a folder without images."""
    lq_dir = Path(lq_dir)
    if not lq_dir.is_dir():
        raise EvaluationError(f"{lq_dir}: not a folder")
    lq_files = list_image_files(lq_dir)
    if not lq_files:
        raise EvaluationError(f"{lq_dir}: no images found")
    gt_by_name: Dict[str, Path] = {}
    if gt_dir is not None:
        gt_dir = Path(gt_dir)
        if not gt_dir.is_dir():
            raise EvaluationError(f"{gt_dir}: not a folder")
        for path in list_image_files(gt_dir):
            name = path.relative_to(gt_dir).with_suffix("").as_posix()
            if name in gt_by_name:
                raise EvaluationError(f"{path}: two GT images named {name} with different suffixes")
            gt_by_name[name] = path
    pairs, seen = [], set()
    for lq in lq_files:
        name = lq.relative_to(lq_dir).with_suffix("").as_posix()
        if name in seen:
            raise EvaluationError(f"{lq}: two LQ images named {name} with different suffixes")
        seen.add(name)
        gt = None
        if gt_dir is not None:
            gt = gt_by_name.get(name)
            if gt is None:
                raise EvaluationError(f"{lq}: no GT image {name}.* in {gt_dir}")
        lq_size = image_size(lq)
        pairs.append(ImagePair(name, lq, gt, sha256_of_file(lq), None if gt is None else sha256_of_file(gt),
                               lq_size, lq_size if gt is None else image_size(gt)))
    return pairs


def subsample(pairs: Sequence[ImagePair], count: Optional[int]) -> List[ImagePair]:
    """``count`` pairs evenly spaced over ``pairs`` (first and last included), deterministic;
    all of them for None or count >= len(pairs)."""
    if count is None or count >= len(pairs):
        return list(pairs)
    if count < 1:
        raise EvaluationError(f"--sample must be >= 1, got {count}")
    picks = np.round(np.linspace(0, len(pairs) - 1, count)).astype(int)
    return [pairs[i] for i in sorted(set(picks.tolist()))]
