"""Helpers shared by the model tests that compare against the official reference pack.

The pack (``../shared/reference``, fixture ``reference_dir``; README.md there) has, per config
``name``: ``index.json["configs"][name]`` (constructor kwargs, checkpoint path and key, names of the
tensors perturbed after the official seeded init), a checkpoint ``ckpt/<name>.pth`` and the official
inputs / outputs ``ref/<name>.pt``; ``manifests/<class>.json`` lists the full-size state dicts.
The ArcFace companion folder ``arcface/`` has the same layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ModelClass = Callable[..., nn.Module]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| of two float32 tensors of the same shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype == torch.float32, (a.dtype, b.dtype)
    return (a - b).abs().max().item()


def constructor_kwargs(stored: dict[str, Any]) -> dict[str, Any]:
    """Constructor kwargs as stored in JSON, with lists turned back into tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}


def reference_config(pack_dir: Path, name: str) -> dict[str, Any]:
    """The ``index.json`` entry of config ``name``."""
    return json.loads((pack_dir / "index.json").read_text())["configs"][name]


def load_reference(pack_dir: Path, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(constructor kwargs, official state dict, reference tensors) of config ``name``."""
    config = reference_config(pack_dir, name)
    checkpoint = torch.load(pack_dir / config["ckpt"], map_location="cpu", weights_only=True)
    ref = torch.load(pack_dir / config["ref"], map_location="cpu", weights_only=True)
    return constructor_kwargs(config["kwargs"]), checkpoint[config["ckpt_key"]], ref


def load_reference_model(pack_dir: Path, name: str, model_class: ModelClass) -> tuple[nn.Module, dict[str, Any]]:
    """(model of config ``name`` with the official checkpoint loaded strictly, in eval mode; reference tensors).

    Also checks that our state dict has the official keys in the official order.
    """
    kwargs, state_dict, ref = load_reference(pack_dir, name)
    if "meta" in ref:
        assert constructor_kwargs(ref["meta"]["kwargs"]) == kwargs
    model = model_class(**kwargs)
    assert list(model.state_dict()) == list(state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), ref


def manifest_entries(model: nn.Module) -> list[list[Any]]:
    """``[key, shape, dtype, 'param' | 'buffer']`` per state-dict entry, like the pack manifests."""
    param_names = {name for name, _ in model.named_parameters()}
    return [[key, list(t.shape), str(t.dtype).replace("torch.", ""), "param" if key in param_names else "buffer"]
            for key, t in model.state_dict().items()]


def check_manifest(reference_dir: Path, name: str, model_class: ModelClass) -> dict[str, Any]:
    """Assert that the full-size ``manifests/<name>.json`` model has the official state-dict layout.

    The model is built on the meta device (shapes only, no memory or init cost). Returns the
    manifest (``kwargs``, ``entries``, ``num_params``).
    """
    manifest = json.loads((reference_dir / "manifests" / f"{name}.json").read_text())
    with torch.device("meta"):
        model = model_class(**constructor_kwargs(manifest["kwargs"]))
    assert manifest_entries(model) == manifest["entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    return manifest


def check_official_init(pack_dir: Path, name: str, model_class: ModelClass) -> None:
    """Assert that building config ``name`` right after ``torch.manual_seed(0)`` gives the official init.

    Every tensor the pack did not perturb must equal the checkpoint (after casting ours to the
    stored dtype: the ArcFace weights are stored in float16); every perturbed one was constant at
    init (biases, noise strengths, modulation biases, BN and PReLU parameters), so ours must be too.
    """
    config = reference_config(pack_dir, name)
    torch.manual_seed(0)
    ours = model_class(**constructor_kwargs(config["kwargs"])).state_dict()
    official = torch.load(pack_dir / config["ckpt"], map_location="cpu", weights_only=True)[config["ckpt_key"]]
    perturbed = set(config["perturbed_tensor_names"])
    assert perturbed and perturbed < set(ours)
    for key, value in ours.items():
        if key not in perturbed:
            assert torch.equal(value.to(official[key].dtype), official[key]), (name, key)
        else:
            assert torch.all(value == value.flatten()[0]), (name, key)


def check_gfpgan_fixed_noise(model: nn.Module, ref: dict[str, Any], atol: float) -> None:
    """Assert that a GFP-GAN generator reproduces the pack's ``out_fixed_noise`` call and intermediates.

    Runs ``model(ref['input'], return_rgb=True, randomize_noise=False)`` and compares the image, the
    5 intermediate RGB images, the ``final_linear`` output (``style_code``) and the SFT conditions
    of the first two levels (``[scale_8, shift_8, scale_16, shift_16]``, caught with forward hooks).
    """
    captured: dict[str, torch.Tensor] = {}
    conditions: list[torch.Tensor] = []

    def keep_style_code(module, inputs, output):
        captured["style_code"] = output

    def keep_condition(module, inputs, output):
        conditions.append(output)

    hooks = [model.final_linear.register_forward_hook(keep_style_code)]
    for level in range(2):
        hooks.append(model.condition_scale[level].register_forward_hook(keep_condition))
        hooks.append(model.condition_shift[level].register_forward_hook(keep_condition))
    try:
        with torch.no_grad():
            image, out_rgbs = model(ref["input"], return_rgb=True, randomize_noise=False)
    finally:
        for hook in hooks:
            hook.remove()

    assert max_abs_diff(image, ref["out_fixed_noise"]["image"]) <= atol
    assert len(out_rgbs) == len(ref["out_fixed_noise"]["out_rgbs"]) == 5
    for rgb, expected in zip(out_rgbs, ref["out_fixed_noise"]["out_rgbs"]):
        assert max_abs_diff(rgb, expected) <= atol
    assert max_abs_diff(captured["style_code"], ref["style_code"]) <= atol
    assert len(conditions) == len(ref["conditions"]) == 4
    for condition, expected in zip(conditions, ref["conditions"]):
        assert max_abs_diff(condition, expected) <= atol
