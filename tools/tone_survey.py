"""Which photos does faceprior treat as toned (sepia, ...) or grey? (docs/no_harm.md, section 5)

    .venv/bin/python tools/tone_survey.py [FOLDER ...]

For each folder (default: the sets of ../shared/data that docs/no_harm.md names, and the
degraded test sets tools/no_harm.py made in ~/.cache/faceprior/no-harm), counts the images
``looks_gray`` and ``photo_tone`` recognise and names the toned ones; then times ``photo_tone``
on a 25 Mpx colour photo.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceprior.imaging.files import list_image_files  # noqa: E402
from faceprior.imaging.io import read_image  # noqa: E402
from faceprior.imaging.pixels import looks_gray  # noqa: E402
from faceprior.imaging.tone import photo_tone  # noqa: E402

DATA = REPO.parent / "shared" / "data"
NO_HARM = Path(os.environ.get("FACEPRIOR_HOME", Path.home() / ".cache" / "faceprior")) / "no-harm"
DEFAULT_FOLDERS = [DATA / "realworld-aligned", DATA / "realworld-whole", DATA / "faces-val-256", DATA / "faces-gt-512",
                   NO_HARM / "faces-val-256-seed0-256" / "lq", NO_HARM / "faces-gt-512-seed0-512" / "lq"]


def main() -> None:
    folders = [Path(arg) for arg in sys.argv[1:]] or DEFAULT_FOLDERS
    for folder in folders:
        if not folder.is_dir():
            print(f"{folder}: missing, skipped")
            continue
        files = list_image_files(folder)
        grey, toned = 0, []
        for path in files:
            pixels = read_image(path).pixels
            if looks_gray(pixels):
                grey += 1
            elif photo_tone(pixels) is not None:
                toned.append(str(path.relative_to(folder)))
        print(f"{folder}: {len(files)} images, {grey} grey, {len(toned)} toned"
              + (f": {', '.join(toned[:5])}{' ...' if len(toned) > 5 else ''}" if toned else ""))
    photo = np.random.default_rng(0).integers(0, 256, (5000, 5000, 3), dtype=np.uint8)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        photo_tone(photo)
        times.append(time.perf_counter() - start)
    print(f"photo_tone on a 25 Mpx photo: {min(times) * 1000:.0f} ms (best of 3)")


if __name__ == "__main__":
    main()
