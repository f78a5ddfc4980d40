"""The clean GFP-GAN family against the official reference pack (gfpgan 1.3.8, random weights).

Covers ``GFPGANv1Clean`` (half- and full-channel SFT): outputs with fixed and with random noise,
intermediate tensors, state-dict layout of the full-size model, the official initialisation, and
decoder loading / freezing. ``StyleGAN2GeneratorClean`` alone is checked with the original
generator in test_models_stylegan2.py (they share everything but their layers).
"""

from __future__ import annotations

import pytest
import torch
from reference_utils import check_gfpgan_fixed_noise, check_manifest, check_official_init, load_reference_model, max_abs_diff

from faceprior.models.architecture import ArchitectureError
from faceprior.models.gfpgan_clean import GFPGANv1Clean, StyleGAN2GeneratorCSFT, without_decoder_noise
from faceprior.models.stylegan2_clean import StyleGAN2GeneratorClean
from faceprior.weights.checkpoint import CheckpointError

ATOL = 2e-5  # README: enough for the clean configs (official fp32 vs fp64 differ by ~1e-6)

GFPGAN_CONFIGS = ["GFPGANv1Clean_small", "GFPGANv1Clean_small_fullsft"]


# ------------------------------------------------------------------ GFPGANv1Clean


@pytest.fixture(scope="module", params=GFPGAN_CONFIGS)
def gfpgan(request, reference_dir):
    return load_reference_model(reference_dir, request.param, GFPGANv1Clean)


def test_gfpgan_clean_fixed_noise_outputs_and_intermediates(gfpgan):
    model, ref = gfpgan
    check_gfpgan_fixed_noise(model, ref, ATOL)


@torch.no_grad()
def test_gfpgan_clean_enhance_call_ignores_extra_kwargs(gfpgan):
    """``GFPGANer.enhance`` calls ``model(x, return_rgb=False, weight=0.5)``."""
    model, ref = gfpgan
    image, out_rgbs = model(ref["input"], return_rgb=False, randomize_noise=False, weight=0.5)
    assert out_rgbs == []
    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= ATOL


@torch.no_grad()
def test_gfpgan_clean_random_noise_order(reference_dir):
    model, ref = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    torch.manual_seed(4321)
    image, _ = model(ref["input"], return_rgb=False, randomize_noise=True)
    assert max_abs_diff(image, ref["out_random_noise"]["image"]) <= ATOL


def test_official_initialisation(reference_dir):
    """Built after torch.manual_seed(0), every tensor the pack did not perturb equals the checkpoint."""
    check_official_init(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    check_official_init(reference_dir, "GFPGANv1Clean_small_fullsft", GFPGANv1Clean)


def test_full_size_state_dict_matches_manifest(reference_dir):
    manifest = check_manifest(reference_dir, "GFPGANv1Clean", GFPGANv1Clean)
    assert manifest["num_params"] == 86444252

    # The full-size clean StyleGAN2 (out_size=512, channel_multiplier=2) is that decoder.
    with torch.device("meta"):
        generator = StyleGAN2GeneratorClean(512, num_style_feat=512, channel_multiplier=2)
    prefix = "stylegan_decoder."
    decoder_entries = [[e[0][len(prefix):]] + e[1:3] for e in manifest["entries"] if e[0].startswith(prefix)]
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")]
            for k, v in generator.state_dict().items()] == decoder_entries


@torch.no_grad()
def test_csft_decoder_without_conditions_is_the_plain_generator(reference_dir):
    """With no (scale, shift) pairs the SFT decoder reduces to StyleGAN2GeneratorClean."""
    plain, ref = load_reference_model(reference_dir, "StyleGAN2GeneratorClean_small", StyleGAN2GeneratorClean)
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
    with pytest.raises(ArchitectureError, match=r"stylegan2_clean.pth does not fit .*: 16 missing"):
        GFPGANv1Clean(**{**SMALL, "out_size": 64}, decoder_load_path=str(path))  # 64 px: 2 StyleConvs, 1 ToRGB, 2 noises more
    with pytest.raises(ArchitectureError, match="with another shape"):
        GFPGANv1Clean(**{**SMALL, "num_style_feat": 8}, decoder_load_path=str(path))
    with pytest.raises(CheckpointError, match="no such file"):
        GFPGANv1Clean(**SMALL, decoder_load_path=str(tmp_path / "absent.pth"))


def test_decoder_load_path_accepts_params_and_module_prefix(tmp_path):
    """Beyond the official loader (params_ema only): 'params' and DataParallel 'module.' keys."""
    path = tmp_path / "stylegan2_clean_params.pth"
    state_dict = save_decoder_checkpoint(path, params=lambda sd: {f"module.{k}": v for k, v in sd.items()})
    model = GFPGANv1Clean(**SMALL, decoder_load_path=str(path))
    assert all(torch.equal(model.stylegan_decoder.state_dict()[k], v) for k, v in state_dict.items())


# ------------------------------------------------------------------ input gate (this project's extension)


def test_input_gate_blends_the_input_back_in_and_leaves_the_official_layout_alone():
    kwargs = dict(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.03125, input_is_latent=True,
                  different_w=True, sft_half=True)
    torch.manual_seed(0)
    plain = GFPGANv1Clean(**kwargs).eval()
    torch.manual_seed(0)
    gated = GFPGANv1Clean(**kwargs, input_gate=True).eval()
    # The official parameters keep their names and initial values; the gate comes after them.
    gated_sd = gated.state_dict()
    assert list(gated_sd)[:len(plain.state_dict())] == list(plain.state_dict())
    assert set(gated_sd) - set(plain.state_dict()) == {"input_gate.spatial.weight", "input_gate.spatial.bias",
                                                       "input_gate.face.weight", "input_gate.face.bias"}
    for key, value in plain.state_dict().items():
        assert torch.equal(gated_sd[key], value), key
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    gate = gated.input_gate
    with torch.no_grad():
        prior, rgbs = plain(x, randomize_noise=False)
        out, gated_rgbs = gated(x, randomize_noise=False)
        # Initial gate: sigmoid(-3) everywhere.
        g = torch.sigmoid(torch.tensor(-3.0))
        assert max_abs_diff(out, prior + g * (x - prior)) < 1e-6
        assert all(torch.equal(a, b) for a, b in zip(rgbs, gated_rgbs))
        # A wide-open gate returns the input, a closed one the prior's image.
        gate.spatial.bias.fill_(30.0)
        assert max_abs_diff(gated(x, randomize_noise=False)[0], x) < 1e-6
        gate.spatial.bias.fill_(-30.0)
        assert max_abs_diff(gated(x, randomize_noise=False)[0], prior) < 1e-6

        def weights_of_input(model):
            mixed = model(x, randomize_noise=False)[0]
            return ((mixed - prior) / (x - prior)).mean(1)  # g per pixel, [B, S, S]

        # The whole-face term: one value per face, from F_latent.
        gate.spatial.bias.zero_()
        torch.nn.init.normal_(gate.face.weight, std=1.0)
        per_face = weights_of_input(gated)
        assert per_face.flatten(1).std(1).max() < 1e-3 and (per_face[0].mean() - per_face[1].mean()).abs() > 1e-3
        # The spatial term varies over the face.
        gate.face.weight.zero_()
        torch.nn.init.normal_(gate.spatial.weight, std=2.0)
        per_pixel = weights_of_input(gated)
        assert per_pixel.min() > 0 and per_pixel.max() < 1 and per_pixel.std() > 0.01


def test_without_decoder_noise_zeroes_only_the_noise_strengths_and_makes_outputs_deterministic():
    kwargs = dict(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.03125, input_gate=True)
    torch.manual_seed(0)
    model = GFPGANv1Clean(**kwargs).eval()
    state = model.state_dict()
    strengths = [k for k in state if k.startswith("stylegan_decoder.style_conv") and state[k].numel() == 1]
    assert len(strengths) == 2 * model.stylegan_decoder.log_size - 3  # style_conv1 + 2 per level above 4 px
    for key in strengths:  # trained strengths are not zero; init is
        state[key] = torch.full_like(state[key], 0.5)
    quiet = without_decoder_noise(state)
    assert set(quiet) == set(state)
    assert [k for k in state if not torch.equal(state[k], quiet[k])] == strengths
    assert all(float(quiet[k]) == 0.0 for k in strengths) and all(float(state[k]) == 0.5 for k in strengths)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        model.load_state_dict(state)
        noisy = [model(x, randomize_noise=True)[0] for _ in range(2)]
        assert max_abs_diff(*noisy) > 1e-3
        model.load_state_dict(quiet)  # strict: same keys and shapes
        fresh, stored = model(x, randomize_noise=True)[0], model(x, randomize_noise=False)[0]
        assert torch.equal(fresh, stored)
    with pytest.raises(ValueError, match="no decoder noise strengths"):
        without_decoder_noise({"conv.weight": torch.ones(1)})
