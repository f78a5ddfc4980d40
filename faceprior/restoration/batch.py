"""Restore a batch of image files: finding inputs, planning outputs, restoring, reporting.

This is what ``faceprior restore`` runs, in three steps:

1. :func:`find_inputs` expands files, folders (recursively) and glob patterns into image files,
   each with the relative path its output will have: below the folder argument, below the fixed
   part of a glob pattern, or the bare name of a file argument. Hidden files and folders are
   skipped, and so is everything faceprior wrote: the output folder when it lies inside an input
   folder, and the files listed in the output folder's record of earlier runs
   (:data:`OUTPUT_RECORD`), so a re-run never restores its own outputs.
2. :func:`plan_outputs` decides every output path before any work: ``<output>/<relative path>``
   (with ``--ext``'s suffix), and ``<stem>_restored<suffix>`` where that would be an input. A plan
   in which two inputs map to one output, or any output (image, face crops, comparisons, report)
   would be an input, is refused as a whole, with one line per conflict.
3. :func:`restore_files` restores the planned inputs. Existing outputs are kept unless
   ``overwrite`` (``skip_existing`` resumes a batch); every file is written atomically and counted
   only once it is on disk; a bad file gets one line and the batch goes on.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, TextIO

import numpy as np

from faceprior.errors import printable
from faceprior.imaging.files import is_hidden, is_media_file, is_video_file, list_media_files
from faceprior.imaging.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    format_from_path,
    read_image,
    write_image,
)
from faceprior.imaging.video import VideoError
from faceprior.paths import atomic_write, is_temporary_file
from faceprior.progress import Progress
from faceprior.restoration.restorer import FaceRestorer, PreparedPhoto, Result
from faceprior.restoration.video import preview_video, restore_video_file, write_video_report

__all__ = ["OUTPUT_RECORD", "BatchSummary", "InputFile", "OutputPlan", "find_inputs", "format_summary", "plan_outputs",
           "restore_files", "writes_into_an_input_folder"]

# What a bad input can raise anywhere from decoding to writing: reported per file, the batch goes on.
RESTORE_ERRORS = (ImageReadError, ImageWriteError, ValueError, RuntimeError, OSError, MemoryError)

#: The file in an output folder that is also an input folder, listing what faceprior wrote there
#: (one JSON object per line: path relative to the folder, size in bytes), so that a later run that
#: reads this folder as input leaves those files out.
OUTPUT_RECORD = ".faceprior-outputs.jsonl"

#: Sub-folders of the output folder for the optional extra files.
SIDECAR_FOLDERS = {"faces": "faces", "compare": "compare", "report": "reports"}

#: Photos waiting for the network are restored as soon as they hold this many pixels together, so
#: that a batch of large scans never holds several of them at once (faces of small photos still
#: share batches).
MAX_WAITING_PIXELS = 1 << 25

#: Temporary files older than this in an output folder are left over from a killed run.
STALE_TEMPORARY_SECONDS = 3600.0


@dataclass
class InputFile:
    """An image to restore: its path, and its relative path under the output folder."""

    path: Path
    relative: Path


@dataclass
class OutputPlan:
    """Where one input's outputs go: the restored image, and the stem of its optional files
    (``<output>/faces/<relative folder>/<stem>_NN_input.png``, ``.../compare/...``, ``.../reports/<stem>.json``)."""

    item: InputFile
    target: Path
    sidecar_stem: Path


@dataclass
class BatchSummary:
    images: int = 0
    faces: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    videos: int = 0

    def line(self) -> str:
        videos = f"{self.videos} video(s), " if self.videos else ""
        return (f"{self.images} image(s) restored, {videos}{self.faces} face(s), {self.skipped} skipped, "
                f"{len(self.failures)} failed, {self.seconds:.1f} s")

    def add(self, other: "BatchSummary") -> None:
        self.images += other.images
        self.videos += other.videos
        self.faces += other.faces
        self.skipped += other.skipped
        self.failures += other.failures
        self.seconds += other.seconds


# ----------------------------------------------------------------------------------------------
# 1. inputs


def recorded_outputs(out_dir: Optional[Path]) -> set[Path]:
    """Resolved paths of the files faceprior wrote into ``out_dir`` that are still as it wrote them (same size)."""
    if out_dir is None or not (out_dir / OUTPUT_RECORD).is_file():
        return set()
    written = set()
    try:
        lines = (out_dir / OUTPUT_RECORD).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    for line in lines:
        try:
            entry = json.loads(line)
            path = out_dir / entry["path"]
            if path.is_file() and path.stat().st_size == entry["size"]:
                written.add(path.resolve())
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return written


def writes_into_an_input_folder(arguments: Sequence[str], out_dir: Path) -> bool:
    """Whether ``out_dir`` is one of the folders the inputs are found in (a folder argument or the
    fixed part of a glob pattern): then what is written there is recorded (:data:`OUTPUT_RECORD`)."""
    output = out_dir.resolve()
    roots = [Path(a) if Path(a).is_dir() else _glob_root(a) for a in arguments if Path(a).is_dir() or glob.has_magic(a)]
    return any(root.resolve() == output for root in roots)


def _glob_root(pattern: str) -> Path:
    """The fixed folder part of a glob pattern: ``photos/**/*.jpg`` -> ``photos``."""
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def find_inputs(arguments: Sequence[str], out_dir: Optional[Path] = None) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and glob patterns into image files (see the module docstring).

    Returns (inputs in a stable order without duplicates, [(argument, reason)] for arguments that
    matched nothing).
    """
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    ours = recorded_outputs(out_dir)
    output = out_dir.resolve() if out_dir is not None else None

    def written_by_us(path: Path, root: Path) -> bool:
        """A file faceprior wrote: recorded in the output folder, or inside an output folder that
        lies within the folder being walked."""
        resolved, root = path.resolve(), root.resolve()
        inside_output = output is not None and output != root and root in output.parents and output in resolved.parents
        return resolved in ours or inside_output

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, relative))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = [file for file in list_media_files(path) if not written_by_us(file, path)]
            if not files:
                problems.append((argument, "folder contains no image or video files (faceprior's own outputs are left out)"))
            for file in files:
                add(file, file.relative_to(path))
        elif path.is_file():
            add(path, Path(path.name))
        elif glob.has_magic(argument):
            root = _glob_root(argument)
            matches = sorted(Path(p) for p in glob.glob(argument, recursive=True)
                             if Path(p).is_file() and is_media_file(p) and not is_hidden(Path(p).relative_to(root))
                             and not written_by_us(Path(p), root))
            if not matches:
                problems.append((argument, "pattern matched no image or video files"))
            for match in matches:
                add(match, match.relative_to(root))
        else:
            problems.append((argument, "no such file or folder"))
    return found, problems


# ----------------------------------------------------------------------------------------------
# 2. the output plan


def plan_outputs(inputs: Sequence[InputFile], out_dir: Path, ext: Optional[str] = None, save_faces: bool = False,
                 save_compare: bool = False, save_report: bool = False) -> tuple[list[OutputPlan], list[str]]:
    """Every input's output paths, and the conflicts that forbid the plan (one message each):
    two inputs with one output, an output that is an input, an extra-file folder holding inputs."""
    input_paths = {item.path.resolve(): item for item in inputs}
    plans, conflicts = [], []
    claimed: dict[Path, InputFile] = {}
    stems: dict[Path, InputFile] = {}
    for item in inputs:
        target = out_dir / item.relative
        if ext and not is_video_file(item.path):  # --ext is an image format; a video keeps its container
            target = target.with_suffix("." + ext.lower().lstrip("."))
        if target.resolve() in input_paths:  # an output folder that holds the inputs: a name of its own
            target = target.with_name(f"{target.stem}_restored{target.suffix}")
        resolved = target.resolve()
        if resolved in input_paths:
            conflicts.append(f"{printable(item.path)}: its output {printable(target)} is an input "
                             f"({printable(input_paths[resolved].path)}); choose another output folder")
        elif resolved in claimed:
            conflicts.append(f"{printable(item.path)} and {printable(claimed[resolved].path)} would both be written "
                             f"to {printable(target)}; restore them into different output folders")
        claimed[resolved] = item
        stem = item.relative.with_suffix("")
        if stem in stems and (save_faces or save_compare or save_report):
            conflicts.append(f"{printable(item.path)} and {printable(stems[stem].path)} would share their face, "
                             f"comparison and report files ({stem}*); restore them into different output folders")
        stems[stem] = item
        plans.append(OutputPlan(item, target, stem))
    for option, wanted in (("faces", save_faces), ("compare", save_compare), ("report", save_report)):
        folder = (out_dir / SIDECAR_FOLDERS[option]).resolve()
        if wanted:
            held = [item for path, item in input_paths.items() if folder in path.parents]
            if held:
                conflicts.append(f"{printable(folder)}, where --save-{option} writes, holds {len(held)} input(s) "
                                 f"(e.g. {printable(held[0].path)}); choose another output folder")
    return plans, conflicts


# ----------------------------------------------------------------------------------------------
# 3. restoring


class _OutputRecord:
    """Appends what is written to ``out_dir``'s :data:`OUTPUT_RECORD` (one line per file), when enabled."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.out_dir = out_dir
        self.path = out_dir / OUTPUT_RECORD
        self.enabled = enabled

    def add(self, written: Path) -> None:
        if not self.enabled:
            return
        try:
            line = json.dumps({"path": written.relative_to(self.out_dir).as_posix(), "size": written.stat().st_size})
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except (OSError, ValueError):
            pass  # the record only helps later runs leave these files out; never fail a restore over it


def remove_stale_temporary_files(folders: Iterable[Path], older_than: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Delete faceprior's temporary files (``.faceprior-*.tmp``) older than ``older_than`` seconds in
    ``folders`` (left by a killed run; a running one renames its files within seconds)."""
    removed, now = [], time.time()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in filter(is_temporary_file, folder.iterdir()):
            try:
                if now - path.stat().st_mtime > older_than:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


def _write_new(path: Path, image: np.ndarray, overwrite: bool, record: _OutputRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, image, overwrite=overwrite)
    record.add(path)


@dataclass
class _Pending:
    """An input decoded and prepared (faces detected and aligned), waiting for the network."""

    plan: OutputPlan
    loaded: LoadedImage
    photo: PreparedPhoto


def photo_of(loaded: LoadedImage) -> np.ndarray:
    """What FaceRestorer.prepare takes for a read file: [H, W, 3], or [H, W, 4] with its alpha."""
    return loaded.pixels if loaded.alpha is None else np.dstack([loaded.pixels, loaded.alpha])


def write_result(path: Path, result: Result, loaded: LoadedImage, overwrite: bool = False) -> None:
    """Write a restored photo as ``faceprior restore`` does: the format of ``path``'s suffix, and
    the input's bit depth, greyness, ICC profile and EXIF."""
    write_image(path, result.image, alpha=result.alpha, format=format_from_path(path), bit_depth=loaded.bit_depth,
                gray=loaded.was_gray, icc_profile=loaded.icc_profile, exif=loaded.exif, overwrite=overwrite)


def restore_files(
    restorer: FaceRestorer,
    plans: Sequence[OutputPlan],
    out_dir: Path,
    skip_existing: bool = False,
    overwrite: bool = False,
    save_faces: bool = False,
    save_compare: bool = False,
    save_report: bool = False,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    record_outputs: bool = False,
    log: Optional[TextIO] = None,
) -> BatchSummary:
    """Restore every planned input into ``out_dir``; returns the summary (failures included).

    The next input is decoded on a background thread while the current one is restored
    (decoding releases the GIL), so file decoding overlaps detection and restoration. Faces of
    consecutive photos go through the network together: photos are detected and aligned until
    their faces fill ``restorer.batch_size`` (or that many photos are waiting), then restored,
    pasted back and written. Progress (with ETA) goes to ``log`` (default stderr).
    ``record_outputs``: list what is written in ``out_dir``'s :data:`OUTPUT_RECORD` (for an output
    folder that is also an input folder, see :func:`writes_into_an_input_folder`).
    """
    summary = BatchSummary()
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _OutputRecord(out_dir, record_outputs)
    remove_stale_temporary_files({out_dir} | {plan.target.parent for plan in plans})
    progress = Progress(len(plans), unit="image", description="restoring", stream=log)
    reads: dict[int, Future] = {}
    pending: list[_Pending] = []

    def report_path(plan: OutputPlan) -> Path:
        return planned_report_path(out_dir, plan)

    def fail(path: Path, reason: str) -> None:
        summary.failures.append((printable(path), printable(reason)))
        progress.message(f"faceprior: {printable(path)}: {printable(reason)}")

    def exists_already(plan: OutputPlan) -> bool:
        return plan.target.exists() or (save_report and report_path(plan).exists())

    def write_outputs(entry: _Pending, result: Result) -> bool:
        """Write the image and the extra files; False (nothing counted) when the image already
        exists and ``skip_existing`` (another process restored it meanwhile)."""
        plan, loaded = entry.plan, entry.loaded
        plan.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_result(plan.target, result, loaded, overwrite=overwrite)
        except ImageWriteError:
            if skip_existing and plan.target.exists():
                return False
            raise
        record.add(plan.target)
        for index, face in enumerate(result.faces):
            name = f"{plan.sidecar_stem.name}_{index:02d}"
            folder = plan.sidecar_stem.parent
            if save_faces:
                _write_new(out_dir / "faces" / folder / f"{name}_input.png", face.aligned, overwrite, record)
                if face.restored is not None:
                    _write_new(out_dir / "faces" / folder / f"{name}_restored.png", face.restored, overwrite, record)
            if save_compare and face.restored is not None:
                side_by_side = np.concatenate([face.aligned, face.restored], axis=1)
                _write_new(out_dir / "compare" / folder / f"{name}.png", side_by_side, overwrite, record)
        if save_report:
            _write_report(report_path(plan), plan, restorer, result, overwrite)
            record.add(report_path(plan))
        return True

    def flush() -> None:
        """Restore the waiting photos in one go, then write each."""
        try:
            results = restorer.restore_prepared([entry.photo for entry in pending])
        except RESTORE_ERRORS as error:
            for entry in pending:
                fail(entry.plan.item.path, failure_reason(error, entry.plan.item.path))
            pending.clear()
            return
        for entry, result in zip(pending, results):
            try:
                written = write_outputs(entry, result)
            except RESTORE_ERRORS as error:
                fail(entry.plan.item.path, failure_reason(error, entry.plan.item.path))
                continue
            if not written:
                summary.skipped += 1
            elif entry.plan.target.is_file():  # counted only once it is on disk
                summary.images += 1
                summary.faces += len(result.faces)
            else:
                fail(entry.plan.item.path, f"{entry.plan.target} is not on disk after writing it")
        pending.clear()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceprior-read") as reader:

        def read_ahead(index: int) -> None:
            """Start decoding input ``index`` unless it is out of range, queued, or will not be restored."""
            restored = index < len(plans) and (not exists_already(plans[index]) or (overwrite and not skip_existing))
            if restored and index not in reads:
                reads[index] = reader.submit(read_image, plans[index].item.path, max_pixels=max_pixels)

        for index, plan in enumerate(plans):
            item = plan.item
            if exists_already(plan) and skip_existing:
                summary.skipped += 1
                progress.advance(1, item.path.name)
                continue
            if exists_already(plan) and not overwrite:
                existing = plan.target if plan.target.exists() else report_path(plan)
                fail(item.path, f"output {existing} exists (use --skip-existing or --overwrite)")
                progress.advance(1, item.path.name)
                continue
            try:
                read_ahead(index)
                loaded = reads.pop(index).result()
                read_ahead(index + 1)
                for note in loaded.notes:
                    progress.message(f"faceprior: {printable(item.path)}: note: {printable(note)}")
                pending.append(_Pending(plan, loaded, restorer.prepare(photo_of(loaded))))
            except RESTORE_ERRORS as error:
                fail(item.path, failure_reason(error, item.path))
            progress.advance(1, item.path.name)
            if (sum(len(entry.photo.crops) for entry in pending) >= restorer.batch_size or len(pending) >= restorer.batch_size
                    or sum(entry.loaded.pixels.shape[0] * entry.loaded.pixels.shape[1] for entry in pending) >= MAX_WAITING_PIXELS):
                flush()
        if pending:
            flush()
    progress.close()
    summary.seconds = time.perf_counter() - start
    return summary


def restore_videos(restorer: FaceRestorer, plans: Sequence[OutputPlan], out_dir: Path, skip_existing: bool = False,
                   overwrite: bool = False, save_report: bool = False, frames: Optional[str] = None,
                   preview: Optional[int] = None, codec: Optional[str] = None, crf: Optional[int] = None,
                   record_outputs: bool = False, log: Optional[TextIO] = None) -> BatchSummary:
    """Restore every planned video (see :mod:`faceprior.restoration.video`), one after the other.

    Each output appears only when complete; an unreadable video, one without a video stream, or
    an encoder failure is one failure line and the batch goes on. ``preview`` N: instead of the
    video, every N-th frame restored as a PNG (``<stem>_frame000123.png``) next to where the
    video would go. The report (``--report``) is ``reports/<stem>.json``.
    """
    summary = BatchSummary()
    start = time.perf_counter()
    record = _OutputRecord(out_dir, record_outputs)

    def fail(path: Path, reason: str) -> None:
        summary.failures.append((printable(path), printable(reason)))
        _message(log, f"faceprior: {printable(path)}: {printable(reason)}")

    for plan in plans:
        item = plan.item
        report_file = planned_report_path(out_dir, plan)
        try:
            if preview:
                written = preview_video(restorer, item.path, plan.target.parent, preview, overwrite=overwrite)
                for path in written:
                    record.add(path)
                summary.videos += 1
                continue
            exists = plan.target.exists() or (save_report and report_file.exists())
            if exists and skip_existing:
                summary.skipped += 1
                continue
            if exists and not overwrite:
                fail(item.path, f"output {plan.target if plan.target.exists() else report_file} exists "
                     "(use --skip-existing or --overwrite)")
                continue
            progress = Progress(None, unit="frame", description=f"restoring {item.path.name}", stream=log)
            report = restore_video_file(restorer, item.path, plan.target, overwrite=overwrite, frames=frames,
                                        codec=codec, crf=crf, progress=lambda done, total: progress.advance(1))
            progress.close()
            record.add(plan.target)
            for note in report.notes:
                _message(log, f"faceprior: {printable(item.path)}: note: {printable(note)}")
            if save_report:
                write_video_report(report_file, report, overwrite)
                record.add(report_file)
            if plan.target.is_file():  # counted only once it is on disk
                summary.videos += 1
                summary.faces += report.faces
        except (VideoError, FileExistsError, *RESTORE_ERRORS) as error:
            fail(item.path, failure_reason(error, item.path))
    summary.seconds = time.perf_counter() - start
    return summary


def planned_report_path(out_dir: Path, plan: OutputPlan) -> Path:
    """Where ``--report`` writes the JSON of a planned input."""
    return out_dir / SIDECAR_FOLDERS["report"] / plan.sidecar_stem.with_suffix(".json")


def failure_reason(error: Exception, path: Path) -> str:
    """An error's message on one line, without a leading "<path>: " (the line names the file)."""
    message = " ".join(str(error).split()) or type(error).__name__
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _message(log: Optional[TextIO], line: str) -> None:
    print(line, file=log if log is not None else sys.stderr, flush=True)


def _write_report(path: Path, plan: OutputPlan, restorer: FaceRestorer, result: Result, overwrite: bool) -> None:
    report = {
        "input": str(plan.item.path),
        "output": str(plan.target),
        "model": restorer.choice.name,
        "model_license": restorer.descriptor.license,
        "network": restorer.precision_note,
        "upscale": restorer.upscale,
        "weight": restorer.weight,
        "fidelity": restorer.fidelity,
        "background_weight": None if result.background_weight is None else round(result.background_weight, 4),
        "faces": [face.to_json() for face in result.faces],
        "timings_ms": result.timings_ms,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path, overwrite=overwrite) as handle:
            handle.write((json.dumps(report, indent=2) + "\n").encode("utf-8"))
    except FileExistsError:
        raise ImageWriteError(f"{path}: report exists (use --overwrite)") from None


def format_summary(summary: BatchSummary, problems: Iterable[tuple[str, str]] = ()) -> str:
    lines = [summary.line()]
    for name, reason in list(problems) + summary.failures:
        lines.append(f"  failed: {printable(name)}: {printable(reason)}")
    return "\n".join(lines)
