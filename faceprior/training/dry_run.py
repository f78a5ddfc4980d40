"""A dry run of a GFP-GAN training recipe on a machine without its pretrained files.

DRY RUN, NOT TRAINING. The paper's configs (``configs/gfpgan_v1_512.yaml``,
``configs/gfpgan_clean_512.yaml``) need four pretrained files that are not downloadable
everywhere: the StyleGAN2 prior, torchvision's VGG19, ArcFace and the FFHQ eye/mouth boxes.
:func:`write_standin_files` writes seeded random files in the official formats under the
official file names, so that the unchanged training code reads them exactly as it reads the
real ones:

    prior       ``{"params_ema": state dict}`` of the config's StyleGAN2 decoder (as
                StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth)
    vgg         torchvision's VGG19 ``features.*`` tensors (as vgg19-dcbb9e9d.pth; the classifier,
                which the losses never use, is left out)
    arcface     the ResNet-18 ArcFace state dict (as arcface_resnet18.pth)
    components  ``{"00000000": {"left_eye": [x, y, half_len], "right_eye": ..., "mouth": ...}}`` at
                512 px (as FFHQ_eye_mouth_landmarks_512.pth), one entry per image of the dry run's
                data, from the FFHQ template's landmarks moved by a few seeded pixels

:func:`run_dry_run` then trains the config on a folder of faces for a few iterations with those
files: to the middle, stops, resumes from the checkpoint and goes on to the end, logging every
iteration. It checks that each loss term the config switches on (L1, pyramid, perceptual,
style, GAN, R1, the component GAN and Gram-style terms, identity) was logged finite and
non-zero, and writes OUT/dry_run.md with the iteration times and every term. The weights it
produces are meaningless; everything it writes lives under OUT and is labelled as a dry run.

Overrides for a short run, all listed in the report: the data folders; ``train.total_iter``,
``save_every`` (the middle), ``val_every``, ``log_every`` (1); ``data.val_count`` 2 and
``num_workers`` 0; ``losses.r1_every`` lowered to the number of iterations when larger, so that
the lazy R1 step runs; ``train.blowup_factor`` 0 (with random stand-ins a loss may jump by orders of
magnitude in one step, which the loop's blow-up guard would stop; non-finite values still stop it);
``optim.lr_g``, ``lr_d`` and ``lr_component`` times ``DRY_RUN_LR_SCALE`` (the clean 512 config,
whose random stand-in decoder trains, went from finite losses at iteration 1 to 1e4-1e11 at
iteration 2 and NaN at iteration 3 at the recipe's 2e-3); optionally ``--size``
(``model.kwargs.out_size`` and ``data.size``) and ``--batch-size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from faceprior.errors import FacepriorError
from faceprior.face.templates import FFHQ_TEMPLATE_512
from faceprior.imaging.files import list_image_files
from faceprior.models import create_model
from faceprior.models.arcface import ResNetArcFace
from faceprior.models.vgg import VGG19Features
from faceprior.paths import PathLike
from faceprior.training.config import TrainConfig, with_values
from faceprior.training.dataset import OFFICIAL_FRAME_SIZE, boxes_from_landmarks
from faceprior.training.logging import read_metrics
from faceprior.training.train_gfpgan import train as train_gfpgan

__all__ = ["DryRunError", "DryRunReport", "StandinFiles", "expected_terms", "run_dry_run", "write_standin_files"]

#: learning rates of a dry run, as a fraction of the config's: the code paths are the recipe's, the
#: random stand-ins cannot take the recipe's steps without diverging
DRY_RUN_LR_SCALE = 0.01

Log = Callable[[str], None]

#: Official file names, used when the config names none.
DEFAULT_NAMES = {"prior": "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth", "vgg": "vgg19-dcbb9e9d.pth",
                 "arcface": "arcface_resnet18.pth", "components": "FFHQ_eye_mouth_landmarks_512.pth"}

#: Largest seeded move of a stand-in landmark, in pixels at 512.
LANDMARK_JITTER_512 = 6.0


class DryRunError(FacepriorError, RuntimeError):
    """A dry run that cannot start (config, data, output folder) or whose loss terms were not all
    logged finite and non-zero; the message is one line."""


@dataclass
class StandinFiles:
    """The stand-in files written for a config (None: the config does not use that file)."""

    prior: Optional[Path] = None
    vgg: Optional[Path] = None
    arcface: Optional[Path] = None
    components: Optional[Path] = None

    def written(self) -> Dict[str, Path]:
        return {name: path for name, path in vars(self).items() if path is not None}


def _file_name(configured: Optional[str], kind: str) -> str:
    return Path(configured).name if configured else DEFAULT_NAMES[kind]


def _uses_identity_arcface(config: TrainConfig) -> bool:
    return config.losses.identity > 0 and config.model.identity_net == "arcface"


def write_standin_files(config: TrainConfig, data_folder: PathLike, out_dir: PathLike, seed: int = 0) -> StandinFiles:
    """Write seeded random stand-ins of the pretrained files ``config`` uses into ``out_dir``
    (see the module docstring for the formats). ``data_folder``: the faces the dry run trains
    on (the component file gets one entry per image). Returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = StandinFiles()
    model, losses = config.model, config.losses
    if model.decoder_load_path:
        torch.manual_seed(seed)
        generator = create_model(model.arch, **model.kwargs)
        files.prior = out_dir / _file_name(model.decoder_load_path, "prior")
        torch.save({"params_ema": generator.stylegan_decoder.state_dict()}, files.prior)
    if losses.perceptual > 0 or losses.style > 0:
        torch.manual_seed(seed + 1)
        files.vgg = out_dir / _file_name(model.vgg, "vgg")
        torch.save(VGG19Features().state_dict(), files.vgg)
    if _uses_identity_arcface(config):
        torch.manual_seed(seed + 2)
        files.arcface = out_dir / _file_name(model.arcface, "arcface")
        torch.save(ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False).state_dict(), files.arcface)
    if config.data.component_boxes:
        files.components = out_dir / _file_name(config.data.component_boxes, "components")
        torch.save(_standin_components(Path(data_folder), seed + 3), files.components)
    return files


def _standin_components(folder: Path, seed: int) -> dict:
    """Official-format component boxes for every image under ``folder``: keyed by the 8-digit
    index for numeric file names (as the official file) and by the relative path otherwise."""
    rng = np.random.default_rng(seed)
    entries = {}
    for path in list_image_files(folder):
        relative = path.relative_to(folder).as_posix()
        key = f"{int(path.stem):08d}" if path.stem.isdigit() else relative
        landmarks = FFHQ_TEMPLATE_512 + rng.uniform(-LANDMARK_JITTER_512, LANDMARK_JITTER_512, FFHQ_TEMPLATE_512.shape)
        boxes = boxes_from_landmarks(landmarks, OFFICIAL_FRAME_SIZE)
        entries[key] = {name: np.asarray(getattr(boxes, name), dtype=np.float32)
                        for name in ("left_eye", "right_eye", "mouth")}
    return entries


def expected_terms(config: TrainConfig) -> List[str]:
    """The logged loss names (``metrics.jsonl``) that the config's loss weights switch on."""
    losses, terms = config.losses, []
    if losses.pixel > 0:
        terms.append("l_g_pix")
    if losses.pyramid > 0:
        terms.append("l_g_pyramid")
    if losses.perceptual > 0:
        terms.append("l_g_percep")
    if losses.style > 0:
        terms.append("l_g_style")
    if losses.gan > 0:
        terms += ["l_g_gan", "l_d"]
        if losses.r1 > 0:
            terms.append("l_d_r1")
    if config.data.component_boxes and (losses.component_gan > 0 or losses.component_style > 0):
        if losses.component_gan > 0:
            terms += [f"l_g_comp_gan_{name}" for name in ("left_eye", "right_eye", "mouth")]
        if losses.component_style > 0:
            terms.append("l_g_comp_style")
        terms += [f"l_d_{name}" for name in ("left_eye", "right_eye", "mouth")]
    if config.data.component_boxes and getattr(losses, "component_pixel", 0) > 0:
        terms.append("l_g_comp_pix")
    if losses.identity > 0:
        terms.append("l_identity")
    return terms


@dataclass
class DryRunReport:
    """What a dry run did: the config it ran (with its overrides), the stand-ins, the logged
    scalars per iteration, the iteration it resumed from, and OUT/dry_run.md."""

    config: TrainConfig
    standins: StandinFiles
    overrides: Dict[str, object]
    records: List[dict]
    resumed_from: int
    terms: List[str]
    report: Path
    problems: List[str] = field(default_factory=list)


def resized_config(config: TrainConfig, size: Optional[int] = None, batch_size: Optional[int] = None
                   ) -> tuple[TrainConfig, Dict[str, object]]:
    """``config`` at another training size / batch (None keeps it) and the overrides applied;
    the stand-ins are written for this config, so that their shapes fit."""
    values: Dict[str, object] = {}
    if size is not None:
        values.update({"data.size": int(size), "model.kwargs.out_size": int(size)})
    if batch_size is not None:
        values["data.batch_size"] = int(batch_size)
    return with_values(config, values), values


def dry_run_config(config: TrainConfig, standins: StandinFiles, data_folder: PathLike, out_dir: PathLike,
                   iterations: int) -> tuple[TrainConfig, Dict[str, object]]:
    """The config of a dry run and the overrides it applied (key -> new value)."""
    overrides: Dict[str, object] = {}
    for kind, key in (("prior", "model.decoder_load_path"), ("vgg", "model.vgg"), ("arcface", "model.arcface"),
                      ("components", "data.component_boxes")):
        path = getattr(standins, kind)
        if path is not None:
            overrides[key] = str(path)
    if config.model.random_vgg:
        overrides["model.random_vgg"] = False
    if config.model.random_arcface:
        overrides["model.random_arcface"] = False
    overrides.update({"data.train": str(data_folder), "data.val": str(data_folder), "data.val_count": 2,
                      "data.num_workers": 0})
    if config.losses.r1 > 0 and config.losses.r1_every > iterations:
        overrides["losses.r1_every"] = int(iterations)
    overrides.update({"train.out_dir": str(Path(out_dir) / "run"), "train.total_iter": int(iterations),
                      "train.save_every": max(1, iterations // 2), "train.val_every": int(iterations),
                      "train.log_every": 1,
                      "train.blowup_factor": 0})  # random stand-ins may blow a loss up; this run checks finiteness only
    for key in ("lr_g", "lr_d", "lr_component"):  # random networks at the recipe's rates diverge in two steps
        overrides[f"optim.{key}"] = getattr(config.optim, key) * DRY_RUN_LR_SCALE
    return with_values(config, overrides, source=f"{config.source} [dry run]"), overrides


def run_dry_run(config: TrainConfig, data_folder: PathLike, out_dir: PathLike, iterations: int = 4,
                size: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
                log: Optional[Log] = None) -> DryRunReport:
    """Write stand-ins into OUT/standins, train ``config`` with them in OUT/run to the middle,
    resume to ``iterations``, check every expected loss term and write OUT/dry_run.md.

    Args:
        config: a GFP-GAN training config (``task: gfpgan``), e.g. configs/gfpgan_v1_512.yaml.
        data_folder: aligned square faces to train on (any size; resized to ``data.size``).
        out_dir: a new or empty folder.
        iterations: >= 2 (the run stops at iterations // 2 and resumes).
        size, batch_size: optional smaller training size / batch (for tests and small machines).
        seed: seed of the stand-in files.
    Raises DryRunError (one line) for a bad request or when a term was not logged finite and
    non-zero; the report is written in both cases once training ran.
    """
    log = log or (lambda message: None)
    if config.task != "gfpgan":
        raise DryRunError(f"{config.source}: task is {config.task!r}; the dry run is for task: gfpgan configs")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 2:
        raise DryRunError(f"--iterations must be at least 2 (the run resumes in the middle), got {iterations!r}")
    data_folder, out_dir = Path(data_folder), Path(out_dir)
    if not data_folder.is_dir() or not list_image_files(data_folder):
        raise DryRunError(f"{data_folder}: not a folder of face images")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DryRunError(f"{out_dir}: exists and is not an empty folder; a dry run starts in a new one")
    log(f"DRY RUN of {config.source}: stand-in pretrained files with seeded random weights; this is not training")
    config, resized = resized_config(config, size, batch_size)
    standins = write_standin_files(config, data_folder, out_dir / "standins", seed=seed)
    for kind, path in standins.written().items():
        log(f"dry run: stand-in {kind}: {path}")
    run_config, overrides = dry_run_config(config, standins, data_folder, out_dir, iterations)
    overrides = {**resized, **overrides}
    middle = iterations // 2
    first = train_gfpgan(run_config, resume=True, stop_at=middle)
    log(f"dry run: stopped at iteration {first['iteration']}; resuming")
    second = train_gfpgan(run_config, resume=True)
    records = read_metrics(Path(run_config.train.out_dir) / "metrics.jsonl", kind="train")
    terms = expected_terms(run_config)
    problems = _check_terms(records, terms)
    if second["resumed_from"] != middle:
        problems.append(f"the second run resumed from iteration {second['resumed_from']}, not {middle}")
    report = DryRunReport(run_config, standins, overrides, records, int(second["resumed_from"]), terms,
                          out_dir / "dry_run.md", problems)
    report.report.write_text(format_report(report), encoding="utf-8")
    if problems:
        raise DryRunError(f"{config.source}: dry run failed: {'; '.join(problems)} (see {report.report})")
    return report


def _check_terms(records: Sequence[dict], terms: Sequence[str]) -> List[str]:
    problems = []
    for term in terms:
        values = [record[term] for record in records if term in record]
        if not values:
            problems.append(f"{term} was never logged")
        elif not all(math.isfinite(value) for value in values):
            problems.append(f"{term} was not finite")
        elif all(value == 0 for value in values):
            problems.append(f"{term} was always 0")
    return problems


def format_report(report: DryRunReport) -> str:
    """OUT/dry_run.md: what ran, with which files, each iteration's time and loss terms."""
    config = report.config
    lines = [f"# DRY RUN of {config.source.removesuffix(' [dry run]')} (not training)", "",
             "Stand-in pretrained files with seeded random weights (faceprior dry-run); the weights this run "
             "produced are meaningless. It shows that every loss term of the recipe runs, logs finite values, "
             "and that the run resumes.", "",
             f"- model {config.model.arch}, {config.data.size} px, batch {config.data.batch_size}, "
             f"device {config.train.device}, {config.train.amp}",
             f"- resumed from iteration {report.resumed_from}",
             *[f"- stand-in {kind}: `{path}`" for kind, path in report.standins.written().items()],
             "- overrides: " + ", ".join(f"`{key}={value}`" for key, value in report.overrides.items()), ""]
    columns = ["sec_per_iter"] + list(report.terms)
    lines.append("| iteration | " + " | ".join(columns) + " |")
    lines.append("| ---: |" + " ---: |" * len(columns))
    for record in report.records:
        cells = [f"{record[name]:.4g}" if name in record else "" for name in columns]
        lines.append(f"| {record['iter']} | " + " | ".join(cells) + " |")
    lines.append("")
    if report.problems:
        lines.append("FAILED: " + "; ".join(report.problems))
    else:
        lines.append(f"Every term ({', '.join(report.terms)}) was logged finite and non-zero.")
    return "\n".join(lines) + "\n"
