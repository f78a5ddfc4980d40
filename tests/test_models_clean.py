"""The clean GFP-GAN family against the official reference pack (gfpgan 1.3.8, random weights).

Covers ``StyleGAN2GeneratorClean`` and ``GFPGANv1Clean`` (half- and full-channel SFT): outputs
with fixed and with random noise, intermediate tensors, state-dict layout of the full-size model,
the official initialisation, and decoder loading / freezing.
"""

from __future__ import annotations

import json

import pytest
import torch

from faceprior.models.gfpgan_clean import GFPGANv1Clean, StyleGAN2GeneratorCSFT, channel_split_sft
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean
from faceprior.weights.checkpoint import CheckpointError

ATOL = 2e-5  # README: enough for the clean configs (official fp32 vs fp64 differ by ~1e-6)

GFPGAN_CONFIGS = ["GFPGANv1Clean_small", "GFPGANv1Clean_small_fullsft"]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype == torch.float32
    return (a - b).abs().max().item()


def load_config(reference_dir, name: str, model_class):
    """(model with the reference checkpoint loaded strictly, in eval mode; reference dict)."""
    ref = torch.load(reference_dir / "ref" / f"{name}.pt", map_location="cpu", weights_only=True)
    index = json.loads((reference_dir / "index.json").read_text())["configs"][name]
    assert ref["meta"]["kwargs"] == index["kwargs"]
    model = model_class(**ref["meta"]["kwargs"])
    checkpoint = torch.load(reference_dir / index["ckpt"], map_location="cpu", weights_only=True)
    state_dict = checkpoint[ref["meta"]["ckpt_key"]]
    assert list(model.state_dict()) == list(state_dict)  # same keys, same order
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), ref


# ------------------------------------------------------------------ StyleGAN2GeneratorClean


@pytest.fixture(scope="module")
def stylegan(reference_dir):
    return load_config(reference_dir, "StyleGAN2GeneratorClean_small", StyleGAN2GeneratorClean)


@torch.no_grad()
def test_stylegan2_clean_mapping_and_mean_latent(stylegan):
    model, ref = stylegan
    assert max_abs_diff(model.get_latent(ref["z"]), ref["w"]) <= ATOL
    torch.manual_seed(777)
    assert max_abs_diff(model.mean_latent(4096), ref["mean_latent"]) <= ATOL


@torch.no_grad()
def test_stylegan2_clean_fixed_noise_truncation_mixing(stylegan):
    model, ref = stylegan
    z, z2 = ref["z"], ref["z2"]
    cases = {
        "out_fixed_noise": model([z], randomize_noise=False, return_latents=True),
        "out_truncation": model([z], randomize_noise=False, truncation=0.7,
                                truncation_latent=ref["mean_latent"], return_latents=True),
        "out_mixing": model([z, z2], randomize_noise=False, inject_index=4, return_latents=True),
    }
    for key, (image, latent) in cases.items():
        assert max_abs_diff(image, ref[key]["image"]) <= ATOL, key
        assert max_abs_diff(latent, ref[key]["latent"]) <= ATOL, key
    assert latent.shape == (2, model.num_latent, 64)

    # w input skips the mapping network and gives the same image; no latents unless asked.
    image_w, latent_none = model([model.get_latent(z)], input_is_latent=True, randomize_noise=False)
    assert latent_none is None
    assert torch.equal(image_w, cases["out_fixed_noise"][0])


@torch.no_grad()
def test_stylegan2_clean_random_noise_order(stylegan):
    model, ref = stylegan
    torch.manual_seed(4321)
    image, _ = model([ref["z"]])
    assert max_abs_diff(image, ref["out_random_noise"]["image"]) <= ATOL
    # The stored noise buffers are what randomize_noise=False uses, and the noise matters.
    assert (image - ref["out_fixed_noise"]["image"]).abs().max() > 0.1
    image_buffers, _ = model([ref["z"]], noise=model.stored_noise())
    assert torch.equal(image_buffers, model([ref["z"]], randomize_noise=False)[0])


def test_stylegan2_clean_noise_buffers_and_make_noise(stylegan):
    model, _ = stylegan
    expected = [(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(model.num_layers)]
    assert [tuple(n.shape) for n in model.stored_noise()] == expected
    assert [tuple(n.shape) for n in model.make_noise()] == expected
    assert [name for name, _ in model.noises.named_buffers()] == [f"noise{i}" for i in range(9)]


def test_stylegan2_clean_rejects_bad_size_and_styles(stylegan):
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2GeneratorClean(100, num_style_feat=8, narrow=1 / 64)
    model, ref = stylegan
    with pytest.raises(ValueError, match="1 or 2"):
        model([ref["z"]] * 3)


# ------------------------------------------------------------------ GFPGANv1Clean


@pytest.fixture(scope="module", params=GFPGAN_CONFIGS)
def gfpgan(request, reference_dir):
    return load_config(reference_dir, request.param, GFPGANv1Clean)


def record_intermediates(model: GFPGANv1Clean):
    """Forward hooks storing the output of final_linear and the first two condition levels."""
    record = {"style_code": None, "conditions": [None] * 4}

    def store_style(module, inputs, output):
        record["style_code"] = output

    def store_condition(slot):
        def hook(module, inputs, output):
            record["conditions"][slot] = output
        return hook

    handles = [model.final_linear.register_forward_hook(store_style)]
    for level in range(2):
        handles.append(model.condition_scale[level].register_forward_hook(store_condition(2 * level)))
        handles.append(model.condition_shift[level].register_forward_hook(store_condition(2 * level + 1)))
    return record, handles


@torch.no_grad()
def test_gfpgan_clean_fixed_noise_outputs_and_intermediates(gfpgan):
    model, ref = gfpgan
    record, handles = record_intermediates(model)
    image, out_rgbs = model(ref["input"], return_rgb=True, randomize_noise=False)
    for handle in handles:
        handle.remove()

    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= ATOL
    assert len(out_rgbs) == len(ref["out_fixed_noise"]["out_rgbs"]) == 5
    for rgb, rgb_ref in zip(out_rgbs, ref["out_fixed_noise"]["out_rgbs"]):
        assert max_abs_diff(rgb, rgb_ref) <= ATOL
    assert max_abs_diff(record["style_code"], ref["style_code"]) <= ATOL
    assert len(ref["conditions"]) == 4
    for condition, condition_ref in zip(record["conditions"], ref["conditions"]):
        assert max_abs_diff(condition, condition_ref) <= ATOL


@torch.no_grad()
def test_gfpgan_clean_enhance_call_ignores_extra_kwargs(gfpgan):
    """``GFPGANer.enhance`` calls ``model(x, return_rgb=False, weight=0.5)``."""
    model, ref = gfpgan
    image, out_rgbs = model(ref["input"], return_rgb=False, randomize_noise=False, weight=0.5)
    assert out_rgbs == []
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= ATOL


@torch.no_grad()
def test_gfpgan_clean_random_noise_order(reference_dir):
    model, ref = load_config(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    torch.manual_seed(4321)
    image, _ = model(ref["input"], return_rgb=False, randomize_noise=True)
    assert max_abs_diff(image, ref["out_random_noise"]["image"]) <= ATOL


def test_official_initialisation(reference_dir):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the checkpoint."""
    configs = json.loads((reference_dir / "index.json").read_text())["configs"]
    classes = {"StyleGAN2GeneratorClean_small": StyleGAN2GeneratorClean,
               "GFPGANv1Clean_small": GFPGANv1Clean, "GFPGANv1Clean_small_fullsft": GFPGANv1Clean}
    for name, model_class in classes.items():
        torch.manual_seed(0)
        ours = model_class(**configs[name]["kwargs"]).state_dict()
        official = torch.load(reference_dir / configs[name]["ckpt"], weights_only=True)["params_ema"]
        perturbed = set(configs[name]["perturbed_tensor_names"])
        assert perturbed and perturbed < set(ours)
        for key, value in ours.items():
            if key not in perturbed:
                assert torch.equal(value, official[key]), (name, key)
            else:  # constant at init (biases, noise strengths, modulation biases)
                assert torch.all(value == value.flatten()[0]), (name, key)


def test_full_size_state_dict_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "GFPGANv1Clean.json").read_text())
    model = GFPGANv1Clean(**manifest["kwargs"])
    buffers = {name for name, _ in model.named_buffers()}
    entries = [[key, list(value.shape), str(value.dtype).removeprefix("torch."),
                "buffer" if key in buffers else "param"] for key, value in model.state_dict().items()]
    assert entries == manifest["entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"] == 86444252

    # The full-size clean StyleGAN2 (out_size=512, channel_multiplier=2) is that decoder.
    generator = StyleGAN2GeneratorClean(512, num_style_feat=512, channel_multiplier=2)
    prefix = "stylegan_decoder."
    decoder_entries = [[e[0][len(prefix):]] + e[1:3] for e in manifest["entries"] if e[0].startswith(prefix)]
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")]
            for k, v in generator.state_dict().items()] == decoder_entries


def test_channel_split_sft_by_hand():
    feat = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    scale, shift = torch.full((2, 2, 2, 2), 3.0), torch.full((2, 2, 2, 2), -1.0)
    out = channel_split_sft(feat, scale, shift, sft_half=True)
    assert torch.equal(out[:, :2], feat[:, :2])
    assert torch.equal(out[:, 2:], feat[:, 2:] * 3 - 1)
    scale4, shift4 = torch.full((2, 4, 2, 2), 2.0), torch.full((2, 4, 2, 2), 0.5)
    assert torch.equal(channel_split_sft(feat, scale4, shift4, sft_half=False), feat * 2 + 0.5)


@torch.no_grad()
def test_csft_decoder_without_conditions_is_the_plain_generator(stylegan):
    """With no (scale, shift) pairs the SFT decoder reduces to StyleGAN2GeneratorClean."""
    plain, ref = stylegan
    csft = StyleGAN2GeneratorCSFT(**ref["meta"]["kwargs"], sft_half=True)
    csft.load_state_dict(plain.state_dict(), strict=True)
    image, _ = csft([ref["z"]], [], randomize_noise=False)
    assert torch.equal(image, plain([ref["z"]], randomize_noise=False)[0])


# ------------------------------------------------------------------ decoder_load_path / fix_decoder

SMALL = dict(out_size=32, num_style_feat=16, channel_multiplier=2, narrow=1 / 32)


def save_decoder_checkpoint(path, **wrappers):
    """Save a random StyleGAN2GeneratorClean state dict (as the values of ``wrappers``' keys)."""
    torch.manual_seed(5)
    decoder = StyleGAN2GeneratorClean(SMALL["out_size"], num_style_feat=SMALL["num_style_feat"],
                                      channel_multiplier=SMALL["channel_multiplier"], narrow=SMALL["narrow"])
    state_dict = {k: v + 0.5 for k, v in decoder.state_dict().items()}  # not a fresh init
    torch.save({key: make(state_dict) for key, make in wrappers.items()}, path)
    return state_dict


@pytest.mark.parametrize("fix_decoder", [True, False])
def test_decoder_load_path_and_fix_decoder(tmp_path, fix_decoder):
    path = tmp_path / "stylegan2_clean.pth"
    state_dict = save_decoder_checkpoint(
        path, params_ema=lambda sd: sd, params=lambda sd: {k: torch.zeros_like(v) for k, v in sd.items()})
    model = GFPGANv1Clean(**SMALL, decoder_load_path=str(path), fix_decoder=fix_decoder)

    loaded = model.stylegan_decoder.state_dict()
    assert list(loaded) == list(state_dict)
    for key, value in state_dict.items():  # params_ema is preferred over params
        assert torch.equal(loaded[key], value), key
    for name, param in model.named_parameters():
        in_decoder = name.startswith("stylegan_decoder.")
        assert param.requires_grad == (not (fix_decoder and in_decoder)), name

    # A frozen decoder gets no gradient, while the U-Net does.
    image, _ = model(torch.rand(1, 3, 32, 32) * 2 - 1, randomize_noise=False)
    image.sum().backward()
    assert model.conv_body_first.weight.grad is not None
    assert (model.stylegan_decoder.style_conv1.modulated_conv.weight.grad is None) == fix_decoder


def test_decoder_fix_without_load_and_defaults():
    model = GFPGANv1Clean(**SMALL)  # official defaults: fix_decoder=True, sft_half=False, ...
    assert all(not p.requires_grad for p in model.stylegan_decoder.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("stylegan_decoder."))
    assert model.stylegan_decoder.sft_half is False and model.different_w is False
    assert model.input_is_latent is False
    assert model.final_linear.out_features == SMALL["num_style_feat"]
    # sft_half=False: each SFT branch produces the full decoder width (2x the U-Net width).
    assert model.condition_scale[0][2].out_channels == 2 * model.conv_body_up[0].conv2.out_channels


def test_decoder_load_path_rejects_mismatched_checkpoint(tmp_path):
    path = tmp_path / "stylegan2_clean.pth"
    save_decoder_checkpoint(path, params_ema=lambda sd: sd)
    with pytest.raises(CheckpointError, match=r"stylegan2_clean.pth: does not fit .*: 16 missing keys"):
        GFPGANv1Clean(**{**SMALL, "out_size": 64}, decoder_load_path=str(path))  # 64 px: 2 StyleConvs, 1 ToRGB, 2 noises more
    with pytest.raises(CheckpointError, match="shape mismatches"):
        GFPGANv1Clean(**{**SMALL, "num_style_feat": 8}, decoder_load_path=str(path))
    with pytest.raises(CheckpointError, match="no such file"):
        GFPGANv1Clean(**SMALL, decoder_load_path=str(tmp_path / "absent.pth"))


def test_decoder_load_path_accepts_params_and_module_prefix(tmp_path):
    """Beyond the official loader (params_ema only): 'params' and DataParallel 'module.' keys."""
    path = tmp_path / "stylegan2_clean_params.pth"
    state_dict = save_decoder_checkpoint(path, params=lambda sd: {f"module.{k}": v for k, v in sd.items()})
    model = GFPGANv1Clean(**SMALL, decoder_load_path=str(path))
    assert all(torch.equal(model.stylegan_decoder.state_dict()[k], v) for k, v in state_dict.items())
