"""The HTTP API and the web page of ``faceprior serve`` (FastAPI; OpenAPI docs at /docs).

    GET    /                      the web page (self-contained: no CDN, works offline)
    GET    /health                the process answers
    GET    /ready                 200 once the default model is loaded, 503 before
    GET    /api/models            restoration models: licence, presence, fidelity control, default
    POST   /api/restore           restore one photo and wait: the image (default) or, with
                                  ?response=json, the job with its faces and a result URL
    POST   /api/jobs              queue one photo or video: 202 and the job (poll it)
    GET    /api/jobs/{id}         the job: status, faces (box, score, chosen weight), model, error
    GET    /api/jobs/{id}/result  the restored image of a finished job
    DELETE /api/jobs/{id}         cancel a job / drop its result

Uploads are multipart forms: ``file`` and the options of :mod:`faceprior.service.options`.
Limits, checked before any pixel is decoded: the request size (413), the file type from its
header (415), the pixel count from its header (413); then a bounded queue (429 when full) and a
wait limit for /api/restore (504, the job goes on). With a token, every /api request needs
``Authorization: Bearer TOKEN``. Every error is JSON ``{"error": "one line"}``, never a traceback.
"""

import asyncio
import logging
import secrets
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceprior.errors import FacepriorError, OptionError, one_line
from faceprior.imaging.io import DEFAULT_MAX_PIXELS, FORMAT_SUFFIXES, ImageReadError, ImageTooLargeError, UnsupportedImageError, probe_image
from faceprior.models import get_architecture
from faceprior.restoration.restorer import default_model_name
from faceprior.service.jobs import Job, JobQueue, QueueFull, RestorerCache
from faceprior.service.options import FIELDS, RestoreOptions, parse_options
from faceprior.version import __version__
from faceprior.weights.catalogue import entries, is_present

__all__ = ["ServiceError", "ServiceSettings", "available_models", "create_app"]

PAGE = Path(__file__).resolve().parent / "page.html"
LOG = logging.getLogger("faceprior.service")
#: Room for the multipart framing and the option fields around the file, in bytes.
FORM_OVERHEAD = 64 * 1024


class ServiceError(FacepriorError, RuntimeError):
    """An HTTP error with its status; its message is the JSON ``error``."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass
class ServiceSettings:
    """How the service runs. model: default model (None: the best present); token: required on
    /api when set; max_upload_bytes, max_pixels: upload limits; max_queue: waiting photos before
    429; batch_size: photos (and faces per forward) restored together; request_timeout: seconds
    /api/restore waits; result_ttl: seconds results are kept; work_dir: where the service makes
    its private folder (None: the system's temporary folder)."""

    model: Optional[str] = None
    token: Optional[str] = None
    device: str = "cpu"
    precision: str = "fp32"
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = min(DEFAULT_MAX_PIXELS, 50_000_000)
    max_queue: int = 16
    batch_size: int = 4
    request_timeout: float = 120.0
    result_ttl: float = 600.0
    work_dir: Optional[Path] = None
    preload: bool = True
    extra: dict = field(default_factory=dict)


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def available_models(default: Optional[str]) -> list[dict]:
    """The restoration models of the catalogue a client may pick: those on this machine (the
    service never downloads on a request)."""
    found = []
    for entry in entries("restoration"):
        if is_present(entry):
            found.append({"name": entry.name, "license": entry.license, "description": entry.description,
                          "default": entry.name == default,
                          "fidelity": bool(entry.arch) and get_architecture(entry.arch).capabilities.fidelity})
    return found


def create_app(settings: ServiceSettings, queue: Optional[JobQueue] = None) -> FastAPI:
    """The FastAPI application. ``queue``: a prepared JobQueue (tests); by default one is made
    from ``settings`` and its worker starts with the app."""
    # a new folder of its own (inside settings.work_dir when given), deleted when the service stops
    work_dir = Path(tempfile.mkdtemp(prefix="faceprior-serve-", dir=settings.work_dir))
    default_name = settings.model or default_model_name()
    if queue is None:
        restorers = RestorerCache(default_model=default_name, device=settings.device, precision=settings.precision,
                                  batch_size=settings.batch_size)
        queue = JobQueue(restorers, work_dir, max_queue=settings.max_queue, batch_size=settings.batch_size,
                         result_ttl=settings.result_ttl, max_pixels=settings.max_pixels)
    models = available_models(default_name)
    model_names = tuple(model["name"] for model in models)
    state = {"ready": not settings.preload}

    def preload() -> None:
        try:
            queue.restorers.get(RestoreOptions())
            state["ready"] = True
        except Exception as error:  # the service answers, /ready says why it is not ready
            state["error"] = one_line(error)
            LOG.exception("faceprior serve: the default model could not be loaded")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        if settings.preload:
            threading.Thread(target=preload, name="faceprior-preload", daemon=True).start()
        yield
        queue.stop()

    app = FastAPI(title="faceprior", version=__version__, lifespan=lifespan,
                  description="Blind face restoration with a generative facial prior (GFP-GAN and others). "
                  "Upload a photo, get it back with its faces restored.")
    app.state.queue = queue
    app.state.settings = settings

    # -- errors: JSON, one line, never a traceback ---------------------------------------

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _error(error.status, str(error), error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        LOG.exception("faceprior serve: internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (the server log has the details)")

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.token and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "")
            expected = f"Bearer {settings.token}"
            if not secrets.compare_digest(given.encode(), expected.encode()):
                return _error(401, "missing or wrong API token (send Authorization: Bearer TOKEN)",
                              {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    # -- page, health ----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/health", summary="The process answers")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", summary="Ready once the default model is loaded (503 before)")
    def ready() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"ready": True, "model": default_name, "auth": bool(settings.token)})
        return JSONResponse({"ready": False, "model": default_name, "error": state.get("error")}, status_code=503)

    @app.get("/api/models", summary="Restoration models on this machine, with their licences")
    def list_models() -> dict:
        return {"default": default_name, "models": models}

    # -- uploads ---------------------------------------------------------------------------

    async def receive(request: Request) -> Job:
        if not state["ready"]:
            raise ServiceError(503, "the model is still loading; try again shortly", {"Retry-After": "5"})
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise ServiceError(411, "send the upload with a Content-Length")
        if int(length) > settings.max_upload_bytes + FORM_OVERHEAD:
            raise ServiceError(413, f"upload too large ({int(length)} bytes; limit {settings.max_upload_bytes})")
        if not queue.has_room():
            raise ServiceError(429, f"the queue is full ({settings.max_queue} photos waiting); try again shortly",
                               {"Retry-After": "5"})
        try:
            form = await request.form(max_files=1, max_fields=len(FIELDS) + 1)
        except Exception as error:
            raise ServiceError(400, f"not a multipart form ({one_line(error)})") from None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ServiceError(422, "no file: send the photo as the form field 'file'")
            fields = {key: value for key, value in form.multi_items() if key != "file"}
            if any(not isinstance(value, str) for value in fields.values()):
                raise ServiceError(422, "only one file per request (the form field 'file')")
            try:
                options = parse_options(fields, model_names)
            except OptionError as error:
                raise ServiceError(422, str(error)) from None
            name = Path((upload.filename or "photo").replace("\\", "/")).name[:200] or "photo"
            job = queue.new_job(options, name, ".upload")
            try:
                size = await asyncio.to_thread(_copy_capped, upload.file, job.upload, settings.max_upload_bytes)
                if size == 0:
                    raise ServiceError(422, f"{name}: empty file")
                try:
                    file_format, width, height = await asyncio.to_thread(probe_image, job.upload, settings.max_pixels)
                    suffix = FORMAT_SUFFIXES[file_format]
                except ImageTooLargeError as error:
                    raise ServiceError(413, _client_message(error, job, name)) from None
                except UnsupportedImageError as error:
                    suffix = await asyncio.to_thread(_video_suffix, job.upload, settings.max_pixels)
                    if suffix is None:
                        raise ServiceError(415, _client_message(error, job, name) + "; or a video (MP4, MOV, MKV, "
                                           "WebM, AVI) where faceprior[video] is installed") from None
                    if options.format:
                        raise ServiceError(422, "format applies to photos; a video keeps its container") from None
                    job.kind = "video"
                except ImageReadError as error:
                    raise ServiceError(422, _client_message(error, job, name)) from None
                typed = job.upload.with_suffix(suffix)
                job.upload.rename(typed)
                job.upload = typed
                try:
                    return queue.submit(job)
                except QueueFull as error:
                    raise ServiceError(429, str(error), {"Retry-After": "5"}) from None
            except BaseException:
                queue.discard(job)
                raise
        finally:
            await form.close()

    def job_json(job: Job) -> dict:
        data = job.to_json()
        data["status_url"] = f"/api/jobs/{job.id}"
        data["result_url"] = f"/api/jobs/{job.id}/result" if job.status == "done" else None
        return data

    def image_response(job: Job) -> FileResponse:
        faces = job.report["faces"]  # a photo's list of faces; a video's count of restored faces
        return FileResponse(job.output, media_type=job.media_type, filename=job.download_name(),
                            headers={"X-Faceprior-Job": job.id, "Cache-Control": "no-store",
                                     "X-Faceprior-Faces": str(faces if isinstance(faces, int) else len(faces))})

    @app.post("/api/restore", summary="Restore one photo and wait for it",
              description="Multipart form: `file` and the options (model, weight, fidelity, upscale, "
              "only_center_face, faces, keep_tone, keep_white_balance, surroundings, background, refine_landmarks, "
              "format). Returns the restored image, or with `?response=json` the job "
              "(faces with boxes, scores and chosen weights; `result_url`).")
    async def restore(request: Request, response: str = "image") -> Response:
        if response not in ("image", "json"):
            raise ServiceError(422, f"response: expected image or json, got {response!r}")
        job = await receive(request)
        finished = await asyncio.to_thread(job.done.wait, settings.request_timeout)
        if not finished:
            return _error(504, f"not finished within {settings.request_timeout:g} s; the job goes on: "
                          f"poll /api/jobs/{job.id}", {"X-Faceprior-Job": job.id})
        if job.status != "done":
            return _error(422, job.error or "restoration failed", {"X-Faceprior-Job": job.id})
        return JSONResponse(job_json(job)) if response == "json" else image_response(job)

    @app.post("/api/jobs", status_code=202, summary="Queue one photo; poll the job")
    async def submit(request: Request) -> JSONResponse:
        job = await receive(request)
        return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    def find(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise ServiceError(404, f"no job {job_id[:40]!r} (unknown, or its result expired)")
        return job

    @app.get("/api/jobs/{job_id}", summary="A job's status, faces and chosen weights")
    def status(job_id: str) -> dict:
        return job_json(find(job_id))

    @app.get("/api/jobs/{job_id}/result", summary="The restored image of a finished job")
    def result(job_id: str) -> Response:
        job = find(job_id)
        if job.status in ("queued", "running"):
            raise ServiceError(409, f"job {job.id} is {job.status}; poll /api/jobs/{job.id}", {"Retry-After": "1"})
        if job.status != "done" or job.output is None or not job.output.is_file():
            raise ServiceError(410 if job.status == "cancelled" else 422, job.error or "no result")
        return image_response(job)

    @app.delete("/api/jobs/{job_id}", summary="Cancel a job, or drop its result")
    def cancel(job_id: str) -> dict:
        find(job_id)
        return job_json(queue.cancel(job_id))

    return app


def _copy_capped(source, target: Path, limit: int) -> int:
    """Copy an upload's file object to ``target``; ServiceError 413 past ``limit`` bytes."""
    copied = 0
    with open(target, "xb") as handle:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                return copied
            copied += len(chunk)
            if copied > limit:
                raise ServiceError(413, f"upload too large (more than {limit} bytes)")
            handle.write(chunk)


def _video_suffix(path: Path, max_pixels: int) -> Optional[str]:
    """The output suffix of an uploaded video, None if it is not one (or PyAV is missing);
    ServiceError 413 for frames of more than ``max_pixels``."""
    from faceprior.imaging.video import VideoError, probe_video

    try:
        info = probe_video(path)  # VideoError without PyAV, too
    except VideoError:
        return None
    if info.suffix is not None and info.width * info.height > max_pixels:
        raise ServiceError(413, f"video frames too large ({info.width}x{info.height}; limit {max_pixels} pixels)")
    return info.suffix


def _client_message(error: Exception, job: Job, name: str) -> str:
    """An error message with the server's file path replaced by the client's file name."""
    return one_line(error).replace(str(job.upload), name)

