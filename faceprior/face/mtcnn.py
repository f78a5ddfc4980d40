"""MTCNN face detector (Zhang et al., "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks", 2016): P-Net, R-Net, O-Net and the three-stage cascade,
with five landmarks per face.

The networks load the MIT-licensed weights published with facenet-pytorch 2.6.0
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``, plain state dicts readable with
``torch.load(weights_only=True)``), which ship inside this package (``faceprior/data/mtcnn/``,
with their licence); parameter names follow those files.

Coordinates returned by the detector use the convention of faceprior.face.templates: pixel
centres at integer positions, so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. Boxes are
(x1, y1, x2, y2) outer corners (width = x2 - x1). Landmarks are in the order left eye, right
eye, nose tip, left mouth corner, right mouth corner ("left" = smaller x in the image).

Internally boxes use corner coordinates where pixel ``i`` spans [i, i + 1); they are shifted by
-0.5 only when results are returned.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceprior.face.boxes import apply_box_offsets, batched_nms, square_boxes
from faceprior.weights.catalogue import fetch_weights
from faceprior.weights.store import WeightsUnavailableError

# --------------------------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------------------------

MTCNN_WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")

#: Their catalogue entries (faceprior.weights.catalogue): the files of facenet-pytorch 2.6.0, MIT
#: licence, shipped inside this package (faceprior/data/mtcnn/), so detection never needs a network.
MTCNN_CATALOGUE_NAMES = {"pnet.pt": "mtcnn-pnet", "rnet.pt": "mtcnn-rnet", "onet.pt": "mtcnn-onet"}


class MTCNNWeightsError(WeightsUnavailableError):
    """The MTCNN weight files are missing or corrupt (one-line message)."""


def mtcnn_weights_dir() -> Path:
    """The folder holding pnet.pt, rnet.pt and onet.pt (inside the package), each checked against
    its size and SHA-256. Raises MTCNNWeightsError (one line) when one is missing or altered."""
    paths = []
    for name in MTCNN_WEIGHT_FILES:
        try:
            paths.append(fetch_weights(MTCNN_CATALOGUE_NAMES[name]))
        except WeightsUnavailableError as error:
            raise MTCNNWeightsError(str(error)) from None
    return paths[0].parent


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Map pixel values in [0, 255] to the networks' input range [-1, 1) ((x - 127.5) / 128)."""
    return (pixels - 127.5) * 0.0078125


def _network_input(pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] pixels in [0, 255] -> normalized network input in channels_last layout."""
    return normalize_pixels(pixels).contiguous(memory_format=torch.channels_last)


def _face_probability(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax probability of class 1 ("face") from two logits along ``dim``."""
    background, face = logits.unbind(dim)
    return torch.sigmoid(face - background)


def _flatten_like_caffe(features: torch.Tensor) -> torch.Tensor:
    """Flatten [N, C, H, W] in (W, H, C) order, the order the dense weights were trained with."""
    return features.permute(0, 3, 2, 1).reshape(features.shape[0], -1)


class PNet(nn.Module):
    """Proposal network: fully convolutional 12x12 face/no-face classifier with stride 2.

    Input [B, 3, H, W] normalized RGB (H, W >= 12). Outputs, with h = ceil((H - 2) / 2) - 4
    (same for w): face probability [B, h, w] in [0, 1] and box offsets [B, 4, h, w] (x1, y1,
    x2, y2 as fractions of the 12x12 window). Cell (i, j) sees input rows 2i..2i+11 and
    columns 2j..2j+11.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return _face_probability(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network. Input [N, 3, 24, 24] normalized RGB crops.

    Outputs face probability [N] in [0, 1] and box offsets [N, 4] (fractions of the crop size).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_like_caffe(x)))
        return _face_probability(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """Output network. Input [N, 3, 48, 48] normalized RGB crops.

    Outputs face probability [N] in [0, 1], box offsets [N, 4] (fractions of the crop size) and
    landmarks [N, 10]: five x then five y positions as fractions of the crop width / height.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_like_caffe(x)))
        return _face_probability(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


def load_network(network: nn.Module, path: Path) -> nn.Module:
    """Load a state dict file (``torch.load(weights_only=True)``) into ``network``, strictly."""
    path = Path(path)
    if not path.is_file():
        raise MTCNNWeightsError(f"{path}: MTCNN weight file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except Exception as error:  # noqa: BLE001 - any failure is reported as a bad weight file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MTCNNWeightsError(f"{path}: not a valid {type(network).__name__} state dict ({first_line})") from None
    return network.eval()


# --------------------------------------------------------------------------------------------
# Image pyramid and crops
# --------------------------------------------------------------------------------------------


#: Rows per band when a full-resolution image is turned into float (pyramid levels, P-Net): the
#: float copies and P-Net's activations then take a few tens of MB whatever the photo's size.
BAND_PIXELS = 1 << 19


def _band_rows(width: int, multiple: int = 2) -> int:
    """Rows of a band of a ``width``-pixel-wide image (a multiple of ``multiple``, at least 16)."""
    rows = max(16, BAND_PIXELS // max(width, 1))
    return rows - rows % multiple


def build_mipmaps(images: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    """Halving pyramid: level k is ``images`` box-filtered down by 2**k.

    ``images``: [B, 3, H, W] with values in [0, 255], any dtype (uint8 stays uint8: level 0 is
    ``images`` itself, never a full-size float copy). Levels 1 and deeper are float32; level 1 is
    made from bands of rows. Level k has ceil(H / 2**k) x ceil(W / 2**k) pixels and its pixel (i, j)
    covers level-0 pixels [i * 2**k, (i + 1) * 2**k) (a partial last row / column averages only the
    pixels that exist). Levels stop once a side would drop below ``min_size``.
    """
    levels = [images]
    if min(images.shape[-2:]) < 2 * min_size:
        return levels
    height = images.shape[-2]
    step = _band_rows(images.shape[-1])
    levels.append(torch.cat([F.avg_pool2d(images[:, :, top:top + step].float(), 2, ceil_mode=True)
                             for top in range(0, height, step)], dim=2))
    while min(levels[-1].shape[-2:]) >= 2 * min_size:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return levels


def resampling_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of bilinear resampling from ``in_size`` to ``out_size`` samples, antialiased when
    shrinking, exactly as ``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``
    (a triangle of half-width max(1, in/out) input pixels around each output sample's centre,
    normalised), one row per output sample.

    Returns (first input index [out_size] int64, weights [out_size, K] float32, zero-padded).
    Each output sample depends only on its own taps, so an image can be resampled in bands.
    """
    scale = in_size / out_size
    support, inverse = (scale, 1.0 / scale) if scale >= 1.0 else (1.0, 1.0)
    centres = scale * (torch.arange(out_size, dtype=torch.float64) + 0.5)
    first = torch.clamp((centres - support + 0.5).to(torch.int64), min=0)
    last = torch.clamp((centres + support + 0.5).to(torch.int64), max=in_size)
    taps = int((last - first).max())
    positions = first[:, None] + torch.arange(taps)
    weights = (1.0 - ((positions - centres[:, None] + 0.5) * inverse).abs()).clamp(min=0.0)
    weights = weights * (positions < last[:, None])
    weights = weights / weights.sum(dim=1, keepdim=True)
    return first, weights.to(torch.float32)


def resample_band(source: torch.Tensor, rows: tuple[int, int], vertical: tuple[torch.Tensor, torch.Tensor],
                  horizontal: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Output rows ``rows`` = [top, bottom) of ``source`` [B, C, H, W] (any dtype) resampled with the
    taps of :func:`resampling_taps` (``vertical`` for rows, ``horizontal`` for columns): float32
    [B, C, bottom - top, out_width]. Only the source rows these output rows need are read."""
    top, bottom = rows
    v_first, v_weights = vertical[0][top:bottom], vertical[1][top:bottom]
    needed_top = int(v_first.min())
    needed_bottom = min(int((v_first + v_weights.shape[1]).max()), source.shape[-2])
    band = source[:, :, needed_top:needed_bottom].float()
    out = None
    for k in range(v_weights.shape[1]):  # vertical: a weighted sum of whole source rows
        index = (v_first + k - needed_top).clamp(max=band.shape[-2] - 1)
        term = band.index_select(2, index) * v_weights[:, k].view(1, 1, -1, 1)
        out = term if out is None else out.add_(term)
    h_first, h_weights = horizontal
    result = None
    for k in range(h_weights.shape[1]):  # horizontal: a weighted sum of source columns
        index = (h_first + k).clamp(max=out.shape[-1] - 1)
        term = out.index_select(3, index) * h_weights[:, k].view(1, 1, 1, -1)
        result = term if result is None else result.add_(term)
    return result


def _mipmap_level_for(ratio: float, num_levels: int) -> int:
    """Deepest level whose resolution is still >= ``ratio`` (output px per input px, <= 1)."""
    if ratio >= 1:
        return 0
    return max(0, min(num_levels - 1, int(math.floor(-math.log2(ratio) + 1e-9))))


def crop_and_resize(
    mipmaps: list[torch.Tensor],
    boxes: torch.Tensor,
    image_index: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Resample each box of the image to a ``size`` x ``size`` patch, zeros outside the image.

    Args:
        mipmaps: from build_mipmaps, level 0 is [B, 3, H, W] with values in [0, 255].
        boxes: [N, 4] float corner boxes in level-0 pixel units (pixel i spans [i, i + 1)).
        image_index: [N] int64, the batch image each box belongs to.
        size: output side in pixels.

    Returns:
        [N, 3, size, size] float, same range as the images.

    Anti-aliasing: each box is read from the mipmap level where it spans between ``size`` and
    ``2 * size`` pixels (level 0 for smaller boxes), bilinearly sampled on a 2x finer grid and
    averaged over 2x2 samples, so every output pixel averages the pixels it covers. One
    grid_sample call per (image, level) handles all boxes of that group.
    """
    num_boxes = boxes.shape[0]
    channels = mipmaps[0].shape[1]
    out = boxes.new_zeros(num_boxes, channels, size, size)
    if num_boxes == 0:
        return out
    supersample = 2 * size
    box_side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    level = torch.floor(torch.log2((box_side / size).clamp(min=1.0))).long()
    level = level.clamp(max=len(mipmaps) - 1)
    # Sample positions as fractions of the box, at the centres of a supersample^2 grid.
    steps = (torch.arange(supersample, dtype=boxes.dtype, device=boxes.device) + 0.5) / supersample
    for batch_index, level_index in torch.unique(torch.stack([image_index, level], 1), dim=0).tolist():
        selected = torch.nonzero((image_index == batch_index) & (level == level_index)).flatten()
        source = mipmaps[level_index][batch_index : batch_index + 1]
        level_boxes = boxes[selected] / (2**level_index)
        xs = level_boxes[:, 0:1] + steps[None, :] * (level_boxes[:, 2:3] - level_boxes[:, 0:1])
        ys = level_boxes[:, 1:2] + steps[None, :] * (level_boxes[:, 3:4] - level_boxes[:, 1:2])
        if source.is_floating_point():
            out[selected] = _sample(source, xs, ys, (0, 0))
        else:  # full resolution, not float: each box from a float copy of the few pixels it covers
            height, width = source.shape[-2:]
            for row, box in zip(selected.tolist(), level_boxes.tolist()):
                x0, y0 = max(int(math.floor(box[0])) - 1, 0), max(int(math.floor(box[1])) - 1, 0)
                x1, y1 = min(int(math.ceil(box[2])) + 1, width), min(int(math.ceil(box[3])) + 1, height)
                if x1 <= x0 or y1 <= y0:
                    continue  # entirely outside the image: zeros
                patch = source[:, :, y0:y1, x0:x1].float()
                index = (selected == row).nonzero().flatten()
                out[row] = _sample(patch, xs[index], ys[index], (x0, y0))[0]
    return out


def _sample(source: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
    """grid_sample of ``source`` [1, C, h, w] (a region of an image starting at ``origin`` (x, y))
    at the sample positions xs, ys [N, S] in image pixels, averaged 2x2: [N, C, S / 2, S / 2].

    Samples beyond the region's edges read zeros; a region is cut with a margin of one pixel
    around its boxes, so its edges other than the image's own are never reached."""
    channels, height, width = source.shape[1:]
    supersample = xs.shape[1]
    grid_x = (2 * (xs - origin[0]) / width - 1)[:, None, :].expand(-1, supersample, -1)
    grid_y = (2 * (ys - origin[1]) / height - 1)[:, :, None].expand(-1, -1, supersample)
    grid = torch.stack([grid_x, grid_y], dim=-1).reshape(1, -1, supersample, 2)
    # grid_sample with align_corners=False: -1 and +1 are the outer edges of the region.
    samples = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    samples = samples.reshape(channels, xs.shape[0], supersample, supersample).transpose(0, 1)
    return F.avg_pool2d(samples, 2)


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class DetectedFace:
    """One detected face, in pixel-centre coordinates of the input image.

    box: [4] float32 (x1, y1, x2, y2) outer corners. score: O-Net face probability in [0, 1].
    landmarks: [5, 2] float32 (x, y): left eye, right eye, nose, left mouth, right mouth.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales at which P-Net (a 12-pixel window) looks at the image.

    The first scale maps ``min_face_size`` pixels to 12; each next one is ``scale_factor``
    times smaller, down to the last scale where the shorter image side still spans 12 pixels.
    """
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= scale_factor
        shorter *= scale_factor
    return scales


class MTCNN:
    """Three-stage MTCNN face detector with five landmarks, in plain torch.

    Args:
        weights_dir: folder with pnet.pt, rnet.pt, onet.pt; None: the files shipped with the package
            (:func:`mtcnn_weights_dir`).
        device: torch device to run on.
        min_face_size: smallest face side, in pixels, that the pyramid looks for.
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        scale_factor: ratio between consecutive pyramid scales, in (0, 1).
    """

    # NMS overlap thresholds of the original cascade.
    PNET_SCALE_IOU = 0.5
    PNET_IOU = 0.7
    RNET_IOU = 0.7
    ONET_MIN_OVERLAP = 0.7
    # Crops go through R-Net / O-Net in chunks of this many: bounds memory, and on CPU small
    # chunks keep activations in cache (64 measured fastest for both networks).
    CHUNK = 64

    def __init__(
        self,
        weights_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        min_face_size: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
    ):
        self._set_search(scale_factor, thresholds)
        if min_face_size <= 0:
            raise ValueError(f"MTCNN: min_face_size must be positive, got {min_face_size}")
        folder = Path(weights_dir) if weights_dir is not None else mtcnn_weights_dir()
        self.device = torch.device(device)
        # channels_last: on CPU, max-pooling and the small convolutions run several times
        # faster in NHWC than in NCHW; inputs are converted by _network_input().
        self.pnet = load_network(PNet(), folder / "pnet.pt").to(self.device, memory_format=torch.channels_last)
        self.rnet = load_network(RNet(), folder / "rnet.pt").to(self.device, memory_format=torch.channels_last)
        self.onet = load_network(ONet(), folder / "onet.pt").to(self.device, memory_format=torch.channels_last)
        self.min_face_size = float(min_face_size)

    def _set_search(self, scale_factor: float, thresholds: tuple[float, float, float]) -> None:
        """Check and keep the pyramid ratio and the three stages' thresholds."""
        if not 0 < scale_factor < 1:
            raise ValueError(f"MTCNN: scale_factor must be in (0, 1), got {scale_factor}")
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)

    def with_settings(self, scale_factor: float, thresholds: tuple[float, float, float]) -> "MTCNN":
        """Another detector sharing these networks (no weights loaded again), with another pyramid
        ratio and other thresholds (as in the constructor)."""
        other = copy.copy(self)
        other._set_search(scale_factor, thresholds)
        return other

    # ---- public API --------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in one HxWx3 uint8 RGB image, by decreasing score."""
        return self.detect_batch([image])[0]

    def detect_arrays(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in one HxWx3 uint8 RGB image as arrays, by decreasing score.

        Returns boxes [N, 4] float32 (x1, y1, x2, y2), scores [N] float32 in [0, 1] and
        landmarks [N, 5, 2] float32 (x, y), in pixel-centre coordinates.
        """
        return self.detect_batch_arrays([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
        """detect() for several images of the same size, run as one batch (one list per image)."""
        return [
            [DetectedFace(box=box, score=float(score), landmarks=points) for box, score, points in zip(*arrays)]
            for arrays in self.detect_batch_arrays(images)
        ]

    def detect_batch_arrays(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """detect_arrays() for several HxWx3 uint8 RGB images of the same size, as one batch.

        ``images``: a sequence of HxWx3 arrays or one [B, H, W, 3] array. Returns one
        (boxes, scores, landmarks) tuple per image.
        """
        batch = self._to_tensor(images)
        with torch.inference_mode():
            boxes, scores, landmarks, image_index = self._detect(batch)
        # Corner coordinates (pixel i spans [i, i+1)) -> pixel-centre coordinates.
        boxes = (boxes - 0.5).cpu().numpy().astype(np.float32)
        landmarks = (landmarks - 0.5).cpu().numpy().astype(np.float32)
        scores = scores.cpu().numpy().astype(np.float32)
        image_index = image_index.cpu().numpy()
        return [
            (boxes[image_index == i], scores[image_index == i], landmarks[image_index == i])
            for i in range(batch.shape[0])
        ]

    # ---- cascade ------------------------------------------------------------------------

    def _to_tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack HxWx3 uint8 images (a sequence, or one [B, H, W, 3] array) into a [B, 3, H, W]
        uint8 tensor on the device (float copies are made band by band, see :data:`BAND_PIXELS`)."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if isinstance(images, np.ndarray) or len(images) == 0:
            raise ValueError("MTCNN: detect_batch expects a non-empty sequence of HxWx3 images")
        for image in images:
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                described = (
                    f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                )
                raise ValueError(f"MTCNN: expected an HxWx3 uint8 RGB image, got {described}")
            if image.shape != images[0].shape:
                raise ValueError(
                    f"MTCNN: batched images must share one size, got {images[0].shape} and {image.shape}"
                )
        array = images[0][None] if len(images) == 1 else np.stack(images)  # one photo: a view, no copy
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device).permute(0, 3, 1, 2)

    def _detect(self, images: torch.Tensor):
        """Run the cascade on [B, 3, H, W] images with values in [0, 255] (uint8 or float).

        Returns corner-coordinate boxes [N, 4], scores [N], landmarks [N, 5, 2] and the image
        index [N] of every face, grouped by decreasing score.
        """
        height, width = images.shape[-2:]
        empty = (
            images.new_zeros(0, 4), images.new_zeros(0), images.new_zeros(0, 5, 2),
            torch.zeros(0, dtype=torch.int64, device=images.device),
        )
        scales = pyramid_scales(height, width, self.min_face_size, self.scale_factor)
        if not scales:
            return empty
        mipmaps = build_mipmaps(images, min_size=12)

        boxes, image_index = self._propose(mipmaps, scales)
        if boxes.shape[0] == 0:
            return empty
        boxes, image_index = self._refine(mipmaps, boxes, image_index)
        if boxes.shape[0] == 0:
            return empty
        return self._output(mipmaps, boxes, image_index)

    def _propose(self, mipmaps: list[torch.Tensor], scales: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the pyramid -> square candidate boxes [K, 4] and image index [K]."""
        height, width = mipmaps[0].shape[-2:]
        all_boxes, all_scores, all_offsets, all_index = [], [], [], []
        for scale in scales:
            out_height, out_width = math.ceil(height * scale), math.ceil(width * scale)
            level_index = _mipmap_level_for(scale, len(mipmaps))
            source = mipmaps[level_index]
            # Resized pixels per level-0 pixel along each axis (the source level may extend a
            # fraction of a pixel beyond the image, so use its exact extent).
            scale_y = out_height / (source.shape[-2] * 2**level_index)
            scale_x = out_width / (source.shape[-1] * 2**level_index)
            probability, offsets = self._pnet_in_bands(source, out_height, out_width)
            batch_index, row, col = torch.nonzero(probability >= self.thresholds[0], as_tuple=True)
            if batch_index.numel() == 0:
                continue
            x = col.to(torch.float32) * 2
            y = row.to(torch.float32) * 2
            boxes = torch.stack([x / scale_x, y / scale_y, (x + 12) / scale_x, (y + 12) / scale_y], dim=1)
            scores = probability[batch_index, row, col]
            keep = batched_nms(boxes, scores, batch_index, self.PNET_SCALE_IOU)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_offsets.append(offsets[batch_index[keep], :, row[keep], col[keep]])
            all_index.append(batch_index[keep])
        if not all_boxes:
            return mipmaps[0].new_zeros(0, 4), torch.zeros(0, dtype=torch.int64, device=mipmaps[0].device)
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        offsets, image_index = torch.cat(all_offsets), torch.cat(all_index)
        keep = batched_nms(boxes, scores, image_index, self.PNET_IOU)
        boxes = square_boxes(apply_box_offsets(boxes[keep], offsets[keep]))
        return boxes, image_index[keep]

    def _pnet_in_bands(self, source: torch.Tensor, out_height: int, out_width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net on ``source`` resized to out_height x out_width, computed in bands of rows:
        (face probability [B, h, w], box offsets [B, 4, h, w]) as P-Net on the whole resized image.

        Output row r of P-Net sees resized rows 2r .. 2r + 11, so a band of output rows [r0, r1)
        needs resized rows [2 r0, 2 r1 + 10), each computed from its own resampling taps; bands
        start at even rows, so the pooling windows line up with the whole image's."""
        vertical = resampling_taps(source.shape[-2], out_height)
        horizontal = resampling_taps(source.shape[-1], out_width)
        rows = math.ceil((out_height - 2) / 2) - 4  # P-Net's output rows for the whole image
        step = max(1, _band_rows(out_width) // 2)
        probabilities, offsets = [], []
        for r0 in range(0, rows, step):
            r1 = min(r0 + step, rows)
            bottom = out_height if r1 == rows else 2 * r1 + 10
            band = resample_band(source, (2 * r0, bottom), vertical, horizontal)
            probability, offset = self.pnet(_network_input(band))
            probabilities.append(probability[:, : r1 - r0])
            offsets.append(offset[:, :, : r1 - r0])
        return torch.cat(probabilities, dim=1), torch.cat(offsets, dim=2)

    def _refine(
        self, mipmaps: list[torch.Tensor], boxes: torch.Tensor, image_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net on 24x24 crops -> fewer, better square boxes."""
        crops = _network_input(crop_and_resize(mipmaps, boxes, image_index, 24))
        outputs = [self.rnet(chunk) for chunk in crops.split(self.CHUNK)]
        scores = torch.cat([o[0] for o in outputs])
        offsets = torch.cat([o[1] for o in outputs])
        passed = scores > self.thresholds[1]
        boxes, scores, offsets, image_index = boxes[passed], scores[passed], offsets[passed], image_index[passed]
        keep = batched_nms(boxes, scores, image_index, self.RNET_IOU)
        boxes = square_boxes(apply_box_offsets(boxes[keep], offsets[keep]))
        return boxes, image_index[keep]

    def _output(self, mipmaps: list[torch.Tensor], boxes: torch.Tensor, image_index: torch.Tensor):
        """Stage 3: O-Net on 48x48 crops -> final boxes, scores, landmarks, image index."""
        crops = _network_input(crop_and_resize(mipmaps, boxes, image_index, 48))
        outputs = [self.onet(chunk) for chunk in crops.split(self.CHUNK)]
        scores = torch.cat([o[0] for o in outputs])
        offsets = torch.cat([o[1] for o in outputs])
        points = torch.cat([o[2] for o in outputs])
        passed = scores > self.thresholds[2]
        boxes, scores, offsets, points, image_index = (
            boxes[passed], scores[passed], offsets[passed], points[passed], image_index[passed]
        )
        # Landmarks: fractions of the (square) crop, five x then five y.
        size = boxes[:, 2:] - boxes[:, :2]
        landmarks = boxes[:, None, :2] + points.reshape(-1, 2, 5).transpose(1, 2) * size[:, None, :]
        boxes = apply_box_offsets(boxes, offsets)
        keep = batched_nms(boxes, scores, image_index, self.ONET_MIN_OVERLAP, over_min_area=True)
        return boxes[keep], scores[keep], landmarks[keep], image_index[keep]
