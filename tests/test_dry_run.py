"""The dry run of the paper's training recipes with stand-in pretrained files (faceprior dry-run):
every loss term of configs/gfpgan_v1_512.yaml and gfpgan_clean_512.yaml runs, at a reduced size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_helpers import REPO_ROOT, faces, one_thread  # noqa: F401 (fixtures)

from faceprior.cli import main as cli_main
from faceprior.models.arcface import ResNetArcFace
from faceprior.models.loading import load_state_dict_strict
from faceprior.models.vgg import VGG19Features, load_vgg19_weights
from faceprior.training.config import load_config
from faceprior.training.dataset import load_official_component_file
from faceprior.training.dry_run import DryRunError, _check_terms, expected_terms, run_dry_run
from faceprior.training.logging import read_metrics

pytest.importorskip("yaml")

PAPER_TERMS = ["l_g_pix", "l_g_pyramid", "l_g_percep", "l_g_style", "l_g_gan", "l_d", "l_d_r1",
               "l_g_comp_gan_left_eye", "l_g_comp_gan_right_eye", "l_g_comp_gan_mouth", "l_g_comp_style",
               "l_d_left_eye", "l_d_right_eye", "l_d_mouth", "l_identity"]


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["gfpgan_v1_512.yaml", "gfpgan_clean_512.yaml"])
def test_the_paper_recipe_runs_every_term_with_stand_ins(tmp_path, faces, config_name):  # noqa: F811
    out = tmp_path / "dry"
    config = load_config(REPO_ROOT / "configs" / config_name,
                         overrides=["model.kwargs.narrow=0.0625", "train.num_threads=1", "train.device=cpu"])
    assert expected_terms(config) == PAPER_TERMS  # the paper configs switch every term on
    messages = []
    report = run_dry_run(config, faces, out, iterations=2, size=32, batch_size=2, log=messages.append)
    assert "not training" in messages[0]
    assert report.resumed_from == 1 and report.problems == []
    records = read_metrics(out / "run" / "metrics.jsonl", kind="train")
    assert [record["iter"] for record in records] == [1, 2]
    for term in PAPER_TERMS:  # R1 runs once (r1_every lowered to 2), every other term at both iterations
        values = [record[term] for record in records if term in record]
        assert values and all(math.isfinite(v) and v != 0 for v in values), term
    assert report.overrides["losses.r1_every"] == 2 and report.overrides["model.kwargs.out_size"] == 32
    text = report.report.read_text()
    assert text.startswith("# DRY RUN of") and "was logged finite and non-zero" in text

    # The stand-ins carry the official names and formats, read by the official-format loaders.
    standins = report.standins
    assert standins.prior.name == Path(config.model.decoder_load_path).name
    assert set(torch.load(standins.prior, weights_only=True)) == {"params_ema"}
    assert standins.vgg.name == "vgg19-dcbb9e9d.pth" and standins.arcface.name == "arcface_resnet18.pth"
    load_vgg19_weights(VGG19Features(), standins.vgg)
    load_state_dict_strict(ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False),
                           torch.load(standins.arcface, weights_only=True), source="stand-in")
    components = load_official_component_file(standins.components)
    assert sorted(components.boxes) == [f"{i:08d}" for i in range(8)] and components.frame_size == 512


def test_a_term_that_is_missing_zero_or_not_finite_fails_the_check():
    records = [{"iter": 1, "l_g_pix": 0.5, "l_d": 0.0, "l_identity": float("nan")},
               {"iter": 2, "l_g_pix": 0.4, "l_d": 0.0, "l_identity": 0.3}]
    problems = _check_terms(records, ["l_g_pix", "l_d", "l_identity", "l_d_r1"])
    assert problems == ["l_d was always 0", "l_identity was not finite", "l_d_r1 was never logged"]


def test_terms_follow_the_loss_weights():
    config = load_config(REPO_ROOT / "configs" / "gfpgan_v1_512.yaml",
                         overrides=["losses.perceptual=0", "losses.identity=0", "losses.r1=0",
                                    "data.component_boxes=null"])
    assert expected_terms(config) == ["l_g_pix", "l_g_pyramid", "l_g_style", "l_g_gan", "l_d"]


def test_bad_dry_runs_are_one_line_errors(tmp_path, faces, capsys):  # noqa: F811
    config_path = str(REPO_ROOT / "configs" / "gfpgan_v1_512.yaml")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user file")
    assert cli_main(["dry-run", config_path, "--data", str(faces), "-o", str(busy)]) == 1
    error = capsys.readouterr().err
    assert "is not an empty folder" in error and "Traceback" not in error
    assert (busy / "keep.txt").read_text() == "user file" and sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    assert cli_main(["dry-run", config_path, "--data", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 1
    assert "not a folder of face images" in capsys.readouterr().err
    with pytest.raises(DryRunError, match="at least 2"):
        run_dry_run(load_config(config_path), faces, tmp_path / "o", iterations=1)
    prior = load_config(REPO_ROOT / "configs" / "stylegan2_256_small.yaml")
    with pytest.raises(DryRunError, match="task: gfpgan"):
        run_dry_run(prior, faces, tmp_path / "o")
