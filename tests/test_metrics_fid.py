"""FID: pytorch-fid's FIDInceptionV3 key layout, pool3 features, the scipy-free Frechet distance
against closed forms, statistics files and the per-folder feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.fid import (
    FIDInputError,
    compute_statistics,
    extract_features,
    fid,
    fid_from_features,
    frechet_distance,
    list_images,
    load_fid_inception,
    load_statistics,
    save_statistics,
    statistics_of_features,
)
from faceprior.models.inception import FIDInceptionV3, _avg_pool_3x3_same

# torchvision Inception3(num_classes=1008, aux_logits=False) with pytorch-fid's FID blocks:
# every BasicConv2d as (name, in, out, kernel_h, kernel_w), in state-dict order.
STEM = [
    ("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
    ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3),
]


def _block_a(name, cin, pool):
    return [(f"{name}.branch1x1", cin, 64, 1, 1), (f"{name}.branch5x5_1", cin, 48, 1, 1), (f"{name}.branch5x5_2", 48, 64, 5, 5),
            (f"{name}.branch3x3dbl_1", cin, 64, 1, 1), (f"{name}.branch3x3dbl_2", 64, 96, 3, 3),
            (f"{name}.branch3x3dbl_3", 96, 96, 3, 3), (f"{name}.branch_pool", cin, pool, 1, 1)]


def _block_c(name, c7):
    return [(f"{name}.branch1x1", 768, 192, 1, 1), (f"{name}.branch7x7_1", 768, c7, 1, 1), (f"{name}.branch7x7_2", c7, c7, 1, 7),
            (f"{name}.branch7x7_3", c7, 192, 7, 1), (f"{name}.branch7x7dbl_1", 768, c7, 1, 1),
            (f"{name}.branch7x7dbl_2", c7, c7, 7, 1), (f"{name}.branch7x7dbl_3", c7, c7, 1, 7),
            (f"{name}.branch7x7dbl_4", c7, c7, 7, 1), (f"{name}.branch7x7dbl_5", c7, 192, 1, 7),
            (f"{name}.branch_pool", 768, 192, 1, 1)]


def _block_e(name, cin):
    return [(f"{name}.branch1x1", cin, 320, 1, 1), (f"{name}.branch3x3_1", cin, 384, 1, 1), (f"{name}.branch3x3_2a", 384, 384, 1, 3),
            (f"{name}.branch3x3_2b", 384, 384, 3, 1), (f"{name}.branch3x3dbl_1", cin, 448, 1, 1),
            (f"{name}.branch3x3dbl_2", 448, 384, 3, 3), (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3),
            (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1), (f"{name}.branch_pool", cin, 192, 1, 1)]


EXPECTED_CONVS = (
    STEM
    + _block_a("Mixed_5b", 192, 32) + _block_a("Mixed_5c", 256, 64) + _block_a("Mixed_5d", 288, 64)
    + [("Mixed_6a.branch3x3", 288, 384, 3, 3), ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
       ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3)]
    + _block_c("Mixed_6b", 128) + _block_c("Mixed_6c", 160) + _block_c("Mixed_6d", 160) + _block_c("Mixed_6e", 192)
    + [("Mixed_7a.branch3x3_1", 768, 192, 1, 1), ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
       ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
       ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3)]
    + _block_e("Mixed_7b", 1280) + _block_e("Mixed_7c", 2048)
)
EXPECTED_PARAMETERS = 23_850_960  # torchvision inception_v3(num_classes=1008, aux_logits=False)


@pytest.fixture(scope="module")
def model() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3()


def test_state_dict_matches_pytorch_fid_layout(model):
    expected = []
    for name, cin, cout, kh, kw in EXPECTED_CONVS:
        expected += [(f"{name}.conv.weight", (cout, cin, kh, kw))]
        expected += [(f"{name}.bn.{p}", (cout,)) for p in ("weight", "bias", "running_mean", "running_var")]
        expected += [(f"{name}.bn.num_batches_tracked", ())]
    expected += [("fc.weight", (1008, 2048)), ("fc.bias", (1008,))]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected
    assert len(EXPECTED_CONVS) == 94
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS
    assert all(m.eps == 0.001 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_pool3_features_of_any_size(model):
    x = torch.rand(2, 3, 64, 48)
    resized = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.equal(model.preprocess(x), 2 * resized - 1)
    with torch.no_grad():
        features = model(x)
    assert features.shape == (2, 2048)
    assert torch.all(features >= 0)  # mean of ReLU outputs
    assert not torch.allclose(features[0], features[1])


def test_fid_pools_ignore_padding(model):
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(_avg_pool_3x3_same(ones), ones)  # count_include_pad=True would give 4/9 at corners
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(1.0, 2.0, size=(50, 6)) @ rng.normal(size=(6, 6))
    mu1, s1 = statistics_of_features(a)
    mu2, s2 = statistics_of_features(b)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    d12, d21 = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert d12 > 0 and d12 == pytest.approx(d21, rel=1e-10)
    assert fid_from_features(a, b) == pytest.approx(d12, rel=1e-12)
    # Independent route: trace of sqrt(s1 s2) = sum of sqrt of the (real, >= 0) eigenvalues of s1 s2.
    eig = np.linalg.eigvals(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(eig.real.clip(0)))
    assert d12 == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed, rel=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))  # commuting covariances: same closed form
    assert frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T) == pytest.approx(closed, rel=1e-9)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # singular covariances (fewer samples than dimensions) stay finite and non-negative
    few = rng.normal(size=(3, 8))
    assert np.isfinite(fid_from_features(few, few + 1.0)) and fid_from_features(few, few + 1.0) == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(FIDInputError, match="do not match"):
        frechet_distance(mu1, np.diag(a), mu2[:4], np.diag(b[:4]))


def test_statistics_file_roundtrip(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    save_statistics(tmp_path / "stats.npz", mu, sigma)
    with np.load(tmp_path / "stats.npz") as data:  # pytorch-fid's reader
        assert sorted(data.files) == ["mu", "sigma"]
        assert np.array_equal(data["mu"], mu) and np.array_equal(data["sigma"], sigma)
    loaded = load_statistics(tmp_path / "stats.npz")
    assert np.array_equal(loaded[0], mu) and np.array_equal(loaded[1], sigma)
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(FIDInputError, match="bad.npz.*'mu' and 'sigma'"):
        load_statistics(tmp_path / "bad.npz")


def _write_images(folder, count, seed, size=24):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i:02d}.png")
    return images


class TinyFeatures(torch.nn.Module):
    """A small stand-in feature model ([B, 3, H, W] in [0, 1] -> [B, 8]) that counts its images."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.images_seen = 0

    def forward(self, x):
        self.images_seen += x.shape[0]
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def test_folder_listing_and_sources_agree(tmp_path):
    pytest.importorskip("PIL")
    images = _write_images(tmp_path / "set", 3, seed=0)
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    (tmp_path / "set" / "sub").mkdir()
    _write_images(tmp_path / "set" / "sub", 1, seed=9)
    (tmp_path / "set" / "img00.png").rename(tmp_path / "set" / "IMG00.PNG")
    assert [p.name for p in list_images(tmp_path / "set")] == ["IMG00.PNG", "img01.png", "img02.png"]
    model = TinyFeatures()
    from_folder = extract_features(tmp_path / "set", model, batch_size=2)
    from_arrays = extract_features(images, model, batch_size=3)
    from_tensor = extract_features(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 255.0, model)
    assert from_folder.shape == (3, 8) and from_folder.dtype == np.float64
    assert np.allclose(from_folder, from_arrays, atol=1e-6) and np.allclose(from_arrays, from_tensor, atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FIDInputError, match="empty: no image files"):
        extract_features(tmp_path / "empty", model)
    with pytest.raises(FIDInputError, match="missing: not a folder"):
        extract_features(tmp_path / "missing", model)


def test_feature_cache_is_reused(tmp_path):
    pytest.importorskip("PIL")
    folder, cache = tmp_path / "set", tmp_path / "cache"
    _write_images(folder, 3, seed=1)
    model = TinyFeatures()
    first = extract_features(folder, model, cache_dir=cache)
    assert model.images_seen == 3 and len(list(cache.glob("*.npz"))) == 1
    second = extract_features(folder, model, cache_dir=cache)
    assert model.images_seen == 3  # all features read from the cache
    assert np.array_equal(first, second)
    _write_images(tmp_path / "other", 1, seed=2)
    (tmp_path / "other" / "img00.png").replace(folder / "img03.png")  # a new file: only it is computed
    third = extract_features(folder, model, cache_dir=cache)
    assert model.images_seen == 4 and third.shape == (4, 8) and np.array_equal(third[:3], first)
    _write_images(tmp_path / "changed", 1, seed=3)
    (tmp_path / "changed" / "img00.png").replace(folder / "img01.png")  # a changed file: recomputed
    fourth = extract_features(folder, model, cache_dir=cache)
    assert model.images_seen == 5 and np.array_equal(fourth[[0, 2, 3]], third[[0, 2, 3]])
    assert not np.allclose(fourth[1], third[1])
    mu, sigma = compute_statistics(folder, model, cache_dir=cache)
    assert model.images_seen == 5 and mu.shape == (8,) and sigma.shape == (8, 8)
    other_weights = TinyFeatures(seed=5)  # another model: its own cache entries
    extract_features(folder, other_weights, cache_dir=cache)
    assert other_weights.images_seen == 4


def test_fid_between_folder_and_statistics_file(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path / "a", 3, seed=3)
    _write_images(tmp_path / "b", 4, seed=4)
    model = TinyFeatures()
    value = fid(tmp_path / "a", tmp_path / "b", model)
    save_statistics(tmp_path / "b.npz", *compute_statistics(tmp_path / "b", model))
    assert fid(tmp_path / "a", tmp_path / "b.npz", model) == pytest.approx(value, rel=1e-9)
    assert value > 0
    assert fid(tmp_path / "a", tmp_path / "a", model) == pytest.approx(0.0, abs=1e-9)


def test_loader_unavailable_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    with pytest.raises(MetricUnavailable, match=r"pt_inception-2015-12-05-6726825d\.pth.*put it at"):
        load_fid_inception(cache_dir=tmp_path)
