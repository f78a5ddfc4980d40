"""Face parsing networks: facexlib key layout, forward shapes, paste-back mask."""

from __future__ import annotations

import json

import pytest
import torch

from faceprior.face.parsing import (
    PARSENET_CLASSES,
    PASTE_MASK_CLASSES,
    BiSeNet,
    ParseNet,
    ParseNetConv,
    ParseNetResidualBlock,
    face_parsing_mask,
    load_bisenet,
    load_parsenet,
)
from faceprior.weights.checkpoint import CheckpointError


def _entries(model: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name, cls", [("ParseNet", ParseNet), ("BiSeNet", BiSeNet)])
def test_state_dict_matches_manifest(reference_dir, name, cls):
    manifest = json.loads((reference_dir / "manifests" / f"{name}.json").read_text())
    model = cls()
    assert _entries(model) == [entry[:3] for entry in manifest["entries"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


def test_parsenet_forward_shapes():
    torch.manual_seed(0)
    model = ParseNet(in_size=64, out_size=64, min_feat_size=16, base_ch=8, res_depth=2, ch_range=(8, 16)).eval()
    with torch.no_grad():
        logits, image = model(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert logits.shape == (2, 19, 64, 64) and image.shape == (2, 3, 64, 64)


def test_parsenet_full_size_forward_on_small_input():
    model = ParseNet().eval()
    with torch.no_grad():
        logits, image = model(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert logits.shape == (1, 19, 32, 32) and image.shape == (1, 3, 32, 32)


def test_parsenet_conv_resampling_and_reflection_padding():
    down = ParseNetConv(1, 1, 3, "down")
    up = ParseNetConv(1, 1, 3, "up")
    with torch.no_grad():
        for conv in (down, up):
            conv.conv2d.weight.fill_(1.0)
            conv.conv2d.bias.zero_()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Stride-2 3x3 box sums over the reflection-padded image: the top-left window covers rows
    # and columns (1, 0, 1) -> 4 x[1,1] + 2 x[1,0] + 2 x[0,1] + x[0,0] = 20 + 8 + 2 + 0 = 30
    # (zero padding would give 10).
    out = down(x)
    assert out.shape == (1, 1, 2, 2) and out[0, 0, 0, 0].item() == 30.0
    assert up(x).shape == (1, 1, 8, 8)
    # Up-sampling is nearest: a constant image stays constant (times 9 for the box filter).
    torch.testing.assert_close(up(torch.ones(1, 1, 4, 4)), torch.full((1, 1, 8, 8), 9.0))


def test_parsenet_residual_block_shortcuts():
    same = ParseNetResidualBlock(8, 8)
    assert same.shortcut_func is None
    down = ParseNetResidualBlock(8, 16, "down")
    assert down.shortcut_func is not None and down.shortcut_func.norm is None
    with torch.no_grad():
        for block in (same, down):
            block.conv2.norm.norm.weight.zero_()  # residual branch -> BN bias
            block.conv2.norm.norm.bias.zero_()
    same.eval()
    down.eval()
    x = torch.randn(1, 8, 8, 8)
    torch.testing.assert_close(same(x), x)
    torch.testing.assert_close(down(x), down.shortcut_func(x))
    assert down(x).shape == (1, 16, 4, 4)


def test_bisenet_forward_shapes():
    model = BiSeNet(num_class=19).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    assert len(outputs) == 3
    assert all(o.shape == (1, 19, 64, 96) for o in outputs)


def test_paste_mask_classes_follow_facexlib_colormap():
    # facexlib FaceRestoreHelper.paste_faces_to_input_image
    mask_colormap = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0]
    assert PASTE_MASK_CLASSES == tuple(i for i, v in enumerate(mask_colormap) if v == 255)
    excluded = {PARSENET_CLASSES[i] for i in range(19) if i not in PASTE_MASK_CLASSES}
    assert excluded == {"background", "hat", "necklace", "neck", "cloth"}


def test_face_parsing_mask_values():
    labels = torch.tensor([[0, 1, 14], [15, 13, 18]])
    logits = torch.nn.functional.one_hot(labels, 19).permute(2, 0, 1).float() * 3 - 1
    mask = face_parsing_mask(logits)
    assert mask.dtype == torch.float32 and mask.shape == (2, 3)
    assert torch.equal(mask, torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    batched = face_parsing_mask(torch.stack([logits, logits.roll(1, dims=0)]), classes=(0, 1))
    assert batched.shape == (2, 2, 3)
    assert torch.equal(batched[0], torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    # the roll moves class c to c + 1 (18 wraps to 0)
    assert torch.equal(batched[1], torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def test_face_parsing_mask_on_network_output_is_binary():
    model = ParseNet(in_size=32, out_size=32, min_feat_size=16, base_ch=8, res_depth=1, ch_range=(8, 8)).eval()
    with torch.no_grad():
        mask = face_parsing_mask(model(torch.rand(1, 3, 32, 32))[0])
    assert mask.shape == (1, 32, 32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_face_parsing_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="out of range"):
        face_parsing_mask(torch.zeros(1, 5, 4, 4), classes=(1, 7))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        face_parsing_mask(torch.zeros(4, 4))


def test_loaders_accept_plain_state_dicts_and_reject_others(tmp_path):
    torch.manual_seed(0)
    source = BiSeNet()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "parsing_bisenet.pth"
    torch.save(state, path)
    model = load_bisenet(str(path))
    assert not model.training
    assert torch.equal(model.state_dict()["ffm.conv2.weight"], source.state_dict()["ffm.conv2.weight"])
    with pytest.raises(CheckpointError, match="parsing_bisenet.pth: does not fit ParseNet"):
        load_parsenet(str(path))
