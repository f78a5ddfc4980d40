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


ZOO_ARCHITECTURES = {"RestoreFormer_small": {}, "RestoreFormerPlusPlus_small": {}, "CodeFormer_small": {"n_head": 4}}


def _zoo(reference_dir: Path) -> tuple[Path, dict]:
    import json

    zoo = reference_dir / "zoo"
    if not (zoo / "index.json").is_file():
        pytest.skip(f"zoo reference pack not found at {zoo}")
    return zoo, json.loads((zoo / "index.json").read_text())["configs"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO_ARCHITECTURES))
def test_restoreformer_and_codeformer_export_and_match_the_official_outputs(reference_dir: Path, tmp_path: Path, name):
    from faceprior.models.loading import resolve_model

    zoo, configs = _zoo(reference_dir)
    descriptor = resolve_model(zoo / configs[name]["ckpt"], **ZOO_ARCHITECTURES[name])
    assert descriptor.capabilities.onnx
    ref = torch.load(zoo / configs[name]["ref"], map_location="cpu", weights_only=True)
    x = ref["input"]
    if name == "CodeFormer_small":  # the fidelity is a constant of each graph
        for w in (0, 1):
            path = export_onnx(descriptor, tmp_path / f"w{w}.onnx", fidelity=w)
            assert (run_onnx(path, x) - ref[f"output_w{w}"]).abs().max().item() <= TOLERANCE
        expected = ref["output_w0.5"]
    else:
        expected = ref["output"]
    path = export_onnx(descriptor, tmp_path / f"{name}.onnx", batch_size=2)  # the model's default fidelity
    assert (run_onnx(path, x) - expected).abs().max().item() <= TOLERANCE
    assert (run_onnx(path, x[:1]) - expected[:1]).abs().max().item() <= TOLERANCE  # batch axis is dynamic
    assert (run_onnx(path, torch.cat([x, x[:1]]))[-1:] - expected[:1]).abs().max().item() <= TOLERANCE


def test_gpen_is_refused_in_one_line_and_nothing_is_written(reference_dir: Path, tmp_path: Path):
    from faceprior.models.loading import resolve_model

    zoo, configs = _zoo(reference_dir)
    gpen = resolve_model(zoo / configs["GPEN_small"]["ckpt"])
    with pytest.raises(ExportError, match="GPEN cannot be exported to ONNX"):
        export_onnx(gpen, tmp_path / "gpen.onnx")
    restoreformer = resolve_model(zoo / configs["RestoreFormer_small"]["ckpt"])
    with pytest.raises(ExportError, match="no fidelity control"):
        export_onnx(restoreformer, tmp_path / "rf.onnx", fidelity=0.3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_export_command_fixes_codeformer_fidelity(reference_dir: Path, tmp_path: Path, capsys, monkeypatch):
    from faceprior.cli.common import CommandError

    zoo, configs = _zoo(reference_dir)
    parser = argparse.ArgumentParser(prog="faceprior")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    # the released CodeFormer has 8 heads; the small test config 4, which its file cannot say
    import faceprior.cli.models as cli_models
    real_resolve = cli_models.resolve_model
    monkeypatch.setattr(cli_models, "resolve_model", lambda spec: real_resolve(spec, n_head=4))
    out = tmp_path / "codeformer.onnx"
    args = parser.parse_args(["export", str(zoo / configs["CodeFormer_small"]["ckpt"]), "-o", str(out),
                              "--fidelity", "1", "--check"])
    assert args.run(args) == 0
    assert "CodeFormer" in capsys.readouterr().out
    ref = torch.load(zoo / configs["CodeFormer_small"]["ref"], map_location="cpu", weights_only=True)
    assert (run_onnx(out, ref["input"]) - ref["output_w1"]).abs().max().item() <= TOLERANCE
    args = parser.parse_args(["export", str(zoo / configs["CodeFormer_small"]["ckpt"]), "-o", str(tmp_path / "x.onnx"),
                              "--fidelity", "2"])
    with pytest.raises(CommandError, match=r"--fidelity must be in \[0, 1\]"):
        args.run(args)
