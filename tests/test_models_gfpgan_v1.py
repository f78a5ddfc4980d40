"""GFPGANv1 (paper model) and FacialComponentDiscriminator vs the official gfpgan outputs."""

from __future__ import annotations

import pytest
import torch
from reference_utils import check_gfpgan_fixed_noise, check_manifest, check_official_init, load_reference_model, max_abs_diff

from faceprior.models.gfpgan_decoder import apply_sft
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator, GFPGANv1
from faceprior.models.stylegan2 import StyleGAN2Generator

ATOL = 1e-4  # README: about 6x the largest legitimate fp32 difference (GFPGANv1_small)


@pytest.fixture(scope="module")
def gfpgan_case(reference_dir):
    return load_reference_model(reference_dir, "GFPGANv1_small", GFPGANv1)


def test_gfpgan_v1_matches_official(gfpgan_case):
    model, ref = gfpgan_case
    check_gfpgan_fixed_noise(model, ref, ATOL)


@torch.no_grad()
def test_gfpgan_v1_rgb_flag_and_random_noise(gfpgan_case):
    model, ref = gfpgan_case
    fixed, _ = model(ref["input"], randomize_noise=False)
    torch.manual_seed(4321)
    first, rgbs = model(ref["input"], return_rgb=False, weight=0.5)  # GFPGANer passes an unused `weight`
    torch.manual_seed(4321)
    second, _ = model(ref["input"], return_rgb=False)
    assert rgbs == []
    assert torch.equal(first, second)  # noise comes from the global generator
    assert max_abs_diff(first, fixed) > 1e-3


def test_apply_sft_half_and_full():
    feat = torch.arange(4.0).view(1, 4, 1, 1)
    scale = torch.full((1, 2, 1, 1), 2.0)
    shift = torch.full((1, 2, 1, 1), 1.0)
    assert apply_sft(feat, scale, shift, sft_half=True).flatten().tolist() == [0.0, 1.0, 5.0, 7.0]
    scale4, shift4 = torch.full((1, 4, 1, 1), 2.0), torch.full((1, 4, 1, 1), 1.0)
    assert apply_sft(feat, scale4, shift4, sft_half=False).flatten().tolist() == [1.0, 3.0, 5.0, 7.0]
    # Batch of 2 with spatial extent: the first half of the channels passes through untouched.
    feat = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    out = apply_sft(feat, torch.full((2, 2, 2, 2), 3.0), torch.full((2, 2, 2, 2), -1.0), sft_half=True)
    assert torch.equal(out[:, :2], feat[:, :2])
    assert torch.equal(out[:, 2:], feat[:, 2:] * 3 - 1)


def test_gfpgan_v1_full_size_manifest(reference_dir):
    check_manifest(reference_dir, "GFPGANv1", GFPGANv1)


def test_official_initialisation(reference_dir):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the checkpoint."""
    check_official_init(reference_dir, "GFPGANv1_small", GFPGANv1)
    check_official_init(reference_dir, "FacialComponentDiscriminator", FacialComponentDiscriminator)


# --- decoder_load_path / fix_decoder -------------------------------------------------------------

SMALL = dict(out_size=32, num_style_feat=16, channel_multiplier=1, num_mlp=2, narrow=1 / 32)


def test_gfpgan_v1_official_defaults():
    model = GFPGANv1(out_size=32, num_style_feat=16, num_mlp=2, narrow=1 / 32)
    # Official defaults: fix_decoder=True, input_is_latent=False, different_w=False, sft_half=False.
    assert not model.input_is_latent and not model.different_w and not model.stylegan_decoder.sft_half
    assert model.final_linear.out_channels == 16
    assert all(not p.requires_grad for p in model.stylegan_decoder.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("stylegan_decoder."))


def test_gfpgan_v1_decoder_load_path(tmp_path):
    from faceprior.models.architecture import ArchitectureError
    torch.manual_seed(1)
    decoder = StyleGAN2Generator(**SMALL)
    path = tmp_path / "stylegan2_small.pth"
    decoder_sd = decoder.state_dict()
    # params_ema is preferred over params, as in the official loader.
    torch.save({"params_ema": decoder_sd, "params": {k: torch.zeros_like(v) for k, v in decoder_sd.items()}}, path)

    torch.manual_seed(2)
    frozen = GFPGANv1(**SMALL, decoder_load_path=str(path))
    loaded = frozen.stylegan_decoder.state_dict()
    assert list(loaded) == list(decoder_sd)
    assert all(torch.equal(loaded[k], decoder_sd[k]) for k in decoder_sd)
    assert all(not p.requires_grad for p in frozen.stylegan_decoder.parameters())

    trainable = GFPGANv1(**SMALL, decoder_load_path=str(path), fix_decoder=False)
    assert torch.equal(trainable.stylegan_decoder.constant_input.weight, decoder.constant_input.weight)
    assert all(p.requires_grad for p in trainable.parameters())

    # A DataParallel-style bare state dict ('module.' prefixes) loads too.
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in decoder_sd.items()}, bare)
    from_bare = GFPGANv1(**SMALL, decoder_load_path=str(bare))
    assert torch.equal(from_bare.stylegan_decoder.noises.noise0, decoder.noises.noise0)

    # A checkpoint of another configuration fails with a one-line error naming the file.
    other = tmp_path / "other.pth"
    torch.save({"params_ema": StyleGAN2Generator(**{**SMALL, "num_style_feat": 8}).state_dict()}, other)
    with pytest.raises(ArchitectureError, match="other.pth.*with another shape") as error:
        GFPGANv1(**SMALL, decoder_load_path=str(other))
    assert "\n" not in str(error.value)


# --- FacialComponentDiscriminator -----------------------------------------------------------------


@torch.no_grad()
def test_facial_component_discriminator_matches_official(reference_dir):
    model, ref = load_reference_model(reference_dir, "FacialComponentDiscriminator", FacialComponentDiscriminator)

    out, feats = model(ref["input_80"], return_feats=True)
    assert max_abs_diff(out, ref["out_80"]) <= ATOL
    assert len(feats) == 2
    for ours, theirs in zip(feats, ref["feats_80"]):
        assert max_abs_diff(ours, theirs) <= ATOL

    out, feats = model(ref["input_120"])
    assert feats is None
    assert max_abs_diff(out, ref["out_120"]) <= ATOL


def test_facial_component_discriminator_full_size_manifest(reference_dir):
    check_manifest(reference_dir, "FacialComponentDiscriminator", FacialComponentDiscriminator)
