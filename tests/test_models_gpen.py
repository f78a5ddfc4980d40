"""GPEN (BFR) against the official reference pack (../shared/reference/zoo, README.md there).

The pack holds ``GPEN_small``: the official ``gpen_model.FullGenerator`` (yangxy/GPEN @ 2c736702)
with ``size=64, style_dim=32, channel_multiplier=1, narrow=0.0625``, seeded random weights, as the
plain state dict of the released files (FIR kernels included as buffers), with the official output,
the style code (``final_linear``) and the latent w (``generator.style``); and the key lists of the
released GPEN-BFR-512 and GPEN-BFR-256.

Checked here: (a) options read off the file alone equal the official kwargs and the file loads
strictly; (b) the output, style code and w within the README tolerance, and the uint8 images of
GPEN's own (truncating) conversion; the official initialisation order; (c) the full-size state
dicts (keys, shapes, dtypes, param/buffer, order); (d) the layout test recognises GPEN only.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from faceprior.models.architecture import ArchitectureError, shapes_of
from faceprior.models.gpen import ARCHITECTURE, FullGenerator

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
ZOO = REFERENCE / "zoo"
if not (ZOO / "index.json").is_file():
    pytest.skip(f"GPEN reference pack not found at {ZOO} (needs ../shared/reference/zoo)",
                allow_module_level=True)

ATOL = 1e-5  # README "Tolerances": enough for GPEN (official fp32 vs fp64: 1.2e-6)
NAME = "GPEN_small"
# Official constructor kwargs that change shapes; blur_kernel only by its tap count, lr_mlp and
# device not at all (device: GPEN's CUDA-extension switch, not taken by our class).
SHAPE_KWARGS = ("size", "style_dim", "n_mlp", "channel_multiplier", "isconcat", "narrow")
MANIFESTS = {"GPEN-BFR-512": 512, "GPEN-BFR-256": 256}


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def config() -> dict[str, Any]:
    return json.loads((ZOO / "index.json").read_text())["configs"][NAME]


def official_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON kwargs with lists as tuples, without ``device``."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items() if k != "device"}


def manifest_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape, _, _ in json.loads(path.read_text())["entries"]}


def small_state_dict() -> dict[str, torch.Tensor]:
    return load(ZOO / config()["ckpt"])  # plain state dict (FaceGAN.load_model, key=None)


def gpen_tensor2img(x: torch.Tensor) -> torch.Tensor:
    """GPEN's ``FaceGAN.tensor2img`` (without the RGB->BGR flip): ``x * 0.5 + 0.5``, clip to [0, 1],
    ``* 255``, ``astype(uint8)``, which truncates. [B, 3, S, S] -> uint8."""
    return (torch.clamp(x * 0.5 + 0.5, 0, 1) * 255.0).to(torch.uint8)


@pytest.fixture(scope="module")
def small():
    """(network from the options of the file, checkpoint loaded strictly, eval; reference tensors)."""
    state_dict = small_state_dict()
    network = FullGenerator(**ARCHITECTURE.options(shapes_of(state_dict)))
    assert list(network.state_dict()) == list(state_dict)  # the official order
    network.load_state_dict(state_dict, strict=True)
    return network.eval(), load(ZOO / config()["ref"])


# ------------------------------------------------------------------ (a) options and strict loading


def test_options_from_the_file_alone():
    state_dict = small_state_dict()
    shapes = shapes_of(state_dict)
    assert ARCHITECTURE.layout(shapes) and ARCHITECTURE.recognises(shapes)
    options = ARCHITECTURE.options(shapes)
    official = official_kwargs(config()["kwargs"])
    assert official == official_kwargs(load(ZOO / config()["ref"])["meta"]["kwargs"])
    for key in SHAPE_KWARGS:
        assert options[key] == official[key], key
    # Not in the shapes: the released values, which the small config uses too.
    assert options == official
    assert set(options) == set(inspect.signature(FullGenerator).parameters)  # every constructor kwarg
    assert ARCHITECTURE.face_size(options) == 64
    assert len(state_dict) == config()["num_state_dict_entries"]
    network = FullGenerator(**options)
    # The FIR-kernel buffers are part of the state dict, and ours hold the official values.
    buffers = dict(network.named_buffers())
    assert len(buffers) == 12 and all(key.endswith(".kernel") for key in buffers)
    for key, value in buffers.items():
        assert torch.equal(value, state_dict[key]), key
    network.load_state_dict(state_dict, strict=True)
    assert sum(p.numel() for p in network.parameters()) == config()["params"]
    assert sum(b.numel() for b in network.buffers()) == config()["buffer_elems"]


def test_options_reject_inconsistent_shapes():
    shapes = shapes_of(small_state_dict())
    wrong = dict(shapes)
    wrong["ecd0.0.0.weight"] = (24, 3, 1, 1)
    with pytest.raises(ArchitectureError, match="ecd0"):
        ARCHITECTURE.options(wrong)
    wrong = dict(shapes)
    wrong["generator.convs.4.conv.weight"] = (1, 20, 64, 3, 3)  # 32 px: not int(512 * narrow)
    with pytest.raises(ArchitectureError, match="channel widths"):
        ARCHITECTURE.options(wrong)


# ------------------------------------------------------------------ (b) outputs


@torch.no_grad()
def test_output_style_code_and_w(small):
    network, ref = small
    x = ref["input"]
    captured: dict[str, torch.Tensor] = {}
    hooks = [network.final_linear.register_forward_hook(lambda m, i, out: captured.__setitem__("style_code", out)),
             network.generator.style.register_forward_hook(lambda m, i, out: captured.__setitem__("w", out))]
    rng = torch.get_rng_state()
    try:
        image, latent = network(x)  # the official call: out, _ = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn
    assert latent is None
    diffs = {"output": (image - ref["output"]).abs().max().item(),
             "style_code": (captured["style_code"] - ref["style_code"]).abs().max().item(),
             "w": (captured["w"] - ref["w"]).abs().max().item()}
    print("max |ours - official| = " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    assert all(d <= ATOL for d in diffs.values()), diffs

    # GPEN's uint8 conversion truncates: a pixel may land on the other side of an integer only
    # where the official value is within the tolerance of one.
    ours, theirs = gpen_tensor2img(image), gpen_tensor2img(ref["output"])
    assert (ours.int() - theirs.int()).abs().max().item() <= 1
    scaled = torch.clamp(ref["output"] * 0.5 + 0.5, 0, 1) * 255.0
    near_integer = (scaled - scaled.round()).abs() <= ATOL * 0.5 * 255.0
    assert torch.equal(ours[~near_integer], theirs[~near_integer])

    # return_latents: the w of every layer; the restore call is the official one.
    image2, latent = network(x, return_latents=True)
    assert image2.equal(image) and latent.shape == (2, network.generator.n_latent, 32)
    assert torch.equal(latent, captured["w"].unsqueeze(1).expand_as(latent))
    assert ARCHITECTURE.restore(network, x, None, True).equal(image)


def test_official_initialisation():
    """Built after torch.manual_seed(0), every tensor the pack did not change equals the checkpoint."""
    cfg = config()
    torch.manual_seed(0)
    ours = FullGenerator(**official_kwargs(cfg["kwargs"])).state_dict()
    official = small_state_dict()
    changed = set(cfg["perturbed_tensor_names"])
    assert changed < set(ours)
    for key, value in ours.items():
        if key not in changed:
            assert torch.equal(value, official[key]), key


# ------------------------------------------------------------------ (c) full-size manifests


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_full_size_manifest(name):
    path = ZOO / "manifests" / f"{name}.json"
    data = json.loads(path.read_text())
    options = ARCHITECTURE.options(manifest_shapes(path))
    assert options == official_kwargs(data["kwargs"]), name
    assert ARCHITECTURE.face_size(options) == MANIFESTS[name]
    with torch.device("meta"):
        network = FullGenerator(**options)
    params = {key for key, _ in network.named_parameters()}
    ours = [[key, list(t.shape), str(t.dtype).replace("torch.", ""), "param" if key in params else "buffer"]
            for key, t in network.state_dict().items()]
    assert ours == data["entries"], name
    assert sum(p.numel() for p in network.parameters()) == data["num_params"]
    assert sum(b.numel() for b in network.buffers()) == data["num_buffer_elems"]


# ------------------------------------------------------------------ (d) layouts


def other_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    """Key layouts of the other architectures: CodeFormer and RestoreFormer(++) from the zoo, and every
    manifest of the GFP-GAN pack (GFP-GAN variants, StyleGAN2, ArcFace, ...) where present."""
    layouts = {f"zoo/{name}": manifest_shapes(ZOO / "manifests" / f"{name}.json")
               for name in ("CodeFormer", "RestoreFormer", "RestoreFormerPlusPlus", "RestoreFormer_RFPPrepo")}
    layouts["zoo/CodeFormer_small"] = shapes_of(load(ZOO / "ckpt" / "CodeFormer_small.pth")["params_ema"])
    layouts["zoo/RestoreFormer_small"] = shapes_of(load(ZOO / "ckpt" / "RestoreFormer_small.pth")["params_ema"])
    rfpp = load(ZOO / "ckpt" / "RestoreFormerPlusPlus_small.ckpt")["state_dict"]
    layouts["zoo/RestoreFormerPlusPlus_small"] = {k[len("vqvae."):]: tuple(v.shape) for k, v in rfpp.items()}
    for path in sorted((REFERENCE / "manifests").glob("*.json")):
        layouts[path.stem] = manifest_shapes(path)
    # GPEN's FullGenerator_SR (in_size < out_size: fewer encoder levels) is another architecture.
    sr = dict(manifest_shapes(ZOO / "manifests" / "GPEN-BFR-256.json"))
    for key in [k for k in sr if k.startswith("ecd6.")]:
        del sr[key]
    layouts["FullGenerator_SR"] = sr
    return layouts


def test_layout():
    assert ARCHITECTURE.layout(shapes_of(small_state_dict()))
    for name in MANIFESTS:
        assert ARCHITECTURE.layout(manifest_shapes(ZOO / "manifests" / f"{name}.json")), name
    layouts = other_layouts()
    assert any(name.startswith("GFPGAN") for name in layouts) or not (REFERENCE / "manifests").is_dir()
    for name, shapes in layouts.items():
        assert not ARCHITECTURE.layout(shapes), name
        assert not ARCHITECTURE.recognises(shapes), name


def test_declaration():
    assert ARCHITECTURE.name == "GPEN" and ARCHITECTURE.network is FullGenerator
    assert ARCHITECTURE.purpose == "restoration" and ARCHITECTURE.framing == "gpen"
    assert ARCHITECTURE.value_range == (-1.0, 1.0)
    assert ARCHITECTURE.capabilities.names() == ["bf16"]
    assert "non-commercial" in ARCHITECTURE.weights_license and ARCHITECTURE.description
