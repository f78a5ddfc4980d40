"""GFPGANBilinear / StyleGAN2GeneratorBilinear against the official gfpgan implementation (reference pack)."""

from __future__ import annotations

import pytest
import torch
from reference_utils import check_gfpgan_fixed_noise, check_manifest, check_official_init, load_reference_model, max_abs_diff

from faceprior.models.gfpgan_bilinear import GFPGANBilinear, StyleGAN2GeneratorBilinearSFT
from faceprior.models.stylegan2 import StyleGAN2Generator
from faceprior.models.stylegan2_bilinear import StyleGAN2GeneratorBilinear

ATOL = 1e-4


@pytest.fixture(scope="module")
def small(reference_dir):
    """(model loaded from GFPGANBilinear_small.pth in eval mode, reference dict)."""
    return load_reference_model(reference_dir, "GFPGANBilinear_small", GFPGANBilinear)


def test_state_dict_matches_official_manifest(reference_dir):
    check_manifest(reference_dir, "GFPGANBilinear", GFPGANBilinear)  # full size, on the meta device


def test_official_initialisation(reference_dir):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the checkpoint.

    This also shows that the bilinear parts are built once, in the official order (not built as
    FIR parts first and then replaced, which would consume other random numbers).
    """
    check_official_init(reference_dir, "GFPGANBilinear_small", GFPGANBilinear)


def test_reproduces_official_outputs_with_fixed_noise(small):
    model, ref = small
    # measured: image 5.7e-6, out_rgbs 0, style_code 2.4e-7, conditions 0
    check_gfpgan_fixed_noise(model, ref, ATOL)


def test_random_noise_follows_global_generator(small):
    model, ref = small
    x = ref["input"][:1]
    with torch.no_grad():
        fixed, _ = model(x, randomize_noise=False)
        torch.manual_seed(4321)
        a, rgbs = model(x, return_rgb=False, weight=0.5)  # GFPGANer's call; `weight` is ignored
        torch.manual_seed(4321)
        b, _ = model(x, return_rgb=False)
    assert rgbs == []
    assert torch.equal(a, b)
    assert max_abs_diff(a, fixed) > 1e-3  # the noise strengths are non-zero in the checkpoint


def test_decoder_is_the_bilinear_generator_with_sft(small):
    """No conditions, or identity conditions (scale 1, shift 0), give the plain bilinear generator's image."""
    model, _ = small
    decoder = model.stylegan_decoder
    plain = StyleGAN2GeneratorBilinear(128, num_style_feat=32, channel_multiplier=2, narrow=0.0625).eval()
    plain.load_state_dict(decoder.state_dict(), strict=True)
    latent = torch.randn(2, decoder.num_latent, 32, generator=torch.Generator().manual_seed(0))
    identity = []
    for level in range(2):
        half = decoder.channels[f"{2 ** (level + 3)}"] // 2  # sft_half: conditions cover half the channels
        size = 2 ** (level + 3)
        identity += [torch.ones(2, half, size, size), torch.zeros(2, half, size, size)]
    with torch.no_grad():
        expected, _ = plain([latent], input_is_latent=True, randomize_noise=False)
        no_sft, _ = decoder([latent], [], input_is_latent=True, randomize_noise=False)
        id_sft, _ = decoder([latent], identity, input_is_latent=True, randomize_noise=False)
        shifted, _ = decoder([latent], [identity[0], identity[1] + 1], input_is_latent=True, randomize_noise=False)
    assert torch.equal(no_sft, expected)
    assert torch.equal(id_sft, expected)
    assert max_abs_diff(shifted, expected) > 1e-3


def test_generator_keys_equal_fir_generator_and_interpolation_mode_matters():
    kwargs = dict(num_style_feat=16, channel_multiplier=1, narrow=1 / 32)
    bilinear = StyleGAN2GeneratorBilinear(32, **kwargs).eval()
    fir = StyleGAN2Generator(32, **kwargs)
    assert [(k, v.shape) for k, v in bilinear.state_dict().items()] == \
        [(k, v.shape) for k, v in fir.state_dict().items()]
    nearest = StyleGAN2GeneratorBilinear(32, interpolation_mode="nearest", **kwargs).eval()
    nearest.load_state_dict(bilinear.state_dict())
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image, latent = bilinear([z], randomize_noise=False, return_latents=True)
        image_nearest, _ = nearest([z], randomize_noise=False)
    assert image.shape == (2, 3, 32, 32) and latent.shape == (2, bilinear.num_latent, 16)
    assert torch.isfinite(image).all()
    assert max_abs_diff(image, image_nearest) > 1e-4


def test_decoder_load_path_and_fix_decoder(tmp_path):
    from faceprior.models.architecture import ArchitectureError
    kwargs = dict(num_style_feat=16, channel_multiplier=1, narrow=1 / 32)
    torch.manual_seed(1)
    pretrained = StyleGAN2GeneratorBilinear(32, **kwargs)
    path = tmp_path / "stylegan2_bilinear.pth"
    torch.save({"params_ema": pretrained.state_dict()}, path)

    model = GFPGANBilinear(32, decoder_load_path=str(path), fix_decoder=True, **kwargs)
    assert isinstance(model.stylegan_decoder, StyleGAN2GeneratorBilinearSFT)
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.stylegan_decoder.state_dict()[key], value), key
    assert not any(p.requires_grad for p in model.stylegan_decoder.parameters())
    assert all(p.requires_grad for p in model.final_linear.parameters())

    trainable = GFPGANBilinear(32, fix_decoder=False, **kwargs)
    assert all(p.requires_grad for p in trainable.stylegan_decoder.parameters())

    # A checkpoint of another configuration fails with a one-line error naming the file.
    with pytest.raises(ArchitectureError, match="stylegan2_bilinear.pth.*with another shape") as error:
        GFPGANBilinear(32, decoder_load_path=str(path), **{**kwargs, "num_style_feat": 8})
    assert "\n" not in str(error.value)
