"""Scripts of tools/ that the default model's recipe runs (docs/default_model.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from faceprior.models import GFPGANv1Clean
from faceprior.models.gfpgan_clean import INPUT_GATE_INIT_BIAS
from faceprior.models.loading import load_state_dict_strict
from faceprior.weights.checkpoint import read_state_dict, save_state_dict

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(out_size=32, num_style_feat=16, narrow=0.03125)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "warm_start_files.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_warm_start_files_add_a_closed_gate_to_a_generator_file(tmp_path):
    torch.manual_seed(0)
    model = GFPGANv1Clean(**SMALL).eval()
    save_state_dict({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "g.safetensors")
    result = run_tool(str(tmp_path / "g.safetensors"), str(tmp_path / "start"), "--add-input-gate")
    assert result.returncode == 0, result.stderr
    assert "discriminator starts afresh" in result.stdout and not (tmp_path / "start" / "net_d.pth").exists()

    gated = GFPGANv1Clean(**SMALL, input_gate=True).eval()
    state = read_state_dict(tmp_path / "start" / "net_g.pth")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    load_state_dict_strict(gated, state)
    plain = GFPGANv1Clean(**SMALL).eval()
    load_state_dict_strict(plain, read_state_dict(tmp_path / "g.safetensors"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = torch.lerp(plain(x, return_rgb=False, randomize_noise=False)[0], x,
                              torch.sigmoid(torch.tensor(INPUT_GATE_INIT_BIAS)))
        out = gated(x, return_rgb=False, randomize_noise=False)[0]
    assert (out - expected).abs().max() < 1e-5
    # Nothing is overwritten; a generator with a gate already is refused.
    again = run_tool(str(tmp_path / "g.safetensors"), str(tmp_path / "start"), "--add-input-gate")
    assert again.returncode == 2 and "exists; not overwritten" in again.stderr
    refused = run_tool(str(tmp_path / "start" / "net_g.pth"), str(tmp_path / "other"), "--add-input-gate")
    assert refused.returncode == 2 and "with a gate already" in refused.stderr


@pytest.mark.slow
def test_warm_start_files_zero_noise_switches_the_decoder_noise_off(tmp_path):
    torch.manual_seed(0)
    state = GFPGANv1Clean(**SMALL).state_dict()
    noise_keys = [k for k in state if k.startswith("stylegan_decoder.style_conv") and state[k].numel() == 1]
    state.update({k: torch.full_like(state[k], 0.3) for k in noise_keys})
    save_state_dict(state, tmp_path / "g.pth")
    result = run_tool(str(tmp_path / "g.pth"), str(tmp_path / "start"), "--zero-noise")
    assert result.returncode == 0, result.stderr
    written = read_state_dict(tmp_path / "start" / "net_g.pth")
    assert noise_keys and all(float(written[k]) == 0.0 for k in noise_keys)
    assert all(torch.equal(written[k], v) for k, v in state.items() if k not in noise_keys)


@pytest.mark.slow
def test_warm_start_files_from_a_training_state_write_its_ema_generator_and_discriminator(tmp_path):
    from faceprior.training.checkpointing import TRAINING_STATE_FORMAT, TRAINING_STATE_VERSION

    torch.manual_seed(0)
    generator, discriminator = GFPGANv1Clean(**SMALL).state_dict(), {"conv.weight": torch.randn(4, 3, 3, 3)}
    torch.save({"format": TRAINING_STATE_FORMAT, "version": TRAINING_STATE_VERSION,
                "modules": {"net_g_ema": generator, "net_d": discriminator}}, tmp_path / "state_00000100.pth")
    result = run_tool(str(tmp_path / "state_00000100.pth"), str(tmp_path / "start"))
    assert result.returncode == 0, result.stderr
    written_g = read_state_dict(tmp_path / "start" / "net_g.pth")
    assert set(written_g) == set(generator) and all(torch.equal(written_g[k], v) for k, v in generator.items())
    assert torch.equal(read_state_dict(tmp_path / "start" / "net_d.pth")["conv.weight"], discriminator["conv.weight"])
    torch.save({"format": TRAINING_STATE_FORMAT, "version": -1, "modules": {}}, tmp_path / "old.pth")
    old = run_tool(str(tmp_path / "old.pth"), str(tmp_path / "other"))
    assert old.returncode == 2 and "unsupported training-state version" in old.stderr


@pytest.mark.slow
def test_warm_start_files_from_a_missing_file_is_a_one_line_error(tmp_path):
    result = run_tool(str(tmp_path / "nope.pth"), str(tmp_path / "out"))
    assert result.returncode == 2
    # argparse's usage, then the error on one line that names the file.
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and str(tmp_path / "nope.pth") in error_lines[0]
    assert result.stderr.rstrip().endswith(error_lines[0])


@pytest.mark.slow
def test_component_d_check_trains_a_discriminator_on_eye_crops(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    generator = torch.Generator().manual_seed(0)
    for index in range(3):
        pixels = (torch.rand(256, 256, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(faces / f"{index}.png")
    script = str(REPO / "tools" / "component_d_check.py")
    result = subprocess.run([sys.executable, script, str(faces), "--steps", "2", "--print-every", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 1", "step 2", "mean logit"]
    missing = subprocess.run([sys.executable, script, str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 1 and missing.stderr.strip() == f"{tmp_path / 'nope'}: not a folder"


SHARED = REPO.parent / "shared" / "data"


@pytest.mark.slow
def test_the_gpu_recipe_rehearses_on_the_cpu(tmp_path):
    """tools/pack_gpu_recipe.py packs a few faces, dlib's ResNet and the boxes; tools/gpu_default_model.py
    checks the pack, makes the warm start, trains one iteration (--minutes 0) of
    configs/gfpgan_clean_256_gpu.yaml at tiny scale on the CPU and returns a generator of the
    bundled model's architecture; a second call resumes."""
    pytest.importorskip("dlib", reason="the identity loss's chip box needs dlib: pip install 'faceprior[eval]'")
    if not (SHARED / "faces-train-256").is_dir():
        pytest.skip(f"needs the face photos in {SHARED}")
    pack, out = tmp_path / "pack", tmp_path / "out"
    packed = subprocess.run([sys.executable, str(REPO / "tools" / "pack_gpu_recipe.py"), "--count", "6", "--out", str(pack)],
                            capture_output=True, text=True, timeout=600)
    assert packed.returncode == 0, packed.stdout + packed.stderr
    assert len(list((pack / "faces").iterdir())) == 6 and len(list((pack / "val").iterdir())) == 40
    overrides = {"data.train": pack / "faces", "data.val": pack / "val", "data.component_boxes": pack / "components.json",
                 "model.pretrained": pack / "start" / "net_g.pth", "model.dlib_resnet": pack / "dlib_resnet.safetensors",
                 "train.out_dir": pack / "run", "train.device": "cpu", "data.batch_size": 2, "data.num_workers": 0,
                 "data.val_count": 2, "data.val_batch_size": 2, "train.val_every": 0, "train.num_threads": 2}
    command = [sys.executable, str(REPO / "tools" / "gpu_default_model.py"), "--minutes", "0", "--pack", str(pack)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OUT": str(out)})
            for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stdout + runs[-1].stderr
    assert "iteration 1 (resumed from 0)" in runs[0].stdout and "iteration 2 (resumed from 1)" in runs[1].stdout
    model = GFPGANv1Clean(out_size=256, num_style_feat=64, channel_multiplier=1, num_mlp=4, input_is_latent=True,
                          different_w=True, narrow=0.25, sft_half=True, input_gate=True)
    load_state_dict_strict(model, read_state_dict(out / "faceprior-256-gpu.safetensors"))
    assert {p.name for p in out.iterdir()} == {"faceprior-256-gpu.safetensors", "metrics.jsonl", "environment.txt"}
    (pack / "faces" / sorted(p.name for p in (pack / "faces").iterdir())[0]).write_bytes(b"broken")
    broken = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OUT": str(out)})
    assert broken.returncode != 0 and "not as packed" in broken.stderr
