"""Print how closely faceprior reproduces the official implementation's reference outputs.

    python tools/compat_report.py [--reference ../shared/reference]

For every checkpoint of the reference pack (official gfpgan 1.3.8 / basicsr 1.4.2 outputs with
random weights), the model is loaded with ``faceprior.load_model`` (architecture inferred from
the weights), run on the stored inputs, and the max abs difference of each stored output is
printed, next to the 1e-4 acceptance bound. The tests assert the same bounds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior import load_model  # noqa: E402

BOUND = 1e-4


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def gfpgan_rows(model, ref) -> list[tuple[str, float]]:
    with torch.no_grad():
        image, rgbs = model(ref["input"], return_rgb=True, randomize_noise=False)
        rows = [("image (stored noise)", max_abs(image, ref["out_fixed_noise"]["image"]))]
        rows += [(f"out_rgbs[{i}]", max_abs(a, b)) for i, (a, b) in enumerate(zip(rgbs, ref["out_fixed_noise"]["out_rgbs"]))]
        if "out_random_noise" in ref:
            torch.manual_seed(4321)
            image = model(ref["input"], return_rgb=False, randomize_noise=True)[0]
            rows.append(("image (random noise, seed 4321)", max_abs(image, ref["out_random_noise"]["image"])))
    return rows


def stylegan_rows(model, ref) -> list[tuple[str, float]]:
    with torch.no_grad():
        rows = [("w = get_latent(z)", max_abs(model.get_latent(ref["z"]), ref["w"]))]
        torch.manual_seed(777)
        rows.append(("mean_latent(4096)", max_abs(model.mean_latent(4096), ref["mean_latent"])))
        image, latent = model([ref["z"]], randomize_noise=False, return_latents=True)
        rows.append(("image (stored noise)", max_abs(image, ref["out_fixed_noise"]["image"])))
        image, _ = model([ref["z"]], randomize_noise=False, truncation=0.7, truncation_latent=ref["mean_latent"], return_latents=True)
        rows.append(("image (truncation 0.7)", max_abs(image, ref["out_truncation"]["image"])))
        image, _ = model([ref["z"], ref["z2"]], randomize_noise=False, inject_index=4, return_latents=True)
        rows.append(("image (style mixing)", max_abs(image, ref["out_mixing"]["image"])))
        torch.manual_seed(4321)
        rows.append(("image (random noise, seed 4321)", max_abs(model([ref["z"]])[0], ref["out_random_noise"]["image"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    args = parser.parse_args()
    ref_dir = args.reference
    if not (ref_dir / "index.json").is_file():
        sys.exit(f"compat_report: no reference pack at {ref_dir}")
    torch.set_num_threads(2)

    worst = 0.0
    cases = sorted((ref_dir / "ckpt").glob("*.pth")) + [ref_dir / "arcface" / "ckpt" / "ResNetArcFace_fp16.pth"]
    for ckpt in cases:
        ref = torch.load(ckpt.parent.parent / "ref" / (ckpt.stem + ".pt"), map_location="cpu", weights_only=True)
        arch = ref["meta"]["cls"].rsplit(".", 1)[1] if "meta" in ref and "cls" in ref["meta"] else None
        model = load_model(ckpt, arch=arch).float()
        with torch.no_grad():
            if "out_fixed_noise" in ref and "input" in ref:
                rows = gfpgan_rows(model, ref)
            elif "z" in ref:
                rows = stylegan_rows(model, ref)
            elif "input_b8" in ref:
                rows = [("output [2, 1]", max_abs(model(ref["input"]), ref["output"])),
                        ("output [8, 1] (stddev groups)", max_abs(model(ref["input_b8"]), ref["output_b8"]))]
            elif "input_80" in ref:
                out, feats = model(ref["input_80"], return_feats=True)
                rows = [("out_80", max_abs(out, ref["out_80"]))]
                rows += [(f"feats_80[{i}]", max_abs(a, b)) for i, (a, b) in enumerate(zip(feats, ref["feats_80"]))]
                rows.append(("out_120", max_abs(model(ref["input_120"], return_feats=True)[0], ref["out_120"])))
            else:
                rows = [("embedding [2, 512]", max_abs(model(ref["input"]), ref["output"]))]
        print(f"{ckpt.name}  ({type(model).__name__})")
        for name, diff in rows:
            worst = max(worst, diff)
            print(f"    {name:<34} max abs diff {diff:.2e}  {'ok' if diff <= BOUND else 'OVER ' + str(BOUND)}")
    print(f"largest difference: {worst:.2e} (bound {BOUND:.0e})")


if __name__ == "__main__":
    main()
