"""ResNetArcFace against the official gfpgan implementation (reference pack, arcface/ companion)."""

from __future__ import annotations

import pytest
import torch
from reference_utils import check_manifest, check_official_init, load_reference_model, max_abs_diff

from faceprior.models.arcface import BasicBlock, Bottleneck, IRBlock, ResNetArcFace

ATOL = 1e-4  # measured 8.6e-6 (official float32 vs float64 differ by 7.9e-6)


@pytest.fixture(scope="module")
def arcface_pack(reference_dir):
    """The ArcFace companion folder of the reference pack (same layout as the pack)."""
    pack = reference_dir / "arcface"
    if not (pack / "index.json").is_file():
        pytest.skip("arcface companion folder not found")
    return pack


def test_state_dict_matches_official_manifest(reference_dir):
    check_manifest(reference_dir, "ResNetArcFace", ResNetArcFace)


def test_block_given_as_class_or_string_is_the_same_model():
    with torch.device("meta"):  # shapes only
        a = ResNetArcFace(block="IRBlock", layers=[2, 2, 2, 2], use_se=False)
        b = ResNetArcFace(block=IRBlock, layers=(2, 2, 2, 2), use_se=False)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def test_reproduces_official_output_from_fp16_checkpoint(arcface_pack):
    model, ref = load_reference_model(arcface_pack, "ResNetArcFace_fp16", ResNetArcFace)
    assert model.fc5.weight.dtype == torch.float32  # fp16 values are cast on load
    with torch.no_grad():
        out = model(ref["input"])
    assert out.shape == (2, 512)
    assert max_abs_diff(out, ref["output"]) <= ATOL
    # each sample is embedded independently in eval mode (no batch mixing)
    with torch.no_grad():
        single = model(ref["input"][1:])
    assert max_abs_diff(single[0], out[1]) <= ATOL


def test_official_initialisation(arcface_pack):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the (fp16) checkpoint."""
    check_official_init(arcface_pack, "ResNetArcFace_fp16", ResNetArcFace)


def test_se_variant_runs():
    model = ResNetArcFace(layers=(1, 1, 1, 1), use_se=True).eval()
    assert "layer1.0.se.fc.0.weight" in model.state_dict()
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert model(x).shape == (2, 512)


def test_resnet_blocks_shapes():
    x = torch.randn(2, 32, 16, 16, generator=torch.Generator().manual_seed(0))
    assert BasicBlock(32, 32).eval()(x).shape == (2, 32, 16, 16)
    assert Bottleneck(32, 8).eval()(x).shape == (2, 32, 16, 16)  # expansion 4: 8 * 4 = 32 channels out
    downsample = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 1, stride=2, bias=False), torch.nn.BatchNorm2d(64))
    assert IRBlock(32, 64, stride=2, downsample=downsample, use_se=True).eval()(x).shape == (2, 64, 8, 8)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown ArcFace block"):
        ResNetArcFace(block="ResBlock")
    with pytest.raises(ValueError, match="squeeze-and-excitation"):
        ResNetArcFace(block="BasicBlock", use_se=True)
    with pytest.raises(ValueError, match=r"\[B, 1, 128, 128\]"):
        ResNetArcFace(layers=(1, 1, 1, 1))(torch.zeros(1, 3, 128, 128))
