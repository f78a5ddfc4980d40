"""Face parsing networks of facexlib: ParseNet (used by GFP-GAN's paste-back) and BiSeNet.

Both predict 19 semantic classes per pixel of an aligned face crop. Module names follow facexlib,
so ``parsing_parsenet.pth`` and ``parsing_bisenet.pth`` (plain state dicts) load with
:func:`load_parsenet` / :func:`load_bisenet`.

Input conventions (the way facexlib's callers feed them):

* ParseNet: ``[B, 3, 512, 512]`` **RGB** in [-1, 1] (``(x / 255 - 0.5) / 0.5``). Output
  ``(parsing_logits [B, 19, H, W], image [B, 3, H, W])``; the second output is a restored image
  that the paste-back ignores.
* BiSeNet: ``[B, 3, H, W]`` RGB in [0, 1] normalised with the ImageNet mean/std
  (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`), usually 512x512. Output ``(logits, logits16,
  logits32)``, each [B, 19, H, W]; the first is the prediction, the others are auxiliary heads.

The two networks were trained on CelebAMask-HQ with **different class orders**
(:data:`PARSENET_CLASSES`, :data:`BISENET_CLASSES`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from faceprior.errors import OptionError
from faceprior.face.paste import face_mask
from faceprior.face.retinaface import Checkpoint, load_facexlib_state_dict, read_facexlib_checkpoint
from faceprior.models.arcface import BasicBlock
from faceprior.weights.catalogue import fetch_weights

PARSENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_glasses", "left_eye", "right_eye", "left_brow", "right_brow",
    "left_ear", "right_ear", "mouth", "upper_lip", "lower_lip", "hair", "hat", "earring", "necklace",
    "neck", "cloth",
)  # fmt: skip

BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "eye_glasses",
    "left_ear", "right_ear", "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck", "necklace",
    "cloth", "hair", "hat",
)  # fmt: skip

# ParseNet classes that facexlib's FaceRestoreHelper.paste_faces_to_input_image keeps (its
# MASK_COLORMAP is 255 exactly for these): everything but background, hat, necklace, neck, cloth.
PASTE_MASK_CLASSES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)
# The same classes in BiSeNet's order.
BISENET_PASTE_MASK_CLASSES: tuple[int, ...] = tuple(
    sorted(BISENET_CLASSES.index(PARSENET_CLASSES[c]) for c in PASTE_MASK_CLASSES)
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# ParseNet (facexlib/parsing/parsenet.py, from PSFR-GAN)
# --------------------------------------------------------------------------------------------


class BatchNormLayer(nn.Module):
    """BatchNorm wrapped in a module attribute ``norm`` (facexlib key ``<...>.norm.norm.*``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ParseNetConv(nn.Module):
    """[nearest 2x up] - reflection pad - conv (stride 2 if ``resample='down'``) [- BN] [- LeakyReLU(0.2)].

    ``resample``: ``'none'``, ``'down'`` (stride-2 conv) or ``'up'`` (nearest 2x before the conv).
    The conv has a bias only without BN. [B, Cin, H, W] -> [B, Cout, H', W'].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        resample: str = "none",
        batch_norm: bool = False,
        activation: bool = False,
    ):
        super().__init__()
        if resample not in ("none", "down", "up"):
            raise ValueError(f"resample must be 'none', 'down' or 'up', got {resample!r}")
        self.upsample = resample == "up"
        self.padding = kernel_size // 2  # facexlib: ceil((k - 1) / 2)
        stride = 2 if resample == "down" else 1
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=not batch_norm)
        self.norm = BatchNormLayer(out_channels) if batch_norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, [self.padding] * 4, mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        if self.activation:
            x = F.leaky_relu(x, 0.2)
        return x


class ParseNetResidualBlock(nn.Module):
    """``shortcut(x) + conv2(conv1(x))`` with BN and LeakyReLU(0.2) after conv1, BN after conv2.

    ``resample='down'`` halves the size (stride on conv2), ``'up'`` doubles it (before conv1). The
    shortcut is the identity when size and channels are kept, else a biased 3x3 ``ParseNetConv``.
    """

    def __init__(self, in_channels: int, out_channels: int, resample: str = "none"):
        super().__init__()
        if resample == "none" and in_channels == out_channels:
            self.shortcut_func = None
        else:
            self.shortcut_func = ParseNetConv(in_channels, out_channels, 3, resample)
        self.conv1 = ParseNetConv(
            in_channels, out_channels, 3, "up" if resample == "up" else "none", batch_norm=True, activation=True
        )
        self.conv2 = ParseNetConv(
            out_channels, out_channels, 3, "down" if resample == "down" else "none", batch_norm=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut_func is None else self.shortcut_func(x)
        return identity + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """facexlib ParseNet: encoder (to ``min_feat_size``) - residual body - decoder, two output convs.

    Defaults are facexlib's ``init_parsing_model('parsenet')`` config (512 in/out, 19 classes).
    ``forward(x)``: x [B, 3, in_size, in_size] RGB in [-1, 1] -> ``(parsing_logits [B, parsing_ch,
    out_size, out_size], image [B, 3, out_size, out_size])``.
    """

    def __init__(
        self,
        in_size: int = 512,
        out_size: int = 512,
        min_feat_size: int = 32,
        base_ch: int = 64,
        parsing_ch: int = 19,
        res_depth: int = 10,
        ch_range: Sequence[int] = (32, 256),
    ):
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(channels: int) -> int:
            return max(min_ch, min(channels, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = (in_size // min_feat_size).bit_length() - 1  # int(log2(...))
        up_steps = (out_size // min_feat_size).bit_length() - 1

        encoder: list[nn.Module] = [ParseNetConv(3, base_ch, 3)]
        head_ch = base_ch
        for _ in range(down_steps):
            encoder.append(ParseNetResidualBlock(clip(head_ch), clip(head_ch * 2), "down"))
            head_ch *= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*[ParseNetResidualBlock(clip(head_ch), clip(head_ch)) for _ in range(res_depth)])
        decoder = []
        for _ in range(up_steps):
            decoder.append(ParseNetResidualBlock(clip(head_ch), clip(head_ch // 2), "up"))
            head_ch //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ParseNetConv(clip(head_ch), 3)
        self.out_mask_conv = ParseNetConv(clip(head_ch), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)


# --------------------------------------------------------------------------------------------
# BiSeNet (facexlib/parsing/bisenet.py and resnet.py, from face-parsing.PyTorch)
# --------------------------------------------------------------------------------------------


class ResNet18Backbone(nn.Module):
    """ResNet-18 without the classifier. [B, 3, H, W] -> features at strides 8, 16, 32 (128, 256, 512 ch)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, 64, stride=1)
        self.layer2 = self._make_layer(64, 128, stride=2)
        self.layer3 = self._make_layer(128, 256, stride=2)
        self.layer4 = self._make_layer(256, 512, stride=2)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, stride: int, num_blocks: int = 2) -> nn.Sequential:
        downsample = None
        if in_channels != out_channels or stride != 1:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [BasicBlock(in_channels, out_channels, stride, downsample)]
        blocks += [BasicBlock(out_channels, out_channels) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class ConvBNReLU(nn.Module):
    """conv (no bias) - BN - ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _global_average(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, 1, 1] spatial mean."""
    return F.avg_pool2d(x, x.shape[2:])


class BiSeNetOutput(nn.Module):
    """3x3 ConvBNReLU then a 1x1 classifier (no bias). Returns ``(logits, features)``."""

    def __init__(self, in_channels: int, mid_channels: int, num_class: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels)
        self.conv_out = nn.Conv2d(mid_channels, num_class, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.conv(x)
        return self.conv_out(feat), feat


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU, then multiply by a channel gate sigmoid(BN(conv1x1(global mean)))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(_global_average(feat))))
        return feat * gate


class ContextPath(nn.Module):
    """ResNet-18 plus attention refinement of the stride-16/32 features and a global context term.

    Returns ``(feat8 [B,128,H/8,W/8], context8 [B,128,H/8,W/8], context16 [B,128,H/16,W/16])``.
    """

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18Backbone()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        global_context = F.interpolate(self.conv_avg(_global_average(feat32)), feat32.shape[2:], mode="nearest")
        context32 = self.arm32(feat32) + global_context
        context16 = self.conv_head32(F.interpolate(context32, feat16.shape[2:], mode="nearest"))
        context8 = self.conv_head16(F.interpolate(self.arm16(feat16) + context16, feat8.shape[2:], mode="nearest"))
        return feat8, context8, context16


class FeatureFusionModule(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then ``feat * (1 + gate)`` with a squeeze-excitation gate."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, kernel_size=1, padding=0)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, kernel_size=1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_average(feat)))))
        return feat * gate + feat


class BiSeNet(nn.Module):
    """facexlib BiSeNet (ResNet-18 context path; its stride-8 features stand in for the spatial path).

    ``forward(x)``: x [B, 3, H, W] ImageNet-normalised RGB -> ``(logits, logits16, logits32)``,
    each [B, num_class, H, W] (bilinear, align_corners=True, from stride 8, 8 and 16).
    """

    def __init__(self, num_class: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_class)
        self.conv_out16 = BiSeNetOutput(128, 64, num_class)
        self.conv_out32 = BiSeNetOutput(128, 64, num_class)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        feat8, context8, context16 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))[0]
        logits16 = self.conv_out16(context8)[0]
        logits32 = self.conv_out32(context16)[0]
        return tuple(
            F.interpolate(t, size, mode="bilinear", align_corners=True) for t in (logits, logits16, logits32)
        )


# --------------------------------------------------------------------------------------------
# Loading and masks
# --------------------------------------------------------------------------------------------


def load_parsenet(checkpoint: Checkpoint) -> ParseNet:
    """ParseNet (512, 19 classes) in eval mode from ``parsing_parsenet.pth`` or its state dict."""
    model = ParseNet()
    load_facexlib_state_dict(model, *read_facexlib_checkpoint(checkpoint))
    return model.eval()


def load_bisenet(checkpoint: Checkpoint) -> BiSeNet:
    """BiSeNet (19 classes) in eval mode from ``parsing_bisenet.pth`` or its state dict."""
    model = BiSeNet()
    load_facexlib_state_dict(model, *read_facexlib_checkpoint(checkpoint))
    return model.eval()


def face_parsing_mask(parse_logits: torch.Tensor, classes: Sequence[int] = PASTE_MASK_CLASSES) -> torch.Tensor:
    """Hard mask of the pixels whose most likely class is in ``classes``.

    ``parse_logits``: [B, C, H, W] (or [C, H, W]) per-class scores. Returns float32 [B, H, W] (or
    [H, W]) with 1.0 where ``argmax`` over C is one of ``classes`` and 0.0 elsewhere. The default is
    the ParseNet class set of facexlib's paste-back (:data:`PASTE_MASK_CLASSES`), i.e. facexlib's
    ``MASK_COLORMAP / 255`` before its Gaussian blurs.
    """
    if parse_logits.ndim not in (3, 4):
        raise ValueError(
            f"face_parsing_mask: expected [B, C, H, W] or [C, H, W] logits, got {list(parse_logits.shape)}"
        )
    num_classes = parse_logits.shape[-3]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"face_parsing_mask: classes {bad} out of range for {num_classes} channels")
    labels = parse_logits.argmax(dim=-3)
    selected = torch.zeros(num_classes, dtype=torch.float32, device=parse_logits.device)
    selected[list(classes)] = 1.0
    return selected[labels]


# --------------------------------------------------------------------------------------------
# Paste masks from a parser (facexlib FaceRestoreHelper.paste_faces_to_input_image, use_parse=True)
# --------------------------------------------------------------------------------------------

# The parsers and their weight files (facexlib's releases; faceprior.weights.catalogue entries).
PARSERS = ("parsenet", "bisenet")
PARSING_INPUT_SIZE = 512  # faces are parsed at 512 x 512 whatever their size
PASTE_MASK_BLUR_SIZE = 101  # cv2.GaussianBlur(mask, (101, 101), 11), applied twice
PASTE_MASK_BLUR_SIGMA = 11.0
PASTE_MASK_BORDER = 10  # then the outermost 10 rows and columns (at 512) are set to 0


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """[size] float64 taps ``exp(-(i - (size - 1) / 2)^2 / (2 sigma^2))`` normalised to sum 1
    (OpenCV ``getGaussianKernel(size, sigma)`` for sigma > 0)."""
    if size < 1 or size % 2 == 0 or not sigma > 0:
        raise ValueError(f"gaussian_kernel: need an odd size >= 1 and sigma > 0, got {size} and {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(x * x) / (2 * sigma * sigma))
    return taps / taps.sum()


def gaussian_blur(images: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, H, W] float images with OpenCV ``GaussianBlur``'s default
    border (BORDER_REFLECT_101, torch's ``"reflect"``). H and W must exceed ``size // 2``.
    Returns [B, H, W] of the same dtype."""
    kernel = gaussian_kernel(size, sigma).to(images)
    radius = size // 2
    x = images[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, size))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, size, 1))
    return x[:, 0]


def soften_parsing_mask(hard_mask: torch.Tensor) -> torch.Tensor:
    """facexlib's treatment of the hard parsing mask before pasting.

    hard_mask: [B, 512, 512] float in {0, 1} (:func:`face_parsing_mask`). Returns [B, 512, 512] in
    [0, 1]: ``GaussianBlur((101, 101), 11)`` twice, then the :data:`PASTE_MASK_BORDER` outermost
    rows and columns set to 0 (facexlib works on 0/255 values and divides by 255 afterwards).
    """
    soft = gaussian_blur(hard_mask, PASTE_MASK_BLUR_SIZE, PASTE_MASK_BLUR_SIGMA)
    soft = gaussian_blur(soft, PASTE_MASK_BLUR_SIZE, PASTE_MASK_BLUR_SIGMA)
    border = PASTE_MASK_BORDER
    soft[:, :border] = 0
    soft[:, -border:] = 0
    soft[:, :, :border] = 0
    soft[:, :, -border:] = 0
    return soft


class ParsingMasker:
    """Per-face paste masks from a face parser, the way facexlib's paste-back with
    ``use_parse=True`` computes them, as a ``FaceRestorer(face_masker=...)``.

    ``masker(faces)``: faces [B, S, S, 3] float RGB in [0, 1] (the restored faces) -> masks
    [B, S, S] float32 in [0, 1]:

    1. bilinear resize to 512 x 512 (``cv2.INTER_LINEAR``: half-pixel centres, no antialiasing);
    2. ParseNet: ``(x - 0.5) / 0.5``; BiSeNet: ImageNet mean/std. Argmax of the parser's first
       output; 1 where the class is one of the paste classes (facexlib's ``MASK_COLORMAP``);
    3. :func:`soften_parsing_mask` (two Gaussian blurs, 10-pixel border set to 0);
    4. bilinear resize back to S x S;
    5. times ``face_mask(S)``, the default soft rectangle, so the crop border is always 0. facexlib
       uses the parsing mask alone; the product differs from it only within 3 S / 20 pixels of the
       crop edge (the rectangle's zero band of S / 20 and its ramp of S / 10).

    model: :class:`ParseNet` or :class:`BiSeNet` in eval mode, on the device to run on.
    network: ``"parsenet"`` or ``"bisenet"`` (input normalisation and class order).
    batch_size: faces per parser forward.
    """

    def __init__(self, model: nn.Module, network: str = "parsenet", batch_size: int = 4):
        if network not in PARSERS:
            raise OptionError(f"unknown face parser {network!r} (use 'parsenet' or 'bisenet')")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.network = network
        self.batch_size = int(batch_size)
        self.classes = PASTE_MASK_CLASSES if network == "parsenet" else BISENET_PASTE_MASK_CLASSES
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.network == "parsenet":
            return (x - 0.5) / 0.5
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def __call__(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1] != faces.shape[2]:
            raise ValueError(f"ParsingMasker: expected faces [B, S, S, 3], got shape {faces.shape}")
        size = faces.shape[1]
        rectangle = torch.tensor(face_mask(size), dtype=torch.float32, device=self.device)
        masks = np.empty(faces.shape[:3], dtype=np.float32)
        for start in range(0, len(faces), self.batch_size):
            x = torch.from_numpy(faces[start:start + self.batch_size]).permute(0, 3, 1, 2).to(self.device)
            if size != PARSING_INPUT_SIZE:
                x = F.interpolate(x, size=(PARSING_INPUT_SIZE,) * 2, mode="bilinear", align_corners=False)
            logits = self.model(self._normalise(x))[0]
            soft = soften_parsing_mask(face_parsing_mask(logits.float(), self.classes))
            if size != PARSING_INPUT_SIZE:
                soft = F.interpolate(soft[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            masks[start:start + len(x)] = (soft * rectangle).clamp_(0, 1).cpu().numpy()
        return masks


def make_parsing_masker(network: str = "parsenet", device: str | torch.device = "cpu",
                        cache_dir: Optional[str] = None) -> ParsingMasker:
    """A :class:`ParsingMasker` with facexlib's ``parsing_parsenet.pth`` (or ``parsing_bisenet.pth``),
    taken from the weight cache or downloaded (checked against its catalogue entry)."""
    if network not in PARSERS:
        raise OptionError(f"unknown face parser {network!r} (use 'parsenet' or 'bisenet')")
    path = fetch_weights(network, cache_dir=cache_dir)
    model = load_parsenet(path) if network == "parsenet" else load_bisenet(path)
    return ParsingMasker(model.to(device), network)
