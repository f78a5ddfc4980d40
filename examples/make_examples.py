"""Re-create the degraded example inputs from examples/astronaut.png (public domain, NASA).

Run from the repository root: ``python examples/make_examples.py``. The outputs are committed;
this script records exactly how they were made.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert(img.mode)


def main() -> None:
    src = Image.open(HERE / "astronaut.png").convert("RGB")  # 512x512
    rng = np.random.default_rng(0)

    # A small, blurry, noisy, compressed web copy (the face is about 60 px wide).
    small = src.filter(ImageFilter.GaussianBlur(1.5)).resize((192, 192), Image.BICUBIC)
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, 6, (192, 192, 3))
    small = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    jpeg(small, 35).save(HERE / "astronaut-web.jpg", quality=90)

    # An old grayscale print: blurred, faded, grainy.
    gray = src.convert("L").filter(ImageFilter.GaussianBlur(2.5)).resize((320, 320), Image.BILINEAR)
    faded = 40 + 0.7 * np.asarray(gray, dtype=np.float32) + rng.normal(0, 8, (320, 320))
    gray = Image.fromarray(np.clip(faded + 0.5, 0, 255).astype(np.uint8), mode="L")
    jpeg(gray, 50).save(HERE / "astronaut-old-print.jpg", quality=90)


if __name__ == "__main__":
    main()
