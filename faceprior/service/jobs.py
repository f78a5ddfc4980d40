"""The service's work: a bounded queue of restoration jobs, one worker thread, expiring results.

A job is one uploaded photo (or video, with the ``video`` extra) and its :class:`RestoreOptions`. The worker takes the oldest queued
job together with the other queued jobs that have the same options (up to ``batch_size``) and
restores them in one :func:`faceprior.restoration.batch.restore_files` call (videos:
``restore_videos``), so their faces share network forwards and each output is exactly what
``faceprior restore`` writes for that file with those options. Every file lives in the service's own work folder under names the service
chooses (``<work>/<job id>/upload.<ext>``, ``<work>/out/<job id>/...``); a job's folder is deleted
when it is cancelled, fetched past its expiry, or swept. Nothing here sees a path from a client.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from faceprior.errors import FacepriorError
from faceprior.restoration.batch import InputFile, plan_outputs, planned_report_path, restore_files, restore_videos
from faceprior.restoration.restorer import FaceRestorer, make_detector
from faceprior.service.options import RestoreOptions

__all__ = ["Job", "JobQueue", "QueueFull", "RestorerCache"]

STATUSES = ("queued", "running", "done", "failed", "cancelled")


class QueueFull(FacepriorError, RuntimeError):
    """The queue holds its maximum of waiting jobs (HTTP 429)."""


@dataclass
class Job:
    """One photo (or video) to restore. ``name``: the client's file name (display only, never a
    path). ``kind``: "image" or "video". ``report``: the JSON report of ``faceprior restore
    --report`` once done (photos: faces with box, landmarks, score, weight; videos: frames, faces,
    tracks), without paths."""

    id: str
    options: RestoreOptions
    folder: Path
    upload: Path
    name: str
    kind: str = "image"
    created: float = field(default_factory=time.time)
    status: str = "queued"
    started: Optional[float] = None
    finished: Optional[float] = None
    error: Optional[str] = None
    output: Optional[Path] = None
    report: Optional[dict] = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def media_type(self) -> str:
        suffix = (self.output or self.upload).suffix.lower().lstrip(".")
        return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff", "mp4": "video/mp4",
                "mkv": "video/x-matroska", "webm": "video/webm", "avi": "video/x-msvideo"}.get(suffix, "application/octet-stream")

    def download_name(self) -> str:
        stem = Path(self.name).stem or "photo"
        suffix = (self.output or self.upload).suffix
        return f"{stem}_restored{suffix}"

    def to_json(self) -> dict:
        """The job as a client sees it: no server paths."""
        report = self.report or {}
        data = {"id": self.id, "kind": self.kind, "status": self.status, "name": self.name,
                "options": self.options.to_json(), "created": self.created, "started": self.started,
                "finished": self.finished, "error": self.error, "model": report.get("model"),
                "model_license": report.get("model_license"), "faces": report.get("faces"),
                "background_weight": report.get("background_weight"), "timings_ms": report.get("timings_ms")}
        if self.kind == "video":
            data.update({key: report.get(key) for key in ("frames", "restored_frames", "tracks", "scene_cuts")})
        return data


class RestorerCache:
    """FaceRestorers by options, sharing one detector and one loaded network per model.

    ``default_model``: the model of requests that name none (None: the best one present).
    ``size``: restorers kept (least recently used dropped); a restorer is cheap once its model
    is loaded, the networks stay loaded for the life of the service.
    """

    def __init__(self, default_model: Optional[str] = None, device: str = "cpu", precision: str = "fp32",
                 batch_size: int = 4, size: int = 8):
        self.default_model = default_model
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.size = size
        self._detector = None
        self._descriptors: Dict[Optional[str], object] = {}
        self._restorers: "OrderedDict[RestoreOptions, FaceRestorer]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, options: RestoreOptions) -> FaceRestorer:
        with self._lock:
            key = dataclasses.replace(options, format=None)  # the output format does not change the restorer
            if key in self._restorers:
                self._restorers.move_to_end(key)
                return self._restorers[key]
            if self._detector is None:
                self._detector = make_detector("mtcnn", self.device)
            model = options.model or self.default_model
            restorer = FaceRestorer(model=self._descriptors.get(model, model), detector=self._detector,
                                    upscale=options.upscale, weight=options.weight, fidelity=options.fidelity,
                                    only_center_face=options.only_center_face, faces=options.faces,
                                    keep_tone=options.keep_tone, keep_white_balance=options.keep_white_balance,
                                    surroundings=options.surroundings,
                                    background=options.background, refine_landmarks=options.refine_landmarks,
                                    batch_size=self.batch_size, device=self.device, precision=self.precision)
            self._descriptors.setdefault(model, restorer.descriptor)
            self._restorers[key] = restorer
            while len(self._restorers) > self.size:
                self._restorers.popitem(last=False)
            return restorer


class JobQueue:
    """Jobs by id, a bounded queue and the worker thread that runs them.

    work_dir: the service's private folder (created). max_queue: most jobs waiting (not yet
    running); more is QueueFull. batch_size: most jobs restored together. result_ttl: seconds a
    finished job (and its files) is kept. max_pixels: the decoder's limit (as --max-pixels).
    ``run_batch`` (tests): replaces the restoration of a batch of jobs with the same options.
    """

    def __init__(self, restorers: RestorerCache, work_dir: Path, max_queue: int = 16, batch_size: int = 4,
                 result_ttl: float = 600.0, max_pixels: Optional[int] = None,
                 run_batch: Optional[Callable[[List[Job]], None]] = None):
        self.restorers = restorers
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.result_ttl = result_ttl
        self.max_pixels = max_pixels
        self.run_batch = run_batch or self._restore_batch
        self.jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.completed = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="faceprior-service-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- jobs -----------------------------------------------------------------------------

    def new_job(self, options: RestoreOptions, name: str, suffix: str = ".upload") -> Job:
        """A job and its folder; the caller writes the upload to ``job.upload`` and then
        :meth:`submit` s it (or :meth:`discard` s it)."""
        job_id = uuid.uuid4().hex
        folder = self.work_dir / job_id
        folder.mkdir()
        return Job(job_id, options, folder, folder / f"upload{suffix}", name)

    def queued(self) -> int:
        return sum(1 for job in self.jobs.values() if job.status == "queued")

    def has_room(self) -> bool:
        with self._condition:
            self._sweep()
            return self.queued() < self.max_queue

    def submit(self, job: Job) -> Job:
        with self._condition:
            self._sweep()
            if self.queued() >= self.max_queue:
                self.discard(job)
                raise QueueFull(f"the queue is full ({self.max_queue} photos waiting); try again shortly")
            self.jobs[job.id] = job
            self._condition.notify_all()
        return job

    def discard(self, job: Job) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)
        shutil.rmtree(self.work_dir / "out" / job.id, ignore_errors=True)

    def get(self, job_id: str) -> Optional[Job]:
        with self._condition:
            self._sweep()
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Optional[Job]:
        """Cancel a queued job (it never runs) or drop a running / finished one's result."""
        with self._condition:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job.status in ("queued", "running", "done", "failed"):
                job.status = "cancelled"
                job.finished = job.finished or time.time()
                job.error = job.error or "cancelled by the client"
                job.output = None
                job.done.set()
                self.discard(job)
            return job

    def _sweep(self) -> None:
        """Forget finished jobs older than result_ttl and delete their files (lock held)."""
        now = time.time()
        for job_id in [job_id for job_id, job in self.jobs.items()
                       if job.finished is not None and now - job.finished > self.result_ttl]:
            self.discard(self.jobs.pop(job_id))

    # -- the worker -----------------------------------------------------------------------

    def _next_batch(self) -> List[Job]:
        queued = [job for job in self.jobs.values() if job.status == "queued"]
        if not queued:
            return []
        first = queued[0]
        batch = [job for job in queued if job.options == first.options and job.kind == first.kind][:self.batch_size]
        for job in batch:
            job.status, job.started = "running", time.time()
        return batch

    def _loop(self) -> None:
        while True:
            with self._condition:
                batch = self._next_batch()
                while not batch and not self._stopping:
                    self._condition.wait(timeout=5.0)
                    self._sweep()
                    batch = self._next_batch()
                if self._stopping:
                    return
            try:
                self.run_batch(batch)
            except Exception as error:  # a bug: the jobs fail with its message, the service goes on
                for job in batch:
                    job.error = job.error or f"internal error ({type(error).__name__}: {error})"
                    job.status = "failed" if job.status == "running" else job.status
            with self._condition:
                for job in batch:
                    if job.status == "running":
                        job.status = "done" if job.output is not None else "failed"
                    if job.status == "cancelled":
                        self.discard(job)
                    job.finished = time.time()
                    job.done.set()
                    self.completed += 1
                self._condition.notify_all()

    def _restore_batch(self, jobs: List[Job]) -> None:
        """Restore jobs with equal options as ``faceprior restore`` would, into <work>/out/<id>/."""
        options = jobs[0].options
        restorer = self.restorers.get(options)
        out_dir = self.work_dir / "out"
        inputs = [InputFile(job.upload, Path(job.id) / job.upload.name) for job in jobs]
        plans, conflicts = plan_outputs(inputs, out_dir, ext=options.format, save_report=True)
        if conflicts:
            raise RuntimeError("; ".join(conflicts))
        if jobs[0].kind == "video":
            summary = restore_videos(restorer, plans, out_dir, save_report=True, log=io.StringIO())
        else:
            summary = restore_files(restorer, plans, out_dir, save_report=True, max_pixels=self.max_pixels,
                                    log=io.StringIO())
        failures = dict(summary.failures)
        for job, plan in zip(jobs, plans):
            if job.status == "cancelled":
                continue
            report_path = planned_report_path(out_dir, plan)
            if plan.target.is_file() and report_path.is_file():
                job.output = plan.target
                job.report = json.loads(report_path.read_text(encoding="utf-8"))
                job.report.pop("input", None)
                job.report.pop("output", None)
            else:
                reason = next((reason for name, reason in failures.items() if job.id in name), "restoration failed")
                job.error = reason.replace(str(job.upload), job.name).replace(str(job.folder), "")
