"""Restore a batch of image files: input discovery, output naming, reports, a summary.

This is what ``faceprior restore`` runs. The rules that protect the user's files:
- inputs are never written to (an output path that is an input gets a ``_restored`` suffix);
- existing outputs are kept unless ``overwrite`` is set (``skip_existing`` resumes a batch);
- every file is written atomically (temporary file + rename), so a killed run leaves no
  half-written image;
- a bad file is reported in one line and the batch goes on; the summary lists the failures.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, TextIO

import numpy as np

from faceprior.imaging.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    format_from_path,
    read_image,
    write_image,
)
from faceprior.restoration.restorer import FaceRestorer, PreparedPhoto, Result

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# What a bad input can raise anywhere from decoding to writing: reported per file, the batch goes on.
RESTORE_ERRORS = (ImageReadError, ImageWriteError, ValueError, RuntimeError, OSError, MemoryError)
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass
class InputFile:
    """An image to restore: its path and its name relative to the argument it came from
    (kept as the output's relative path, so folder structure is mirrored)."""

    path: Path
    relative: Path


@dataclass
class BatchSummary:
    images: int = 0
    faces: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.images} image(s) restored, {self.faces} face(s), {self.skipped} skipped, "
                f"{len(self.failures)} failed, {self.seconds:.1f} s")


def find_inputs(arguments: Sequence[str]) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and glob patterns into image files.

    Returns (inputs in a stable order without duplicates, [(argument, reason)] for arguments
    that matched nothing).
    """
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, relative))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append((argument, "folder contains no image files"))
            for file in files:
                add(file, file.relative_to(path))
        elif path.is_file():
            add(path, Path(path.name))
        elif glob.has_magic(argument):
            matches = sorted(Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file())
            if not matches:
                problems.append((argument, "pattern matched no files"))
            for match in matches:
                add(match, Path(match.name))
        else:
            problems.append((argument, "no such file or folder"))
    return found, problems


def output_path(item: InputFile, out_dir: Path, ext: Optional[str], input_paths: set[Path]) -> Path:
    """Where the restored image of ``item`` goes: ``out_dir / relative`` with ``ext`` if given;
    never one of the input files."""
    target = out_dir / item.relative
    if ext:
        target = target.with_suffix("." + ext.lower().lstrip("."))
    if target.resolve() in input_paths:
        target = target.with_name(f"{target.stem}_restored{target.suffix}")
    return target


class ProgressLine:
    """A one-line progress display on a terminal (nothing when not a TTY)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, done: int, name: str) -> None:
        if self.enabled:
            width = 30
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {name[:40]:<40}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _face_files(result: Result, stem: str, folder: Path, overwrite: bool) -> None:
    for index, face in enumerate(result.faces):
        write_image(folder / "faces" / f"{stem}_{index:02d}_input.png", face.aligned, overwrite=overwrite)
        if face.restored is not None:
            write_image(folder / "faces" / f"{stem}_{index:02d}_restored.png", face.restored, overwrite=overwrite)


def _comparison_files(result: Result, stem: str, folder: Path, overwrite: bool) -> None:
    for index, face in enumerate(result.faces):
        if face.restored is not None:
            side_by_side = np.concatenate([face.aligned, face.restored], axis=1)
            write_image(folder / "compare" / f"{stem}_{index:02d}.png", side_by_side, overwrite=overwrite)


@dataclass
class _Pending:
    """An input decoded and prepared (faces detected and aligned), waiting for the network."""

    item: InputFile
    target: Path
    loaded: LoadedImage
    photo: PreparedPhoto


def restore_files(
    restorer: FaceRestorer,
    inputs: Sequence[InputFile],
    out_dir: Path,
    ext: Optional[str] = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    save_faces: bool = False,
    save_compare: bool = False,
    save_report: bool = False,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    log: TextIO = sys.stderr,
) -> BatchSummary:
    """Restore every input into ``out_dir``; returns the summary (failures included).

    The next input is decoded on a background thread while the current one is restored
    (decoding releases the GIL), so file decoding overlaps detection and restoration. Faces of
    consecutive photos go through the network together: photos are detected and aligned until
    their faces fill ``restorer.batch_size`` (or that many photos are waiting), then restored,
    pasted back and written.
    """
    summary = BatchSummary()
    start = time.perf_counter()
    input_paths = {item.path.resolve() for item in inputs}
    targets = [output_path(item, out_dir, ext, input_paths) for item in inputs]
    progress = ProgressLine(len(inputs), log)
    reads: dict[int, Future] = {}
    pending: list[_Pending] = []

    def fail(path: Path, reason: str) -> None:
        summary.failures.append((str(path), reason))
        if progress.enabled:
            log.write("\n")
        log.write(f"faceprior: {path}: {reason}\n")

    def reason_of(error: Exception, path: Path) -> str:
        if isinstance(error, (ImageReadError, ImageWriteError)):
            return _after_path(str(error), path)
        return " ".join(str(error).split()) or type(error).__name__

    def write_outputs(entry: _Pending, result: Result) -> None:
        item, target, loaded = entry.item, entry.target, entry.loaded
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, result.image, alpha=result.alpha, format=format_from_path(target),
                    bit_depth=loaded.bit_depth, gray=loaded.was_gray, icc_profile=loaded.icc_profile,
                    exif=loaded.exif, overwrite=overwrite)
        stem = str(item.relative.with_suffix("")).replace(os.sep, "__")
        if save_faces:
            (out_dir / "faces").mkdir(exist_ok=True)
            _face_files(result, stem, out_dir, overwrite)
        if save_compare:
            (out_dir / "compare").mkdir(exist_ok=True)
            _comparison_files(result, stem, out_dir, overwrite)
        if save_report:
            _write_report(out_dir / "reports" / f"{stem}.json", item.path, target, restorer, result)

    def flush() -> None:
        """Restore the waiting photos in one go, then write each."""
        try:
            results = restorer.restore_prepared([entry.photo for entry in pending])
        except RESTORE_ERRORS as error:
            for entry in pending:
                fail(entry.item.path, reason_of(error, entry.item.path))
            pending.clear()
            return
        for entry, result in zip(pending, results):
            try:
                write_outputs(entry, result)
            except RESTORE_ERRORS as error:
                fail(entry.item.path, reason_of(error, entry.item.path))
                continue
            summary.images += 1
            summary.faces += len(result.faces)
        pending.clear()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceprior-read") as reader:

        def read_ahead(index: int) -> None:
            """Start decoding input ``index`` unless it is out of range, queued, or will not be restored."""
            restored = index < len(inputs) and (not targets[index].exists() or (overwrite and not skip_existing))
            if restored and index not in reads:
                reads[index] = reader.submit(read_image, inputs[index].path, max_pixels=max_pixels)

        for index, (item, target) in enumerate(zip(inputs, targets)):
            progress.show(index, item.path.name)
            if target.exists() and skip_existing:
                summary.skipped += 1
                continue
            if target.exists() and not overwrite:
                fail(item.path, f"output {target} exists (use --skip-existing or --overwrite)")
                continue
            try:
                read_ahead(index)
                loaded = reads.pop(index).result()
                read_ahead(index + 1)
                image = loaded.pixels if loaded.alpha is None else np.dstack([loaded.pixels, loaded.alpha])
                pending.append(_Pending(item, target, loaded, restorer.prepare(image)))
            except RESTORE_ERRORS as error:
                fail(item.path, reason_of(error, item.path))
            if sum(len(entry.photo.crops) for entry in pending) >= restorer.batch_size or len(pending) >= restorer.batch_size:
                flush()
        if pending:
            flush()
    progress.show(len(inputs), "")
    progress.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _after_path(message: str, path: Path) -> str:
    """Drop a leading '<path>: ' from an error message (the summary prints the path itself)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _write_report(report_path: Path, source: Path, target: Path, restorer: FaceRestorer, result: Result) -> None:
    report = {
        "input": str(source),
        "output": str(target),
        "model": restorer.choice.name,
        "network": restorer.precision_note,
        "upscale": restorer.upscale,
        "weight": restorer.weight,
        "faces": [face.to_json() for face in result.faces],
        "timings_ms": result.timings_ms,
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(report, indent=2) + "\n").encode()
    temporary = report_path.with_name(report_path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, report_path)


def format_summary(summary: BatchSummary, problems: Iterable[tuple[str, str]] = ()) -> str:
    lines = [summary.line()]
    for name, reason in list(problems) + summary.failures:
        lines.append(f"  failed: {name}: {reason}")
    return "\n".join(lines)
