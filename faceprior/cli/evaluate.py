"""``faceprior make-testset``, ``faceprior evaluate`` and ``faceprior ablation`` (faceprior.evaluation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceprior.evaluation.ablation import parse_variant_names
from faceprior.evaluation.ablation import run_ablation as run_study
from faceprior.evaluation.runner import evaluate
from faceprior.evaluation.scores import DEFAULT_METRICS, parse_metric_names
from faceprior.evaluation.testset import make_testset
from faceprior.training.config import load_config

__all__ = ["add_ablation_command", "add_evaluate_command", "add_make_testset_command"]


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
    testset = make_testset(args.gt_dir, args.out_dir, seed=args.seed, size=args.size)
    if testset.created:
        print(f"wrote {testset.count} LQ/GT pairs to {testset.lq_dir} and {testset.gt_dir} "
              f"(manifest {testset.lq_dir / 'degradations.json'})")
    else:
        print(f"{args.out_dir} already holds this test set ({testset.count} pairs, seed {args.seed}); nothing to do")
    return 0


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
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
    result = evaluate(args.lq, args.out, gt_dir=args.gt, models=args.model,
                      metrics=parse_metric_names(args.metrics), sample=args.sample, fid_stats=args.fid_stats,
                      device=args.device, batch_size=args.batch_size, crop_border=args.crop_border,
                      y_channel=args.y_channel, compare_rows=args.compare_rows, lpips_net=args.lpips_net)
    print(result.files["md"].read_text(encoding="utf-8"), end="")
    print(f"wrote {', '.join(str(path) for path in result.files.values())}", file=sys.stderr)
    return 0


def add_ablation_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablation",
        help="train the paper's ablation variants for a fixed budget and evaluate them",
        description="Train the full model (twice: full and full-seed1, for the spread) and each ablation variant (no-cs-sft, sft-all-channels, no-prior, "
        "no-pyramid, no-component, no-identity) from BASE.yaml for ITERS iterations each (runs in OUT/runs/), "
        "evaluate them on the LQ/GT test set (OUT/eval/) and write OUT/ablation.md, .csv and .json. "
        "Runs resume, so repeating the command only redoes what is missing.",
    )
    parser.add_argument("--config", required=True, type=Path, metavar="BASE.yaml", help="the full model's training config")
    parser.add_argument("--budget", required=True, type=int, metavar="ITERS", help="training iterations per variant")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of BASE.yaml, e.g. --set data.component_boxes=OUT/components.json")
    parser.add_argument("--prior", type=Path, default=None, metavar="PRIOR.yaml",
                        help="train this StyleGAN2 config first (OUT/runs/prior) and use it as every variant's prior")
    parser.add_argument("--prior-budget", type=int, default=None, metavar="ITERS", help="training iterations of --prior")
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
    prior = load_config(args.prior) if args.prior is not None else None
    result = run_study(load_config(args.config, overrides=args.set), args.budget, args.lq, args.gt, args.out,
                       variants=parse_variant_names(args.variants), metrics=parse_metric_names(args.metrics),
                       device=args.device, batch_size=args.batch_size, sample=args.sample, weights=args.weights,
                       prior=prior, prior_budget=args.prior_budget)
    print(result.files["md"].read_text(encoding="utf-8"), end="")
    return 0
