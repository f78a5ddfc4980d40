"""Training pairs for GFP-GAN: aligned faces degraded on the fly, plus facial component boxes.

``FaceDataset`` reads any folder of aligned face images and returns, per sample, tensors
normalised like the official ``FFHQDegradationDataset`` (mean 0.5, std 0.5 per channel):

- ``lq``, ``gt``: float32 [3, S, S] in [-1, 1] (x_normalised = (x - 0.5) / 0.5 with x in
  [0, 1]); ``lq`` before normalisation is a multiple of 1/255;
- ``path``: the GT file (str);
- with component boxes: ``loc_left_eye``, ``loc_right_eye``, ``loc_mouth``, float32 [4]
  (x1, y1, x2, y2) in pixels of the S x S sample, as the official dataset computes them
  (centre -/+ half length, +1 on the low side; eyes enlarged by ``eye_enlarge_ratio``).

Component boxes are stored as (x, y, half_len) per part in pixels of a ``frame_size`` square
face (``ComponentBoxes``). Two file formats are read:

- the official ``FFHQ_eye_mouth_landmarks_512.pth`` (made by gfpgan's
  ``scripts/parse_landmark.py`` from the 68 dlib landmarks of FFHQ): a dict
  ``{"00000000": {"left_eye": [x, y, half_len], "right_eye": [...], "mouth": [...]}, ...}``
  keyed by the 8-digit image index, values numpy float64, 512 x 512 frame; half_len is half
  the largest side of the part's landmark box, at least 16 (eyes not yet enlarged);
- our JSON cache, written by ``compute_component_boxes`` from 5-point landmarks:
  ``{"format": "faceprior.component_boxes", "version": 1, "frame_size": S, "boxes":
  {"relative/path.png": {"left_eye": [x, y, h], "right_eye": [...], "mouth": [...]}},
  "missing": [paths without a detected face]}``.

An image's boxes are looked up by its relative POSIX path, then (for numeric file names such
as FFHQ's ``00042.png``) by ``f"{int(stem):08d}"``, the official key.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from faceprior.errors import FacepriorError
from faceprior.imaging.files import list_image_files
from faceprior.imaging.pixels import from_float01
from faceprior.imaging.resize import resize_bicubic
from faceprior.paths import PathLike
from faceprior.training.degradations import (
    IMAGE_SUFFIXES,
    DegradationConfig,
    apply_degradation,
    gray_image,
    read_float_image,
    sample_degradation,
)

Box = Tuple[float, float, float]

COMPONENT_NAMES = ("left_eye", "right_eye", "mouth")
COMPONENT_FILE_FORMAT = "faceprior.component_boxes"
# The official boxes are made for 512 x 512 FFHQ faces; half lengths are at least 16 there.
OFFICIAL_FRAME_SIZE = 512
MIN_HALF_LEN_512 = 16.0
# Official train_gfpgan_v1.yml: eye boxes are enlarged by 1.4 when training.
OFFICIAL_EYE_ENLARGE_RATIO = 1.4
# Five landmarks give eye centres but not eye widths. The official eye half length is half
# the eye's corner-to-corner width; the palpebral fissure is ~46% of the distance between
# the eye centres (adult anthropometry), so half the width is ~0.23 of that distance.
EYE_HALF_LEN_PER_EYE_DISTANCE = 0.23


class DatasetError(FacepriorError, ValueError):
    """A dataset folder or component-box file is unusable; the message is one line."""


@dataclass(frozen=True)
class ComponentBoxes:
    """Facial component boxes of one face: (x, y, half_len) per part, pixels of the frame.

    "left" is the eye with the smaller x in the image, as in the official file."""

    left_eye: Box
    right_eye: Box
    mouth: Box

    def to_dict(self) -> Dict[str, list]:
        return {name: [float(v) for v in getattr(self, name)] for name in COMPONENT_NAMES}


@dataclass
class ComponentBoxFile:
    """Boxes of many faces. frame_size: side of the square faces the boxes are measured in.
    boxes: key (relative POSIX path or official 8-digit index) -> ComponentBoxes.
    missing: images in which the detector found no face. source: where it was read from."""

    frame_size: int
    boxes: Dict[str, ComponentBoxes]
    missing: Tuple[str, ...] = ()
    source: str = ""

    def lookup(self, relative_path: str) -> Optional[ComponentBoxes]:
        """Boxes of the image at ``relative_path`` (POSIX) or None; see the module docstring."""
        found = self.boxes.get(relative_path)
        if found is None:
            stem = Path(relative_path).stem
            if stem.isdigit():
                found = self.boxes.get(f"{int(stem):08d}")
        return found


def _parse_box(value: Any, where: str) -> Box:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    array = np.asarray(value, dtype=np.float64) if not isinstance(value, (str, bytes)) else None
    if array is None or array.shape != (3,) or not np.isfinite(array).all() or array[2] <= 0:
        raise ValueError(f"{where}: expected [x, y, half_len] with half_len > 0, got {value!r}")
    return (float(array[0]), float(array[1]), float(array[2]))


def _parse_boxes(entry: Any, where: str) -> ComponentBoxes:
    if not isinstance(entry, Mapping) or set(COMPONENT_NAMES) - set(entry):
        raise ValueError(f"{where}: expected a dict with keys {', '.join(COMPONENT_NAMES)}")
    return ComponentBoxes(*(_parse_box(entry[name], f"{where}.{name}") for name in COMPONENT_NAMES))


def _numpy_pickle_globals() -> list:
    """What torch's weights_only unpickler must accept for numpy scalars and arrays, under the
    module names of numpy 1 (numpy.core) and numpy 2 (numpy._core)."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct]
    for name in ("scalar", "_reconstruct"):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed.append((getattr(multiarray, name), f"{module}.{name}"))
    allowed += sorted({type(np.dtype(code)) for code in ("f2", "f4", "f8", "i2", "i4", "i8", "u1")}, key=str)
    return allowed


def load_official_component_file(path: PathLike) -> ComponentBoxFile:
    """Read the official FFHQ_eye_mouth_landmarks_512.pth (torch.load weights_only=True, numpy
    scalars and arrays allowed). Returns a ComponentBoxFile with frame_size 512 keyed by the
    official 8-digit image indices. Raises DatasetError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: component file not found")
    try:
        if hasattr(torch.serialization, "safe_globals"):
            with torch.serialization.safe_globals(_numpy_pickle_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
        else:  # torch < 2.5 cannot allow-list numpy types for one call
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = " ".join(str(error).split())[:300]
        raise DatasetError(f"{path}: cannot read component file ({type(error).__name__}: {reason})") from None
    if not isinstance(data, Mapping) or not data:
        raise DatasetError(f"{path}: expected a non-empty dict of image index -> component boxes")
    try:
        boxes = {str(key): _parse_boxes(entry, str(key)) for key, entry in data.items()}
    except ValueError as error:
        raise DatasetError(f"{path}: {error}") from None
    return ComponentBoxFile(frame_size=OFFICIAL_FRAME_SIZE, boxes=boxes, source=str(path))


def load_component_boxes(path: PathLike) -> ComponentBoxFile:
    """Read component boxes: .pth / .pt -> official format, .json -> our cache format."""
    path = Path(path)
    if path.suffix.lower() in (".pth", ".pt"):
        return load_official_component_file(path)
    if path.suffix.lower() != ".json":
        raise DatasetError(f"{path}: unknown component file type (expected .pth or .json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: component file not found") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read component file ({' '.join(str(error).split())})") from None
    if not isinstance(data, Mapping) or data.get("format") != COMPONENT_FILE_FORMAT:
        raise DatasetError(f"{path}: not a {COMPONENT_FILE_FORMAT} file")
    if data.get("version") != 1:
        raise DatasetError(f"{path}: unsupported version {data.get('version')!r} (expected 1)")
    frame_size = data.get("frame_size")
    if isinstance(frame_size, bool) or not isinstance(frame_size, int) or frame_size < 1:
        raise DatasetError(f"{path}: frame_size must be a positive integer, got {frame_size!r}")
    entries = data.get("boxes")
    if not isinstance(entries, Mapping):
        raise DatasetError(f"{path}: 'boxes' must map relative paths to component boxes")
    try:
        boxes = {str(key): _parse_boxes(entry, str(key)) for key, entry in entries.items()}
    except ValueError as error:
        raise DatasetError(f"{path}: {error}") from None
    missing = tuple(str(p) for p in data.get("missing", []))
    return ComponentBoxFile(frame_size=frame_size, boxes=boxes, missing=missing, source=str(path))


def save_component_boxes(boxes: ComponentBoxFile, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``boxes`` in our JSON cache format; refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    data = {
        "format": COMPONENT_FILE_FORMAT,
        "version": 1,
        "frame_size": int(boxes.frame_size),
        "boxes": {key: value.to_dict() for key, value in sorted(boxes.boxes.items())},
        "missing": list(boxes.missing),
    }
    try:
        with open(path, "w" if overwrite else "x", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
    except FileExistsError:
        raise DatasetError(f"{path}: exists (pass overwrite=True to replace it)") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot write component file ({error.strerror or error})") from None
    return path


def boxes_from_landmarks(landmarks: np.ndarray, frame_size: int) -> ComponentBoxes:
    """Component boxes from 5 landmarks [5, 2] (x, y): left eye, right eye, nose, left and
    right mouth corners, in pixels of a ``frame_size`` square aligned face.

    Eyes: centred on the eye landmarks, half length EYE_HALF_LEN_PER_EYE_DISTANCE times the
    distance between the eyes. Mouth: centred between the corners, half length half the
    corner distance (the mouth's widest extent, as in the official 68-point boxes). Every half
    length is at least 16 * frame_size / 512, the official minimum. Boxes are not enlarged.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected 5 finite landmarks [5, 2], got shape {points.shape}")
    minimum = MIN_HALF_LEN_512 * frame_size / OFFICIAL_FRAME_SIZE
    eye_half = max(EYE_HALF_LEN_PER_EYE_DISTANCE * float(np.linalg.norm(points[1] - points[0])), minimum)
    mouth_centre = (points[3] + points[4]) / 2.0
    mouth_half = max(float(np.linalg.norm(points[4] - points[3])) / 2.0, minimum)
    return ComponentBoxes(
        left_eye=(float(points[0, 0]), float(points[0, 1]), eye_half),
        right_eye=(float(points[1, 0]), float(points[1, 1]), eye_half),
        mouth=(float(mouth_centre[0]), float(mouth_centre[1]), mouth_half),
    )


def compute_component_boxes(
    folder: PathLike,
    detector: Callable[[np.ndarray], Optional[np.ndarray]],
    out_file: PathLike,
    size: Optional[int] = None,
    overwrite: bool = False,
) -> ComponentBoxFile:
    """Detect 5 landmarks in every image under ``folder`` and write our JSON box cache.

    detector: any callable taking a uint8 [H, W, 3] RGB image and returning landmarks [5, 2]
        (x, y; left eye, right eye, nose, left mouth, right mouth; pixel-centre coordinates)
        or None when it finds no face; e.g. with ``mtcnn = faceprior.face.mtcnn.MTCNN()``:
        ``lambda image: next((face.landmarks for face in mtcnn.detect(image)), None)``.
    size: resize the (square) images to size x size before detection, matching a
        ``FaceDataset(size=size)``; None keeps them (all images must then share one size).
    Images without a face are listed under "missing". Returns the ComponentBoxFile written.
    An ``out_file`` that exists (without ``overwrite``) or cannot be created is refused before
    any detection runs.
    """
    folder = Path(folder)
    out_file = Path(out_file)
    if out_file.exists() and not overwrite:
        raise DatasetError(f"{out_file}: exists (pass overwrite=True to replace it)")
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"{out_file}: cannot create its folder ({error.strerror or error})") from None
    paths = _dataset_files(folder)
    boxes: Dict[str, ComponentBoxes] = {}
    missing = []
    frame_size = size
    for path in paths:
        relative = path.relative_to(folder).as_posix()
        image = read_float_image(path)
        if image.shape[0] != image.shape[1]:
            raise DatasetError(f"{path}: image is {image.shape[1]}x{image.shape[0]}; aligned faces must be square")
        if size is not None:
            image = resize_bicubic(image, size, size)
        elif frame_size is None:
            frame_size = image.shape[0]
        elif image.shape[0] != frame_size:
            raise DatasetError(f"{path}: image is {image.shape[0]} pixels wide, others {frame_size}; pass size")
        landmarks = detector(from_float01(image, np.uint8))
        if landmarks is None:
            missing.append(relative)
            continue
        try:
            boxes[relative] = boxes_from_landmarks(landmarks, frame_size)
        except ValueError as error:
            raise DatasetError(f"{path}: detector returned unusable landmarks ({error})") from None
    result = ComponentBoxFile(frame_size=int(frame_size), boxes=boxes, missing=tuple(missing), source=str(out_file))
    save_component_boxes(result, out_file, overwrite=overwrite)
    return result


def component_locations(
    boxes: ComponentBoxes, frame_size: int, out_size: int, flipped: bool, eye_enlarge_ratio: float
) -> Dict[str, torch.Tensor]:
    """Boxes -> {"loc_left_eye", "loc_right_eye", "loc_mouth"}: float32 [4] (x1, y1, x2, y2)
    in pixels of an ``out_size`` sample, as gfpgan's ``get_component_coordinates``.

    Boxes are scaled by out_size / frame_size. A horizontally flipped sample swaps the eyes and
    maps x -> out_size - x (the official convention); then (x1, y1) = centre - half_len + 1 and
    (x2, y2) = centre + half_len, with eye half lengths multiplied by ``eye_enlarge_ratio``.
    """
    factor = out_size / frame_size
    parts = {name: [v * factor for v in getattr(boxes, name)] for name in COMPONENT_NAMES}
    if flipped:
        parts["left_eye"], parts["right_eye"] = parts["right_eye"], parts["left_eye"]
        for box in parts.values():
            box[0] = out_size - box[0]
    locations = {}
    for name, (x, y, half) in parts.items():
        if name != "mouth":
            half *= eye_enlarge_ratio
        locations[f"loc_{name}"] = torch.tensor([x - half + 1, y - half + 1, x + half, y + half], dtype=torch.float32)
    return locations


def _dataset_files(root: Path) -> list:
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    paths = list_image_files(root)
    if not paths:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return paths


class FaceDataset(Dataset):
    """Aligned faces degraded on the fly with the GFP-GAN model (``DegradationConfig``).

    Args:
        root: folder of aligned face images, read recursively (.jpg, .jpeg, .png, .webp;
            sorted by relative path; hidden files skipped).
        size: resize every GT to size x size first (bicubic, antialiased); None keeps the
            files' size (then all images should share one size to be batched).
        flip: random horizontal flip (p 0.5) of the GT before degrading.
        degradation: the degradation config (default: the official recipe).
        component_boxes: None, a ComponentBoxFile, or a path to one (.pth official / .json
            cache); every image must have boxes, except those the file lists as ``missing`` (no
            face detected), which are left out with a warning.
        seed: base seed. Sample i of epoch e uses np.random.default_rng([seed, e, i]) for the
            flip and the degradation, so batches do not depend on the DataLoader's worker
            count or on the sampler (DistributedSampler included).
        eye_enlarge_ratio: eye boxes are enlarged by this (official 1.4).

    Items: dict with ``lq``, ``gt`` float32 [3, S, S] in [-1, 1], ``path`` (str), and with
    boxes ``loc_left_eye``, ``loc_right_eye``, ``loc_mouth`` float32 [4] (x1, y1, x2, y2).
    Call ``set_epoch(e)`` before iterating epoch e (with non-persistent workers, which copy
    the dataset at the start of each epoch).
    """

    def __init__(
        self,
        root: PathLike,
        size: Optional[int] = None,
        flip: bool = True,
        degradation: DegradationConfig = DegradationConfig(),
        component_boxes: Union[None, ComponentBoxFile, PathLike] = None,
        seed: int = 0,
        eye_enlarge_ratio: float = OFFICIAL_EYE_ENLARGE_RATIO,
    ):
        self.root = Path(root)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise DatasetError(f"{self.root}: size must be a positive integer or None, got {size!r}")
        if not isinstance(degradation, DegradationConfig):
            raise DatasetError(f"{self.root}: degradation must be a DegradationConfig, got {type(degradation).__name__}")
        self.paths = _dataset_files(self.root)
        self.size = size
        self.flip = bool(flip)
        self.degradation = degradation
        self.seed = int(seed)
        self.epoch = 0
        self.eye_enlarge_ratio = float(eye_enlarge_ratio)
        if component_boxes is not None and not isinstance(component_boxes, ComponentBoxFile):
            component_boxes = load_component_boxes(component_boxes)
        self.component_boxes = component_boxes
        self.sample_boxes: Optional[list] = None
        if component_boxes is not None:
            relative = [p.relative_to(self.root).as_posix() for p in self.paths]
            no_face = set(component_boxes.missing) & set(relative)
            if no_face:  # the box file records that the detector found no face there: leave them out
                warnings.warn(f"{component_boxes.source or 'component boxes'}: {len(no_face)} of {len(relative)} images in "
                              f"{self.root} had no detected face and are left out of training", stacklevel=2)
                self.paths = [p for p, r in zip(self.paths, relative) if r not in no_face]
                relative = [r for r in relative if r not in no_face]
            self.sample_boxes = [component_boxes.lookup(r) for r in relative]
            absent = [r for r, b in zip(relative, self.sample_boxes) if b is None]
            if absent:
                raise DatasetError(
                    f"{component_boxes.source or 'component boxes'}: no component boxes for {len(absent)} of "
                    f"{len(relative)} images in {self.root} (first: {absent[0]})"
                )

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of epoch ``epoch`` (like DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The Generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path = self.paths[index]
        gt = read_float_image(path)
        if self.size is not None:
            gt = resize_bicubic(gt, self.size, self.size)
        rng = self.sample_rng(index)
        flipped = self.flip and bool(rng.random() < 0.5)
        if flipped:
            gt = np.ascontiguousarray(gt[:, ::-1])
        params = sample_degradation(self.degradation, rng)
        lq = apply_degradation(gt, params)
        if params.gt_gray:
            gt = gray_image(gt)
        item: Dict[str, Any] = {"lq": _normalised_tensor(lq), "gt": _normalised_tensor(gt), "path": str(path)}
        if self.sample_boxes is not None:
            item.update(component_locations(self.sample_boxes[index], self.component_boxes.frame_size,
                                            gt.shape[1], flipped, self.eye_enlarge_ratio))
        return item


def _normalised_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 [H, W, 3] in [0, 1] -> float32 [3, H, W] in [-1, 1] ((x - 0.5) / 0.5)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).contiguous()
    return (tensor - 0.5) / 0.5
