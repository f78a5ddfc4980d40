"""The restoration pipeline: detect faces, align them, restore them, paste them back.

``FaceRestorer`` composes the pieces that live in their own modules:

    detector (faceprior.face.mtcnn / retinaface)  -> boxes, scores, 5 landmarks per face
    align    (faceprior.face.align)                -> S x S crops in the model's template
    model    (faceprior.models, via load_model)    -> restored S x S crops, in batches
    paste    (faceprior.face.paste)                -> soft-masked blend into the photo
    upscale  (faceprior.restoration.upsampling)     -> background enlarged by any factor >= 1

Images are RGB numpy arrays (uint8, uint16 or float in [0, 1]); the result has the input's
dtype. Everything is deterministic by default: the StyleGAN2 decoder uses its stored noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from faceprior.errors import FacepriorError, OptionError
from faceprior.face.align import aligned_crops, estimate_similarity, invert_affine, warp_affine
from faceprior.face.edge_margin import EdgeMarginDetector
from faceprior.face.landmark_refinement import refine_landmarks
from faceprior.face.mtcnn import MTCNN
from faceprior.face.parsing import gaussian_blur, make_parsing_masker
from faceprior.face.paste import face_mask, face_to_image_matrix, paste_faces
from faceprior.face.retinaface import make_retinaface_detector
from faceprior.face.second_look import MTCNN_SECOND_LOOKS, SecondLookDetector
from faceprior.face.templates import check_template_name, named_template
from faceprior.hardware import native_bf16_available, parse_device
from faceprior.imaging.colour import apply_colour_map, fit_colour_map, keep_greys
from faceprior.imaging.pixels import (from_float01, gray_as_rgb, looks_gray, rgb_to_gray, to_float01,
                                      to_rgb_array, to_uint8)
from faceprior.imaging.resize import upscale_lanczos
from faceprior.imaging.tone import Tone, photo_tone
from faceprior.inference.fast_cpu import is_gfpgan_family, optimize
from faceprior.models.blend_estimator import centre_window
from faceprior.models.descriptor import ModelDescriptor
from faceprior.models.loading import ModelSpec, resolve_model
from faceprior.models.rrdbnet import upsample_tiled
from faceprior.restoration.upsampling import LanczosUpsampler, Upsampler, make_upsampler
from faceprior.weights.catalogue import CATALOGUE, entries, get_entry, is_present, local_path

# When no model is named: the official releases (best first), then the small model that ships
# inside the package.
MODEL_PREFERENCE = ("gfpgan-1.4", "gfpgan-1.3", "gfpgan-1.2", "gfpgan-1", "faceprior-256")

# Faces whose eyes are closer than this many pixels are ignored (facexlib's eye_dist_threshold).
MIN_EYE_DISTANCE = 5.0

# The estimator behind weight="auto" (a catalogue name; it ships with the package).
BLEND_ESTIMATOR = "blend-weight"
# The network that restores the photo around its faces (a catalogue name; it ships with the package).
PHOTO_RESTORER = "photo-restorer"
# The network that refines the detected landmarks of degraded faces (a catalogue name; it ships with the package).
LANDMARK_REFINER = "landmark-refiner"
#: a photo whose faces ask for less of the photo restorer than this is left as it is around them
#: (a change of at most 5 % of the restorer's: invisible; and sharp photos do not pay for it)
BACKGROUND_MIN_WEIGHT = 0.05
#: the photo restorer's output is kept out of each face's crop, fading in over this share of the
#: crop's side outside it
FACE_MARGIN = 0.1
#: tiles of the photo restorer on large photos, and the context around each (its receptive field)
BACKGROUND_TILE, BACKGROUND_TILE_PAD = 512, 64

IDENTITY_AFFINE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
#: surroundings are restored for models whose faces are this much larger in their crop than FFHQ's
SURROUNDINGS_MIN_SCALE = 1.15


class NoModelError(FacepriorError, RuntimeError):
    """No restoration model is available; the message says what to put where."""


@dataclass
class ModelChoice:
    """The restoration model a restorer uses, the face framing it is fed, and why it was chosen.

    descriptor: the model (:class:`~faceprior.models.descriptor.ModelDescriptor`).
    template: [5, 2] landmark positions (x, y) of the aligned face, in its S x S input.
    reason: why this model and framing (shown to the user).
    framing: the name of that template (a key of ``TEMPLATES``).
    """

    descriptor: ModelDescriptor
    template: np.ndarray
    reason: str
    framing: str = "ffhq"

    @property
    def model(self) -> nn.Module:
        return self.descriptor.network

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def input_size(self) -> int:
        return int(self.descriptor.face_size)


def default_model_name(cache_dir: Optional[str] = None) -> Optional[str]:
    """The restoration model ``choose_model(None)`` picks: the first of MODEL_PREFERENCE on this
    machine (an official model in the weight cache, else the bundled one); None without any."""
    return next((name for name in MODEL_PREFERENCE if is_present(get_entry(name), cache_dir)), None)


def choose_model(spec: Optional[ModelSpec] = None, device: str | torch.device = "cpu",
                 cache_dir: Optional[str] = None, template: Optional[str] = None) -> ModelChoice:
    """Resolve ``spec`` (catalogue name, file path, URL, nn.Module, ModelDescriptor, or None) to a
    restoration model.

    None picks the best restoration model present (MODEL_PREFERENCE order: official models in the
    weight cache, else the model bundled with the package); without any, NoModelError says which
    file to put where. ``template`` names the face framing (a key of ``TEMPLATES``: "ffhq",
    "celeba-hq"); None: the catalogue entry's own, "ffhq" for other files and modules.
    """
    if template is not None:
        check_template_name(template)  # fail before any model is loaded
    if spec is None:
        name = default_model_name(cache_dir)
        if name is not None:
            entry = get_entry(name)
            if entry.bundled:
                best = local_path(get_entry(MODEL_PREFERENCE[0]), cache_dir)
                reason = (f"bundled default model, licence: {entry.license}; no official model in the weight cache: "
                          f"for sharper results get {MODEL_PREFERENCE[0]} (Apache-2.0) with "
                          f"faceprior models --fetch {MODEL_PREFERENCE[0]}, or put {best.name} at {best}")
            else:
                reason = (f"best restoration model in the weight cache ({local_path(entry, cache_dir)}); "
                          f"licence: {entry.license}")
            return _choice(resolve_model(name, device=device, cache_dir=cache_dir), reason, template)
        best = get_entry(MODEL_PREFERENCE[0])
        wanted = local_path(best, cache_dir)
        names = ", ".join(entry.name for entry in entries("restoration"))
        raise NoModelError(f"no restoration model available: put {wanted.name} ({best.url}) at {wanted}, "
                           f"or pass --model NAME|PATH (restoration models: {names})")
    if isinstance(spec, (nn.Module, ModelDescriptor)):
        reason = "model object passed in"
    elif isinstance(spec, str) and spec in CATALOGUE:
        reason = "named on the command line"
    else:
        reason = "file named on the command line"
    descriptor = resolve_model(spec, device=device, cache_dir=cache_dir).require_restoration()
    return _choice(descriptor, f"{reason}; licence: {descriptor.license}", template)


def _choice(descriptor: ModelDescriptor, reason: str, template: Optional[str]) -> ModelChoice:
    size = int(descriptor.face_size)
    if template is None:
        if descriptor.entry is None:
            reason = f"{reason} ({descriptor.framing} framing assumed; --template to change)"
        return ModelChoice(descriptor, named_template(descriptor.framing, size), reason, descriptor.framing)
    if descriptor.entry is not None:
        reason = f"{reason}; {template} framing instead of its own"
    else:
        reason = f"{reason} ({template} framing)"
    return ModelChoice(descriptor, named_template(template, size), reason, template)


PRECISIONS = ("fp32", "reference", "bf16", "auto")


def inference_network(descriptor: ModelDescriptor, precision: str, device: torch.device
                      ) -> tuple[nn.Module, Optional[torch.dtype], str]:
    """What runs the restoration network for a ``precision`` (see FaceRestorer).

    Returns (module to pass to ``descriptor.restore(..., network=...)``, autocast dtype or None,
    one-line note saying which path runs and why).
    """
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model = descriptor.network
    if precision == "reference":
        return model, None, "reference forward, float32"
    if device.type != "cpu":
        wants_bf16 = precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported())
        return (model, torch.bfloat16, "reference forward, bfloat16 autocast") if wants_bf16 else \
            (model, None, "reference forward, float32")
    capabilities = descriptor.capabilities
    if precision == "bf16" and not native_bf16_available():
        raise OptionError("precision bf16: this CPU has no native bfloat16 (AMX / AVX512-BF16 with oneDNN); use fp32")
    if precision == "bf16" and not capabilities.bf16:
        raise OptionError(f"precision bf16: {descriptor.arch} has no bfloat16 path (its results change in bfloat16); "
                          "use fp32 or auto")
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16_available() and capabilities.bf16)
    dtype_name = "bfloat16" if bf16 else "float32"
    if capabilities.fast_cpu:
        fast = optimize(descriptor, torch.bfloat16 if bf16 and is_gfpgan_family(descriptor) else torch.float32)
        if bf16 and not is_gfpgan_family(descriptor):
            return fast, torch.bfloat16, "fast CPU path (channels-last), bfloat16 autocast"
        return fast, None, f"fast CPU path{'' if is_gfpgan_family(descriptor) else ' (channels-last)'}, {dtype_name}"
    if bf16:
        return model, torch.bfloat16, "reference forward, bfloat16 autocast"
    return model, None, f"reference forward, float32 (no fast path for {descriptor.arch})"


def make_detector(name: str = "mtcnn", device: str | torch.device = "cpu") -> Any:
    """A face detector by name: ``"mtcnn"`` (offline default) or ``"retinaface"`` (the official
    pipeline's ResNet-50 RetinaFace; needs facexlib's detection_Resnet50_Final.pth).

    The returned object has ``detect_arrays(image uint8 [H, W, 3] RGB) -> (boxes [N, 4],
    scores [N], landmarks [N, 5, 2])``; it also finds faces cut by the photo's edge
    (face/edge_margin.py), and MTCNN looks again where it found no face (face/second_look.py).
    """
    if name == "mtcnn":
        mtcnn = MTCNN(device=device)
        second_looks = [mtcnn.with_settings(ratio, thresholds) for ratio, thresholds in MTCNN_SECOND_LOOKS]
        return EdgeMarginDetector(SecondLookDetector(mtcnn, second_looks))
    if name in ("retinaface", "retinaface-resnet50", "retinaface-mobilenet"):
        network = "mobilenet0.25" if name.endswith("mobilenet") else "resnet50"
        return EdgeMarginDetector(make_retinaface_detector(network, device=device))
    raise OptionError(f"unknown detector {name!r} (use 'mtcnn' or 'retinaface')")


FaceMasker = Callable[[np.ndarray], np.ndarray]


def make_face_masker(name: str = "parsenet", device: str | torch.device = "cpu",
                     cache_dir: Optional[str] = None) -> FaceMasker:
    """A paste-mask function by name: ``"parsenet"`` (facexlib's ParseNet, as the official
    pipeline's ``use_parse=True``; needs parsing_parsenet.pth) or ``"bisenet"``.

    The returned callable maps restored faces [B, S, S, 3] float [0, 1] to masks [B, S, S] float
    [0, 1] (see faceprior.face.parsing.ParsingMasker).
    """
    return make_parsing_masker(name, device=device, cache_dir=cache_dir)


@dataclass
class Face:
    """One face of a photo.

    box: [4] float32 (x1, y1, x2, y2) in input-photo pixels. landmarks: [5, 2] float32.
    score: detector confidence in [0, 1] (1.0 for --aligned inputs).
    affine: [2, 3] float64 map from photo pixels to aligned-crop pixels.
    aligned: [S, S, 3] crop given to the model; restored: [S, S, 3] model output after the
    ``weight`` blend. Both have the input's dtype. weight: the blend weight this face got (1 =
    the model's output, 0 = the input face; chosen per face with ``weight="auto"``).
    surroundings_weight: the weight its surroundings got (``FaceRestorer(surroundings=True)``), or
    None where they were not restored.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    affine: np.ndarray
    aligned: np.ndarray
    restored: Optional[np.ndarray] = None
    weight: Optional[float] = None
    surroundings_weight: Optional[float] = None

    def to_json(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
            "weight": None if self.weight is None else round(float(self.weight), 4),
            "surroundings_weight": None if self.surroundings_weight is None else round(float(self.surroundings_weight), 4),
        }


@dataclass(frozen=True)
class PhotoColour:
    """What a photo's restored faces are made to match (:meth:`FaceRestorer.photo_colour`).

    gray: the photo is black and white in content (``looks_gray``): the faces are made grey.
    tone: the photo is a toned print (``photo_tone``): the faces' change gets its tint.
    white_balance: a colour photo whose white balance the faces keep (``keep_white_balance``).
    None of them: the model's colours are kept.
    """

    gray: bool = False
    tone: Optional[Tone] = None
    white_balance: bool = False

    def apply(self, restored: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """Restored faces [N, S, S, 3] made to match, given the crops [N, S, S, 3] they came from."""
        if self.gray:
            return gray_as_rgb(restored)  # no colour invented on black-and-white photos
        if self.tone is not None:
            return self.tone.apply_change(restored, crops)  # nor skin colours on a sepia print
        if self.white_balance:
            return keep_white_balance(restored, crops)  # nor a colour cast on a colour photo
        return restored

    def apply_photo(self, image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """A whole photo [H, W, 3] changed from its ``pixels`` by the faces' colour map, made to
        match: grey or toned as the faces are (the map keeps greys already, ``photo_map``)."""
        return image if self.white_balance else self.apply(image, pixels)

    def photo_map(self, crops: np.ndarray, restored: np.ndarray) -> np.ndarray:
        """The [3, 4] colour map that the photo around faces [N, S, S, 3] gets: the faces' own colour
        change (``faces_colour_map``), keeping greys with ``white_balance``."""
        matrix = faces_colour_map(crops, restored)
        return keep_greys(matrix) if self.white_balance else matrix


@dataclass
class Result:
    """The restored photo: image [H', W', 3] (H' = round(H * upscale)) with the input's dtype,
    alpha [H', W'] or None, the faces, per-stage wall times in milliseconds, and how much of the
    photo restorer's change the photo got around its faces (``FaceRestorer(background=True)``;
    None when it was off or the image was the face's crop)."""

    image: np.ndarray
    alpha: Optional[np.ndarray]
    faces: list[Face]
    timings_ms: dict[str, float] = field(default_factory=dict)
    background_weight: Optional[float] = None


class FaceRestorer:
    """Restore every face in a photo with a face-restoration model (GFP-GAN, RestoreFormer,
    RestoreFormer++, CodeFormer, GPEN, or any architecture of ``faceprior.models.ARCHITECTURES``).

    Args:
        model: catalogue name (e.g. "gfpgan-1.4", "codeformer"), checkpoint path or URL, nn.Module,
            ModelDescriptor, or None for the best restoration model present.
        detector: "mtcnn", "retinaface", or an object with ``detect_arrays`` (see make_detector).
        upscale: background enlargement factor, >= 1.
        weight: blend of restored and input face, 1 = fully restored, 0 = input face; "auto"
            (default): chosen per face by the blend-weight estimator (docs/no_harm.md), from 0 for a
            face that is sharp already to near 1 for one the model helps a lot.
        aligned: inputs are already aligned faces, no detection. True or "ffhq": aligned to the
            FFHQ template at any size (the field's convention: GFPGAN's and CodeFormer's
            ``cropped_faces``); another template name: aligned to that one; "model": already in the
            model's own framing (fed as they are, scaled to S; the evaluation protocol). Each face
            is re-framed to the model's template, restored, framed back, and returned at its input
            size (times ``upscale``).
        only_center_face: keep only the face nearest to the image centre.
        min_face: ignore faces whose box is smaller than this many pixels (shorter side).
        max_faces: keep at most this many faces, the largest.
        faces: restore only these faces: positions in the list of faces the other filters keep,
            largest first (0 = the largest); None: all of them.
        batch_size: faces per model forward.
        seed: None = stored (deterministic) decoder noise; an int = random noise from this seed.
        upsampler: background upsampler: an Upsampler, or a name for make_upsampler
            ("lanczos", "realesrgan"). Default Lanczos. Only used when upscale > 1.
        face_masker: optional callable (restored faces [B, S, S, 3] float [0, 1]) -> masks
            [B, S, S] float in [0, 1] replacing the default soft rectangle, or a face parser name
            for make_face_masker ("parsenet", "bisenet").
        bg_tile: tile size of a named network upsampler (0: whole image at once).
        device: torch device for the model.
        precision: how the network runs. "fp32" (default): on CPU, faceprior's fast inference
            path (faceprior.inference.optimize) where it supports the network, the reference
            forward otherwise; same function to ~1e-5 (a pixel may round one uint8 level
            differently). "reference": the unmodified forward of the loaded network, exactly.
            "bf16": bfloat16 (CPU fast path with AMX / AVX512-BF16, autocast on GPUs; ~50 dB PSNR
            against fp32). "auto": bf16 where the hardware computes it natively, else fp32.
        template: the face framing the model was trained on, a key of
            ``faceprior.face.templates.TEMPLATES`` ("ffhq", "celeba-hq", "gpen"); None: a catalogue
            model's own (or its architecture's), "ffhq" for other files and modules.
        fidelity: for models with a fidelity control (CodeFormer's ``w``), in [0, 1]: 0 = the most
            generative result, 1 = the closest to the input; None: the model's default (0.5 for
            CodeFormer). An error for a model without one (``weight`` blends any model's output).
        keep_tone: on a toned monochrome photo (sepia, cyanotype, a tinted black-and-white scan:
            ``faceprior.imaging.tone.photo_tone``), give the restored faces the photo's tint at each
            brightness instead of the model's skin colours (default). Black-and-white photos always
            get grey faces.
        refine_landmarks: move the detector's landmarks of each face to where it would have put them
            on the sharp face (``LandmarkRefinerNet``, catalogue name ``landmark-refiner``): a degraded
            face is then aligned closer to the model's template (docs/no_harm.md, section 9; default
            True). No effect for aligned input.
        keep_white_balance: on a colour photo, keep its white balance: each face's colour change,
            measured as one affine colour map, loses its colour cast (``keep_white_balance``: greys
            stay grey; brightness, contrast and saturation change as the model changed them), and so
            does the photo's with ``background``. Off by default: the face model takes casts off
            faces (the paper's degradations shift colour channels), which gains on the synthetic test
            sets, but on real photos it also warms cool ones towards the skin of its training faces
            (docs/no_harm.md, section 8).
        surroundings: for a model trained on a framing tighter than FFHQ's (faceprior-256:
            CelebA-HQ crops), also restore each face's surroundings: the model runs a second time
            on the face's FFHQ-framed crop (hair, ears, neck, the background near the face), that
            restoration is blended with its own weight, its low-frequency colour change taken off
            (the photo keeps its colours), and pasted under the face, which is restored in the
            model's own framing as always. Off by default: it gains on the synthetic test sets, but
            the model, fed a framing it was not trained on, draws halos along hair outlines and
            bands at the hairline of some heavily blurred real faces (docs/no_harm.md, section 6).
            No effect for FFHQ-framed models and for ``aligned="model"``.
        background: also restore the photo around its faces, as much as they were restored
            (docs/no_harm.md, section 7; default True): its detail (blur, noise, JPEG blocks) with
            the small photo restorer (``PhotoRestorerNet``, catalogue name ``photo-restorer``), by
            ``background_weight`` (its faces' weights, each counted by its area in the photo;
            nothing below 0.05), and its colours with the faces' own colour change (one affine
            colour map fitted on the faces, ``faces_colour_map``), so that restored faces and their
            photo match. No effect for ``aligned="model"``, where the whole image is the face.
    """

    def __init__(self, model: ModelSpec = None, detector: Any = "mtcnn", upscale: float = 1.0,
                 weight: Union[float, str] = "auto", aligned: Union[bool, str] = False, only_center_face: bool = False,
                 min_face: float = 0.0, max_faces: Optional[int] = None, batch_size: int = 4,
                 seed: Optional[int] = None, upsampler: Union[Upsampler, str, None] = None,
                 face_masker: Union[FaceMasker, str, None] = None, bg_tile: int = 400,
                 device: str | torch.device = "cpu", cache_dir: Optional[str] = None,
                 precision: str = "fp32", template: Optional[str] = None, fidelity: Optional[float] = None,
                 faces: Optional[Sequence[int]] = None, keep_tone: bool = True, keep_white_balance: bool = False,
                 surroundings: bool = False, refine_landmarks: bool = True,
                 background: bool = True):
        if not upscale >= 1:
            raise OptionError(f"upscale must be >= 1, got {upscale}")
        if weight != "auto" and not (isinstance(weight, (int, float)) and 0 <= weight <= 1):
            raise OptionError(f"weight must be 'auto' or a number in [0, 1], got {weight!r}")
        if batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        if fidelity is not None and not 0 <= fidelity <= 1:
            raise OptionError(f"fidelity must be in [0, 1], got {fidelity}")
        self.device = parse_device(device)
        self.choice = choose_model(model, self.device, cache_dir, template)
        self.descriptor = self.choice.descriptor
        self.model = self.descriptor.network.to(self.device).eval()
        self.network, self.autocast_dtype, self.precision_note = inference_network(self.descriptor, precision,
                                                                                   self.device)
        self.input_size = self.choice.input_size
        self.template = self.choice.template
        if fidelity is not None and not self.descriptor.capabilities.fidelity:
            raise OptionError(f"{self.descriptor.name} ({self.descriptor.arch}) has no fidelity control; "
                              "--weight blends its output with the input instead")
        self.fidelity = fidelity
        self.detector = None
        if not aligned:
            self.detector = make_detector(detector, self.device) if isinstance(detector, str) else detector
        self.upscale = float(upscale)
        self.weight: Union[float, str] = weight if weight == "auto" else float(weight)
        #: --weight auto: the estimator that chooses each face's weight
        self.blend_estimator = None
        if weight == "auto":
            self.blend_estimator = resolve_model(BLEND_ESTIMATOR, device=self.device, cache_dir=cache_dir).network.eval()
        self.aligned = bool(aligned)
        #: the inputs' framing in aligned mode (a template name; the model's own for "model")
        self.aligned_framing = None if not aligned else ("ffhq" if aligned is True else str(aligned))
        if self.aligned_framing == "model":
            self.aligned_framing = self.choice.framing
        if self.aligned_framing is not None:
            check_template_name(self.aligned_framing)
        #: each input image is the model's crop, all face (aligned in the model's own framing)
        self.whole_crop = self.aligned and self.aligned_framing == self.choice.framing
        #: the network that restores the photo around the faces (``background``), or None (off, or
        #: nothing lies around the faces)
        self.photo_restorer = None
        if background and not self.whole_crop:
            self.photo_restorer = resolve_model(PHOTO_RESTORER, device=self.device, cache_dir=cache_dir).network.eval()
        #: the network that refines detected landmarks (``refine_landmarks``), or None (off, or aligned input)
        self.landmark_refiner = None
        if refine_landmarks and not self.aligned:
            self.landmark_refiner = resolve_model(LANDMARK_REFINER, device=self.device, cache_dir=cache_dir).network.eval()
        self.only_center_face = only_center_face
        self.min_face = float(min_face)
        self.max_faces = max_faces
        if faces is not None and any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in faces):
            raise OptionError(f"faces must be face positions >= 0 (0 = the largest face), got {list(faces)!r}")
        self.faces = None if faces is None else tuple(sorted(set(faces)))
        self.keep_tone = bool(keep_tone)
        self.keep_white_balance = bool(keep_white_balance)
        #: the framing the surroundings are restored in (FFHQ's template at S), or None
        self.surroundings_template = None
        ffhq = named_template("ffhq", self.input_size)
        if surroundings and not self.whole_crop and \
                face_scale(self.template) > SURROUNDINGS_MIN_SCALE * face_scale(ffhq):
            self.surroundings_template = ffhq
        self.batch_size = int(batch_size)
        self.seed = seed
        if isinstance(upsampler, str):
            upsampler = make_upsampler(upsampler, self.device, bg_tile, cache_dir)
        self.upsampler = upsampler or LanczosUpsampler()
        if isinstance(face_masker, str):
            face_masker = make_face_masker(face_masker, self.device, cache_dir)
        self.face_masker = face_masker

    # ---- the model on aligned crops --------------------------------------------------------

    def restore_aligned(self, faces: np.ndarray) -> np.ndarray:
        """Run the model on aligned crops.

        faces: [B, S, S, 3] uint8, uint16 or float in [0, 1] (S = self.input_size).
        Returns [B, S, S, 3] of the same dtype: clamp(model(x), -1, 1) mapped to [0, 1]
        (integers rounded), blended with the input by ``weight`` (see :meth:`restore_crops`).
        """
        return self.restore_crops(faces)[0]

    def restore_crops(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`restore_aligned`, and the weight each face was blended with: ([B, S, S, 3], [B] float)."""
        outputs, weights = self.run_model(faces)
        return blend_faces(faces, outputs, weights), weights

    @torch.inference_mode()
    def run_model(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's outputs on aligned crops, before any blending, and the weight each should get.

        faces: [B, S, S, 3] uint8, uint16 or float in [0, 1]. Returns (outputs [B, S, S, 3] float32
        in [0, 1], weights [B] float64: ``weight``, or the estimator's choice for ``"auto"``).
        """
        faces = np.asarray(faces)
        outputs = np.empty(faces.shape, np.float32)
        weights = np.ones(len(faces)) if self.weight == "auto" else np.full(len(faces), float(self.weight))
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start:start + self.batch_size]
            x = torch.from_numpy(to_float01(chunk)).permute(0, 3, 1, 2).to(self.device)
            y = self._forward(x * 2 - 1).clamp(-1, 1) * 0.5 + 0.5
            if self.blend_estimator is not None:
                weights[start:start + len(chunk)] = self.blend_estimator(x.float(), y.float()).cpu().numpy()
            outputs[start:start + len(chunk)] = y.permute(0, 2, 3, 1).float().cpu().numpy()
        return outputs, weights

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if self.seed is None:
                return self.descriptor.restore(x, self.fidelity, randomize_noise=False, network=self.network).float()
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                return self.descriptor.restore(x, self.fidelity, randomize_noise=True, network=self.network).float()

    # ---- whole photos ----------------------------------------------------------------------

    def detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detected and filtered faces of an [H, W, 3] photo: boxes [N, 4], scores [N],
        landmarks [N, 5, 2] (refined with ``refine_landmarks``), largest first after the filters of this restorer."""
        boxes, scores, landmarks = self.detector.detect_arrays(np.ascontiguousarray(to_uint8(pixels)))
        boxes, scores, landmarks = select_faces(np.asarray(boxes), np.asarray(scores), np.asarray(landmarks), pixels.shape[:2],
                                                self.min_face, self.only_center_face, self.max_faces, self.faces)
        if self.landmark_refiner is not None and len(landmarks):
            landmarks = refine_landmarks(self.landmark_refiner, pixels, landmarks)
        return boxes, scores, landmarks

    def restore(self, image: Any) -> Result:
        """Restore the faces of one photo. On a photo that is grey in content (``looks_gray``, e.g. a
        black-and-white scan stored as RGB) the restored faces are made grey too; on a toned one
        (sepia, ...) they get its tone (``keep_tone``).

        image: [H, W, 3] or [H, W, 4] (alpha kept) or [H, W] numpy array (uint8, uint16 or float
            in [0, 1]) or a PIL image. Returns a Result (see its docstring).
        """
        return self.restore_prepared([self.prepare(image)])[0]

    def restore_many(self, images: Sequence[Any]) -> list[Result]:
        """Restore several photos (each as in :meth:`restore`), their faces going through the
        network together in batches of ``batch_size`` across photos. Results equal those of
        :meth:`restore` on each photo (to float rounding of the batched forward)."""
        return self.restore_prepared([self.prepare(image) for image in images])

    def prepare(self, image: Any) -> PreparedPhoto:
        """Detect and align the faces of one photo (see :meth:`restore` for ``image``); the network
        has not run yet. Raises ValueError for unusable images, like :meth:`restore`."""
        pixels, alpha = to_rgb_array(image)
        watch = _Stopwatch()
        if self.aligned:
            size = self.input_size
            height, width = pixels.shape[:2]
            if self.whole_crop:
                # The whole image is the model's crop: scale it to S (pixel-centre convention).
                matrix = np.array([[size / width, 0.0, 0.5 * size / width - 0.5],
                                   [0.0, size / height, 0.5 * size / height - 0.5]])
                landmarks = ((self.template - matrix[:, 2]) / np.diag(matrix[:, :2])).astype(np.float32)
            else:  # re-frame: the input's template points, mapped onto the model's
                landmarks = (named_template(self.aligned_framing, 1) * (width, height)).astype(np.float32)
                matrix = estimate_similarity(landmarks, self.template)
            crop = pixels if np.array_equal(matrix, IDENTITY_AFFINE) else \
                warp_affine(pixels, matrix, size, border="replicate")
            watch.lap("align")
            return PreparedPhoto(pixels, alpha, np.array([[0, 0, width - 1, height - 1]], np.float32),
                                 np.ones(1, np.float32), landmarks[None], matrix[None], crop[None], watch.timings)

        boxes, scores, landmarks = self.detect(pixels)
        watch.lap("detect")
        return self.prepare_faces(pixels, alpha, boxes, scores, landmarks, watch)

    def prepare_faces(self, pixels: np.ndarray, alpha: Optional[np.ndarray], boxes: np.ndarray, scores: np.ndarray,
                      landmarks: np.ndarray, watch: Optional[_Stopwatch] = None) -> PreparedPhoto:
        """Align given faces (boxes [N, 4], scores [N], landmarks [N, 5, 2], e.g. smoothed along
        a video's tracks) of an RGB photo ``pixels`` [H, W, 3] to the model's template."""
        watch = watch or _Stopwatch()
        size = self.input_size
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        matrices = np.stack([estimate_similarity(points, self.template) for points in landmarks]) if len(landmarks) else np.zeros((0, 2, 3))
        crops = aligned_crops(pixels, matrices, size)
        watch.lap("align")
        return PreparedPhoto(pixels, alpha, np.asarray(boxes, np.float32).reshape(-1, 4),
                             np.asarray(scores, np.float32).reshape(-1), landmarks, matrices, crops, watch.timings)

    def restore_prepared(self, photos: Sequence[PreparedPhoto]) -> list[Result]:
        """Run the network on the faces of prepared photos (batched across photos), then paste each
        photo's faces back. The "restore" timing of a photo is its share (by face count) of the
        network time of its batch."""
        restored: list[np.ndarray] = [photo.crops for photo in photos]
        weights: list[np.ndarray] = [np.zeros(0) for _ in photos]
        for dtype in {photo.crops.dtype for photo in photos if len(photo.crops)}:  # one forward per pixel type
            members = [i for i, photo in enumerate(photos) if len(photo.crops) and photo.crops.dtype == dtype]
            counts = [len(photos[i].crops) for i in members]
            start = time.perf_counter()
            outputs, chosen = self.restore_crops(np.concatenate([photos[i].crops for i in members]))
            seconds = time.perf_counter() - start
            splits = np.cumsum(counts)[:-1]
            for i, part, part_weights, count in zip(members, np.split(outputs, splits), np.split(chosen, splits), counts):
                restored[i], weights[i] = part, part_weights
                photos[i].timings["restore"] = round(seconds * 1000.0 * count / sum(counts), 2)
        around = [self.restore_surroundings(photo) for photo in photos]
        return [self.finish(photo, faces, w, surroundings=a) for photo, faces, w, a in zip(photos, restored, weights, around)]

    def restore_surroundings(self, photo: PreparedPhoto) -> Optional[Surroundings]:
        """The surroundings of a prepared photo's faces restored in the FFHQ framing (see the
        ``surroundings`` option), or None (off, or no face)."""
        if self.surroundings_template is None or not len(photo.landmarks):
            return None
        start = time.perf_counter()
        matrices = np.stack([estimate_similarity(points, self.surroundings_template) for points in photo.landmarks])
        crops = aligned_crops(photo.pixels, matrices, self.input_size)
        restored, weights = self.restore_crops(crops)
        photo.timings["restore"] = round(photo.timings.get("restore", 0.0) + (time.perf_counter() - start) * 1000.0, 2)
        return Surroundings(matrices, crops, restored, weights)

    def photo_colour(self, pixels: np.ndarray) -> PhotoColour:
        """Whether a photo [H, W, 3] is black and white, toned (with ``keep_tone``), or in colour (its
        white balance kept with ``keep_white_balance``)."""
        if looks_gray(pixels):
            return PhotoColour(gray=True)
        return PhotoColour(tone=photo_tone(pixels) if self.keep_tone else None, white_balance=self.keep_white_balance)

    def background_weight(self, photo: PreparedPhoto, weights: np.ndarray) -> Optional[float]:
        """How much of the photo restorer's change a photo gets around its faces (``background``):
        its faces' weights [N], each counted by the area of its crop in the photo; 0 without faces,
        None when ``background`` is off."""
        if self.photo_restorer is None:
            return None
        if not len(weights):
            return 0.0
        areas = 1.0 / np.abs(np.linalg.det(np.asarray(photo.matrices, np.float64)[:, :, :2]))
        return float(np.clip(np.sum(areas * np.asarray(weights, np.float64)) / np.sum(areas), 0.0, 1.0))

    @torch.inference_mode()
    def restore_background(self, pixels: np.ndarray, weight: float) -> np.ndarray:
        """``pixels + weight * (restorer(pixels) - pixels)`` for a photo [H, W, 3] (its dtype)."""
        x = torch.from_numpy(np.ascontiguousarray(to_float01(pixels), np.float32)).permute(2, 0, 1)[None].to(self.device)
        tile = BACKGROUND_TILE if max(x.shape[-2:]) > BACKGROUND_TILE + 2 * BACKGROUND_TILE_PAD else 0
        restored = upsample_tiled(self.photo_restorer, x, tile=tile, tile_pad=BACKGROUND_TILE_PAD, scale=1, pad_multiple=4)
        out = x + float(weight) * (restored - x)
        return from_float01(out[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy(), pixels.dtype)

    def finish(self, photo: PreparedPhoto, restored: np.ndarray, weights: np.ndarray,
               colour: Optional[PhotoColour] = None, surroundings: Optional[Surroundings] = None,
               background_weight: Optional[float] = None) -> Result:
        """Paste restored (blended) faces [N, S, S, 3] of a prepared photo into the (enlarged)
        photo; ``weights`` [N]: the weight each was blended with (reported). ``colour``: what the
        faces are made to match; None: :meth:`photo_colour` of this photo (a video passes its
        scene's, so that the faces do not change colour from frame to frame). ``surroundings``:
        their restored surroundings (:meth:`restore_surroundings`), pasted first, under the faces.
        ``background_weight``: how much of the photo restorer's change the photo gets (with
        ``background``); None: :meth:`background_weight` of this photo (a video passes its scene's)."""
        pixels, alpha = photo.pixels, photo.alpha
        watch = _Stopwatch(photo.timings)
        photo.timings.setdefault("restore", 0.0)
        if len(restored):
            colour = self.photo_colour(pixels) if colour is None else colour
            restored = colour.apply(restored, photo.crops)
        out_alpha = None if alpha is None else (alpha if self.upscale == 1 else upscale_lanczos(alpha, self.upscale))
        if self.photo_restorer is None:
            background_weight = None
        elif background_weight is None:
            background_weight = self.background_weight(photo, weights)
        if self.aligned and self.upscale == 1 and np.array_equal(photo.matrices[0], IDENTITY_AFFINE):
            out = restored[0]  # the input is the model's crop
        else:
            # With the background restored, the faces are pasted into the photo in their colours (the
            # faces' colour map), and the restored photo goes around them: the photo restorer's
            # detail never lies under a face (the face model is the judge of faces).
            base, around_faces = pixels, None
            if background_weight is not None and background_weight >= BACKGROUND_MIN_WEIGHT:
                colour_map = colour.photo_map(photo.crops, restored)
                base = apply_colour_map(pixels, colour_map)
                around_faces = apply_colour_map(self.restore_background(pixels, background_weight), colour_map)
                # black-and-white photos stay grey, toned ones keep their tone (as the faces do)
                base, around_faces = colour.apply_photo(base, pixels), colour.apply_photo(around_faces, pixels)
                watch.lap("background")
            out = base if self.upscale == 1 else self.upsampler.upsample(base, self.upscale)
            if around_faces is not None and self.upscale != 1:
                around_faces = self.upsampler.upsample(around_faces, self.upscale)
            watch.lap("upsample")
            masks = None
            if self.whole_crop:
                masks = [np.ones(restored.shape[1:3], np.float32)]  # the crop is the whole image
            elif self.face_masker is not None and len(restored):
                masks = list(self.face_masker(to_float01(restored)))
            # Only each face's change is pasted, keeping the photo's own detail finer than the crop,
            # unless the crop holds all of it and the face is restored (then the noise would stay).
            # Where the photo under the faces was restored too, each face (a + w (r - a), blended
            # with its crop a) becomes a' + w (r - a') with the crop a' of what lies under it now,
            # and its change is pasted against that.
            inputs, pasted = photo.crops, restored
            if surroundings is not None and len(restored) and np.any(surroundings.weights > 0):
                around = without_colour_change(colour.apply(surroundings.restored, surroundings.crops), surroundings.crops)
                around_inputs = surroundings.crops
                if base is not pixels:
                    around, around_inputs = self._over(out, around, surroundings.weights, surroundings.crops,
                                                       surroundings.matrices)
                out = paste_faces(out, list(zip(around, surroundings.matrices)), upscale=self.upscale,
                                  inputs=around_inputs,
                                  keep_detail=keep_detail(surroundings.matrices, surroundings.weights, self.upscale))
                pasted, inputs = self._over(out, restored, weights, photo.crops, photo.matrices)
            elif base is not pixels and len(restored):
                pasted, inputs = self._over(out, restored, weights, photo.crops, photo.matrices)
            out = paste_faces(out, list(zip(pasted, photo.matrices)), masks=masks, upscale=self.upscale,
                              inputs=inputs, keep_detail=keep_detail(photo.matrices, weights, self.upscale))
            if around_faces is not None:
                crops = photo.matrices
                if surroundings is not None and np.any(surroundings.weights > 0):
                    crops = np.concatenate([surroundings.matrices, crops])
                coverage = self.crop_coverage(out.shape[:2], crops)
                out = from_float01(to_float01(out) * coverage + to_float01(around_faces) * (1 - coverage), out.dtype)
        watch.lap("paste")
        around_weights = [None] * len(photo.boxes) if surroundings is None else [float(w) for w in surroundings.weights]
        faces = [Face(photo.boxes[i], photo.landmarks[i], float(photo.scores[i]), photo.matrices[i],
                      photo.crops[i], restored[i], float(weights[i]), around_weights[i]) for i in range(len(photo.boxes))]
        return Result(out, out_alpha, faces, photo.timings, background_weight)

    def crop_coverage(self, shape: Sequence[int], matrices: np.ndarray) -> np.ndarray:
        """[H', W', 1] float32 in [0, 1] over the enlarged photo: 1 on every face's whole crop
        (matrices [N, 2, 3] photo -> crop), fading to 0 over ``FACE_MARGIN`` of the crop's side
        outside it: where the photo restorer's output is kept out (faces, their jaws and hairlines)."""
        size = self.input_size
        margin = FACE_MARGIN * size
        larger = int(round(size + 2 * margin))
        mask = face_mask(larger, erosion=0.0, feather=margin / 6)  # its ramp spans 6 sigma: the margin
        ones = np.ones((larger, larger, 1), np.float32)
        shifted = np.array(matrices, np.float64).reshape(-1, 2, 3)
        shifted[:, :, 2] += (larger - size) / 2
        return paste_faces(np.zeros((*shape, 1), np.float32), [(ones, m) for m in shifted],
                           masks=[mask] * len(shifted), upscale=self.upscale)

    def _over(self, out: np.ndarray, faces: np.ndarray, weights: np.ndarray, crops: np.ndarray,
              matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces blended with their crops, re-blended over what lies under them in ``out`` (the
        enlarged photo): (faces + (1 - w) (under - crops), under), both [N, S, S, 3] in the faces' dtype."""
        to_crops = np.stack([invert_affine(face_to_image_matrix(m, self.upscale)) for m in matrices])
        under = aligned_crops(out, to_crops, self.input_size)
        keep = (1.0 - np.clip(np.asarray(weights, np.float32), 0.0, 1.0))[:, None, None, None]
        moved = to_float01(faces) + keep * (to_float01(under) - to_float01(crops))
        return from_float01(np.clip(moved, 0.0, 1.0), np.asarray(faces).dtype), under


@dataclass
class PreparedPhoto:
    """A photo whose faces are detected and aligned (:meth:`FaceRestorer.prepare`), waiting for
    :meth:`FaceRestorer.restore_prepared`.

    pixels [H, W, 3] and alpha [H, W] or None as from ``to_rgb_array``; boxes [N, 4], scores [N],
    landmarks [N, 5, 2], matrices [N, 2, 3] (photo -> crop), crops [N, S, S, 3] (pixels' dtype);
    timings: milliseconds per stage so far.
    """

    pixels: np.ndarray
    alpha: Optional[np.ndarray]
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    matrices: np.ndarray
    crops: np.ndarray
    timings: dict[str, float]


@dataclass
class Surroundings:
    """The surroundings of a photo's faces restored in the FFHQ framing
    (:meth:`FaceRestorer.restore_surroundings`): matrices [N, 2, 3] photo -> crop, crops
    [N, S, S, 3] given to the model (the photo's dtype), restored [N, S, S, 3] blended with
    weights [N]."""

    matrices: np.ndarray
    crops: np.ndarray
    restored: np.ndarray
    weights: np.ndarray


class _Stopwatch:
    """Wall time per pipeline stage, in milliseconds, into ``timings``."""

    def __init__(self, timings: Optional[dict[str, float]] = None):
        self.timings = {} if timings is None else timings
        self.clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round((now - self.clock) * 1000.0, 2)
        self.clock = now


def parse_face_positions(text: str) -> tuple[int, ...]:
    """"0,2" -> (0, 2): the ``faces`` of FaceRestorer (positions >= 0, largest face first; sorted,
    each once). OptionError for anything else."""
    message = f"expected face positions like 0,2 (0 = the largest face), got {text!r}"
    try:
        positions = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise OptionError(message) from None
    if not positions or min(positions) < 0:
        raise OptionError(message)
    return tuple(sorted(positions))


def select_faces(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, image_hw: Sequence[int],
                 min_face: float = 0.0, only_center_face: bool = False,
                 max_faces: Optional[int] = None, face_indices: Optional[Sequence[int]] = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filter detections: eye distance >= MIN_EYE_DISTANCE, shorter box side >= min_face, then
    optionally only the face nearest the image centre, then at most ``max_faces`` (largest first),
    then, with ``face_indices``, only those positions of that list (0 = the largest face; positions
    past its end are ignored).

    boxes [N, 4], scores [N], landmarks [N, 5, 2] -> the kept subset, sorted by box area, largest first.
    """
    boxes = boxes.reshape(-1, 4).astype(np.float32)
    landmarks = landmarks.reshape(-1, 5, 2).astype(np.float32)
    scores = scores.reshape(-1).astype(np.float32)
    eye_distance = np.linalg.norm(landmarks[:, 0] - landmarks[:, 1], axis=1)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = (eye_distance >= MIN_EYE_DISTANCE) & (sides >= min_face)
    boxes, scores, landmarks, sides = boxes[keep], scores[keep], landmarks[keep], sides[keep]
    if only_center_face and len(boxes):
        centre = np.array([image_hw[1] / 2.0, image_hw[0] / 2.0])
        box_centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        nearest = int(np.argmin(np.linalg.norm(box_centres - centre, axis=1)))
        boxes, scores, landmarks = boxes[nearest:nearest + 1], scores[nearest:nearest + 1], landmarks[nearest:nearest + 1]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-areas, kind="stable")
    if max_faces is not None:
        order = order[:max_faces]
    if face_indices is not None:
        order = order[[index for index in sorted(set(face_indices)) if 0 <= index < len(order)]]
    return boxes[order], scores[order], landmarks[order]


def blend_faces(faces: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``faces + w * (outputs - faces)`` per face, in the faces' dtype (integers rounded).

    faces: [B, S, S, 3] uint8, uint16 or float in [0, 1]; outputs: [B, S, S, 3] float in [0, 1];
    weights: [B] in [0, 1]. A weight of 1 gives the output exactly, 0 the face exactly.
    """
    faces = np.asarray(faces)
    blended = np.empty_like(faces)
    for i, (face, output, weight) in enumerate(zip(faces, outputs, np.asarray(weights, np.float64))):
        if weight >= 1:
            mixed = output
        elif weight <= 0:
            blended[i] = face
            continue
        else:
            source = to_float01(face)
            mixed = source + np.float32(weight) * (output - source)
        blended[i] = from_float01(mixed, faces.dtype)
    return blended


def keep_detail(matrices: np.ndarray, weights: np.ndarray, upscale: float = 1.0) -> np.ndarray:
    """How much of the photo's own detail each pasted face keeps (``paste_faces(keep_detail=...)``).

    A face larger in the (enlarged) photo than its crop keeps the detail the crop is too small to
    hold: 1. A face the crop holds at full resolution or better (crop pixels per photo pixel >= 1)
    keeps ``1 - weight``: a restored face replaces the photo's pixels, noise included, and a face
    left as it was (weight 0) stays exactly. In between (0.7 to 1 crop pixels per photo pixel) the
    two blend linearly. matrices [N, 2, 3] photo -> crop; weights [N]; returns [N].
    """
    matrices = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    scale = np.sqrt(np.abs(np.linalg.det(matrices[:, :, :2]))) / float(upscale)  # crop px per output px
    replaces = np.clip((scale - 0.7) / 0.3, 0.0, 1.0)
    return 1.0 - replaces * np.clip(np.asarray(weights, np.float64), 0.0, 1.0)


def face_scale(template: np.ndarray) -> float:
    """The size of a face in a template [5, 2]: the distance between the eyes plus that from their
    midpoint to the mouth's."""
    template = np.asarray(template, np.float64)
    eyes, mouth = template[:2].mean(axis=0), template[3:].mean(axis=0)
    return float(np.hypot(*(mouth - eyes)) + np.hypot(*(template[1] - template[0])))


def faces_colour_map(crops: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """The [3, 4] affine colour map (``faceprior.imaging.colour``) that takes faces' crops
    [N, S, S, 3] to their (blended) restorations, fitted on each face's centre (the estimator's
    window) at 1/8 size or less: the faces' colours, not their detail."""
    size = crops.shape[1]
    step = max(1, size // 32)
    window = centre_window(size).numpy()[::step, ::step].ravel()
    sources = to_float01(crops)[:, ::step, ::step].reshape(-1, 3)
    targets = to_float01(restored)[:, ::step, ::step].reshape(-1, 3)
    return fit_colour_map(sources, targets, np.tile(window / window.sum() / len(crops), len(crops)))


def keep_white_balance(restored: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Restored faces [N, S, S, 3] whose colour change from their ``crops`` keeps greys grey: each
    face's change, measured as one affine colour map (``faces_colour_map``), is replaced by the
    nearest map that keeps greys (``keep_greys``): brightness, contrast and saturation change as
    the model changed them, but no colour cast is added or taken off (a bluish photo's faces stay
    in its light, rather than turning to the warm skin of the training faces). Returns the crops' dtype."""
    out, source = to_float01(restored).astype(np.float32), to_float01(crops).astype(np.float32)
    for i in range(len(out)):
        matrix = faces_colour_map(crops[i:i + 1], restored[i:i + 1])
        cast = (keep_greys(matrix) - matrix).astype(np.float32)  # the map's colour cast, negated
        out[i] += source[i] @ cast[:, :3].T + cast[:, 3]
    return from_float01(np.clip(out, 0.0, 1.0), np.asarray(crops).dtype)


def without_colour_change(restored: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """``restored`` [N, S, S, 3] less the low-frequency colour of its change from ``crops``: the
    chroma (change minus its grey) blurred with a Gaussian of sigma S / 32. Detail, and changes of
    brightness, stay; the colour of large areas stays the crops'. Returns the crops' dtype."""
    out, source = to_float01(restored), to_float01(crops)
    change = out - source
    return from_float01(np.clip(out - low_frequency(change - rgb_to_gray(change)[..., None]), 0.0, 1.0),
                        np.asarray(crops).dtype)


def low_frequency(images: np.ndarray) -> np.ndarray:
    """[N, S, S, 3] float -> the same blurred with a Gaussian of sigma S / 32 (float32)."""
    count, size = images.shape[:2]
    sigma = size / 32
    planes = torch.from_numpy(np.ascontiguousarray(images, np.float32)).permute(0, 3, 1, 2).reshape(-1, size, size)
    low = gaussian_blur(planes, int(2 * round(3 * sigma) + 1), sigma)
    return low.reshape(count, 3, size, size).permute(0, 2, 3, 1).numpy()
