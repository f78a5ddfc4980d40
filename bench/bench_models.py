"""CPU milliseconds per face of every restoration architecture, reference forward against the faster paths.

Each network is built at its released size from the key names and shapes of the official release
(the manifests in ../shared/reference and ../shared/reference/zoo, read by the same recogniser that
reads a real checkpoint), with seeded random weights (constant-at-init tensors perturbed, as in
bench_forward.py): the released weights cannot be downloaded here. Speed does not depend on the
weight values; the bf16 PSNR column does a little (random weights are a harsher test than trained
ones for a codebook lookup, whose nearest code can flip).

Variants, each where the architecture allows it:
  ref            descriptor.restore(x): the reference forward, float32
  bf16-autocast  the reference forward under torch.autocast("cpu", bfloat16) (CPUs with native bf16);
                 what `--precision bf16` runs for GPEN, and shows why RestoreFormer(++) and
                 CodeFormer have no bf16 path (their nearest-code choices flip)
  fast-fp32      faceprior.inference.optimize(descriptor): FastGFPGAN for the GFP-GAN family, the
                 channels-last network for RestoreFormer(++) and CodeFormer (capabilities.fast_cpu)
  fast-bf16      optimize(descriptor, dtype=torch.bfloat16)                   (GFP-GAN family)
  ort            the ONNX export run by onnxruntime                           (capabilities.onnx)

All variants of one architecture run interleaved (ref, v1, v2, ..., ref, v1, ...) so that load
from other jobs hits them alike. Per architecture: median ms per face, ratio of medians to ``ref``
measured in the same run, and the PSNR (dB) of the restored uint8 face against ``ref``. A summary
table at the end is what docs/models.md quotes.

    .venv/bin/python bench/bench_models.py [--threads 2] [--repeats 3] [--models gfpgan,codeformer,...]
        [--variants ref,bf16-autocast,fast-fp32,fast-bf16,ort]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from faceprior.hardware import native_bf16_available
from faceprior.inference import optimize
from faceprior.inference.fast_cpu import is_gfpgan_family
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import describe_network, recognise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import load_faces, perturb_constant_tensors, psnr_uint8, time_interleaved

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
#: name -> the manifest of the official release (key names and shapes, in order)
MODELS = {
    "gfpgan-1.4": REFERENCE / "manifests" / "GFPGANv1Clean.json",
    "restoreformer": REFERENCE / "zoo" / "manifests" / "RestoreFormer.json",
    "restoreformer++": REFERENCE / "zoo" / "manifests" / "RestoreFormerPlusPlus.json",
    "codeformer": REFERENCE / "zoo" / "manifests" / "CodeFormer.json",
    "gpen-bfr-512": REFERENCE / "zoo" / "manifests" / "GPEN-BFR-512.json",
    "gpen-bfr-256": REFERENCE / "zoo" / "manifests" / "GPEN-BFR-256.json",
}
VARIANTS = ("ref", "bf16-autocast", "fast-fp32", "fast-bf16", "ort")

Forward = Callable[[torch.Tensor], torch.Tensor]


def build_released_size(manifest: Path, seed: int = 0) -> ModelDescriptor:
    """The architecture of ``manifest`` at its released size, seeded random weights."""
    entries = json.loads(manifest.read_text())["entries"]
    architecture, options = recognise({key: tuple(shape) for key, shape, *_ in entries})
    torch.manual_seed(seed)
    network = perturb_constant_tensors(architecture.network(**options).eval(), seed + 1000)
    return describe_network(network, name=manifest.stem)


def make_variants(descriptor: ModelDescriptor, names: list[str], threads: int, workdir: Path) -> dict[str, Forward]:
    """The variants of ``names`` that apply to this architecture, each x -> restored faces."""
    capabilities = descriptor.capabilities
    variants: dict[str, Forward] = {}
    for name in names:
        start = time.perf_counter()
        if name == "ref":
            variants[name] = descriptor.restore
        elif name == "bf16-autocast":
            if not native_bf16_available():
                continue

            def autocast_bf16(x: torch.Tensor) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return descriptor.restore(x).float()
            variants[name] = autocast_bf16
        elif name in ("fast-fp32", "fast-bf16"):
            if not capabilities.fast_cpu or (name == "fast-bf16" and not (native_bf16_available() and is_gfpgan_family(descriptor))):
                continue
            fast = optimize(descriptor, dtype=torch.bfloat16 if name == "fast-bf16" else torch.float32)
            variants[name] = lambda x, fast=fast: descriptor.restore(x, network=fast).float()
        elif name == "ort":
            if not capabilities.onnx:
                continue
            try:
                from faceprior.inference.onnx_export import export_onnx, onnx_session

                session = onnx_session(export_onnx(descriptor, workdir / f"{descriptor.name}.onnx"), num_threads=threads)
            except ImportError as e:
                print(f"  skipping ort: {e}")
                continue
            variants[name] = lambda x, s=session: torch.from_numpy(s.run(["image"], {"input": x.numpy()})[0])
        else:
            raise SystemExit(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        print(f"  built {name} in {time.perf_counter() - start:.1f} s", flush=True)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch (and onnxruntime) threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds at batch 1")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if "ref" not in names:
        names.insert(0, "ref")
    missing = [m for m in models if m not in MODELS or not MODELS[m].is_file()]
    if missing:
        raise SystemExit(f"unknown model or manifest missing (needs ../shared/reference): {', '.join(missing)}")
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} logical CPUs, "
          f"native bf16={native_bf16_available()}, load average {os.getloadavg()[0]:.2f}")

    summary: list[tuple[str, str, int, dict[str, tuple[float, float, float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            descriptor = build_released_size(MODELS[model])
            size = descriptor.face_size
            print(f"\n{model}: {descriptor.arch}, {size} px faces, "
                  f"{sum(p.numel() for p in descriptor.network.parameters()) / 1e6:.1f} M parameters", flush=True)
            variants = make_variants(descriptor, names, args.threads, Path(tmp))
            x = load_faces(1, size)
            outputs = {}
            with torch.no_grad():
                for name, forward in list(variants.items()):
                    try:
                        outputs[name] = forward(x)
                    except RuntimeError as error:
                        print(f"  skipping {name}: {str(error).splitlines()[0]}")
                        del variants[name]
            times = time_interleaved(variants, x, args.repeats, args.warmup)
            ref = statistics.median(times["ref"])
            rows = {}
            for name, ts in times.items():
                median = statistics.median(ts)
                rows[name] = (median * 1e3, median / ref, psnr_uint8(outputs[name], outputs["ref"]))
                print(f"  {name:14s} {median * 1e3:7.0f} ms/face (spread {min(ts) * 1e3:.0f} .. {max(ts) * 1e3:.0f})"
                      f"  ratio {median / ref:5.3f}  PSNR vs ref {rows[name][2]:5.1f} dB", flush=True)
            summary.append((model, descriptor.arch, size, rows))
            del variants, outputs

    print(f"\nms per face at batch 1 (ratio to ref in the same run; PSNR of the uint8 face against ref), "
          f"load average after {os.getloadavg()[0]:.2f}:")
    print("| model | architecture | face | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for model, arch, size, rows in summary:
        cells = []
        for name in names:
            if name not in rows:
                cells.append("-")
            elif name == "ref":
                cells.append(f"{rows[name][0]:.0f}")
            else:
                ms, ratio, psnr = rows[name]
                cells.append(f"{ms:.0f} ({ratio:.2f}x, {psnr:.0f} dB)")
        print(f"| {model} | {arch} | {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
