"""How much fine grain (pixel-level high frequencies) restored faces carry, against the ground truth.

    python tools/grain_check.py --lq /work/runs/testset256/lq --gt /work/runs/testset256/gt \
        CKPT [CKPT ...] [--every 20]

For every ``--every``-th face of the test set (sorted), runs each checkpoint (EMA weights, stored
noise) and prints the mean squared Laplacian ("energy" of the finest frequencies, on [-1, 1]
images) of the restored faces, of the ground truth, and of the error (restored - GT), plus SSIM.
A model that adds grain of its own shows Laplacian energy near the ground truth's while its
error energy grows: the grain is not the face's detail. (Used to find the grain an identity loss
on sharp chips taught the generator; docs/default_model.md.)

For a generator with an input gate (``GFPGANv1Clean(input_gate=True)``) it also prints the mean
gate (share of the input kept) over the faces, from the mildest to the worst fifth by input PSNR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.imaging.pixels import to_float01  # noqa: E402
from faceprior.metrics.psnr_ssim import ssim_torch  # noqa: E402
from faceprior.models.loading import load_model  # noqa: E402

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_energy(images: torch.Tensor) -> float:
    """Mean squared 4-neighbour Laplacian of [N, 3, H, W] images (valid pixels only)."""
    kernel = LAPLACIAN.to(images).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(images, kernel, groups=3).pow(2).mean())


def read_faces(paths: list[Path]) -> torch.Tensor:
    """[N, 3, S, S] in [-1, 1]."""
    return torch.stack([torch.from_numpy(to_float01(read_image(p).pixels)).permute(2, 0, 1) for p in paths]).float() * 2 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or registered model names")
    parser.add_argument("--lq", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True)
    parser.add_argument("--every", type=int, default=20, help="use every N-th face (default 20)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    names = [p.name for p in list_image_files(args.lq, recursive=False)][::args.every]
    lq = read_faces([args.lq / n for n in names])
    gt = read_faces([args.gt / n for n in names])
    print(f"{len(names)} faces; Laplacian energy: ground truth {laplacian_energy(gt):.5f}, input {laplacian_energy(lq):.5f}")
    input_psnr = -10 * torch.log10(((lq - gt) / 2).pow(2).mean(dim=(1, 2, 3)))
    for spec in args.checkpoints:
        model = load_model(spec).eval()
        gates = []
        if getattr(model, "input_gate", None) is not None:
            model.input_gate.register_forward_hook(lambda module, inputs, gate: gates.append(gate))
        with torch.inference_mode():
            out = model(lq, return_rgb=False, randomize_noise=False)[0].clamp(-1, 1)
        ssim = float(ssim_torch((out + 1) / 2, (gt + 1) / 2).mean())
        print(f"{spec}: output {laplacian_energy(out):.5f}, error {laplacian_energy(out - gt):.5f}, SSIM {ssim:.4f}")
        if gates:
            per_face = gates[0].mean(dim=(1, 2, 3))
            fifths = torch.argsort(input_psnr, descending=True).tensor_split(5)
            print(f"  input gate: mean {per_face.mean():.3f}; by input PSNR, mildest fifth first: "
                  + ", ".join(f"{per_face[i].mean():.3f} ({input_psnr[i].mean():.1f} dB)" for i in fifths))


if __name__ == "__main__":
    main()
