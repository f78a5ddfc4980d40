"""StyleGAN2 prior training (Karras et al., CVPR 2020), as basicsr's ``StyleGAN2Model``.

The generator trained here (``StyleGAN2GeneratorClean`` for GFPGANv1Clean, ``StyleGAN2Generator``
for GFPGANv1) is the facial prior a GFP-GAN config loads with ``model.decoder_load_path``: point
it at ``OUT_DIR/models/net_g_XXXXXXXX.pth`` (``params_ema``, the EMA generator, is what is read).

One iteration (``StyleGAN2Model.optimize_parameters``), over ``train.grad_accum`` micro-batches:

1. **Discriminator step**: fakes from z (style mixing with probability ``train.mixing_prob``),
   logistic loss on real and fake images, plus the lazy R1 penalty every ``losses.r1_every``
   iterations. Adam step.
2. **Generator step** (D frozen): non-saturating logistic loss on new fakes; every
   ``losses.path_length_every`` iterations also the path-length regulariser on a batch of
   ``batch // path_batch_shrink`` (in fp32, outside autocast). Adam step.
3. **EMA** of the generator.

Validation writes a grid of the EMA generator's faces for 16 fixed latents (``samples/``).
Checkpointing, logging, resuming and DistributedDataParallel are the shared machinery of
:mod:`faceprior.training.loop`; the running mean path length is part of the checkpoint (and
averaged over processes).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from faceprior.imaging.files import list_image_files
from faceprior.imaging.resize import resize_bicubic
from faceprior.models import create_model
from faceprior.models.loading import build_from_state_dict
from faceprior.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from faceprior.training.checkpointing import TRAINING_STATE_FORMAT
from faceprior.training.config import ConfigError, TrainConfig, lazy_regularization_ratio
from faceprior.training.degradations import read_float_image
from faceprior.training.distributed import DistributedContext
from faceprior.training.logging import NullLogger, image_grid
from faceprior.training.loop import StepLogs, TrainerBase, discriminator_backward, run_training, set_requires_grad, to_uint8
from faceprior.training.losses import gan_loss_wgan_softplus, lazy_path_length_loss
from faceprior.weights.checkpoint import CheckpointError, read_checkpoint, select_state_dict

__all__ = ["FaceImageFolder", "StyleGAN2Trainer", "generate_grid", "load_generator_for_sampling", "train"]

# Latents of the validation sample grid.
SAMPLE_GRID_SIZE = 16
SAMPLE_GRID_SEED = 2020


class FaceImageFolder(Dataset):
    """Aligned faces for the prior: ``{"gt": float32 [3, S, S] in [-1, 1], "path": str}``.

    Images under ``root`` (recursive, sorted), resized to ``size``; with ``flip`` a horizontal flip
    with probability 0.5 drawn from ``np.random.default_rng([seed, epoch, index])`` (independent
    of workers and samplers, like FaceDataset). No degradation.
    """

    def __init__(self, root: Union[str, Path], size: int, flip: bool = True, seed: int = 0):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: training folder not found")
        self.paths = list_image_files(self.root)
        if not self.paths:
            raise FileNotFoundError(f"{self.root}: no images found")
        self.size, self.flip, self.seed, self.epoch = size, flip, seed, 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        image = resize_bicubic(read_float_image(self.paths[index]), self.size, self.size)
        if self.flip and np.random.default_rng([self.seed, self.epoch, int(index)]).random() < 0.5:
            image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        return {"gt": tensor * 2.0 - 1.0, "path": str(self.paths[index])}


@torch.no_grad()
def generate_grid(generator: StyleGAN2Generator, n: int = 16, seed: int = 0, truncation: float = 1.0,
                  columns: Optional[int] = None, batch_size: int = 8, device: Union[str, torch.device] = "cpu",
                  num_mean_latent: int = 4096) -> np.ndarray:
    """Faces of ``n`` latents z ~ N(0, I) drawn from ``torch.Generator().manual_seed(seed)``, tiled.

    Truncation < 1 pulls w towards the mean of ``num_mean_latent`` w (drawn from the same
    generator after the z's). Stored decoder noise: the same seed gives the same grid.
    Returns [rows*S + gaps, columns*S + gaps, 3] uint8 (``columns`` default: ceil(sqrt(n))).
    """
    generator = generator.to(device).eval()
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.num_style_feat, generator=rng)
    mean_w = None
    if truncation < 1:
        mean_w = generator.style_mlp(torch.randn(num_mean_latent, generator.num_style_feat, generator=rng).to(device))
        mean_w = mean_w.mean(0, keepdim=True)
    faces = []
    for start in range(0, n, batch_size):
        images, _ = generator([z[start:start + batch_size].to(device)], truncation=truncation,
                              truncation_latent=mean_w, randomize_noise=False)
        faces.append(to_uint8(images).permute(0, 2, 3, 1).cpu().numpy())
    faces = np.concatenate(faces)
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    padded = np.full((rows * columns, *faces.shape[1:]), 255, dtype=np.uint8)
    padded[:n] = faces
    return image_grid([padded[r * columns:(r + 1) * columns] for r in range(rows)])


class StyleGAN2Trainer(TrainerBase):
    """The StyleGAN2 networks, optimisers and one training iteration (see the module docstring).

    Checkpointed modules: ``net_g``, ``net_g_ema``, ``net_d``; optimisers ``optimizer_g``,
    ``optimizer_d``; extra state: the running mean path length.
    """

    task = "stylegan2"

    def __init__(self, config: TrainConfig, ctx: DistributedContext, log: NullLogger):
        super().__init__(config, ctx, log)
        model, data, weights = config.model, config.data, config.losses
        if not weights.enabled("gan"):
            raise ConfigError(f"{config.source}: losses.gan: the StyleGAN2 prior needs the GAN loss (weight > 0)")
        self.weights = weights
        self.net_g = create_model(model.arch, **model.kwargs)
        self.load_pretrained(self.net_g, model.pretrained, "model.pretrained")
        self.net_g = self.net_g.to(self.device).train()
        self.net_g_ema = self.make_ema(self.net_g)
        self.net_d = StyleGAN2Discriminator(out_size=data.size, **model.discriminator)
        self.load_pretrained(self.net_d, model.pretrained_d, "model.pretrained_d")
        self.net_d = self.net_d.to(self.device).train()
        self.modules.update(net_g=self.net_g, net_g_ema=self.net_g_ema, net_d=self.net_d)

        self.g_ddp = ctx.wrap(self.net_g)
        self.d_ddp = ctx.wrap(self.net_d)
        optim = config.optim
        self.optimizer_g = self.make_adam("optimizer_g", self.net_g.parameters(), optim.lr_g, optim.betas_g,
                                          lazy_regularization_ratio(weights.path_length, weights.path_length_every))
        self.optimizer_d = self.make_adam("optimizer_d", self.net_d.parameters(), optim.lr_d, optim.betas_d,
                                          lazy_regularization_ratio(weights.r1, weights.r1_every))
        self.mean_path_length = torch.zeros((), device=self.device)
        self.num_style_feat = self.net_g.num_style_feat
        self.train_dataset = FaceImageFolder(data.train, data.size, flip=data.flip, seed=config.train.seed)

    def mixing_noise(self, batch: int) -> list[torch.Tensor]:
        """[z] or, with probability ``mixing_prob`` (Python's random), [z1, z2]; each [batch, F]."""
        if random.random() < self.config.train.mixing_prob:
            return list(torch.randn(2, batch, self.num_style_feat, device=self.device).unbind(0))
        return [torch.randn(batch, self.num_style_feat, device=self.device)]

    def train_step(self, iteration: int, micro_batches: list[dict]) -> dict[str, torch.Tensor]:
        ctx, w = self.ctx, self.weights
        accum = len(micro_batches)
        logs = StepLogs(accum)
        add = logs.add

        # 1. Discriminator step.
        set_requires_grad([self.net_d], True)
        self.optimizer_d.zero_grad(set_to_none=True)
        do_r1 = w.enabled("r1") and iteration % w.r1_every == 0
        for index, batch in enumerate(micro_batches):
            real = batch["gt"].to(self.device, non_blocking=True)
            with torch.no_grad(), ctx.autocast():
                fake, _ = self.net_g(self.mixing_noise(real.shape[0]))
            if do_r1:
                real = real.detach().requires_grad_(True)
            discriminator_backward(ctx, self.d_ddp, fake.float(), real, w.r1, w.r1_every, do_r1,
                                   index == accum - 1, accum, add)
        self.optimizer_d.step()

        # 2. Generator step (D frozen), with lazy path-length regularisation.
        set_requires_grad([self.net_d], False)
        self.optimizer_g.zero_grad(set_to_none=True)
        do_path = w.enabled("path_length") and iteration % w.path_length_every == 0
        batch_size = micro_batches[0]["gt"].shape[0]
        for index in range(accum):
            with ctx.no_sync(self.g_ddp, index < accum - 1 or do_path):
                with ctx.autocast():
                    fake, _ = self.g_ddp(self.mixing_noise(batch_size))
                    l_g = gan_loss_wgan_softplus(self.net_d(fake).float(), True, weight=w.gan)
                (l_g / accum).backward()
            add("l_g", l_g)
        if do_path:
            path_batch = max(1, batch_size // w.path_batch_shrink)
            fake, latents = self.g_ddp(self.mixing_noise(path_batch), return_latents=True)
            l_path, path_length, mean_path_length = lazy_path_length_loss(
                fake, latents, self.mean_path_length, w.path_length, w.path_length_every, w.path_length_decay)
            l_path.backward()
            if ctx.distributed:
                dist.all_reduce(mean_path_length)
                mean_path_length /= ctx.world_size
            self.mean_path_length = mean_path_length
            logs["l_g_path"] = l_path.detach()
            logs["path_length"] = path_length
        self.optimizer_g.step()

        # 3. EMA.
        self.update_ema()
        return logs

    def extra_state(self) -> dict:
        return {"mean_path_length": self.mean_path_length.detach().cpu()}

    def load_extra_state(self, state) -> None:
        if "mean_path_length" in state:
            self.mean_path_length = state["mean_path_length"].to(self.device)

    def validate(self, iteration: int) -> None:
        grid = generate_grid(self.net_g_ema, SAMPLE_GRID_SIZE, seed=SAMPLE_GRID_SEED, device=self.device)
        self.log.log_image("samples", iteration, grid)


def train(config: TrainConfig, resume: bool = True, stop_at: Optional[int] = None,
          minutes: Optional[float] = None) -> dict:
    """Train the StyleGAN2 prior with ``config`` (``task: stylegan2``); see ``run_training``."""
    if config.task != "stylegan2":
        raise ConfigError(f"{config.source}: task is {config.task!r}; train_stylegan2 trains task stylegan2")
    return run_training(StyleGAN2Trainer, config, resume=resume, stop_at=stop_at, minutes=minutes)


def load_generator_for_sampling(path: Union[str, Path]) -> nn.Module:
    """A StyleGAN2 generator from an exported ``net_g_*.pth`` (``params_ema``), an official StyleGAN2
    checkpoint, or a training state (its ``net_g_ema``); the architecture is read off the weights."""
    checkpoint = read_checkpoint(path)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == TRAINING_STATE_FORMAT:
        modules = checkpoint.get("modules") or {}
        if "net_g_ema" not in modules:
            raise CheckpointError(path, "training state without a net_g_ema")
        state_dict = select_state_dict(modules["net_g_ema"], path)
    else:
        state_dict = select_state_dict(checkpoint, path)
    descriptor = build_from_state_dict(state_dict, str(path))
    if descriptor.purpose != "generator":
        raise CheckpointError(path, f"holds {descriptor.arch} weights, not a StyleGAN2 generator")
    return descriptor.network
