"""``faceprior restore --engine ray``: restore an archive on a Ray cluster with Ray Data.

Three Ray Data stages, streamed (a photo is written while later ones are still being read):

    read      Ray tasks: the file's bytes from its filesystem (a local folder, or any filesystem
              pyarrow reaches: s3://, gs://, hdfs://, file://)
    restore   an actor pool (``--actors N``, ``--gpus-per-actor G``), one FaceRestorer (one loaded
              model) per actor: decode, detect, align, restore the faces of a batch of photos
              together, paste back, encode, exactly as ``faceprior restore`` does
    write     Ray tasks: the encoded file to its output path (atomically on a local disk)

The driver plans the outputs as ``faceprior restore`` plans them (same names, same refusals),
skips what the manifest says is done, and appends each finished photo to the manifest
(:mod:`faceprior.archive.manifest`) as its row arrives. A bad file is a "failed" line, never
fatal. Ray Data restarts a killed actor and retries its in-flight batch (a killed read or write
task is retried too); the rows of batches that finished are not redone, so nothing is lost or
written twice. The outputs are byte for byte those of ``faceprior restore`` on one machine.

Needs the ``faceprior[ray]`` extra. Without ``--address`` (or $RAY_ADDRESS) a local Ray
instance is started with this machine's CPUs; an already initialised Ray is used as it is.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Tuple

import numpy as np

from faceprior.archive.manifest import Manifest
from faceprior.errors import FacepriorError, OptionError, one_line
from faceprior.imaging.files import is_hidden, is_image_file
from faceprior.imaging.io import read_image
from faceprior.paths import atomic_write
from faceprior.restoration.batch import (
    RESTORE_ERRORS,
    BatchSummary,
    failure_reason,
    find_inputs,
    photo_of,
    plan_outputs,
    write_result,
)
from faceprior.restoration.restorer import FaceRestorer

__all__ = ["MANIFEST_NAME", "ArchiveError", "ArchiveItem", "ArchiveSummary", "RestoreActor", "list_archive",
           "restore_with_ray"]

MANIFEST_NAME = "faceprior-manifest.jsonl"


class ArchiveError(FacepriorError, RuntimeError):
    """An archive run that cannot start (Ray missing, a bad source or destination); one line."""


@dataclass(frozen=True)
class ArchiveItem:
    """One photo: where it is read (``source``: a local path or a path of ``source_fs``), its
    name relative to the source folder (the manifest key), and its output path."""

    source: str
    relative: str
    target: str


@dataclass
class ArchiveSummary(BatchSummary):
    """A run's BatchSummary (restored, faces, skipped as done before, failures, seconds) and its manifest."""

    manifest: Optional[Path] = None

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.images} image(s) restored, {self.faces} face(s), {self.skipped} skipped (done before), "
                f"{len(self.failures)} failed, {self.seconds:.1f} s ({rate:.2f} images/s); manifest {self.manifest}")


# ----------------------------------------------------------------------------------------------
# where the photos are


def _is_uri(text: str) -> bool:
    return "://" in text


@functools.lru_cache(maxsize=8)
def _filesystem(uri: str):
    """(pyarrow filesystem, path in it) of a URI; ArchiveError for one pyarrow cannot open.
    Cached: the driver's existence checks and every read and write task of a worker process
    reuse one filesystem (one object-store client) per URI."""
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as error:
        raise ArchiveError(f"{uri}: cannot open this location ({one_line(error)})") from None


def list_archive(source: str, dest: str, ext: Optional[str] = None) -> Tuple[List[ArchiveItem], List[Tuple[str, str]]]:
    """The photos under ``source`` and their outputs under ``dest``, planned as ``faceprior
    restore`` plans them; and the problems (name, reason) of what cannot be restored.

    A local ``source`` goes through ``find_inputs`` and ``plan_outputs`` (hidden files and
    faceprior's own outputs left out, conflicts refused). A URI is listed with pyarrow (images,
    recursively, hidden names left out) and mirrored under ``dest``.
    """
    if not _is_uri(source) and not _is_uri(dest):
        inputs, problems = find_inputs([source], Path(dest))
        videos = [item for item in inputs if not is_image_file(item.path)]
        problems += [(str(item.path), "videos are not restored by --engine ray (use the default engine)")
                     for item in videos]
        inputs = [item for item in inputs if is_image_file(item.path)]
        plans, conflicts = plan_outputs(inputs, Path(dest), ext=ext)
        if conflicts:
            raise ArchiveError(f"{len(conflicts)} output conflict(s), e.g. {conflicts[0]}; nothing was restored")
        items = [ArchiveItem(str(plan.item.path), plan.item.relative.as_posix(), str(plan.target)) for plan in plans]
        return items, problems
    import pyarrow.fs

    source_fs, root = _filesystem(source) if _is_uri(source) else (pyarrow.fs.LocalFileSystem(), str(Path(source).resolve()))
    try:
        infos = source_fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    except Exception as error:
        raise ArchiveError(f"{source}: cannot list it ({one_line(error)})") from None
    _, dest_root = _filesystem(dest) if _is_uri(dest) else (None, str(Path(dest).resolve()))
    items, problems = [], []
    for info in sorted(infos, key=lambda info: info.path):
        if info.type != pyarrow.fs.FileType.File:
            continue
        relative = info.path[len(root):].lstrip("/")
        if is_hidden(Path(relative)) or not is_image_file(relative):
            continue
        target = f"{dest_root.rstrip('/')}/{relative}"
        if ext:
            target = str(Path(target).with_suffix("." + ext.lower().lstrip(".")))
        items.append(ArchiveItem(info.path, relative, target))
    return items, problems


# ----------------------------------------------------------------------------------------------
# the three stages (module-level, so that Ray ships them to its workers by reference)


def _read_stage(row: Dict[str, Any], source_uri: Optional[str]) -> Dict[str, Any]:
    start = time.perf_counter()
    row = dict(row)
    try:
        if source_uri is None:
            data = Path(row["source"]).read_bytes()
        else:
            filesystem, _ = _filesystem(source_uri)
            with filesystem.open_input_stream(row["source"]) as stream:
                data = stream.read()
        row.update(data=data, error="")
    except Exception as error:
        row.update(data=b"", error=f"cannot read it ({one_line(error)})")
    row["read_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return row


class RestoreActor:
    """One loaded model; restores batches of photos (Ray Data ``map_batches`` with an actor pool)."""

    def __init__(self, options: Dict[str, Any], max_pixels: Optional[int], threads: int = 1):
        import torch

        torch.set_num_threads(threads)  # results depend on it (float reductions): as many as --cpus-per-actor
        self.restorer = FaceRestorer(**options)
        self.max_pixels = max_pixels
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.scratch = Path(tempfile.mkdtemp(prefix="faceprior-ray-"))

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, list]:
        count = len(batch["relative"])
        out: Dict[str, list] = {key: [] for key in ("source", "relative", "target", "encoded", "faces", "background",
                                                    "error", "timings", "worker")}
        loaded, prepared, errors = [None] * count, [None] * count, [str(e) for e in batch["error"]]
        for index in range(count):
            if errors[index]:
                continue
            suffix = Path(str(batch["relative"][index])).suffix
            path = self.scratch / f"input{index}{suffix}"
            try:
                path.write_bytes(bytes(batch["data"][index]))
                loaded[index] = read_image(path, max_pixels=self.max_pixels)
                prepared[index] = self.restorer.prepare(photo_of(loaded[index]))
            except RESTORE_ERRORS as error:
                errors[index] = failure_reason(error, path)
            finally:
                path.unlink(missing_ok=True)
        ready = [index for index in range(count) if prepared[index] is not None]
        results: Dict[int, Any] = {}
        try:
            for index, result in zip(ready, self.restorer.restore_prepared([prepared[i] for i in ready])):
                results[index] = result
        except RESTORE_ERRORS as error:
            for index in ready:
                errors[index] = one_line(error)
        for index in range(count):
            encoded, faces, background, timings = b"", "[]", "null", {}
            if index in results and not errors[index]:
                result = results[index]
                start = time.perf_counter()
                path = self.scratch / f"output{index}{Path(str(batch['target'][index])).suffix}"
                try:
                    write_result(path, result, loaded[index], overwrite=True)
                    encoded = path.read_bytes()
                except RESTORE_ERRORS as error:
                    errors[index] = failure_reason(error, path)
                finally:
                    path.unlink(missing_ok=True)
                faces = json.dumps([face.to_json() for face in result.faces])
                background = json.dumps(None if result.background_weight is None else round(result.background_weight, 4))
                timings = {**result.timings_ms, "encode": round((time.perf_counter() - start) * 1000, 2)}
            timings["read"] = float(batch["read_ms"][index])
            for key in ("source", "relative", "target"):
                out[key].append(str(batch[key][index]))
            out["encoded"].append(encoded)
            out["faces"].append(faces)
            out["background"].append(background)
            out["error"].append(errors[index])
            out["timings"].append(json.dumps(timings))
            out["worker"].append(self.worker)
        return out


def _write_stage(row: Dict[str, Any], dest_uri: Optional[str]) -> Dict[str, Any]:
    """Write the encoded photo; returns the manifest record (without the bytes)."""
    start = time.perf_counter()
    error = row["error"]
    if not error:
        try:
            if dest_uri is None:
                target = Path(row["target"])
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(target, overwrite=True) as handle:  # planned by the driver; a retry rewrites it
                    handle.write(row["encoded"])
            else:
                filesystem, _ = _filesystem(dest_uri)
                filesystem.create_dir(row["target"].rsplit("/", 1)[0], recursive=True)
                with filesystem.open_output_stream(row["target"]) as stream:
                    stream.write(row["encoded"])
        except Exception as failure:
            error = f"cannot write {row['target']} ({one_line(failure)})"
    timings = json.loads(row["timings"])
    timings["write"] = round((time.perf_counter() - start) * 1000, 2)
    faces = json.loads(row["faces"])
    return {"input": row["relative"], "status": "failed" if error else "done", "output": row["target"],
            "faces": len(faces), "face_boxes": [face["box"] for face in faces],
            "weights": [face["weight"] for face in faces], "background_weight": json.loads(row["background"]),
            "timings_ms": timings, "error": error or None,
            "worker": row["worker"]}


# ----------------------------------------------------------------------------------------------
# the run


def restore_with_ray(source: str, dest: str, options: Dict[str, Any], actors: int = 1, gpus_per_actor: float = 0.0,
                     cpus_per_actor: float = 1.0, batch_size: int = 4, address: Optional[str] = None,
                     manifest: Optional[str] = None, ext: Optional[str] = None, overwrite: bool = False,
                     max_pixels: Optional[int] = None, log: Optional[TextIO] = None) -> ArchiveSummary:
    """Restore every photo under ``source`` into ``dest`` on Ray (see the module docstring).

    Args:
        source, dest: local folders or URIs pyarrow opens (s3://bucket/prefix, file:///path, ...).
        options: FaceRestorer keyword arguments (model, weight, upscale, ...; as ``faceprior
            restore`` builds them), given to each actor.
        actors: size of the actor pool (one model each). gpus_per_actor, cpus_per_actor: what each
            actor reserves. batch_size: photos per batch (their faces share network forwards).
        address: a Ray cluster ("auto", "ray://host:10001"); None: $RAY_ADDRESS or a local instance.
        manifest: local path of the JSON-lines manifest (default: DEST/faceprior-manifest.jsonl
            for a local DEST; required for a URI).
        ext: output format (as --ext). overwrite: replace outputs that exist and are not done in
            the manifest (otherwise they are "failed: output exists").
        max_pixels: the decoder's limit (as --max-pixels). log: progress lines (default stderr).
    """
    log = log or sys.stderr
    if actors < 1 or batch_size < 1:
        raise OptionError(f"--actors and --batch-size must be >= 1, got {actors} and {batch_size}")
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ArchiveError(f"--engine ray needs the ray extra: pip install 'faceprior[ray]' ({error})") from None
    if manifest is None:
        if _is_uri(dest):
            raise ArchiveError(f"{dest}: give --manifest (a local file) for a destination that is not a local folder")
        manifest = str(Path(dest) / MANIFEST_NAME)
    start = time.perf_counter()
    items, problems = list_archive(source, dest, ext)
    book = Manifest(manifest)
    summary = ArchiveSummary(manifest=Path(manifest))
    for name, reason in problems:
        summary.failures.append((name, reason))
        print(f"faceprior: {name}: {reason}", file=log)
    todo = []
    for item in items:
        exists = _exists(item.target, dest)
        if exists and book.done(item.relative) is not None:
            summary.skipped += 1
        elif exists and not overwrite:
            reason = f"output {item.target} exists (use --overwrite)"
            book.append({"input": item.relative, "status": "failed", "output": item.target, "error": reason})
            summary.failures.append((item.relative, reason))
        else:
            todo.append(item)
    print(f"faceprior: {len(items)} photo(s) under {source}: {summary.skipped} done before, {len(todo)} to restore "
          f"on Ray ({actors} actor(s), batches of {batch_size})", file=log, flush=True)
    if todo:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        dataset = ray.data.from_items([item.__dict__ for item in todo], override_num_blocks=max(1, len(todo) // batch_size))
        # read and write are I/O: they reserve no CPU, so that actors holding every CPU cannot starve them
        dataset = dataset.map(_read_stage, fn_kwargs={"source_uri": source if _is_uri(source) else None}, num_cpus=0)
        dataset = dataset.map_batches(RestoreActor, fn_constructor_kwargs={"options": options, "max_pixels": max_pixels,
                                                             "threads": max(1, round(cpus_per_actor))},
                                      batch_size=batch_size, concurrency=actors, num_cpus=cpus_per_actor,
                                      num_gpus=gpus_per_actor or None, batch_format="numpy")
        dataset = dataset.map(_write_stage, fn_kwargs={"dest_uri": dest if _is_uri(dest) else None}, num_cpus=0)
        try:
            for record in dataset.iter_rows():
                record = _plain(record)
                book.append(record)
                if record["status"] == "done":
                    summary.images += 1
                    summary.faces += record["faces"]
                else:
                    summary.failures.append((record["input"], record["error"]))
                    print(f"faceprior: {record['input']}: {record['error']}", file=log, flush=True)
        finally:
            book.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _exists(target: str, dest: str) -> bool:
    if not _is_uri(dest):
        return Path(target).exists()
    import pyarrow.fs

    filesystem, _ = _filesystem(dest)
    return filesystem.get_file_info(target).type != pyarrow.fs.FileType.NotFound


def _plain(value: Any) -> Any:
    """A Ray Data row -> plain JSON types (numpy scalars and arrays to Python)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
