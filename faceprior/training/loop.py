"""The training driver shared by the GFP-GAN and StyleGAN2 trainers.

:func:`run_training` does everything that is not specific to one model, once:

1. joins the process group (:mod:`faceprior.training.distributed`), sets threads, opens the
   rank-0 logger, writes ``config.yaml``;
2. seeds every RNG with ``train.seed`` and builds the trainer (identical initial weights on all
   processes), then re-seeds with ``seed + rank`` so each process draws its own noise;
3. resumes from the newest checkpoint of ``train.out_dir`` (modules, optimisers, trainer state,
   data position, per-rank RNG states);
4. runs the iterations: learning rates, ``grad_accum`` micro-batches from the
   :class:`~faceprior.training.distributed.BatchStream`, ``trainer.train_step``, logging every
   ``log_every``, validation on rank 0 every ``val_every``, an atomic checkpoint every
   ``save_every`` and at the end.

A trainer subclasses :class:`TrainerBase`: it builds its networks, registers what is saved
(``self.modules``, ``self.optimizers``), and implements ``train_step`` and ``validate``.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from faceprior.errors import FacepriorError
from faceprior.models.loading import describe_network, load_state_dict_strict, resolve_model
from faceprior.progress import format_duration
from faceprior.training.checkpointing import (
    TRAINING_STATE_FORMAT,
    TRAINING_STATE_VERSION,
    capture_rng_state,
    checkpoint_path,
    export_generator,
    exported_model_path,
    find_latest_checkpoint,
    list_checkpoints,
    prune_run_files,
    remove_stale_temporary_files,
    restore_rng_state,
    save_training_state,
)
from faceprior.training.config import TrainConfig, config_to_yaml, ema_decay, save_config
from faceprior.training.distributed import (
    BatchStream,
    DistributedContext,
    all_gather_objects,
    cleanup_distributed,
    reduce_mean,
    setup_distributed,
)
from faceprior.training.logging import NullLogger, ScalarLogger
from faceprior.training.losses import gan_loss_wgan_softplus, lazy_r1_loss
from faceprior.weights.catalogue import UnknownWeightsError
from faceprior.weights.checkpoint import CheckpointError

__all__ = [
    "ResumeError",
    "StepLogs",
    "TrainingDivergedError",
    "TrainerBase",
    "check_loss_blowup",
    "lr_factor",
    "read_warm_start",
    "run_training",
    "seed_everything",
    "set_requires_grad",
    "to_uint8",
]


class ResumeError(FacepriorError, RuntimeError):
    """A run folder cannot be (re)used as asked; one-line message."""


class TrainingDivergedError(FacepriorError, RuntimeError):
    """Losses or weights became NaN / infinite; no checkpoint of the diverged state is written."""


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StepLogs(dict):
    """The scalars of one training iteration, ``{name: tensor}``. ``add`` accumulates a micro-batch's
    value divided by ``accum``, so after all micro-batches each entry is their mean."""

    def __init__(self, accum: int):
        super().__init__()
        self.accum = accum

    def add(self, name: str, value: torch.Tensor) -> None:
        self[name] = self.get(name, 0) + value.detach() / self.accum


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(flag)


def discriminator_backward(ctx: DistributedContext, net_d: nn.Module, fake: torch.Tensor, real: torch.Tensor,
                           r1_weight: float, r1_every: int, do_r1: bool, last_micro_batch: bool,
                           accum: int, add) -> None:
    """One micro-batch of the StyleGAN2 discriminator step (both trainers): softplus logistic
    loss on real and fake images, plus the lazy R1 penalty when ``do_r1`` (``real`` must then
    require grad), backpropagated divided by ``accum``; DDP gradient sync only on the last
    micro-batch. ``add(name, value)`` records the logged scalars."""
    with ctx.no_sync(net_d, not last_micro_batch):
        with ctx.autocast():
            fake_pred = net_d(fake).float()
            real_pred = net_d(real).float()
        l_d = gan_loss_wgan_softplus(real_pred, True, is_disc=True) + gan_loss_wgan_softplus(
            fake_pred, False, is_disc=True)
        total = l_d
        if do_r1:
            l_d_r1 = lazy_r1_loss(real_pred, real, r1_weight, r1_every)
            total = total + l_d_r1
            add("l_d_r1", l_d_r1)
        (total / accum).backward()
    add("l_d", l_d)
    add("real_score", real_pred.mean())
    add("fake_score", fake_pred.mean())


def lr_factor(iteration: int, milestones: Sequence[int], gamma: float) -> float:
    """Multi-step schedule: ``gamma ** (number of milestones <= iteration)`` (1-based iterations)."""
    return gamma ** sum(1 for m in milestones if m <= iteration)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 [0, 255] (clamped and rounded, as basicsr ``tensor2img``)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def read_warm_start(spec: str, what: str, arch: Optional[str] = None) -> tuple[dict[str, torch.Tensor], str]:
    """State dict of a warm start: any model spec (a catalogue name, fetched and checked; a path;
    a URL), loaded through :func:`faceprior.models.loading.resolve_model` as ``arch`` (default:
    recognised from the file). Returns (state dict, source). Errors are one line naming ``what``."""
    try:
        descriptor = resolve_model(spec, arch=arch)
    except UnknownWeightsError as error:
        raise UnknownWeightsError(f"{what}: {error}") from None
    return descriptor.network.state_dict(), descriptor.source


class TrainerBase:
    """What both trainers share: optimisers with lazy-regularisation scaling, the LR schedule,
    the generator EMA, and the checkpointed state.

    Subclasses set ``self.train_dataset`` and fill ``self.modules`` (bare modules saved in
    checkpoints, by name) and ``self.optimizers``; they must define ``net_g`` and ``net_g_ema``.
    """

    task = ""

    def __init__(self, config: TrainConfig, ctx: DistributedContext, log: NullLogger):
        self.config = config
        self.ctx = ctx
        self.log = log
        self.device = ctx.device
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lrs: dict[str, float] = {}
        self.ema_decay = ema_decay(config, ctx.world_size)
        self.train_dataset: Optional[Dataset] = None
        self.net_g: nn.Module
        self.net_g_ema: nn.Module

    # -- building --------------------------------------------------------------------------

    def make_adam(self, name: str, params: Iterable[nn.Parameter], lr: float, betas: Sequence[float],
                  reg_ratio: float = 1.0) -> torch.optim.Optimizer:
        """Adam with lazy-regularisation scaling: betas ``b ** reg_ratio``, lr ``lr * reg_ratio``
        if ``optim.lazy_reg_lr_scaling`` (see OptimConfig). Registered as ``self.optimizers[name]``."""
        if self.config.optim.lazy_reg_lr_scaling:
            lr = lr * reg_ratio
        betas = (float(betas[0]) ** reg_ratio, float(betas[1]) ** reg_ratio)
        optimizer = torch.optim.Adam(list(params), lr=lr, betas=betas)
        self.optimizers[name] = optimizer
        self.base_lrs[name] = lr
        return optimizer

    def make_ema(self, net_g: nn.Module) -> nn.Module:
        """A frozen copy of the generator, in eval mode (the EMA starts equal to G)."""
        ema = copy.deepcopy(net_g).eval()
        for param in ema.parameters():
            param.requires_grad_(False)
        return ema

    def load_pretrained(self, module: nn.Module, spec: Optional[str], what: str) -> None:
        """Warm start ``module`` strictly from ``spec`` (a model spec: path or catalogue name), if given,
        reading the file as ``module``'s architecture."""
        if spec:
            state_dict, source = read_warm_start(spec, what, arch=describe_network(module).arch)
            load_state_dict_strict(module, state_dict, source=source)
            self.log.info(f"{what}: warm start from {source}")

    # -- per iteration ---------------------------------------------------------------------

    def set_learning_rates(self, iteration: int) -> dict[str, float]:
        """Apply the multi-step schedule for ``iteration``; returns {"lr_<optimizer>": lr}."""
        factor = lr_factor(iteration, self.config.optim.milestones, self.config.optim.gamma)
        lrs = {}
        for name, optimizer in self.optimizers.items():
            lr = self.base_lrs[name] * factor
            for group in optimizer.param_groups:
                group["lr"] = lr
            lrs[f"lr_{name.removeprefix('optimizer_')}"] = lr
        return lrs

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * G`` over all parameters (official ``model_ema``)."""
        params = dict(self.net_g.named_parameters())
        ema_params, g_params = [], []
        for name, ema_param in self.net_g_ema.named_parameters():
            ema_params.append(ema_param)
            g_params.append(params[name].detach())
        torch._foreach_mul_(ema_params, self.ema_decay)
        torch._foreach_add_(ema_params, g_params, alpha=1 - self.ema_decay)

    def train_step(self, iteration: int, micro_batches: list[dict]) -> dict[str, torch.Tensor]:
        """One iteration over ``grad_accum`` micro-batches; returns detached scalar tensors to log."""
        raise NotImplementedError

    def validate(self, iteration: int) -> None:
        """Rank 0 only: evaluate / write samples (must not touch the global RNGs' streams)."""

    # -- checkpoint state ------------------------------------------------------------------

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass

    def load_checkpoint_state(self, state: Mapping[str, Any], source: str) -> None:
        """Restore modules (strictly) and optimisers from a training state."""
        modules, optimizers = state["modules"], state["optimizers"]
        missing = [n for n in list(self.modules) + list(self.optimizers) if n not in modules and n not in optimizers]
        if missing:
            raise CheckpointError(source, f"has no state for {', '.join(missing)} (was it written with another config?)")
        for name, module in self.modules.items():
            load_state_dict_strict(module, modules[name], source=f"{source} [{name}]")
        for name, optimizer in self.optimizers.items():
            try:
                optimizer.load_state_dict(optimizers[name])
            except (ValueError, KeyError) as error:
                raise CheckpointError(source, f"optimizer {name} does not fit: {' '.join(str(error).split())}") from None
        self.load_extra_state(state.get("extra", {}))


def _data_position(stream: BatchStream, ctx: DistributedContext) -> dict[str, int]:
    return {"epoch": stream.epoch, "samples_done": stream.batches_done * stream.batch_size * ctx.world_size}


def _restore_data_position(stream: BatchStream, position: Mapping[str, int], ctx: DistributedContext) -> None:
    batches = int(position["samples_done"]) // (stream.batch_size * ctx.world_size)
    stream.load_position({"epoch": int(position["epoch"]), "batches_done": batches})


def _save_checkpoint(trainer: TrainerBase, stream: BatchStream, iteration: int) -> None:
    """Collective (all ranks): gather RNG states; rank 0 writes the state and the exported generator."""
    ctx, config = trainer.ctx, trainer.config
    bad = [name for name, module in trainer.modules.items()
           if not all(bool(torch.isfinite(p).all()) for p in module.parameters())]
    if bad:  # identical on every rank (DDP keeps the weights in sync)
        raise TrainingDivergedError(f"non-finite weights in {', '.join(bad)} at iteration {iteration}; not saved "
                                    f"(the newest checkpoint in {config.train.out_dir} is the last finite state)")
    rng_states = all_gather_objects(capture_rng_state(ctx.device), ctx)
    if ctx.is_main:
        out_dir = Path(config.train.out_dir)
        factor = lr_factor(iteration, config.optim.milestones, config.optim.gamma)
        state = {
            "format": TRAINING_STATE_FORMAT,
            "version": TRAINING_STATE_VERSION,
            "task": trainer.task,
            "iteration": iteration,
            "world_size": ctx.world_size,
            "data_position": _data_position(stream, ctx),
            "modules": {name: module.state_dict() for name, module in trainer.modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers.items()},
            "schedulers": {name: {"base_lr": trainer.base_lrs[name], "lr": trainer.base_lrs[name] * factor,
                                  "milestones": list(config.optim.milestones), "gamma": config.optim.gamma}
                           for name in trainer.optimizers},
            "rng": rng_states,
            "extra": trainer.extra_state(),
            "config": config_to_yaml(config),
        }
        save_training_state(state, checkpoint_path(out_dir, iteration))
        export_generator(exported_model_path(out_dir, iteration), trainer.net_g, trainer.net_g_ema)
        prune_run_files(out_dir, config.train.keep_checkpoints, config.train.keep_generators_every)
    ctx.barrier()


def _resume(trainer: TrainerBase, stream: BatchStream, ctx: DistributedContext, log: NullLogger) -> int:
    """Load the newest checkpoint of the run folder, if any; returns the iteration it ends."""
    found = find_latest_checkpoint(trainer.config.train.out_dir)
    if found is None:
        return 0
    path, state = found
    if state.get("task") != trainer.task:
        raise ResumeError(f"{path}: a {state.get('task')} checkpoint, but the config trains {trainer.task}")
    trainer.load_checkpoint_state(state, str(path))
    _restore_data_position(stream, state["data_position"], ctx)
    iteration = int(state["iteration"])
    rng = state.get("rng") or []
    if len(rng) == ctx.world_size:
        restore_rng_state(rng[ctx.rank], ctx.device)
    else:
        log.info(f"note: {path} was written by {len(rng)} process(es), this run has {ctx.world_size}: "
                 "random streams are re-seeded")
        seed_everything(trainer.config.train.seed + ctx.rank + 1_000_003 * iteration)
    log.info(f"resumed from {path} (iteration {iteration}, epoch {stream.epoch})")
    return iteration


def _validate(trainer: TrainerBase, iteration: int) -> None:
    """Rank 0: ``trainer.validate`` with the RNG states put back afterwards, so that validating (or
    not, in a run resumed elsewhere) never changes the training's random streams."""
    ctx = trainer.ctx
    if ctx.is_main:
        rng_state = capture_rng_state(ctx.device)
        trainer.validate(iteration)
        restore_rng_state(rng_state, ctx.device)
    ctx.barrier()


def check_loss_blowup(means: dict[str, float], history: dict[str, list[float]], factor: float, iteration: int,
                  out_dir: str) -> None:
    """Raise TrainingDivergedError when a generator loss (``l_g*``) of this log window exceeds
    ``factor`` times the median of its earlier windows (``history``, updated here); 0: off.

    The median, not the minimum: regularisers such as the path-length penalty hover near zero and
    jump by 10-100x between windows in a healthy run; a blow-up is x10^4 and more."""
    if factor <= 0:
        return
    for name, value in means.items():
        if not name.startswith("l_g"):
            continue
        earlier = history.setdefault(name, [])
        typical = statistics.median(earlier) if earlier else None
        if typical is not None and typical > 0 and value > factor * typical:
            raise TrainingDivergedError(
                f"{name} rose from {typical:.4g} (median so far) to {value:.4g} (more than x{factor:g}) at iteration "
                f"{iteration}: the weights blew up; resume from the newest checkpoint in {out_dir} (written before "
                f"this) with lower learning rates, or raise train.blowup_factor")
        earlier.append(value)


def _format_scalars(scalars: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in scalars.items())


def run_training(trainer_class: type, config: TrainConfig, resume: bool = True,
                 stop_at: Optional[int] = None, ctx: Optional[DistributedContext] = None,
                 minutes: Optional[float] = None) -> dict:
    """Train ``config`` with ``trainer_class`` (a :class:`TrainerBase` subclass).

    Args:
        resume: continue from the newest checkpoint in ``train.out_dir`` if there is one; with
            False, an out_dir that already holds checkpoints is refused (ResumeError).
        stop_at: stop after this iteration (a checkpoint is written), e.g. to split a run in
            chunks; the schedule still follows ``train.total_iter``.
        minutes: also stop (the same way) after the first iteration that ends this many minutes
            after training began, validation and saving included: a run on a machine lent for a
            fixed time ends with a checkpoint to resume from, whatever its speed. All processes
            stop at the same iteration.
        ctx: a process context (default: from torchrun's environment, see ``setup_distributed``).
    Returns:
        {"iteration": last iteration done, "out_dir": path, "resumed_from": iteration or 0}.
    """
    own_context = ctx is None
    ctx = ctx if ctx is not None else setup_distributed(config.train.device, config.train.amp)
    log: NullLogger = NullLogger()
    try:
        run = config.train
        if run.num_threads:
            torch.set_num_threads(run.num_threads)
        out_dir = Path(run.out_dir)
        if not resume and list_checkpoints(out_dir):
            raise ResumeError(f"{out_dir} already holds checkpoints; resume, or pick another train.out_dir")
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporary_files(out_dir)
            save_config(config, out_dir / "config.yaml")
            log = ScalarLogger(out_dir)
        ctx.barrier()

        seed_everything(run.seed)
        trainer = trainer_class(config, ctx, log)
        stream = BatchStream(trainer.train_dataset, config.data.batch_size, ctx, seed=run.seed,
                             num_workers=config.data.num_workers)
        start = _resume(trainer, stream, ctx, log) if resume else 0
        if start == 0:
            seed_everything(run.seed + ctx.rank)
        log.info(f"{trainer.task}: {len(trainer.train_dataset)} training images, global batch "
                 f"{config.global_batch(ctx.world_size)} ({ctx.world_size} process(es) x {config.data.batch_size}"
                 f" x {run.grad_accum} accumulation), EMA decay {trainer.ema_decay:.6f}, device {ctx.device}"
                 f"{', bf16 autocast' if ctx.amp_dtype is not None else ''}")
        log.info(f"training states go to {out_dir / 'checkpoints'} every {run.save_every} iterations (a killed run "
                 f"resumes from the newest), generator weights to {out_dir / 'models'}, scalars to "
                 f"{out_dir / 'metrics.jsonl'}")

        end = run.total_iter if stop_at is None else min(run.total_iter, stop_at)
        run_start, run_start_iteration = time.monotonic(), start
        deadline = None if minutes is None else run_start + 60.0 * minutes
        if start == 0 and run.val_every > 0:
            _validate(trainer, 0)

        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=ctx.device))
        window, window_seconds = 0, 0.0  # iterations and their time (data + step, not validation / saving)
        loss_history: dict[str, list[float]] = {}  # logged generator losses of this process, for check_loss_blowup
        iteration = start
        for iteration in range(start + 1, end + 1):
            step_start = time.perf_counter()
            lrs = trainer.set_learning_rates(iteration)
            micro_batches = [next(stream) for _ in range(run.grad_accum)]
            scalars = trainer.train_step(iteration, micro_batches)
            for name, value in scalars.items():
                sums[name] = sums[name] + value.detach().float()
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            window += 1
            window_seconds += time.perf_counter() - step_start
            out_of_time = deadline is not None and reduce_mean(
                {"late": torch.tensor(float(time.monotonic() >= deadline))}, ctx)["late"] > 0
            if out_of_time:
                end = iteration

            if iteration % run.log_every == 0 or iteration == end:
                means = reduce_mean({name: total / window for name, total in sums.items()}, ctx)
                means.update(lrs)
                means["sec_per_iter"] = window_seconds / window
                means["epoch"] = stream.epoch
                log.log_scalars("train", iteration, means)
                remaining = (end - iteration) * (time.monotonic() - run_start) / max(iteration - run_start_iteration, 1)
                log.info(f"[{iteration}/{run.total_iter}] {_format_scalars(means)} ETA {format_duration(remaining)}"
                         + (f" (to iteration {end})" if end != run.total_iter else ""))
                diverged = sorted(name for name, value in means.items() if not math.isfinite(value))
                if diverged:
                    raise TrainingDivergedError(
                        f"non-finite {', '.join(diverged)} at iteration {iteration}: the run diverged; resume from the "
                        f"newest checkpoint in {run.out_dir} with lower learning rates (or train.amp: fp32)")
                check_loss_blowup(means, loss_history, run.blowup_factor, iteration, run.out_dir)
                sums.clear()
                window, window_seconds = 0, 0.0

            if run.val_every > 0 and (iteration % run.val_every == 0 or iteration == run.total_iter):
                _validate(trainer, iteration)

            if iteration % run.save_every == 0 or iteration == end:
                _save_checkpoint(trainer, stream, iteration)
            if out_of_time:
                log.info(f"stopped after {format_duration(time.monotonic() - run_start)} (--minutes {minutes:g}) at "
                         f"iteration {iteration}; run again to resume")
                break
        return {"iteration": iteration, "out_dir": str(out_dir), "resumed_from": start}
    finally:
        log.close()
        if own_context:
            cleanup_distributed()
