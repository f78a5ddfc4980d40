"""Architecture inference, strict loading and load_model, against the official reference pack."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import faceprior
from faceprior.models import ARCHITECTURES, create_model
from faceprior.models.architecture import ArchitectureError
from faceprior.models.gfpgan_bilinear import bilinear_to_clean_state_dict
from faceprior.models.loading import infer_architecture, load_model, load_state_dict_strict
from faceprior.weights import store
from faceprior.weights.catalogue import CATALOGUE, entries
from faceprior.weights.checkpoint import read_state_dict, save_state_dict

# Constructor arguments that leave no trace in a state dict (they only set requires_grad / load a file).
IRRELEVANT = ("decoder_load_path", "fix_decoder")


def _comparable(kwargs: dict) -> dict:
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items() if k not in IRRELEVANT}


def _meta_state_dict(arch: str, **kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return create_model(arch, **kwargs).state_dict()


def _reference_configs(reference_dir: Path) -> list[tuple[str, Path, str, dict]]:
    """(name, checkpoint path, class name, kwargs) of every checkpoint in the pack and its companion."""
    configs = []
    for index_path in (reference_dir / "index.json", reference_dir / "arcface" / "index.json"):
        if not index_path.is_file():
            continue
        for name, config in json.loads(index_path.read_text())["configs"].items():
            path = index_path.parent / config["ckpt"]
            if path.is_file():
                configs.append((name, path, config["cls"].rsplit(".", 1)[-1], config["kwargs"]))
    return configs


# ----------------------------------------------------------------------------------------------
# The reference checkpoints


@pytest.mark.slow
def test_every_reference_checkpoint_loads_with_the_stored_kwargs(reference_dir: Path):
    configs = _reference_configs(reference_dir)
    assert len(configs) >= 8
    for name, path, cls_name, kwargs in configs:
        state_dict = read_state_dict(path)
        arch, inferred = infer_architecture(state_dict)
        assert arch == cls_name, name
        assert _comparable(inferred) == _comparable(kwargs), name
        model = load_model(path)
        assert type(model) is ARCHITECTURES[cls_name].network and not model.training
        loaded = model.state_dict()
        for key, value in state_dict.items():
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), (name, key)


def test_loaded_model_reproduces_the_official_output(reference_dir: Path):
    model = load_model(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth")
    ref = torch.load(reference_dir / "ref" / "GFPGANv1Clean_small.pt", map_location="cpu", weights_only=True)
    with torch.no_grad():
        image = model(ref["input"], return_rgb=True, randomize_noise=False)[0]
    assert (image - ref["out_fixed_noise"]["image"]).abs().max().item() < 1e-4


def test_safetensors_copy_loads_the_same_model(reference_dir: Path, tmp_path: Path):
    source = reference_dir / "ckpt" / "GFPGANv1_small.pth"
    copy = tmp_path / "GFPGANv1_small.safetensors"
    save_state_dict(read_state_dict(source), copy)
    from_pth, from_safetensors = load_model(source), load_model(copy)
    assert type(from_safetensors) is type(from_pth)
    a, b = from_pth.state_dict(), from_safetensors.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(from_pth(x, randomize_noise=False)[0], from_safetensors(x, randomize_noise=False)[0])


# ----------------------------------------------------------------------------------------------
# Full-size configurations (manifests) and other configurations


def test_full_size_configs_from_the_manifests(reference_dir: Path):
    index = json.loads((reference_dir / "index.json").read_text())
    checked = 0
    for name, info in index["manifests"].items():
        manifest = json.loads((reference_dir / info["manifest"]).read_text())
        cls_name = manifest["cls"].rsplit(".", 1)[-1]
        if cls_name not in ARCHITECTURES:
            continue  # face detection / parsing networks: not loaded through load_model
        kwargs = {k: v for k, v in manifest["kwargs"].items() if k != "device"}
        built = _meta_state_dict(cls_name, **kwargs)
        assert [(k, list(v.shape)) for k, v in built.items()] == [(e[0], e[1]) for e in manifest["entries"]], name
        for shapes in (built, {e[0]: e[1] for e in manifest["entries"]}):
            arch, inferred = infer_architecture(shapes)
            assert arch == cls_name, name
            assert _comparable(inferred) == _comparable(kwargs), name
        checked += 1
    assert checked == 7


GFPGAN_VARIANTS = [
    dict(out_size=256, num_style_feat=64, channel_multiplier=2, narrow=0.25, different_w=True, sft_half=True, num_mlp=8),
    dict(out_size=128, num_style_feat=32, channel_multiplier=1, narrow=0.5, different_w=False, sft_half=False, num_mlp=4),
    dict(out_size=64, num_style_feat=16, channel_multiplier=2, narrow=0.125, different_w=True, sft_half=False, num_mlp=2),
    dict(out_size=1024, num_style_feat=8, channel_multiplier=1, narrow=0.25, different_w=False, sft_half=True, num_mlp=1),
]


@pytest.mark.parametrize("variant", GFPGAN_VARIANTS)
@pytest.mark.parametrize("arch", ["GFPGANv1Clean", "GFPGANv1", "GFPGANBilinear"])
def test_gfpgan_variants(arch: str, variant: dict):
    kwargs = dict(variant, input_is_latent=True)
    state_dict = _meta_state_dict(arch, **kwargs)
    # GFPGANv1 and GFPGANBilinear share their layout; the multiplier picks one unless arch= says.
    expected_arch = arch if arch == "GFPGANv1Clean" else ("GFPGANv1" if variant["channel_multiplier"] == 1 else "GFPGANBilinear")
    inferred_arch, inferred = infer_architecture(state_dict)
    assert inferred_arch == expected_arch
    forced_arch, forced = infer_architecture(state_dict, arch=arch)
    assert forced_arch == arch
    for key, value in kwargs.items():
        assert forced[key] == value, key
    assert _meta_state_dict(forced_arch, **forced).keys() == state_dict.keys()


def test_input_gate_is_read_off_the_state_dict():
    variant = dict(GFPGAN_VARIANTS[0], input_is_latent=True, input_gate=True)
    state_dict = _meta_state_dict("GFPGANv1Clean", **variant)
    arch, kwargs = infer_architecture(state_dict)
    assert arch == "GFPGANv1Clean" and kwargs["input_gate"] is True
    assert _meta_state_dict(arch, **kwargs).keys() == state_dict.keys()
    del variant["input_gate"]
    assert "input_gate" not in infer_architecture(_meta_state_dict("GFPGANv1Clean", **variant))[1]


@pytest.mark.parametrize("arch", ["StyleGAN2Generator", "StyleGAN2GeneratorClean"])
@pytest.mark.parametrize(
    "kwargs",
    [dict(out_size=128, num_style_feat=64, num_mlp=3, channel_multiplier=1, narrow=0.25), dict(out_size=256, num_style_feat=16, num_mlp=8, channel_multiplier=2, narrow=0.125)],
)
def test_stylegan2_generator_variants(arch: str, kwargs: dict):
    inferred_arch, inferred = infer_architecture(_meta_state_dict(arch, **kwargs))
    assert inferred_arch == arch
    assert {k: inferred[k] for k in kwargs} == kwargs


@pytest.mark.parametrize("out_size, multiplier, narrow", [(64, 1, 0.25), (256, 2, 0.125), (1024, 2, 0.0625)])
def test_discriminator_variants(out_size: int, multiplier: int, narrow: float):
    arch, inferred = infer_architecture(_meta_state_dict("StyleGAN2Discriminator", out_size=out_size, channel_multiplier=multiplier, narrow=narrow))
    assert arch == "StyleGAN2Discriminator"
    assert (inferred["out_size"], inferred["channel_multiplier"], inferred["narrow"]) == (out_size, multiplier, narrow)


@pytest.mark.parametrize("kwargs", [dict(block="IRBlock", layers=[1, 2, 1, 1], use_se=True), dict(block="BasicBlock", layers=[1, 1, 1, 2], use_se=False)])
def test_arcface_variants(kwargs: dict):
    assert infer_architecture(_meta_state_dict("ResNetArcFace", **kwargs)) == ("ResNetArcFace", kwargs)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_variants(scale: int):
    kwargs = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=16, num_block=3, num_grow_ch=8)
    assert infer_architecture(_meta_state_dict("RRDBNet", **kwargs)) == ("RRDBNet", kwargs)


def test_catalogue_architectures_match_the_full_size_manifests(reference_dir: Path):
    """Every official GFP-GAN release in the catalogue: the released configuration (the manifest's kwargs)
    builds exactly the manifest's keys and shapes, in order, and is recognised back from them."""
    official = [entry for entry in entries("restoration") if entry.arch and entry.arch.startswith("GFPGAN") and not entry.bundled]
    assert official
    for entry in official:
        manifest = json.loads((reference_dir / "manifests" / f"{entry.arch}.json").read_text())
        kwargs = manifest["kwargs"]
        built = _meta_state_dict(entry.arch, **kwargs)
        assert [(k, list(v.shape)) for k, v in built.items()] == [(e[0], e[1]) for e in manifest["entries"]], entry.name
        arch, inferred = infer_architecture(built)
        assert arch == entry.arch
        assert {k: inferred[k] for k in kwargs} == {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}, entry.name


# ----------------------------------------------------------------------------------------------
# Overrides and errors


def test_arch_override_and_aliases(reference_dir: Path):
    path = reference_dir / "ckpt" / "GFPGANv1_small.pth"
    assert type(load_model(path, arch="GFPGANBilinear")).__name__ == "GFPGANBilinear"
    assert type(load_model(path, arch="original")).__name__ == "GFPGANv1"
    with pytest.raises(ArchitectureError) as error:
        load_model(path, arch="clean")
    assert "not the GFPGANv1Clean one" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ArchitectureError):
        load_model(path, arch="NoSuchNet")


def test_kwargs_override_is_checked_strictly(reference_dir: Path):
    path = reference_dir / "ckpt" / "StyleGAN2GeneratorClean_small.pth"
    assert load_model(path, num_mlp=8).style_mlp is not None
    with pytest.raises(ArchitectureError) as error:
        load_model(path, num_mlp=4)
    message = str(error.value)
    assert str(path) in message and "unexpected" in message and "style_mlp" in message and "\n" not in message


def test_unknown_layout_and_bad_shapes(tmp_path: Path, reference_dir: Path):
    unknown = tmp_path / "unknown.pth"
    torch.save({"params": {"encoder.weight": torch.ones(2, 2)}}, unknown)
    with pytest.raises(ArchitectureError) as error:
        load_model(unknown)
    assert "unknown state-dict layout" in str(error.value) and "\n" not in str(error.value)

    state_dict = read_state_dict(reference_dir / "ckpt" / "StyleGAN2Discriminator_small.pth")
    state_dict["final_linear.1.weight"] = torch.ones(1, 33)
    broken = tmp_path / "broken.pth"
    save_state_dict(state_dict, broken, key="params")
    with pytest.raises(ArchitectureError) as error:
        load_model(broken)
    assert "final_linear.1.weight [1, 33] vs [1, 32]" in str(error.value)


def test_missing_num_batches_tracked_is_accepted(reference_dir: Path):
    path = reference_dir / "arcface" / "ckpt" / "ResNetArcFace_fp16.pth"
    if not path.is_file():
        pytest.skip("ArcFace companion not present")
    state_dict = {k: v for k, v in read_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    model = create_model("ResNetArcFace", **infer_architecture(state_dict)[1])
    load_state_dict_strict(model, state_dict)
    assert torch.equal(model.bn1.weight, state_dict["bn1.weight"].float())


def test_unknown_spec(tmp_path: Path):
    with pytest.raises(KeyError) as error:
        load_model(str(tmp_path / "nothing-here.pth"))
    assert "gfpgan-1.4" in str(error.value)


# ----------------------------------------------------------------------------------------------
# Registered names


@pytest.fixture
def offline_cache(monkeypatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "cache"))
    monkeypatch.setenv(store.ENV_OFFLINE, "1")
    monkeypatch.delenv(store.ENV_MIRROR, raising=False)
    return tmp_path / "cache" / "weights"


def test_registered_name_offline_says_where_to_put_the_file(offline_cache: Path):
    with pytest.raises(store.WeightsUnavailableError) as error:
        faceprior.load_model("gfpgan-1.4")
    message = str(error.value)
    assert str(offline_cache / "GFPGANv1.4.pth") in message and CATALOGUE["gfpgan-1.4"].url in message and "\n" not in message


def test_registered_name_uses_the_cached_file_and_its_checksum(offline_cache: Path, reference_dir: Path, monkeypatch):
    index = json.loads((reference_dir / "index.json").read_text())
    config = index["configs"]["GFPGANv1Clean_small"]
    entry = replace(
        CATALOGUE["gfpgan-1.4"],
        name="tiny",
        filename="tiny.pth",
        urls=("https://example.invalid/tiny.pth",),
        sha256=config["ckpt_sha256"],
        size=config["ckpt_bytes"],
    )
    monkeypatch.setitem(CATALOGUE, "tiny", entry)
    offline_cache.mkdir(parents=True)
    shutil.copy(reference_dir / config["ckpt"], offline_cache / "tiny.pth")
    model = faceprior.load_model("tiny")
    assert type(model).__name__ == "GFPGANv1Clean" and not model.training
    monkeypatch.setitem(CATALOGUE, "tiny", replace(entry, sha256="0" * 64))
    with pytest.raises(store.ChecksumMismatchError):
        faceprior.load_model("tiny")


# ----------------------------------------------------------------------------------------------
# GFPGANBilinear -> GFPGANv1Clean


def test_bilinear_to_clean_conversion_is_exact(reference_dir: Path):
    state_dict = read_state_dict(reference_dir / "ckpt" / "GFPGANBilinear_small.pth")
    ref = torch.load(reference_dir / "ref" / "GFPGANBilinear_small.pt", map_location="cpu", weights_only=True)
    _, kwargs = infer_architecture(state_dict)
    kwargs.pop("lr_mlp")
    clean = create_model("GFPGANv1Clean", **kwargs).eval()
    load_state_dict_strict(clean, bilinear_to_clean_state_dict(state_dict))
    with torch.no_grad():
        image, rgbs = clean(ref["input"], return_rgb=True, randomize_noise=False)
    assert (image - ref["out_fixed_noise"]["image"]).abs().max().item() < 1e-4  # measured 9.6e-6
    for ours, official in zip(rgbs, ref["out_fixed_noise"]["out_rgbs"]):
        assert (ours - official).abs().max().item() < 1e-4
