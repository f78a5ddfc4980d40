"""How fast a fresh facial-component discriminator learns an easy task, outside the training loop.

    python tools/component_d_check.py ../shared/data/faces-train-256 [--steps 200] [--lr 2e-3]

Takes a fixed left-eye window (rows 60-100, columns 70-110: the left eye of a 256 px CelebA-HQ
tight crop) of the first ``--faces`` training faces as the real crops and the same crops 3x3
box-blurred as the fake ones, and trains one fresh ``FacialComponentDiscriminator`` with
``component_discriminator_losses`` (Adam, betas (0.9, 0.99) as ``optim.betas_component``, batch
``--batch`` drawn at random) for ``--steps`` steps, printing the loss every ``--print-every``
steps; 2 ln 2 = 1.386 is chance. At the end it prints the mean logit on real and fake crops.
(The question behind it: in the component fine-tune of faceprior-256 the component
discriminators stayed at chance for 1,200 iterations; docs/default_model.md.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.imaging.pixels import to_float01  # noqa: E402
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator  # noqa: E402
from faceprior.training.losses import COMPONENTS, component_discriminator_losses  # noqa: E402

EYE_WINDOW = (slice(60, 100), slice(70, 110))  # rows, columns of the left eye at 256 px


def eye_crops(folder: Path, count: int) -> torch.Tensor:
    """The left-eye windows of the first ``count`` 256 px faces of ``folder``: [N, 3, 40, 40] in [-1, 1]."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: not a folder")
    files = list_image_files(folder, recursive=False)[:count]
    if not files:
        raise SystemExit(f"{folder}: no images")
    crops = []
    for path in files:
        pixels = to_float01(read_image(path).pixels)
        if pixels.shape[:2] != (256, 256):
            raise SystemExit(f"{path}: {pixels.shape[1]}x{pixels.shape[0]}, expected 256x256 faces")
        crops.append(torch.from_numpy(np.ascontiguousarray(pixels[EYE_WINDOW])).permute(2, 0, 1))
    return torch.stack(crops) * 2 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("faces", type=Path, help="folder of 256x256 CelebA-HQ tight crops")
    parser.add_argument("--faces-count", dest="count", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--print-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    real = eye_crops(args.faces, args.count)
    fake = F.avg_pool2d(real, 3, stride=1, padding=1)
    discriminator = FacialComponentDiscriminator()
    # component_discriminator_losses runs all three components; give each the same network so
    # that the loss of one ("left_eye") is the question asked.
    discriminators = {name: discriminator for name in COMPONENTS}
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.9, 0.99))
    for step in range(1, args.steps + 1):
        index = torch.randint(0, len(real), (args.batch,))
        crops_fake = {name: fake[index] for name in COMPONENTS}
        crops_real = {name: real[index] for name in COMPONENTS}
        loss = component_discriminator_losses(discriminators, crops_fake, crops_real)["left_eye"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.print_every == 0:
            print(f"step {step}: loss {loss.item():.4f} (chance 1.3863)")
    with torch.no_grad():
        real_logit = discriminator(real[:16])[0].mean().item()
        fake_logit = discriminator(fake[:16])[0].mean().item()
    print(f"mean logit: real {real_logit:+.4f}, fake {fake_logit:+.4f}")


if __name__ == "__main__":
    main()
