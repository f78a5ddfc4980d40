"""The `faceprior models` and `faceprior convert` commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceprior.cli import main
from faceprior.models.loading import load_model
from faceprior.weights import store
from faceprior.weights.catalogue import CATALOGUE, KINDS
from faceprior.weights.checkpoint import read_state_dict, read_state_dict_and_key


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "cache"))
    monkeypatch.setenv(store.ENV_OFFLINE, "1")
    return tmp_path / "cache"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _assert_user_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceprior: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_models_lists_every_catalogue_file_by_kind(capsys, tmp_path: Path):
    status, out, _ = _run(capsys, "models")
    assert status == 0
    lines = out.strip().splitlines()
    titles = [line for line in lines if not line.startswith(" ")]
    assert len(titles) == len(KINDS) and titles[0].startswith("restoration models")
    assert lines[1].split()[:5] == ["name", "arch", "size", "licence", "checked"]
    rows = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()[0] != "name"}
    assert list(rows) == list(CATALOGUE)  # every weight file, in catalogue order (grouped by kind there)
    assert "GFPGANv1Clean" in rows["gfpgan-1.4"] and "332.5 MiB" in rows["gfpgan-1.4"] and "Apache-2.0" in rows["gfpgan-1.4"]
    assert f"absent: {tmp_path / 'cache' / 'weights' / 'GFPGANv1.4.pth'}" in rows["gfpgan-1.4"]
    assert "non-commercial" in rows["codeformer"] and "present:" in rows["mtcnn-onet"] and "sha256" in rows["mtcnn-onet"]
    assert "unverified" in rows["stylegan2-512-prior"]

    placed = tmp_path / "cache" / "weights" / "GFPGANv1.3.pth"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"x" * 2048)
    _, out, _ = _run(capsys, "models")
    row = next(line for line in out.splitlines() if line.startswith("  gfpgan-1.3 "))
    assert f"present: {placed}" in row and "0.0 MiB" in row


def test_convert_round_trip_keeps_tensors_and_wrapper(capsys, reference_dir: Path, tmp_path: Path):
    source = reference_dir / "ckpt" / "StyleGAN2Discriminator_small.pth"
    as_safetensors, back = tmp_path / "d.safetensors", tmp_path / "d.pth"
    status, out, _ = _run(capsys, "convert", str(source), str(as_safetensors))
    assert status == 0 and "33 tensors" in out
    status, _, _ = _run(capsys, "convert", str(as_safetensors), str(back))
    assert status == 0
    original, key = read_state_dict_and_key(source)
    for path in (as_safetensors, back):
        converted, converted_key = read_state_dict_and_key(path)
        assert converted_key == key == "params"
        assert sorted(converted) == sorted(original) and all(torch.equal(converted[k], original[k]) for k in original)
    assert set(torch.load(back, weights_only=True)) == {"params"}


def test_convert_refuses_to_overwrite_without_force(capsys, reference_dir: Path, tmp_path: Path):
    destination = tmp_path / "out.safetensors"
    destination.write_bytes(b"precious")
    status, _, err = _run(capsys, "convert", str(reference_dir / "ckpt" / "FacialComponentDiscriminator.pth"), str(destination))
    assert status == 1
    _assert_user_error(err, str(destination), "--force")
    assert destination.read_bytes() == b"precious"
    status, _, _ = _run(capsys, "convert", "--force", str(reference_dir / "ckpt" / "FacialComponentDiscriminator.pth"), str(destination))
    assert status == 0 and len(read_state_dict(destination)) == 12


def test_convert_reports_bad_input_in_one_line(capsys, tmp_path: Path):
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.ones(1)}, "x": _Exploit()}, evil)
    status, _, err = _run(capsys, "convert", str(evil), str(tmp_path / "out.safetensors"))
    assert status == 1
    _assert_user_error(err, "refusing to load", str(evil))
    assert not (tmp_path / "out.safetensors").exists()
    status, _, err = _run(capsys, "convert", str(tmp_path / "missing.pth"), str(tmp_path / "out.pth"))
    _assert_user_error(err, "no such file")
    status, _, err = _run(capsys, "convert", str(evil), str(tmp_path / "out.onnx"))
    assert status == 1
    _assert_user_error(err, "must end in")


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.slow
def test_convert_to_clean_is_exact(capsys, reference_dir: Path, tmp_path: Path):
    clean_file = tmp_path / "clean.pth"
    status, out, _ = _run(capsys, "convert", "--to-clean", str(reference_dir / "ckpt" / "GFPGANBilinear_small.pth"), str(clean_file))
    assert status == 0 and "'params_ema'" in out
    model = load_model(clean_file)
    assert type(model).__name__ == "GFPGANv1Clean"
    ref = torch.load(reference_dir / "ref" / "GFPGANBilinear_small.pt", map_location="cpu", weights_only=True)
    with torch.no_grad():
        image = model(ref["input"], return_rgb=False, randomize_noise=False)[0]
    assert (image - ref["out_fixed_noise"]["image"]).abs().max().item() < 1e-4


def test_convert_to_clean_refuses_the_paper_model(capsys, reference_dir: Path, tmp_path: Path):
    status, _, err = _run(capsys, "convert", "--to-clean", str(reference_dir / "ckpt" / "GFPGANv1_small.pth"), str(tmp_path / "x.pth"))
    assert status == 1
    _assert_user_error(err, "no exact GFPGANv1Clean equivalent")
    status, _, err = _run(capsys, "convert", "--to-clean", str(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth"), str(tmp_path / "x.pth"))
    _assert_user_error(err, "already has the GFPGANv1Clean layout")
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.slow
def test_usage_errors_and_the_real_entry_point(tmp_path: Path):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    result = subprocess.run(
        [sys.executable, "-m", "faceprior.cli", "convert", str(tmp_path / "a.pth"), str(tmp_path / "b.pth")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"faceprior: error: cannot load {tmp_path / 'a.pth'}: no such file"


def test_models_fetch_prepares_an_offline_machine(capsys, tmp_path: Path, monkeypatch):
    """--fetch NAME... fetches and checks files ahead of time (here from a mirror folder, the way a
    machine is prepared from a shared drive); a name that fails is one line and the others go on."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "parsing_bisenet.pth").write_bytes(b"bisenet weights")  # no published checksum: unverified
    monkeypatch.setenv(store.ENV_MIRROR, str(mirror))
    monkeypatch.delenv(store.ENV_OFFLINE)
    status, out, err = _run(capsys, "models", "--fetch", "bisenet", "mtcnn-onet", "retinaface-resnet50")
    assert status == 1
    assert "bisenet:" in out and "no published checksum" in out and "mtcnn-onet:" in out and "SHA-256 checked" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceprior: retinaface-resnet50: ") and "Traceback" not in err
    status, _, err = _run(capsys, "models", "--fetch", "no-such-file")
    _assert_user_error(err, "no-such-file", "known:")
