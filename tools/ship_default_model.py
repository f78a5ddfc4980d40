"""Turn a training checkpoint into the bundled default model file (fp16 safetensors).

    python tools/ship_default_model.py /work/runs/gfpgan_256_cpu/models/net_g_00004000.pth \
        --config configs/gfpgan_clean_256_cpu.yaml --check-dir /work/runs/testset256/lq [--force]

Loads the checkpoint's EMA weights (``params_ema``) into the network they are recognised as (it must be
the catalogue entry "faceprior-256"'s architecture), stores every floating-point tensor as
float16 in ``faceprior/data/faceprior-256.safetensors`` (atomic write; an existing file is kept
unless ``--force``), and measures what float16 storage costs: the PSNR between the outputs of the
float32 weights and the float16-stored weights (both run in float32) on the faces of
``--check-dir``. Prints the SHA-256 and size to put into faceprior/weights/catalogue.py.
``--zero-noise`` sets the decoder's noise strengths to zero first (``without_decoder_noise``:
deterministic output without the stored noise pattern) and prints how much that changes the
outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.imaging.pixels import to_float01  # noqa: E402
from faceprior.metrics.psnr_ssim import psnr_torch  # noqa: E402
from faceprior.models import create_model  # noqa: E402
from faceprior.models.gfpgan_clean import without_decoder_noise  # noqa: E402
from faceprior.models.loading import infer_architecture, load_state_dict_strict  # noqa: E402
from faceprior.weights.catalogue import CATALOGUE, local_path  # noqa: E402
from faceprior.weights.checkpoint import read_state_dict  # noqa: E402
from faceprior.weights.safetensors import load_safetensors, save_safetensors  # noqa: E402
from faceprior.weights.store import sha256_of_file  # noqa: E402

NAME = "faceprior-256"


def build(state_dict: dict) -> torch.nn.Module:
    arch, options = infer_architecture(state_dict)
    if arch != CATALOGUE[NAME].arch:
        raise SystemExit(f"the checkpoint holds a {arch}, not the {CATALOGUE[NAME].arch} of {NAME}")
    model = create_model(arch, **options)
    load_state_dict_strict(model, state_dict, source=NAME)
    return model.eval()


def faces_of(folder: Path, size: int, limit: int) -> torch.Tensor:
    """Up to ``limit`` images of ``folder`` (sorted) as [N, 3, size, size] in [-1, 1]."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    images = []
    for path in files:
        pixels = to_float01(read_image(path).pixels)
        if pixels.shape[:2] != (size, size):
            raise SystemExit(f"{path}: {pixels.shape[1]}x{pixels.shape[0]}, expected {size}x{size} faces")
        images.append(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1))
    if not images:
        raise SystemExit(f"{folder}: no .png/.jpg faces")
    return torch.stack(images) * 2 - 1


def pooled_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] batches over all their pixels together (one MSE), on [0, 1] values."""
    def as_one_image(x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [1, 3, N * H, W]
        return ((x.clamp(-1, 1) + 1) / 2).transpose(0, 1).reshape(1, 3, -1, x.shape[-1])

    return float(psnr_torch(as_one_image(a), as_one_image(b))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (models/net_g_XXXXXXXX.pth)")
    parser.add_argument("--check-dir", type=Path, required=True, help="folder of degraded 256x256 faces to compare outputs on")
    parser.add_argument("--limit", type=int, default=32, help="faces of --check-dir to use (default 32)")
    parser.add_argument("--config", required=True, help="the training config of the checkpoint (stored in the file's metadata)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundled file")
    parser.add_argument("--zero-noise", action="store_true", help="set the decoder noise strengths to zero")
    args = parser.parse_args()
    torch.set_num_threads(1)

    state_dict = read_state_dict(args.checkpoint, key="params_ema")
    out_path = local_path(CATALOGUE[NAME])
    if out_path.exists() and not args.force:
        raise SystemExit(f"{out_path}: exists; pass --force to replace it")

    faces = faces_of(args.check_dir, infer_architecture(state_dict)[1]["out_size"], args.limit)
    if args.zero_noise:
        with torch.inference_mode():
            noisy = build(state_dict)(faces, return_rgb=False, randomize_noise=False)[0]
            state_dict = without_decoder_noise(state_dict)
            quiet = build(state_dict)(faces, return_rgb=False, randomize_noise=False)[0]
        print(f"decoder noise off: output PSNR {pooled_psnr(noisy, quiet):.1f} dB against the stored noise")
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state_dict.items()}
    with torch.inference_mode():
        full = build(state_dict)(faces, return_rgb=False, randomize_noise=False)[0]
        stored = build(half)(faces, return_rgb=False, randomize_noise=False)[0]
    print(f"float16 storage: output PSNR {pooled_psnr(full, stored):.1f} dB against float32 weights, "
          f"max abs diff {float((full - stored).abs().max()):.2e} (on [-1, 1]), {len(faces)} faces")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(half, out_path, metadata={"name": NAME, "source": args.checkpoint.name, "weights": "params_ema",
                                               "config": args.config,
                                               "decoder_noise": "off" if args.zero_noise else "stored"})
    assert all(torch.equal(load_safetensors(out_path)[k], half[k]) for k in half)
    print(f"wrote {out_path}: {out_path.stat().st_size} bytes, sha256 {sha256_of_file(out_path)}")


if __name__ == "__main__":
    main()
