"""What a client may ask of one restoration (the form fields of the HTTP API), checked.

The same options as ``faceprior restore`` for one photo: model, weight (auto or 0..1), fidelity
(CodeFormer's control), upscale, only-center-face, faces (positions, largest first), keep-tone,
surroundings, background and the output format. Anything else a request sends is refused, so no request reaches a file path, a device or a
setting of the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Tuple, Union

from faceprior.errors import OptionError
from faceprior.restoration.restorer import parse_face_positions

__all__ = ["OUTPUT_FORMATS", "RestoreOptions", "parse_options"]

#: Output formats a client may ask for (None / "": the upload's own format).
OUTPUT_FORMATS = ("png", "jpg", "webp")

#: Largest --upscale the service accepts (the page offers 1 to 4).
MAX_UPSCALE = 4.0

FIELDS = ("model", "weight", "fidelity", "upscale", "only_center_face", "faces", "keep_tone", "keep_white_balance", "surroundings",
          "background", "refine_landmarks", "format")


@dataclass(frozen=True)
class RestoreOptions:
    """One request's options; hashable, so that requests with equal options share a batch.

    model: a catalogue name (None: the server's default). weight: "auto" or a number in [0, 1].
    fidelity: None or [0, 1] (models with a fidelity control). upscale: [1, MAX_UPSCALE].
    faces: None (all) or face positions, largest first ("none" in a form: ``()``, no face).
    keep_tone, keep_white_balance, surroundings, background, refine_landmarks: as ``faceprior restore
    --no-keep-tone`` / ``--keep-white-balance`` / ``--surroundings`` / ``--no-background`` /
    ``--no-refine-landmarks``.
    format: one of OUTPUT_FORMATS or None.
    """

    model: Optional[str] = None
    weight: Union[str, float] = "auto"
    fidelity: Optional[float] = None
    upscale: float = 1.0
    only_center_face: bool = False
    faces: Optional[Tuple[int, ...]] = None
    keep_tone: bool = True
    keep_white_balance: bool = False
    surroundings: bool = False
    background: bool = True
    refine_landmarks: bool = True
    format: Optional[str] = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["faces"] = None if self.faces is None else list(self.faces)
        return data


def _number(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{name}: expected a number in [{low:g}, {high:g}], got {text!r}") from None
    if not low <= value <= high:
        raise OptionError(f"{name}: expected a number in [{low:g}, {high:g}], got {text}")
    return value


def _boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(f"{name}: expected true or false, got {text!r}")


def parse_options(fields: Mapping[str, str], models: Tuple[str, ...]) -> RestoreOptions:
    """Form fields (strings) -> RestoreOptions; OptionError (one line) for an unknown field or a
    bad value. ``models``: the catalogue names a client may pick."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    values: dict = {}
    model = fields.get("model", "").strip()
    if model:
        if model not in models:
            raise OptionError(f"model: unknown model {model!r} (available: {', '.join(models)})")
        values["model"] = model
    weight = fields.get("weight", "auto").strip() or "auto"
    values["weight"] = "auto" if weight == "auto" else _number("weight", weight, 0.0, 1.0)
    if fields.get("fidelity", "").strip():
        values["fidelity"] = _number("fidelity", fields["fidelity"], 0.0, 1.0)
    if fields.get("upscale", "").strip():
        values["upscale"] = _number("upscale", fields["upscale"], 1.0, MAX_UPSCALE)
    values["only_center_face"] = _boolean("only_center_face", fields.get("only_center_face", ""))
    values["keep_tone"] = _boolean("keep_tone", fields.get("keep_tone", "true"))
    values["keep_white_balance"] = _boolean("keep_white_balance", fields.get("keep_white_balance", ""))
    values["surroundings"] = _boolean("surroundings", fields.get("surroundings", ""))
    values["background"] = _boolean("background", fields.get("background", "true"))
    values["refine_landmarks"] = _boolean("refine_landmarks", fields.get("refine_landmarks", "true"))
    faces = fields.get("faces", "").strip()
    if faces == "none":
        values["faces"] = ()
    elif faces:
        try:
            values["faces"] = parse_face_positions(faces)
        except OptionError as error:
            raise OptionError(f"faces: {error}") from None
    output_format = fields.get("format", "").strip().lower()
    if output_format:
        if output_format == "jpeg":
            output_format = "jpg"
        if output_format not in OUTPUT_FORMATS:
            raise OptionError(f"format: expected one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
        values["format"] = output_format
    return RestoreOptions(**values)
