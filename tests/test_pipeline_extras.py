"""Optional pipeline pieces: face-parsing paste masks and the Real-ESRGAN background upsampler."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import faceprior.face.parsing as parsing
from faceprior.cli import build_parser
from faceprior.face.parsing import (
    PARSENET_CLASSES,
    PASTE_MASK_BORDER,
    ParseNet,
    ParsingMasker,
    gaussian_blur,
    gaussian_kernel,
    make_parsing_masker,
    soften_parsing_mask,
)
from faceprior.face.paste import face_mask
from faceprior.face.templates import FFHQ_TEMPLATE_512
from faceprior.imaging.resize import upscale_lanczos
from faceprior.models.rrdbnet import RRDBNet, upsample_tiled
from faceprior.restoration import restorer as restorer_module
from faceprior.restoration.restorer import FaceRestorer
from faceprior.restoration.upsampling import LanczosUpsampler, NetworkUpsampler, make_upsampler
from faceprior.weights import store
from faceprior.weights.catalogue import CATALOGUE


@pytest.fixture(scope="module")
def small_checkpoint(reference_dir):
    return reference_dir / "ckpt" / "GFPGANv1Clean_small.pth"  # out_size 128, random weights


class OneFaceDetector:
    """Reports one upright face (FFHQ template scaled to ``eye_distance``) centred at (cx, cy).
    The aligned 512-template crop then spans about 4 eye distances of the photo."""

    def __init__(self, cx: float, cy: float, eye_distance: float = 40.0):
        scale = eye_distance / (FFHQ_TEMPLATE_512[1, 0] - FFHQ_TEMPLATE_512[0, 0])
        self.landmarks = ((FFHQ_TEMPLATE_512 - FFHQ_TEMPLATE_512.mean(axis=0)) * scale + [cx, cy])[None].astype(np.float32)

    def detect_arrays(self, image):
        box = np.concatenate([self.landmarks[0].min(axis=0) - 10, self.landmarks[0].max(axis=0) + 10])[None]
        return box, np.ones(1, np.float32), self.landmarks


class FixedLogits(nn.Module):
    """A stand-in parser: class ``left`` on the left half of the image, ``right`` on the right;
    records its last input."""

    def __init__(self, left: int, right: int, num_classes: int = 19):
        super().__init__()
        self.left, self.right, self.num_classes = left, right, num_classes
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        b, _, h, w = x.shape
        logits = torch.zeros(b, self.num_classes, h, w)
        logits[:, self.left, :, : w // 2] = 1.0
        logits[:, self.right, :, w // 2 :] = 1.0
        return logits, x


# ---------------------------------------------------------------------------- parsing masks


def test_gaussian_kernel_and_blur_follow_opencv():
    kernel = gaussian_kernel(101, 11.0)
    assert kernel.shape == (101,) and kernel.sum().item() == pytest.approx(1.0, abs=1e-15)
    assert kernel[50] / kernel[61] == pytest.approx(math.exp(0.5), rel=1e-12)  # 11 px = one sigma
    torch.testing.assert_close(kernel, kernel.flip(0))
    # A constant stays constant (the reflected border adds nothing new).
    torch.testing.assert_close(gaussian_blur(torch.full((1, 120, 130), 0.3), 101, 11.0), torch.full((1, 120, 130), 0.3))
    # A centred impulse becomes the outer product of the kernel.
    impulse = torch.zeros(1, 121, 121, dtype=torch.float64)
    impulse[0, 60, 60] = 1.0
    blurred = gaussian_blur(impulse, 101, 11.0)
    torch.testing.assert_close(blurred[0, 10:111, 10:111], torch.outer(kernel, kernel))
    # BORDER_REFLECT_101: an edge row is mirrored without repeating itself, so a line on row 0
    # gives kernel[50 + i] on row i (BORDER_REFLECT would give kernel[50 + i] + kernel[51 + i]).
    line = torch.zeros(1, 80, 70, dtype=torch.float64)
    line[0, 0] = 1.0
    column = gaussian_blur(line, 101, 11.0)[0, :, 35]
    torch.testing.assert_close(column[:51], kernel[50:])
    assert column[51:].abs().max() < 1e-15


def test_soften_parsing_mask_blurs_twice_and_zeroes_the_border():
    ones = soften_parsing_mask(torch.ones(1, 512, 512))
    border = PASTE_MASK_BORDER
    assert ones[0, border:-border, border:-border].min().item() == pytest.approx(1.0, abs=1e-5)
    assert ones[0, :border].abs().max() == 0 and ones[0, :, -border:].abs().max() == 0
    half = torch.zeros(1, 512, 512)
    half[:, :, :256] = 1.0
    soft = soften_parsing_mask(half)[0, 256]
    kernel = gaussian_kernel(101, 11.0)
    twice = torch.conv1d(kernel.view(1, 1, -1), kernel.flip(0).view(1, 1, -1), padding=100)[0, 0]
    # Far from the image border the step's profile is the step convolved with the kernel twice.
    # Row value at x: the taps m of the double kernel (centre 100) with x + m - 100 < 256.
    expected = torch.cumsum(twice, 0).flip(0)[1:201]  # x = 156 + t -> cumsum[199 - t]
    torch.testing.assert_close(soft[156:356].double(), expected, atol=1e-6, rtol=0)


def test_parsing_masker_classes_normalisation_and_border():
    parser = FixedLogits(left=PARSENET_CLASSES.index("skin"), right=PARSENET_CLASSES.index("cloth"))
    faces = np.full((2, 512, 512, 3), 0.75, np.float32)
    masks = ParsingMasker(parser)(faces)
    assert parser.last_input.shape == (2, 3, 512, 512)
    torch.testing.assert_close(parser.last_input, torch.full((2, 3, 512, 512), 0.5))  # (x - 0.5) / 0.5
    hard = torch.zeros(1, 512, 512)
    hard[:, :, :256] = 1.0
    expected = soften_parsing_mask(hard)[0].numpy() * face_mask(512)
    assert masks.shape == (2, 512, 512) and masks.dtype == np.float32
    np.testing.assert_allclose(masks[0], expected, atol=1e-6)
    np.testing.assert_allclose(masks[1], expected, atol=1e-6)
    assert masks[0, 256, 100] > 0.99 and masks[0, 256, 400] < 1e-3  # skin kept, cloth dropped

    # BiSeNet: ImageNet normalisation and its own class order (17 is hair, 16 cloth).
    bisenet_like = FixedLogits(left=17, right=16)
    masks = ParsingMasker(bisenet_like, network="bisenet")(faces[:1])
    mean, std = torch.tensor(parsing.IMAGENET_MEAN), torch.tensor(parsing.IMAGENET_STD)
    torch.testing.assert_close(bisenet_like.last_input[0, :, 0, 0], (0.75 - mean) / std)
    np.testing.assert_allclose(masks[0], expected, atol=1e-6)


def test_parsing_masker_resizes_other_face_sizes():
    parser = FixedLogits(left=PARSENET_CLASSES.index("hair"), right=PARSENET_CLASSES.index("background"))
    faces = np.random.default_rng(0).random((1, 128, 128, 3)).astype(np.float32)
    mask = ParsingMasker(parser)(faces)[0]
    assert parser.last_input.shape == (1, 3, 512, 512)
    # Bilinear resize up (half-pixel centres, cv2.INTER_LINEAR) of the normalised crop.
    expected_input = F.interpolate(torch.from_numpy(faces).permute(0, 3, 1, 2), size=(512, 512), mode="bilinear", align_corners=False)
    torch.testing.assert_close(parser.last_input, expected_input * 2 - 1)
    assert mask.shape == (128, 128)
    assert mask[64, 20] > 0.99 and mask[64, 108] < 1e-3
    assert np.all(mask <= face_mask(128) + 1e-7)


@pytest.mark.slow
def test_parsing_masker_random_parsenet_range_border_and_batches():
    torch.manual_seed(0)
    model = ParseNet(in_size=512, out_size=512, min_feat_size=128, base_ch=8, res_depth=1, ch_range=(8, 16)).eval()
    faces = np.random.default_rng(1).random((2, 96, 96, 3)).astype(np.float32)
    masks = ParsingMasker(model)(faces)
    assert masks.shape == (2, 96, 96) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1
    assert 0.05 < masks.mean() < 0.95  # the random parser keeps some classes and drops others
    zero_band = int(96 / 20)  # face_mask's band where the mask is exactly 0
    for band in (masks[:, :zero_band], masks[:, -zero_band:], masks[:, :, :zero_band], masks[:, :, -zero_band:]):
        assert np.all(band == 0)
    singles = np.concatenate([ParsingMasker(model, batch_size=1)(faces[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(masks, singles, atol=1e-5)


def test_make_parsing_masker_fetches_facexlib_parsenet(tmp_path, monkeypatch):
    """The catalogue's ParseNet file, taken from a mirror folder into the weight cache (random weights
    stand in for the release; the entry is pinned to them)."""
    torch.manual_seed(0)
    weights = ParseNet().state_dict()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path = mirror / "parsing_parsenet.pth"
    torch.save(weights, path)
    entry = CATALOGUE["parsenet"]
    assert entry.url == "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth"
    monkeypatch.setitem(CATALOGUE, "parsenet", replace(entry, sha256=store.sha256_of_file(path), size=path.stat().st_size))
    monkeypatch.setenv(store.ENV_MIRROR, str(mirror))
    masker = make_parsing_masker("parsenet", cache_dir=str(tmp_path / "cache"))
    assert isinstance(masker.model, ParseNet) and not masker.model.training
    torch.testing.assert_close(masker.model.out_mask_conv.conv2d.weight, weights["out_mask_conv.conv2d.weight"])
    with pytest.raises(ValueError, match="unknown face parser 'segformer'"):
        make_parsing_masker("segformer")


def test_restorer_pastes_with_the_face_masker(small_checkpoint, monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (260, 280, 3), dtype=np.uint8)
    detector = OneFaceDetector(140, 130)  # the crop (about 160 px) inside the photo: the default mask is face_mask
    seen = []

    def nothing(faces):
        seen.append(faces)
        return np.zeros(faces.shape[:3], np.float32)

    restorer = FaceRestorer(model=str(small_checkpoint), detector=detector, face_masker=nothing, background=False)
    result = restorer.restore(image)
    assert len(result.faces) == 1 and seen[0].shape == (1, 128, 128, 3) and seen[0].dtype == np.float32
    np.testing.assert_allclose(seen[0][0], result.faces[0].restored / 255.0, atol=1e-6)  # the restored face
    np.testing.assert_array_equal(result.image, image)  # all-zero masks paste nothing
    restorer.face_masker = lambda faces: np.broadcast_to(face_mask(128), faces.shape[:3])
    same = restorer.restore(image).image
    restorer.face_masker = None
    default = restorer.restore(image).image
    np.testing.assert_array_equal(same, default)
    assert np.any(default != image)

    # A name builds the parser through make_parsing_masker.
    monkeypatch.setattr(restorer_module, "make_parsing_masker", lambda network, device, cache_dir: ("masker", network))
    named = FaceRestorer(model=str(small_checkpoint), detector=detector, face_masker="parsenet", background=False)
    assert named.face_masker == ("masker", "parsenet")


# ---------------------------------------------------------------------------- background upsampler


def _tiny_rrdbnet(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    with torch.no_grad():
        model.conv_last.bias.fill_(0.5)  # outputs around mid-grey, mostly inside [0, 1]
        model.conv_last.weight.mul_(0.1)
    return model


def test_network_upsampler_runs_upsample_tiled():
    model = _tiny_rrdbnet()
    image = np.random.default_rng(3).integers(0, 256, (27, 37, 3), dtype=np.uint8)
    upsampler = NetworkUpsampler(model, model_scale=2, tile_size=16, tile_pad=4)
    assert upsampler.pad_multiple == 2  # RRDBNet x2 pixel-unshuffles by 2
    x = torch.from_numpy(image).float().div(255).permute(2, 0, 1)[None]
    expected = upsample_tiled(model, x, tile=16, tile_pad=4).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    out = upsampler.upsample(image, 2.0)
    assert out.shape == (54, 74, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(expected * 255).astype(np.uint8))
    # Other factors: the x2 output resized with Lanczos.
    x3 = upsampler.upsample(image.astype(np.float32) / 255, 3.0)
    assert x3.shape == (81, 111, 3) and x3.dtype == np.float32
    np.testing.assert_allclose(x3, upscale_lanczos(expected, 1.5), atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 2"):
        NetworkUpsampler(model, model_scale=2, tile_size=15)


def test_restorer_with_a_network_upsampler(small_checkpoint):
    image = np.random.default_rng(4).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    upsampler = NetworkUpsampler(_tiny_rrdbnet(), model_scale=2, tile_size=0)
    detector = OneFaceDetector(22, 20, eye_distance=10)  # crop: about 40 x 40 photo pixels
    # x3: the network's x2, then Lanczos by 1.5.
    result = FaceRestorer(model=str(small_checkpoint), detector=detector, upscale=3, upsampler=upsampler,
                          background=False).restore(image)
    assert result.image.shape == (120, 270, 3) and result.image.dtype == np.uint8
    background = upsampler.upsample(image, 3.0)
    # Far from the face the output is the network's background; the face was pasted over it.
    np.testing.assert_array_equal(result.image[:, 180:], background[:, 180:])
    assert np.any(result.image[40:80, 40:80] != background[40:80, 40:80])


def test_make_upsampler_loads_realesrgan_x2plus(tmp_path, monkeypatch):
    """The catalogue's Real-ESRGAN x2 file, taken from a mirror folder into the weight cache (random
    weights of the x2plus architecture stand in for the release; the entry is pinned to them)."""
    torch.manual_seed(0)
    weights = RRDBNet(scale=2).state_dict()  # the x2plus architecture
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path = mirror / "RealESRGAN_x2plus.pth"
    torch.save({"params": weights}, path)  # no params_ema: the loader falls back to params
    entry = CATALOGUE["realesrgan-x2plus"]
    assert entry.url.endswith("/v0.2.1/RealESRGAN_x2plus.pth") and entry.arch == "RRDBNet"
    monkeypatch.setitem(CATALOGUE, entry.name, replace(entry, sha256=store.sha256_of_file(path), size=path.stat().st_size))
    monkeypatch.setenv(store.ENV_MIRROR, str(mirror))
    upsampler = make_upsampler("realesrgan", tile=64, cache_dir=str(tmp_path / "cache"))
    assert isinstance(upsampler, NetworkUpsampler) and isinstance(upsampler.model, RRDBNet)
    assert (upsampler.model_scale, upsampler.tile_size, upsampler.tile_pad) == (2, 64, 10)
    assert upsampler.dtype == torch.float32 and len(upsampler.model.body) == 23
    torch.testing.assert_close(upsampler.model.conv_first.weight, weights["conv_first.weight"])
    assert upsampler.upsample(np.zeros((6, 8, 3), np.uint8), 2.0).shape == (12, 16, 3)
    assert isinstance(make_upsampler("lanczos"), LanczosUpsampler)
    with pytest.raises(ValueError, match="unknown background upsampler 'bicubic'"):
        make_upsampler("bicubic")


def test_lanczos_upsampler_is_the_default(small_checkpoint):
    # weight 0: the face is left as it is, so the output is the photo enlarged by the upsampler alone
    restorer = FaceRestorer(model=str(small_checkpoint), aligned="model", weight=0.0, upscale=2)
    assert isinstance(restorer.upsampler, LanczosUpsampler)
    face = np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    result = restorer.restore(face)
    np.testing.assert_array_equal(result.image, upscale_lanczos(face, 2.0))


def test_restore_command_options():
    args = build_parser().parse_args(["restore", "in.png", "-o", "out"])
    assert (args.bg_upsampler, args.bg_tile, args.parse_mask) == ("lanczos", 400, False)
    args = build_parser().parse_args(
        ["restore", "in.png", "-o", "out", "--bg-upsampler", "realesrgan", "--bg-tile", "0", "--parse-mask"]
    )
    assert (args.bg_upsampler, args.bg_tile, args.parse_mask) == ("realesrgan", 0, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["restore", "in.png", "-o", "out", "--bg-upsampler", "bicubic"])
