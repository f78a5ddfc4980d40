"""The ``faceprior`` command line.

Each subcommand is two functions: ``add_<name>_command(subparsers)`` declares its arguments and
``run_<name>(args) -> int`` does the work. To add one, write both and list the ``add_`` function
in ``COMMANDS``.

Exit status: 0 on success, 1 on failure (one line ``faceprior: error: ...`` on stderr, no
traceback), 2 for a malformed command line (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from faceprior import __version__
from faceprior.batch import find_inputs, format_summary, restore_files
from faceprior.image_io import DEFAULT_MAX_PIXELS
from faceprior.models import create_model
from faceprior.restorer import FaceRestorer, NoModelError
from faceprior.weights.checkpoint import CheckpointError, read_state_dict_and_key, save_state_dict
from faceprior.weights.loading import (
    ArchitectureError,
    bilinear_to_clean_state_dict,
    check_state_dict,
    infer_architecture,
)
from faceprior.weights.registry import MODELS, cached_models, registered_path
from faceprior.weights.store import WeightsUnavailableError, default_cache_dir


class CommandError(Exception):
    """A user error found by a subcommand; printed as ``faceprior: error: <message>``."""


# Errors that are the user's input or environment, reported in one line without a traceback.
USER_ERRORS = (CommandError, CheckpointError, ArchitectureError, WeightsUnavailableError, KeyError, OSError)


def _format_size(num_bytes: int | None) -> str:
    return "unknown" if num_bytes is None else f"{num_bytes / 2**20:.1f} MiB"


# ----------------------------------------------------------------------------------------------
# faceprior models


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the registered models and whether they are in the weight cache",
        description=f"List the registered models. Weight cache: {default_cache_dir() / 'weights'} (set FACEPRIOR_HOME to move it).",
    )
    parser.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    present = cached_models()
    rows = [("name", "arch", "size", "licence", "cache")]
    for name, entry in MODELS.items():
        path = registered_path(entry)
        size = path.stat().st_size if name in present else entry.size
        status = f"present: {path}" if name in present else f"absent: {path}"
        rows.append((name, entry.arch, _format_size(size), entry.license, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


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
    parser.add_argument("--arch", default=None, help="with --to-clean: the source architecture, if inference picks the wrong one")
    parser.set_defaults(run=run_convert)


def _to_clean(state_dict: dict, arch: str | None, src: Path) -> dict:
    arch_name, kwargs = infer_architecture(state_dict, arch)
    if arch_name == "GFPGANv1Clean":
        raise CommandError(f"{src} already has the GFPGANv1Clean layout")
    if arch_name == "GFPGANv1":
        raise CommandError(
            f"{src} holds GFPGANv1 (paper model) weights, which up-sample with an FIR filter and have no exact "
            "GFPGANv1Clean equivalent; only GFPGANBilinear weights convert (pass --arch GFPGANBilinear if it is one)"
        )
    if arch_name != "GFPGANBilinear":
        raise CommandError(f"{src} holds {arch_name} weights; --to-clean converts GFPGANBilinear weights only")
    converted = bilinear_to_clean_state_dict(state_dict, lr_mlp=kwargs["lr_mlp"])
    clean_kwargs = {k: v for k, v in kwargs.items() if k != "lr_mlp"}
    with torch.device("meta"):  # shapes only, nothing allocated
        expected = create_model("GFPGANv1Clean", **clean_kwargs).state_dict()
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
    print(f"wrote {dst}: {len(state_dict)} tensors, {_format_size(total)} ({layout})")
    return 0


# ----------------------------------------------------------------------------------------------
# faceprior restore


def add_restore_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore the faces in photos (files, folders, globs)",
        description="Detect, align, restore and paste back every face of each input photo. "
        "Inputs are never modified; outputs are written atomically into OUTDIR.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--model", default=None, help="registered name (see `faceprior models`) or checkpoint path; "
                        "default: the best registered model in the weight cache")
    parser.add_argument("--detector", default="mtcnn", choices=("mtcnn", "retinaface", "retinaface-mobilenet"))
    parser.add_argument("--aligned", action="store_true", help="inputs are already aligned faces: no detection")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--min-face", type=float, default=0.0, metavar="PX", help="ignore faces smaller than PX pixels")
    parser.add_argument("--max-faces", type=int, default=None, metavar="N", help="restore at most the N largest faces")
    parser.add_argument("--upscale", type=float, default=1.0, metavar="F", help="enlarge the whole image by F >= 1")
    parser.add_argument("--weight", type=float, default=1.0, metavar="W",
                        help="blend: 1 = restored face, 0 = input face (default 1)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="use random decoder noise from seed S (default: the stored noise, deterministic)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="faces per network forward")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--ext", default=None, help="output format (jpg, png, webp, bmp, tif); default: the input's")
    parser.add_argument("--save-faces", action="store_true", help="also write the aligned and restored face crops")
    parser.add_argument("--save-compare", action="store_true", help="also write input|restored face comparisons")
    parser.add_argument("--report", action="store_true", help="also write a JSON report per image")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a batch)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="refuse images larger than N pixels (default %(default)s)")
    parser.set_defaults(run=run_restore)


def run_restore(args: argparse.Namespace) -> int:
    inputs, problems = find_inputs(args.inputs)
    for name, reason in problems:
        print(f"faceprior: {name}: {reason}", file=sys.stderr)
    if not inputs:
        raise CommandError("no input images found")
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        restorer = FaceRestorer(
            model=args.model, detector=args.detector, upscale=args.upscale, weight=args.weight,
            aligned=args.aligned, only_center_face=args.only_center_face, min_face=args.min_face,
            max_faces=args.max_faces, batch_size=args.batch_size, seed=args.seed, device=args.device)
    except (NoModelError, ValueError) as e:
        raise CommandError(str(e)) from None
    print(f"faceprior: model {restorer.choice.name} ({restorer.choice.reason})", file=sys.stderr)
    summary = restore_files(
        restorer, inputs, args.output, ext=args.ext, skip_existing=args.skip_existing, overwrite=args.overwrite,
        save_faces=args.save_faces, save_compare=args.save_compare, save_report=args.report,
        max_pixels=args.max_pixels)
    print(format_summary(summary, problems), file=sys.stderr)
    return 1 if (summary.failures or problems) else 0


# ----------------------------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_models_command,
    add_convert_command,
    add_restore_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceprior", description="Blind face restoration with GFP-GAN.")
    parser.add_argument("--version", action="version", version=f"faceprior {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``faceprior`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
            message = f"{e.filename}: {message}"
        print(f"faceprior: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
