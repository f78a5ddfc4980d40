"""VGG19Features: torchvision key layout, layer naming, normalisation, weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceprior.models.architecture import ArchitectureError
from faceprior.models.vgg import VGG16Features, VGG19Features, load_vgg19_weights, load_vgg_weights, vgg19_layer_names
from faceprior.weights.checkpoint import CheckpointError

# torchvision vgg19().features: index of each conv, (out_channels, in_channels), layer name.
VGG19_CONVS = [
    (0, 64, 3, "conv1_1"), (2, 64, 64, "conv1_2"),
    (5, 128, 64, "conv2_1"), (7, 128, 128, "conv2_2"),
    (10, 256, 128, "conv3_1"), (12, 256, 256, "conv3_2"), (14, 256, 256, "conv3_3"), (16, 256, 256, "conv3_4"),
    (19, 512, 256, "conv4_1"), (21, 512, 512, "conv4_2"), (23, 512, 512, "conv4_3"), (25, 512, 512, "conv4_4"),
    (28, 512, 512, "conv5_1"), (30, 512, 512, "conv5_2"), (32, 512, 512, "conv5_3"), (34, 512, 512, "conv5_4"),
]
VGG19_POOLS = [(4, "pool1"), (9, "pool2"), (18, "pool3"), (27, "pool4"), (36, "pool5")]
VGG16_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


@pytest.fixture(scope="module")
def vgg19() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features(use_input_norm=True, range_norm=True)


def test_state_dict_matches_torchvision_layout(vgg19):
    expected = {}
    for index, out_ch, in_ch, _ in VGG19_CONVS:
        expected[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        expected[f"features.{index}.bias"] = (out_ch,)
    assert {k: tuple(v.shape) for k, v in vgg19.state_dict().items()} == expected
    assert len(vgg19.features) == 37
    assert all(not p.requires_grad for p in vgg19.parameters())


def test_layer_names():
    names = vgg19_layer_names()
    assert len(names) == 37
    for index, _, _, name in VGG19_CONVS:
        assert names[index] == name and names[index + 1] == name.replace("conv", "relu")
    for index, name in VGG19_POOLS:
        assert names[index] == name
    vgg16 = VGG16Features()
    assert sorted(int(k.split(".")[1]) for k in vgg16.state_dict() if k.endswith("weight")) == VGG16_CONV_INDICES
    assert vgg16.layer_names[28] == "conv5_3" and len(vgg16.layer_names) == 31


def test_feature_shapes_and_pre_activation(vgg19):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = vgg19(x, ["conv1_2", "relu1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4", "pool5"])
    assert [tuple(f.shape) for f in feats.values()] == [
        (1, 64, 32, 32), (1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 512, 2, 2),
        (1, 512, 1, 1)]
    assert feats["conv1_2"].min() < 0  # before ReLU
    torch.testing.assert_close(feats["relu1_2"], feats["conv1_2"].clamp(min=0), rtol=0, atol=0)


def test_input_normalisation(vgg19):
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    conv = vgg19.features[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.conv2d(((x + 1) / 2 - mean) / std, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(vgg19(x, ["conv1_1"])["conv1_1"], expected, rtol=1e-5, atol=1e-5)

    plain = VGG19Features(use_input_norm=False, range_norm=False)
    plain.load_state_dict(vgg19.state_dict())
    torch.testing.assert_close(plain(x, ["conv1_1"])["conv1_1"], F.conv2d(x, conv.weight, conv.bias, padding=1),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown VGG layer"):
        vgg19(x, ["conv6_1"])


@pytest.mark.slow
def test_load_torchvision_format_file(vgg19, tmp_path):
    # A torchvision vgg19 state dict: features.* plus classifier.* (ignored on load).
    state = dict(vgg19.state_dict())
    state["classifier.0.weight"] = torch.zeros(4, 3)
    state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path / "vgg19-test.pth"
    torch.save(state, path)
    model = VGG19Features(use_input_norm=True, range_norm=True)
    load_vgg19_weights(model, path)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(model(x, ["conv3_1"])["conv3_1"], vgg19(x, ["conv3_1"])["conv3_1"], rtol=0, atol=0)

    bad = tmp_path / "not-vgg.pth"
    torch.save({"classifier.0.weight": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="features"):
        load_vgg_weights(model, bad)
    with pytest.raises(ArchitectureError, match="VGG16Features"):
        load_vgg_weights(VGG16Features(), path)
    with pytest.raises(TypeError):
        load_vgg19_weights(VGG16Features(), path)
