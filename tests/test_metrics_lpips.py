"""LPIPS: key layout of the official definitions, the v0.1 computation re-derived from the lpips
package's slices, metric properties, and the published linear heads (loaded when pip can fetch
the lpips wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceprior.metrics.availability import MetricUnavailable, try_load
from faceprior.metrics.lpips import (
    LPIPS,
    LPIPS_TAPS,
    load_lpips,
    load_lpips_linear_weights,
    lpips_distance,
    lpips_linear_weights_path,
)
from faceprior.models.alexnet import AlexNetFeatures, load_alexnet_weights
from faceprior.weights.catalogue import get_entry
from faceprior.weights.store import sha256_of_file

# torchvision alexnet().features parameters and the lpips package's linear-head keys, in order.
EXPECTED_ALEX = [
    ("net.features.0.weight", (64, 3, 11, 11)), ("net.features.0.bias", (64,)),
    ("net.features.3.weight", (192, 64, 5, 5)), ("net.features.3.bias", (192,)),
    ("net.features.6.weight", (384, 192, 3, 3)), ("net.features.6.bias", (384,)),
    ("net.features.8.weight", (256, 384, 3, 3)), ("net.features.8.bias", (256,)),
    ("net.features.10.weight", (256, 256, 3, 3)), ("net.features.10.bias", (256,)),
    ("lin0.model.1.weight", (1, 64, 1, 1)), ("lin1.model.1.weight", (1, 192, 1, 1)),
    ("lin2.model.1.weight", (1, 384, 1, 1)), ("lin3.model.1.weight", (1, 256, 1, 1)),
    ("lin4.model.1.weight", (1, 256, 1, 1)),
]
# torchvision vgg16().features: conv indices and (out, in) channels.
VGG16_CONVS = [
    (0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256), (14, 256, 256),
    (17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512),
]
EXPECTED_VGG = [
    item for i, out, inp in VGG16_CONVS
    for item in ((f"net.features.{i}.weight", (out, inp, 3, 3)), (f"net.features.{i}.bias", (out,)))
] + [(f"lin{k}.model.1.weight", (1, c, 1, 1)) for k, c in enumerate((64, 128, 256, 512, 512))]

# lpips/pretrained_networks.py: the slices of torchvision's features whose outputs are compared.
OFFICIAL_SLICES = {
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
}
OFFICIAL_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
OFFICIAL_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
SIZES = {"alex": 64, "vgg": 32}


def _random_model(net: str, seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    model = LPIPS(net)
    for head in model.heads:  # the published heads are non-negative
        head.model[1].weight.data = torch.rand_like(head.model[1].weight)
    return model


@pytest.mark.parametrize("net,expected", [("alex", EXPECTED_ALEX), ("vgg", EXPECTED_VGG)])
def test_state_dict_keys_match_official_layout(net, expected):
    state = LPIPS(net).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected


@pytest.mark.parametrize("net,indices", [("alex", [1, 4, 7, 9, 11]), ("vgg", [3, 8, 15, 22, 29])])
def test_taps_are_the_relus_ending_the_official_slices(net, indices):
    model = LPIPS(net)
    assert [model.net.layer_names.index(tap) for tap in LPIPS_TAPS[net]] == indices
    assert [end - 1 for _, end in OFFICIAL_SLICES[net]] == indices
    assert all(isinstance(model.net.features[i], torch.nn.ReLU) for i in indices)


def _official_formula(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """lpips v0.1 forward, written from the package's definition with the model's own weights."""
    features = model.net.features
    total = torch.zeros(x.shape[0])
    hx, hy = (x - OFFICIAL_SHIFT) / OFFICIAL_SCALE, (y - OFFICIAL_SHIFT) / OFFICIAL_SCALE
    for k, (start, end) in enumerate(OFFICIAL_SLICES[model.net_name]):
        for i in range(start, end):
            hx, hy = features[i](hx), features[i](hy)
        fx = hx / (torch.sqrt((hx ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        fy = hy / (torch.sqrt((hy ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        weight = getattr(model, f"lin{k}").model[1].weight
        total = total + torch.nn.functional.conv2d((fx - fy) ** 2, weight).mean(dim=(1, 2, 3))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_forward_matches_the_official_formula(net):
    model = _random_model(net)
    size = SIZES[net]
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        ours, reference = model(x, y), _official_formula(model, x, y)
        terms = model.layer_distances(x, y)
    assert ours.shape == (2,)
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-7), (ours, reference)
    assert torch.allclose(torch.stack(terms).sum(0), ours)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_metric_properties(net):
    model = _random_model(net, seed=1)
    size = SIZES[net]
    x, y = torch.rand(3, 3, size, size), torch.rand(3, 3, size, size)
    with torch.no_grad():
        d_xy, d_yx = model(x, y, normalize=True), model(y, x, normalize=True)
        d_xx = model(x, x, normalize=True)
        d_pm1 = model(2 * x - 1, 2 * y - 1)
    assert d_xy.shape == (3,)
    assert torch.all(d_xx == 0)
    assert torch.allclose(d_xy, d_yx, rtol=1e-6)
    assert torch.all(d_xy > 0)
    assert torch.allclose(d_xy, d_pm1, rtol=1e-6)


def test_numpy_interface_uint8_and_float_agree():
    model = _random_model("alex")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    d = lpips_distance(a, b, model)
    assert d > 0 and lpips_distance(a, a, model) == 0.0
    assert d == pytest.approx(lpips_distance(a / 255.0, b / 255.0, model), rel=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        lpips_distance(a, b[:32], model)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))


def test_alexnet_loads_a_torchvision_format_file(tmp_path):
    source = AlexNetFeatures()
    state = {f"features.{k}": v.clone() for k, v in source.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(8, 4)  # ignored, as torchvision's classifier
    torch.save(state, tmp_path / "alexnet.pth")
    target = AlexNetFeatures()
    load_alexnet_weights(target, tmp_path / "alexnet.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_backbone_with_wrong_checksum_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    (tmp_path / "weights").mkdir()
    torch.save({f"features.{k}": v for k, v in AlexNetFeatures().features.state_dict().items()},
               tmp_path / "weights" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(MetricUnavailable, match=r"alexnet-owt-7be5be79\.pth has \d+ bytes, expected"):
        load_lpips("alex", cache_dir=tmp_path)


def test_unavailable_offline_names_the_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    model, reason = try_load(load_lpips, "vgg", cache_dir=tmp_path)
    assert model is None
    assert "vgg16-397923af.pth" in reason and str(tmp_path / "weights") in reason
    assert "\n" not in reason
    with pytest.raises(MetricUnavailable, match=r"alex\.pth.*lpips 0\.1\.4 wheel"):
        lpips_linear_weights_path("alex", cache_dir=tmp_path)


@pytest.fixture(scope="module")
def published_heads():
    try:
        return {net: lpips_linear_weights_path(net) for net in ("alex", "vgg")}
    except MetricUnavailable as error:
        pytest.skip(f"lpips wheel not obtainable (offline?): {error}")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_published_linear_heads_load_strictly(published_heads, net):
    path = published_heads[net]
    assert sha256_of_file(path) == get_entry(f"lpips-{net}").sha256
    model = LPIPS(net)
    load_lpips_linear_weights(model, path)
    weights = [head.model[1].weight for head in model.heads]
    assert all(torch.all(w >= 0) for w in weights)  # lpips clamps its heads to be non-negative
    assert all(w.abs().sum() > 0 for w in weights)
