"""Face templates: where the 5 landmarks of an aligned face lie in the model's input.

Landmark order everywhere in faceprior: left eye centre, right eye centre, nose tip, left mouth
corner, right mouth corner ("left" as seen in the image, i.e. smaller x first). Coordinates are
(x, y) in pixels of the aligned crop, pixel centres at integer positions.
"""

from __future__ import annotations

import numpy as np

from faceprior.errors import OptionError

# The FFHQ-style 512x512 alignment used by the official GFP-GAN models (facexlib's
# FaceRestoreHelper template for face_size=512).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# The framing of faces-train-256 (CelebA-HQ tight crops, 256x256), the training data of the bundled
# model "faceprior-256": the mean MTCNN landmarks of the main face over its 9,000 images (8,916
# detected; std 4-11 px per coordinate). Reproduce with
#   python tools/derive_template.py ../shared/data/faces-train-256
CELEBA_HQ_TEMPLATE_256 = np.array(
    [
        [86.436, 83.095],
        [169.749, 82.398],
        [125.487, 135.209],
        [92.073, 175.533],
        [163.970, 174.716],
    ],
    dtype=np.float64,
)


# GPEN's 512x512 framing (yangxy/GPEN face_enhancement.py: get_reference_facial_points((512, 512),
# inner_padding_factor=0.25, outer_padding=(0, 0), default_square=True) from align_faces.py's
# 96x112 reference points): a tighter face than FFHQ's (eye distance 107 px against 126).
GPEN_TEMPLATE_512 = np.array(
    [
        [202.04068, 242.88396],
        [309.43025, 242.28998],
        [256.07680, 303.95917],
        [211.95977, 366.82819],
        [300.89112, 366.33631],
    ],
    dtype=np.float64,
)


def scale_template(template: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Rescale a [5, 2] template made for ``from_size`` crops to ``to_size`` crops."""
    return np.asarray(template, dtype=np.float64) * (to_size / from_size)


# Named framings, for a model given as a file (``--template NAME``; registered models carry their own).
TEMPLATES: dict[str, tuple[np.ndarray, int]] = {
    "ffhq": (FFHQ_TEMPLATE_512, 512),  # the official GFP-GAN models, FFHQ-trained models
    "celeba-hq": (CELEBA_HQ_TEMPLATE_256, 256),  # models trained on faces-train-256 (faceprior-256)
    "gpen": (GPEN_TEMPLATE_512, 512),  # GPEN's BFR models
}


def check_template_name(name: str) -> None:
    """ValueError (one line, with the known names) unless ``name`` is a key of :data:`TEMPLATES`."""
    if name not in TEMPLATES:
        raise OptionError(f"unknown face template {name!r}; known: {', '.join(TEMPLATES)}")


def named_template(name: str, size: int) -> np.ndarray:
    """The [5, 2] template ``name`` (a key of :data:`TEMPLATES`) for ``size`` x ``size`` crops."""
    check_template_name(name)
    template, made_for = TEMPLATES[name]
    return scale_template(template, made_for, size)
