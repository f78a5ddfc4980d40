"""GFP-GAN losses: hand-computed values on tiny tensors, properties of the network-based terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceprior.models.arcface import ResNetArcFace, gray_resize_for_identity
from faceprior.models.gfpgan_v1 import FacialComponentDiscriminator
from faceprior.models.vgg import VGG19Features
from faceprior.training.losses import (
    COMPONENTS,
    GFPGAN_PERCEPTUAL_LAYER_WEIGHTS,
    LossWeights,
    PerceptualLoss,
    component_crop_settings,
    component_discriminator_losses,
    component_generator_losses,
    component_l1_loss,
    component_rois,
    crop_facial_components,
    gan_loss_vanilla,
    gan_loss_wgan_softplus,
    gram_matrix,
    identity_loss,
    image_pyramid,
    l1_loss,
    lazy_path_length_loss,
    lazy_r1_loss,
    path_length_penalty,
    pyramid_l1_loss,
    r1_penalty,
)
from faceprior.training.roi_align import roi_align

# ----------------------------------------------------------------------------------------------
# Weights


def test_loss_weights_defaults_are_train_gfpgan_v1_yml():
    w = LossWeights()
    assert (w.pixel, w.perceptual, w.style, w.pyramid, w.remove_pyramid_after) == (0.1, 1.0, 50.0, 1.0, 50_000)
    assert (w.gan, w.component_gan, w.component_style, w.identity) == (0.1, 1.0, 200.0, 10.0)
    assert (w.r1, w.r1_every, w.path_length) == (10.0, 16, 0.0)
    assert w.pyramid_weight_at(50_000) == 1.0 and w.pyramid_weight_at(50_001) == 1e-12


def test_loss_weights_switches():
    w = LossWeights().without("identity", "component_gan")
    assert w.identity == 0 and w.component_gan == 0 and w.pixel == 0.1
    assert not w.enabled("identity") and w.enabled("style")
    assert LossWeights(pyramid=0.0).pyramid_weight_at(10**6) == 0.0
    prior = LossWeights.stylegan2_prior()
    assert (prior.gan, prior.r1, prior.r1_every, prior.path_length, prior.path_length_every) == (1.0, 10.0, 16, 2.0, 4)
    assert [t for t in LossWeights.TERMS if prior.enabled(t)] == ["gan", "r1", "path_length"]
    with pytest.raises(ValueError, match="unknown loss term"):
        LossWeights().without("vgg")
    with pytest.raises(ValueError, match="must be >= 0"):
        LossWeights(style=-1.0)


# ----------------------------------------------------------------------------------------------
# Pixel losses


def test_l1_loss_hand_computed():
    pred = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    target = torch.tensor([[0.0, 1.0], [0.5, 1.0]])
    assert l1_loss(pred, target).item() == pytest.approx((1 + 3 + 0 + 2) / 4)
    assert l1_loss(pred, target, weight=0.1).item() == pytest.approx(0.15)
    with pytest.raises(ValueError, match="shapes differ"):
        l1_loss(pred, target[:1])


def test_pyramid_l1_loss_hand_computed():
    # gt 4x4 made of constant 2x2 blocks: bilinear halving (align_corners=False) gives the block values.
    blocks = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    gt = blocks.repeat_interleave(2, 0).repeat_interleave(2, 1).view(1, 1, 4, 4)
    pyramid = image_pyramid(gt, 2)
    torch.testing.assert_close(pyramid[0], blocks.view(1, 1, 2, 2))
    assert pyramid[1] is gt

    out_small = torch.zeros(1, 1, 2, 2)  # L1 vs blocks: (1 + 1 + 0.5 + 0) / 4 = 0.625
    out_full = gt + 0.25                 # L1 vs gt: 0.25
    loss = pyramid_l1_loss([out_small, out_full], gt, weight=2.0)
    assert loss.item() == pytest.approx(2.0 * (0.625 + 0.25))
    with pytest.raises(ValueError, match="level 0"):
        pyramid_l1_loss([torch.zeros(1, 1, 3, 3), out_full], gt)


# ----------------------------------------------------------------------------------------------
# Gram matrix and perceptual loss


def test_gram_matrix_against_loops():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64)
    gram = gram_matrix(x)
    n, c, h, w = x.shape
    for b in range(n):
        for i in range(c):
            for j in range(c):
                total = sum(x[b, i, y, z].item() * x[b, j, y, z].item() for y in range(h) for z in range(w))
                assert gram[b, i, j].item() == pytest.approx(total / (c * h * w), abs=1e-12)


@pytest.fixture(scope="module")
def perceptual_vgg() -> VGG19Features:
    torch.manual_seed(0)  # random init: only properties are tested
    return VGG19Features(use_input_norm=True, range_norm=True)


def test_perceptual_loss_zero_for_identical_inputs(perceptual_vgg):
    loss = PerceptualLoss(GFPGAN_PERCEPTUAL_LAYER_WEIGHTS, perceptual_vgg, perceptual_weight=1.0, style_weight=50.0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    percep, style = loss(x, x.clone())
    assert percep.item() == 0 and style.item() == 0
    percep, style = loss(x, (x + 0.2 * torch.randn_like(x)).clamp(-1, 1))
    assert percep.item() > 0 and style.item() > 0


def test_perceptual_loss_respects_layer_weights(perceptual_vgg):
    x = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    weights = {"conv1_2": 0.3, "conv3_4": 2.0}
    percep, style = PerceptualLoss(weights, perceptual_vgg, perceptual_weight=1.5, style_weight=7.0)(x, gt)
    fx, fg = perceptual_vgg(x, list(weights)), perceptual_vgg(gt, list(weights))
    expected_percep = 1.5 * sum(w * (fx[k] - fg[k]).abs().mean() for k, w in weights.items())
    expected_style = 7.0 * sum(w * (gram_matrix(fx[k]) - gram_matrix(fg[k])).abs().mean() for k, w in weights.items())
    torch.testing.assert_close(percep, expected_percep)
    torch.testing.assert_close(style, expected_style)
    # A layer with weight 0 contributes nothing.
    only_first, _ = PerceptualLoss({"conv1_2": 0.3, "conv3_4": 0.0}, perceptual_vgg, 1.5, 0.0)(x, gt)
    torch.testing.assert_close(only_first, 1.5 * 0.3 * (fx["conv1_2"] - fg["conv1_2"]).abs().mean())
    # The loss back-propagates into x but not into the (frozen) VGG.
    percep.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual_vgg.parameters())


def test_perceptual_loss_switches_and_criteria(perceptual_vgg):
    x, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    percep, style = PerceptualLoss({"conv1_1": 1.0}, perceptual_vgg, perceptual_weight=0.0, style_weight=1.0)(x, gt)
    assert percep is None and style.item() > 0
    assert PerceptualLoss({"conv1_1": 1.0}, perceptual_vgg, 0.0, 0.0)(x, gt) == (None, None)
    fro, _ = PerceptualLoss({"conv1_1": 1.0}, perceptual_vgg, 1.0, 0.0, criterion="fro")(x, gt)
    fx, fg = perceptual_vgg(x, ["conv1_1"])["conv1_1"], perceptual_vgg(gt, ["conv1_1"])["conv1_1"]
    torch.testing.assert_close(fro, ((fx - fg) ** 2).sum().sqrt())
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss({"conv1_1": 1.0}, perceptual_vgg, criterion="l3")
    with pytest.raises(ValueError, match="not layers"):
        PerceptualLoss({"conv9_9": 1.0}, perceptual_vgg)


# ----------------------------------------------------------------------------------------------
# GAN losses and regularisers


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_gan_losses_at_known_logits():
    logits = [-2.0, 0.0, 3.0]
    pred = torch.tensor(logits)
    real = sum(softplus(-v) for v in logits) / 3  # -log(sigmoid(v))
    fake = sum(softplus(v) for v in logits) / 3   # -log(1 - sigmoid(v))
    assert gan_loss_wgan_softplus(pred, True, is_disc=True).item() == pytest.approx(real, rel=1e-6)
    assert gan_loss_wgan_softplus(pred, False, is_disc=True).item() == pytest.approx(fake, rel=1e-6)
    # The weight only applies to the generator.
    assert gan_loss_wgan_softplus(pred, True, is_disc=False, weight=0.1).item() == pytest.approx(0.1 * real, rel=1e-6)
    assert gan_loss_wgan_softplus(pred, True, is_disc=True, weight=0.1).item() == pytest.approx(real, rel=1e-6)

    bce_real = -sum(math.log(1 / (1 + math.exp(-v))) for v in logits) / 3
    bce_fake = -sum(math.log(1 - 1 / (1 + math.exp(-v))) for v in logits) / 3
    assert gan_loss_vanilla(pred, True, is_disc=True).item() == pytest.approx(bce_real, rel=1e-6)
    assert gan_loss_vanilla(pred, False, is_disc=False, weight=2.0).item() == pytest.approx(2 * bce_fake, rel=1e-6)
    # Smoothed label 0.9: -(0.9 log s + 0.1 log(1 - s)).
    smooth = -sum(0.9 * math.log(1 / (1 + math.exp(-v))) + 0.1 * math.log(1 - 1 / (1 + math.exp(-v)))
                  for v in logits) / 3
    assert gan_loss_vanilla(pred, True, is_disc=True, real_label=0.9).item() == pytest.approx(smooth, rel=1e-6)


def quadratic_discriminator(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """D(x)_b = sum(w * x_b^2): gradient 2 w x_b."""
    return (w * x.pow(2)).flatten(1).sum(1, keepdim=True)


def test_r1_penalty_against_analytic_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, generator=g, dtype=torch.float64)
    pred = quadratic_discriminator(x, w)
    expected = (2 * w * x.detach()).pow(2).flatten(1).sum(1).mean()
    penalty = r1_penalty(pred, x)
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=0)
    # The graph is kept (create_graph): d penalty / d w = mean_b 8 w x_b^2.
    w_param = w.clone().requires_grad_(True)
    r1_penalty(quadratic_discriminator(x, w_param), x).backward()
    torch.testing.assert_close(w_param.grad, (8 * w * x.detach().pow(2)).mean(0), rtol=1e-12, atol=0)

    lazy = lazy_r1_loss(quadratic_discriminator(x, w), x, weight=10.0, every=16)
    torch.testing.assert_close(lazy, 10.0 / 2 * expected * 16, rtol=1e-12, atol=0)


def linear_generator(latents: torch.Tensor, matrix: torch.Tensor, size: int) -> torch.Tensor:
    """fake_b = sum over latent copies of latents[b, l] @ matrix, as a [B, 1, size, size] image."""
    return (latents.sum(1) @ matrix).view(-1, 1, size, size)


def test_path_length_penalty_analytic_and_ema():
    g = torch.Generator().manual_seed(2)
    size, dim = 4, 5
    matrix = torch.randn(dim, size * size, generator=g, dtype=torch.float64).requires_grad_(True)
    latents = torch.randn(3, 2, dim, generator=g, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(3, 1, size, size, generator=g, dtype=torch.float64)
    fake = linear_generator(latents, matrix, size)
    penalty, path_mean, new_mean = path_length_penalty(fake, latents, 0.0, decay=0.01, noise=noise)
    # grad wrt each latent copy = matrix @ noise_b / size: path length_b = |matrix @ noise_b| / size.
    lengths = (noise.view(3, -1) @ matrix.detach().T).norm(dim=1) / size
    torch.testing.assert_close(path_mean, lengths.mean())
    torch.testing.assert_close(new_mean, 0.01 * lengths.mean())
    torch.testing.assert_close(penalty, (lengths - 0.01 * lengths.mean()).pow(2).mean())
    assert penalty.requires_grad and not new_mean.requires_grad

    # The running mean approaches the (fixed) path length monotonically, and the penalty shrinks.
    running, gaps, penalties = torch.tensor(0.0, dtype=torch.float64), [], []
    for _ in range(100):
        fake = linear_generator(latents, matrix, size)
        penalty, _, running = path_length_penalty(fake, latents, running, decay=0.1, noise=noise)
        gaps.append(abs(lengths.mean().item() - running.item()))
        penalties.append(penalty.item())
        assert math.isfinite(penalty.item())
    assert all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-4 * gaps[0]
    assert penalties[-1] < penalties[0]
    # Once converged, what is left is the variance of the per-sample path lengths.
    assert penalties[-1] == pytest.approx(lengths.var(unbiased=False).item(), rel=1e-2)

    loss, _, _ = lazy_path_length_loss(fake, latents, running, weight=2.0, every=4, noise=noise)
    expected, _, _ = path_length_penalty(fake, latents, running, noise=noise)
    torch.testing.assert_close(loss, 8.0 * expected)


# ----------------------------------------------------------------------------------------------
# Facial components


def test_component_crop_settings():
    assert component_crop_settings(512) == (80, 120, 1.0)
    assert component_crop_settings(1024) == (160, 240, 2.0)
    assert component_crop_settings(256) == (40, 60, 1.0)
    assert component_crop_settings(32) == (5, 8, 1.0)


def test_component_l1_loss_weighs_each_component_equally():
    torch.manual_seed(0)
    real = {"left_eye": torch.rand(2, 3, 5, 5), "right_eye": torch.rand(2, 3, 5, 5), "mouth": torch.rand(2, 3, 8, 8)}
    fake = {name: crop.clone().requires_grad_() for name, crop in real.items()}
    assert component_l1_loss(fake, real, weight=3.0).detach().item() == 0.0
    offsets = {"left_eye": 0.1, "right_eye": 0.0, "mouth": -0.2}  # the mouth crop is larger: same weight
    moved = {name: fake[name] + offset for name, offset in offsets.items()}
    loss = component_l1_loss(moved, real, weight=3.0)
    torch.testing.assert_close(loss, torch.tensor(3.0 * (0.1 + 0.2)))
    loss.backward()
    assert float(fake["right_eye"].grad.abs().sum()) == 0 and float(fake["mouth"].grad.abs().sum()) > 0


def component_boxes():
    left = torch.tensor([[2.0, 3.0, 10.0, 11.0], [4.0, 2.0, 12.0, 10.0]])
    right = torch.tensor([[18.0, 3.0, 26.0, 11.0], [20.0, 4.0, 28.0, 12.0]])
    mouth = torch.tensor([[8.0, 18.0, 24.0, 28.0], [9.0, 17.0, 25.0, 27.0]])
    return left, right, mouth


def test_component_rois_and_crops():
    left, right, mouth = component_boxes()
    eyes, mouths = component_rois(left, right, mouth)
    torch.testing.assert_close(eyes, torch.tensor([[0, *left[0]], [0, *right[0]], [1, *left[1]], [1, *right[1]]]))
    torch.testing.assert_close(mouths[:, 0], torch.tensor([0.0, 1.0]))

    # Constant regions: each crop sees only its own region's value (boxes stay inside the regions).
    images = torch.zeros(2, 3, 32, 32)
    images[:, :, 0:14, 0:16] = 0.25   # left-eye region
    images[:, :, 0:14, 16:32] = -0.5  # right-eye region
    images[:, :, 14:32, :] = 0.75     # mouth region
    crops = crop_facial_components(images, left, right, mouth, eye_size=4, mouth_size=6, value_scale=2.0)
    assert crops["left_eye"].shape == (2, 3, 4, 4) and crops["mouth"].shape == (2, 3, 6, 6)
    torch.testing.assert_close(crops["left_eye"], torch.full((2, 3, 4, 4), 0.5))
    torch.testing.assert_close(crops["right_eye"], torch.full((2, 3, 4, 4), -1.0))
    torch.testing.assert_close(crops["mouth"], torch.full((2, 3, 6, 6), 1.5))
    # Per-image boxes: image 1's right eye equals roi_align of image 1 with its own box.
    random = torch.randn(2, 3, 32, 32)
    crops = crop_facial_components(random, left, right, mouth, eye_size=4, mouth_size=6)
    torch.testing.assert_close(crops["right_eye"][1:], roi_align(random, torch.tensor([[1.0, *right[1]]]), 4))


class TinyComponentDiscriminator(torch.nn.Module):
    """Stand-in with FacialComponentDiscriminator's interface: (logits, [feat at /1, feat at /2])."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.final = torch.nn.Conv2d(5, 1, 1)

    def forward(self, x, return_feats=False):
        f1 = F.leaky_relu(self.conv1(x), 0.2)
        f2 = F.leaky_relu(self.conv2(f1), 0.2)
        return self.final(f2), ([f1, f2] if return_feats else None)


@pytest.fixture()
def tiny_discriminators():
    torch.manual_seed(3)
    return {name: TinyComponentDiscriminator() for name in COMPONENTS}


def test_component_generator_losses(tiny_discriminators):
    torch.manual_seed(4)
    real = {name: torch.rand(2, 3, 6, 6) * 2 - 1 for name in COMPONENTS}
    fake = {name: (torch.rand(2, 3, 6, 6) * 2 - 1).requires_grad_(True) for name in COMPONENTS}
    for d in tiny_discriminators.values():
        d.requires_grad_(False)
    losses = component_generator_losses(tiny_discriminators, fake, real, gan_weight=0.5, style_weight=200.0)
    assert sorted(losses) == ["gan_left_eye", "gan_mouth", "gan_right_eye", "style"]
    style = 0.0
    for name in COMPONENTS:
        pred, ff = tiny_discriminators[name](fake[name], return_feats=True)
        _, rf = tiny_discriminators[name](real[name], return_feats=True)
        torch.testing.assert_close(losses[f"gan_{name}"], 0.5 * F.softplus(-pred).mean())
        style = style + 0.5 * (gram_matrix(ff[0]) - gram_matrix(rf[0])).abs().mean() \
            + (gram_matrix(ff[1]) - gram_matrix(rf[1])).abs().mean()
    torch.testing.assert_close(losses["style"], 200.0 * style)
    sum(losses.values()).backward()
    assert all(fake[n].grad is not None and fake[n].grad.abs().sum() > 0 for n in COMPONENTS)

    same = component_generator_losses(tiny_discriminators, real, real, gan_weight=0.0, style_weight=200.0)
    assert list(same) == ["style"] and same["style"].item() == 0
    assert component_generator_losses(tiny_discriminators, fake, real, 0.0, 0.0) == {}


def test_component_discriminator_losses(tiny_discriminators):
    torch.manual_seed(5)
    real = {name: torch.rand(2, 3, 6, 6) * 2 - 1 for name in COMPONENTS}
    fake = {name: (torch.rand(2, 3, 6, 6) * 2 - 1).requires_grad_(True) for name in COMPONENTS}
    losses = component_discriminator_losses(tiny_discriminators, fake, real)
    for name in COMPONENTS:
        real_pred, _ = tiny_discriminators[name](real[name])
        fake_pred, _ = tiny_discriminators[name](fake[name])
        # Official: vanilla BCE for real + wgan_softplus for fake, i.e. the logistic loss on both.
        expected = (F.binary_cross_entropy_with_logits(real_pred, torch.ones_like(real_pred))
                    + F.binary_cross_entropy_with_logits(fake_pred, torch.zeros_like(fake_pred)))
        torch.testing.assert_close(losses[name], expected)
    sum(losses.values()).backward()
    assert all(fake[n].grad is None for n in COMPONENTS)  # fakes are detached
    assert all(p.grad is not None for d in tiny_discriminators.values() for p in d.parameters())


def test_component_losses_with_facial_component_discriminator():
    # End to end on the real network: crops of a restored/gt pair -> G and D losses.
    torch.manual_seed(7)
    discriminators = {name: FacialComponentDiscriminator().requires_grad_(False) for name in COMPONENTS}
    left, right, mouth = component_boxes()
    gt = torch.rand(2, 3, 32, 32) * 2 - 1
    restored = (gt + 0.1 * torch.randn_like(gt)).requires_grad_(True)
    fake = crop_facial_components(restored, left, right, mouth, eye_size=8, mouth_size=8)
    real = crop_facial_components(gt, left, right, mouth, eye_size=8, mouth_size=8)
    losses = component_generator_losses(discriminators, fake, real, gan_weight=1.0, style_weight=200.0)
    total = sum(losses.values())
    assert math.isfinite(total.item()) and losses["style"].item() > 0
    total.backward()
    assert restored.grad.abs().sum() > 0
    d_losses = component_discriminator_losses(discriminators, fake, real)
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in d_losses.values())


# ----------------------------------------------------------------------------------------------
# Identity


def test_gray_resize_for_identity():
    images = torch.rand(2, 3, 128, 128) * 2 - 1
    gray = gray_resize_for_identity(images)
    expected = 0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]
    torch.testing.assert_close(gray, expected.unsqueeze(1))  # same size: resize is the identity
    constant = torch.tensor([0.5, -0.25, 1.0]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    small = gray_resize_for_identity(constant)
    assert small.shape == (1, 1, 128, 128)
    torch.testing.assert_close(small, torch.full_like(small, 0.2989 * 0.5 - 0.5870 * 0.25 + 0.1140))


class LinearEmbedding(torch.nn.Module):
    """Stand-in for ArcFace: [B, 1, 128, 128] -> [B, 8], linear."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(128 * 128, 8)

    def forward(self, x):
        assert x.shape[1:] == (1, 128, 128)
        return self.fc(x.flatten(1))


def test_identity_loss_value_and_gradient():
    torch.manual_seed(6)
    embed = LinearEmbedding().requires_grad_(False)
    gt = torch.rand(2, 3, 32, 32) * 2 - 1
    restored = (gt + 0.3 * torch.randn_like(gt)).requires_grad_(True)
    loss = identity_loss(embed, restored, gt, weight=10.0)
    expected = 10.0 * (embed(gray_resize_for_identity(restored)) - embed(gray_resize_for_identity(gt))).abs().mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert restored.grad.abs().sum() > 0
    assert identity_loss(embed, gt, gt).item() == 0


def test_identity_loss_with_random_arcface():
    torch.manual_seed(6)
    arcface = ResNetArcFace().eval().requires_grad_(False)
    gt = torch.rand(1, 3, 32, 32) * 2 - 1
    assert identity_loss(arcface, gt.clone(), gt).item() == 0
    assert identity_loss(arcface, gt.flip(-1), gt).item() > 0
