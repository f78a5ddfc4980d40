"""RetinaFace face detector (Deng et al., CVPR 2020), as packaged by facexlib.

The network (backbone, FPN, SSH context modules and the three per-anchor prediction heads) has the
module names of facexlib's ``RetinaFace``, so the released files ``detection_Resnet50_Final.pth``
and ``detection_mobilenet0.25_Final.pth`` load into it (see :func:`load_facexlib_state_dict`).

Conventions (those of facexlib 0.3.0, ``RetinaFace.detect_faces``):

* Network input: ``[B, 3, H, W]`` float32 **BGR** pixels in [0, 255] minus the per-channel mean
  ``(104, 117, 123)`` (B, G, R). No rescaling to [0, 1], no resizing.
* Anchors ("prior boxes"): 2 square anchors per feature-map cell on 3 pyramid levels with strides
  8, 16, 32 and sizes (16, 32), (64, 128), (256, 512) px; a level has ``ceil(H / stride) *
  ceil(W / stride)`` cells. Priors are ``(cx, cy, w, h)`` normalised by the image width/height.
* Regression targets are SSD-style offsets with variances (0.1, 0.2).
* Landmarks: 5 points in the order of :mod:`faceprior.face.templates` (left eye, right eye, nose
  tip, left mouth corner, right mouth corner; "left" = smaller x in the image).
* Post-processing: keep scores ``> conf_threshold`` (facexlib default 0.8; GFP-GAN's
  ``FaceRestoreHelper`` passes 0.97), then greedy NMS at IoU 0.4 with facexlib's "+1" pixel-inclusive
  box areas.
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from faceprior.face.boxes import nms
from faceprior.models.arcface import Bottleneck
from faceprior.weights.catalogue import fetch_weights
from faceprior.weights.checkpoint import CheckpointError, read_state_dict

# Anchor sizes in pixels for each pyramid level, and the strides of those levels.
PRIOR_MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
PRIOR_STEPS: tuple[int, ...] = (8, 16, 32)
# SSD box-coding variances: centre offsets are in units of 0.1 * anchor size, log sizes in 0.2.
VARIANCES: tuple[float, float] = (0.1, 0.2)
# Mean subtracted from the BGR pixels in [0, 255] before the network.
BGR_MEAN: tuple[float, float, float] = (104.0, 117.0, 123.0)

DEFAULT_CONF_THRESHOLD = 0.8  # facexlib RetinaFace.detect_faces default
RESTORE_HELPER_CONF_THRESHOLD = 0.97  # what facexlib's FaceRestoreHelper passes (GFP-GAN pipeline)
DEFAULT_NMS_THRESHOLD = 0.4

NETWORK_NAMES = ("resnet50", "mobilenet0.25")


# --------------------------------------------------------------------------------------------
# Building blocks (nn.Sequential indices are part of the state-dict key names).
# --------------------------------------------------------------------------------------------


def conv_bn(in_channels: int, out_channels: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """3x3 conv (no bias) - BN - LeakyReLU(leaky). Keys: ``0.weight``, ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) - BN."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def conv_bn_1x1(in_channels: int, out_channels: int, leaky: float = 0.0) -> nn.Sequential:
    """1x1 conv (no bias) - BN - LeakyReLU(leaky)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_depthwise_separable(in_channels: int, out_channels: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """MobileNet block: 3x3 depthwise conv - BN - LeakyReLU - 1x1 conv - BN - LeakyReLU.

    Keys: ``0.weight`` (depthwise), ``1.*`` (BN), ``3.weight`` (pointwise), ``4.*`` (BN).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1Backbone(nn.Module):
    """MobileNet-V1 with width 0.25 (facexlib ``MobileNetV1`` without its unused avgpool/fc).

    [B, 3, H, W] -> features at strides 8, 16, 32 with 64, 128, 256 channels.
    """

    out_channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_depthwise_separable(8, 16, 1),
            conv_depthwise_separable(16, 32, 2),
            conv_depthwise_separable(32, 32, 1),
            conv_depthwise_separable(32, 64, 2),
            conv_depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_depthwise_separable(64, 128, 2),
            *[conv_depthwise_separable(128, 128, 1) for _ in range(5)],
        )
        self.stage3 = nn.Sequential(
            conv_depthwise_separable(128, 256, 2),
            conv_depthwise_separable(256, 256, 1),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feat8 = self.stage1(x)
        feat16 = self.stage2(feat8)
        feat32 = self.stage3(feat16)
        return [feat8, feat16, feat32]


class ResNet50Backbone(nn.Module):
    """torchvision's ResNet-50 (v1.5: stride on the 3x3 conv) cut after ``layer4``.

    [B, 3, H, W] -> outputs of layer2, layer3, layer4: strides 8, 16, 32 with 512, 1024, 2048 channels.
    """

    out_channels = (512, 1024, 2048)

    def __init__(self, blocks_per_stage: Sequence[int] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        stages = []
        for index, (channels, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            stride = 1 if index == 0 else 2
            out_channels = channels * Bottleneck.expansion
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            blocks = [Bottleneck(in_channels, channels, stride, downsample)]
            blocks += [Bottleneck(out_channels, channels) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer1(x)
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return [feat8, feat16, feat32]


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral convs, top-down nearest upsampling + add, 3x3 merge convs.

    Three maps (strides 8, 16, 32) -> three maps with ``out_channels`` channels, same sizes.
    The coarsest level is not merged (as in facexlib).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, leaky: float):
        super().__init__()
        self.output1 = conv_bn_1x1(in_channels[0], out_channels, leaky)
        self.output2 = conv_bn_1x1(in_channels[1], out_channels, leaky)
        self.output3 = conv_bn_1x1(in_channels[2], out_channels, leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lateral1 = self.output1(features[0])
        lateral2 = self.output2(features[1])
        lateral3 = self.output3(features[2])
        lateral2 = self.merge2(lateral2 + F.interpolate(lateral3, size=lateral2.shape[2:], mode="nearest"))
        lateral1 = self.merge1(lateral1 + F.interpolate(lateral2, size=lateral1.shape[2:], mode="nearest"))
        return [lateral1, lateral2, lateral3]


class SSH(nn.Module):
    """SSH context module: parallel 3x3, "5x5" (two 3x3) and "7x7" (three 3x3) branches, concatenated.

    [B, C, H, W] -> [B, out_channels, H, W] with C/2 + C/4 + C/4 channels from the three branches, then ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, leaky: float):
        super().__init__()
        if out_channels % 4 != 0:
            raise ValueError(f"SSH needs out_channels divisible by 4, got {out_channels}")
        quarter = out_channels // 4
        self.conv3X3 = conv_bn_no_relu(in_channels, out_channels // 2)
        self.conv5X5_1 = conv_bn(in_channels, quarter, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(quarter, quarter)
        self.conv7X7_2 = conv_bn(quarter, quarter, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(quarter, quarter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class AnchorHead(nn.Module):
    """1x1 conv predicting ``values_per_anchor`` numbers for each anchor of each cell.

    [B, C, H, W] -> [B, H * W * num_anchors, values_per_anchor], cells in row-major order, the
    anchors of one cell consecutive (the order of :func:`prior_boxes`).
    """

    def __init__(self, in_channels: int, values_per_anchor: int, num_anchors: int = 2):
        super().__init__()
        self.values_per_anchor = values_per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * values_per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values_per_anchor)


class RetinaFace(nn.Module):
    """RetinaFace network with facexlib's module names.

    Args:
        network: ``'resnet50'`` (detection_Resnet50_Final.pth) or ``'mobilenet0.25'`` (also spelled
            ``'mobile0.25'`` as in facexlib; detection_mobilenet0.25_Final.pth).

    ``forward(x)``: ``x`` [B, 3, H, W] float32 BGR in [0, 255] minus :data:`BGR_MEAN`. Returns
    ``(loc [B, P, 4], scores [B, P, 2], landmarks [B, P, 10])`` with ``P = num_prior_boxes(H, W)``:
    encoded box offsets, softmax class probabilities (column 1 = face) and encoded landmark offsets
    (x, y for each of the 5 points), in the order of :func:`prior_boxes`.
    """

    def __init__(self, network: str = "resnet50"):
        super().__init__()
        if network == "resnet50":
            self.body = ResNet50Backbone()
            out_channels = 256
        elif network in ("mobilenet0.25", "mobile0.25"):
            self.body = MobileNetV1Backbone()
            out_channels = 64
        else:
            raise ValueError(f"unknown RetinaFace network {network!r}; expected one of {NETWORK_NAMES}")
        self.network = "resnet50" if network == "resnet50" else "mobilenet0.25"
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.fpn = FPN(self.body.out_channels, out_channels, leaky)
        self.ssh1 = SSH(out_channels, out_channels, leaky)
        self.ssh2 = SSH(out_channels, out_channels, leaky)
        self.ssh3 = SSH(out_channels, out_channels, leaky)
        num_levels = len(PRIOR_STEPS)
        self.ClassHead = nn.ModuleList([AnchorHead(out_channels, 2) for _ in range(num_levels)])
        self.BboxHead = nn.ModuleList([AnchorHead(out_channels, 4) for _ in range(num_levels)])
        self.LandmarkHead = nn.ModuleList([AnchorHead(out_channels, 10) for _ in range(num_levels)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks


# --------------------------------------------------------------------------------------------
# Anchors and box coding
# --------------------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def num_prior_boxes(
    height: int,
    width: int,
    min_sizes: Sequence[Sequence[int]] = PRIOR_MIN_SIZES,
    steps: Sequence[int] = PRIOR_STEPS,
) -> int:
    """Number of anchors for an ``height x width`` input: sum over levels of cells * anchors per cell."""
    return sum(_ceil_div(height, s) * _ceil_div(width, s) * len(m) for s, m in zip(steps, min_sizes))


def prior_boxes(
    height: int,
    width: int,
    min_sizes: Sequence[Sequence[int]] = PRIOR_MIN_SIZES,
    steps: Sequence[int] = PRIOR_STEPS,
) -> torch.Tensor:
    """Anchors for an ``height x width`` input. Returns [P, 4] float32 ``(cx, cy, w, h)`` / image size.

    Order: level by level; within a level cells in row-major order (row i, column j); within a
    cell the anchor sizes in order. Centres are ``((j + 0.5) * step / width, (i + 0.5) * step /
    height)``, sizes ``(min_size / width, min_size / height)``; computed in float64 and rounded to
    float32 as facexlib does (its ``PriorBox`` builds them in Python floats).
    """
    levels = []
    for step, sizes in zip(steps, min_sizes):
        rows, cols = _ceil_div(height, step), _ceil_div(width, step)
        sizes = np.asarray(sizes, dtype=np.float64)
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
        grid = np.empty((rows, cols, len(sizes), 4), dtype=np.float64)
        grid[..., 0] = cx[None, :, None]
        grid[..., 1] = cy[:, None, None]
        grid[..., 2] = (sizes / width)[None, None, :]
        grid[..., 3] = (sizes / height)[None, None, :]
        levels.append(grid.reshape(-1, 4))
    return torch.from_numpy(np.concatenate(levels).astype(np.float32))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Offsets -> corner boxes. ``loc`` [..., P, 4], ``priors`` [P, 4] (cx, cy, w, h) -> [..., P, 4]
    ``(x1, y1, x2, y2)`` in the priors' normalised units."""
    centers = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centers - sizes / 2
    return torch.cat([top_left, top_left + sizes], dim=-1)


def encode_boxes(boxes: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Inverse of :func:`decode_boxes`: corner boxes [..., P, 4] -> offsets [..., P, 4]."""
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    sizes = boxes[..., 2:] - boxes[..., :2]
    center_offsets = (centers - priors[:, :2]) / (variances[0] * priors[:, 2:])
    log_sizes = torch.log(sizes / priors[:, 2:]) / variances[1]
    return torch.cat([center_offsets, log_sizes], dim=-1)


def decode_landmarks(
    pred: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES
) -> torch.Tensor:
    """Offsets [..., P, 10] -> points [..., P, 5, 2] ``(x, y)`` in the priors' normalised units."""
    offsets = pred.reshape(*pred.shape[:-1], 5, 2)
    return priors[:, None, :2] + offsets * variances[0] * priors[:, None, 2:]


def encode_landmarks(
    points: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES
) -> torch.Tensor:
    """Inverse of :func:`decode_landmarks`: points [..., P, 5, 2] -> offsets [..., P, 10]."""
    offsets = (points - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])
    return offsets.reshape(*points.shape[:-2], 10)


# --------------------------------------------------------------------------------------------
# Loading facexlib files
# --------------------------------------------------------------------------------------------


def load_facexlib_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> None:
    """Load a facexlib-style state dict into ``model``, checking keys and shapes exactly.

    Two differences are tolerated, as facexlib does: a leading ``module.`` on keys (files saved
    from ``nn.DataParallel``) is stripped, and BatchNorm ``num_batches_tracked`` entries may be
    absent (the model then keeps its own). Anything else missing, unexpected or of the wrong
    shape raises :class:`~faceprior.weights.checkpoint.CheckpointError` naming ``source``.
    """
    renamed = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    expected = model.state_dict()
    unexpected = [k for k in renamed if k not in expected]
    missing = [k for k in expected if k not in renamed and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise CheckpointError(source, f"does not fit {type(model).__name__}: {', '.join(parts)}")
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            wanted = list(expected[key].shape)
            raise CheckpointError(source, f"{key} has shape {list(value.shape)}, {type(model).__name__} expects {wanted}")
    model.load_state_dict(renamed, strict=False)


Checkpoint = Union[str, os.PathLike, Mapping[str, torch.Tensor]]


def read_facexlib_checkpoint(checkpoint: Checkpoint) -> tuple[Mapping[str, torch.Tensor], str]:
    """``(state_dict, source)`` from a weight file or from an in-memory state dict.

    Files are read by :func:`faceprior.weights.checkpoint.read_state_dict` (``weights_only=True``,
    ``module.`` stripped). ``source`` names the file, or "state dict", for error messages.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        return read_state_dict(checkpoint), str(checkpoint)
    return checkpoint, "state dict"


def load_retinaface(checkpoint: Checkpoint, network: Optional[str] = None) -> RetinaFace:
    """Build a :class:`RetinaFace` in eval mode from a facexlib file path or state dict.

    ``network`` is inferred from the keys when not given (``body.conv1`` -> resnet50,
    ``body.stage1`` -> mobilenet0.25).
    """
    state_dict, source = read_facexlib_checkpoint(checkpoint)
    if network is None:
        keys = {k[len("module."):] if k.startswith("module.") else k for k in state_dict}
        if "body.conv1.weight" in keys:
            network = "resnet50"
        elif "body.stage1.0.0.weight" in keys:
            network = "mobilenet0.25"
        else:
            raise CheckpointError(source, "not a RetinaFace state dict (no body.conv1 / body.stage1 keys)")
    model = RetinaFace(network)
    load_facexlib_state_dict(model, state_dict, source)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------


class FaceDetections(NamedTuple):
    """Detected faces, by decreasing score, in pixel coordinates of the input image.

    boxes: [N, 4] float32 (x1, y1, x2, y2); scores: [N] float32 in (0, 1);
    landmarks: [N, 5, 2] float32 (x, y), order of :mod:`faceprior.face.templates`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


class RetinaFaceDetector:
    """Runs a :class:`RetinaFace` on one RGB image with facexlib's pre- and post-processing."""

    def __init__(self, model: RetinaFace):
        self.model = model.eval()

    @torch.no_grad()
    def detect(
        self,
        image: np.ndarray,
        conf_threshold: float = DEFAULT_CONF_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
    ) -> FaceDetections:
        """Detect faces in ``image``: [H, W, 3] RGB, uint8 (or float in [0, 255]), at its own size.

        Matches facexlib ``RetinaFace.detect_faces(bgr_image, conf_threshold, nms_threshold,
        use_origin_size=True)``: BGR minus (104, 117, 123), decode with variances (0.1, 0.2),
        keep scores > ``conf_threshold``, greedy NMS (overlap > ``nms_threshold`` suppressed,
        box areas counted with facexlib's "+1" pixel convention).
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"RetinaFaceDetector.detect: expected an [H, W, 3] RGB image, got shape {image.shape}")
        height, width = image.shape[:2]
        device = next(self.model.parameters()).device
        bgr = np.ascontiguousarray(image[:, :, ::-1], dtype=np.float32)
        x = torch.from_numpy(bgr).permute(2, 0, 1)[None].to(device)
        x = x - torch.tensor(BGR_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)

        loc, probs, landmark_offsets = self.model(x)
        priors = prior_boxes(height, width).to(device)
        image_size = torch.tensor([width, height], dtype=torch.float32, device=device)
        boxes = decode_boxes(loc[0], priors) * image_size.repeat(2)
        landmarks = decode_landmarks(landmark_offsets[0], priors) * image_size
        scores = probs[0, :, 1]

        selected = torch.nonzero(scores > conf_threshold).flatten()
        boxes, scores, landmarks = boxes[selected], scores[selected], landmarks[selected]
        # facexlib's py_cpu_nms measures widths as x2 - x1 + 1: shifting the far corner by one
        # pixel gives the same intersections and areas.
        inclusive = torch.cat([boxes[:, :2], boxes[:, 2:] + 1], dim=1)
        keep = nms(inclusive, scores, nms_threshold)
        return FaceDetections(
            boxes=boxes[keep].cpu().numpy(),
            scores=scores[keep].cpu().numpy(),
            landmarks=landmarks[keep].cpu().numpy(),
        )

    def detect_arrays(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pipeline's detector interface: (boxes [N, 4], scores [N], landmarks [N, 5, 2]) with
        the confidence threshold that facexlib's FaceRestoreHelper uses (0.97)."""
        return tuple(self.detect(image, conf_threshold=RESTORE_HELPER_CONF_THRESHOLD))


# facexlib's released weight files: their faceprior.weights.catalogue entries.
RETINAFACE_WEIGHTS = {"resnet50": "retinaface-resnet50", "mobilenet0.25": "retinaface-mobilenet"}


def make_retinaface_detector(network: str = "resnet50", device: str | torch.device = "cpu",
                             cache_dir: Optional[str] = None) -> RetinaFaceDetector:
    """A RetinaFaceDetector with facexlib's weights, taken from the weight cache or downloaded
    (checked against its catalogue entry)."""
    path = fetch_weights(RETINAFACE_WEIGHTS[network], cache_dir=cache_dir)
    return RetinaFaceDetector(load_retinaface(path, network=network).to(device))
