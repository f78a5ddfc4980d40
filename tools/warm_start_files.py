"""Warm-start files (``model.pretrained`` / ``model.pretrained_d``) from a GFP-GAN training state
or from a generator's weights.

    python tools/warm_start_files.py /work/runs/gfpgan_256_wide_id/checkpoints/state_00005000.pth \
        /work/runs/gate_start --add-input-gate
    python tools/warm_start_files.py faceprior-256 /work/runs/gate_start --add-input-gate

From a training state (``state_*.pth``) it writes ``OUT/net_g.pth`` ({"params_ema": the state's
EMA generator}) and ``OUT/net_d.pth`` ({"params": its discriminator}). From a generator's weights
(a ``.pth`` / ``.safetensors`` file or a registered model name, such as the bundled
``faceprior-256``) it writes ``OUT/net_g.pth`` only, in float32: the run's discriminator then
starts afresh (``model.pretrained_d: null``). With ``--add-input-gate`` the generator gets the
input gate of ``GFPGANv1Clean(input_gate=True)`` at its initial values (zero weights, bias
``INPUT_GATE_INIT_BIAS``), so that a run with ``kwargs: {input_gate: true}`` starts from the old
generator's outputs blended with 4.7 % of the input. Warm starts load strictly; this is how an
architecture change continues from a finished run (the optimiser state starts afresh).
With ``--zero-noise`` every decoder noise strength of the generator is set to zero
(``gfpgan_clean.without_decoder_noise``), as in the shipped model from version 4 on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.errors import FacepriorError  # noqa: E402
from faceprior.models import GFPGANv1Clean  # noqa: E402
from faceprior.models.gfpgan_clean import without_decoder_noise  # noqa: E402
from faceprior.models.loading import infer_architecture  # noqa: E402
from faceprior.training.checkpointing import TRAINING_STATE_FORMAT, check_training_state  # noqa: E402
from faceprior.training.loop import read_warm_start  # noqa: E402
from faceprior.weights.checkpoint import read_checkpoint, select_state_dict  # noqa: E402


def read_networks(source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(float32 generator state dict, discriminator state dict or None) of a training state or of
    a generator's weights (path or registered model name)."""
    path = Path(source).expanduser()
    if path.is_file():  # read once: a training state or a generator's weights
        checkpoint = read_checkpoint(path)
        if isinstance(checkpoint, dict) and checkpoint.get("format") == TRAINING_STATE_FORMAT:
            modules = check_training_state(checkpoint, path)["modules"]
            return modules["net_g_ema"], modules["net_d"]
        generator = select_state_dict(checkpoint, path)  # params_ema, else params, else the bare dict
    else:
        generator, _ = read_warm_start(source, "source")
    return {name: t.float() if t.is_floating_point() else t for name, t in generator.items()}, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a state_*.pth of a GFP-GAN run, or a generator's weights (file or registered name)")
    parser.add_argument("out_dir", type=Path, help="folder for net_g.pth (and net_d.pth); must not hold them")
    parser.add_argument("--add-input-gate", action="store_true", help="add the input gate at its initial values")
    parser.add_argument("--zero-noise", action="store_true", help="set the generator's decoder noise strengths to zero")
    args = parser.parse_args(argv)

    try:
        generator, discriminator = read_networks(args.source)
    except FacepriorError as error:
        parser.error(str(error))
    if args.add_input_gate:
        arch, kwargs = infer_architecture(generator)
        if arch != "GFPGANv1Clean" or kwargs.get("input_gate"):
            parser.error(f"{args.source}: the generator is {arch}{' with a gate already' if kwargs.get('input_gate') else ''}; "
                         "--add-input-gate needs a GFPGANv1Clean without one")
        gate = GFPGANv1Clean(**kwargs, input_gate=True).input_gate
        generator = dict(generator, **{f"input_gate.{k}": v for k, v in gate.state_dict().items()})
    if args.zero_noise:
        try:
            generator = without_decoder_noise(generator)
        except ValueError as error:
            parser.error(f"{args.source}: {error}")
    files = {args.out_dir / "net_g.pth": {"params_ema": generator}}
    if discriminator is not None:
        files[args.out_dir / "net_d.pth"] = {"params": discriminator}
    for path in files:
        if path.exists():
            parser.error(f"{path}: exists; not overwritten")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, payload in files.items():
        torch.save(payload, path)
        print(f"wrote {path} ({len(next(iter(payload.values())))} tensors)")
    if discriminator is None:
        print("no discriminator in the source: the run's discriminator starts afresh (model.pretrained_d: null)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
