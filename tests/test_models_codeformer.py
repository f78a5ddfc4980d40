"""CodeFormer against the official reference pack (../shared/reference/zoo, README.md there).

The pack holds ``CodeFormer_small``: the official ``codeformer_arch.CodeFormer`` (sczhou/CodeFormer @
b33cc7d6) with its hard-coded VQGAN size constants overridden (img_size 128, nf 32, ch_mult
[1, 1, 1, 1], and the three dicts; README "CodeFormer small"), seeded random weights, in the
released ``{'params_ema': sd}`` layout, with the official outputs for w = 0, 0.5, 1, the logits,
``lq_feat`` and the chosen codes; and the key list of the released 512-px model.

Checked here: (a) options read off the file alone equal the official kwargs and size constants and
the file loads strictly; (b) outputs within the README tolerance, chosen codes exactly; the
official initialisation order; (c) the full-size state dict (keys, shapes, dtypes, order); (d) the
layout test recognises CodeFormer only.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from faceprior.models.architecture import ArchitectureError, shapes_of
from faceprior.models.codeformer import (
    ARCHITECTURE,
    OFFICIAL_CHANNELS,
    OFFICIAL_FUSE_ENCODER_BLOCK,
    OFFICIAL_FUSE_GENERATOR_BLOCK,
    CodeFormer,
    fuse_block_indices,
)

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
ZOO = REFERENCE / "zoo"
if not (ZOO / "index.json").is_file():
    pytest.skip(f"CodeFormer reference pack not found at {ZOO} (needs ../shared/reference/zoo)",
                allow_module_level=True)

ATOL = 5e-5  # README "Tolerances": ~6x the largest legitimate difference measured (8.3e-6)
NAME = "CodeFormer_small"
# Official constructor kwargs that change shapes (n_head, fix_modules, vqgan_path do not).
SHAPE_KWARGS = ("dim_embd", "n_layers", "codebook_size", "latent_size", "connect_list")
# The pack's size-constant overrides (ref meta "overrides") -> our constructor kwargs.
OVERRIDES = {"vq_img_size": "img_size", "vq_nf": "nf", "vq_ch_mult": "ch_mult", "channels": "channels",
             "fuse_encoder_block": "fuse_encoder_block", "fuse_generator_block": "fuse_generator_block"}


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def as_tuples(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON kwargs with lists as tuples (as our options return them)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def config() -> dict[str, Any]:
    return json.loads((ZOO / "index.json").read_text())["configs"][NAME]


def manifest(name: str) -> dict[str, Any]:
    return json.loads((ZOO / "manifests" / f"{name}.json").read_text())


def manifest_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape, _, _ in json.loads(path.read_text())["entries"]}


def small_state_dict() -> dict[str, torch.Tensor]:
    return load(ZOO / config()["ckpt"])["params_ema"]


def official_small_kwargs() -> dict[str, Any]:
    """The official kwargs plus the size overrides, in our constructor's names (vqgan_path dropped)."""
    meta = load(ZOO / config()["ref"])["meta"]
    kwargs = as_tuples(config()["kwargs"])
    assert kwargs == as_tuples(meta["kwargs"])
    kwargs.pop("vqgan_path")
    for theirs, ours in OVERRIDES.items():
        value = meta["overrides"][theirs]
        kwargs[ours] = tuple(value) if isinstance(value, list) else value
    return kwargs


@pytest.fixture(scope="module")
def small():
    """(network from the options of the file, checkpoint loaded strictly, eval; reference tensors)."""
    state_dict = small_state_dict()
    options = ARCHITECTURE.options(shapes_of(state_dict))
    # The head count leaves no trace in the shapes (options give the released 8); the small config has 4.
    network = CodeFormer(**{**options, "n_head": config()["kwargs"]["n_head"]})
    assert list(network.state_dict()) == list(state_dict)  # the official order
    network.load_state_dict(state_dict, strict=True)
    return network.eval(), load(ZOO / config()["ref"])


# ------------------------------------------------------------------ (a) options and strict loading


def test_options_from_the_file_alone():
    state_dict = small_state_dict()
    shapes = shapes_of(state_dict)
    assert ARCHITECTURE.layout(shapes) and ARCHITECTURE.recognises(shapes)
    options = ARCHITECTURE.options(shapes)
    official = official_small_kwargs()
    for key in SHAPE_KWARGS + tuple(OVERRIDES.values()):
        assert options[key] == official[key], key
    # Not in the shapes: the released values.
    assert options["n_head"] == 8 and options["fix_modules"] == ("quantize", "generator")
    assert (options["res_blocks"], options["attn_resolutions"], options["emb_dim"]) == (2, (16,), 256)
    assert set(options) == set(inspect.signature(CodeFormer).parameters)  # every constructor kwarg
    assert ARCHITECTURE.face_size(options) == 128
    assert len(state_dict) == config()["num_state_dict_entries"]
    network = CodeFormer(**options)
    network.load_state_dict(state_dict, strict=True)
    assert sum(p.numel() for p in network.parameters()) == config()["params"]


def test_options_reject_inconsistent_shapes():
    shapes = shapes_of(small_state_dict())
    wrong = dict(shapes)
    wrong["fuse_convs_dict.32.scale.0.weight"] = (48, 32, 3, 3)
    with pytest.raises(ArchitectureError, match="fuse block 32"):
        ARCHITECTURE.options(wrong)
    wrong = dict(shapes)
    wrong["position_emb"] = (200, 64)
    with pytest.raises(ArchitectureError, match="square"):
        ARCHITECTURE.options(wrong)


# ------------------------------------------------------------------ (b) outputs


@torch.no_grad()
def test_outputs_logits_and_codes(small):
    network, ref = small
    x = ref["input"]
    rng = torch.get_rng_state()
    for w, key in ((0.0, "output_w0"), (0.5, "output_w0.5"), (1.0, "output_w1")):
        out, logits, lq_feat = network(x, w=w, adain=True)
        codes = torch.topk(torch.softmax(logits, 2), 1, dim=2)[1].squeeze(2)
        assert codes.dtype == torch.int64
        assert torch.equal(codes, ref["code_indices"]), w  # first: if they differ nothing else can match
        diffs = {name: (ours - ref[name]).abs().max().item() for name, ours in
                 ((key, out), ("logits", logits), ("lq_feat", lq_feat))}
        print(f"w={w}: max |ours - official| = " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
        assert all(d <= ATOL for d in diffs.values()), (w, diffs)
    assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn
    # code_only (training stage II) returns the same logits and lq_feat.
    logits_only, lq_only = network(x, code_only=True)
    assert logits_only.equal(logits) and lq_only.equal(lq_feat)


@torch.no_grad()
def test_restore_call(small):
    network, ref = small
    x = ref["input"]
    # fidelity None: the official default w = 0.5; randomize_noise changes nothing.
    for fidelity, key, randomize_noise in ((None, "output_w0.5", False), (0.0, "output_w0", True)):
        out = ARCHITECTURE.restore(network, x, fidelity, randomize_noise)
        assert out.shape == x.shape and (out - ref[key]).abs().max().item() <= ATOL, key


def test_official_initialisation():
    """Built after torch.manual_seed(0), every tensor the pack did not change equals the checkpoint."""
    cfg = config()
    torch.manual_seed(0)
    ours = CodeFormer(**official_small_kwargs()).state_dict()
    official = small_state_dict()
    changed = set(cfg["perturbed_tensor_names"]) | set(cfg["codebook_redrawn"])
    assert changed < set(ours)
    for key, value in ours.items():
        if key not in changed:
            assert torch.equal(value, official[key]), key


def test_fix_modules():
    network = CodeFormer(**official_small_kwargs())
    assert not any(p.requires_grad for p in network.quantize.parameters())
    assert not any(p.requires_grad for p in network.generator.parameters())
    assert all(p.requires_grad for p in network.encoder.parameters())
    assert all(p.requires_grad for p in network.fuse_convs_dict.parameters())


def test_fuse_block_rule():
    assert fuse_block_indices() == (dict(OFFICIAL_FUSE_ENCODER_BLOCK), dict(OFFICIAL_FUSE_GENERATOR_BLOCK))
    meta = load(ZOO / config()["ref"])["meta"]["overrides"]
    assert fuse_block_indices(128, (1, 1, 1, 1)) == (meta["fuse_encoder_block"], meta["fuse_generator_block"])


# ------------------------------------------------------------------ (c) full-size manifest


def test_full_size_manifest():
    data = manifest("CodeFormer")
    options = ARCHITECTURE.options(manifest_shapes(ZOO / "manifests" / "CodeFormer.json"))
    official = as_tuples(data["kwargs"])
    for key in SHAPE_KWARGS:
        assert options[key] == official[key], key
    assert options["n_head"] == official["n_head"] and options["fix_modules"] == official["fix_modules"]
    # The released model is the official constants, i.e. our constructor's defaults.
    assert (options["img_size"], options["nf"], options["ch_mult"]) == (512, 64, (1, 2, 2, 4, 4, 8))
    assert options["channels"] == dict(OFFICIAL_CHANNELS)
    assert options["fuse_encoder_block"] == dict(OFFICIAL_FUSE_ENCODER_BLOCK)
    assert options["fuse_generator_block"] == dict(OFFICIAL_FUSE_GENERATOR_BLOCK)
    assert ARCHITECTURE.face_size(options) == 512
    with torch.device("meta"):
        network = CodeFormer(**options)
        default = CodeFormer(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9,
                             connect_list=["32", "64", "128", "256"])  # inference_codeformer.py's call
    params = {key for key, _ in network.named_parameters()}
    ours = [[key, list(t.shape), str(t.dtype).replace("torch.", ""), "param" if key in params else "buffer"]
            for key, t in network.state_dict().items()]
    assert ours == data["entries"]
    assert sum(p.numel() for p in network.parameters()) == data["num_params"]
    assert [(k, t.shape) for k, t in default.state_dict().items()] == [(k, t.shape) for k, t in
                                                                         network.state_dict().items()]


# ------------------------------------------------------------------ (d) layouts


def other_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    """Key layouts of the other architectures: GPEN and RestoreFormer(++) from the zoo, and every
    manifest of the GFP-GAN pack (GFP-GAN variants, StyleGAN2, ArcFace, ...) where present."""
    layouts = {f"zoo/{name}": manifest_shapes(ZOO / "manifests" / f"{name}.json")
               for name in ("GPEN-BFR-512", "GPEN-BFR-256", "RestoreFormer", "RestoreFormerPlusPlus",
                            "RestoreFormer_RFPPrepo")}
    layouts["zoo/GPEN_small"] = shapes_of(load(ZOO / "ckpt" / "GPEN_small.pth"))
    layouts["zoo/RestoreFormer_small"] = shapes_of(load(ZOO / "ckpt" / "RestoreFormer_small.pth")["params_ema"])
    rfpp = load(ZOO / "ckpt" / "RestoreFormerPlusPlus_small.ckpt")["state_dict"]
    layouts["zoo/RestoreFormerPlusPlus_small"] = {k[len("vqvae."):]: tuple(v.shape) for k, v in rfpp.items()}
    for path in sorted((REFERENCE / "manifests").glob("*.json")):
        layouts[path.stem] = manifest_shapes(path)
    # A bare VQGAN (CodeFormer's stage-I weights): the same VQGAN keys, no Transformer.
    layouts["vqgan"] = {k: s for k, s in manifest_shapes(ZOO / "manifests" / "CodeFormer.json").items()
                        if k.split(".")[0] in ("encoder", "quantize", "generator")}
    return layouts


def test_layout():
    assert ARCHITECTURE.layout(shapes_of(small_state_dict()))
    assert ARCHITECTURE.layout(manifest_shapes(ZOO / "manifests" / "CodeFormer.json"))
    layouts = other_layouts()
    assert any(name.startswith("GFPGAN") for name in layouts) or not (REFERENCE / "manifests").is_dir()
    for name, shapes in layouts.items():
        assert not ARCHITECTURE.layout(shapes), name
        assert not ARCHITECTURE.recognises(shapes), name


def test_declaration():
    assert ARCHITECTURE.name == "CodeFormer" and ARCHITECTURE.network is CodeFormer
    assert ARCHITECTURE.purpose == "restoration" and ARCHITECTURE.framing == "ffhq"
    assert ARCHITECTURE.value_range == (-1.0, 1.0)
    assert ARCHITECTURE.capabilities.names() == ["fidelity", "fast_cpu", "onnx"]
    assert "non-commercial" in ARCHITECTURE.weights_license and ARCHITECTURE.description
