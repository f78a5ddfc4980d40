"""Train faceprior-256 further on a lent GPU (configs/gfpgan_clean_256_gpu.yaml) for a fixed time.

On the device machine, from the repository root, with .gpu/ (tools/pack_gpu_recipe.py) carried:

    set -o pipefail; python3 tools/gpu_default_model.py --minutes 7 2>&1 | tee $OUT/train.log

1. checks .gpu/ against its manifest (every file's SHA-256, as packed);
2. makes the warm start .gpu/start/net_g.pth from the bundled faceprior-256 (float32) unless it is
   there;
3. trains, resuming .gpu/run if it holds checkpoints (so a second call on the same warm machine goes
   on), until the first iteration that ends --minutes after training began (a checkpoint is written);
4. writes to $OUT (default .gpu/out), the device's limits in mind (8 files of 16 MiB at most):
   ``faceprior-256-gpu.safetensors`` (the newest EMA generator, float32, 13 MiB),
   ``metrics.jsonl``, the newest validation sample grid, ``environment.txt``.

Then, here: ``tools/ship_default_model.py`` on the returned file and the measurements of
docs/default_model.md ("A GPU run"). ``--set KEY=VALUE`` overrides the config (a CPU rehearsal at
tiny scale: ``--set train.device=cpu --set data.batch_size=2 ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.training.config import load_config  # noqa: E402
from faceprior.training.train_gfpgan import train  # noqa: E402
from faceprior.weights.checkpoint import read_state_dict  # noqa: E402
from faceprior.weights.safetensors import save_safetensors  # noqa: E402
from faceprior.weights.store import sha256_of_file  # noqa: E402

CONFIG = REPO / "configs" / "gfpgan_clean_256_gpu.yaml"


def check_pack(pack: Path) -> None:
    """Every file of the pack's manifest is there with its SHA-256 (a broken transfer fails here)."""
    manifest = json.loads((pack / "manifest.json").read_text())
    for name, digest in manifest["sha256"].items():
        path = pack / name
        if not path.is_file() or sha256_of_file(path) != digest:
            raise SystemExit(f"{path}: missing or not as packed; pack again with tools/pack_gpu_recipe.py")
    print(f"pack {pack}: {manifest['faces']} training faces, {manifest['val']} validation faces, all files as packed")


def environment() -> str:
    lines = [f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}"]
    if torch.cuda.is_available():
        lines.append(f"gpu {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    lines.append(f"cpus {os.cpu_count()}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="stop after this many minutes of training")
    parser.add_argument("--pack", type=Path, default=REPO / ".gpu", help="the packed folder (default .gpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT") or args.pack / "out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "environment.txt").write_text(environment())
    print(environment(), end="")
    check_pack(args.pack)

    config = load_config(CONFIG, overrides=args.set)
    start = Path(config.model.pretrained)
    if not start.is_file():
        subprocess.run([sys.executable, str(REPO / "tools" / "warm_start_files.py"), "faceprior-256", str(start.parent)],
                       check=True)
    result = train(config, minutes=args.minutes)

    run = Path(config.train.out_dir)
    newest = sorted((run / "models").glob("net_g_*.pth"))[-1]
    ema = read_state_dict(newest, "params_ema")
    save_safetensors({name: tensor.float().contiguous() for name, tensor in ema.items()},
                     out / "faceprior-256-gpu.safetensors",
                     metadata={"source": newest.name, "config": CONFIG.name, "iteration": str(result["iteration"])})
    shutil.copyfile(run / "metrics.jsonl", out / "metrics.jsonl")
    samples = sorted((run / "samples").glob("val_*.png"))
    if samples:
        shutil.copyfile(samples[-1], out / samples[-1].name)
    returned = out / "faceprior-256-gpu.safetensors"
    print(f"iteration {result['iteration']} (resumed from {result['resumed_from']}); {newest.name} -> {returned} "
          f"({returned.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
