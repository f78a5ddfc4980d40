"""The evaluation runner: make-testset (reproducible CelebA-Test protocol), evaluate (baselines,
models, metrics, caches, reports), the ablation study (variant configs, SFT switch, table)."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprior.cli import main
from faceprior.evaluation.ablation import (
    ABLATION_VARIANTS,
    AblationError,
    disable_sft,
    parse_variant_names,
    run_ablation,
    skip_reason,
    train_variant,
    variant_config,
)
from faceprior.evaluation.methods import ModelMethod
from faceprior.evaluation.pairs import EvaluationError, find_pairs, subsample
from faceprior.evaluation.runner import evaluate
from faceprior.evaluation.scores import parse_metric_names
from faceprior.evaluation.testset import SyntheticTestSetError, make_testset
from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.pixels import gray_as_rgb, looks_gray
from faceprior.imaging.resize import resize_bilinear_to, upscale_lanczos
from faceprior.metrics.psnr_ssim import psnr, ssim
from faceprior.models import create_model
from faceprior.restoration.restorer import FaceRestorer
from faceprior.training.config import TrainConfig, config_from_dict
from faceprior.training.degradations import DegradationConfig, DegradationParams, apply_degradation, read_float_image

SMALL_CKPT = "ckpt/GFPGANv1Clean_small.pth"  # 128 px, random weights


def _pixels(path: Path) -> np.ndarray:
    return read_image(path).pixels


@pytest.fixture(autouse=True)
def _offline_empty_weight_cache(tmp_path_factory, monkeypatch):
    """No downloads, and an empty weight cache: learned metrics (and NIQE) are unavailable."""
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    monkeypatch.setenv("FACEPRIOR_HOME", str(tmp_path_factory.getbasetemp() / "empty-faceprior-home"))


@pytest.fixture(scope="module")
def gt_faces(data_dir: Path, tmp_path_factory) -> Path:
    """Four real 512 px faces copied to a temporary folder (never into the repository)."""
    folder = tmp_path_factory.mktemp("gt-src")
    for path in sorted((data_dir / "faces-gt-512").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def testset128(gt_faces: Path, tmp_path_factory):
    return make_testset(gt_faces, tmp_path_factory.mktemp("ts") / "set", seed=0, size=128)


# ----------------------------------------------------------------------------------------------
# make-testset


def test_make_testset_is_reproducible_and_records_parameters(gt_faces, testset128, tmp_path):
    again = make_testset(gt_faces, tmp_path / "again", seed=0, size=128)
    other_seed = make_testset(gt_faces, tmp_path / "seed1", seed=1, size=128)
    names = sorted(p.name for p in testset128.lq_dir.glob("*.png"))
    assert len(names) == 4 and names == sorted(p.name for p in testset128.gt_dir.glob("*.png"))
    for name in names:
        assert (testset128.lq_dir / name).read_bytes() == (again.lq_dir / name).read_bytes()
        assert (testset128.gt_dir / name).read_bytes() == (again.gt_dir / name).read_bytes()
        assert _pixels(testset128.gt_dir / name).shape == (128, 128, 3)
    assert any(not np.array_equal(_pixels(testset128.lq_dir / n), _pixels(other_seed.lq_dir / n)) for n in names)

    manifest = json.loads((testset128.lq_dir / "degradations.json").read_text())
    assert manifest["seed"] == 0 and manifest["size"] == 128 and len(manifest["files"]) == 4
    # The recorded parameters alone reproduce each LQ image bit for bit.
    for entry in manifest["files"]:
        params = DegradationParams.from_dict(entry["params"])
        lq = apply_degradation(read_float_image(testset128.gt_dir / entry["gt"]), params)
        assert np.array_equal(np.rint(lq * 255).astype(np.uint8), _pixels(testset128.lq_dir / entry["lq"]))


def test_make_testset_rerun_is_a_no_op_and_refuses_other_arguments(gt_faces, testset128):
    stamps = {p: p.stat().st_mtime_ns for p in testset128.root.rglob("*") if p.is_file()}
    found = make_testset(gt_faces, testset128.root, seed=0, size=128)
    assert not found.created and found.count == 4
    assert {p: p.stat().st_mtime_ns for p in testset128.root.rglob("*") if p.is_file()} == stamps
    with pytest.raises(SyntheticTestSetError, match="different seed 0 \\(asked 1\\)"):
        make_testset(gt_faces, testset128.root, seed=1, size=128)
    with pytest.raises(SyntheticTestSetError, match="size 128 \\(asked 64\\)"):
        make_testset(gt_faces, testset128.root, seed=0, size=64)


def test_make_testset_reads_manifests_written_before_newer_degradation_settings(gt_faces, tmp_path):
    """A test set made before a degradation setting existed (its manifest lacks it) is still the
    same test set when the setting is at its default; another config is refused."""
    made = make_testset(gt_faces, tmp_path / "ts", seed=0, size=64)
    manifest_path = made.lq_dir / "degradations.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("enlarge_prob", "enlarge_range"):
        del manifest["config"][key]
    for entry in manifest["files"]:
        del entry["params"]["enlarge"]
    manifest_path.write_text(json.dumps(manifest))
    found = make_testset(gt_faces, tmp_path / "ts", seed=0, size=64)
    assert not found.created and found.count == 4
    with pytest.raises(SyntheticTestSetError, match="different degradation config"):
        make_testset(gt_faces, tmp_path / "ts", seed=0, size=64, config=DegradationConfig(enlarge_prob=0.5))


def test_make_testset_refuses_a_partial_folder(gt_faces, tmp_path):
    (tmp_path / "out" / "lq").mkdir(parents=True)
    (tmp_path / "out" / "lq" / "stray.png").write_bytes(b"x")
    with pytest.raises(SyntheticTestSetError, match="partial test set"):
        make_testset(gt_faces, tmp_path / "out", seed=0, size=64)


def test_cli_make_testset(gt_faces, tmp_path, capsys):
    assert main(["make-testset", str(gt_faces), str(tmp_path / "ts"), "--seed", "3", "--size", "64"]) == 0
    assert "wrote 4 LQ/GT pairs" in capsys.readouterr().out
    assert main(["make-testset", str(gt_faces), str(tmp_path / "ts"), "--seed", "3", "--size", "64"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["make-testset", str(gt_faces), str(tmp_path / "ts"), "--seed", "4", "--size", "64"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("faceprior: error: ") and "refusing to overwrite" in error and "\n" not in error


# ----------------------------------------------------------------------------------------------
# evaluate


@pytest.fixture(scope="module")
def evaluation_runs(testset128, reference_dir, tmp_path_factory):
    """The same evaluation twice (second from the caches), with their wall times."""
    out = tmp_path_factory.mktemp("eval") / "out"
    kwargs = dict(gt_dir=testset128.gt_dir, models=[reference_dir / SMALL_CKPT],
                  metrics=["psnr", "ssim", "niqe", "lpips"], log=lambda message: None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEPRIOR_OFFLINE", "1")
        patch.setenv("FACEPRIOR_HOME", str(out.parent / "empty-home"))
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            result = evaluate(testset128.lq_dir, out, **kwargs)
            runs.append((result, time.perf_counter() - start))
    return out, runs


def test_evaluate_writes_every_report_with_the_right_columns(evaluation_runs):
    out, [(first, _), _] = evaluation_runs
    for name in ("results.md", "results.csv", "results.json", "compare.png", "compare.html"):
        assert (out / name).is_file(), name
    rows = list(csv.reader((out / "results.csv").open()))
    assert rows[0] == ["method", "psnr", "ssim", "niqe", "lpips"]
    assert [row[0] for row in rows[1:]] == ["input", "lanczos", "GFPGANv1Clean_small.pth"]
    assert all(row[3] == "" and row[4] == "" for row in rows[1:])  # unavailable: empty cells
    markdown = (out / "results.md").read_text()
    assert "| method | PSNR ↑ | SSIM ↑ | NIQE ↓ | LPIPS ↓ |" in markdown
    assert "lanczos is identical to input here" in markdown
    # compare.png: a 20 px title strip, then one 128 px row per face (4 faces, 4 px gaps);
    # columns input, model, GT (lanczos left out: it is the LQ file itself here).
    sheet = _pixels(out / "compare.png")
    assert sheet.shape == (20 + 4 * (128 + 4), 3 * 128 + 2 * 4, 3)
    page = (out / "compare.html").read_text()
    assert page.count("<tr>") == 5 and "<th>GFPGANv1Clean_small.pth</th>" in page and "<th>lanczos</th>" not in page


def test_evaluate_reports_unavailable_metrics_with_the_file_they_need(evaluation_runs):
    out, [(first, _), _] = evaluation_runs
    reasons = {m["name"]: m["unavailable"] for m in json.loads((out / "results.json").read_text())["metrics"]}
    assert reasons["psnr"] is None and reasons["ssim"] is None
    assert "niqe_pris_params.npz" in reasons["niqe"]
    assert "vgg16-397923af.pth" in reasons["lpips"]
    markdown = (out / "results.md").read_text()
    assert "niqe_pris_params.npz" in markdown and "vgg16-397923af.pth" in markdown
    assert all(row.values["lpips"] is None for row in first.table.rows)


def test_evaluate_values_equal_direct_metric_calls(evaluation_runs, testset128, reference_dir):
    out, [(first, _), _] = evaluation_runs
    rows = {row.label: row for row in first.table.rows}
    lq_files = sorted(testset128.lq_dir.glob("*.png"))
    gts = [_pixels(testset128.gt_dir / p.name) for p in lq_files]
    lqs = [_pixels(p) for p in lq_files]
    restorer = FaceRestorer(model=str(reference_dir / SMALL_CKPT), aligned="model", weight=1.0)
    restored = restorer.restore_aligned(np.stack(lqs))
    # As `faceprior restore --aligned`: a grey input (the testset's grayscale degradation) gets a grey face.
    assert any(looks_gray(x) for x in lqs)
    restored = [gray_as_rgb(y) if looks_gray(x) else y for x, y in zip(lqs, restored)]
    model_row = rows["GFPGANv1Clean_small.pth"]
    stored = [_pixels(out / model_row.extra["outputs"] / p.name) for p in lq_files]
    assert all(np.array_equal(a, b) for a, b in zip(stored, restored))  # the cached outputs are the model's
    for label, images in (("input", lqs), ("lanczos", lqs), ("GFPGANv1Clean_small.pth", list(restored))):
        expected_psnr = np.mean([psnr(x, y) for x, y in zip(images, gts)])
        expected_ssim = np.mean([ssim(x, y) for x, y in zip(images, gts)])
        assert abs(rows[label].values["psnr"] - expected_psnr) < 1e-9
        assert abs(rows[label].values["ssim"] - expected_ssim) < 1e-12
        assert rows[label].per_image["psnr"][lq_files[0].stem] == psnr(images[0], gts[0])
    saved = {m["label"]: m["mean"] for m in json.loads((out / "results.json").read_text())["methods"]}
    assert saved["input"]["psnr"] == rows["input"].values["psnr"]


def test_second_evaluation_reuses_the_caches_and_is_faster(evaluation_runs):
    out, [(first, first_seconds), (second, second_seconds)] = evaluation_runs
    model_key = first.table.rows[2].key
    assert first.restored[model_key] == 4 and first.restored["input"] == 0  # input/lanczos are the LQ files
    assert first.metric_values_computed[model_key] == 8  # psnr + ssim for 4 faces
    assert set(second.restored.values()) == {0}
    assert set(second.metric_values_computed.values()) == {0}
    assert [r.values for r in second.table.rows] == [r.values for r in first.table.rows]
    print(f"first run {first_seconds:.2f} s, second run {second_seconds:.2f} s")
    assert second_seconds < first_seconds


def test_evaluate_redoes_only_what_changed(testset128, reference_dir, tmp_path):
    lq = tmp_path / "lq"
    shutil.copytree(testset128.lq_dir, lq)
    kwargs = dict(gt_dir=testset128.gt_dir, models=[reference_dir / SMALL_CKPT], metrics=["psnr"],
                  compare_rows=0, log=lambda message: None)
    first = evaluate(lq, tmp_path / "out", **kwargs)
    changed = sorted(lq.glob("*.png"))[1]
    pixels = _pixels(changed).copy()
    pixels[:8, :8] = 255
    write_image(changed, pixels, overwrite=True)
    second = evaluate(lq, tmp_path / "out", **kwargs)
    model_key = first.table.rows[2].key
    assert second.restored[model_key] == 1
    assert second.metric_values_computed == {"input": 1, "lanczos": 0, model_key: 1}  # lanczos: memo of input
    assert not (tmp_path / "out" / "compare.png").exists()


def test_lanczos_and_input_baselines_on_smaller_lq(testset128, tmp_path):
    lq = tmp_path / "lq64"
    lq.mkdir()
    for path in sorted(testset128.lq_dir.glob("*.png")):
        write_image(lq / path.name, _pixels(path)[::2, ::2])
    result = evaluate(lq, tmp_path / "out", gt_dir=testset128.gt_dir, metrics=["psnr"], log=lambda message: None)
    rows = {row.key: row for row in result.table.rows}
    name = sorted(testset128.lq_dir.glob("*.png"))[0].stem
    small = _pixels(lq / f"{name}.png")
    lanczos = _pixels(tmp_path / "out" / "restored" / "lanczos" / f"{name}.png")
    bilinear = _pixels(tmp_path / "out" / "restored" / "input" / f"{name}.png")
    assert np.array_equal(lanczos, upscale_lanczos(small, 2.0))
    assert np.array_equal(bilinear, resize_bilinear_to(small, (128, 128)))
    assert rows["lanczos"].values["psnr"] != rows["input"].values["psnr"]
    assert "identical to input" not in (tmp_path / "out" / "results.md").read_text()
    assert "<th>lanczos</th>" in (tmp_path / "out" / "compare.html").read_text()


def test_evaluate_without_gt_reports_full_reference_metrics_unavailable(testset128, tmp_path):
    result = evaluate(testset128.lq_dir, tmp_path / "out", metrics=["psnr", "fid"], compare_rows=2,
                      log=lambda message: None)
    assert [c.unavailable for c in result.table.columns] == ["needs the GT images (--gt)"] * 2
    assert [row.key for row in result.table.rows] == ["input", "lanczos"]


def test_input_errors_are_one_line(testset128, tmp_path, capsys):
    with pytest.raises(EvaluationError, match="unknown metric"):
        parse_metric_names("psnr,bogus")
    with pytest.raises(EvaluationError, match="no GT image"):
        find_pairs(testset128.lq_dir, tmp_path)
    with pytest.raises(EvaluationError, match="no such checkpoint file"):
        ModelMethod(tmp_path / "missing.pth")
    assert main(["evaluate", "--lq", str(testset128.lq_dir), "--metrics", "psnr,bogus", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("faceprior: error: --metrics: unknown metric(s) bogus") and "\n" not in error


def test_subsample_is_evenly_spaced():
    assert [p for p in subsample(list(range(10)), 4)] == [0, 3, 6, 9]
    assert subsample(list(range(3)), 8) == [0, 1, 2]


def test_cli_evaluate_baselines_only(testset128, tmp_path, capsys):
    code = main(["evaluate", "--lq", str(testset128.lq_dir), "--gt", str(testset128.gt_dir), "--metrics", "psnr,ssim",
                 "--out", str(tmp_path / "out"), "--sample", "2", "--compare-rows", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| input |" in printed and "| lanczos |" in printed and "2 images from" in printed
    assert json.loads((tmp_path / "out" / "results.json").read_text())["settings"]["images"] == 2


# ----------------------------------------------------------------------------------------------
# ablation


def _tiny_base_config(train_dir: Path, out_dir: Path, **losses) -> TrainConfig:
    return config_from_dict({
        "task": "gfpgan",
        "model": {"arch": "GFPGANv1Clean", "fix_decoder": False, "random_arcface": True, "random_vgg": True,
                  "kwargs": {"out_size": 32, "num_style_feat": 16, "channel_multiplier": 1, "num_mlp": 2,
                             "input_is_latent": True, "different_w": True, "narrow": 0.03125, "sft_half": True},
                  "discriminator": {"channel_multiplier": 1, "narrow": 0.03125, "stddev_group": 2}},
        "data": {"train": str(train_dir), "size": 32, "num_workers": 0, "batch_size": 2,
                 "degradation": {"blur_kernel_size": 7, "blur_sigma": [0.1, 1.5], "downsample_range": [1.0, 2.0]}},
        "losses": {"r1_every": 2, **losses},
        "train": {"out_dir": str(out_dir), "total_iter": 100, "device": "cpu", "val_every": 0, "log_every": 1,
                  "num_threads": 2},
    }, source="tiny.yaml")


def test_disable_sft_makes_the_output_independent_of_the_condition_branches(reference_dir):
    from faceprior.models.loading import load_model

    model = load_model(str(reference_dir / SMALL_CKPT))
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def output() -> torch.Tensor:
        with torch.no_grad():
            return model(x, return_rgb=False, randomize_noise=False)[0]

    def perturb_conditions() -> None:
        with torch.no_grad():
            for branch in list(model.condition_scale) + list(model.condition_shift):
                for p in branch.parameters():
                    p.add_(0.5)

    before = output()
    perturb_conditions()
    assert (output() - before).abs().max() > 1e-3  # with SFT the conditions matter
    handles = disable_sft(model)
    off = output()
    perturb_conditions()
    assert torch.equal(output(), off)  # without SFT they do not
    for handle in handles:
        handle.remove()
    assert not torch.equal(output(), off)


def test_variant_configs_and_skips(tmp_path):
    base = _tiny_base_config(tmp_path, tmp_path / "base")
    configs = {v.key: variant_config(base, v, 7, tmp_path / "abl") for v in ABLATION_VARIANTS}
    assert all(c.train.total_iter == 7 for c in configs.values())
    assert configs["no-pyramid"].train.out_dir == str(tmp_path / "abl" / "runs" / "no-pyramid")
    assert configs["full"].model.kwargs["sft_half"] and not configs["sft-all-channels"].model.kwargs["sft_half"]
    assert configs["no-pyramid"].losses.pyramid == 0 and configs["full"].losses.pyramid == 1.0
    assert configs["no-identity"].losses.identity == 0 and configs["full"].losses.identity == 10.0
    assert configs["no-component"].losses.component_gan == 0 and configs["no-component"].losses.component_style == 0
    prior = _tiny_base_config(tmp_path, tmp_path / "base")
    prior.model.decoder_load_path = "decoder.pth"
    prior.model.fix_decoder = True
    variants = {variant.key: variant for variant in ABLATION_VARIANTS}
    no_prior = variant_config(prior, variants["no-prior"], 7, tmp_path)
    assert no_prior.model.decoder_load_path is None and no_prior.model.fix_decoder is False
    assert configs["full-seed1"].train.seed == configs["full"].train.seed + 1
    assert skip_reason(base, variants["full-seed1"], 7, tmp_path) is None
    assert [v.key for v in parse_variant_names("no-identity,full")] == ["full", "no-identity"]
    with pytest.raises(AblationError, match="unknown variant"):
        parse_variant_names("full,no-such")


@pytest.mark.slow
def test_ablation_trains_the_prior_first_and_every_variant_loads_it(tmp_path, testset128):
    lq32, gt32 = tmp_path / "lq32", tmp_path / "gt32"
    for src, dst in ((testset128.lq_dir, lq32), (testset128.gt_dir, gt32)):
        dst.mkdir()
        for path in sorted(src.glob("*.png"))[:4]:
            write_image(dst / path.name, _pixels(path)[::4, ::4])
    prior = config_from_dict({
        "task": "stylegan2",
        "model": {"arch": "StyleGAN2GeneratorClean", "discriminator": {"channel_multiplier": 1, "narrow": 0.03125},
                  "kwargs": {"out_size": 32, "num_style_feat": 16, "num_mlp": 2, "channel_multiplier": 1,
                             "narrow": 0.03125}},
        "data": {"train": str(gt32), "size": 32, "batch_size": 2, "num_workers": 0},
        "losses": {"pixel": 0, "perceptual": 0, "style": 0, "pyramid": 0, "gan": 1, "component_gan": 0,
                   "component_style": 0, "identity": 0, "r1": 10, "r1_every": 2, "path_length": 0},
        "train": {"out_dir": "unused", "total_iter": 100, "save_every": 2, "val_every": 0, "log_every": 1,
                  "num_threads": 1, "device": "cpu"},
    }, source="prior.yaml")
    loaded = []

    def fake_train(config, sft_off):  # a variant "trains" by loading the prior it was given
        model = create_model(config.model.arch, **config.model.kwargs, decoder_load_path=config.model.decoder_load_path,
                             fix_decoder=config.model.fix_decoder)
        loaded.append((Path(config.train.out_dir).name, config.model.decoder_load_path))
        path = Path(config.train.out_dir) / "models" / "net_g_00000001.pth"
        path.parent.mkdir(parents=True)
        torch.save({"params": model.state_dict(), "params_ema": model.state_dict()}, path)
        return path

    base = _tiny_base_config(gt32, tmp_path / "base")
    result = run_ablation(base, 1, lq32, gt32, tmp_path / "abl", variants=parse_variant_names("full,no-prior"),
                          metrics=["psnr"], train_function=fake_train, prior=prior, prior_budget=2,
                          log=lambda message: None)
    exported = tmp_path / "abl" / "runs" / "prior" / "models" / "net_g_00000002.pth"
    assert exported.is_file()
    assert loaded == [("full", str(exported)), ("no-prior", None)]
    assert result.table.settings["prior_budget"] == 2 and "StyleGAN2 prior" in " ".join(result.table.notes)
    with pytest.raises(AblationError, match="go together"):
        run_ablation(base, 1, lq32, gt32, tmp_path / "abl", prior=prior, train_function=fake_train)
    with pytest.raises(AblationError, match="task: stylegan2"):
        run_ablation(base, 1, lq32, gt32, tmp_path / "abl2", prior=base, prior_budget=1, train_function=fake_train)


@pytest.mark.slow
def test_ablation_with_a_fake_trainer_writes_the_table(tmp_path, testset128):
    lq32 = tmp_path / "lq32"
    gt32 = tmp_path / "gt32"
    for src, dst in ((testset128.lq_dir, lq32), (testset128.gt_dir, gt32)):
        dst.mkdir()
        for path in sorted(src.glob("*.png")):
            write_image(dst / path.name, _pixels(path)[::4, ::4])
    trained = []

    def fake_train(config, sft_off):
        trained.append((Path(config.train.out_dir).name, sft_off, config.train.total_iter, config.losses.identity))
        torch.manual_seed(len(trained))
        model = create_model(config.model.arch, **config.model.kwargs)
        path = Path(config.train.out_dir) / "models" / "net_g_00000003.pth"
        path.parent.mkdir(parents=True)
        torch.save({"params": model.state_dict(), "params_ema": model.state_dict()}, path)
        return path

    base = _tiny_base_config(tmp_path, tmp_path / "base")
    result = run_ablation(base, 3, lq32, gt32, tmp_path / "abl", metrics=["psnr", "ssim"], train_function=fake_train,
                          log=lambda message: None)
    assert trained == [("full", False, 3, 10.0), ("full-seed1", False, 3, 10.0), ("no-cs-sft", True, 3, 10.0),
                       ("sft-all-channels", False, 3, 10.0), ("no-pyramid", False, 3, 10.0), ("no-identity", False, 3, 0.0)]
    assert set(result.skipped) == {"no-prior", "no-component"}
    rows = list(csv.reader((tmp_path / "abl" / "ablation.csv").open()))
    assert rows[0] == ["method", "psnr", "ssim"]
    assert [row[0] for row in rows[1:]] == ["input", "full model", "full model, seed + 1", "w/o CS-SFT",
                                            "SFT (all channels)", "w/o pyramid loss", "w/o identity loss"]
    markdown = (tmp_path / "abl" / "ablation.md").read_text()
    assert "Ablation (3 iterations per variant)" in markdown and "skipped no-prior" in markdown
    assert (tmp_path / "abl" / "eval" / "compare.png").is_file()


def test_ablation_trains_the_no_sft_variant_with_the_real_trainer(tmp_path, data_dir):
    # Pixel, pyramid and GAN losses only: no VGG19 / ArcFace to build, fast.
    base = _tiny_base_config(data_dir / "faces-val-256", tmp_path / "base", perceptual=0.0, style=0.0, identity=0.0,
                             component_gan=0.0, component_style=0.0)
    lq = tmp_path / "lq"
    lq.mkdir()
    write_image(lq / "a.png", np.full((32, 32, 3), 128, np.uint8))
    write_image(lq / "b.png", np.full((32, 32, 3), 64, np.uint8))
    result = run_ablation(base, 1, lq, None, tmp_path / "abl", variants=parse_variant_names("no-cs-sft"),
                          metrics=["psnr"], train_function=train_variant, weights="raw", log=lambda message: None)
    checkpoint = result.checkpoints["no-cs-sft"]
    assert checkpoint.name == "net_g_00000001.pth"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # The condition branches got no gradient (their outputs were replaced), the rest trained.
    torch.manual_seed(0)  # the trainer builds the generator right after seeding with train.seed
    initial = create_model("GFPGANv1Clean", **base.model.kwargs).state_dict()
    condition_keys = [k for k in initial if k.startswith(("condition_scale", "condition_shift"))]
    other_keys = [k for k in initial if k.startswith("conv_body_first")]
    assert condition_keys and all(torch.equal(state["params"][k], initial[k]) for k in condition_keys)
    assert any(not torch.equal(state["params"][k], initial[k]) for k in other_keys)
    assert [row.key for row in result.table.rows][0] == "input" and len(result.table.rows) == 2


@pytest.mark.slow
def test_learned_metric_adapters_match_direct_calls(testset128, tmp_path, monkeypatch):
    """LPIPS, FID and Deg. through the runner (batched, cached) equal the metric modules' own
    functions, here with randomly initialised networks in place of the published weights."""
    import faceprior.evaluation.scores as scores
    from faceprior.metrics.fid import extract_features, fid_from_features
    from faceprior.metrics.identity import arcface_identity
    from faceprior.metrics.lpips import LPIPS, lpips_distance
    from faceprior.models.arcface import ResNetArcFace

    torch.manual_seed(0)
    lpips_model = LPIPS("alex")
    arcface = ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False).eval()
    features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    monkeypatch.setattr(scores, "load_lpips", lambda net, device="cpu": lpips_model)
    monkeypatch.setattr(scores, "load_arcface_identity", lambda device="cpu": arcface)
    monkeypatch.setattr(scores, "load_fid_inception", lambda device="cpu": features)
    result = evaluate(testset128.lq_dir, tmp_path / "out", gt_dir=testset128.gt_dir, metrics=["lpips", "fid", "deg"],
                      baselines=("input",), sample=2, compare_rows=0, log=lambda message: None)
    row = result.table.rows[0]
    names = sorted(p.name for p in testset128.lq_dir.glob("*.png"))
    names = [names[0], names[-1]]  # the evenly spaced sample of 2
    assert list(row.per_image["lpips"]) == [Path(name).stem for name in names]
    lqs = [_pixels(testset128.lq_dir / name) for name in names]
    gts = [_pixels(testset128.gt_dir / name) for name in names]
    assert np.allclose(list(row.per_image["lpips"].values()), [lpips_distance(x, y, lpips_model) for x, y in zip(lqs, gts)],
                       rtol=1e-5, atol=1e-6)
    assert np.allclose(list(row.per_image["deg"].values()), [arcface_identity(x, y, arcface).degrees
                                                            for x, y in zip(lqs, gts)], atol=1e-3)
    expected_fid = fid_from_features(extract_features(lqs, features), extract_features(gts, features))
    assert abs(row.values["fid"] - expected_fid) < 1e-6 * max(1.0, expected_fid)
    assert (tmp_path / "out" / "metrics" / "input" / "fid-features.npz").is_file()
    assert (tmp_path / "out" / "metrics" / "gt" / "fid-features.npz").is_file()
    again = evaluate(testset128.lq_dir, tmp_path / "out", gt_dir=testset128.gt_dir, metrics=["lpips", "fid", "deg"],
                     baselines=("input",), sample=2, compare_rows=0, log=lambda message: None)
    assert again.metric_values_computed == {"input": 0} and again.table.rows[0].values == row.values


def test_means_with_missing_values_average_the_same_images_in_every_row():
    from faceprior.evaluation.report import MethodRow
    from faceprior.evaluation.runner import _means_over_common_images
    from faceprior.evaluation.scores import DlibIdentityMetric

    metric = DlibIdentityMetric()
    a, b = MethodRow("a", "input"), MethodRow("b", "model")
    a.per_image[metric.name] = {"x": 0.6, "y": None, "z": 0.4}
    b.per_image[metric.name] = {"x": 0.2, "y": 0.9, "z": None}
    (note,) = _means_over_common_images(metric, [a, b])
    assert a.values[metric.name] == pytest.approx(0.6) and b.values[metric.name] == pytest.approx(0.2)  # image x only
    assert "1 of 3 images" in note and "input 1" in note and "model 1" in note
    b.per_image[metric.name]["z"] = 0.3
    a.per_image[metric.name]["y"] = 0.5
    assert _means_over_common_images(metric, [a, b]) == []
    assert a.values[metric.name] == pytest.approx(0.5) and b.values[metric.name] == pytest.approx(0.466666, rel=1e-4)
