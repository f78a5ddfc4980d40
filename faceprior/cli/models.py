"""``faceprior models``, ``faceprior convert`` and ``faceprior export``: weight files and models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from faceprior.cli.common import CommandError, format_size
from faceprior.errors import FacepriorError
from faceprior.inference.onnx_export import DEFAULT_OPSET, export_onnx
from faceprior.models import create_model
from faceprior.models.loading import check_state_dict, recognise, resolve_model
from faceprior.weights.catalogue import KINDS, entries, fetch_weights, get_entry, is_present, local_path
from faceprior.weights.checkpoint import read_state_dict_and_key, save_state_dict
from faceprior.weights.store import default_cache_dir

__all__ = ["add_convert_command", "add_export_command", "add_models_command"]

_KIND_TITLES = {
    "restoration": "restoration models (--model NAME)",
    "estimator": "blend-weight estimators (--weight auto)",
    "background": "photo restorers around the faces (--no-background turns it off)",
    "landmarks": "landmark refiners for degraded faces (--no-refine-landmarks turns it off)",
    "detector": "face detectors (--detector)",
    "parser": "face parsers (--parse-mask)",
    "upsampler": "background upsamplers (--bg-upsampler)",
    "metric": "metric networks (faceprior evaluate)",
    "training": "training files (faceprior train)",
}


# ----------------------------------------------------------------------------------------------
# faceprior models


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list every weight file faceprior can use, and fetch them ahead of time",
        description="List every weight file of the catalogue by kind: size, licence, whether it is on this machine "
        "and where. --fetch downloads (and checks) files ahead of time, e.g. to prepare a machine that will be "
        f"offline. Weight cache: {default_cache_dir() / 'weights'} (set FACEPRIOR_HOME to move it).",
    )
    parser.add_argument("--fetch", nargs="+", default=None, metavar="NAME",
                        help=f"fetch these files: catalogue names, or a kind ({', '.join(KINDS)}) for all of it")
    parser.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    if args.fetch:
        return _fetch(args.fetch)
    for kind in KINDS:
        rows = [("name", "arch", "size", "licence", "checked", "status")]
        for entry in entries(kind):
            present = is_present(entry)
            path = local_path(entry)
            size = path.stat().st_size if present else entry.size
            checked = "sha256" if entry.sha256 else ("size only" if entry.size else "unverified")
            rows.append((entry.name, entry.arch or "-", format_size(size), entry.license, checked,
                         f"{'present' if present else 'absent'}: {path}"))
        print(_KIND_TITLES[kind])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _fetch(names: list[str]) -> int:
    wanted = []
    for name in names:
        chosen = entries(name) if name in KINDS else [get_entry(name)]
        wanted += [entry for entry in chosen if entry not in wanted]
    failures = 0
    for entry in wanted:
        try:
            path = fetch_weights(entry)
        except FacepriorError as error:
            failures += 1
            print(f"faceprior: {entry.name}: {error}", file=sys.stderr)
            continue
        check = "SHA-256 checked" if entry.verified else "no published checksum: size checked only"
        print(f"{entry.name}: {path} ({format_size(path.stat().st_size)}, {check})")
    return 1 if failures else 0


# ----------------------------------------------------------------------------------------------
# faceprior convert

_WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def add_convert_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert weights between .pth and .safetensors (optionally GFPGANBilinear -> GFPGANv1Clean)",
        description="Copy the tensors of SRC into DST; the format follows DST's suffix (.pth/.pt/.ckpt or .safetensors). "
        "Only tensors are kept. DST is written atomically and never overwritten without --force.",
    )
    parser.add_argument("src", type=Path, help="source weight file (.pth/.pt/.ckpt/.safetensors)")
    parser.add_argument("dst", type=Path, help="destination weight file")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    parser.add_argument("--key", default=None, help="entry of SRC holding the weights (default: params_ema, then params)")
    parser.add_argument(
        "--wrap",
        default=None,
        help="entry to store the weights under in a .pth DST, or 'none' for a bare state dict (default: as in SRC)",
    )
    parser.add_argument(
        "--to-clean",
        action="store_true",
        help="also convert GFPGANBilinear weights to the GFPGANv1Clean layout (exact, as the official "
        "scripts/convert_gfpganv_to_clean.py); GFPGANv1 paper weights cannot be converted",
    )
    parser.add_argument("--arch", default=None, help="with --to-clean: the source architecture, if recognition picks the wrong one")
    parser.set_defaults(run=run_convert)


def _to_clean(state_dict: dict, arch: str | None, src: Path) -> dict:
    architecture, options = recognise(state_dict, arch)
    if architecture.name == "GFPGANv1Clean":
        raise CommandError(f"{src} already has the GFPGANv1Clean layout")
    if architecture.equivalent is None or architecture.equivalent[0] != "GFPGANv1Clean":
        hint = " (pass --arch GFPGANBilinear if it is one)" if architecture.name == "GFPGANv1" else ""
        raise CommandError(f"{src} holds {architecture.name} weights, which have no exact GFPGANv1Clean equivalent"
                           f"{hint}; only GFPGANBilinear weights convert")
    converted, clean_options = architecture.equivalent[1](state_dict, options)
    with torch.device("meta"):  # shapes only, nothing allocated
        expected = create_model("GFPGANv1Clean", **clean_options).state_dict()
    check_state_dict(expected, converted, "GFPGANv1Clean", f"the conversion of {src}")
    return converted


def run_convert(args: argparse.Namespace) -> int:
    src, dst = args.src, args.dst
    if dst.suffix not in _WEIGHT_SUFFIXES:
        raise CommandError(f"{dst}: the destination must end in {', '.join(_WEIGHT_SUFFIXES)}")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise CommandError(f"{dst} is the source file itself")
    if dst.exists() and not args.force:
        raise CommandError(f"{dst} exists; pass --force to overwrite it")
    if args.arch is not None and not args.to_clean:
        raise CommandError("--arch only applies with --to-clean")

    state_dict, key = read_state_dict_and_key(src, key=args.key)
    metadata = {}
    if args.to_clean:
        state_dict = _to_clean(state_dict, args.arch, src)
        metadata["faceprior.converted"] = "GFPGANBilinear -> GFPGANv1Clean"
        key = key or "params_ema"
    if args.wrap is not None:
        key = None if args.wrap.lower() == "none" else args.wrap
    save_state_dict(state_dict, dst, key=key, metadata=metadata)
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    layout = "flat" if dst.suffix == ".safetensors" else (f"under {key!r}" if key else "bare state dict")
    print(f"wrote {dst}: {len(state_dict)} tensors, {format_size(total)} ({layout})")
    return 0


# ----------------------------------------------------------------------------------------------
# faceprior export


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a restoration model to ONNX",
        description="Write MODEL (catalogue name or checkpoint path: GFP-GAN 1.2-1.4 or a clean/bilinear checkpoint, "
        "RestoreFormer, RestoreFormer++, CodeFormer) as an ONNX graph: input 'input' [N, 3, S, S] in [-1, 1], "
        "output 'image', dynamic batch, stored decoder noise, the fidelity fixed in the graph.",
    )
    parser.add_argument("model", help="catalogue name (see `faceprior models`) or checkpoint path")
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="output format (only onnx)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on a random batch")
    parser.add_argument("--fidelity", type=float, default=None, metavar="F",
                        help="models with a fidelity control (CodeFormer's w): the value fixed in the graph (default: the model's)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.output.exists() and not args.force:
        raise CommandError(f"{args.output} exists; pass --force to overwrite it")
    if args.fidelity is not None and not 0 <= args.fidelity <= 1:
        raise CommandError(f"--fidelity must be in [0, 1], got {args.fidelity}")
    descriptor = resolve_model(args.model).require_restoration()
    try:
        path = export_onnx(descriptor, args.output, opset=args.opset, check=args.check, fidelity=args.fidelity,
                           overwrite=args.force)
    except ImportError as error:
        raise CommandError(str(error)) from None
    except FileExistsError:
        raise CommandError(f"{args.output} appeared while exporting; pass --force to overwrite it") from None
    size = path.stat().st_size / 2**20
    print(f"wrote {path}: {descriptor.arch}, {size:.1f} MiB, opset {args.opset}"
          + (", onnxruntime check passed" if args.check else ""))
    return 0
