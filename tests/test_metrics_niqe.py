"""NIQE against basicsr 1.4.2's values with the official pristine model, its building blocks
(MATLAB imresize, AGGD fit) against hand-computed values, and fitting a model on our own faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

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
from faceprior.weights.store import WeightsUnavailableError


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
