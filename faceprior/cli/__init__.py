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
from faceprior.face.templates import TEMPLATES
from faceprior.image_io import DEFAULT_MAX_PIXELS
from faceprior.inference.onnx_export import add_export_command
from faceprior.models import create_model
from faceprior.restorer import PRECISIONS, FaceRestorer, NoModelError
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
    parser.add_argument("--template", default=None, choices=tuple(TEMPLATES),
                        help="face framing the model was trained on (default: a registered model's own; "
                        "ffhq for a checkpoint file; celeba-hq for models trained on faces-train-256)")
    parser.add_argument("--detector", default="mtcnn", choices=("mtcnn", "retinaface", "retinaface-mobilenet"))
    parser.add_argument("--aligned", action="store_true", help="inputs are already aligned faces: no detection")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--min-face", type=float, default=0.0, metavar="PX", help="ignore faces smaller than PX pixels")
    parser.add_argument("--max-faces", type=int, default=None, metavar="N", help="restore at most the N largest faces")
    parser.add_argument("--upscale", type=float, default=1.0, metavar="F", help="enlarge the whole image by F >= 1")
    parser.add_argument("--bg-upsampler", default="lanczos", choices=("lanczos", "realesrgan"),
                        help="background upsampler for --upscale > 1; realesrgan: Real-ESRGAN x2 (RealESRGAN_x2plus.pth)")
    parser.add_argument("--bg-tile", type=int, default=400, metavar="PX",
                        help="tile size of the realesrgan upsampler, 0 = whole image (default 400)")
    parser.add_argument("--parse-mask", action="store_true",
                        help="paste faces with a face-parsing mask (facexlib ParseNet, parsing_parsenet.pth) "
                        "instead of the soft rectangle")
    parser.add_argument("--weight", type=float, default=1.0, metavar="W",
                        help="blend: 1 = restored face, 0 = input face (default 1)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="use random decoder noise from seed S (default: the stored noise, deterministic)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="faces per network forward (faces of several photos share a forward)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32: fast path, same results to ~1e-5 (default); reference: the unmodified forward; "
                        "bf16: bfloat16 (~4x faster on CPUs with AVX512-BF16/AMX, ~50 dB PSNR vs fp32); "
                        "auto: bf16 where native, else fp32")
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
            max_faces=args.max_faces, batch_size=args.batch_size, seed=args.seed, device=args.device,
            upsampler=args.bg_upsampler, bg_tile=args.bg_tile, face_masker="parsenet" if args.parse_mask else None,
            precision=args.precision, template=args.template)
    except (NoModelError, ValueError) as e:
        raise CommandError(str(e)) from None
    print(f"faceprior: model {restorer.choice.name} ({restorer.choice.reason}); {restorer.precision_note}",
          file=sys.stderr)
    summary = restore_files(
        restorer, inputs, args.output, ext=args.ext, skip_existing=args.skip_existing, overwrite=args.overwrite,
        save_faces=args.save_faces, save_compare=args.save_compare, save_report=args.report,
        max_pixels=args.max_pixels)
    print(format_summary(summary, problems), file=sys.stderr)
    return 1 if (summary.failures or problems) else 0


# ----------------------------------------------------------------------------------------------
# faceprior make-testset / evaluate / ablation (faceprior.evaluation)


def add_make_testset_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-testset",
        help="degrade a folder of GT faces with a fixed seed (CelebA-Test protocol)",
        description="Write OUT_DIR/gt (the GT resized to SIZE), OUT_DIR/lq (their degraded copies, made with the "
        "training degradations and a fixed seed) and OUT_DIR/lq/degradations.json (every file's parameters). "
        "Running it again with the same arguments does nothing; nothing is ever overwritten.",
    )
    parser.add_argument("gt_dir", type=Path, metavar="GT_DIR", help="folder of aligned square high-quality faces")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=512, help="resize the GT to SIZE x SIZE first (default 512)")
    parser.set_defaults(run=run_make_testset)


def run_make_testset(args: argparse.Namespace) -> int:
    from faceprior.evaluation.testset import SyntheticTestSetError, make_testset

    try:
        testset = make_testset(args.gt_dir, args.out_dir, seed=args.seed, size=args.size)
    except SyntheticTestSetError as e:
        raise CommandError(str(e)) from None
    if testset.created:
        print(f"wrote {testset.count} LQ/GT pairs to {testset.lq_dir} and {testset.gt_dir} "
              f"(manifest {testset.lq_dir / 'degradations.json'})")
    else:
        print(f"{args.out_dir} already holds this test set ({testset.count} pairs, seed {args.seed}); nothing to do")
    return 0


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    from faceprior.evaluation.runner import DEFAULT_METRICS

    parser = subparsers.add_parser(
        "evaluate",
        help="restore a folder of aligned LQ faces with models and compare them with metrics",
        description="Evaluate the baselines (input, lanczos) and every --model on the LQ faces: writes "
        "OUT/results.md, results.csv, results.json, compare.png and compare.html. Restorations and metric values "
        "are cached under OUT and reused by later runs. Metrics whose weights are absent are reported unavailable.",
    )
    parser.add_argument("--lq", required=True, type=Path, metavar="DIR", help="aligned low-quality faces")
    parser.add_argument("--gt", type=Path, default=None, metavar="DIR",
                        help="ground-truth faces with the same file names (needed by psnr, ssim, lpips, fid, deg, dlib-id, lmd)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                        help="registered model name or checkpoint path; repeat for several (default: baselines only)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results/evaluation"), metavar="OUT",
                        help="output and cache folder (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="evaluate only N images, evenly spaced over the sorted file list")
    parser.add_argument("--fid-stats", type=Path, default=None, metavar="NPZ",
                        help="reference FID statistics (mu, sigma); default: computed from --gt")
    parser.add_argument("--lpips-net", default="vgg", choices=("vgg", "alex"), help="LPIPS backbone (default vgg)")
    parser.add_argument("--crop-border", type=int, default=0, metavar="PX", help="PSNR/SSIM/NIQE border crop (default 0)")
    parser.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on the BT.601 luma instead of RGB")
    parser.add_argument("--compare-rows", type=int, default=8, metavar="N", help="faces in compare.png/html (default 8)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="faces per network forward (faces of several photos share a forward)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from faceprior.evaluation.runner import EvaluationError, evaluate, parse_metric_names

    try:
        result = evaluate(args.lq, args.out, gt_dir=args.gt, models=args.model,
                          metrics=parse_metric_names(args.metrics), sample=args.sample, fid_stats=args.fid_stats,
                          device=args.device, batch_size=args.batch_size, crop_border=args.crop_border,
                          y_channel=args.y_channel, compare_rows=args.compare_rows, lpips_net=args.lpips_net)
    except EvaluationError as e:
        raise CommandError(str(e)) from None
    print(result.files["md"].read_text(encoding="utf-8"), end="")
    print(f"wrote {', '.join(str(path) for path in result.files.values())}", file=sys.stderr)
    return 0


def add_ablation_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablation",
        help="train the paper's ablation variants for a fixed budget and evaluate them",
        description="Train the full model and each ablation variant (no-cs-sft, sft-all-channels, no-prior, "
        "no-pyramid, no-component, no-identity) from BASE.yaml for ITERS iterations each (runs in OUT/runs/), "
        "evaluate them on the LQ/GT test set (OUT/eval/) and write OUT/ablation.md, .csv and .json. "
        "Runs resume, so repeating the command only redoes what is missing.",
    )
    parser.add_argument("--config", required=True, type=Path, metavar="BASE.yaml", help="the full model's training config")
    parser.add_argument("--budget", required=True, type=int, metavar="ITERS", help="training iterations per variant")
    parser.add_argument("--lq", required=True, type=Path, metavar="DIR", help="aligned low-quality test faces")
    parser.add_argument("--gt", type=Path, default=None, metavar="DIR", help="their ground truth (same file names)")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT", help="output folder")
    parser.add_argument("--variants", default=None, metavar="A,B",
                        help="comma-separated subset of the variants (default: all)")
    parser.add_argument("--metrics", default="psnr,ssim,lpips,fid,niqe,deg,lmd",
                        help="comma-separated metrics (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=None, metavar="N", help="evaluate on N evenly spaced test faces")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="faces per forward in the evaluation")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"),
                        help="evaluate the EMA generator (default, official) or the raw one (better for short budgets)")
    parser.add_argument("--device", default="cpu", help="torch device of the evaluation (training: train.device)")
    parser.set_defaults(run=run_ablation)


def run_ablation(args: argparse.Namespace) -> int:
    from faceprior.evaluation.ablation import AblationError, parse_variant_names, run_ablation as run_study
    from faceprior.evaluation.runner import EvaluationError, parse_metric_names
    from faceprior.training.config import load_config

    try:
        result = run_study(load_config(args.config), args.budget, args.lq, args.gt, args.out,
                           variants=parse_variant_names(args.variants), metrics=parse_metric_names(args.metrics),
                           device=args.device, batch_size=args.batch_size, sample=args.sample, weights=args.weights)
    except (AblationError, EvaluationError) + _training_errors() as e:
        raise CommandError(str(e)) from None
    print(result.files["md"].read_text(encoding="utf-8"), end="")
    return 0


# ----------------------------------------------------------------------------------------------
# faceprior train / sample / degrade / prepare-components
# (the training modules are imported inside run_*: they need PyYAML, restoring does not)


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train GFP-GAN or the StyleGAN2 prior from a YAML config (resumes automatically)",
        description="Train with a YAML config (see configs/ and docs/training.md). The run continues from the newest "
        "checkpoint in train.out_dir. Distributed: torchrun --nproc_per_node N -m faceprior train CONFIG.",
    )
    parser.add_argument("config", type=Path, help="YAML training config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.out_dir=/tmp/run --set data.batch_size=2 (repeatable)")
    parser.add_argument("--no-resume", action="store_true", help="refuse an out_dir that already holds checkpoints")
    parser.add_argument("--stop-at", type=int, default=None, metavar="ITER",
                        help="stop after iteration ITER (a checkpoint is written; the schedule keeps train.total_iter)")
    parser.set_defaults(run=run_train)


def _training_errors() -> tuple:
    """The one-line user-error exceptions of the training modules (reported without a traceback)."""
    from faceprior.training.config import ConfigError
    from faceprior.training.dataset import DatasetError
    from faceprior.training.degradations import DegradationConfigError, DegradationError
    from faceprior.training.loop import ResumeError, TrainingDivergedError

    return ConfigError, DatasetError, DegradationConfigError, DegradationError, ResumeError, TrainingDivergedError


def run_train(args: argparse.Namespace) -> int:
    try:
        from faceprior.training import train_gfpgan, train_stylegan2
        from faceprior.training.config import load_config

        config = load_config(args.config, overrides=args.set)
        train = train_gfpgan.train if config.task == "gfpgan" else train_stylegan2.train
        result = train(config, resume=not args.no_resume, stop_at=args.stop_at)
    except _training_errors() as e:
        raise CommandError(str(e)) from None
    print(f"faceprior: trained to iteration {result['iteration']} in {result['out_dir']}", file=sys.stderr)
    return 0


def add_sample_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="write a grid of faces generated by a StyleGAN2 generator checkpoint",
        description="Generate faces from a StyleGAN2 generator: an exported models/net_g_*.pth (its params_ema), an "
        "official StyleGAN2 checkpoint, or a training state (its EMA generator). Same seed, same grid.",
    )
    parser.add_argument("checkpoint", type=Path, help="generator weights (.pth / .safetensors) or training state")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output image (.png, .jpg, ...)")
    parser.add_argument("--n", type=int, default=16, help="number of faces (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--truncation", type=float, default=1.0, help="truncation psi in (0, 1]; 1 = none (default)")
    parser.add_argument("--columns", type=int, default=None, help="faces per row (default ceil(sqrt(n)))")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    from faceprior.image_io import write_image
    from faceprior.training.train_stylegan2 import generate_grid, load_generator_for_sampling

    if args.n < 1:
        raise CommandError(f"--n must be >= 1, got {args.n}")
    if not 0 < args.truncation <= 1:
        raise CommandError(f"--truncation must be in (0, 1], got {args.truncation}")
    if args.output.exists() and not args.force:
        raise CommandError(f"{args.output} exists; pass --force to overwrite it")
    generator = load_generator_for_sampling(args.checkpoint)
    grid = generate_grid(generator, n=args.n, seed=args.seed, truncation=args.truncation, columns=args.columns,
                         device=args.device)
    write_image(args.output, grid, overwrite=True)
    print(f"wrote {args.output}: {args.n} faces, {grid.shape[1]}x{grid.shape[0]} px")
    return 0


def add_degrade_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "degrade",
        help="degrade faces with the GFP-GAN training degradations (a folder, or a grid for one image)",
        description="INPUT a folder: write a degraded copy of every image into OUTPUT (a folder) with a JSON manifest "
        "of the parameters (reproducible from --seed). INPUT an image: write a grid of --n degradations to OUTPUT.",
    )
    parser.add_argument("input", type=Path, help="folder of aligned faces, or one image")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (or grid image)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--size", type=int, default=None, help="resize the (square) faces to SIZE first")
    parser.add_argument("--gt-dir", type=Path, default=None, help="folder mode: also write the (resized) ground truth here")
    parser.add_argument("--n", type=int, default=16, help="grid mode: number of degradations (default 16)")
    parser.add_argument("--config", type=Path, default=None,
                        help="take the degradation settings from this training config's data.degradation")
    parser.set_defaults(run=run_degrade)


def run_degrade(args: argparse.Namespace) -> int:
    from faceprior.training.degradations import DegradationConfig, degrade_folder, save_degradation_grid

    try:
        degradation = DegradationConfig()
        if args.config is not None:
            from faceprior.training.config import load_config

            degradation = load_config(args.config).data.degradation_config()
        if args.input.is_dir():
            manifest = degrade_folder(args.input, args.output, seed=args.seed, config=degradation, size=args.size,
                                      gt_dir=args.gt_dir)
            print(f"wrote {len(manifest['files'])} degraded faces to {args.output}")
        else:
            if args.gt_dir is not None:
                raise CommandError("--gt-dir applies to folder inputs only")
            path = save_degradation_grid(args.input, args.output, n=args.n, seed=args.seed, config=degradation,
                                         size=args.size)
            print(f"wrote {path}: {args.n} degradations of {args.input}")
    except _training_errors() as e:
        raise CommandError(str(e)) from None
    return 0


def add_prepare_components_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-components",
        help="detect eyes and mouth in aligned training faces (boxes for the facial-component losses)",
        description="Run MTCNN on every image under FOLDER and write the eye/mouth boxes (from its 5 landmarks) as "
        "a JSON file for data.component_boxes. Faces without a detection are listed as missing.",
    )
    parser.add_argument("folder", type=Path, help="folder of aligned faces")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output JSON file")
    parser.add_argument("--size", type=int, default=None, help="the training size data.size (faces resized to it)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(run=run_prepare_components)


def run_prepare_components(args: argparse.Namespace) -> int:
    from faceprior.face.mtcnn import MTCNN
    from faceprior.training.dataset import compute_component_boxes

    detector = MTCNN(device=args.device)

    def landmarks_of_best_face(image):
        faces = detector.detect(image)  # by decreasing score
        return faces[0].landmarks if faces else None

    try:
        boxes = compute_component_boxes(args.folder, landmarks_of_best_face, args.output, size=args.size,
                                        overwrite=args.overwrite)
    except _training_errors() as e:
        raise CommandError(str(e)) from None
    print(f"wrote {args.output}: boxes for {len(boxes.boxes)} faces, {len(boxes.missing)} without a detected face")
    return 0


# ----------------------------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_models_command,
    add_convert_command,
    add_restore_command,
    add_make_testset_command,
    add_evaluate_command,
    add_ablation_command,
    add_train_command,
    add_sample_command,
    add_degrade_command,
    add_prepare_components_command,
    add_export_command,
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
