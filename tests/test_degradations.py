"""The GFP-GAN degradation model (faceprior.training.degradations)."""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.resize import resize_bilinear
from faceprior.metrics.psnr_ssim import psnr
from faceprior.training.degradations import (
    DegradationConfig,
    DegradationConfigError,
    DegradationError,
    DegradationParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_degradation,
    color_jitter,
    degrade,
    degrade_folder,
    downsampled_size,
    filter2d,
    gaussian_kernel,
    hsv_to_rgb,
    jpeg_roundtrip,
    read_float_image,
    reflect_101_indices,
    rgb_to_hsv,
    sample_degradation,
    save_degradation_grid,
)

# Every step switched off or neutral: blur sigma 0.1 (off-centre taps < 1e-21), scale 1.
IDENTITY = dict(
    kernel_list=("iso",), kernel_prob=(1.0,), blur_sigma=(0.1, 0.1), downsample_range=(1.0, 1.0),
    noise_range=None, jpeg_range=None, color_jitter_prob=None, gray_prob=None, color_jitter_pt_prob=None,
)


def synthetic_face(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth colour image with some texture, multiples of 1/255, float32 [size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    image = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * np.sin(6 * x + 4 * y)], axis=2)
    image += 0.05 * rng.standard_normal(image.shape)
    return (np.rint(np.clip(image, 0, 1) * 255) / 255).astype(np.float32)


@pytest.fixture(scope="module")
def face_256(data_dir):
    path = sorted((data_dir / "faces-train-256").glob("*.jpg"))[0]
    return read_float_image(path)


# ---- configuration ---------------------------------------------------------------------------


def test_default_config_is_the_official_v1_recipe():
    config = DegradationConfig()
    assert (config.blur_kernel_size, config.kernel_list, config.kernel_prob) == (41, ("iso", "aniso"), (0.5, 0.5))
    assert (config.blur_sigma, config.downsample_range) == ((0.1, 10.0), (0.8, 8.0))
    assert (config.noise_range, config.jpeg_range) == ((0.0, 20.0), (60.0, 100.0))
    assert (config.color_jitter_prob, config.color_jitter_shift, config.color_jitter_pt_prob) == (0.3, 20.0, 0.3)
    assert (config.gray_prob, config.gt_gray) == (0.01, False)
    assert (config.brightness, config.contrast, config.saturation, config.hue) == (
        (0.5, 1.5), (0.5, 1.5), (0.0, 1.5), (-0.1, 0.1))
    assert config.rotation_range == (-math.pi, math.pi)


def test_config_from_dict_round_trip_and_errors():
    config = DegradationConfig.from_dict({"noise_range": [0, 5], "gray_prob": None, "gt_gray": True})
    assert config.noise_range == (0.0, 5.0) and config.gray_prob is None and config.gt_gray
    assert DegradationConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(DegradationConfigError, match=r"^train\.json: unknown degradation setting\(s\) blur_size"):
        DegradationConfig.from_dict({"blur_size": 21}, source="train.json")
    with pytest.raises(DegradationConfigError, match=r"^train\.json: jpeg_range must satisfy"):
        DegradationConfig.from_dict({"jpeg_range": [60, 120]}, source="train.json")
    with pytest.raises(DegradationConfigError, match="blur_kernel_size must be a positive odd integer"):
        DegradationConfig(blur_kernel_size=40)
    with pytest.raises(DegradationConfigError, match="unknown kernel type 'sinc'"):
        DegradationConfig(kernel_list=("iso", "sinc"))
    with pytest.raises(DegradationConfigError, match="downsample_range must satisfy"):
        DegradationConfig(downsample_range=(8, 0.8))
    with pytest.raises(DegradationConfigError, match="gray_prob must be in"):
        DegradationConfig(gray_prob=1.5)
    with pytest.raises(DegradationConfigError, match="unknown jitter operation"):
        DegradationParams.from_dict({**dataclasses.asdict(sample_degradation(DegradationConfig(),
                                     np.random.default_rng(0))), "jitter_order": ["gamma"]})


# ---- kernels, filtering, resizing --------------------------------------------------------------


def test_gaussian_kernel_values_and_moments():
    kernel = gaussian_kernel(3, 1.0, 1.0)
    weights = np.exp(-0.5 * np.array([[2, 1, 2], [1, 0, 1], [2, 1, 2]], dtype=np.float64))
    np.testing.assert_allclose(kernel, weights / weights.sum(), rtol=1e-12)

    sigma_x, sigma_y, theta = 3.0, 1.5, 0.6
    kernel = gaussian_kernel(41, sigma_x, sigma_y, theta)
    assert kernel.shape == (41, 41) and abs(kernel.sum() - 1) < 1e-12
    axis = np.arange(-20, 21)
    x, y = np.meshgrid(axis, axis)
    moments = np.array([[np.sum(kernel * x * x), np.sum(kernel * x * y)],
                        [np.sum(kernel * x * y), np.sum(kernel * y * y)]])
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    np.testing.assert_allclose(moments, expected, atol=1e-6)


def test_sampled_kernels_are_isotropic_or_anisotropic_as_sampled():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        params = sample_degradation(DegradationConfig(), rng)
        kernel = gaussian_kernel(params.kernel_size, params.sigma_x, params.sigma_y, params.rotation)
        assert kernel.shape == (41, 41) and abs(kernel.sum() - 1) < 1e-9
        symmetric = np.allclose(kernel, kernel.T, atol=1e-12) and np.allclose(kernel, np.rot90(kernel), atol=1e-12)
        if params.kernel_type == "iso":
            assert params.sigma_x == params.sigma_y and params.rotation == 0.0 and symmetric
        elif abs(params.sigma_x - params.sigma_y) > 0.5 and min(params.sigma_x, params.sigma_y) > 1:
            assert not symmetric
        seen.add(params.kernel_type)
    assert seen == {"iso", "aniso"}


def test_reflect_101_indices_match_cv2_border():
    # cv2.BORDER_REFLECT_101: dcb|abcd|cba
    assert reflect_101_indices(4, 3).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert reflect_101_indices(3, 5).tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]  # repeated reflection
    assert reflect_101_indices(1, 2).tolist() == [0, 0, 0, 0, 0]


def test_filter2d_is_correlation_with_reflect_101_borders():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 30, 37)
    kernel = torch.rand(7, 7, dtype=torch.float64)
    result = filter2d(images, kernel)
    assert result.shape == images.shape
    # direct correlation with torch's reflect padding (= reflect-101)
    padded = F.pad(images, (3, 3, 3, 3), mode="reflect")
    direct = F.conv2d(padded, kernel.float()[None, None].expand(3, 1, 7, 7), groups=3)
    assert (result - direct).abs().max() < 1e-5
    # one corner pixel by hand: out[0, 0] = sum_k image[|dy|, |dx|] * kernel[dy + 3, dx + 3]
    image = images[0, 0].double()
    by_hand = sum(image[abs(dy), abs(dx)] * kernel[dy + 3, dx + 3] for dy in range(-3, 4) for dx in range(-3, 4))
    assert abs(result[0, 0, 0, 0].item() - by_hand.item()) < 1e-5
    # a kernel larger than the image still works (repeated reflection), constant stays constant
    flat = torch.full((1, 3, 8, 8), 0.25)
    assert (filter2d(flat, torch.from_numpy(gaussian_kernel(41, 5, 2, 0.3))) - 0.25).abs().max() < 1e-6


def test_bilinear_resize_matches_half_pixel_definition():
    row = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 2, 8)
    # shrinking by 2 without antialias samples at x = 0.5, 2.5, 4.5, 6.5
    assert resize_bilinear(row, 2, 4)[0, 0, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    # enlarging 2 -> 4 samples at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    two = torch.tensor([[[[0.0, 1.0]]]])
    assert resize_bilinear(two, 1, 4)[0, 0, 0].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert downsampled_size(256, 256, 7.9) == (32, 32)
    assert downsampled_size(512, 384, 0.8) == (639, 479)  # float floor division, as the official code
    assert downsampled_size(10, 10, 50.0) == (1, 1)


# ---- sampling ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sampled_params_stay_in_range_and_probabilities_match():
    config = DegradationConfig()
    rng = np.random.default_rng(2024)
    draws = [sample_degradation(config, rng) for _ in range(20000)]
    for p in draws[:3000]:
        assert 0.1 <= p.sigma_x <= 10 and 0.1 <= p.sigma_y <= 10
        assert -math.pi <= p.rotation <= math.pi and 0.8 <= p.scale <= 8
        assert 0 <= p.noise_sigma <= 20 and 60 <= p.jpeg_quality <= 99 and isinstance(p.jpeg_quality, int)
        assert p.color_shift is None or max(abs(v) for v in p.color_shift) <= 20
        assert p.gt_gray is False
        if p.jitter_order is None:
            assert (p.brightness, p.contrast, p.saturation, p.hue) == (None, None, None, None)
        else:
            assert sorted(p.jitter_order) == ["brightness", "contrast", "hue", "saturation"]
            assert 0.5 <= p.brightness <= 1.5 and 0.5 <= p.contrast <= 1.5
            assert 0 <= p.saturation <= 1.5 and -0.1 <= p.hue <= 0.1
    # binomial standard deviations for 20000 draws: 0.0035 (p 0.5), 0.0032 (0.3), 0.0007 (0.01)
    fraction = lambda predicate: sum(map(predicate, draws)) / len(draws)  # noqa: E731
    assert abs(fraction(lambda p: p.kernel_type == "iso") - 0.5) < 0.015
    assert abs(fraction(lambda p: p.color_shift is not None) - 0.3) < 0.015
    assert abs(fraction(lambda p: p.jitter_order is not None) - 0.3) < 0.015
    assert abs(fraction(lambda p: p.gray) - 0.01) < 0.0035
    assert abs(np.mean([p.scale for p in draws]) - 4.4) < 0.05
    assert json.loads(json.dumps(dataclasses.asdict(draws[0]))) == json.loads(json.dumps(dataclasses.asdict(
        DegradationParams.from_dict(json.loads(json.dumps(dataclasses.asdict(draws[0])))))))


def test_gt_gray_follows_config():
    always_gray = dict(IDENTITY, gray_prob=1.0)
    lq, params = degrade(synthetic_face(), DegradationConfig(**always_gray, gt_gray=True), seed=0)
    assert params.gray and params.gt_gray
    assert np.array_equal(lq[..., 0], lq[..., 1]) and np.array_equal(lq[..., 1], lq[..., 2])
    _, params = degrade(synthetic_face(), DegradationConfig(**always_gray), seed=0)
    assert params.gray and not params.gt_gray


# ---- the whole model ---------------------------------------------------------------------------


def test_identity_settings_return_the_gt():
    gt = synthetic_face()
    lq, params = degrade(gt, DegradationConfig(**IDENTITY), seed=5)
    assert lq.dtype == np.float32 and lq.shape == gt.shape
    assert np.array_equal(lq, gt)


def test_same_seed_same_bits_different_seed_differs(face_256):
    lq_a, params_a = degrade(face_256, DegradationConfig(), seed=7)
    lq_b, params_b = degrade(face_256, DegradationConfig(), seed=7)
    lq_c, params_c = degrade(face_256, DegradationConfig(), seed=8)
    assert params_a == params_b and np.array_equal(lq_a, lq_b)
    assert params_a != params_c and not np.array_equal(lq_a, lq_c)
    assert lq_a.dtype == np.float32 and lq_a.shape == (256, 256, 3)
    assert lq_a.min() >= 0 and lq_a.max() <= 1
    np.testing.assert_array_equal(np.rint(lq_a * 255) / 255, lq_a.astype(np.float64))  # multiples of 1/255
    # the parameters alone reproduce the image (what a test-set manifest relies on)
    assert np.array_equal(apply_degradation(face_256, DegradationParams.from_dict(dataclasses.asdict(params_a))), lq_a)


def test_stronger_settings_give_lower_psnr(face_256):
    mild = DegradationConfig(**dict(IDENTITY, blur_sigma=(1.0, 1.0), downsample_range=(1.5, 1.5),
                                    noise_range=(2.0, 2.0), jpeg_range=(95, 95)))
    strong = DegradationConfig(**dict(IDENTITY, blur_sigma=(6.0, 6.0), downsample_range=(6.0, 6.0),
                                      noise_range=(20.0, 20.0), jpeg_range=(60, 60)))
    scores = [psnr(degrade(face_256, config, seed=0)[0], face_256) for config in (mild, strong)]
    assert all(math.isfinite(s) for s in scores)
    assert scores[0] > 30 and scores[1] < 25 and scores[0] > scores[1] + 8, scores


def test_enlarged_faces_are_degraded_at_their_larger_size_and_shrunk_back(face_256):
    """enlarge_prob: the face is degraded as part of a larger photo: a given blur, downsampling and
    JPEG cost less once shrunk back; off (None), the official draws and images are as before."""
    settings = dict(IDENTITY, blur_sigma=(3.0, 3.0), downsample_range=(4.0, 4.0), jpeg_range=(60, 60))
    plain, plain_params = degrade(face_256, DegradationConfig(**settings), seed=4)
    larger, params = degrade(face_256, DegradationConfig(**settings, enlarge_prob=1.0, enlarge_range=(2.0, 2.0)), seed=4)
    assert plain_params.enlarge == 1.0 and params.enlarge == 2.0
    assert larger.shape == plain.shape == face_256.shape and larger.dtype == np.float32
    assert psnr(larger, face_256) > psnr(plain, face_256) + 2
    # the enlargement is drawn after every official draw: switched off, nothing else changes
    lq_never, params_never = degrade(face_256, DegradationConfig(enlarge_prob=0.0), seed=11)
    lq_default, params_default = degrade(face_256, DegradationConfig(), seed=11)
    assert np.array_equal(lq_never, lq_default)
    assert params_never == params_default
    # how often, and within its range
    draws = [sample_degradation(DegradationConfig(enlarge_prob=0.5, enlarge_range=(1.2, 1.6)), np.random.default_rng(i)).enlarge
             for i in range(400)]
    enlarged = [d for d in draws if d != 1.0]
    assert 160 < len(enlarged) < 240 and all(1.2 <= d <= 1.6 for d in enlarged)
    # the parameters reproduce the image; manifests written before the field read as 1
    assert np.array_equal(apply_degradation(face_256, DegradationParams.from_dict(dataclasses.asdict(params))), larger)
    old_entry = {k: v for k, v in dataclasses.asdict(plain_params).items() if k != "enlarge"}
    assert DegradationParams.from_dict(old_entry) == plain_params
    with pytest.raises(DegradationConfigError, match="enlarge_range"):
        DegradationConfig(enlarge_range=(0.5, 2.0))


def test_noise_has_the_sampled_sigma():
    gt = np.full((128, 128, 3), 0.5, dtype=np.float32)
    lq, params = degrade(gt, DegradationConfig(**dict(IDENTITY, noise_range=(10.0, 10.0))), seed=3)
    residual = (lq - gt) * 255
    assert params.noise_sigma == 10.0
    assert abs(residual.std() - 10.0) < 0.2 and abs(residual.mean()) < 0.1
    # colour noise: channels are independent
    assert abs(np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]) < 0.03


def test_color_shift_adds_per_channel_offsets():
    gt = synthetic_face()
    lq, params = degrade(gt, DegradationConfig(**dict(IDENTITY, color_jitter_prob=1.0)), seed=11)
    shift = np.asarray(params.color_shift, dtype=np.float32) / 255
    np.testing.assert_array_equal(lq, np.rint(np.clip(gt + shift, 0, 1) * 255).astype(np.float32) / 255)


def test_jpeg_quality_ordering(face_256):
    image = torch.from_numpy(face_256).permute(2, 0, 1)
    errors = {q: (jpeg_roundtrip(image, q) - image).abs().mean().item() for q in (100, 90, 60)}
    assert 0 < errors[100] < errors[90] < errors[60]
    lq = {q: degrade(face_256, DegradationConfig(**dict(IDENTITY, jpeg_range=(q, q))), seed=0)[0] for q in (60, 100)}
    assert psnr(lq[100], face_256) > psnr(lq[60], face_256) + 5


# ---- colour jitter -----------------------------------------------------------------------------


def test_color_jitter_identity_and_known_values():
    torch.manual_seed(0)
    image = torch.rand(3, 16, 16)
    assert torch.equal(adjust_brightness(image, 1.0), image)
    assert torch.allclose(adjust_contrast(image, 1.0), image, atol=1e-7)
    assert torch.allclose(adjust_saturation(image, 1.0), image, atol=1e-7)
    assert (adjust_hue(image, 0.0) - image).abs().max() < 1e-6
    neutral = color_jitter(image, ("hue", "contrast", "brightness", "saturation"), 1.0, 1.0, 1.0, 0.0)
    assert (neutral - image).abs().max() < 1e-6
    assert torch.allclose(adjust_brightness(image, 0.5), image * 0.5)
    luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    assert torch.allclose(adjust_saturation(image, 0.0), luma.expand(3, -1, -1), atol=1e-6)
    assert torch.allclose(adjust_contrast(image, 0.0), torch.full_like(image, luma.mean().item()), atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-6)
    # None factors are skipped
    assert torch.equal(color_jitter(image, ("brightness", "contrast", "saturation", "hue")), image)


def test_rgb_hsv_round_trip_and_reference_values():
    torch.manual_seed(1)
    image = torch.rand(2, 3, 20, 20)
    image[0, :, 0, 0] = 0.4  # a grey pixel
    image[0, :, 0, 1] = 0.0  # black
    hsv = rgb_to_hsv(image)
    assert hsv[:, 0].min() >= 0 and hsv[:, 0].max() < 1
    assert (hsv_to_rgb(hsv) - image).abs().max() < 1e-6
    for r, g, b in image[1].reshape(3, -1).T[:50].tolist():
        expected = colorsys.rgb_to_hsv(r, g, b)
        got = rgb_to_hsv(torch.tensor([r, g, b]).view(3, 1, 1)).flatten().tolist()
        assert np.allclose(got, expected, atol=1e-6), (got, expected)
    primaries = torch.eye(3).view(3, 3, 1, 1).permute(1, 0, 2, 3)  # red, green, blue pixels
    np.testing.assert_allclose(rgb_to_hsv(primaries)[:, :, 0, 0].numpy(),
                               [[0, 1, 1], [1 / 3, 1, 1], [2 / 3, 1, 1]], atol=1e-7)


# ---- folders and grid --------------------------------------------------------------------------


def test_degrade_folder_writes_reproducible_copies_and_never_overwrites(tmp_path):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        write_image(source / name, synthetic_face(64 + 16 * (name == "b.jpg"), seed=i), quality=98)
    (source / "notes.txt").write_text("not an image")
    out, gt_dir = tmp_path / "out", tmp_path / "gt"
    manifest = degrade_folder(source, out, seed=3, size=48, gt_dir=gt_dir)

    assert [e["lq"] for e in manifest["files"]] == ["a.png", "b.png", "sub/c.png"]
    saved = json.loads((out / "degradations.json").read_text())
    assert saved == json.loads(json.dumps(manifest)) and saved["seed"] == 3 and saved["size"] == 48
    assert DegradationConfig.from_dict(saved["config"]) == DegradationConfig()
    for entry in saved["files"]:
        gt = read_float_image(gt_dir / entry["gt"])
        lq = read_image(out / entry["lq"]).pixels
        assert gt.shape == lq.shape == (48, 48, 3)
        params = DegradationParams.from_dict(entry["params"])
        again = apply_degradation(gt, params)
        assert np.array_equal(np.rint(again * 255).astype(np.uint8), lq)

    before = (out / "a.png").read_bytes()
    with pytest.raises(DegradationError, match="exists"):
        degrade_folder(source, out, seed=4)
    assert (out / "a.png").read_bytes() == before
    # the same seed reproduces the files, another seed differs
    degrade_folder(source, tmp_path / "again", seed=3, size=48)
    assert (tmp_path / "again" / "a.png").read_bytes() == before
    degrade_folder(source, tmp_path / "other", seed=4, size=48)
    assert (tmp_path / "other" / "a.png").read_bytes() != before


def test_degrade_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DegradationError, match=r"empty: no images"):
        degrade_folder(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DegradationError, match="not a folder"):
        degrade_folder(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "wide").mkdir()
    write_image(tmp_path / "wide" / "w.png", np.zeros((10, 20, 3), dtype=np.uint8))
    with pytest.raises(DegradationError, match=r"w\.png: image is 20x10"):
        degrade_folder(tmp_path / "wide", tmp_path / "out", size=16)
    assert not (tmp_path / "out" / "degradations.json").exists()


def test_save_degradation_grid(tmp_path):
    path = save_degradation_grid(synthetic_face(32), tmp_path / "grid.png", n=5, seed=2)
    grid = read_image(path).pixels
    assert grid.shape == (2 * 32 + 4, 3 * 32 + 8, 3)
    first, _ = degrade(synthetic_face(32), DegradationConfig(), 2)
    assert np.array_equal(grid[:32, :32], np.rint(first * 255).astype(np.uint8))
    assert (grid[32:36] == 255).all()  # gap
    with pytest.raises(ValueError, match="exists"):
        save_degradation_grid(synthetic_face(32), path, n=1)
