"""ONNX export (faceprior.inference.onnx_export) checked with onnxruntime against the official reference outputs.

Skipped when onnx / onnxruntime are not installed (optional extras: pip install onnx onnxruntime).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from reference_utils import load_reference_model

from faceprior.cli.models import add_export_command
from faceprior.inference.onnx_export import ExportError, export_onnx, onnx_session
from faceprior.models import GFPGANBilinear, GFPGANv1, GFPGANv1Clean

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(onnx_session(path, num_threads=2).run(["image"], {"input": x.numpy()})[0])


@pytest.mark.parametrize("name, model_class", [("GFPGANv1Clean_small", GFPGANv1Clean),
                                               ("GFPGANBilinear_small", GFPGANBilinear)])
@pytest.mark.slow
def test_onnxruntime_matches_the_reference_for_any_batch(reference_dir: Path, tmp_path: Path, name, model_class):
    model, ref = load_reference_model(reference_dir, name, model_class)
    path = export_onnx(model, tmp_path / "sub" / f"{name}.onnx")
    assert path.is_file()
    x, expected = ref["input"], ref["out_fixed_noise"]["image"]  # batch 2, stored noise
    assert (run_onnx(path, x) - expected).abs().max().item() <= TOLERANCE
    # The batch axis is dynamic: 1 and 3 faces through the same file.
    assert (run_onnx(path, x[1:]) - expected[1:]).abs().max().item() <= TOLERANCE
    three = torch.cat([x, x[:1]])
    assert (run_onnx(path, three)[2:] - expected[:1]).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_a_generator_with_an_input_gate_exports(tmp_path: Path):
    torch.manual_seed(0)
    model = GFPGANv1Clean(out_size=32, num_style_feat=16, channel_multiplier=1, narrow=0.03125, input_is_latent=True,
                          different_w=True, sft_half=True, input_gate=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.input_gate.spatial.weight, std=1.0)  # a gate that varies over the image
        torch.nn.init.normal_(model.input_gate.face.weight, std=1.0)
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        expected, _ = model(x, return_rgb=False, randomize_noise=False)
    path = export_onnx(model, tmp_path / "gated.onnx")
    assert (run_onnx(path, x) - expected).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_export_check_and_errors(reference_dir: Path, tmp_path: Path):
    model, _ = load_reference_model(reference_dir, "GFPGANv1Clean_small", GFPGANv1Clean)
    export_onnx(model, tmp_path / "checked.onnx", check=True)  # raises if ORT differs by > 1e-4
    with pytest.raises(ExportError, match="opset 9"):
        export_onnx(model, tmp_path / "old.onnx", opset=9)
    with pytest.raises(ExportError, match="GFPGANv1"):
        export_onnx(GFPGANv1(out_size=32, num_style_feat=16, narrow=0.03125), tmp_path / "v1.onnx")
    assert not (tmp_path / "old.onnx").exists() and not (tmp_path / "v1.onnx").exists()


@pytest.mark.slow
def test_export_command(reference_dir: Path, tmp_path: Path, capsys):
    from faceprior.cli.common import CommandError

    parser = argparse.ArgumentParser(prog="faceprior")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "model.onnx"
    checkpoint = str(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth")
    args = parser.parse_args(["export", checkpoint, "--format", "onnx", "-o", str(out), "--check"])
    assert args.run(args) == 0
    assert out.is_file() and "onnxruntime check passed" in capsys.readouterr().out
    args = parser.parse_args(["export", checkpoint, "-o", str(out)])
    with pytest.raises(CommandError, match="exists"):
        args.run(args)
