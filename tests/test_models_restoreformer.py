"""RestoreFormer and RestoreFormer++ against the official reference pack (../shared/reference/zoo).

The pack holds small configurations of the official networks (gfpgan 1.3.8 ``RestoreFormer``;
RestoreFormerPlusPlus @ 59d250f4 ``VQVAEGANMultiHeadTransformer``) with seeded random weights, in
the checkpoint layouts of the released models, the official outputs for them, and the key lists
(manifests) of the full-size released models. See the pack's README.md.

Checked here: options read off each file alone equal the official kwargs and the file loads
strictly; outputs within the README's tolerance, the latent fed to the quantizer and the chosen
codes exactly; the official initialisation order; full-size state-dict keys, shapes and order;
and that each architecture recognises its own state dicts only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from faceprior.models.architecture import Architecture, ArchitectureError, shapes_of
from faceprior.models.restoreformer import (
    ARCHITECTURE_RESTOREFORMER,
    ARCHITECTURE_RESTOREFORMER_PP,
    RestoreFormer,
    VQVAEGANMultiHeadTransformer,
    multi_scale_attn_resolutions,
    restoreformer_keys,
)

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
ZOO = REFERENCE / "zoo"
if not (ZOO / "index.json").is_file():
    pytest.skip(f"RestoreFormer reference pack not found at {ZOO} (needs ../shared/reference/zoo)",
                allow_module_level=True)

ATOL = 5e-5  # README "Tolerances": 6x the largest legitimate difference measured (5.8e-6)

# config name -> (our architecture, key of the network's state dict in the checkpoint file)
SMALL = {
    "RestoreFormer_small": (ARCHITECTURE_RESTOREFORMER, "params_ema"),
    "RestoreFormerPlusPlus_small": (ARCHITECTURE_RESTOREFORMER_PP, "state_dict"),
}
# manifest -> our architecture that must recognise it
MANIFESTS = {
    "RestoreFormer": ARCHITECTURE_RESTOREFORMER,
    "RestoreFormer_RFPPrepo": ARCHITECTURE_RESTOREFORMER,  # VQVAEGANMultiHeadTransformer(head_size=8, ex=0)
    "RestoreFormerPlusPlus": ARCHITECTURE_RESTOREFORMER_PP,
}
OTHER_ARCH = {ARCHITECTURE_RESTOREFORMER.name: ARCHITECTURE_RESTOREFORMER_PP,
              ARCHITECTURE_RESTOREFORMER_PP.name: ARCHITECTURE_RESTOREFORMER}
# Constructor kwargs that only set requires_grad or dropout (no effect on shapes or outputs).
TRAINING_ONLY = {"dropout", "fix_decoder", "fix_codebook", "fix_encoder"}


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def as_tuples(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON kwargs with lists as tuples (as our options return them)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def config(name: str) -> dict[str, Any]:
    return json.loads((ZOO / "index.json").read_text())["configs"][name]


def manifest(name: str) -> dict[str, Any]:
    return json.loads((ZOO / "manifests" / f"{name}.json").read_text())


def manifest_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape, _, _ in manifest(name)["entries"]}


def network_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The small checkpoint's state dict as our architecture's convert_keys makes it."""
    arch, key = SMALL[name]
    return arch.convert_keys(load(ZOO / config(name)["ckpt"])[key])


@pytest.fixture(scope="module", params=list(SMALL))
def small(request):
    """(name, architecture, network with the checkpoint loaded strictly, eval; reference tensors)."""
    name = request.param
    arch = SMALL[name][0]
    state_dict = network_state_dict(name)
    network = arch.network(**arch.options(shapes_of(state_dict)))
    assert list(network.state_dict()) == list(state_dict)  # the official order
    network.load_state_dict(state_dict, strict=True)
    return name, arch, network.eval(), load(ZOO / config(name)["ref"])


# ------------------------------------------------------------------ (a) options and strict loading


@pytest.mark.parametrize("name", list(SMALL))
def test_options_from_the_file_alone(name):
    arch = SMALL[name][0]
    state_dict = network_state_dict(name)
    shapes = shapes_of(state_dict)
    assert arch.layout(shapes) and arch.recognises(shapes)
    assert not OTHER_ARCH[arch.name].layout(shapes)
    official = as_tuples(config(name)["kwargs"])
    assert official == as_tuples(load(ZOO / config(name)["ref"])["meta"]["kwargs"])
    # Every kwarg, head_size included (the small configs use the released head counts).
    assert arch.options(shapes) == official
    assert arch.face_size(arch.options(shapes)) == official["resolution"] == 64
    assert len(state_dict) == config(name)["num_state_dict_entries"]


def test_lightning_checkpoint_layout():
    raw = load(ZOO / config("RestoreFormerPlusPlus_small")["ckpt"])["state_dict"]
    assert all(k.startswith("vqvae.") for k in raw)
    converted = restoreformer_keys(raw)
    assert list(converted) == [k[len("vqvae."):] for k in raw]
    # Released Lightning checkpoints hold other entries too (losses): dropped.
    tensor = torch.zeros(1)
    assert restoreformer_keys({"vqvae.encoder.conv_in.weight": tensor, "loss.discriminator.main.0.weight": tensor,
                               "loss.logvar": tensor}) == {"encoder.conv_in.weight": tensor}
    # gfpgan's files have no prefix: unchanged.
    plain = load(ZOO / config("RestoreFormer_small")["ckpt"])["params_ema"]
    assert restoreformer_keys(plain) is plain


# ------------------------------------------------------------------ (b) outputs


@torch.no_grad()
def test_outputs_latent_and_codes(small):
    name, arch, network, ref = small
    x = ref["input"]
    latent = network.quant_conv(network.encoder(x)["out"])  # the quantizer's input
    # To float rounding: the reference was computed on another CPU, whose conv kernels sum in another
    # order (2-3e-6 on an AVX2 CPU); the code indices below must still match exactly.
    latent_diff = (latent - ref["latent_pre_quant"]).abs().max().item()
    assert latent_diff <= ATOL, (name, latent_diff)

    info = network.encode(x)[2]  # (perplexity, one-hot codes, code indices [B*H*W, 1], distances)
    codes = info[2].view(ref["code_indices"].shape)
    assert codes.dtype == torch.int64
    assert torch.equal(codes, ref["code_indices"]), name

    out = network(x)
    diff = (out[0] - ref["output"]).abs().max().item()
    print(f"{name}: max |output - official| = {diff:.3g}")
    assert diff <= ATOL, (name, diff)
    assert arch.restore(network, x, None, False).equal(out[0])
    if "emb_loss" in ref:
        assert isinstance(network, VQVAEGANMultiHeadTransformer) and len(out) == 4
        assert abs(out[1].item() - ref["emb_loss"].item()) <= 1e-6
    else:
        # gfpgan's RestoreFormer: (dec, None); GFPGANer.enhance passes return_rgb and weight.
        assert out[1] is None
        again = network(x, return_rgb=False, weight=0.5)
        assert again[0].equal(out[0]) and again[1] is None


def test_official_initialisation():
    """Built after torch.manual_seed(0), every tensor the pack did not change equals the checkpoint."""
    for name in SMALL:
        arch = SMALL[name][0]
        cfg = config(name)
        torch.manual_seed(0)
        ours = arch.network(**as_tuples(cfg["kwargs"])).state_dict()
        official = network_state_dict(name)
        changed = set(cfg["perturbed_tensor_names"]) | set(cfg["codebook_redrawn"])
        assert changed < set(ours)
        for key, value in ours.items():
            if key not in changed:
                assert torch.equal(value, official[key]), (name, key)


def test_requires_grad_switches():
    rf = RestoreFormer(**as_tuples(config("RestoreFormer_small")["kwargs"]))
    assert not rf.quantize.embedding.weight.requires_grad  # fix_codebook=True by default
    assert rf.encoder.conv_in.weight.requires_grad and rf.decoder.conv_out.weight.requires_grad
    kwargs = as_tuples(config("RestoreFormerPlusPlus_small")["kwargs"])
    pp = VQVAEGANMultiHeadTransformer(**{**kwargs, "fix_encoder": True})
    assert not pp.encoder.conv_in.weight.requires_grad and not pp.quant_conv.weight.requires_grad
    assert pp.decoder.conv_out.weight.requires_grad


# ------------------------------------------------------------------ (c) full-size manifests


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_full_size_manifest(name):
    arch = MANIFESTS[name]
    data = manifest(name)
    shapes = manifest_shapes(name)
    options = arch.options(shapes)
    official = as_tuples(data["kwargs"])
    if arch is ARCHITECTURE_RESTOREFORMER:  # RestoreFormer_RFPPrepo: the RF++ class with ex_multi_scale_num=0
        official.pop("ex_multi_scale_num", None)
    assert options == official, name  # head_size too: the released values
    assert arch.face_size(options) == 512
    with torch.device("meta"):
        network = arch.network(**options)
    params = {key for key, _ in network.named_parameters()}
    ours = [[key, list(t.shape), str(t.dtype).replace("torch.", ""), "param" if key in params else "buffer"]
            for key, t in network.state_dict().items()]
    assert ours == data["entries"], name
    assert sum(p.numel() for p in network.parameters()) == data["num_params"]


def test_restoreformer_as_released_by_the_rfpp_repo():
    """VQVAEGANMultiHeadTransformer(head_size=8, ex_multi_scale_num=0) has gfpgan RestoreFormer's layout."""
    data = manifest("RestoreFormer_RFPPrepo")
    with torch.device("meta"):
        network = VQVAEGANMultiHeadTransformer(**as_tuples(data["kwargs"]))
    assert [[k, list(t.shape)] for k, t in network.state_dict().items()] == [e[:2] for e in data["entries"]]
    assert ARCHITECTURE_RESTOREFORMER_PP.options(manifest_shapes("RestoreFormer_RFPPrepo")) == as_tuples(data["kwargs"])


def test_multi_scale_attn_resolutions():
    assert multi_scale_attn_resolutions((16,), 0) == (16,)
    assert multi_scale_attn_resolutions((16,), 1) == (16, 32)
    assert multi_scale_attn_resolutions((16,), 2) == (16, 64)  # the official loop replaces, not appends


# ------------------------------------------------------------------ (d) layouts


def other_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    gfpgan_like = {
        "conv_body_first.weight": (32, 3, 1, 1),
        "conv_body_down.0.conv1.weight": (64, 32, 3, 3),
        "final_linear.weight": (8192, 8192),
        "stylegan_decoder.constant_input.weight": (1, 512, 4, 4),
        "stylegan_decoder.style_conv1.modulated_conv.weight": (1, 512, 512, 3, 3),
    }
    # taming-transformers' VQGAN: the same names, but one norm (``norm``) per attention block.
    taming_like = {}
    for key, shape in manifest_shapes("RestoreFormer").items():
        if ".attn" in key and ".norm2." in key:
            continue
        taming_like[key.replace(".norm1.", ".norm.") if ".attn" in key else key] = shape
    layouts = {"gfpgan-like": gfpgan_like, "taming-like": taming_like}
    for name in ("CodeFormer", "GPEN-BFR-512"):
        layouts[name] = manifest_shapes(name)
    gfpgan_manifest = REFERENCE / "manifests" / "GFPGANv1Clean.json"
    if gfpgan_manifest.is_file():
        layouts["GFPGANv1Clean"] = {k: tuple(s) for k, s, _, _ in json.loads(gfpgan_manifest.read_text())["entries"]}
    return layouts


@pytest.mark.parametrize("arch", [ARCHITECTURE_RESTOREFORMER, ARCHITECTURE_RESTOREFORMER_PP], ids=lambda a: a.name)
def test_layouts(arch: Architecture):
    for name, expected in MANIFESTS.items():
        shapes = manifest_shapes(name)
        assert arch.layout(shapes) == (expected is arch), (arch.name, name)
        assert arch.recognises(shapes) == (expected is arch), (arch.name, name)
    for name, shapes in other_layouts().items():
        assert not arch.layout(shapes), (arch.name, name)
    # A Lightning-wrapped RestoreFormer++ state dict is recognised after convert_keys only.
    pp_lightning = {"vqvae." + k: v for k, v in manifest_shapes("RestoreFormerPlusPlus").items()}
    pp_lightning["loss.discriminator.main.0.weight"] = (64, 3, 4, 4)
    assert not arch.layout(pp_lightning)
    assert arch.layout(arch.convert_keys(pp_lightning)) == (arch is ARCHITECTURE_RESTOREFORMER_PP)


def test_options_reject_the_other_layout():
    with pytest.raises(ArchitectureError, match="RestoreFormer\\+\\+"):
        ARCHITECTURE_RESTOREFORMER.options(manifest_shapes("RestoreFormerPlusPlus"))


def test_declarations():
    assert ARCHITECTURE_RESTOREFORMER.name == "RestoreFormer"
    assert ARCHITECTURE_RESTOREFORMER_PP.name == "VQVAEGANMultiHeadTransformer"
    for arch in (ARCHITECTURE_RESTOREFORMER, ARCHITECTURE_RESTOREFORMER_PP):
        assert arch.purpose == "restoration" and arch.framing == "ffhq"
        assert arch.capabilities.names() == ["fast_cpu", "onnx"]
        assert arch.weights_license and arch.description
