"""The GFP-GAN training losses (Wang et al., CVPR 2021), each term separately weighted.

Matches ``gfpgan/models/gfpgan_model.py`` (gfpgan 1.3.8) and the basicsr 1.4.2 losses it uses
(``L1Loss``, ``PerceptualLoss``, ``GANLoss``, ``r1_penalty``, ``g_path_regularize``):

* restoration: pixel L1 (0.1), image-pyramid L1 on the U-Net RGB outputs (1, switched to 1e-12
  after 50k iterations), VGG19 perceptual (1) and Gram style (50) losses;
* adversarial: StyleGAN2 discriminator with the logistic ("wgan_softplus") loss (0.1 for the
  generator), R1 penalty (10, lazily every 16 iterations);
* facial components: RoIAlign crops of the eyes (80 px) and the mouth (120 px), a vanilla GAN loss
  per component discriminator (1) and a Gram style loss on their features (200);
* identity: L1 between ArcFace embeddings of the gray, 128 px restored and ground-truth faces (10).

The StyleGAN2 prior is trained with the same logistic loss and R1, plus path-length
regularisation (2, every 4 iterations); see :meth:`LossWeights.stylegan2_prior`.

Unless said otherwise, images are [B, 3, H, W] in [-1, 1] (RGB) and losses are scalar tensors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.face.parsing import gaussian_blur
from faceprior.models.arcface import gray_resize_for_identity, identity_gray
from faceprior.models.vgg import VGGFeatures
from faceprior.training.roi_align import roi_align

__all__ = [
    "COMPONENTS",
    "DlibIdentityLoss",
    "GFPGAN_PERCEPTUAL_LAYER_WEIGHTS",
    "LossWeights",
    "PerceptualLoss",
    "component_crop_settings",
    "component_discriminator_losses",
    "component_generator_losses",
    "component_rois",
    "crop_facial_components",
    "gan_loss_vanilla",
    "gan_loss_wgan_softplus",
    "gram_matrix",
    "identity_loss",
    "image_pyramid",
    "l1_loss",
    "lazy_path_length_loss",
    "lazy_r1_loss",
    "path_length_penalty",
    "pyramid_l1_loss",
    "r1_penalty",
    "resample_box",
]

# Facial components, in the order of the dataset's loc_left_eye / loc_right_eye / loc_mouth.
COMPONENTS = ("left_eye", "right_eye", "mouth")

# train_gfpgan_v1.yml perceptual_opt.layer_weights (VGG19 features before ReLU).
GFPGAN_PERCEPTUAL_LAYER_WEIGHTS: Mapping[str, float] = {
    "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


@dataclass(frozen=True)
class LossWeights:
    """Weight of every loss term; a weight of 0 switches the term off (for ablations).

    Defaults are ``options/train_gfpgan_v1.yml`` (GFP-GAN v1, 512 px).

    Attributes:
        pixel: L1 between restored and ground-truth image (``pixel_opt.loss_weight``).
        perceptual, style: VGG19 perceptual and Gram style losses (``perceptual_weight``,
            ``style_weight`` of ``perceptual_opt``).
        pyramid: L1 of the U-Net RGB outputs against the downsampled ground truth
            (``pyramid_loss_weight``); replaced by 1e-12 after iteration ``remove_pyramid_after``
            (``remove_pyramid_loss``; None: never), see :meth:`pyramid_weight_at`.
        gan: generator weight of the logistic (``wgan_softplus``) loss against the StyleGAN2
            discriminator (``gan_opt.loss_weight``; the discriminator's own loss is unweighted).
        component_gan: generator weight of the vanilla GAN loss of each facial-component
            discriminator (``gan_component_opt.loss_weight``).
        component_style: Gram style loss on the component discriminators' features
            (``comp_style_weight``).
        component_pixel: this project's, not the paper's (off by default): L1 between the restored
            and ground-truth eye and mouth crops (:func:`component_l1_loss`), on top of the
            whole-image L1, so that the few pixels of the eyes weigh more; needs component boxes
            but no discriminator.
        identity: L1 between ArcFace embeddings (``identity_weight``), or with
            ``model.identity_net: dlib`` the distance of :class:`DlibIdentityLoss`.
        r1, r1_every: R1 penalty weight (``r1_reg_weight``) and lazy interval (``net_d_reg_every``).
        path_length, path_length_every, path_length_decay, path_batch_shrink: StyleGAN2 path-length
            regularisation (``path_reg_weight``, ``net_g_reg_every``, the EMA decay of the mean path
            length, ``path_batch_shrink``); off (0) for GFP-GAN.
    """

    pixel: float = 0.1
    perceptual: float = 1.0
    style: float = 50.0
    pyramid: float = 1.0
    remove_pyramid_after: Optional[int] = 50_000
    gan: float = 0.1
    component_gan: float = 1.0
    component_style: float = 200.0
    component_pixel: float = 0.0
    identity: float = 10.0
    r1: float = 10.0
    r1_every: int = 16
    path_length: float = 0.0
    path_length_every: int = 4
    path_length_decay: float = 0.01
    path_batch_shrink: int = 2

    # The switchable terms (weights); the other fields are schedules.
    TERMS = ("pixel", "perceptual", "style", "pyramid", "gan", "component_gan", "component_style", "component_pixel",
             "identity", "r1", "path_length")
    # The terms of the GFP-GAN generator step (R1 regularises the discriminator, the path length
    # a StyleGAN2 generator).
    GENERATOR_TERMS = tuple(term for term in TERMS if term not in ("r1", "path_length"))

    def __post_init__(self):
        for term in self.TERMS:
            if not getattr(self, term) >= 0:
                raise ValueError(f"LossWeights.{term} must be >= 0, got {getattr(self, term)}")
        for name in ("r1_every", "path_length_every", "path_batch_shrink"):
            if getattr(self, name) < 1:
                raise ValueError(f"LossWeights.{name} must be >= 1, got {getattr(self, name)}")

    def enabled(self, term: str) -> bool:
        """Whether the term ``term`` (one of :attr:`TERMS`) has a positive weight."""
        self._check_terms([term])
        return getattr(self, term) > 0

    def without(self, *terms: str) -> "LossWeights":
        """A copy with the given terms switched off, e.g. ``LossWeights().without("identity")``."""
        self._check_terms(terms)
        return dataclasses.replace(self, **{term: 0.0 for term in terms})

    def pyramid_weight_at(self, iteration: int) -> float:
        """Pyramid-loss weight at a training iteration: ``pyramid``, or 1e-12 once past
        ``remove_pyramid_after`` (official: a tiny weight keeps the U-Net RGB heads in the graph)."""
        if self.pyramid > 0 and self.remove_pyramid_after is not None and iteration > self.remove_pyramid_after:
            return 1e-12
        return self.pyramid

    @classmethod
    def stylegan2_prior(cls) -> "LossWeights":
        """basicsr ``train_StyleGAN2_256_Cmul2_FFHQ.yml``: logistic GAN loss (1), R1 (10, every 16),
        path length (2, every 4, batch shrink 2); no restoration terms."""
        return cls(pixel=0.0, perceptual=0.0, style=0.0, pyramid=0.0, gan=1.0, component_gan=0.0,
                   component_style=0.0, identity=0.0, r1=10.0, r1_every=16, path_length=2.0, path_length_every=4,
                   path_batch_shrink=2)

    def _check_terms(self, terms: Sequence[str]) -> None:
        unknown = [t for t in terms if t not in self.TERMS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; known: {', '.join(self.TERMS)}")


# ----------------------------------------------------------------------------------------------
# Pixel losses


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {list(a.shape)} vs {list(b.shape)}")


def l1_loss(pred: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight * mean(|pred - target|)`` over all elements (basicsr ``L1Loss``, reduction mean).

    pred, target: tensors of the same shape (any range).
    """
    _check_same_shape(pred, target, "l1_loss")
    return weight * F.l1_loss(pred, target)


def image_pyramid(image: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """[image / 2^(num_levels-1), ..., image / 2, image], lowest resolution first.

    Each level halves the previous one with bilinear interpolation (``align_corners=False``),
    as GFP-GAN's ``construct_img_pyramid``. image: [B, C, H, W].
    """
    levels = [image]
    for _ in range(num_levels - 1):
        levels.insert(0, F.interpolate(levels[0], scale_factor=0.5, mode="bilinear", align_corners=False))
    return levels


def pyramid_l1_loss(out_rgbs: Sequence[torch.Tensor], gt: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Image-pyramid loss: ``sum_i weight * l1(out_rgbs[i], gt downsampled to out_rgbs[i])``.

    out_rgbs: the U-Net RGB outputs of GFPGANv1 ([B, 3, r, r] for r = 8, 16, ..., out_size, lowest
    first, in [-1, 1]); gt: [B, 3, out_size, out_size] in [-1, 1]. The ground-truth pyramid is built by
    repeated halving (:func:`image_pyramid`), so each output must be half the size of the next.
    """
    if not out_rgbs:
        raise ValueError("pyramid_l1_loss: out_rgbs is empty (run the generator with return_rgb=True)")
    pyramid = image_pyramid(gt, len(out_rgbs))
    total = gt.new_zeros(())
    for level, (out, target) in enumerate(zip(out_rgbs, pyramid)):
        _check_same_shape(out, target, f"pyramid_l1_loss level {level}")
        total = total + l1_loss(out, target, weight)
    return total


# ----------------------------------------------------------------------------------------------
# Perceptual and style losses


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of features [N, C, H, W] -> [N, C, C], normalised by C * H * W (basicsr)."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat.bmm(flat.transpose(1, 2)) / (c * h * w)


class PerceptualLoss(nn.Module):
    """VGG perceptual (feature) loss and Gram-matrix style loss (basicsr ``PerceptualLoss``).

    Args:
        layer_weights: {VGG layer name: weight}, e.g. :data:`GFPGAN_PERCEPTUAL_LAYER_WEIGHTS`.
        vgg: the feature extractor; for GFP-GAN a ``VGG19Features(use_input_norm=True,
            range_norm=True)`` with ImageNet weights. Its parameters are frozen here.
        perceptual_weight: multiplies the feature loss; 0 skips it (returned as None).
        style_weight: multiplies the style loss; 0 skips it (returned as None).
        criterion: 'l1' (mean absolute error), 'l2' (mean squared error) or 'fro' (Frobenius
            norm of the difference, not averaged).

    ``forward(x, gt)``: x, gt [B, 3, H, W] in the range the VGG expects ([-1, 1] with
    ``range_norm``) -> (perceptual loss or None, style loss or None), where
    perceptual = perceptual_weight * sum_l w_l * criterion(F_l(x), F_l(gt)) and
    style = style_weight * sum_l w_l * criterion(G(F_l(x)), G(F_l(gt))), G = :func:`gram_matrix`.
    No gradient flows into ``gt``.
    """

    CRITERIA = ("l1", "l2", "fro")

    def __init__(self, layer_weights: Mapping[str, float], vgg: VGGFeatures, perceptual_weight: float = 1.0,
                 style_weight: float = 50.0, criterion: str = "l1"):
        super().__init__()
        if criterion not in self.CRITERIA:
            raise ValueError(f"unknown perceptual-loss criterion {criterion!r}; expected one of {self.CRITERIA}")
        unknown = [name for name in layer_weights if name not in vgg.layer_names]
        if unknown:
            raise ValueError(f"PerceptualLoss layer(s) {unknown} are not layers of the given VGG")
        self.layer_weights = dict(layer_weights)
        self.vgg = vgg.requires_grad_(False)
        self.perceptual_weight = perceptual_weight
        self.style_weight = style_weight
        self.criterion = criterion

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.criterion == "l1":
            return F.l1_loss(a, b)
        if self.criterion == "l2":
            return F.mse_loss(a, b)
        return torch.linalg.vector_norm(a - b)

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        _check_same_shape(x, gt, "PerceptualLoss")
        if self.perceptual_weight <= 0 and self.style_weight <= 0:
            return None, None
        layers = list(self.layer_weights)
        x_feats = self.vgg(x, layers)
        with torch.no_grad():
            gt_feats = self.vgg(gt.detach(), layers)

        percep = style = None
        if self.perceptual_weight > 0:
            percep = sum(self._distance(x_feats[k], gt_feats[k]) * w for k, w in self.layer_weights.items())
            percep = percep * self.perceptual_weight
        if self.style_weight > 0:
            style = sum(self._distance(gram_matrix(x_feats[k]), gram_matrix(gt_feats[k])) * w
                        for k, w in self.layer_weights.items())
            style = style * self.style_weight
        return percep, style


# ----------------------------------------------------------------------------------------------
# Adversarial losses and regularisers


def gan_loss_wgan_softplus(pred: torch.Tensor, target_is_real: bool, is_disc: bool = False,
                           weight: float = 1.0) -> torch.Tensor:
    """Logistic GAN loss (basicsr ``wgan_softplus``; StyleGAN2's non-saturating G / logistic D loss).

    pred: discriminator logits, any shape. Returns ``mean(softplus(-pred))`` for a real target and
    ``mean(softplus(pred))`` for a fake one, times ``weight`` for the generator (``is_disc=False``);
    the discriminator's loss is never weighted (as basicsr's ``GANLoss``).
    """
    loss = F.softplus(-pred).mean() if target_is_real else F.softplus(pred).mean()
    return loss if is_disc else loss * weight


def gan_loss_vanilla(pred: torch.Tensor, target_is_real: bool, is_disc: bool = False, weight: float = 1.0,
                     real_label: float = 1.0, fake_label: float = 0.0) -> torch.Tensor:
    """Vanilla GAN loss: binary cross-entropy with logits against a constant label.

    pred: logits, any shape; the label is ``real_label`` or ``fake_label``. Weighted by ``weight``
    for the generator only. (With labels 1/0 it equals :func:`gan_loss_wgan_softplus`.)
    """
    label = pred.new_full(pred.shape, real_label if target_is_real else fake_label)
    loss = F.binary_cross_entropy_with_logits(pred, label)
    return loss if is_disc else loss * weight


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 penalty (Mescheder et al. 2018, eq. 9): ``mean_b ||d sum(D(x)) / d x_b||^2`` on real images.

    real_pred: D(real_img), any shape; real_img: [B, ...] with ``requires_grad=True``. The graph of
    the gradient is kept (``create_graph``), so the penalty can be back-propagated into D.
    """
    (grad,) = torch.autograd.grad(outputs=real_pred.sum(), inputs=real_img, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_r1_loss(real_pred: torch.Tensor, real_img: torch.Tensor, weight: float, every: int) -> torch.Tensor:
    """The R1 term added on every ``every``-th discriminator step: ``weight / 2 * r1 * every``.

    Plus ``0 * real_pred.sum()`` so every discriminator parameter is in the graph (what the
    official ``+ 0 * real_pred[0]`` is for, under DistributedDataParallel).
    """
    return weight / 2 * r1_penalty(real_pred, real_img) * every + 0 * real_pred.sum()


def path_length_penalty(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: Union[float, torch.Tensor],
                        decay: float = 0.01, noise: Optional[torch.Tensor] = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser (basicsr ``g_path_regularize``).

    Args:
        fake_img: generated images [B, C, H, W], computed from ``latents``.
        latents: the w codes [B, num_latent, num_style_feat] (or [B, num_style_feat]) that require grad.
        mean_path_length: running mean of the path length (0 at the start of training).
        decay: EMA rate of the running mean.
        noise: [B, C, H, W] standard normal projection (default: fresh ``randn``); scaled by
            1 / sqrt(H * W) here.
    Returns:
        (penalty, batch mean path length (detached), updated running mean (detached)), where
        path length_b = sqrt(mean over latents of sum over features of (J_b^T y)^2) and
        penalty = mean_b (path_b - (mean + decay * (mean_b path_b - mean)))^2.
    """
    if noise is None:
        noise = torch.randn_like(fake_img)
    noise = noise / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = torch.autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    if grad.dim() == 2:
        grad = grad.unsqueeze(1)
    path_lengths = grad.pow(2).sum(2).mean(1).sqrt()
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
    penalty = (path_lengths - path_mean).pow(2).mean()
    return penalty, path_lengths.detach().mean(), path_mean.detach()


def lazy_path_length_loss(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: Union[float, torch.Tensor],
                          weight: float, every: int, decay: float = 0.01, noise: Optional[torch.Tensor] = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The path-length term added on every ``every``-th generator step: ``weight * every * penalty``
    (+ ``0 * fake_img[0, 0, 0, 0]``, as official). Returns (loss, mean path length, new running mean)."""
    penalty, path_length, new_mean = path_length_penalty(fake_img, latents, mean_path_length, decay, noise)
    return weight * every * penalty + 0 * fake_img[0, 0, 0, 0], path_length, new_mean


# ----------------------------------------------------------------------------------------------
# Facial-component losses


def component_crop_settings(out_size: int) -> tuple[int, int, float]:
    """(eye crop size, mouth crop size, crop value scale) for faces of ``out_size`` px.

    Official (``get_roi_regions``): face_ratio = int(out_size / 512); sizes 80 and 120 times
    face_ratio, and the crops are *multiplied* by face_ratio (so 2 at 1024 px). Below 512 px the
    official rule gives 0 (unusable); here the sizes then scale as round(80 * out_size / 512) and
    round(120 * out_size / 512) (at least 1) with value scale 1.
    """
    face_ratio = out_size // 512
    if face_ratio >= 1:
        return 80 * face_ratio, 120 * face_ratio, float(face_ratio)
    return max(1, round(80 * out_size / 512)), max(1, round(120 * out_size / 512)), 1.0


def component_rois(loc_left_eye: torch.Tensor, loc_right_eye: torch.Tensor,
                   loc_mouth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoIAlign boxes of the components.

    loc_*: [B, 4] boxes (x1, y1, x2, y2) in pixels of the face image (the dataset's ``loc_left_eye``
    etc., eyes already enlarged). Returns (eyes [2B, 5]: left, right of image 0, left, right of
    image 1, ...; mouths [B, 5]), rows (batch_index, x1, y1, x2, y2).
    """
    for name, loc in (("loc_left_eye", loc_left_eye), ("loc_right_eye", loc_right_eye), ("loc_mouth", loc_mouth)):
        if loc.dim() != 2 or loc.shape[1] != 4 or loc.shape[0] != loc_left_eye.shape[0]:
            raise ValueError(f"{name} must be [B, 4] (x1, y1, x2, y2) like loc_left_eye, got {list(loc.shape)}")
    batch = loc_left_eye.shape[0]
    index = torch.arange(batch, dtype=loc_left_eye.dtype, device=loc_left_eye.device).view(-1, 1)
    eyes = torch.stack([torch.cat([index, loc_left_eye], 1), torch.cat([index, loc_right_eye.to(index)], 1)], 1)
    mouths = torch.cat([index, loc_mouth.to(index)], 1)
    return eyes.reshape(2 * batch, 5), mouths


def crop_facial_components(images: torch.Tensor, loc_left_eye: torch.Tensor, loc_right_eye: torch.Tensor,
                           loc_mouth: torch.Tensor, eye_size: int = 80, mouth_size: int = 120,
                           value_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Crop eyes and mouth with RoIAlign (torchvision defaults: scale 1, adaptive sampling, not aligned).

    images: [B, 3, H, W] in [-1, 1]; loc_*: [B, 4] boxes in pixels (see :func:`component_rois`);
    sizes and ``value_scale`` from :func:`component_crop_settings`. Returns {"left_eye":
    [B, 3, eye_size, eye_size], "right_eye": same, "mouth": [B, 3, mouth_size, mouth_size]},
    differentiable w.r.t. ``images``.
    """
    eye_rois, mouth_rois = component_rois(loc_left_eye, loc_right_eye, loc_mouth)
    eyes = roi_align(images, eye_rois, eye_size) * value_scale
    mouths = roi_align(images, mouth_rois, mouth_size) * value_scale
    return {"left_eye": eyes[0::2], "right_eye": eyes[1::2], "mouth": mouths}


def component_generator_losses(discriminators: Mapping[str, nn.Module], fake: Mapping[str, torch.Tensor],
                               real: Mapping[str, torch.Tensor], gan_weight: float = 1.0,
                               style_weight: float = 200.0) -> dict[str, torch.Tensor]:
    """Generator-side facial-component losses.

    Args:
        discriminators: {"left_eye", "right_eye", "mouth": FacialComponentDiscriminator}; freeze
            their parameters (``requires_grad_(False)``) during the generator step, as official.
        fake, real: crops of the restored / ground-truth faces (:func:`crop_facial_components`).
        gan_weight: weight of the vanilla GAN loss ``BCE(D(fake), 1)`` per component; 0 skips it.
        style_weight: weight of the component style loss; 0 skips it.
    Returns:
        {"gan_left_eye", "gan_right_eye", "gan_mouth", "style"} (the enabled ones), where
        style = style_weight * sum_components (0.5 * l1(G(f1), G(r1)) + l1(G(f2), G(r2))) with f1/f2 and
        r1/r2 the two feature maps the discriminator returns for the fake and (detached) real crop.
    """
    losses: dict[str, torch.Tensor] = {}
    if gan_weight <= 0 and style_weight <= 0:
        return losses
    style: Optional[torch.Tensor] = None
    for name in COMPONENTS:
        pred, fake_feats = discriminators[name](fake[name], return_feats=True)
        if gan_weight > 0:
            losses[f"gan_{name}"] = gan_loss_vanilla(pred, True, is_disc=False, weight=gan_weight)
        if style_weight > 0:
            with torch.no_grad():
                _, real_feats = discriminators[name](real[name], return_feats=True)
            term = (0.5 * l1_loss(gram_matrix(fake_feats[0]), gram_matrix(real_feats[0]))
                    + l1_loss(gram_matrix(fake_feats[1]), gram_matrix(real_feats[1])))
            style = term if style is None else style + term
    if style is not None:
        losses["style"] = style * style_weight
    return losses


def component_l1_loss(fake: Mapping[str, torch.Tensor], real: Mapping[str, torch.Tensor],
                      weight: float = 1.0) -> torch.Tensor:
    """``weight * sum_components l1(fake crop, real crop)`` over left eye, right eye and mouth.

    fake, real: crops of the restored / ground-truth faces (:func:`crop_facial_components`), the
    real ones carry no gradient. Each component's L1 is a mean over its crop, so every component
    counts the same whatever its size.
    """
    total = sum(l1_loss(fake[name], real[name]) for name in COMPONENTS)
    return total * weight


def component_discriminator_losses(discriminators: Mapping[str, nn.Module], fake: Mapping[str, torch.Tensor],
                                   real: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Discriminator-side facial-component losses (unweighted, as official).

    {"left_eye", "right_eye", "mouth"}: ``BCE(D(real), 1) + softplus(D(fake)).mean()`` with the fake
    crops detached. (Official mixes the vanilla loss for real and the wgan_softplus loss for fake
    crops; both are the logistic loss.)
    """
    losses: dict[str, torch.Tensor] = {}
    for name in COMPONENTS:
        fake_pred, _ = discriminators[name](fake[name].detach())
        real_pred, _ = discriminators[name](real[name])
        losses[name] = (gan_loss_vanilla(real_pred, True, is_disc=True)
                        + gan_loss_wgan_softplus(fake_pred, False, is_disc=True))
    return losses


# ----------------------------------------------------------------------------------------------
# Identity loss


def identity_loss(arcface: nn.Module, restored: torch.Tensor, gt: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """``weight * l1(arcface(gray(restored)), arcface(gray(gt)))``, the ground-truth embedding detached.

    arcface: a ResNetArcFace in eval mode with frozen parameters (official); restored, gt:
    [B, 3, H, W] in [-1, 1], converted by :func:`gray_resize_for_identity`.
    """
    _check_same_shape(restored, gt, "identity_loss")
    with torch.no_grad():
        gt_embedding = arcface(gray_resize_for_identity(gt))
    return l1_loss(arcface(gray_resize_for_identity(restored)), gt_embedding, weight)


def resample_box(images: torch.Tensor, box: Sequence[float], size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size]: the box (left, top, right, bottom, in pixels) resampled
    bilinearly (differentiable), output pixel centres spread evenly from the box's left/top to its
    right/bottom edge pixel; beyond the image, its border pixels."""
    batch, channels, height, width = images.shape
    left, top, right, bottom = (float(v) for v in box)
    # affine_grid (align_corners=True) maps output [-1, 1] to input [-1, 1] = pixel 0 .. size-1
    scale_x, scale_y = (right - left) / (width - 1), (bottom - top) / (height - 1)
    shift_x, shift_y = (left + right) / (width - 1) - 1, (top + bottom) / (height - 1) - 1
    theta = torch.tensor([[scale_x, 0.0, shift_x], [0.0, scale_y, shift_y]], device=images.device,
                         dtype=images.dtype).expand(batch, 2, 3)
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


class DlibIdentityLoss(nn.Module):
    """Identity loss with dlib's face-recognition ResNet, where ArcFace weights are not at hand.

    ``weight * mean_b || d(chip(restored_b)) - d(chip(gt_b)) ||_2``: the Euclidean distance
    between 128-d descriptors (the dlib-id metric's distance), the ground-truth descriptor
    detached. ``chip`` cuts one fixed box of the aligned faces and resamples it to 150x150
    (bilinear, differentiable): the box is where dlib would cut its recognition chip on faces of
    this framing (see ``GFPGANTrainer``), as GFP-GAN's ArcFace loss uses one fixed resize. The
    chips are grey, as GFP-GAN's ArcFace input, and blurred: with colour, the generator learned to
    meet the loss with red/blue fringes along the lips, and with sharp grey chips, with
    pixel-level grain (30x the Laplacian energy of the run without the loss; validation SSIM fell
    below the input's within 500-750 iterations either way; docs/default_model.md). Identity
    lives in the shapes of eyes, nose and mouth, which a 1-pixel blur keeps.

    Args:
        net: :class:`faceprior.models.dlib_resnet.DlibFaceResNet`, eval mode, frozen.
        box: (left, top, right, bottom) of the chip, in pixels of the faces passed in.
        weight: loss weight.
    Inputs: restored, gt [B, 3, S, S] RGB in [-1, 1] (the box is in pixels of S).
    """

    def __init__(self, net: nn.Module, box: Sequence[float], weight: float = 1.0):
        super().__init__()
        if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"DlibIdentityLoss: box must be (left, top, right, bottom) with right > left and "
                             f"bottom > top, got {list(box)}")
        self.net = net
        self.box = tuple(float(v) for v in box)
        self.weight = weight

    def chips(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, 3, 150, 150] grey: blurred (Gaussian, sigma S / 256 pixels), the box
        resampled (chip pixel centres spread evenly from the box's left/top to its right/bottom
        edge pixel), then ``0.2989 R + 0.5870 G + 0.1140 B`` in all three channels."""
        batch, channels, height, width = images.shape
        sigma = width / 256
        radius = max(1, math.ceil(3 * sigma))
        images = gaussian_blur(images.reshape(batch * channels, height, width), 2 * radius + 1, sigma)
        chips = resample_box(images.view(batch, channels, height, width), self.box, 150)
        return identity_gray(chips).expand(-1, 3, -1, -1)

    def forward(self, restored: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        _check_same_shape(restored, gt, "DlibIdentityLoss")
        with torch.no_grad():
            gt_descriptor = self.net.descriptor_from_unit_range(self.chips(gt.float()))
        descriptor = self.net.descriptor_from_unit_range(self.chips(restored.float()))
        return (descriptor - gt_descriptor).norm(dim=1).mean() * self.weight
