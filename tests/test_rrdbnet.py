"""RRDBNet (Real-ESRGAN): basicsr key layout, pixel-unshuffle convention, tiled inference."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from faceprior.models.rrdbnet import RRDB, RRDBNet, upsample_tiled


def _tiny(scale: int, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    with torch.no_grad():  # give the biases some effect
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.normal_(0, 0.1)
    return model


def test_x2_state_dict_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "RRDBNet_x2.json").read_text())
    model = RRDBNet(num_in_ch=3, num_out_ch=3, scale=2, num_feat=64, num_block=23, num_grow_ch=32)
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert got == [entry[:3] for entry in manifest["entries"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


@pytest.mark.parametrize("scale, in_channels", [(4, 3), (2, 12), (1, 48)])
def test_forward_shapes(scale, in_channels):
    model = _tiny(scale)
    assert model.conv_first.in_channels == in_channels
    with torch.no_grad():
        out = model(torch.rand(2, 3, 8, 12))
    assert out.shape == (2, 3, 8 * scale, 12 * scale)


def test_full_size_x4_forward_on_small_input():
    model = RRDBNet(scale=4).eval()
    assert model.conv_first.weight.shape == (64, 3, 3, 3)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 4, 6)).shape == (1, 3, 16, 24)


def test_pixel_unshuffle_channel_order_is_basicsr():
    """basicsr: view(b, c, h/r, r, w/r, r).permute(0, 1, 3, 5, 2, 4) -> channel c*r*r + i*r + j."""
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(1, 2, 4, 6)
    expected = x.view(1, 2, 2, 2, 3, 2).permute(0, 1, 3, 5, 2, 4).reshape(1, 8, 2, 3)
    assert torch.equal(F.pixel_unshuffle(x, 2), expected)
    assert F.pixel_unshuffle(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), 2).flatten().tolist() == [1, 2, 3, 4]


def test_rrdb_residual_scaling():
    block = RRDB(num_feat=4, num_grow_ch=2)
    with torch.no_grad():
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            rdb.conv5.weight.zero_()
            rdb.conv5.bias.fill_(1.0)
    x = torch.randn(1, 4, 5, 5)
    # rdb(x) = x + 0.2 -> three of them: x + 0.6 -> RRDB: x + 0.2 * (x + 0.6) = 1.2 x + 0.12
    torch.testing.assert_close(block(x), 1.2 * x + 0.12)


def test_bad_scale_and_odd_sizes_are_rejected():
    with pytest.raises(ValueError, match="scale 1, 2 or 4"):
        RRDBNet(scale=3)
    with pytest.raises(ValueError, match="divisible by 2"):
        _tiny(2)(torch.rand(1, 3, 7, 8))


# Receptive-field radius of the tiny net in unshuffled low-res pixels: 17 convs there
# (conv_first, 15 in one RRDB, conv_body) plus 1 at 2x and 3 at 4x: 17 + 0.5 + 0.75 < 19.
@pytest.mark.parametrize("scale, tile, tile_pad", [(4, 16, 20), (2, 24, 40), (1, 32, 80)])
def test_tiled_equals_untiled(scale, tile, tile_pad):
    model = _tiny(scale)
    image = torch.rand(1, 3, 52, 68, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(image)
    tiled = upsample_tiled(model, image, tile=tile, tile_pad=tile_pad)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max().item() < 1e-5
    # Without context the tile seams differ: the comparison above is not vacuous.
    seams = upsample_tiled(model, image, tile=tile, tile_pad=0)
    assert (seams - full).abs().max().item() > 1e-3


def test_tiling_with_pre_pad_and_odd_size_matches_realesrganer_padding():
    model = _tiny(2)
    image = torch.rand(1, 3, 27, 31, generator=torch.Generator().manual_seed(2))
    out = upsample_tiled(model, image, tile=0, tile_pad=10, pre_pad=10)
    assert out.shape == (1, 3, 54, 62)
    # RealESRGANer: reflect pre_pad, reflect pad to even, run, crop.
    padded = F.pad(F.pad(image, (0, 10, 0, 10), mode="reflect"), (0, 1, 0, 1), mode="reflect")
    with torch.no_grad():
        expected = model(padded)[:, :, :54, :62]
    assert torch.equal(out, expected)
    tiled = upsample_tiled(model, image, tile=16, tile_pad=40, pre_pad=10)
    assert (tiled - expected).abs().max().item() < 1e-5


def test_tiling_rejects_off_grid_tiles():
    with pytest.raises(ValueError, match="divisible by 2"):
        upsample_tiled(_tiny(2), torch.rand(1, 3, 16, 16), tile=15, tile_pad=10)
    with pytest.raises(ValueError, match="pass scale="):
        upsample_tiled(torch.nn.Identity(), torch.rand(1, 3, 16, 16))
