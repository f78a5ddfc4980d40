"""faceprior restore --engine ray on a local Ray instance started here (2 CPUs): outputs equal the
single-process outputs (to one level where faces were batched with other photos' faces), a killed worker is retried without losing or duplicating
anything, a re-run does no work, bad files are recorded, URIs are listed with pyarrow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from faceprior.archive.manifest import Manifest  # noqa: E402
from faceprior.archive.ray_restore import MANIFEST_NAME, list_archive, restore_with_ray  # noqa: E402
from faceprior.cli import main as cli_main  # noqa: E402
from faceprior.imaging.io import read_image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WHOLE = REPO.parent / "shared" / "data" / "realworld-whole"
OPTIONS = {"model": None, "batch_size": 4}


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def actor_pids() -> list[int]:
    """Processes of Ray Data's restore actors (their command line names the actor class)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"RestoreActor" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def manifest_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not WHOLE.is_dir(), reason=f"needs {WHOLE} (../shared/data)")
def test_realworld_whole_on_ray_equals_one_process_even_with_a_killed_worker(local_ray, tmp_path):
    # The single-process reference, with the actors' one torch thread (float reductions depend on it).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["restore", str(WHOLE), "-o", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    expected = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())

    out = tmp_path / "ray"
    manifest = out / MANIFEST_NAME
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(
        summary=restore_with_ray(str(WHOLE), str(out), OPTIONS, actors=1, batch_size=4)))
    run.start()
    killed = []
    deadline = time.monotonic() + 600
    while run.is_alive() and not killed:  # kill the actor once some photos are done
        assert time.monotonic() < deadline
        if len(manifest_lines(manifest)) >= 6:
            for pid in actor_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.2)
    run.join(timeout=900)
    assert killed, "the run ended before a worker could be killed"
    summary = outcome["summary"]
    assert summary.failures == [] and summary.images == len(expected) and summary.skipped == 0

    records = manifest_lines(manifest)
    assert sorted(r["input"] for r in records) == sorted(p.as_posix() for p in expected)  # each once: none lost or doubled
    assert all(r["status"] == "done" for r in records)
    assert all(0 <= r["background_weight"] <= 1 for r in records)  # how much the photo around the faces got
    assert len({r["worker"] for r in records}) == 2  # the restarted actor did the rest
    for relative in expected:  # faces share forwards across photos, and the restarted actor groups
        # photos otherwise than the single process: float rounding of a batched forward may move a
        # pixel by one level (FaceRestorer.restore_many's contract), nothing more
        ours, theirs = read_image(out / relative).pixels, read_image(tmp_path / "one" / relative).pixels
        assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, relative
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
                and p.relative_to(out) not in expected]  # no temporaries or strays

    # A re-run does no work.
    started = time.perf_counter()
    again = restore_with_ray(str(WHOLE), str(out), OPTIONS, actors=1, batch_size=4)
    assert again.images == 0 and again.skipped == len(expected) and again.failures == []
    assert time.perf_counter() - started < 10
    assert len(manifest_lines(manifest)) == len(records)


@pytest.mark.slow
def test_bad_files_are_recorded_and_uris_are_listed(local_ray, tmp_path, capsys):
    source = tmp_path / "scans"
    (source / "box 1").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "astronaut-web.jpg", source / "box 1" / "good.jpg")
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (source / ".hidden.jpg").write_bytes(b"x")
    (source / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    assert cli_main(["restore", str(source), "-o", str(out), "--engine", "ray", "--ext", "png"]) == 1
    error = capsys.readouterr().err
    assert "faceprior: broken.jpg: " in error and "Traceback" not in error
    records = {r["input"]: r for r in manifest_lines(out / MANIFEST_NAME)}
    assert set(records) == {"box 1/good.jpg", "broken.jpg"}
    assert records["box 1/good.jpg"]["status"] == "done" and records["box 1/good.jpg"]["faces"] >= 1
    assert records["broken.jpg"]["status"] == "failed" and (out / "box 1" / "good.png").is_file()
    assert not (out / "broken.png").exists()

    # A re-run tries the failed file again and skips the done one.
    assert cli_main(["restore", str(source), "-o", str(out), "--engine", "ray", "--ext", "png"]) == 1
    assert "1 skipped (done before), 1 failed" in capsys.readouterr().err

    # The same folder as a file:// URI goes through pyarrow's listing, with the same names.
    items, problems = list_archive(source.as_uri(), str(tmp_path / "uri-out"), ext="png")
    assert [item.relative for item in items] == ["box 1/good.jpg", "broken.jpg"] and problems == []
    assert items[0].target == str(tmp_path / "uri-out" / "box 1" / "good.png")
    uri_out = tmp_path / "uri-out"
    summary = restore_with_ray(source.as_uri(), str(uri_out), OPTIONS, ext="png")
    assert summary.images == 1 and [name for name, _ in summary.failures] == ["broken.jpg"]
    assert (uri_out / "box 1" / "good.png").read_bytes() == (out / "box 1" / "good.png").read_bytes()


def test_the_manifest_survives_a_torn_line_and_keeps_the_last_record(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"input": "a.jpg", "status": "failed"}\n{"input": "a.jpg", "status": "done"}\n{"input": "b.j')
    book = Manifest(path)
    assert book.done("a.jpg") is not None and book.done("b.jpg") is None
    book.append({"input": "b.jpg", "status": "done"})
    book.close()
    again = Manifest(path)
    assert again.done("b.jpg") is not None and again.done("a.jpg") is not None


def test_ray_engine_refuses_what_it_does_not_do(tmp_path, capsys):
    assert cli_main(["restore", str(REPO / "examples"), str(REPO / "examples"), "-o", str(tmp_path / "o"),
                     "--engine", "ray"]) == 1
    assert "takes one SOURCE" in capsys.readouterr().err
    assert cli_main(["restore", str(REPO / "examples"), "-o", str(tmp_path / "o"), "--engine", "ray",
                     "--save-compare"]) == 1
    error = capsys.readouterr().err
    assert "--save-compare: not with --engine ray" in error and error.count("\n") == 1
    assert not (tmp_path / "o").exists()
