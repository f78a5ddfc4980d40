"""Time the GFP-GAN generator forward: the reference model against faceprior.inference.optimize.

The network is the full-size GFPGANv1Clean of the released v1.3 / v1.4 models (out_size=512,
num_style_feat=512, channel_multiplier=2, different_w, sft_half, input_is_latent; ~198 GMAC per
face) with seeded random weights; the parameters that are constant at init (biases, noise
strengths, modulation biases) get ``+ 0.1 * randn`` as in the reference pack, so that every term
matters. Inputs are aligned faces from ../shared/data/realworld-aligned (random pixels without it).

Variants (``--variants``, comma-separated):
  ref            the reference: model(x, return_rgb=False, randomize_noise=False)
  fp32           optimize(model)                       (exact path)
  bf16           optimize(model, dtype=torch.bfloat16)
  fp32-compile   optimize(model, compile=True)          (minutes to compile; not in the default set)
  bf16-compile   optimize(model, dtype=torch.bfloat16, compile=True)
  ort            the ONNX export run by onnxruntime, if installed

The variants run interleaved (ref, fp32, bf16, ..., ref, fp32, ...) so that load from other jobs
on the machine hits them alike; each line reports the median, the spread (min .. max) and the
ratio of medians (and of minima) to ``ref`` measured in the same run, the median and the largest
("worst") of the per-round ratios variant / ``ref`` (paired within a round), then max |diff| and the
PSNR of the restored uint8 face against ``ref``. Then faces/s at ``--batch`` (default 4), and with
``--rss`` the peak RSS of each variant, each measured in a fresh subprocess.

With ``--model NAME|PATH`` (e.g. the bundled ``faceprior-256``) that network is timed instead,
on faces of its own input size.

    .venv/bin/python bench/bench_forward.py [--threads 2] [--repeats 7] [--batch 4] [--rss] [--variants ...]
        [--model NAME|PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

from faceprior.hardware import cpu_flags, native_bf16_available
from faceprior.inference import optimize
from faceprior.models import GFPGANv1Clean
from faceprior.models.gfpgan_clean import RELEASED_OPTIONS
from faceprior.models.loading import describe_network, load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import peak_rss_mib  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "realworld-aligned"
DEFAULT_VARIANTS = "ref,fp32,bf16,ort"

Forward = Callable[[torch.Tensor], torch.Tensor]


def build_model(spec: str | None = None, seed: int = 0) -> torch.nn.Module:
    """``spec`` loaded with faceprior.load_model, or (None) the full-size GFPGANv1Clean with seeded
    random weights, constant-at-init tensors perturbed."""
    if spec is not None:
        return load_model(spec)
    torch.manual_seed(seed)
    return perturb_constant_tensors(GFPGANv1Clean(**RELEASED_OPTIONS).eval(), seed + 1000)


def perturb_constant_tensors(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add ``0.1 * randn`` to the parameters that are constant at init (biases, noise strengths,
    modulation biases, norm weights), so that every term of the forward matters; returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() > 1 and bool((param == param.flatten()[0]).all()) or param.numel() == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def load_faces(count: int, size: int = 512) -> torch.Tensor:
    """``count`` aligned faces [count, 3, size, size] in [-1, 1] (random pixels if the data folder is absent)."""
    paths = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if DATA.is_dir() else []
    if not paths:
        return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(1234)) * 2 - 1
    from PIL import Image

    faces = []
    for i in range(count):
        with Image.open(paths[i % len(paths)]) as image:
            pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
        faces.append(torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1)
    return torch.stack(faces)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Restorer's conversion of the network output: clamp to [-1, 1], map to 0..255, round."""
    return ((image.float().clamp(-1, 1) + 1) * 127.5).round()


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (to_uint8(a) - to_uint8(b)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def make_variants(model: torch.nn.Module, names: List[str], threads: int, workdir: Path) -> Dict[str, Forward]:
    variants: Dict[str, Forward] = {}
    for name in names:
        start = time.perf_counter()
        if name == "ref":
            variants[name] = lambda x: model(x, return_rgb=False, randomize_noise=False)[0]
        elif name in ("fp32", "bf16", "fp32-compile", "bf16-compile"):
            dtype = torch.bfloat16 if name.startswith("bf16") else torch.float32
            fast = optimize(model, dtype=dtype, compile=name.endswith("compile"))
            variants[name] = (lambda f: lambda x: f(x, return_rgb=False, randomize_noise=False)[0])(fast)
        elif name == "ort":
            try:
                from faceprior.inference.onnx_export import export_onnx, onnx_session

                session = onnx_session(export_onnx(model, workdir / "gfpgan.onnx"), num_threads=threads)
            except ImportError as e:
                print(f"skipping ort: {e}")
                continue
            variants[name] = (lambda s: lambda x: torch.from_numpy(s.run(["image"], {"input": x.numpy()})[0]))(session)
        else:
            raise SystemExit(f"unknown variant {name!r}")
        print(f"  built {name} in {time.perf_counter() - start:.1f} s", flush=True)
    return variants


def time_interleaved(variants: Dict[str, Forward], x: torch.Tensor, repeats: int,
                     warmup: int) -> Dict[str, List[float]]:
    """Seconds per call of each variant, interleaved: repeats x (v1, v2, ...), after ``warmup`` rounds."""
    times: Dict[str, List[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for round_index in range(warmup + repeats):
            for name, forward in variants.items():
                start = time.perf_counter()
                forward(x)
                if round_index >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


def peak_rss_subprocess(variant: str, threads: int, batch: int, model: str | None = None) -> List[float]:
    """Peak RSS (MiB) of a fresh process that builds the model and runs ``variant`` twice at batch 1,
    then twice at ``batch``: [after batch 1, after batch ``batch``]."""
    model_args = f", '--model', {model!r}" if model else ""
    code = (f"import sys; sys.argv = ['bench', '--only-rss', {variant!r}, '--threads', '{threads}', "
            f"'--batch', '{batch}'{model_args}];"
            f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch (and onnxruntime) threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds at batch 1")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=4, help="batch for the faces/s measurement (0: skip)")
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--rss", action="store_true", help="also measure each variant's peak RSS in a subprocess")
    parser.add_argument("--model", default=None, help="registered name or checkpoint (default: random full-size GFPGANv1Clean)")
    parser.add_argument("--only-rss", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.only_rss:  # subprocess of --rss: peak RSS after batch 1, then after batch --batch
        model = build_model(args.model)
        size = describe_network(model).face_size
        peaks = []
        with tempfile.TemporaryDirectory() as tmp:
            forward = make_variants(model, [args.only_rss], args.threads, Path(tmp))[args.only_rss]
            with torch.no_grad():
                for batch in (1, max(args.batch, 1)):
                    x = load_faces(batch, size)
                    for _ in range(2):
                        forward(x)
                    peaks.append(peak_rss_mib())
        print(json.dumps({"peak_rss_mib": peaks}))
        return

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if "ref" not in names:
        names.insert(0, "ref")
    flags = cpu_flags()
    print(f"torch {torch.__version__}, {args.threads} threads, CPU {os.cpu_count()} logical; "
          f"avx512f={'avx512f' in flags} avx512_bf16={'avx512_bf16' in flags} amx_bf16={'amx_bf16' in flags} "
          f"mkldnn={torch.backends.mkldnn.is_available()} native bf16={native_bf16_available()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    model = build_model(args.model)
    size = describe_network(model).face_size
    print(f"model: {args.model or 'random full-size GFPGANv1Clean'}, {size}x{size} faces")
    with tempfile.TemporaryDirectory() as tmp:
        variants = make_variants(model, names, args.threads, Path(tmp))
        x = load_faces(1, size)
        with torch.no_grad():
            outputs = {name: forward(x) for name, forward in variants.items()}
        times = time_interleaved(variants, x, args.repeats, args.warmup)

        ref_median, ref_min = statistics.median(times["ref"]), min(times["ref"])
        print(f"\nbatch 1, {args.repeats} interleaved rounds after {args.warmup} warm-up (ms per face):")
        print(f"{'variant':14s} {'median':>8s} {'min':>8s} {'max':>8s} {'ratio':>6s} {'ratio(min)':>10s} "
              f"{'paired':>7s} {'worst':>6s} {'max|diff|':>10s} {'PSNR dB':>8s}")
        for name, ts in times.items():
            diff = (outputs[name].float() - outputs["ref"]).abs().max().item()
            # Paired: variant / reference within each round (calls seconds apart), so slow drifts of
            # the machine's speed cancel; "worst" is the largest such ratio over the rounds.
            paired = [t / r for t, r in zip(ts, times["ref"])]
            print(f"{name:14s} {statistics.median(ts) * 1e3:8.0f} {min(ts) * 1e3:8.0f} {max(ts) * 1e3:8.0f} "
                  f"{statistics.median(ts) / ref_median:6.3f} {min(ts) / ref_min:10.3f} "
                  f"{statistics.median(paired):7.3f} {max(paired):6.3f} "
                  f"{diff:10.2e} {psnr_uint8(outputs[name], outputs['ref']):8.1f}")

        if args.batch > 0:
            xb = load_faces(args.batch, size)
            btimes = time_interleaved(variants, xb, args.batch_repeats, 1)
            ref_b = statistics.median(btimes["ref"])
            print(f"\nbatch {args.batch}, {args.batch_repeats} interleaved rounds (faces/s):")
            for name, ts in btimes.items():
                med = statistics.median(ts)
                print(f"{name:14s} {args.batch / med:6.2f} faces/s  ({med * 1e3 / args.batch:.0f} ms per face, "
                      f"ratio {med / ref_b:.3f}, spread {min(ts) * 1e3 / args.batch:.0f} .. "
                      f"{max(ts) * 1e3 / args.batch:.0f} ms per face)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.rss:
        batch = max(args.batch, 1)
        print(f"\npeak RSS of a fresh process (model + variant built, 2 forwards at batch 1, then 2 at batch {batch}):")
        for name in variants:
            after_1, after_b = peak_rss_subprocess(name, args.threads, batch, args.model)
            print(f"{name:14s} batch 1: {after_1:6.0f} MiB   batch {batch}: {after_b:6.0f} MiB")


if __name__ == "__main__":
    main()
