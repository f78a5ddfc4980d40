"""The pastes tried against the seams of docs/no_harm.md ("Aligned faces"), measured with no_harm.

    .venv/bin/python tools/paste_variants.py VARIANT [no_harm.py options, e.g. --sets lq-256 --sample 100]
    .venv/bin/python tools/paste_variants.py VARIANT --sheet OUT_FOLDER FILE ...   # restore files with it

An experiment, not a feature: it changes each restored (blended) crop before the paste, then runs
tools/no_harm.py (or restores files with --aligned). With d = restored - input and L a Gaussian
blur (sigma S/32) of a change:

    chroma  restored - L(chroma of d)       the photo's low-frequency colour is kept
    all     restored - L(d)                 every low-frequency change is removed
    fade    restored - L(d) * (1 - t)       the low-frequency change fades out over the crop's
                                            outer fifth (t: a mask ramp from S/20 over 6 x S/30)
    none    today's paste
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.face.paste import face_mask  # noqa: E402
from faceprior.imaging.pixels import from_float01, to_float01  # noqa: E402
from faceprior.restoration import restorer as restorer_module  # noqa: E402
from faceprior.restoration.restorer import low_frequency, without_colour_change  # noqa: E402

VARIANTS = ("none", "chroma", "all", "fade")


def changed_crops(variant: str, restored: np.ndarray, crops: np.ndarray) -> np.ndarray:
    if variant == "chroma":  # what --surroundings does to its second pass
        return without_colour_change(restored, crops)
    out, source = to_float01(restored), to_float01(crops)
    change = out - source
    if variant == "all":
        out = out - low_frequency(change)
    elif variant == "fade":
        size = change.shape[1]
        ramp = face_mask(size, erosion=size / 20, feather=size / 30)[None, :, :, None]
        out = out - low_frequency(change) * (1 - ramp)
    return from_float01(np.clip(out, 0, 1), np.asarray(restored).dtype)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: paste_variants.py {{{','.join(VARIANTS)}}} [no_harm.py options | --sheet OUT FILE ...]")
    variant = sys.argv[1]
    finish = restorer_module.FaceRestorer.finish

    def finish_with_variant(self, photo, restored, weights):
        if len(restored) and variant != "none":
            restored = changed_crops(variant, restored, photo.crops)
        return finish(self, photo, restored, weights)

    restorer_module.FaceRestorer.finish = finish_with_variant
    if len(sys.argv) > 2 and sys.argv[2] == "--sheet":
        from faceprior.cli import main as cli_main

        sys.exit(cli_main(["restore", *sys.argv[4:], "-o", sys.argv[3], "--aligned"]))
    sys.argv = [str(REPO / "tools" / "no_harm.py"), *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
