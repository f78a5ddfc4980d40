"""StyleGAN2 prior training: a few steps, `faceprior sample`, resume, and the prior as a GFP-GAN decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import faces, flat_tensors, one_thread, tiny_config  # noqa: F401 (fixtures)

from faceprior.cli import main as cli_main
from faceprior.imaging.io import read_image
from faceprior.training.checkpointing import find_latest_checkpoint
from faceprior.training.config import config_from_dict
from faceprior.training.distributed import DistributedContext
from faceprior.training.logging import NullLogger, read_metrics
from faceprior.training.train_gfpgan import GFPGANTrainer
from faceprior.training.train_stylegan2 import train
from faceprior.weights.checkpoint import read_checkpoint

pytest.importorskip("yaml")
pytestmark = pytest.mark.filterwarnings("ignore:.*component_boxes is not set:UserWarning")

# The decoder of configs/tiny_test.yaml's GFPGANv1Clean.
PRIOR_KWARGS = {"out_size": 32, "num_style_feat": 16, "num_mlp": 2, "channel_multiplier": 1, "narrow": 0.03125}


def prior_config(faces: Path, out_dir: Path, **train_updates):
    return config_from_dict({
        "task": "stylegan2",
        "model": {"arch": "StyleGAN2GeneratorClean", "kwargs": PRIOR_KWARGS,
                  "discriminator": {"channel_multiplier": 1, "narrow": 0.03125}},
        "data": {"train": str(faces), "size": 32, "batch_size": 2, "num_workers": 0},
        "losses": {"pixel": 0, "perceptual": 0, "style": 0, "pyramid": 0, "gan": 1, "component_gan": 0,
                   "component_style": 0, "identity": 0, "r1": 10, "r1_every": 2, "path_length": 2,
                   "path_length_every": 2, "path_batch_shrink": 2},
        "train": {"out_dir": str(out_dir), "total_iter": 4, "save_every": 2, "val_every": 2, "log_every": 1,
                  "num_threads": 1, "device": "cpu", **train_updates},
    }, source="stylegan2 test config")


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory, faces) -> Path:
    out_dir = tmp_path_factory.mktemp("prior") / "run"
    assert train(prior_config(faces, out_dir))["iteration"] == 4
    return out_dir


def test_prior_trains_with_its_regularisers(prior_run):
    records = read_metrics(prior_run / "metrics.jsonl", kind="train")
    assert [r["iter"] for r in records] == [1, 2, 3, 4]
    for record in records:
        has_regularisers = record["iter"] % 2 == 0
        assert ("l_d_r1" in record) == has_regularisers and ("l_g_path" in record) == has_regularisers
        assert np.isfinite(record["l_g"]) and np.isfinite(record["l_d"])
    state = find_latest_checkpoint(prior_run)[1]
    assert float(state["extra"]["mean_path_length"]) > 0
    assert state["optimizers"]["optimizer_g"]["param_groups"][0]["betas"] == (0.0, pytest.approx(0.99 ** (2 / 3)))  # lazy path length every 2
    exported = read_checkpoint(prior_run / "models" / "net_g_00000004.pth")
    assert set(exported) == {"params", "params_ema"}
    for name, tensor in state["modules"]["net_g_ema"].items():
        assert torch.equal(exported["params_ema"][name], tensor)
    assert (prior_run / "samples" / "samples_00000004.png").is_file()


def test_sample_writes_a_reproducible_grid(tmp_path, prior_run):
    model = prior_run / "models" / "net_g_00000004.pth"
    out = tmp_path / "grid.png"
    args = ["--n", "5", "--seed", "3", "--truncation", "0.7", "--columns", "3"]
    assert cli_main(["sample", str(model), "-o", str(out), *args]) == 0
    grid = read_image(out).pixels
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 3)
    assert (grid[32:34] == 255).all() and (grid[-32:, -32:] == 255).all()  # gap row; 6th cell is empty
    assert grid[:32, :32].std() > 0  # a generated face, not a blank cell

    assert cli_main(["sample", str(model), "-o", str(out), *args]) == 1  # exists, no --force
    same = tmp_path / "same.png"
    state = sorted((prior_run / "checkpoints").iterdir())[-1]  # a training state: its EMA generator
    assert cli_main(["sample", str(state), "-o", str(same), *args]) == 0
    assert np.array_equal(read_image(same).pixels, grid)
    other = tmp_path / "other.png"
    assert cli_main(["sample", str(model), "-o", str(other), "--n", "5", "--seed", "4", "--truncation", "0.7",
                     "--columns", "3"]) == 0
    assert not np.array_equal(read_image(other).pixels, grid)


@pytest.mark.slow
def test_prior_resume_is_bit_identical(tmp_path, faces, prior_run):
    split = prior_config(faces, tmp_path / "split")
    train(split, stop_at=2)
    assert train(split)["resumed_from"] == 2
    a, b = find_latest_checkpoint(prior_run)[1], find_latest_checkpoint(tmp_path / "split")[1]
    for key in ("modules", "optimizers", "extra"):
        flat_a, flat_b = flat_tensors(a[key]), flat_tensors(b[key])
        assert flat_a.keys() == flat_b.keys()
        for name in flat_a:
            assert torch.equal(torch.as_tensor(flat_a[name]), torch.as_tensor(flat_b[name])), f"{key}/{name}"


def test_prior_loads_into_the_gfpgan_decoder(tmp_path, faces, prior_run):
    model = prior_run / "models" / "net_g_00000004.pth"
    config = tiny_config(tmp_path, faces, model__decoder_load_path=str(model), model__fix_decoder=True,
                         losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0)
    trainer = GFPGANTrainer(config, DistributedContext(), NullLogger())
    ema = read_checkpoint(model)["params_ema"]
    decoder = trainer.net_g.stylegan_decoder
    for name, tensor in decoder.state_dict().items():
        assert torch.equal(tensor, ema[name]), name
    assert not any(p.requires_grad for p in decoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(decoder.state_dict().values(),
                                                 trainer.net_g_ema.stylegan_decoder.state_dict().values()))
