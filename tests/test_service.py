"""faceprior serve: every endpoint of the HTTP API and every bad input (in-process client)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from faceprior.cli import main as cli_main  # noqa: E402
from faceprior.cli.serve import is_loopback  # noqa: E402
from faceprior.errors import OptionError  # noqa: E402
from faceprior.service.app import ServiceSettings, create_app  # noqa: E402
from faceprior.service.jobs import JobQueue, RestorerCache  # noqa: E402
from faceprior.service.options import RestoreOptions, parse_options  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "examples" / "astronaut-old-print.jpg"


def png_bytes(width: int, height: int, noise: bool = True) -> bytes:
    """A PNG of random pixels (noise) or of one colour (a few hundred bytes at any size)."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8) if noise else \
        np.full((height, width, 3), 90, np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_ready(client: TestClient, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One real service (bundled model) for the tests that restore."""
    work = tmp_path_factory.mktemp("service")
    app = create_app(ServiceSettings(work_dir=work, result_ttl=600))
    with TestClient(app) as client:
        wait_ready(client)
        yield client, work


def no_server_paths(text: str, work: Path) -> bool:
    return str(work) not in text and "/tmp" not in text and "upload." not in text


# ---- restoring ---------------------------------------------------------------------------


def test_restore_returns_the_cli_output_byte_for_byte(service, tmp_path):
    client, work = service
    response = client.post("/api/restore", files={"file": ("old print.jpg", PHOTO.read_bytes())},
                           data={"weight": "0.7", "format": "png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.headers["x-faceprior-faces"] == "1"
    assert "filename*=utf-8''old%20print_restored.png" in response.headers["content-disposition"]
    assert cli_main(["restore", str(PHOTO), "-o", str(tmp_path / "cli"), "--weight", "0.7", "--ext", "png"]) == 0
    assert response.content == (tmp_path / "cli" / "astronaut-old-print.png").read_bytes()


def test_json_result_has_faces_boxes_scores_and_weights(service, tmp_path):
    client, work = service
    response = client.post("/api/restore?response=json", files={"file": ("a.jpg", PHOTO.read_bytes())})
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "done" and job["model"] == "faceprior-256" and job["model_license"]
    (face,) = job["faces"]
    assert len(face["box"]) == 4 and 0.9 < face["score"] <= 1 and 0 <= face["weight"] <= 1
    assert no_server_paths(response.text, work)
    image = client.get(job["result_url"])
    assert cli_main(["restore", str(PHOTO), "-o", str(tmp_path / "cli"), "--report"]) == 0
    assert image.content == (tmp_path / "cli" / "astronaut-old-print.jpg").read_bytes()


def test_job_api_submit_poll_fetch_cancel_and_faces_none(service):
    client, work = service
    submitted = client.post("/api/jobs", files={"file": ("a.jpg", PHOTO.read_bytes())}, data={"faces": "none"})
    assert submitted.status_code == 202 and submitted.headers["location"] == submitted.json()["status_url"]
    job = submitted.json()
    while job["status"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(job["status_url"]).json()
    assert job["status"] == "done" and job["faces"] == []  # no face restored: the photo comes back as it was read
    result = client.get(f"/api/jobs/{job['id']}/result")
    assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == Image.open(PHOTO).size
    cancelled = client.delete(job["status_url"])
    assert cancelled.json()["status"] == "cancelled"
    assert client.get(f"/api/jobs/{job['id']}/result").status_code == 410
    assert not (work / job["id"]).exists()
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404


def test_health_ready_models_docs_and_page(service):
    client, _ = service
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["ready"] is True
    models = client.get("/api/models").json()
    assert models["default"] == "faceprior-256"
    assert [m["name"] for m in models["models"]] == ["faceprior-256"] and models["models"][0]["license"]
    assert "/api/restore" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text  # no CDN


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("files, data, status, message", [
    ({"file": ("a.txt", b"just some text")}, {}, 415, "not a recognised image file"),
    ({"file": ("a.png", b"")}, {}, 422, "empty file"),
    ({"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)}, {}, 415, "a.png: not a recognised image file"),
    ({"file": ("cut.png", png_bytes(64, 64)[:90])}, {}, 422, "truncated or corrupt image data"),
    ({}, {"weight": "0.5"}, 422, "no file"),
    ({"file": ("a.jpg", b"x")}, {"weight": "2"}, 422, "weight: expected a number in [0, 1]"),
    ({"file": ("a.jpg", b"x")}, {"model": "../../etc/passwd"}, 422, "unknown model"),
    ({"file": ("a.jpg", b"x")}, {"output": "/etc/x.png"}, 422, "unknown option(s) output"),
    ({"file": ("a.jpg", b"x")}, {"format": "gif"}, 422, "format: expected one of png, jpg, webp"),
    ({"file": ("a.jpg", b"x")}, {"upscale": "40"}, 422, "upscale"),
    ({"file": ("a.jpg", b"x")}, {"faces": "first"}, 422, "faces"),
])
def test_bad_uploads_are_json_errors(service, files, data, status, message):
    client, work = service
    response = client.post("/api/restore", files=files or None, data=data)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and message in body["error"] and "Traceback" not in body["error"]
    assert no_server_paths(response.text, work)


def test_two_files_and_a_non_form_body_are_refused(service):
    client, _ = service
    two = client.post("/api/restore", files=[("file", ("a.jpg", PHOTO.read_bytes())), ("file", ("b.jpg", b"x"))])
    assert two.status_code in (400, 422) and "error" in two.json()
    raw = client.post("/api/restore", content=b"not a form", headers={"content-type": "text/plain"})
    assert raw.status_code in (400, 422) and "error" in raw.json()
    chunked = client.post("/api/restore", content=iter([b"abc"]), headers={"content-type": "multipart/form-data"})
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["error"]


def test_limits_are_checked_before_decoding(tmp_path, monkeypatch):
    decoded = []
    import faceprior.restoration.batch as batch

    real_read = batch.read_image
    monkeypatch.setattr(batch, "read_image", lambda *a, **k: decoded.append(a) or real_read(*a, **k))
    app = create_app(ServiceSettings(work_dir=tmp_path, max_upload_bytes=200_000, max_pixels=1_000_000))
    with TestClient(app) as client:
        wait_ready(client)
        big_file = client.post("/api/restore", files={"file": ("big.bin", b"\xff" * 300_000)})
        assert big_file.status_code == 413 and "upload too large" in big_file.json()["error"]
        bomb = client.post("/api/restore", files={"file": ("bomb.png", png_bytes(1200, 1000, noise=False))})
        assert bomb.status_code == 413 and "image too large (1200x1000" in bomb.json()["error"]
        assert "bomb.png" in bomb.json()["error"]
    assert decoded == []  # neither reached the decoder
    assert list(tmp_path.iterdir()) == []  # the service's own folder is gone after it stops


# ---- queue, timeouts, readiness, tokens, expiry --------------------------------------------


class Gate:
    """A run_batch that holds the worker until released, then 'restores' by copying."""

    def __init__(self):
        self.release = threading.Event()
        self.batches = []

    def __call__(self, jobs):
        self.batches.append([job.id for job in jobs])
        self.release.wait(30)
        for job in jobs:
            job.output = job.upload
            job.report = {"model": "fake", "model_license": "none", "faces": [], "timings_ms": {}}


def gated_app(tmp_path, **settings):
    gate = Gate()
    queue = JobQueue(RestorerCache(), tmp_path / "work", max_queue=settings.pop("max_queue", 2),
                     batch_size=settings.pop("batch_size", 4), result_ttl=settings.pop("result_ttl", 600),
                     run_batch=gate)
    return create_app(ServiceSettings(preload=False, **settings), queue=queue), gate


def test_a_full_queue_is_429_and_equal_options_share_a_batch(tmp_path):
    app, gate = gated_app(tmp_path, max_queue=2)
    with TestClient(app) as client:
        photo = PHOTO.read_bytes()
        first = client.post("/api/jobs", files={"file": ("a.jpg", photo)}).json()
        while client.get(first["status_url"]).json()["status"] != "running":
            time.sleep(0.01)
        waiting = [client.post("/api/jobs", files={"file": (f"{i}.jpg", photo)}, data=data).json()
                   for i, data in enumerate([{}, {"weight": "0.3"}])]
        full = client.post("/api/jobs", files={"file": ("c.jpg", photo)})
        assert full.status_code == 429 and full.headers["retry-after"] and "queue is full" in full.json()["error"]
        busy = client.get(f"/api/jobs/{first['id']}/result")
        assert busy.status_code == 409
        cancelled = client.delete(waiting[1]["status_url"]).json()
        assert cancelled["status"] == "cancelled"
        gate.release.set()
        while client.get(waiting[0]["status_url"]).json()["status"] != "done":
            time.sleep(0.01)
        assert client.get(f"/api/jobs/{waiting[0]['id']}/result").content == photo
    assert gate.batches == [[first["id"]], [waiting[0]["id"]]]  # the cancelled job never ran


def test_a_slow_restore_is_504_and_the_job_goes_on(tmp_path):
    app, gate = gated_app(tmp_path, request_timeout=0.2)
    with TestClient(app) as client:
        response = client.post("/api/restore", files={"file": ("a.jpg", PHOTO.read_bytes())})
        assert response.status_code == 504 and "poll /api/jobs/" in response.json()["error"]
        job_id = response.headers["x-faceprior-job"]
        gate.release.set()
        while client.get(f"/api/jobs/{job_id}").json()["status"] != "done":
            time.sleep(0.01)


def test_not_ready_is_503(tmp_path):
    release = threading.Event()

    class SlowRestorers(RestorerCache):
        def get(self, options):
            release.wait(30)
            raise RuntimeError("no model")

    queue = JobQueue(SlowRestorers(), tmp_path / "work")
    app = create_app(ServiceSettings(), queue=queue)
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503
        refused = client.post("/api/restore", files={"file": ("a.jpg", PHOTO.read_bytes())})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/ready").json().get("error") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/ready").json()["error"] == "no model"


def test_a_token_guards_the_api(tmp_path):
    app, gate = gated_app(tmp_path, token="s3cret")
    gate.release.set()
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200 and client.get("/ready").json()["auth"] is True
        assert client.get("/api/models").status_code == 401
        assert client.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        refused = client.post("/api/restore", files={"file": ("a.jpg", PHOTO.read_bytes())})
        assert refused.status_code == 401 and "token" in refused.json()["error"]


def test_results_expire_and_their_files_go(tmp_path):
    app, gate = gated_app(tmp_path, result_ttl=0.2)
    gate.release.set()
    with TestClient(app) as client:
        job = client.post("/api/jobs", files={"file": ("a.jpg", PHOTO.read_bytes())}).json()
        while client.get(job["status_url"]).status_code == 200 and \
                client.get(job["status_url"]).json()["status"] != "done":
            time.sleep(0.01)
        time.sleep(0.4)
        assert client.get(job["status_url"]).status_code == 404
        work = app.state.queue.work_dir
        assert not (work / job["id"]).exists()


def test_a_failing_restoration_is_a_json_error_and_the_service_goes_on(tmp_path):
    calls = []

    def broken(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise ValueError("boom")
        for job in jobs:
            job.output = job.upload
            job.report = {"faces": []}

    queue = JobQueue(RestorerCache(), tmp_path / "work", run_batch=broken)
    app = create_app(ServiceSettings(preload=False), queue=queue)
    with TestClient(app) as client:
        failed = client.post("/api/restore", files={"file": ("a.jpg", PHOTO.read_bytes())})
        assert failed.status_code == 422 and "internal error (ValueError: boom)" in failed.json()["error"]
        assert client.post("/api/restore", files={"file": ("a.jpg", PHOTO.read_bytes())}).status_code == 200


# ---- options and the command ---------------------------------------------------------------


def test_options_parse_and_refuse():
    options = parse_options({"weight": "0.25", "faces": "2,0,2", "only_center_face": "true", "format": "JPEG",
                             "model": "codeformer", "fidelity": "0.7", "keep_tone": "false", "surroundings": "on",
                             "keep_white_balance": "true", "refine_landmarks": "false"}, ("codeformer",))
    assert options == RestoreOptions(model="codeformer", weight=0.25, fidelity=0.7, only_center_face=True,
                                     faces=(0, 2), keep_tone=False, keep_white_balance=True, surroundings=True,
                                     refine_landmarks=False, format="jpg")
    assert parse_options({}, ()) == RestoreOptions() and RestoreOptions().keep_tone and not RestoreOptions().surroundings
    assert not RestoreOptions().keep_white_balance and RestoreOptions().refine_landmarks
    assert parse_options({"faces": "none"}, ()).faces == ()
    for fields in ({"faces": "-1"}, {"only_center_face": "maybe"}, {"fidelity": "nan"}, {"path": "x"},
                   {"surroundings": "perhaps"}):
        with pytest.raises(OptionError):
            parse_options(fields, ())


def test_serve_refuses_other_addresses_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("FACEPRIOR_TOKEN", raising=False)
    assert cli_main(["serve", "--host", "0.0.0.0"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "set an API token" in error
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_faces_restores_only_the_chosen_positions(tmp_path):
    from faceprior.restoration.restorer import select_faces

    boxes = np.array([[0, 0, 10, 10], [0, 0, 40, 40], [0, 0, 20, 20]], np.float32)
    landmarks = np.tile(np.array([[1, 1], [9, 1], [5, 5], [2, 8], [8, 8]], np.float32), (3, 1, 1)) * [[[4, 4]]]
    kept, _, _ = select_faces(boxes, np.ones(3), landmarks, (100, 100), face_indices=[2, 0, 7])
    assert kept.tolist() == [[0, 0, 40, 40], [0, 0, 10, 10]]  # positions 0 and 2 of largest-first; 7 ignored
    assert cli_main(["restore", str(PHOTO), "-o", str(tmp_path / "none"), "--faces", "5", "--report"]) == 0
    report = (tmp_path / "none" / "reports" / "astronaut-old-print.json").read_text()
    assert '"faces": []' in report


@pytest.mark.slow
def test_a_video_job_returns_the_cli_video(service, tmp_path, monkeypatch):
    """The job restores exactly the CLI's frames. The files are compared decoded, not byte for byte:
    libx264's macroblock-tree rate control does not give one bitstream for identical frames
    (docs/video.md, "Reproducible files")."""
    pytest.importorskip("av", reason="videos need PyAV: pip install 'faceprior[video]'")
    from video_clips import make_clip

    from faceprior.imaging.io import read_image
    from faceprior.imaging.video import VideoTranscoder, probe_video, read_frames

    written: list[str] = []
    encode = VideoTranscoder.write

    def recording_write(self, pixels, frame):
        written.append(hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest())
        return encode(self, pixels, frame)

    monkeypatch.setattr(VideoTranscoder, "write", recording_write)
    photo = read_image(PHOTO).pixels
    clip = make_clip(tmp_path / "clip.mp4", photo, photo[:, ::-1], size=(160, 96), frames=(6, 3), audio=False)
    client, work = service
    data = clip.path.read_bytes()
    refused = client.post("/api/jobs", files={"file": ("clip.bin", data)}, data={"format": "png"})
    assert refused.status_code == 422 and "a video keeps its container" in refused.json()["error"]
    job = client.post("/api/jobs", files={"file": ("holiday clip.bin", data)}).json()
    assert job["kind"] == "video"
    while job["status"] in ("queued", "running"):
        time.sleep(0.1)
        job = client.get(job["status_url"]).json()
    assert job["status"] == "done" and job["frames"] == 9 and job["faces"] >= 1
    result = client.get(job["result_url"])
    assert result.headers["content-type"] == "video/mp4" and "holiday%20clip_restored.mp4" in result.headers["content-disposition"]
    (tmp_path / "got.mp4").write_bytes(result.content)
    assert probe_video(tmp_path / "got.mp4").frames == 9
    from_service, written[:] = list(written), []
    assert cli_main(["restore", str(clip.path), "-o", str(tmp_path / "cli")]) == 0
    assert len(from_service) == 9 and written == from_service
    got = np.stack([frame.pixels for frame in read_frames(tmp_path / "got.mp4")]).astype(np.float64)
    cli = np.stack([frame.pixels for frame in read_frames(tmp_path / "cli" / "clip.mp4")]).astype(np.float64)
    assert got.shape == cli.shape and 10 * np.log10(255 ** 2 / max(((got - cli) ** 2).mean(), 1e-9)) > 35


def test_the_tone_and_surroundings_options_reach_the_restorer():
    restorers = RestorerCache(default_model="faceprior-256")  # the bundled model: framed tighter than FFHQ
    plain = restorers.get(RestoreOptions())
    changed = restorers.get(RestoreOptions(keep_tone=False, keep_white_balance=True, surroundings=True,
                                           refine_landmarks=False))
    assert plain.keep_tone and not changed.keep_tone and changed is not plain
    assert not plain.keep_white_balance and changed.keep_white_balance
    assert plain.landmark_refiner is not None and changed.landmark_refiner is None
    assert plain.surroundings_template is None and changed.surroundings_template is not None
