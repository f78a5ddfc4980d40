"""Synthetic test sets in the CelebA-Test protocol: the training degradations, fixed seed.

GFP-GAN (Wang et al. 2021) evaluates on "CelebA-Test": high-quality faces degraded
with the same model as the training pairs. ``make_testset`` does that with
``faceprior.training.degradations.degrade_folder``:

    OUT/gt/<name>.png                 the GT, resized to size x size and rounded to 8 bits
    OUT/lq/<name>.png                 its degraded copy (lossless PNG), same size
    OUT/lq/degradations.json          manifest: seed, size, source folder, degradation config and
                                      every file's sampled parameters (``DegradationParams``)

Each file's random numbers come from (seed, its relative path), so a file's LQ image does not
depend on the other files, and the same arguments reproduce the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from faceprior.errors import FacepriorError
from faceprior.paths import PathLike
from faceprior.training.degradations import (MANIFEST_FORMAT, DegradationConfig, DegradationConfigError, DegradationError,
                                             degrade_folder)

LQ_FOLDER = "lq"
GT_FOLDER = "gt"
MANIFEST_NAME = "degradations.json"


class SyntheticTestSetError(FacepriorError, ValueError):
    """A test set cannot be made or read; the message is one line naming the folder."""


@dataclass(frozen=True)
class SyntheticTestSet:
    """A made (or found) test set.

    root: OUT folder. lq_dir / gt_dir: its LQ and GT folders. manifest: the manifest dict
    (see ``degrade_folder``). created: False when an identical test set was already there.
    """

    root: Path
    lq_dir: Path
    gt_dir: Path
    manifest: Dict[str, Any]
    created: bool

    @property
    def count(self) -> int:
        return len(self.manifest["files"])


def testset_manifest_path(out_dir: PathLike) -> Path:
    """Where the manifest of the test set in ``out_dir`` lives (OUT/lq/degradations.json)."""
    return Path(out_dir) / LQ_FOLDER / MANIFEST_NAME


def _same_request(manifest: Dict[str, Any], gt_dir: Path, seed: int, size: Optional[int],
                  config: DegradationConfig) -> list[str]:
    """Names of the settings in which ``manifest`` differs from this request (empty: same)."""
    differences = []
    if manifest.get("seed") != seed:
        differences.append(f"seed {manifest.get('seed')} (asked {seed})")
    if manifest.get("size") != size:
        differences.append(f"size {manifest.get('size')} (asked {size})")
    recorded_input = manifest.get("input")
    if recorded_input is None or Path(recorded_input).resolve() != gt_dir.resolve():
        differences.append(f"source folder {recorded_input} (asked {gt_dir})")
    try:  # settings added since the manifest was written read as their defaults
        recorded_config = DegradationConfig.from_dict(manifest.get("config"), source="manifest")
    except DegradationConfigError:
        recorded_config = None
    if recorded_config != config:
        differences.append("degradation config")
    return differences


def _existing_testset(out_dir: Path, gt_dir: Path, seed: int, size: Optional[int],
                      config: DegradationConfig) -> Optional[SyntheticTestSet]:
    """The test set already in ``out_dir`` when it was made with these same arguments and is
    complete; None when ``out_dir`` holds nothing of a test set; SyntheticTestSetError otherwise."""
    lq_dir, out_gt_dir = out_dir / LQ_FOLDER, out_dir / GT_FOLDER
    manifest_path = testset_manifest_path(out_dir)
    if not manifest_path.is_file():
        if any(folder.is_dir() and any(folder.iterdir()) for folder in (lq_dir, out_gt_dir)):
            raise SyntheticTestSetError(
                f"{out_dir}: holds a partial test set (files in lq/ or gt/ but no {LQ_FOLDER}/{MANIFEST_NAME}); "
                "remove the folder or choose another OUT_DIR")
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SyntheticTestSetError(f"{manifest_path}: unreadable manifest ({' '.join(str(error).split())})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise SyntheticTestSetError(f"{manifest_path}: not a faceprior degradation manifest")
    differences = _same_request(manifest, gt_dir, seed, size, config)
    if differences:
        raise SyntheticTestSetError(
            f"{out_dir}: already holds a test set made with a different {', '.join(differences)}; "
            "refusing to overwrite it (remove the folder or choose another OUT_DIR)")
    missing = [entry["lq"] for entry in manifest["files"] if not (lq_dir / entry["lq"]).is_file()]
    missing += [entry["gt"] for entry in manifest["files"] if not (out_gt_dir / entry["gt"]).is_file()]
    if missing:
        raise SyntheticTestSetError(f"{out_dir}: test set is incomplete ({len(missing)} files missing, e.g. {missing[0]}); "
                           "remove the folder and make it again")
    return SyntheticTestSet(out_dir, lq_dir, out_gt_dir, manifest, created=False)


def make_testset(gt_dir: PathLike, out_dir: PathLike, seed: int = 0, size: Optional[int] = 512,
                 config: DegradationConfig = DegradationConfig()) -> SyntheticTestSet:
    """Degrade every image of ``gt_dir`` into ``out_dir`` (see the module docstring).

    Args:
        gt_dir: folder of square, aligned high-quality faces (.jpg/.jpeg/.png/.webp, recursive).
        out_dir: output folder; gets lq/, gt/ and lq/degradations.json.
        seed: non-negative integer; the same seed gives the same files.
        size: resize the GT to size x size first (None keeps the original size).
        config: the degradation model (default: the official training settings).
    Returns:
        The SyntheticTestSet. Running again with the same arguments finds the complete test set and
        returns it with ``created=False`` without writing anything; different arguments or a
        partial folder raise SyntheticTestSetError (nothing is ever overwritten).
    """
    gt_dir, out_dir = Path(gt_dir), Path(out_dir)
    if not gt_dir.is_dir():
        raise SyntheticTestSetError(f"{gt_dir}: not a folder")
    if out_dir.exists() and gt_dir.resolve() == out_dir.resolve():
        raise SyntheticTestSetError(f"{out_dir}: the output folder is the GT folder itself")
    existing = _existing_testset(out_dir, gt_dir, seed, size, config)
    if existing is not None:
        return existing
    try:
        manifest = degrade_folder(gt_dir, out_dir / LQ_FOLDER, seed=seed, config=config, size=size,
                                  gt_dir=out_dir / GT_FOLDER, suffix=".png", manifest_name=MANIFEST_NAME)
    except DegradationError as error:
        raise SyntheticTestSetError(str(error)) from None
    return SyntheticTestSet(out_dir, out_dir / LQ_FOLDER, out_dir / GT_FOLDER, manifest, created=True)
