"""PSNR / SSIM against basicsr 1.4.2's values on ten LQ/GT pairs, plus hand-computed values
and properties."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprior.metrics.color import ImageInputError, rgb_to_y
from faceprior.metrics.psnr_ssim import psnr, psnr_torch, ssim, ssim_torch

SETTINGS = [(crop, y_channel) for crop in (0, 4) for y_channel in (False, True)]


def _key(metric: str, crop: int, y_channel: bool) -> str:
    return f"{metric}_crop{crop}_{'y' if y_channel else 'rgb'}"


@pytest.fixture(scope="module")
def metric_pairs(reference_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(name, lq RGB uint8, gt RGB uint8, basicsr values) for the ten reference pairs."""
    from PIL import Image

    folder = reference_dir / "metrics"
    values = json.loads((folder / "values.json").read_text())["pairs"]
    pairs = []
    for name, expected in values.items():
        lq = np.asarray(Image.open(folder / "lq" / name).convert("RGB"))
        gt = np.asarray(Image.open(folder / "gt" / name).convert("RGB"))
        pairs.append((name, lq, gt, expected))
    assert len(pairs) == 10
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["psnr", "ssim"])
def test_matches_basicsr_values(metric_pairs, metric):
    function = {"psnr": psnr, "ssim": ssim}[metric]
    worst = {}
    for _, lq, gt, expected in metric_pairs:
        for crop, y_channel in SETTINGS:
            key = _key(metric, crop, y_channel)
            diff = abs(function(lq, gt, crop_border=crop, y_channel=y_channel) - expected[key])
            worst[key] = max(worst.get(key, 0.0), diff)
    print(f"max abs diff vs basicsr 1.4.2: {worst}")
    assert max(worst.values()) <= 1e-6, worst


def test_batched_torch_versions_match_numpy(metric_pairs):
    # Central 256x256 crops of two pairs keep the test fast on a shared CPU; the numpy functions
    # are checked against basicsr above.
    lq = np.stack([p[1][128:384, 128:384] for p in metric_pairs[:2]])
    gt = np.stack([p[2][128:384, 128:384] for p in metric_pairs[:2]])
    lq_t, gt_t = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (lq, gt))
    for crop, y_channel in SETTINGS:
        batch_psnr = psnr_torch(lq_t, gt_t, crop, y_channel).numpy()
        batch_ssim = ssim_torch(lq_t.float() / 255.0, gt_t.float() / 255.0, crop, y_channel).numpy()
        assert batch_psnr.shape == batch_ssim.shape == (2,)
        for i in range(2):
            assert batch_psnr[i] == pytest.approx(psnr(lq[i], gt[i], crop, y_channel), abs=1e-10)
            assert batch_ssim[i] == pytest.approx(ssim(lq[i], gt[i], crop, y_channel), abs=1e-6)
    assert psnr_torch(gt_t, gt_t).isinf().all()


def test_hand_computed_values():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(32, 40, 3), dtype=np.uint8)
    # Every pixel off by one grey level: MSE = 1, PSNR = 20 log10(255).
    assert psnr(img + 1, img) == pytest.approx(20 * math.log10(255.0), abs=1e-12)
    # Flat images a and b: no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = np.full((20, 20), 100, np.uint8), np.full((20, 20), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)
    # BT.601 studio-swing luma: Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1].
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0]
    np.testing.assert_allclose(rgb_to_y(primaries)[0], expected, atol=2e-5)


@pytest.mark.slow
def test_properties(metric_pairs):
    _, lq, gt, _ = metric_pairs[0]
    for y_channel in (False, True):
        assert psnr(gt, gt, y_channel=y_channel) == math.inf
        assert ssim(gt, gt, y_channel=y_channel) == pytest.approx(1.0, abs=1e-12)
        assert ssim(lq, gt, 4, y_channel) == pytest.approx(ssim(gt, lq, 4, y_channel), abs=1e-12)
        assert psnr(lq, gt, 4, y_channel) == psnr(gt, lq, 4, y_channel)
    # crop_border is the same as cropping by hand.
    assert psnr(lq, gt, crop_border=4) == psnr(lq[4:-4, 4:-4], gt[4:-4, 4:-4])
    assert ssim(lq, gt, crop_border=4) == ssim(lq[4:-4, 4:-4], gt[4:-4, 4:-4])
    # A worse image scores worse.
    noisy = np.clip(lq.astype(np.int16) + np.random.default_rng(1).integers(-30, 31, lq.shape), 0, 255).astype(np.uint8)
    assert psnr(noisy, gt) < psnr(lq, gt) and ssim(noisy, gt) < ssim(lq, gt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uint8_and_float_unit_range_agree(metric_pairs, dtype):
    _, lq, gt, _ = metric_pairs[1]
    lq01, gt01 = (lq / 255.0).astype(dtype), (gt / 255.0).astype(dtype)
    for crop, y_channel in SETTINGS:
        assert psnr(lq01, gt01, crop, y_channel) == pytest.approx(psnr(lq, gt, crop, y_channel), abs=1e-6)
        tolerance = 1e-6 if dtype == np.float32 else 1e-9  # float32 u / 255 is not exact
        assert ssim(lq01, gt01, crop, y_channel) == pytest.approx(ssim(lq, gt, crop, y_channel), abs=tolerance)


def test_bad_input_raises_one_line_errors():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ImageInputError, match="shapes differ"):
        psnr(img, img[:8])
    with pytest.raises(ImageInputError, match="dtype int32"):
        ssim(img.astype(np.int32), img.astype(np.int32))
    with pytest.raises(ImageInputError, match="RGB or"):
        psnr(np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(ImageInputError, match="at least 11x11"):
        ssim(img, img, crop_border=3)
