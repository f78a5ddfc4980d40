"""GFP-GAN training loop: resume, accumulation, DDP equivalence, checkpoint atomicity, configs, ablations.

Tiny networks (configs/tiny_test.yaml: 32 px, narrow 1/32) on 8 synthetic faces; CPU only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from train_helpers import REPO_ROOT, faces, flat_tensors, make_component_file, one_thread, tiny_config  # noqa: F401 (fixtures)

from faceprior.cli import main as cli_main
from faceprior.models import create_model
from faceprior.models.arcface import ResNetArcFace
from faceprior.paths import TEMPORARY_PREFIX, TEMPORARY_SUFFIX
from faceprior.training import distributed
from faceprior.training.checkpointing import (
    find_latest_checkpoint,
    list_checkpoints,
    load_training_state,
    prune_run_files,
    remove_stale_temporary_files,
    save_training_state,
)
from faceprior.training.config import (
    OFFICIAL_EMA_DECAY,
    ConfigError,
    ema_decay,
    lazy_regularization_ratio,
    load_config,
    save_config,
)
from faceprior.training.distributed import DistributedContext
from faceprior.training.logging import NullLogger, read_metrics
from faceprior.training.loop import TrainingDivergedError, lr_factor
from faceprior.training.losses import LossWeights
from faceprior.training.train_gfpgan import GFPGANTrainer, train
from faceprior.weights.checkpoint import CheckpointError, read_checkpoint, save_state_dict

pytest.importorskip("yaml")
pytestmark = [pytest.mark.filterwarnings("ignore:.*RANDOMLY INITIALISED:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*component_boxes is not set:UserWarning")]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory, faces) -> Path:
    return make_component_file(tmp_path_factory.mktemp("boxes") / "boxes.json", faces)


def _final_state(out_dir: str) -> dict:
    found = find_latest_checkpoint(out_dir)
    assert found is not None
    return found[1]


def _assert_states_equal(a: dict, b: dict, keys=("modules", "optimizers")) -> int:
    compared = 0
    for key in keys:
        flat_a, flat_b = flat_tensors(a[key]), flat_tensors(b[key])
        assert flat_a.keys() == flat_b.keys()
        for name in flat_a:
            if isinstance(flat_a[name], torch.Tensor):
                assert torch.equal(flat_a[name], flat_b[name]), f"{key}/{name} differs"
            else:
                assert flat_a[name] == flat_b[name], f"{key}/{name} differs"
            compared += 1
    return compared


def _max_param_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for name, tensor in flat_tensors(a["modules"]).items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            worst = max(worst, float((tensor - flat_tensors(b["modules"])[name]).abs().max()))
    return worst


# ----------------------------------------------------------------------------------------------
# (a) resume is bit-identical


@pytest.mark.slow
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, faces, boxes):
    # Every term on but identity (random VGG, components), R1 every 2, accumulation 2, pyramid removed after
    # iteration 2, validation. (The frozen ArcFace is deterministic and slow on a CPU: its wiring is
    # covered by test_each_loss_term_switches_off.)
    common = dict(data__component_boxes=str(boxes), train__total_iter=4, train__save_every=2, train__val_every=2,
                  train__grad_accum=2, losses__remove_pyramid_after=2, losses__identity=0.0)
    straight = tiny_config(tmp_path, faces, "straight", **common)
    split = tiny_config(tmp_path, faces, "split", **common)

    train(straight)
    first = train(split, stop_at=2)
    assert first["iteration"] == 2 and [i for i, _ in list_checkpoints(split.train.out_dir)] == [2]
    second = train(split)
    assert second["resumed_from"] == 2 and second["iteration"] == 4

    a, b = _final_state(straight.train.out_dir), _final_state(split.train.out_dir)
    assert a["iteration"] == b["iteration"] == 4
    assert set(a["modules"]) == {"net_g", "net_g_ema", "net_d", "net_d_left_eye", "net_d_right_eye", "net_d_mouth"}
    assert _assert_states_equal(a, b, keys=("modules", "optimizers", "rng", "data_position")) > 100
    # The run really trained: G moved away from its initial weights, the EMA lags behind G.
    g, ema = a["modules"]["net_g"], a["modules"]["net_g_ema"]
    assert not torch.equal(g["final_linear.weight"], ema["final_linear.weight"])
    # Validation was logged at 0, 2 and 4 with the degraded-input baseline.
    val = read_metrics(Path(straight.train.out_dir) / "metrics.jsonl", kind="val")
    assert [r["iter"] for r in val] == [0, 2, 4]
    assert all(r["psnr_lq"] == val[0]["psnr_lq"] and 5 < r["psnr_lq"] < 60 for r in val)
    assert (Path(straight.train.out_dir) / "samples" / "val_00000004.png").is_file()


def test_a_run_out_of_minutes_stops_with_a_checkpoint_and_resumes(tmp_path, faces):
    """--minutes: the iteration that ends past the time stops the run with a checkpoint (here the
    first: 0 minutes); the run resumes from it and finishes normally."""
    config = tiny_config(tmp_path, faces, "timed", train__total_iter=3, train__save_every=10, train__val_every=0,
                         train__log_every=10, losses__identity=0.0)
    first = train(config, minutes=0.0)
    assert first["iteration"] == 1 and [i for i, _ in list_checkpoints(config.train.out_dir)] == [1]
    assert [r["iter"] for r in read_metrics(Path(config.train.out_dir) / "metrics.jsonl", kind="train")] == [1]
    second = train(config, minutes=60.0)
    assert second["resumed_from"] == 1 and second["iteration"] == 3
    assert [i for i, _ in list_checkpoints(config.train.out_dir)][-1] == 3


# ----------------------------------------------------------------------------------------------
# (b) data parallel == one process with the global batch


def _equivalence_updates(boxes: Path) -> dict:
    # Batch-size-independent networks: minibatch-stddev groups of 1; the decoder fixed so that its
    # random noise (drawn per process) has no effect (its noise strengths stay 0).
    return dict(data__component_boxes=str(boxes), model__fix_decoder=True, model__discriminator__stddev_group=1,
                losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0, data__flip=True,
                train__total_iter=2, train__save_every=2, train__val_every=0, train__log_every=1)


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(tmp_path, faces, boxes):
    updates = _equivalence_updates(boxes)
    full = tiny_config(tmp_path, faces, "full", data__batch_size=2, **updates)
    accumulated = tiny_config(tmp_path, faces, "accum", data__batch_size=1, train__grad_accum=2, **updates)
    train(full)
    train(accumulated)
    a, b = _final_state(full.train.out_dir), _final_state(accumulated.train.out_dir)
    assert a["data_position"] == b["data_position"]
    assert _max_param_diff(a, b) < 1e-4  # 2 Adam steps of lr 2e-3 move parameters by up to 4e-3


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tmp_path, faces, boxes):
    updates = _equivalence_updates(boxes)
    single = tiny_config(tmp_path, faces, "single", data__batch_size=2, **updates)
    train(single)

    overrides = [f"--set=data.train={faces}", f"--set=data.val={faces}", f"--set=data.component_boxes={boxes}",
                 f"--set=train.out_dir={tmp_path / 'ddp'}", "--set=data.batch_size=1", "--set=model.fix_decoder=true",
                 "--set=model.discriminator.stddev_group=1", "--set=losses.identity=0", "--set=losses.perceptual=0",
                 "--set=losses.style=0", "--set=train.total_iter=2", "--set=train.save_every=2",
                 "--set=train.val_every=0", "--set=train.log_every=1", "--set=train.num_threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "faceprior", "train", str(REPO_ROOT / "configs" / "tiny_test.yaml"), *overrides],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = _final_state(str(tmp_path / "ddp"))
    assert ddp["world_size"] == 2 and len(ddp["rng"]) == 2
    one = _final_state(single.train.out_dir)
    assert ddp["data_position"] == one["data_position"]
    assert _max_param_diff(one, ddp) < 1e-4
    # Both processes logged the same averaged losses as the single process (rank 0 writes them).
    ddp_log = read_metrics(tmp_path / "ddp" / "metrics.jsonl", kind="train")
    one_log = read_metrics(Path(single.train.out_dir) / "metrics.jsonl", kind="train")
    assert [r["iter"] for r in ddp_log] == [1, 2]
    for r_ddp, r_one in zip(ddp_log, one_log):
        assert r_ddp["l_g_pix"] == pytest.approx(r_one["l_g_pix"], rel=1e-4)


# ----------------------------------------------------------------------------------------------
# (c) configs


def test_unknown_config_keys_are_one_line_errors(tmp_path):
    text = (REPO_ROOT / "configs" / "tiny_test.yaml").read_text()
    for bad, key in ((text.replace("  lr_d: 2.0e-3", "  lr_dd: 2.0e-3"), "optim.lr_dd"),
                     (text + "\nmodle: {}\n", "modle"),
                     (text.replace("  seed: 0", "  seed: 0\n  sed: 1"), "train.sed")):
        path = tmp_path / "bad.yaml"
        path.write_text(bad)
        with pytest.raises(ConfigError) as error:
            load_config(path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and f"unknown key '{key}'" in message
    # Type and range errors name the key too; the CLI prints them in one line.
    path.write_text(text.replace("  total_iter: 8", "  total_iter: many"))
    with pytest.raises(ConfigError, match=r"train\.total_iter: expected an integer"):
        load_config(path)
    path.write_text(text.replace("  pixel: 0.1", "  pixel: -1"))
    with pytest.raises(ConfigError, match=r"losses: LossWeights.pixel must be >= 0"):
        load_config(path)
    assert cli_main(["train", str(path)]) == 1


def test_cpu_bf16_autocast_needs_native_bf16(monkeypatch):
    """Emulated bf16 (an AVX2 CPU) takes seconds per convolution: refused, with the fix named."""
    monkeypatch.setattr(distributed, "native_bf16_available", lambda: False)
    with pytest.raises(ConfigError, match="no native bfloat16.*set train.amp: fp32"):
        distributed.setup_distributed("cpu", "bf16")
    assert distributed.setup_distributed("cpu", "fp32").amp_dtype is None
    monkeypatch.setattr(distributed, "native_bf16_available", lambda: True)
    assert distributed.setup_distributed("cpu", "bf16").amp_dtype == torch.bfloat16


def test_shipped_configs_load_and_derived_values(tmp_path):
    configs = {p.name: load_config(p) for p in sorted((REPO_ROOT / "configs").glob("*.yaml"))}
    assert {"gfpgan_v1_512.yaml", "gfpgan_clean_512.yaml", "stylegan2_256_small.yaml", "gfpgan_clean_256_small.yaml",
            "tiny_test.yaml"} <= set(configs)
    paper = configs["gfpgan_v1_512.yaml"]
    assert paper.losses == LossWeights()  # the official train_gfpgan_v1.yml weights
    assert ema_decay(paper, world_size=4) == OFFICIAL_EMA_DECAY == 0.5 ** (32 / 10_000)
    assert paper.global_batch(4) == 12 and paper.optim.betas_g == (0.0, 0.99)
    small = configs["gfpgan_clean_256_small.yaml"]
    assert ema_decay(small, world_size=1) == pytest.approx(0.5 ** (4 / 1000))  # batch 4, half-life 1000 images
    assert lazy_regularization_ratio(10.0, 16) == 16 / 17 and lazy_regularization_ratio(0.0, 16) == 1.0
    assert [lr_factor(i, (600, 700), 0.5) for i in (1, 599, 600, 699, 700, 10_000)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    # Overrides: dotted keys, YAML values.
    cfg = load_config(REPO_ROOT / "configs" / "tiny_test.yaml", overrides=["train.total_iter=5", "model.kwargs.narrow=0.5",
                                                                           "optim.milestones=[1, 2]"])
    assert cfg.train.total_iter == 5 and cfg.model.kwargs["narrow"] == 0.5 and cfg.optim.milestones == (1, 2)
    # The config.yaml written into a run folder reads back to the same config.
    saved = save_config(paper, tmp_path / "config.yaml")
    assert load_config(saved) == paper


@pytest.mark.slow
def test_optimizers_follow_the_official_recipe(tmp_path, faces, boxes):
    cfg = tiny_config(tmp_path, faces, data__component_boxes=str(boxes), losses__r1_every=16,
                      optim__lazy_reg_lr_scaling=False)
    trainer = GFPGANTrainer(cfg, DistributedContext(), NullLogger())
    d_group = trainer.optimizer_d.param_groups[0]
    assert d_group["betas"] == (0.0, pytest.approx(0.99 ** (16 / 17))) and d_group["lr"] == 2e-3
    assert trainer.optimizer_g.param_groups[0]["betas"] == (0.0, 0.99)
    assert trainer.optimizers["optimizer_d_mouth"].param_groups[0]["betas"] == (0.9, 0.99)
    scaled = GFPGANTrainer(tiny_config(tmp_path, faces, losses__r1_every=16), DistributedContext(), NullLogger())
    assert scaled.optimizer_d.param_groups[0]["lr"] == pytest.approx(2e-3 * 16 / 17)


@pytest.mark.slow
def test_the_input_gate_has_its_own_adam_and_lr(tmp_path, faces):
    gate = dict(model__kwargs__input_gate=True, losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0,
                optim__lr_g=1e-4)
    cfg = tiny_config(tmp_path, faces, optim__lr_input_gate=1e-2, train__total_iter=3, train__save_every=3, **gate)
    trainer = GFPGANTrainer(cfg, DistributedContext(), NullLogger())
    gate_params = set(trainer.net_g.input_gate.parameters())
    assert gate_params == set(trainer.optimizers["optimizer_input_gate"].param_groups[0]["params"])
    assert trainer.optimizers["optimizer_input_gate"].param_groups[0]["lr"] == 1e-2
    assert not gate_params & set(trainer.optimizer_g.param_groups[0]["params"])
    # Trained: Adam moves the gate by about its lr per step; at G's lr (1e-4) 3 steps stay under 1e-3.
    train(cfg)
    state = _final_state(cfg.train.out_dir)
    assert "optimizer_input_gate" in state["optimizers"]
    moved = state["modules"]["net_g"]["input_gate.spatial.weight"].abs().max().item()
    assert moved > 3e-3
    # Without lr_input_gate the gate trains with G's optimiser; lr_input_gate without a gate is an error.
    shared = GFPGANTrainer(tiny_config(tmp_path, faces, out_name="shared", **gate), DistributedContext(), NullLogger())
    assert "optimizer_input_gate" not in shared.optimizers
    assert set(shared.net_g.input_gate.parameters()) <= set(shared.optimizer_g.param_groups[0]["params"])
    with pytest.raises(ConfigError, match="optim.lr_input_gate"):
        tiny_config(tmp_path, faces, optim__lr_input_gate=1e-2)


def test_train_only_input_gate_freezes_the_rest_and_gan_off_skips_the_discriminator(tmp_path, faces, capsys):
    settings = dict(model__kwargs__input_gate=True, model__train_only_input_gate=True, losses__identity=0.0,
                    losses__perceptual=0.0, losses__style=0.0, losses__gan=0.0, optim__lr_g=1e-2,
                    train__total_iter=3, train__save_every=3)
    trainer = GFPGANTrainer(tiny_config(tmp_path, faces, out_name="start", **settings), DistributedContext(), NullLogger())
    gate_params = set(trainer.net_g.input_gate.parameters())
    assert set(trainer.optimizer_g.param_groups[0]["params"]) == gate_params
    assert {p for p in trainer.net_g.parameters() if p.requires_grad} == gate_params
    # The run starts from these weights.
    start_g, start_d = trainer.net_g.state_dict(), trainer.net_d.state_dict()
    torch.save({"params_ema": start_g}, tmp_path / "g.pth")
    torch.save({"params": start_d}, tmp_path / "d.pth")
    cfg = tiny_config(tmp_path, faces, model__pretrained=str(tmp_path / "g.pth"),
                      model__pretrained_d=str(tmp_path / "d.pth"), **settings)
    train(cfg)
    printed = capsys.readouterr().out
    assert f"training states go to {Path(cfg.train.out_dir) / 'checkpoints'} every 3 iterations" in printed
    assert re.search(r"\[3/3\] .* ETA 0 s", printed)  # every progress line says how long is left
    state = _final_state(cfg.train.out_dir)
    moved = {k for k, v in state["modules"]["net_g"].items() if not torch.equal(v, start_g[k])}
    assert moved == {"input_gate.spatial.weight", "input_gate.spatial.bias", "input_gate.face.weight",
                     "input_gate.face.bias"}
    # losses.gan 0: the discriminator is neither trained nor logged.
    assert all(torch.equal(v, start_d[k]) for k, v in state["modules"]["net_d"].items())
    assert not any(name.startswith("l_d") for row in read_metrics(Path(cfg.train.out_dir) / "metrics.jsonl")
                   for name in row)
    with pytest.raises(ConfigError, match="model.train_only_input_gate"):
        tiny_config(tmp_path, faces, model__train_only_input_gate=True)
    with pytest.raises(ConfigError, match="optim.lr_input_gate"):
        tiny_config(tmp_path, faces, model__kwargs__input_gate=True, model__train_only_input_gate=True,
                    optim__lr_input_gate=1e-2)


# ----------------------------------------------------------------------------------------------
# (d) checkpoint atomicity


def test_a_crash_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    path = out_dir / "checkpoints" / "state_00000002.pth"
    state = {"format": "faceprior.training_state", "version": 1, "iteration": 2, "modules": {"w": torch.ones(1000)}}
    save_training_state(state, path)

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    for target in (path, out_dir / "checkpoints" / "state_00000004.pth"):  # overwrite, and a newer one
        with pytest.raises(OSError, match="disk full"):
            save_training_state({**state, "iteration": 4}, target)
    monkeypatch.undo()

    assert [p.name for p in (out_dir / "checkpoints").iterdir()] == ["state_00000002.pth"]  # no partial files
    found_path, found = find_latest_checkpoint(out_dir)
    assert found_path == path and found["iteration"] == 2 and torch.equal(found["modules"]["w"], torch.ones(1000))

    # A process killed mid-write leaves a temporary file: ignored, then cleaned up.
    stale = out_dir / "checkpoints" / f"{TEMPORARY_PREFIX}0123456789abcdef{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"PK\x03\x04 partial")
    assert find_latest_checkpoint(out_dir)[0] == path
    assert remove_stale_temporary_files(out_dir) == [stale] and not stale.exists()
    # A corrupted newest file (disk failure) is skipped with a warning.
    (out_dir / "checkpoints" / "state_00000008.pth").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert find_latest_checkpoint(out_dir)[0] == path
    with pytest.raises(CheckpointError):
        load_training_state(out_dir / "checkpoints" / "state_00000008.pth")


# ----------------------------------------------------------------------------------------------
# (f) every loss term can be switched off; warm starts


@pytest.mark.slow
def test_each_loss_term_switches_off(tmp_path, faces, boxes):
    logged_by = {"pixel": ["l_g_pix"], "pyramid": ["l_g_pyramid"], "perceptual": ["l_g_percep"], "style": ["l_g_style"],
                 "gan": ["l_g_gan"], "component_gan": ["l_g_comp_gan_left_eye", "l_g_comp_gan_mouth"],
                 "component_style": ["l_g_comp_style"], "component_pixel": ["l_g_comp_pix"], "identity": ["l_identity"],
                 "r1": ["l_d_r1"]}
    assert set(logged_by) | {"path_length"} == set(LossWeights.TERMS)
    cfg = tiny_config(tmp_path, faces, data__component_boxes=str(boxes), losses__r1_every=1)
    trainer = GFPGANTrainer(cfg, DistributedContext(), NullLogger())
    assert isinstance(trainer.arcface, ResNetArcFace) and not any(p.requires_grad for p in trainer.arcface.parameters())
    # A ResNet-18 on 128 px faces is the slowest part of a CPU step: a small frozen stand-in keeps
    # the wiring under test (gray 128 px input -> [B, 512] embedding, gradient into G).
    trainer.arcface = nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(64, 512)).requires_grad_(False)
    batch = [next(iter(torch.utils.data.DataLoader(trainer.train_dataset, batch_size=2)))]
    all_on = trainer.train_step(1, batch)
    for names in logged_by.values():
        assert all(name in all_on and torch.isfinite(all_on[name]) for name in names)
    for term, names in logged_by.items():
        # (identity off in all of these: the ArcFace is the slowest part on a CPU)
        off = tiny_config(tmp_path, faces, data__component_boxes=str(boxes), losses__r1_every=1,
                          **{"losses__identity": 0.0, f"losses__{term}": 0.0})
        trainer = GFPGANTrainer(off, DistributedContext(), NullLogger())
        assert trainer.arcface is None
        if term in ("perceptual", "style"):
            assert trainer.perceptual is not None  # the other of the two still needs the VGG
        if term == "identity":
            continue
        logs = trainer.train_step(1, batch)
        # Without the GAN loss no discriminator step runs, so its R1 term goes too.
        gone = (term, "r1") if term == "gan" else (term,)
        assert not any(name in logs for off_term in gone for name in logged_by[off_term]), term
        assert not (term == "gan" and {"l_d", "real_score", "fake_score"} & set(logs))
        assert all(name in logs for other, others in logged_by.items() if other not in (*gone, "identity")
                   for name in others), term
    both_off = tiny_config(tmp_path, faces, data__component_boxes=str(boxes), losses__component_gan=0.0,
                           losses__component_style=0.0, losses__perceptual=0.0, losses__style=0.0)
    trainer = GFPGANTrainer(both_off, DistributedContext(), NullLogger())
    assert not trainer.net_d_components and trainer.perceptual is None and "net_d_mouth" not in trainer.modules
    # component_pixel still crops eyes and mouth, with no component discriminator to step.
    logs = trainer.train_step(1, [next(iter(torch.utils.data.DataLoader(trainer.train_dataset, batch_size=2)))])
    assert torch.isfinite(logs["l_g_comp_pix"]) and not any(name.startswith("l_d_left") for name in logs)
    no_crops = tiny_config(tmp_path, faces, data__component_boxes=str(boxes), losses__component_gan=0.0,
                           losses__component_style=0.0, losses__component_pixel=0.0, losses__identity=0.0)
    assert not GFPGANTrainer(no_crops, DistributedContext(), NullLogger()).train_dataset.component_boxes
    with pytest.raises(ConfigError, match="model.random_arcface"):
        GFPGANTrainer(tiny_config(tmp_path, faces, model__random_arcface=False), DistributedContext(), NullLogger())


def test_warm_start_from_an_official_layout_checkpoint(tmp_path, faces):
    cfg = tiny_config(tmp_path, faces, losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0)
    torch.manual_seed(123)
    official = create_model(cfg.model.arch, **cfg.model.kwargs)
    path = tmp_path / "GFPGAN_tiny.pth"
    save_state_dict(official.state_dict(), path, key="params_ema")
    warm = tiny_config(tmp_path, faces, losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0,
                       model__pretrained=str(path))
    trainer = GFPGANTrainer(warm, DistributedContext(), NullLogger())
    for name, tensor in official.state_dict().items():
        assert torch.equal(trainer.net_g.state_dict()[name], tensor)
        assert torch.equal(trainer.net_g_ema.state_dict()[name], tensor)
    wrong = tiny_config(tmp_path, faces, losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0,
                        model__pretrained=str(path), model__kwargs__narrow=0.0625)
    with pytest.raises(ValueError, match="GFPGAN_tiny.pth"):
        GFPGANTrainer(wrong, DistributedContext(), NullLogger())


@pytest.mark.slow
def test_warm_start_from_official_checkpoints(tmp_path, faces, reference_dir):
    """Files written by the official code (reference pack, small configs): the whole GFPGANv1, its
    discriminators and the ArcFace (fp16 file) as warm starts, and a StyleGAN2 file as the decoder."""
    ckpt = reference_dir / "ckpt"
    gfpgan_kwargs = {"out_size": 128, "num_style_feat": 32, "num_mlp": 8, "input_is_latent": True, "narrow": 0.0625,
                     "channel_multiplier": 1, "resample_kernel": [1, 3, 3, 1], "lr_mlp": 0.01, "different_w": True,
                     "sft_half": True}
    cfg = tiny_config(tmp_path, faces, data__size=128, model__arch="GFPGANv1", model__kwargs=gfpgan_kwargs,
                      model__fix_decoder=True, model__pretrained=str(ckpt / "GFPGANv1_small.pth"),
                      model__discriminator={"channel_multiplier": 1, "narrow": 0.0625},
                      model__pretrained_d=str(ckpt / "StyleGAN2Discriminator_small.pth"),
                      **{f"model__pretrained_d_{name}": str(ckpt / "FacialComponentDiscriminator.pth")
                         for name in ("left_eye", "right_eye", "mouth")},
                      data__component_boxes=str(make_component_file(tmp_path / "boxes.json", faces)),
                      model__arcface=str(reference_dir / "arcface" / "ckpt" / "ResNetArcFace_fp16.pth"),
                      model__random_arcface=False, losses__perceptual=0.0, losses__style=0.0)
    trainer = GFPGANTrainer(cfg, DistributedContext(), NullLogger())
    official = {name: read_checkpoint(ckpt / f"{file}.pth") for name, file in (
        ("net_g", "GFPGANv1_small"), ("net_d", "StyleGAN2Discriminator_small"),
        ("net_d_mouth", "FacialComponentDiscriminator"))}
    for name, state in official.items():
        state_dict = state.get("params_ema", state.get("params"))
        for key, tensor in state_dict.items():
            assert torch.equal(trainer.modules[name].state_dict()[key], tensor), f"{name}.{key}"
    arcface = read_checkpoint(reference_dir / "arcface" / "ckpt" / "ResNetArcFace_fp16.pth")["params"]
    assert torch.equal(trainer.arcface.state_dict()["fc5.weight"], arcface["fc5.weight"].float())

    # An official StyleGAN2 generator file as the (frozen) decoder of a GFPGANv1 of its size.
    prior = ckpt / "StyleGAN2Generator_small.pth"
    decoder_cfg = tiny_config(tmp_path, faces, data__size=64, model__arch="GFPGANv1",
                              model__kwargs={**gfpgan_kwargs, "out_size": 64, "num_style_feat": 64},
                              model__decoder_load_path=str(prior), model__fix_decoder=True,
                              model__discriminator={"channel_multiplier": 1, "narrow": 0.0625},
                              losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0)
    trainer = GFPGANTrainer(decoder_cfg, DistributedContext(), NullLogger())
    for key, tensor in read_checkpoint(prior)["params_ema"].items():
        assert torch.equal(trainer.net_g.stylegan_decoder.state_dict()[key], tensor), key
    assert not any(p.requires_grad for p in trainer.net_g.stylegan_decoder.parameters())


@pytest.mark.parametrize("parameter, error", [
    ("final_linear.weight", "non-finite .*l_g_pix.* at iteration 4"),  # NaN losses: caught when logged
    ("stylegan_decoder.style_mlp.1.weight", "non-finite weights in net_g, net_g_ema at iteration 4"),  # unused
])
def test_a_diverged_run_stops_without_saving_the_diverged_state(tmp_path, faces, monkeypatch, parameter, error):
    original_step = GFPGANTrainer.train_step

    def step_that_diverges(self, iteration, micro_batches):
        logs = original_step(self, iteration, micro_batches)
        if iteration == 3:
            with torch.no_grad():
                self.net_g.get_parameter(parameter).fill_(float("nan"))
        return logs

    monkeypatch.setattr(GFPGANTrainer, "train_step", step_that_diverges)
    cfg = tiny_config(tmp_path, faces, losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0,
                      train__total_iter=6, train__save_every=2, train__log_every=2, train__val_every=0)
    with pytest.raises(TrainingDivergedError, match=error):
        train(cfg)
    assert [i for i, _ in list_checkpoints(cfg.train.out_dir)] == [2]


@pytest.mark.slow
def test_a_run_whose_weights_blow_up_without_nan_stops_before_its_next_checkpoint(tmp_path, faces, monkeypatch):
    """A finite blow-up (measured on a wide 256 px run: l_g_pix 0.24 -> 3.9e8 in 25 iterations) stops
    the run when logged, so the newest checkpoint is one from before it; blowup_factor 0 turns it off."""
    original_step = GFPGANTrainer.train_step

    def step_that_blows_up(self, iteration, micro_batches):
        logs = original_step(self, iteration, micro_batches)
        if iteration == 3:
            with torch.no_grad():
                self.net_g.get_parameter("final_conv.weight").mul_(1e6)
        return logs

    monkeypatch.setattr(GFPGANTrainer, "train_step", step_that_blows_up)
    settings = dict(losses__identity=0.0, losses__perceptual=0.0, losses__style=0.0, train__total_iter=6,
                    train__save_every=2, train__log_every=2, train__val_every=0)
    cfg = tiny_config(tmp_path / "guarded", faces, **settings)
    with pytest.raises(TrainingDivergedError, match=r"l_g\w* rose from .* \(median so far\) .* at iteration 4: the weights blew up"):
        train(cfg)
    assert [i for i, _ in list_checkpoints(cfg.train.out_dir)] == [2]
    unguarded = tiny_config(tmp_path / "unguarded", faces, train__blowup_factor=0.0, **settings)
    train(unguarded)  # finite losses: without the guard the run goes on to the end
    assert [i for i, _ in list_checkpoints(unguarded.train.out_dir)][-1] == 6


def test_pruning_keeps_the_newest_files_and_every_nth_generator(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "models").mkdir()
    for it in range(100, 1100, 100):
        (tmp_path / "checkpoints" / f"state_{it:08d}.pth").write_bytes(b"s")
        (tmp_path / "models" / f"net_g_{it:08d}.pth").write_bytes(b"g")
    (tmp_path / "models" / "notes.txt").write_text("mine")  # not a run file: never touched
    prune_run_files(tmp_path, keep=2, keep_generators_every=500)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["state_00000900.pth", "state_00001000.pth"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "net_g_00000500.pth", "net_g_00000900.pth", "net_g_00001000.pth", "notes.txt"]
    prune_run_files(tmp_path, keep=1)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["net_g_00001000.pth", "notes.txt"]
    with pytest.raises(ConfigError, match="train.keep_generators_every: must be >= 1 or null"):
        tiny_config(tmp_path, tmp_path, train__keep_generators_every=0)
