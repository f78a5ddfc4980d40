"""faceprior.inference.optimize / FastGFPGAN against the official reference outputs (small configs).

The fast module must compute the reference function: to 1e-4 in float32 (it reorders sums only),
and to a high PSNR in bfloat16. No timing here: see bench/bench_forward.py.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from reference_utils import load_reference_model

from faceprior.hardware import cpu_flags, default_dtype, native_bf16_available
from faceprior.inference import FastGFPGAN, UnsupportedModelError, fast_gfpgan, optimize
from faceprior.inference.fast_gfpgan import CompiledGFPGAN, clean_state_dict
from faceprior.models import GFPGANBilinear, GFPGANv1, GFPGANv1Clean

TOLERANCE = 1e-4
CONFIGS = [("GFPGANv1Clean_small", GFPGANv1Clean), ("GFPGANv1Clean_small_fullsft", GFPGANv1Clean),
           ("GFPGANBilinear_small", GFPGANBilinear)]


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the restored faces as FaceRestorer writes them (clamp, map to 0..255, round)."""
    to_uint8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round()  # noqa: E731
    mse = (to_uint8(a) - to_uint8(b)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float32, (a.shape, b.shape, a.dtype, b.dtype)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module", params=CONFIGS, ids=[name for name, _ in CONFIGS])
def reference(request, reference_dir: Path):
    name, model_class = request.param
    model, ref = load_reference_model(reference_dir, name, model_class)
    return name, model, ref


@pytest.mark.parametrize("fused", [True, False], ids=["onednn", "plain"])
def test_float32_matches_reference_outputs(reference, fused):
    _, model, ref = reference
    sd, kwargs = clean_state_dict(model)
    fast = FastGFPGAN(sd, dtype=torch.float32, fused=fused, **kwargs)
    image, out_rgbs = fast(ref["input"], return_rgb=True, randomize_noise=False)
    assert max_abs(image, ref["out_fixed_noise"]["image"]) <= TOLERANCE
    assert len(out_rgbs) == len(ref["out_fixed_noise"]["out_rgbs"])
    for rgb, expected in zip(out_rgbs, ref["out_fixed_noise"]["out_rgbs"]):
        assert max_abs(rgb, expected) <= TOLERANCE
    image, out_rgbs = fast(ref["input"], return_rgb=False, randomize_noise=False)
    assert out_rgbs == [] and max_abs(image, ref["out_fixed_noise"]["image"]) <= TOLERANCE


def test_optimize_returns_the_float32_fast_module(reference):
    _, model, ref = reference
    fast = optimize(model)
    assert isinstance(fast, FastGFPGAN) and fast.dtype == torch.float32
    assert fast.log_size == model.log_size  # FaceRestorer reads the face size from it
    image, _ = fast(ref["input"], return_rgb=False, randomize_noise=False)
    assert max_abs(image, ref["out_fixed_noise"]["image"]) <= TOLERANCE


def test_random_noise_follows_the_reference_draws(reference_dir: Path):
    """randomize_noise=True draws the same noise maps as the reference from torch's default generator."""
    model, ref = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    fast = optimize(model)
    torch.manual_seed(4321)
    image, _ = fast(ref["input"], return_rgb=False, randomize_noise=True)
    assert max_abs(image, ref["out_random_noise"]["image"]) <= TOLERANCE
    # Fresh noise on every call: a second call differs.
    again, _ = fast(ref["input"], return_rgb=False, randomize_noise=True)
    assert max_abs(again, image) > 1e-3


def test_bfloat16_is_close_to_the_reference(reference):
    """oneDNN's fused bf16 path where the CPU has native bf16, else the plain-ops bf16 path."""
    name, model, ref = reference
    sd, kwargs = clean_state_dict(model)
    fast = FastGFPGAN(sd, dtype=torch.bfloat16, fused=native_bf16_available(), **kwargs)
    image, _ = fast(ref["input"], return_rgb=False, randomize_noise=False)
    assert image.dtype == torch.float32
    # Measured: 51.9 / 54.1 / 44.3 dB (random small models; GFPGANBilinear_small has outputs up to 7).
    assert psnr_uint8(image, ref["out_fixed_noise"]["image"]) >= 40, name


def test_samples_are_independent_and_buffers_do_not_leak_between_calls(reference_dir: Path):
    """Per-sample modulated convs and the reused buffers: batch results equal single-sample results,
    and an output is not overwritten by later calls."""
    model, ref = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    fast = optimize(model)
    x = ref["input"]
    both, _ = fast(x, return_rgb=False, randomize_noise=False)
    kept = both.clone()
    first, _ = fast(x[:1], return_rgb=False, randomize_noise=False)
    second, _ = fast(x[1:], return_rgb=False, randomize_noise=False)
    reversed_batch, _ = fast(x.flip(0), return_rgb=False, randomize_noise=False)
    assert max_abs(both, kept) == 0  # not touched by the later calls
    assert max_abs(torch.cat([first, second]), both) <= 1e-5
    assert max_abs(reversed_batch.flip(0), both) <= 1e-5
    assert max_abs(both, ref["out_fixed_noise"]["image"]) <= TOLERANCE


def test_every_workspace_buffer_is_handed_back_so_memory_stays_flat(reference_dir: Path, monkeypatch):
    """With every feature map pooled (threshold 0, as the 512 px layers are at full size), a call
    leaves no buffer in use and repeated calls reuse the same blocks (a missed hand-back grew RSS by
    32 MiB per full-size face)."""
    from faceprior.inference import ops

    monkeypatch.setattr(ops, "POOL_MIN_BYTES", 0)
    model, ref = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    fast = optimize(model)
    sizes = []
    for _ in range(5):
        image, _ = fast(ref["input"][:1], return_rgb=False, randomize_noise=False)
        (workspace,) = fast._workspaces.values()
        assert not workspace.used
        sizes.append(workspace.nbytes())
    # Best-fit reuse settles after a few calls (measured: 6.77, 6.81, 6.94, 6.94, 6.94 MB), then stays put.
    assert sizes[2] == sizes[3] == sizes[4] < 1.1 * sizes[0], sizes
    assert max_abs(image, ref["out_fixed_noise"]["image"][:1]) <= TOLERANCE


def test_style_mlp_path_when_codes_are_z():
    """input_is_latent=False (codes go through the decoder's style MLP) and one shared w."""
    torch.manual_seed(0)
    model = GFPGANv1Clean(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.03125,
                          input_is_latent=False, different_w=False, sft_half=True).eval()
    with torch.no_grad():
        for param in model.parameters():  # make biases and noise strengths matter
            param.add_(0.1 * torch.randn_like(param))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected, _ = model(x, return_rgb=False, randomize_noise=False)
    image, _ = optimize(model)(x, return_rgb=False, randomize_noise=False)
    assert max_abs(image, expected) <= TOLERANCE


@pytest.mark.parametrize("fused", [True, False], ids=["onednn", "plain"])
def test_input_gate_of_faceprior_models(fused):
    """GFPGANv1Clean(input_gate=True): the gate computed from the last U-Net feature blends the input in."""
    torch.manual_seed(0)
    model = GFPGANv1Clean(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.03125,
                          input_is_latent=True, different_w=True, sft_half=True, input_gate=True).eval()
    with torch.no_grad():  # a gate that varies over the image and between faces
        torch.nn.init.normal_(model.input_gate.spatial.weight, std=1.0)
        torch.nn.init.normal_(model.input_gate.face.weight, std=1.0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected, _ = model(x, return_rgb=False, randomize_noise=False)
        model.input_gate.spatial.bias.fill_(-30.0)
        closed, _ = model(x, return_rgb=False, randomize_noise=False)
        model.input_gate.spatial.bias.fill_(-3.0)
    assert max_abs(expected, closed) > 0.01  # the gate matters at this setting
    sd, kwargs = clean_state_dict(model)
    image, _ = FastGFPGAN(sd, dtype=torch.float32, fused=fused, **kwargs)(x, return_rgb=False, randomize_noise=False)
    assert max_abs(image, expected) <= TOLERANCE


def test_unsupported_models_and_inputs_raise_clear_errors():
    with pytest.raises(UnsupportedModelError, match="GFPGANv1"):
        optimize(GFPGANv1(out_size=32, num_style_feat=16, narrow=0.03125))
    with pytest.raises(UnsupportedModelError, match="Linear"):
        optimize(torch.nn.Linear(2, 2))
    clean = GFPGANv1Clean(out_size=32, num_style_feat=16, narrow=0.03125).eval()
    with pytest.raises(ValueError, match="dtype"):
        optimize(clean, dtype=torch.float16)
    fast = optimize(clean)
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        fast(torch.zeros(1, 3, 64, 64))


def test_fused_bfloat16_without_native_bf16_is_a_clear_error(monkeypatch):
    """On a CPU without AVX512-BF16 / AMX oneDNN refuses bf16 weights deep inside the first call
    (seen on an AVX2 machine); FastGFPGAN says so when it is built."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build: the fused path does not exist")
    monkeypatch.setattr(fast_gfpgan, "native_bf16_available", lambda: False)
    sd, kwargs = clean_state_dict(GFPGANv1Clean(out_size=32, num_style_feat=16, narrow=0.03125).eval())
    with pytest.raises(ValueError, match="no bfloat16 convolutions on this CPU"):
        FastGFPGAN(sd, dtype=torch.bfloat16, fused=True, **kwargs)
    FastGFPGAN(sd, dtype=torch.float32, fused=True, **kwargs)  # float32 is always there
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        assert optimize(GFPGANv1Clean(out_size=32, num_style_feat=16, narrow=0.03125).eval(),
                        dtype=torch.bfloat16).dtype == torch.float32


def test_automatic_dtype_follows_the_cpu():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if native_bf16_available():
        assert {"amx_bf16", "avx512_bf16"} & flags
    clean = GFPGANv1Clean(out_size=32, num_style_feat=16, narrow=0.03125).eval()
    assert optimize(clean, dtype="auto").dtype == default_dtype()
    assert default_dtype() == (torch.bfloat16 if native_bf16_available() else torch.float32)


def test_compiled_module_falls_back_to_eager_with_one_warning(reference_dir: Path):
    """CompiledGFPGAN: a failing compiled graph warns once and the eager result is returned."""
    model, ref = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    compiled = optimize(model, compile=True)
    assert isinstance(compiled, CompiledGFPGAN) and compiled.log_size == model.log_size

    def broken(*args, **kwargs):
        raise RuntimeError("compiler unavailable")

    compiled._compiled = broken  # no real compile here: it takes minutes
    with pytest.warns(RuntimeWarning, match="compiler unavailable"):
        image, _ = compiled(ref["input"], return_rgb=False, randomize_noise=False)
    assert compiled.failed and max_abs(image, ref["out_fixed_noise"]["image"]) <= TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        compiled(ref["input"], return_rgb=False, randomize_noise=False)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 8, 6, 10), (1, 5, 12, 7), (2, 4, 8, 8), (1, 3, 2, 4)])
def test_parallel_upsampling_equals_interpolate(threads, shape):
    """upsample_into (row bands on several threads, seams recomputed) is exactly F.interpolate x2."""
    from faceprior.inference.ops import upsample_into

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
        out = torch.empty(shape[0], shape[1], 2 * shape[2], 2 * shape[3]).contiguous(memory_format=torch.channels_last)
        expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        assert torch.equal(upsample_into(x, out), expected)
    finally:
        torch.set_num_threads(previous)
