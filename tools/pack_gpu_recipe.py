"""Pack what configs/gfpgan_clean_256_gpu.yaml needs on a lent GPU machine into .gpu/ (ignored).

    .venv/bin/python tools/pack_gpu_recipe.py [--count N] [--budget-mib 63]

The device machine gets the repository's working tree and the folders named in ``carry``, 64 MiB
in all, and not ../shared. This writes, under .gpu/:

  faces/               N faces of ../shared/data/faces-train-256, evenly spaced over the sorted
                       list, copied byte for byte (default: as many as fit the budget)
  val/                 the first 40 faces of ../shared/data/faces-val-256 (the run's validation)
  components.json      eye and mouth boxes of faces/ (`faceprior prepare-components`)
  dlib_resnet.safetensors
                       dlib's face-recognition ResNet (from the installed face-recognition-models)
                       as a float16 state dict, for the identity loss without the dlib package
  manifest.json        what was packed, the SHA-256 of every file, and the dlib chip box

and checks that the chip box the trainer measures with dlib on faces-train-256 (as the CPU recipes
did) equals the config's ``model.dlib_chip_box`` (fails otherwise: put the printed box into the
config). It prints the size
that would travel (tracked and untracked files not ignored, plus .gpu/), which must stay under
64 MiB. Then, on the device (see docs/default_model.md, "A GPU run"):

    device run (carry [".gpu"], timeout_s 600): bash tools/gpu_default_model.sh 7
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.cli import main as cli_main  # noqa: E402
from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.metrics.identity import load_dlib_identity  # noqa: E402
from faceprior.models.dlib_resnet import read_dlib_resnet_parameters  # noqa: E402
from faceprior.training.config import load_config  # noqa: E402
from faceprior.training.train_gfpgan import measure_dlib_chip_box  # noqa: E402
from faceprior.weights.safetensors import save_safetensors  # noqa: E402
from faceprior.weights.store import sha256_of_file  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PACK = REPO / ".gpu"
CONFIG = REPO / "configs" / "gfpgan_clean_256_gpu.yaml"
VAL_COUNT = 40


def travelling_bytes() -> int:
    """Bytes of the working tree that travels: tracked files and untracked files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    return sum((REPO / name).stat().st_size for name in listed if name and (REPO / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help="training faces to pack (default: as many as fit)")
    parser.add_argument("--budget-mib", type=float, default=63.0, help="what may travel in all (default 63 MiB)")
    parser.add_argument("--out", type=Path, default=PACK, help="the pack's folder (default .gpu, what the config reads)")
    args = parser.parse_args()
    pack = args.out
    train_files = sorted(list_image_files(DATA / "faces-train-256"))
    val_files = sorted(list_image_files(DATA / "faces-val-256"))[:VAL_COUNT]
    if not train_files:
        raise SystemExit(f"needs the face photos in {DATA}")
    if pack.exists():
        shutil.rmtree(pack)
    (pack / "faces").mkdir(parents=True)
    (pack / "val").mkdir()

    # dlib's network first (its size is fixed), then the validation faces, then the training faces that fit
    dlib_identity = load_dlib_identity()
    state = read_dlib_resnet_parameters(dlib_identity.recognition_model_path)
    largest = max(float(tensor.abs().max()) for tensor in state.values())
    if largest > torch.finfo(torch.float16).max:
        raise SystemExit(f"dlib's ResNet has a weight of {largest:g}: too large for float16")
    save_safetensors({name: tensor.half() for name, tensor in state.items()}, pack / "dlib_resnet.safetensors")
    for path in val_files:
        shutil.copyfile(path, pack / "val" / path.name)
    budget = int(args.budget_mib * 2**20)
    room = budget - travelling_bytes() - folder_bytes(pack) - 2 * 2**20  # 2 MiB for components.json and slack
    mean_size = sum(path.stat().st_size for path in train_files) / len(train_files)
    count = min(len(train_files), args.count or int(room / mean_size))
    chosen = [train_files[i * len(train_files) // count] for i in range(count)]
    while chosen and sum(path.stat().st_size for path in chosen) > room:
        chosen = chosen[:-max(1, len(chosen) // 100)]
    for path in chosen:
        shutil.copyfile(path, pack / "faces" / path.name)

    if cli_main(["prepare-components", str(pack / "faces"), "-o", str(pack / "components.json"), "--size", "256"]):
        raise SystemExit("prepare-components failed")
    # as the CPU recipe measured it: on the first faces of the whole training folder
    box = measure_dlib_chip_box(DATA / "faces-train-256", 256, dlib_identity)
    configured = load_config(CONFIG).model.dlib_chip_box
    manifest = {"faces": len(chosen), "faces_from": str(DATA / "faces-train-256"), "val": len(val_files),
                "dlib_chip_box": [round(v, 3) for v in box],
                "sha256": {str(p.relative_to(pack)): sha256_of_file(p) for p in sorted(pack.rglob("*")) if p.is_file()}}
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    tree, packed = travelling_bytes(), folder_bytes(pack)
    total = tree + packed
    print(f"packed {len(chosen)} training faces, {len(val_files)} validation faces, dlib's ResNet (float16) into {pack}")
    print(f"travels: {total / 2**20:.1f} MiB (working tree {tree / 2**20:.1f} MiB + .gpu "
          f"{packed / 2**20:.1f} MiB; the device takes 64 MiB)")
    print(f"dlib chip box of faces-train-256: [{', '.join(f'{v:.3f}' for v in box)}]")
    if configured is None or max(abs(a - b) for a, b in zip(box, configured)) > 0.01:
        raise SystemExit(f"{CONFIG.name}: model.dlib_chip_box is {configured}; set it to the box above")
    if total > 64 * 2**20:
        raise SystemExit("too large for the device machine: pack fewer faces (--count)")


if __name__ == "__main__":
    main()
