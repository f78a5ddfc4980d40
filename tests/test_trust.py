"""The trust issue's reproductions (../shared/findings/trust-repros.md): a user's files are never
lost, faceprior works offline, and every failure is one clear line. Each test failed on the code
before the fix (at 851a30e). They run the real command line with the bundled default model on small aligned
faces, so nothing here needs a network or ../shared."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprior.cli import main
from faceprior.imaging.io import read_image

REPO = Path(__file__).resolve().parent.parent


def _photo(path: Path, seed: int, size: int = 48, suffix_format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=suffix_format)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _restore(capsys, *argv: str) -> tuple[int, list[str]]:
    status = main(["restore", *argv, "--aligned"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------
# Files lost or overwritten


def test_an_input_named_like_an_output_is_never_overwritten(tmp_path, capsys):
    """Repro 1: output folder = input folder, --overwrite, and an input already called x_restored."""
    folder = tmp_path / "D"
    _photo(folder / "photo.jpg", 0)
    _photo(folder / "photo_restored.jpg", 1)
    before = _digest(folder)
    status, err = _restore(capsys, str(folder), "-o", str(folder), "--overwrite")
    assert status == 1 and _digest(folder) == before
    assert any("photo_restored.jpg" in line and "is an input" in line for line in err)
    assert err[-1] == "faceprior: error: 1 output conflict(s): nothing was restored, no file was written"
    # The same with --ext png and x.png beside x_restored.png.
    png = tmp_path / "P"
    _photo(png / "x.png", 2)
    _photo(png / "x_restored.png", 3)
    before = _digest(png)
    status, _ = _restore(capsys, str(png), "-o", str(png), "--overwrite", "--ext", "png")
    assert status == 1 and _digest(png) == before


def test_extra_files_never_overwrite_inputs(tmp_path, capsys):
    """Repro 2: --save-faces into a folder whose faces/ holds inputs."""
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    _photo(folder / "faces" / "a_00_input.png", 1)
    before = _digest(folder)
    status, err = _restore(capsys, str(folder), "-o", str(folder), "--save-faces", "--overwrite")
    assert status == 1 and _digest(folder) == before
    assert any("--save-faces writes, holds 1 input(s)" in line for line in err)


def test_same_names_in_different_folders_keep_their_folders(tmp_path, capsys):
    """Repro 3: D/x/p.jpg and D/y/p.jpg through a glob: two outputs, the folders mirrored; the
    same names from two folder arguments, or a.jpg and a.png with --ext png, are refused."""
    source = tmp_path / "D"
    _photo(source / "x" / "p.jpg", 0)
    _photo(source / "y" / "p.jpg", 1)
    out = tmp_path / "out"
    status, err = _restore(capsys, str(source / "**" / "*.jpg"), "-o", str(out), "--overwrite")
    assert status == 0 and sorted(_digest(out)) == ["x/p.jpg", "y/p.jpg"]
    assert err[-1].startswith("2 image(s) restored")

    status, err = _restore(capsys, str(source / "x"), str(source / "y"), "-o", str(tmp_path / "out2"))
    assert status == 1 and not (tmp_path / "out2").exists()
    assert any("would both be written to" in line for line in err)

    both = tmp_path / "E"
    _photo(both / "a.jpg", 2)
    _photo(both / "a.png", 3)
    status, err = _restore(capsys, str(both), "-o", str(tmp_path / "out3"), "--ext", "png")
    assert status == 1 and not (tmp_path / "out3").exists()


def test_a_report_is_not_replaced_without_overwrite(tmp_path, capsys):
    """Repro 4."""
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    reports = tmp_path / "out" / "reports"
    reports.mkdir(parents=True)
    (reports / "a.json").write_text("notes\n")
    status, err = _restore(capsys, str(folder), "-o", str(tmp_path / "out"), "--report")
    assert status == 1 and (reports / "a.json").read_text() == "notes\n"
    assert not (tmp_path / "out" / "a.jpg").exists()
    assert any("a.json exists" in line for line in err)


def test_an_output_folder_inside_the_input_folder_is_not_restored_again(tmp_path, capsys):
    """Repro 5: each run used to restore the previous outputs again (D/out/out/out/a.jpg)."""
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    for _ in range(2):
        status, _ = _restore(capsys, str(folder), "-o", str(folder / "out"), "--skip-existing")
        assert status == 0
    assert sorted(_digest(folder)) == ["a.jpg", "out/a.jpg"]


def test_a_hidden_file_named_on_the_command_line_is_written(tmp_path, capsys):
    """Repro 6: reported restored with no output on disk. (In folders, hidden files are skipped.)"""
    hidden = _photo(tmp_path / "D" / ".hidden.jpg", 0)
    status, err = _restore(capsys, str(hidden), "-o", str(tmp_path / "out"))
    assert status == 0 and (tmp_path / "out" / ".hidden.jpg").is_file()
    assert err[-1].startswith("1 image(s) restored")


def test_long_names_and_newlines_in_names(tmp_path, capsys):
    """Repro 13: a 250-byte name used to fail (the temporary name was longer than 255 bytes), and a
    newline in a name split its failure line."""
    long_name = _photo(tmp_path / "D" / ("n" * 246 + ".jpg"), 0)
    status, _ = _restore(capsys, str(long_name), "-o", str(tmp_path / "out"))
    assert status == 0 and (tmp_path / "out" / long_name.name).is_file()
    broken = tmp_path / "E" / "two\nlines.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"not a jpeg")
    status, err = _restore(capsys, str(broken), "-o", str(tmp_path / "out2"))
    assert status == 1
    failures = [line for line in err if "two" in line]
    assert failures and all("two\\nlines.jpg" in line for line in failures)


def test_a_killed_write_leaves_no_file_that_looks_complete_and_is_cleaned_later(tmp_path, capsys):
    """Repro 13: a kill during a write left .name.<hex>.tmp beside the output forever."""
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".faceprior-0123456789abcdef.tmp"
    stale.write_bytes(b"half an image")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    status, _ = _restore(capsys, str(folder), "-o", str(out))
    assert status == 0 and sorted(p.name for p in out.iterdir()) == ["a.jpg"]


# ----------------------------------------------------------------------------------------------
# One line, never a traceback


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "cuda"], "no CUDA GPU is available here"),
    (["--device", "gpu"], "unknown device 'gpu'"),
])
def test_device_errors_are_one_line(tmp_path, capsys, argv, fragment):
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    status, err = _restore(capsys, str(folder), "-o", str(tmp_path / "out"), *argv)
    assert status == 1 and err == [f"faceprior: error: {err[0].split('error: ', 1)[1]}"] and fragment in err[0]


def test_a_discriminator_given_as_model_is_one_line(tmp_path, capsys):
    from faceprior.models.stylegan2 import StyleGAN2Discriminator
    from faceprior.weights.checkpoint import save_state_dict

    checkpoint = tmp_path / "net_d.pth"
    save_state_dict(StyleGAN2Discriminator(out_size=32, narrow=0.0625).state_dict(), checkpoint, key="params")
    folder = tmp_path / "D"
    _photo(folder / "a.jpg", 0)
    status, err = _restore(capsys, str(folder), "-o", str(tmp_path / "out"), "--model", str(checkpoint))
    assert status == 1 and len(err) == 1 and "StyleGAN2Discriminator" in err[0] and "not a face-restoration model" in err[0]


def test_the_readme_example_with_the_wrong_face_size_says_what_to_do():
    import torch

    import faceprior

    model = faceprior.load_model("faceprior-256")
    with pytest.raises(ValueError, match=r"takes aligned faces \[B, 3, 256, 256\].*got \[1, 3, 512, 512\]; resize"):
        model(torch.zeros(1, 3, 512, 512))


def _as_from_a_terminal() -> None:
    """SIGINT handled by default in the child, as in a terminal: a test run started in the
    background (`make test &`) has SIGINT ignored, and Python keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_restore_is_one_line_and_leaves_nothing_half_written(tmp_path):
    """Repro 12: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) gave a traceback."""
    folder = tmp_path / "D"
    for i in range(120):
        _photo(folder / f"{i:02d}.png", i, size=200)
    for attempt in range(3):  # a machine loaded by other jobs may let the run finish before the signal lands
        out = tmp_path / f"out{attempt}"
        process = subprocess.Popen([sys.executable, "-m", "faceprior", "restore", str(folder), "-o", str(out), "--aligned"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=_as_from_a_terminal)
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if not (process.returncode == 0 and len(list(out.glob("*.png"))) == 120):
            break
    assert process.returncode == 130 and "Traceback" not in err and err.strip().splitlines()[-1] == "faceprior: interrupted"
    for written in out.glob("*.png"):
        read_image(written)  # every file there is complete (a truncated PNG raises)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------
# Offline


def _network_disabled_command() -> list[str]:
    """A prefix that runs a command without any network: a new network namespace where the machine
    allows one (unshare -rn), else a Python guard that makes every socket connection fail."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn", sys.executable]
    guard = ("import socket, sys, runpy\n"
             "def refuse(*args, **kwargs):\n    raise OSError(101, 'network disabled by the test')\n"
             "socket.socket.connect = refuse\nsocket.socket.connect_ex = refuse\nsocket.create_connection = refuse\n"
             "sys.argv = ['faceprior'] + sys.argv[1:]\nrunpy.run_module('faceprior', run_name='__main__')\n")
    return [sys.executable, "-c", guard]


@pytest.mark.slow
def test_restore_works_with_no_network_and_an_empty_cache(tmp_path):
    """Detection (MTCNN) and restoration (faceprior-256) ship inside the package: a whole photo is
    restored, faces found, with no network at all and nothing in the weight cache."""
    out = tmp_path / "out"
    command = _network_disabled_command()
    if command[-1] == sys.executable:
        command = command + ["-m", "faceprior"]
    env = {**os.environ, "FACEPRIOR_HOME": str(tmp_path / "empty-cache")}
    env.pop("FACEPRIOR_OFFLINE", None)
    result = subprocess.run(command + ["restore", str(REPO / "examples" / "astronaut-web.jpg"), "-o", str(out), "--report"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bundled default model" in result.stderr and "1 image(s) restored, 1 face(s)" in result.stderr
    assert (out / "astronaut-web.jpg").is_file() and not (tmp_path / "empty-cache").exists()


# ----------------------------------------------------------------------------------------------
# Fuzzing


@pytest.mark.slow
def test_a_seeded_corpus_of_broken_and_hostile_files(tmp_path):
    """tools/fuzz_restore.py at CI size: 300 files made from seed 0 (truncated, flipped, bombs,
    corrupt EXIF, wrong suffixes, empty, text...), one `faceprior restore` over them all."""
    sys.path.insert(0, str(REPO / "tools"))
    import fuzz_restore

    corpus = tmp_path / "corpus"
    made = fuzz_restore.make_corpus(corpus, 300, seed=0)
    assert len(made) == 300 and len(set(made.values())) == len(fuzz_restore.MUTATIONS)
    report = fuzz_restore.run_restore(corpus, tmp_path / "out", timeout=600, extra=[])
    assert report.clean(), report
    assert report.restored + report.failed == report.files == 300 and report.exit_status == 1
    assert report.restored > 50  # the well-formed and recoverable files are restored
