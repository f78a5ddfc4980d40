"""Warm-start files (``model.pretrained`` / ``model.pretrained_d``) from a GFP-GAN training state.

    python tools/warm_start_files.py /work/runs/gfpgan_256_wide_id/checkpoints/state_00005000.pth \
        /work/runs/gate_start --add-input-gate

Writes ``OUT/net_g.pth`` ({"params_ema": the state's EMA generator}) and ``OUT/net_d.pth``
({"params": its discriminator}). With ``--add-input-gate`` the generator gets the input gate of
``GFPGANv1Clean(input_gate=True)`` at its initial values (zero weights, bias
``INPUT_GATE_INIT_BIAS``), so that a run with ``kwargs: {input_gate: true}`` starts from the old
generator's outputs blended with 4.7 % of the input. Warm starts load strictly; this is how an
architecture change continues from a finished run (the optimiser state starts afresh).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.models import GFPGANv1Clean  # noqa: E402
from faceprior.training.checkpointing import load_training_state  # noqa: E402
from faceprior.weights.loading import infer_architecture  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("state", type=Path, help="a state_*.pth of a GFP-GAN run")
    parser.add_argument("out_dir", type=Path, help="folder for net_g.pth and net_d.pth (must not hold them)")
    parser.add_argument("--add-input-gate", action="store_true", help="add the input gate at its initial values")
    args = parser.parse_args(argv)

    modules = load_training_state(args.state)["modules"]
    generator = modules["net_g_ema"]
    if args.add_input_gate:
        arch, kwargs = infer_architecture(generator)
        if arch != "GFPGANv1Clean" or kwargs.get("input_gate"):
            parser.error(f"{args.state}: the generator is {arch}{' with a gate already' if kwargs.get('input_gate') else ''}; "
                         "--add-input-gate needs a GFPGANv1Clean without one")
        gate = GFPGANv1Clean(**kwargs, input_gate=True).input_gate
        generator = dict(generator, **{f"input_gate.{k}": v for k, v in gate.state_dict().items()})
    files = {args.out_dir / "net_g.pth": {"params_ema": generator}, args.out_dir / "net_d.pth": {"params": modules["net_d"]}}
    for path in files:
        if path.exists():
            parser.error(f"{path}: exists; not overwritten")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, payload in files.items():
        torch.save(payload, path)
        print(f"wrote {path} ({len(next(iter(payload.values())))} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
