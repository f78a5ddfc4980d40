"""NIQE against basicsr 1.4.2's values with the official pristine model, its building blocks
(MATLAB imresize, AGGD fit) against hand-computed values, and fitting a model on our own faces."""

from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from faceprior.metrics import niqe as niqe_module
from faceprior.metrics.color import ImageInputError
from faceprior.metrics.niqe import (
    NiqeParams,
    NiqeParamsError,
    fit_aggd,
    fit_niqe_params,
    gaussian_window_matlab,
    imresize_matlab,
    load_niqe_params,
    matlab_resize_matrix,
    niqe,
    niqe_params_path,
    save_niqe_params,
)
from faceprior.weights import pypi_wheel
from faceprior.weights.store import WeightsUnavailableError, sha256_of_file


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def official_params() -> NiqeParams:
    try:
        path = niqe_params_path()
    except WeightsUnavailableError as error:
        pytest.skip(f"official NIQE parameters unavailable (offline?): {error}")
    return load_niqe_params(path)


@pytest.fixture(scope="module")
def metric_images(reference_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """basicsr values per pair and the 20 images keyed 'lq/<name>' / 'gt/<name>'."""
    folder = reference_dir / "metrics"
    values = json.loads((folder / "values.json").read_text())["pairs"]
    images = {f"{kind}/{name}": _read_rgb(folder / kind / name) for name in values for kind in ("lq", "gt")}
    return values, images


@pytest.mark.slow
def test_niqe_matches_basicsr_values(official_params, metric_images):
    values, images = metric_images
    diffs = []
    for name, expected in values.items():
        for kind in ("lq", "gt"):
            diffs.append(abs(niqe(images[f"{kind}/{name}"], 0, official_params) - expected[f"niqe_{kind}"]))
    # basicsr keeps the half-scale image and the local deviation in float32, so its own values
    # move by up to ~8e-4 between machines; ours are within that.
    print(f"NIQE max abs diff vs basicsr 1.4.2: {max(diffs):.3g}, mean {np.mean(diffs):.3g}")
    assert max(diffs) <= 1e-3
    assert np.mean(diffs) <= 3e-4


def test_official_params_file(official_params):
    assert official_params.mu_prisparam.shape == (36,)
    assert official_params.cov_prisparam.shape == (36, 36)
    np.testing.assert_array_equal(official_params.cov_prisparam, official_params.cov_prisparam.T)
    assert official_params.block_size == 96
    # The release's window is fspecial('gaussian', 7, 7/6), the one fit_niqe_params uses.
    np.testing.assert_allclose(official_params.gaussian_window, gaussian_window_matlab(), atol=1e-15)
    # The release's first feature (mean GGD shape of pristine patches) is 2.6013.
    assert official_params.mu_prisparam[0] == pytest.approx(2.60131368, abs=1e-8)


def test_niqe_input_conventions(official_params, metric_images):
    _, images = metric_images
    img = images["lq/00005__0.png"]
    score = niqe(img, 0, official_params)
    assert niqe(img / 255.0, 0, official_params) == score  # float [0, 1] gives the same luma
    assert niqe(img, 8, official_params) == niqe(img[8:-8, 8:-8], 0, official_params)
    # Only whole 96x96 blocks count: pixels beyond 480 are ignored.
    assert niqe(img[:500, :490], 0, official_params) == niqe(img[:480, :480], 0, official_params)
    with pytest.raises(ImageInputError, match="at least 96x96"):
        niqe(img[:90], 0, official_params)


def test_matlab_imresize_half():
    # Bicubic shrink by 2 with antialiasing: the kernel widens to 8 taps, weights k/256; output
    # pixel 6 (1-based) is centred at input 11.5, between input pixels 11 and 12.
    matrix = matlab_resize_matrix(32, 0.5)
    assert matrix.shape == (16, 32)
    np.testing.assert_array_equal(matrix[5, 7:15] * 256, [-3, -9, 29, 111, 111, 29, -9, -3])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-15)
    # Cubic convolution reproduces linear ramps away from the edges: output pixel x (1-based)
    # sits at input position 2x - 0.5.
    ramp = np.tile(np.arange(1, 33, dtype=np.float64), (32, 1))
    out = imresize_matlab(ramp, 0.5)
    np.testing.assert_allclose(out[:, 2:-2], np.tile(2 * np.arange(3, 15) - 0.5, (16, 1)), atol=1e-12)
    # Symmetric edge handling keeps constants constant.
    np.testing.assert_allclose(imresize_matlab(np.full((20, 14), 7.0), 0.5), 7.0, atol=1e-12)


def test_aggd_fit_recovers_known_shapes():
    rng = np.random.default_rng(0)
    sigma = 1.5
    gaussian = rng.normal(0.0, sigma, size=(2, 200_000))
    alpha, beta_l, beta_r = fit_aggd(gaussian)
    # A Gaussian is a generalised Gaussian with shape 2 and scale sigma * sqrt(2).
    np.testing.assert_allclose(alpha, 2.0, atol=0.03)
    np.testing.assert_allclose(beta_l, sigma * math.sqrt(2), rtol=0.01)
    np.testing.assert_allclose(beta_r, sigma * math.sqrt(2), rtol=0.01)
    laplace = rng.laplace(0.0, 1.0, size=(1, 200_000))
    assert fit_aggd(laplace)[0][0] == pytest.approx(1.0, abs=0.03)
    # Asymmetric: twice the spread on the right.
    skewed = np.concatenate([-np.abs(gaussian[0]), 2 * np.abs(gaussian[1])])[None]
    alpha, beta_l, beta_r = fit_aggd(skewed)
    assert beta_r[0] / beta_l[0] == pytest.approx(2.0, rel=0.02)
    # No negative samples: NaN scales and shape 0.2, like the MATLAB code.
    alpha, beta_l, _ = fit_aggd(np.abs(gaussian[:1]))
    assert alpha[0] == pytest.approx(0.2) and np.isnan(beta_l[0])


def test_fit_niqe_params_on_faces(data_dir, tmp_path):
    files = sorted((data_dir / "faces-val-256").glob("*.jpg"))[:6]
    assert len(files) == 6
    params = fit_niqe_params(files)
    assert params.mu_prisparam.shape == (36,) and params.cov_prisparam.shape == (36, 36)
    assert np.isfinite(params.mu_prisparam).all() and np.isfinite(params.cov_prisparam).all()
    np.testing.assert_allclose(params.cov_prisparam, params.cov_prisparam.T, atol=1e-12)
    # Arrays and file paths are the same input.
    from_arrays = fit_niqe_params([_read_rgb(f) for f in files])
    np.testing.assert_array_equal(from_arrays.mu_prisparam, params.mu_prisparam)
    # Saved models load back unchanged (basicsr's .npz layout).
    save_niqe_params(params, tmp_path / "model.npz")
    loaded = load_niqe_params(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.mu_prisparam, params.mu_prisparam)
    np.testing.assert_array_equal(loaded.cov_prisparam, params.cov_prisparam)
    assert np.isfinite(niqe(_read_rgb(files[0]), 0, loaded))


@pytest.mark.slow
def test_fitted_model_ranks_degraded_faces_worse(data_dir, metric_images):
    values, images = metric_images
    used = {Path(name).stem for name in values}
    pristine = [f for f in sorted((data_dir / "faces-gt-512").glob("*.jpg")) if f.stem not in used][:6]
    params = fit_niqe_params(pristine)
    for name in values:
        assert niqe(images[f"lq/{name}"], 0, params) > niqe(images[f"gt/{name}"], 0, params), name


def test_load_niqe_params_rejects_bad_files(tmp_path):
    np.savez(tmp_path / "missing.npz", mu_pris_param=np.zeros(36))
    with pytest.raises(NiqeParamsError, match="missing array 'cov_pris_param'"):
        load_niqe_params(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", mu_pris_param=np.array([object()]), cov_pris_param=np.zeros((36, 36)),
             gaussian_window=np.ones((7, 7)))
    with pytest.raises(NiqeParamsError, match="pickled.npz"):
        load_niqe_params(tmp_path / "pickled.npz")


@pytest.mark.slow
def test_official_params_are_fetched_with_pip(tmp_path, official_params):
    """A fresh cache: pip downloads the basicsr 1.4.2 sdist (pinned) and only the .npz is kept."""
    try:
        path = niqe_params_path(tmp_path / "cache")
    except pypi_wheel.WheelDownloadError as error:
        pytest.skip(f"pip cannot fetch basicsr 1.4.2 here: {error}")
    assert sorted(p.name for p in path.parent.iterdir()) == ["niqe_pris_params.npz", "niqe_pris_params.npz.sha256"]
    assert sha256_of_file(path) == niqe_module.OFFICIAL_PARAMS_SHA256
    np.testing.assert_array_equal(load_niqe_params(path).cov_prisparam, official_params.cov_prisparam)


def _sdist(path: Path, files: dict[str, bytes], links: dict[str, str]) -> None:
    """A .tar.gz with regular ``files`` and symbolic ``links`` (name -> target)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)


def test_sdist_download_is_hash_pinned_and_reads_only_the_member(tmp_path, monkeypatch):
    member, payload = "pkg-1.0/pkg/data/params.npz", b"pristine"
    built = tmp_path / "built" / "pkg-1.0.tar.gz"
    built.parent.mkdir()
    _sdist(built, {member: payload, "pkg-1.0/../../escaped.txt": b"x", "pkg-1.0/setup.py": b""},
           {"pkg-1.0/pkg/data/link.npz": "/etc/passwd"})
    digest = sha256_of_file(built)
    commands = []

    def fake_pip(command, **kwargs):
        commands.append(command)
        requirements = Path(command[command.index("-r") + 1]).read_text()
        assert requirements == f"pkg==1.0 --hash=sha256:{digest}\n"
        (Path(command[command.index("-d") + 1]) / built.name).write_bytes(built.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pypi_wheel.subprocess, "run", fake_pip)
    monkeypatch.delenv("FACEPRIOR_OFFLINE", raising=False)
    dest = tmp_path / "dest"
    written = pypi_wheel.extract_from_pypi("pkg", "1.0", [member], dest, {member: pypi_wheel.sha256_of_bytes(payload)},
                                           sdist=True, archive_sha256=digest)
    assert written == [dest / "params.npz"] and written[0].read_bytes() == payload
    for flag in ("--no-deps", "--no-binary=:all:", "--no-build-isolation", "--require-hashes"):
        assert flag in commands[0]
    assert "--only-binary=:all:" not in commands[0] and "pkg==1.0" not in commands[0]  # only via the pinned file
    assert sorted(p.name for p in dest.iterdir()) == ["params.npz"]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("setup.py"))

    with pytest.raises(pypi_wheel.WheelContentError, match="link.npz' is not a regular file"):
        pypi_wheel.extract_from_pypi("pkg", "1.0", ["pkg-1.0/pkg/data/link.npz"], dest, sdist=True, archive_sha256=digest)
    with pytest.raises(pypi_wheel.WheelContentError, match="params.npz has SHA-256"):
        pypi_wheel.extract_from_pypi("pkg", "1.0", [member], tmp_path / "bad", {member: "0" * 64}, sdist=True,
                                     archive_sha256=digest)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="pinned to its SHA-256"):
        pypi_wheel.extract_from_pypi("pkg", "1.0", [member], dest, sdist=True)
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    with pytest.raises(pypi_wheel.WheelDownloadError, match="not tried .FACEPRIOR_OFFLINE is set"):
        pypi_wheel.extract_from_pypi("pkg", "1.0", [member], dest, sdist=True, archive_sha256=digest)
    assert len(commands) == 3  # the offline call never ran pip


def test_niqe_params_failure_says_where_to_put_the_file(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies basicsr\n")

    monkeypatch.setattr(pypi_wheel.subprocess, "run", failing_pip)
    monkeypatch.delenv("FACEPRIOR_OFFLINE", raising=False)
    with pytest.raises(WeightsUnavailableError, match="pip download failed") as error:
        niqe_params_path(tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"copy basicsr's niqe_pris_params.npz to {tmp_path / 'weights'}" in message
