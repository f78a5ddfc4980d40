"""Original StyleGAN2 generator / discriminator vs the official basicsr outputs in ../shared/reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from faceprior.models.stylegan2 import (EqualLinear, StyleGAN2Discriminator, StyleGAN2Generator, minibatch_stddev)

ATOL = 1e-4  # README: about 6x the largest legitimate fp32 difference


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _kwargs(stored: dict) -> dict:
    """Constructor kwargs as stored in JSON (lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}


def load_reference(reference_dir: Path, name: str):
    """(kwargs, state_dict, reference tensors) of one small config of the pack."""
    config = json.loads((reference_dir / "index.json").read_text())["configs"][name]
    ckpt = torch.load(reference_dir / config["ckpt"], map_location="cpu", weights_only=True)
    ref = torch.load(reference_dir / config["ref"], map_location="cpu", weights_only=True)
    return _kwargs(config["kwargs"]), ckpt[config["ckpt_key"]], ref


def manifest_entries(model: torch.nn.Module) -> list:
    """``[key, shape, dtype, 'param' | 'buffer']`` per state-dict entry, like the pack manifests."""
    param_names = {name for name, _ in model.named_parameters()}
    return [[key, list(t.shape), str(t.dtype).replace("torch.", ""), "param" if key in param_names else "buffer"]
            for key, t in model.state_dict().items()]


def check_manifest(reference_dir: Path, name: str, model_cls) -> None:
    manifest = json.loads((reference_dir / "manifests" / f"{name}.json").read_text())
    kwargs = _kwargs(manifest["kwargs"])
    with torch.device("meta"):  # shapes only, no memory or random init cost
        model = model_cls(**kwargs)
    assert manifest_entries(model) == manifest["entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


# --- generator ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_case(reference_dir):
    kwargs, state_dict, ref = load_reference(reference_dir, "StyleGAN2Generator_small")
    model = StyleGAN2Generator(**kwargs).eval()
    model.load_state_dict(state_dict, strict=True)
    return model, ref


@torch.no_grad()
def test_generator_style_mlp_and_mean_latent(generator_case):
    model, ref = generator_case
    assert max_abs_diff(model.get_latent(ref["z"]), ref["w"]) <= ATOL
    torch.manual_seed(777)
    assert max_abs_diff(model.mean_latent(4096), ref["mean_latent"]) <= ATOL


@torch.no_grad()
def test_generator_fixed_noise(generator_case):
    model, ref = generator_case
    image, latent = model([ref["z"]], randomize_noise=False, return_latents=True)
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= ATOL
    assert max_abs_diff(latent, ref["out_fixed_noise"]["latent"]) <= ATOL
    # Feeding w directly, or the stored noise explicitly, gives the same image.
    image_w, none = model([ref["w"]], input_is_latent=True, randomize_noise=False)
    assert none is None
    assert max_abs_diff(image_w, ref["out_fixed_noise"]["image"]) <= ATOL
    image_n, _ = model([ref["z"]], noise=model.stored_noise())
    assert torch.equal(image_n, image)


@torch.no_grad()
def test_generator_truncation_and_mixing(generator_case):
    model, ref = generator_case
    image, latent = model([ref["z"]], randomize_noise=False, truncation=0.7, truncation_latent=ref["mean_latent"],
                          return_latents=True)
    assert max_abs_diff(image, ref["out_truncation"]["image"]) <= ATOL
    assert max_abs_diff(latent, ref["out_truncation"]["latent"]) <= ATOL

    image, latent = model([ref["z"], ref["z2"]], randomize_noise=False, inject_index=4, return_latents=True)
    assert max_abs_diff(image, ref["out_mixing"]["image"]) <= ATOL
    assert max_abs_diff(latent, ref["out_mixing"]["latent"]) <= ATOL


@torch.no_grad()
def test_generator_random_noise_follows_official_draw_order(generator_case):
    model, ref = generator_case
    torch.manual_seed(4321)
    image, _ = model([ref["z"]])
    assert max_abs_diff(image, ref["out_random_noise"]["image"]) <= ATOL
    # The noise really matters (the README measures a change of about 1.9 without it).
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) > 0.1


def test_generator_sizes_and_noise_shapes():
    model = StyleGAN2Generator(out_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=1 / 32)
    assert (model.num_layers, model.num_latent) == (7, 8)
    stored = [tuple(n.shape) for n in model.stored_noise()]
    assert stored == [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 16, 16), (1, 1, 32, 32),
                      (1, 1, 32, 32)]
    assert [tuple(n.shape) for n in model.make_noise()] == stored
    with torch.no_grad():
        image, latent = model([torch.randn(3, 16)], return_latents=True)
    assert image.shape == (3, 3, 32, 32) and latent.shape == (3, 8, 16)
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(out_size=48)


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
    kwargs, state_dict, ref = load_reference(reference_dir, "StyleGAN2Discriminator_small")
    model = StyleGAN2Discriminator(**kwargs).eval()
    model.load_state_dict(state_dict, strict=True)
    return model, ref


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
