"""GFP-GAN training (Wang et al., CVPR 2021): one explicit loop, resumable, distributed.

One iteration follows ``GFPGANModel.optimize_parameters`` (gfpgan 1.3.8) with every network
stepped once, over ``train.grad_accum`` micro-batches per step:

1. **Generator step** (the discriminators frozen): restore the LQ faces and add up the enabled
   terms of ``losses`` (:class:`~faceprior.training.losses.LossWeights`): pixel L1; image-pyramid
   L1 on the U-Net RGB outputs (weight 1e-12 after ``remove_pyramid_after``); VGG19 perceptual and
   style; the logistic GAN loss against the StyleGAN2 discriminator; the facial-component GAN
   and style losses (RoIAlign crops of eyes and mouth) and, this project's addition, the L1 of
   those crops (``component_pixel``, off by default); the ArcFace identity loss (or dlib's,
   ``model.identity_net: dlib``). Adam step.
2. **EMA** of the generator.
3. **Discriminator step**: logistic loss on the restored (detached) and ground-truth faces, plus
   the lazy R1 penalty every ``r1_every`` iterations (computed from the same real forward pass:
   identical to the official separate pass, one D forward cheaper). Adam step.
4. **Facial-component discriminator steps** (left eye, right eye, mouth), when their losses are
   on and ``data.component_boxes`` is given. Adam steps.

Validation (rank 0, every ``val_every``): the EMA generator (stored decoder noise, so the numbers
are deterministic) restores the validation faces, degraded once with ``data.val_seed``; PSNR and
SSIM (RGB, basicsr conventions) of the restored faces and, as the baseline, of the degraded
inputs are logged (``val`` records of ``metrics.jsonl``), with a grid LQ / restored / GT.

Auxiliary networks: ArcFace (identity loss) and VGG19 (perceptual/style loss) need their
pretrained weights (``model.arcface``, ``model.vgg``); without them the config must say
``random_arcface: true`` / ``random_vgg: true`` explicitly, and a warning is printed. Offline,
``model.identity_net: dlib`` takes dlib's face-recognition ResNet for the identity loss instead
(:class:`~faceprior.training.losses.DlibIdentityLoss`; the weights of ``face-recognition-models``).

Usage: ``faceprior train configs/gfpgan_clean_256_small.yaml`` or, from Python,
``train(load_config(path))``; distributed with ``torchrun --nproc_per_node N -m faceprior train CONFIG``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from faceprior.imaging.files import list_image_files
from faceprior.imaging.pixels import from_float01
from faceprior.imaging.resize import resize_bicubic
from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.identity import load_dlib_identity
from faceprior.metrics.psnr_ssim import psnr_torch, ssim_torch
from faceprior.models import create_model
from faceprior.models.arcface import ResNetArcFace
from faceprior.models.dlib_resnet import load_dlib_face_resnet
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator
from faceprior.models.loading import load_state_dict_strict
from faceprior.models.stylegan2 import StyleGAN2Discriminator
from faceprior.models.vgg import VGG19Features, load_vgg19_weights
from faceprior.training.config import ConfigError, TrainConfig, lazy_regularization_ratio
from faceprior.training.dataset import FaceDataset
from faceprior.training.degradations import read_float_image
from faceprior.training.distributed import DistributedContext
from faceprior.training.logging import NullLogger, image_grid
from faceprior.training.loop import (
    StepLogs,
    TrainerBase,
    discriminator_backward,
    read_warm_start,
    run_training,
    set_requires_grad,
    to_uint8,
)
from faceprior.training.losses import (
    COMPONENTS,
    GFPGAN_PERCEPTUAL_LAYER_WEIGHTS,
    DlibIdentityLoss,
    PerceptualLoss,
    component_crop_settings,
    component_discriminator_losses,
    component_generator_losses,
    component_l1_loss,
    crop_facial_components,
    gan_loss_wgan_softplus,
    identity_loss,
    l1_loss,
    pyramid_l1_loss,
)

__all__ = ["GFPGANTrainer", "build_validation_set", "train"]

# Validation faces shown in the sample grid.
GRID_FACES = 4


def build_validation_set(config: TrainConfig) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation pairs: (lq, gt) uint8 [N, 3, S, S], or None without ``data.val``.

    The first ``val_count`` faces of ``data.val`` (sorted by path), resized to ``data.size``,
    degraded once with ``data.val_seed`` (no flips); the LQ images are exact multiples of 1/255.
    """
    data = config.data
    if not data.val:
        return None
    dataset = FaceDataset(data.val, size=data.size, flip=False, degradation=data.degradation_config(),
                          seed=data.val_seed)
    count = len(dataset) if data.val_count is None else min(data.val_count, len(dataset))
    lq, gt = [], []
    for index in range(count):
        item = dataset[index]
        lq.append(to_uint8(item["lq"]))
        gt.append(to_uint8(item["gt"]))
    return torch.stack(lq), torch.stack(gt)


def _uint8_to_model(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device=device, dtype=torch.float32) / 127.5 - 1.0


# training faces on which the dlib identity loss finds its chip box (see _build_dlib_identity)
DLIB_CHIP_PROBE_IMAGES = 256
DLIB_CHIP_PROBE_SIZE = 256  # faces are looked at this size (dlib's detector misses small faces)


def measure_dlib_chip_box(folder: Path, size: int, dlib_identity: Any) -> list[float]:
    """Where dlib cuts its recognition chip on faces of a training folder's framing: the median of
    ``dlib_identity.chip_box`` (a ``faceprior.metrics.identity.DlibIdentity``) on the folder's first
    ``DLIB_CHIP_PROBE_IMAGES`` faces (sorted) where dlib's detector finds one, looked at 256 px and
    padded by a quarter (tight crops defeat the detector), centred horizontally (flipped faces get
    the same chip). Returns [left, top, right, bottom] in pixels of ``size``; ValueError when dlib
    finds fewer than 8 faces."""
    probe = DLIB_CHIP_PROBE_SIZE
    pad = probe // 4
    boxes = []
    probed = list_image_files(folder)[:DLIB_CHIP_PROBE_IMAGES]
    for path in probed:
        image = from_float01(resize_bicubic(read_float_image(path), probe, probe), np.uint8)
        box = dlib_identity.chip_box(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        if box is not None:
            boxes.append([v - pad for v in box])
    if len(boxes) < 8:
        raise ValueError(f"dlib found a face in only {len(boxes)} of the first {len(probed)} training images of "
                         f"{folder}; need 8")
    # median box at the probe size -> pixels of the training size (pixel centres scale)
    left, top, right, bottom = ((float(v) + 0.5) * size / probe - 0.5 for v in np.median(np.asarray(boxes), axis=0))
    left = (left + (size - 1 - right)) / 2
    return [left, top, size - 1 - left, bottom]


class GFPGANTrainer(TrainerBase):
    """The GFP-GAN networks, optimisers and one training iteration (see the module docstring).

    Checkpointed modules: ``net_g``, ``net_g_ema``, ``net_d`` and, with component losses,
    ``net_d_left_eye``, ``net_d_right_eye``, ``net_d_mouth`` (the frozen ArcFace / VGG are not
    saved). Optimisers: ``optimizer_g``, ``optimizer_d``, ``optimizer_d_<component>``, and
    ``optimizer_input_gate`` with ``optim.lr_input_gate``.
    """

    task = "gfpgan"

    def __init__(self, config: TrainConfig, ctx: DistributedContext, log: NullLogger):
        super().__init__(config, ctx, log)
        model, data, weights = config.model, config.data, config.losses
        self.weights = weights
        device = self.device
        if not any(weights.enabled(term) for term in weights.GENERATOR_TERMS):
            raise ConfigError(f"{config.source}: losses: every generator loss term is 0; nothing to train")

        # Generator (+ EMA): official constructor, optional decoder / whole-model warm starts.
        self.net_g = create_model(model.arch, **model.kwargs, decoder_load_path=model.decoder_load_path,
                                  fix_decoder=model.fix_decoder)
        self.load_pretrained(self.net_g, model.pretrained, "model.pretrained")
        if model.train_only_input_gate:
            for name, param in self.net_g.named_parameters():
                param.requires_grad_(name.startswith("input_gate."))
        self.net_g = self.net_g.to(device).train()
        self.net_g_ema = self.make_ema(self.net_g)
        self.net_d = StyleGAN2Discriminator(out_size=data.size, **model.discriminator)
        self.load_pretrained(self.net_d, model.pretrained_d, "model.pretrained_d")
        self.net_d = self.net_d.to(device).train()
        self.modules.update(net_g=self.net_g, net_g_ema=self.net_g_ema, net_d=self.net_d)

        # Facial-component crops (with any component loss on and boxes to crop with) and
        # discriminators (only for component_gan / component_style).
        self.net_d_components: dict[str, nn.Module] = {}
        wants_discriminators = weights.enabled("component_gan") or weights.enabled("component_style")
        wants_crops = wants_discriminators or weights.enabled("component_pixel")
        if wants_crops and not data.component_boxes:
            warnings.warn(f"{config.source}: component_gan / component_style / component_pixel are on but "
                          "data.component_boxes is not set: the facial-component losses are skipped", stacklevel=2)
        self.use_component_crops = wants_crops and bool(data.component_boxes)
        if wants_discriminators and data.component_boxes:
            for name in COMPONENTS:
                net = FacialComponentDiscriminator()
                self.load_pretrained(net, getattr(model, f"pretrained_d_{name}"), f"model.pretrained_d_{name}")
                self.net_d_components[name] = net.to(device).train()
                self.modules[f"net_d_{name}"] = self.net_d_components[name]
        self.eye_size, self.mouth_size, self.crop_scale = component_crop_settings(data.size)

        # Frozen auxiliary networks.
        self.arcface: Optional[nn.Module] = None
        self.dlib_identity: Optional[DlibIdentityLoss] = None
        if weights.enabled("identity") and model.identity_net == "dlib":
            self.dlib_identity = self._build_dlib_identity(weights.identity).to(device)
        elif weights.enabled("identity"):
            self.arcface = self._build_arcface().to(device).eval()
        self.perceptual: Optional[PerceptualLoss] = None
        if weights.enabled("perceptual") or weights.enabled("style"):
            vgg = self._build_vgg()
            self.perceptual = PerceptualLoss(GFPGAN_PERCEPTUAL_LAYER_WEIGHTS, vgg, perceptual_weight=weights.perceptual,
                                             style_weight=weights.style, criterion="l1").to(device)

        # DistributedDataParallel wrappers (the bare modules are used where no sync is wanted).
        # G: unused parameters exist (the decoder's style MLP with input_is_latent; the U-Net RGB
        # heads without the pyramid loss), as the official find_unused_parameters: true.
        self.g_ddp = ctx.wrap(self.net_g, find_unused_parameters=True)
        self.d_ddp = ctx.wrap(self.net_d)
        self.d_components_ddp = {name: ctx.wrap(net) for name, net in self.net_d_components.items()}

        optim = config.optim
        # The input gate (GFPGANv1Clean(input_gate=True)) may have an Adam of its own (optim.lr_input_gate).
        gate = getattr(self.net_g, "input_gate", None) if optim.lr_input_gate is not None else None
        gate_params = set(gate.parameters()) if gate is not None else set()
        g_params = [p for p in self.net_g.parameters() if p not in gate_params]
        if model.train_only_input_gate:
            g_params = [p for p in g_params if p.requires_grad]
        self.optimizer_g = self.make_adam("optimizer_g", g_params, optim.lr_g, optim.betas_g)
        self.optimizer_input_gate = (self.make_adam("optimizer_input_gate", gate.parameters(), optim.lr_input_gate,
                                                    optim.betas_g) if gate is not None else None)
        self.optimizer_d = self.make_adam("optimizer_d", self.net_d.parameters(), optim.lr_d, optim.betas_d,
                                          lazy_regularization_ratio(weights.r1, weights.r1_every))
        self.optimizer_components = {
            name: self.make_adam(f"optimizer_d_{name}", net.parameters(), optim.lr_component, optim.betas_component)
            for name, net in self.net_d_components.items()}

        self.train_dataset = FaceDataset(data.train, size=data.size, flip=data.flip,
                                         degradation=data.degradation_config(),
                                         component_boxes=data.component_boxes if self.use_component_crops else None,
                                         seed=config.train.seed, eye_enlarge_ratio=data.eye_enlarge_ratio)
        self.val_set = build_validation_set(config) if ctx.is_main else None
        self.val_baseline: dict[str, float] = {}

    # -- auxiliary networks ----------------------------------------------------------------

    def _warn(self, message: str) -> None:
        """A warning both as a Python warning and in the run's log."""
        warnings.warn(message, stacklevel=3)
        self.log.info(f"WARNING: {message}")

    def _build_arcface(self) -> nn.Module:
        model = self.config.model
        arcface = ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False)
        if model.arcface:
            state_dict, source = read_warm_start(model.arcface, "model.arcface")
            load_state_dict_strict(arcface, state_dict, source=source)
        elif model.random_arcface:
            self._warn(f"{self.config.source}: the identity loss uses a RANDOMLY INITIALISED ArcFace (model.random_arcface): "
                       "it does not measure identity; set model.arcface to arcface_resnet18.pth for the real loss")
        else:
            raise ConfigError(f"{self.config.source}: losses.identity > 0 needs model.arcface (arcface_resnet18.pth) "
                             "or model.random_arcface: true")
        for param in arcface.parameters():
            param.requires_grad_(False)
        return arcface

    def _build_dlib_identity(self, weight: float) -> DlibIdentityLoss:
        """dlib's face-recognition ResNet (``model.dlib_resnet``, else the installed package's) and
        the chip box of this data's framing (``model.dlib_chip_box``, else the median of dlib's own
        chip boxes, ``DlibIdentity.chip_box``, on the first training faces where its detector finds
        a face: at 256 px, padded by a quarter, as tight crops defeat the detector; scaled to the
        training size)."""
        config = self.config
        model = config.model
        dlib_identity = None
        if model.dlib_chip_box is None or model.dlib_resnet is None:
            try:
                dlib_identity = load_dlib_identity()
            except MetricUnavailable as error:
                raise ConfigError(f"{config.source}: model.identity_net: dlib: {error} (or give model.dlib_resnet "
                                  "and model.dlib_chip_box)") from None
        recognition_model = Path(model.dlib_resnet) if model.dlib_resnet else dlib_identity.recognition_model_path
        if model.dlib_chip_box is not None:
            box, source = [float(v) for v in model.dlib_chip_box], "model.dlib_chip_box"
        else:
            try:
                box = measure_dlib_chip_box(Path(config.data.train), config.data.size, dlib_identity)
            except ValueError as error:
                raise ConfigError(f"{config.source}: model.identity_net: dlib: {error}") from None
            source = f"the first {DLIB_CHIP_PROBE_IMAGES} training faces"
        self.log.info(f"identity loss: dlib face-recognition ResNet ({recognition_model.name}), chip box "
                      f"({', '.join(f'{v:.1f}' for v in box)}) at {config.data.size} px from {source}")
        return DlibIdentityLoss(load_dlib_face_resnet(recognition_model), box, weight)


    def _build_vgg(self) -> VGG19Features:
        model = self.config.model
        vgg = VGG19Features(use_input_norm=True, range_norm=True)
        if model.vgg:
            load_vgg19_weights(vgg, model.vgg)
        elif model.random_vgg:
            self._warn(f"{self.config.source}: the perceptual/style losses use a RANDOMLY INITIALISED VGG19 (model.random_vgg); "
                       "set model.vgg to vgg19-dcbb9e9d.pth for the official loss")
        else:
            raise ConfigError(f"{self.config.source}: losses.perceptual / losses.style > 0 need model.vgg "
                             "(vgg19-dcbb9e9d.pth) or model.random_vgg: true")
        return vgg

    # -- one iteration ---------------------------------------------------------------------

    def train_step(self, iteration: int, micro_batches: list[dict]) -> dict[str, torch.Tensor]:
        ctx, w = self.ctx, self.weights
        accum = len(micro_batches)
        logs = StepLogs(accum)
        add = logs.add

        pyramid_weight = w.pyramid_weight_at(iteration)
        use_crops = self.use_component_crops
        use_components = bool(self.net_d_components)
        discriminators = [self.net_d, *self.net_d_components.values()]

        # 1. Generator step, discriminators frozen.
        set_requires_grad(discriminators, False)
        self.optimizer_g.zero_grad(set_to_none=True)
        if self.optimizer_input_gate is not None:
            self.optimizer_input_gate.zero_grad(set_to_none=True)
        kept = []  # per micro-batch: restored (detached), gt, component crops for the D steps
        for index, batch in enumerate(micro_batches):
            lq = batch["lq"].to(self.device, non_blocking=True)
            gt = batch["gt"].to(self.device, non_blocking=True)
            with ctx.no_sync(self.g_ddp, index < accum - 1), ctx.autocast():
                output, out_rgbs = self.g_ddp(lq, return_rgb=pyramid_weight > 0)
                output = output.float()
                losses: dict[str, torch.Tensor] = {}
                if w.enabled("pixel"):
                    losses["l_g_pix"] = l1_loss(output, gt, w.pixel)
                if pyramid_weight > 0:
                    losses["l_g_pyramid"] = pyramid_l1_loss([rgb.float() for rgb in out_rgbs], gt, pyramid_weight)
                if self.perceptual is not None:
                    percep, style = self.perceptual(output, gt)
                    if percep is not None:
                        losses["l_g_percep"] = percep.float()
                    if style is not None:
                        losses["l_g_style"] = style.float()
                if w.enabled("gan"):
                    losses["l_g_gan"] = gan_loss_wgan_softplus(self.net_d(output).float(), True, weight=w.gan)
                fake_crops = real_crops = None
                if use_crops:
                    boxes = [batch[f"loc_{name}"].to(self.device) for name in COMPONENTS]
                    fake_crops = crop_facial_components(output, *boxes, self.eye_size, self.mouth_size, self.crop_scale)
                    real_crops = crop_facial_components(gt, *boxes, self.eye_size, self.mouth_size, self.crop_scale)
                if use_crops and w.enabled("component_pixel"):
                    losses["l_g_comp_pix"] = component_l1_loss(fake_crops, real_crops, w.component_pixel)
                if use_components:
                    component = component_generator_losses(self.net_d_components, fake_crops, real_crops,
                                                            gan_weight=w.component_gan, style_weight=w.component_style)
                    for name, value in component.items():
                        losses[f"l_g_comp_{name}"] = value.float()
                if self.arcface is not None:
                    losses["l_identity"] = identity_loss(self.arcface, output, gt, w.identity).float()
                if self.dlib_identity is not None:
                    losses["l_identity"] = self.dlib_identity(output, gt).float()
                total = sum(losses.values())
            (total / accum).backward()
            for name, value in losses.items():
                add(name, value)
            if use_crops:
                fake_crops = {name: crop.detach() for name, crop in fake_crops.items()}
            kept.append((output.detach(), gt, fake_crops, real_crops))
        self.optimizer_g.step()
        if self.optimizer_input_gate is not None:
            self.optimizer_input_gate.step()

        # 2. EMA.
        self.update_ema()

        # 3. StyleGAN2 discriminator step (logistic loss + lazy R1); none without the GAN loss.
        set_requires_grad(discriminators, True)
        if w.enabled("gan"):
            self.optimizer_d.zero_grad(set_to_none=True)
            do_r1 = w.enabled("r1") and iteration % w.r1_every == 0
            for index, (output, gt, _, _) in enumerate(kept):
                real = gt.detach().requires_grad_(True) if do_r1 else gt
                discriminator_backward(ctx, self.d_ddp, output, real, w.r1, w.r1_every, do_r1,
                                       index == accum - 1, accum, add)
            self.optimizer_d.step()

        # 4. Facial-component discriminator steps.
        if use_components:
            for optimizer in self.optimizer_components.values():
                optimizer.zero_grad(set_to_none=True)
            for index, (_, _, fake_crops, real_crops) in enumerate(kept):
                skip_sync = index < accum - 1
                with ctx.no_sync(self.d_components_ddp["left_eye"], skip_sync), \
                        ctx.no_sync(self.d_components_ddp["right_eye"], skip_sync), \
                        ctx.no_sync(self.d_components_ddp["mouth"], skip_sync):
                    with ctx.autocast():
                        component = component_discriminator_losses(self.d_components_ddp, fake_crops, real_crops)
                    total = sum(value.float() for value in component.values())
                    (total / accum).backward()
                for name, value in component.items():
                    add(f"l_d_{name}", value.float())
            for optimizer in self.optimizer_components.values():
                optimizer.step()
        return logs

    # -- validation ------------------------------------------------------------------------

    @torch.no_grad()
    def restore(self, lq_uint8: torch.Tensor) -> torch.Tensor:
        """EMA generator on uint8 LQ faces [N, 3, S, S] -> uint8 restored faces (stored noise)."""
        outputs = []
        for start in range(0, lq_uint8.shape[0], self.config.data.val_batch_size):
            lq = _uint8_to_model(lq_uint8[start:start + self.config.data.val_batch_size], self.device)
            output, _ = self.net_g_ema(lq, return_rgb=False, randomize_noise=False)  # fp32, no autocast
            outputs.append(to_uint8(output).cpu())
        return torch.cat(outputs)

    def validate(self, iteration: int) -> None:
        if self.val_set is None:
            return
        lq, gt = self.val_set
        if not self.val_baseline:
            self.val_baseline = {"psnr_lq": float(psnr_torch(lq, gt).mean()), "ssim_lq": float(ssim_torch(lq, gt).mean())}
        restored = self.restore(lq)
        scalars = {"psnr": float(psnr_torch(restored, gt).mean()), "ssim": float(ssim_torch(restored, gt).mean()),
                   **self.val_baseline}
        self.log.log_scalars("val", iteration, scalars)
        self.log.info(f"[val {iteration}] EMA PSNR {scalars['psnr']:.3f} dB, SSIM {scalars['ssim']:.4f} "
                      f"(degraded input: {scalars['psnr_lq']:.3f} dB, {scalars['ssim_lq']:.4f}; {lq.shape[0]} faces)")
        count = min(GRID_FACES, lq.shape[0])
        rows = [images[:count].permute(0, 2, 3, 1).numpy() for images in (lq, restored, gt)]
        self.log.log_image("val", iteration, image_grid(rows))


def train(config: TrainConfig, resume: bool = True, stop_at: Optional[int] = None,
          minutes: Optional[float] = None) -> dict:
    """Train GFP-GAN with ``config`` (``task: gfpgan``); see :func:`faceprior.training.loop.run_training`."""
    if config.task != "gfpgan":
        raise ConfigError(f"{config.source}: task is {config.task!r}; train_gfpgan trains task gfpgan")
    return run_training(GFPGANTrainer, config, resume=resume, stop_at=stop_at, minutes=minutes)
