"""The GFP-GAN ablation study (the paper's ablation section) on a small training budget.

``run_ablation`` trains each configuration below with the GFP-GAN trainer
(``faceprior.training.train_gfpgan``) for the same number of iterations, from the same seed,
then evaluates them all on one test set (``faceprior.evaluation.runner.evaluate``) and writes
the ablation table.

    full              the base config as given
    full-seed1        the base config with train.seed + 1: its distance to "full" is the
                      run-to-run spread the other rows are judged against
    no-cs-sft         "w/o CS-SFT": the spatial modulation is switched off: the condition
                      branches' outputs are replaced by scale 1 and shift 0 (``disable_sft``),
                      so the decoder only receives the latent codes; the branches get no gradient
    sft-all-channels  "SFT" instead of "CS-SFT": all decoder channels modulated
                      (``model.kwargs.sft_half: false``)
    no-prior          "w/o GFP": no pretrained StyleGAN2 prior: ``model.decoder_load_path`` and
                      ``model.pretrained`` unset, the decoder trained from scratch
                      (``model.fix_decoder: false``)
    no-pyramid        "w/o pyramid loss": ``losses.pyramid: 0``
    no-component      "w/o component loss": ``losses.component_gan: 0``, ``component_style: 0``
    no-identity       "w/o identity loss": ``losses.identity: 0``

With a prior config (``prior``, task stylegan2), the StyleGAN2 prior is trained first in
OUT/runs/prior/ for ``prior_budget`` iterations and becomes the base's ``model.decoder_load_path``,
so that the whole study runs from scratch on a machine without pretrained priors.

Each variant trains in OUT/runs/<variant>/ (``train.out_dir``; ``train.total_iter`` = the
budget; everything else, schedules included, as in the base config). Runs resume from their
newest checkpoint, so running the same command again trains nothing more and the evaluation
comes from its caches. A variant that would train exactly the full model with this base
config (e.g. no-prior when the base loads no prior) is skipped and the table says why.

Outputs: OUT/ablation.md / .csv / .json (one row per variant plus the degraded input) and the
evaluation folder OUT/eval/ (see ``evaluate``: results.*, compare.png / .html, caches).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.evaluation.methods import ModelMethod
from faceprior.evaluation.pairs import EvaluationError
from faceprior.evaluation.report import ResultsTable, write_table_files
from faceprior.evaluation.runner import evaluate
from faceprior.evaluation.scores import DEFAULT_METRICS
from faceprior.models.loading import load_model
from faceprior.paths import PathLike
from faceprior.training.checkpointing import exported_model_path
from faceprior.training.config import TrainConfig, config_from_dict, config_to_dict, with_values
from faceprior.training.loop import run_training
from faceprior.training.train_gfpgan import GFPGANTrainer
from faceprior.training.train_stylegan2 import StyleGAN2Trainer

Log = Callable[[str], None]


class AblationError(FacepriorError, ValueError):
    """A bad ablation request (variant names, budget); the message is one line."""


def _log_to_stderr(message: str) -> None:
    print(f"faceprior: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# switching the spatial modulation off


def disable_sft(model: nn.Module) -> List[Any]:
    """Make a GFP-GAN generator ignore its SFT conditions: forward hooks replace every
    ``condition_scale[i]`` output with ones and every ``condition_shift[i]`` output with zeros,
    so ``feat * scale + shift`` leaves the decoder features unchanged.

    Works for GFPGANv1, GFPGANv1Clean and GFPGANBilinear (their ``condition_scale`` /
    ``condition_shift`` ModuleLists). Hooks are not part of the state dict: apply this again
    after loading a checkpoint of such a model. Returns the hook handles (``.remove()`` undoes).
    """
    if not hasattr(model, "condition_scale") or not hasattr(model, "condition_shift"):
        raise AblationError(f"{type(model).__name__} has no condition_scale / condition_shift branches to switch off")
    handles = []
    for branch in model.condition_scale:
        handles.append(branch.register_forward_hook(lambda module, inputs, output: torch.ones_like(output)))
    for branch in model.condition_shift:
        handles.append(branch.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output)))
    return handles


# ----------------------------------------------------------------------------------------------
# variants


@dataclass(frozen=True)
class AblationVariant:
    """One configuration of the study.

    key: folder-safe name (``--variants``). label: row title (the paper's wording).
    description: what changes. overrides: function of the base config dict (``config_to_dict``)
    that edits it in place. sft_off: train and evaluate with ``disable_sft``.
    """

    key: str
    label: str
    description: str
    overrides: Callable[[Dict[str, Any]], None]
    sft_off: bool = False


def _unchanged(config: Dict[str, Any]) -> None:
    return None


def _next_seed(config: Dict[str, Any]) -> None:
    config["train"]["seed"] = int(config["train"]["seed"]) + 1


def _sft_all_channels(config: Dict[str, Any]) -> None:
    config["model"]["kwargs"]["sft_half"] = False


def _no_prior(config: Dict[str, Any]) -> None:
    config["model"]["decoder_load_path"] = None
    config["model"]["pretrained"] = None
    config["model"]["fix_decoder"] = False


def _no_pyramid(config: Dict[str, Any]) -> None:
    config["losses"]["pyramid"] = 0.0


def _no_component(config: Dict[str, Any]) -> None:
    config["losses"]["component_gan"] = 0.0
    config["losses"]["component_style"] = 0.0


def _no_identity(config: Dict[str, Any]) -> None:
    config["losses"]["identity"] = 0.0


FULL = AblationVariant("full", "full model", "the base config", _unchanged)
ABLATION_VARIANTS = (
    FULL,
    AblationVariant("full-seed1", "full model, seed + 1", "train.seed + 1 (the run-to-run spread)", _next_seed),
    AblationVariant("no-cs-sft", "w/o CS-SFT", "SFT conditions switched off (scale 1, shift 0)", _unchanged,
                    sft_off=True),
    AblationVariant("sft-all-channels", "SFT (all channels)", "model.kwargs.sft_half: false", _sft_all_channels),
    AblationVariant("no-prior", "w/o GFP", "no pretrained decoder (decoder_load_path, pretrained unset; "
                    "fix_decoder: false)", _no_prior),
    AblationVariant("no-pyramid", "w/o pyramid loss", "losses.pyramid: 0", _no_pyramid),
    AblationVariant("no-component", "w/o component loss", "losses.component_gan, component_style: 0", _no_component),
    AblationVariant("no-identity", "w/o identity loss", "losses.identity: 0", _no_identity),
)


def parse_variant_names(text: Optional[str]) -> List[AblationVariant]:
    """"full,no-pyramid" -> those variants (in the study's order); None or "" -> all of them.
    AblationError names unknown keys."""
    if not text:
        return list(ABLATION_VARIANTS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = {variant.key: variant for variant in ABLATION_VARIANTS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise AblationError(f"--variants: unknown variant(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return [variant for variant in ABLATION_VARIANTS if variant.key in names]


def variant_config(base: TrainConfig, variant: AblationVariant, budget: int, out_dir: PathLike) -> TrainConfig:
    """The training config of one variant: the base with the variant's overrides,
    ``train.total_iter = budget`` and ``train.out_dir = out_dir/runs/<variant key>``."""
    data = copy.deepcopy(config_to_dict(base))
    variant.overrides(data)
    data["train"]["total_iter"] = int(budget)
    data["train"]["out_dir"] = str(Path(out_dir) / "runs" / variant.key)
    return config_from_dict(data, source=f"{base.source} [{variant.key}]")


def skip_reason(base: TrainConfig, variant: AblationVariant, budget: int, out_dir: PathLike) -> Optional[str]:
    """Why ``variant`` would train the same model as the full one with this base config, or None."""
    if variant.key == FULL.key:
        return None
    if variant.key == "no-prior" and not (base.model.decoder_load_path or base.model.pretrained):
        return "the base config loads no pretrained decoder (model.decoder_load_path / model.pretrained)"
    if variant.key == "no-component" and not base.data.component_boxes:
        return "the base config trains without facial components (data.component_boxes is not set)"
    if variant.sft_off:
        return None
    mine = config_to_dict(variant_config(base, variant, budget, out_dir))
    full = config_to_dict(variant_config(base, FULL, budget, out_dir))
    mine["train"]["out_dir"] = full["train"]["out_dir"]
    if mine == full:
        return "the base config already has this setting"
    return None


# ----------------------------------------------------------------------------------------------
# training


TrainFunction = Callable[[TrainConfig, bool], Path]

# Which generator of an exported checkpoint is evaluated (``run_ablation(weights=...)``).
WEIGHT_KEYS = {"ema": "params_ema", "raw": "params"}


class GFPGANTrainerWithoutSFT(GFPGANTrainer):
    """``GFPGANTrainer`` whose generator and its EMA ignore the SFT conditions (``disable_sft``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        disable_sft(self.net_g)
        disable_sft(self.net_g_ema)


def train_variant(config: TrainConfig, sft_off: bool) -> Path:
    """Train one variant with the GFP-GAN trainer (resuming its run folder) and return the
    exported generator of its last iteration (``models/net_g_<iteration>.pth``)."""
    trainer_class = GFPGANTrainerWithoutSFT if sft_off else GFPGANTrainer
    result = run_training(trainer_class, config, resume=True)
    path = exported_model_path(config.train.out_dir, int(result["iteration"]))
    if not path.is_file():
        raise AblationError(f"{path}: training finished but the exported generator is missing")
    return path


def train_prior(prior: TrainConfig, budget: int, out_dir: PathLike, log: Log = _log_to_stderr) -> Path:
    """Train the StyleGAN2 prior config ``prior`` for ``budget`` iterations in OUT/runs/prior
    (resuming it) and return its exported generator (``models/net_g_<budget>.pth``)."""
    if prior.task != "stylegan2":
        raise AblationError(f"{prior.source}: task is {prior.task!r}; --prior needs a task: stylegan2 config")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise AblationError(f"--prior-budget must be a positive number of iterations, got {budget!r}")
    config = with_values(prior, {"train.total_iter": int(budget), "train.out_dir": str(Path(out_dir) / "runs" / "prior")},
                         source=f"{prior.source} [prior]")
    log(f"ablation: training the StyleGAN2 prior for {budget} iterations in {config.train.out_dir}")
    result = run_training(StyleGAN2Trainer, config, resume=True)
    path = exported_model_path(config.train.out_dir, int(result["iteration"]))
    if not path.is_file():
        raise AblationError(f"{path}: training finished but the exported prior is missing")
    return path


def with_prior(base: TrainConfig, prior_path: PathLike) -> TrainConfig:
    """The base config with ``model.decoder_load_path`` = ``prior_path``."""
    return with_values(base, {"model.decoder_load_path": str(prior_path)})


# ----------------------------------------------------------------------------------------------
# the study


@dataclass
class AblationResult:
    """The ablation table, the files written, each trained variant's checkpoint, and the
    skipped variants with their reasons."""

    table: ResultsTable
    files: Dict[str, Path]
    checkpoints: Dict[str, Path]
    skipped: Dict[str, str]


def run_ablation(base: TrainConfig, budget: int, lq_dir: PathLike, gt_dir: Optional[PathLike], out_dir: PathLike,
                 variants: Sequence[AblationVariant] = ABLATION_VARIANTS, metrics: Sequence[str] = DEFAULT_METRICS,
                 train_function: TrainFunction = train_variant, device: Union[str, torch.device] = "cpu",
                 batch_size: int = 4, sample: Optional[int] = None, weights: str = "ema",
                 prior: Optional[TrainConfig] = None, prior_budget: Optional[int] = None,
                 log: Log = _log_to_stderr) -> AblationResult:
    """Train every variant for ``budget`` iterations and evaluate them (see the module docstring).

    Args:
        base: the full model's training config (``task: gfpgan``).
        budget: training iterations per variant (>= 1).
        lq_dir, gt_dir: the test set (e.g. ``faceprior make-testset``); gt_dir may be None
            (no-reference metrics only).
        out_dir: OUT (runs/, eval/, ablation.*).
        variants: which configurations (default all, ``ABLATION_VARIANTS``).
        metrics: evaluation metrics (names of ``faceprior.evaluation.runner.METRIC_NAMES``).
        train_function: (config, sft_off) -> exported generator checkpoint; default
            ``train_variant`` (the GFP-GAN trainer). Tests pass a fake.
        device, batch_size, sample: for the evaluation (see ``evaluate``).
        weights: evaluate each run's EMA generator ("ema", ``params_ema``, as the official
            evaluation) or its raw generator ("raw", ``params``). The EMA has a half-life of
            ``train.ema_half_life_images`` training images (10k): with budgets shorter than a few
            half-lives it is still close to the initial weights, so "raw" compares better there.
        prior, prior_budget: a StyleGAN2 config trained first for prior_budget iterations
            (``train_prior``) whose generator becomes the base's ``model.decoder_load_path``.
        log: progress messages.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise AblationError(f"--budget must be a positive number of iterations, got {budget!r}")
    if base.task != "gfpgan":
        raise AblationError(f"{base.source}: task is {base.task!r}; the ablation trains task gfpgan")
    if not variants:
        raise AblationError("no variants to train")
    if weights not in WEIGHT_KEYS:
        raise AblationError(f"--weights must be one of {', '.join(WEIGHT_KEYS)}, got {weights!r}")
    if (prior is None) != (prior_budget is None):
        raise AblationError("--prior and --prior-budget go together")
    out_dir = Path(out_dir)
    if prior is not None:
        base = with_prior(base, train_prior(prior, prior_budget, out_dir, log=log))
    checkpoints: Dict[str, Path] = {}
    skipped: Dict[str, str] = {}
    methods: List[ModelMethod] = []
    for variant in variants:
        reason = skip_reason(base, variant, budget, out_dir)
        if reason is not None:
            skipped[variant.key] = reason
            log(f"ablation: skipping {variant.key}: {reason}")
            continue
        config = variant_config(base, variant, budget, out_dir)
        log(f"ablation: training {variant.key} ({variant.description}) for {budget} iterations in {config.train.out_dir}")
        checkpoint = Path(train_function(config, variant.sft_off))
        checkpoints[variant.key] = checkpoint
        model = load_model(str(checkpoint), key=WEIGHT_KEYS[weights])
        if variant.sft_off:
            disable_sft(model)
        methods.append(ModelMethod(
            model, device=device, batch_size=batch_size, label=variant.label,
            description=f"{checkpoint} ({WEIGHT_KEYS[weights]}" + (", SFT conditions switched off)" if variant.sft_off else ")"),
            extra_settings={"sft": "off"} if variant.sft_off else None))
    try:
        evaluation = evaluate(lq_dir, out_dir / "eval", gt_dir=gt_dir, models=methods, metrics=metrics, sample=sample,
                              device=device, batch_size=batch_size, baselines=("input",),
                              title=f"Ablation ({budget} iterations per variant)", log=log)
    except EvaluationError as error:
        raise AblationError(str(error)) from None
    table = evaluation.table
    keys = {method.key: variant for method, variant in zip(methods, [v for v in variants if v.key not in skipped])}
    for row in table.rows:
        variant = keys.get(row.key)
        if variant is not None:
            row.extra = {**row.extra, "variant": variant.key, "change": variant.description,
                         "checkpoint": str(checkpoints[variant.key]), "budget": budget}
    table.notes += [f"{variant.label}: {variant.description}" for variant in variants if variant.key not in skipped]
    table.notes += [f"skipped {key}: {reason}" for key, reason in skipped.items()]
    table.notes.append(f"each variant's {'EMA' if weights == 'ema' else 'raw (non-EMA)'} generator "
                       f"({WEIGHT_KEYS[weights]}) after {budget} iterations")
    table.settings = {**table.settings, "base_config": base.source, "budget": budget, "weights": weights,
                      "variants": [variant.key for variant in variants]}
    if prior is not None:
        table.settings.update(prior_config=prior.source, prior_budget=prior_budget)
        table.notes.append(f"StyleGAN2 prior: {prior.source}, {prior_budget} iterations ({base.model.decoder_load_path})")
    files = write_table_files(table, out_dir, stem="ablation")
    return AblationResult(table, files, checkpoints, skipped)
