"""StyleGAN2 generators (original and clean) and discriminator vs the official outputs in ../shared/reference."""

from __future__ import annotations

import pytest
import torch
from reference_utils import check_manifest, check_official_init, load_reference_model, max_abs_diff

from faceprior.models.stylegan2 import EqualLinear, StyleGAN2Discriminator, StyleGAN2Generator, minibatch_stddev, modulate_weight
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean

ATOL = 1e-4  # README: about 6x the largest legitimate fp32 difference
CLEAN_ATOL = 2e-5  # README: enough for the clean configs (official fp32 vs fp64 differ by ~4e-6)


# --- generators ---------------------------------------------------------------------------------
# StyleGAN2GeneratorClean subclasses StyleGAN2Generator (other layers, same structure, latents,
# noise and synthesis), so the same checks run on both small configs, each with its tolerance.

GENERATOR_CONFIGS = {
    "StyleGAN2Generator_small": (StyleGAN2Generator, ATOL),
    "StyleGAN2GeneratorClean_small": (StyleGAN2GeneratorClean, CLEAN_ATOL),
}


@pytest.fixture(scope="module", params=list(GENERATOR_CONFIGS))
def generator_case(request, reference_dir):
    """(model with the official small checkpoint, reference tensors, tolerance)."""
    model_class, atol = GENERATOR_CONFIGS[request.param]
    model, ref = load_reference_model(reference_dir, request.param, model_class)
    return model, ref, atol


@torch.no_grad()
def test_generator_style_mlp_and_mean_latent(generator_case):
    model, ref, atol = generator_case
    assert max_abs_diff(model.get_latent(ref["z"]), ref["w"]) <= atol
    torch.manual_seed(777)
    assert max_abs_diff(model.mean_latent(4096), ref["mean_latent"]) <= atol


@torch.no_grad()
def test_generator_fixed_noise(generator_case):
    model, ref, atol = generator_case
    image, latent = model([ref["z"]], randomize_noise=False, return_latents=True)
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= atol
    assert max_abs_diff(latent, ref["out_fixed_noise"]["latent"]) <= atol
    assert latent.shape == (2, model.num_latent, 64)
    # Feeding w directly, or the stored noise explicitly, gives the same image; no latents unless asked.
    image_w, none = model([ref["w"]], input_is_latent=True, randomize_noise=False)
    assert none is None
    assert max_abs_diff(image_w, ref["out_fixed_noise"]["image"]) <= atol
    image_w, _ = model([model.get_latent(ref["z"])], input_is_latent=True, randomize_noise=False)
    assert torch.equal(image_w, image)
    image_n, _ = model([ref["z"]], noise=model.stored_noise())
    assert torch.equal(image_n, image)


@torch.no_grad()
def test_generator_truncation_and_mixing(generator_case):
    model, ref, atol = generator_case
    image, latent = model([ref["z"]], randomize_noise=False, truncation=0.7, truncation_latent=ref["mean_latent"],
                          return_latents=True)
    assert max_abs_diff(image, ref["out_truncation"]["image"]) <= atol
    assert max_abs_diff(latent, ref["out_truncation"]["latent"]) <= atol

    image, latent = model([ref["z"], ref["z2"]], randomize_noise=False, inject_index=4, return_latents=True)
    assert max_abs_diff(image, ref["out_mixing"]["image"]) <= atol
    assert max_abs_diff(latent, ref["out_mixing"]["latent"]) <= atol


@torch.no_grad()
def test_generator_random_noise_follows_official_draw_order(generator_case):
    model, ref, atol = generator_case
    torch.manual_seed(4321)
    image, _ = model([ref["z"]])
    assert max_abs_diff(image, ref["out_random_noise"]["image"]) <= atol
    # The noise really matters (the README measures a change of about 1.9 without it).
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) > 0.1


@pytest.mark.parametrize("model_class", [StyleGAN2Generator, StyleGAN2GeneratorClean])
def test_generator_sizes_and_noise_shapes(model_class):
    model = model_class(out_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=1 / 32)
    assert (model.num_layers, model.num_latent) == (7, 8)
    stored = [tuple(n.shape) for n in model.stored_noise()]
    assert stored == [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 16, 16), (1, 1, 32, 32),
                      (1, 1, 32, 32)]
    assert [tuple(n.shape) for n in model.make_noise()] == stored
    assert [name for name, _ in model.noises.named_buffers()] == [f"noise{i}" for i in range(7)]
    with torch.no_grad():
        image, latent = model([torch.randn(3, 16)], return_latents=True)
    assert image.shape == (3, 3, 32, 32) and latent.shape == (3, 8, 16)
    with pytest.raises(ValueError, match="1 or 2"):
        model([torch.randn(3, 16)] * 3)
    with pytest.raises(ValueError, match="power of two"):
        model_class(out_size=48)
    with pytest.raises(ValueError, match="power of two"):
        model_class(100, num_style_feat=8, narrow=1 / 64)


def test_official_initialisation(reference_dir):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the checkpoint."""
    check_official_init(reference_dir, "StyleGAN2Generator_small", StyleGAN2Generator)
    check_official_init(reference_dir, "StyleGAN2GeneratorClean_small", StyleGAN2GeneratorClean)
    check_official_init(reference_dir, "StyleGAN2Discriminator_small", StyleGAN2Discriminator)


def test_modulate_weight_hand_computed():
    weight = torch.tensor([3.0, 4.0]).view(1, 1, 2, 1, 1)  # Cout = 1, Cin = 2, k = 1
    scales = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # B = 2
    modulated = modulate_weight(weight, scales, demodulate=False)
    assert modulated.shape == (2, 1, 2, 1, 1)
    assert modulated.flatten().tolist() == [3.0, 4.0, 6.0, 0.0]
    demodulated = modulate_weight(weight, scales, demodulate=True, eps=0.0)  # unit L2 norm per output channel
    assert torch.allclose(demodulated.flatten(), torch.tensor([0.6, 0.8, 1.0, 0.0]))


def test_equal_linear_fused_lrelu_hand_computed():
    layer = EqualLinear(2, 1, bias=True, lr_mul=0.5, activation="fused_lrelu")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -4.0]]))  # effective weight = w * 0.5 / sqrt(2)
        layer.bias.fill_(-2.0)  # effective bias = -1
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pre = torch.tensor([[2.0 * 0.5 / 2**0.5 - 1.0], [-4.0 * 0.5 / 2**0.5 - 1.0]])
    expected = torch.where(pre > 0, pre, 0.2 * pre) * 2**0.5
    assert torch.allclose(layer(x), expected, atol=1e-6)


# --- discriminator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def discriminator_case(reference_dir):
    return load_reference_model(reference_dir, "StyleGAN2Discriminator_small", StyleGAN2Discriminator)


@torch.no_grad()
@pytest.mark.parametrize("suffix", ["", "_b8"])
def test_discriminator_matches_official(discriminator_case, suffix):
    model, ref = discriminator_case
    out = model(ref["input" + suffix])
    assert out.shape == (ref["input" + suffix].shape[0], 1)
    assert max_abs_diff(out, ref["output" + suffix]) <= ATOL


def test_minibatch_stddev_groups_are_strided():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (8, 7, 3, 3)
    assert torch.equal(out[:, :6], x)
    for i in range(8):  # samples i, i+2, i+4, i+6 form one group of 4
        group = x[i % 2::2]
        stat = torch.sqrt(group.var(0, unbiased=False) + 1e-8).mean()
        assert torch.allclose(out[i, 6], stat.expand(3, 3), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        minibatch_stddev(torch.randn(6, 2, 2, 2), group_size=4)


def test_discriminator_full_size_manifest(reference_dir):
    check_manifest(reference_dir, "StyleGAN2Discriminator", StyleGAN2Discriminator)
