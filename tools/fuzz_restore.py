"""Fuzz `faceprior restore` with a seeded corpus of broken, odd and hostile image files.

    python tools/fuzz_restore.py --count 2000 --seed 1            # writes the corpus to a temporary folder
    python tools/fuzz_restore.py --count 300 --seed 0 --keep /tmp/corpus

The corpus is made from a few small photos (random pixels, and the example face) saved in every
supported format and mode (JPEG, PNG 8/16-bit, grey, grey+alpha, RGBA, palette, WebP, BMP, TIFF
8/16-bit), then mutated: truncated, bytes flipped, headers overwritten, content under another
format's suffix, empty files, headers announcing enormous images (decompression bombs), EXIF with
every orientation and with corrupt EXIF blocks, animations, 1-pixel-wide images, text files and
folders named like images, broken symbolic links. Which mutation each file gets, and where, comes
from ``--seed``, so a corpus can be made again byte for byte.

The whole corpus goes through one `faceprior restore` in a separate process, with a time limit, and
the run is judged by what matters to a user:

* crashes: the process died (a signal) or exited with a status other than 0 or 1;
* hangs: it did not finish within the time limit;
* tracebacks: a "Traceback" anywhere in its output;
* inputs changed: any corpus file whose bytes changed (or that vanished);
* unexplained: a failure line that does not name its file, or a file neither restored nor reported;
* stray lines: anything printed that is not the model line, a line naming a corpus file, or the summary
  (a decoder's own message that names no file, say);
* peak RSS of the process.

Exit status 0 when crashes, hangs, tracebacks, changed inputs, unexplained files and stray lines are all 0.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from process_memory import PEAK_RSS_WRAPPER, peak_kib_of  # noqa: E402

# ----------------------------------------------------------------------------------------------
# The corpus


def _encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png16(pixels: np.ndarray) -> bytes:
    from faceprior.imaging.io import _write_png16

    buffer = io.BytesIO()
    _write_png16(buffer, pixels.astype(np.uint16)[..., None] if pixels.ndim == 2 else pixels.astype(np.uint16), None, None)
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _with_exif_orientation(jpeg_pixels: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(jpeg_pixels, "JPEG", exif=exif.tobytes())


def base_files(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Well-formed files of every supported format and mode: (suffix, bytes)."""
    face = np.asarray(Image.open(REPO / "examples" / "astronaut.png").convert("RGB").resize((96, 96)))
    noise = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (33, 47), dtype=np.uint8)
    rgba = np.dstack([noise, rng.integers(0, 256, noise.shape[:2], dtype=np.uint8)])
    files = [
        (".jpg", _encoded(face, "JPEG", quality=90)),
        (".jpg", _encoded(noise, "JPEG", quality=50)),
        (".png", _encoded(face, "PNG")),
        (".png", _encoded(grey, "PNG")),
        (".png", _encoded(rgba, "PNG")),
        (".png", _encoded(np.dstack([grey, grey]), "PNG")),  # grey + alpha
        (".png", _png16(face.astype(np.uint16) * 257)),
        (".png", _png16(grey.astype(np.uint16) * 257)),
        (".webp", _encoded(face, "WEBP", quality=80)),
        (".bmp", _encoded(noise, "BMP")),
        (".tif", _encoded(face, "TIFF")),
        (".tiff", _encoded(grey, "TIFF")),
    ]
    palette = Image.fromarray(noise).convert("P", palette=Image.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=3)
    files.append((".png", buffer.getvalue()))
    frames = [Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:])
    files.append((".webp", buffer.getvalue()))  # animated: the first frame is read
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    files.append((".jpg", buffer.getvalue()))  # a GIF (unsupported) under a JPEG name
    for orientation in range(1, 9):
        files.append((".jpg", _with_exif_orientation(face, orientation)))
    files.append((".png", _encoded(np.zeros((1, 300, 3), np.uint8), "PNG")))
    files.append((".png", _encoded(np.zeros((300, 1, 3), np.uint8), "PNG")))
    files.append((".jpg", _encoded(np.zeros((1, 1, 3), np.uint8), "JPEG")))
    return files


MUTATIONS = ("keep", "truncate", "flip", "header", "suffix", "empty", "bomb", "exif", "text", "zeros")


def mutate(data: bytes, suffix: str, rng: np.random.Generator) -> tuple[str, str, bytes]:
    """(mutation, suffix, bytes) of one corpus file made from a well-formed ``data``."""
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    if kind == "truncate":
        return kind, suffix, data[: int(rng.integers(1, max(2, len(data))))]
    if kind == "flip":
        corrupted = bytearray(data)
        for _ in range(int(rng.integers(1, 20))):
            position = int(rng.integers(len(corrupted)))
            corrupted[position] ^= int(rng.integers(1, 256))
        return kind, suffix, bytes(corrupted)
    if kind == "header":
        corrupted = bytearray(data)
        end = min(len(corrupted), 64)
        corrupted[:end] = rng.integers(0, 256, end, dtype=np.uint8).tobytes()
        return kind, suffix, bytes(corrupted)
    if kind == "suffix":
        return kind, [".jpg", ".png", ".webp", ".bmp", ".tif"][int(rng.integers(5))], data
    if kind == "empty":
        return kind, suffix, b""
    if kind == "bomb":
        side = int(rng.choice([20_000, 65_535, 100_000, 2**31 - 1]))
        return kind, ".png", _png_bomb(side, side)
    if kind == "exif":  # a corrupt EXIF block spliced after the JPEG SOI marker
        blob = b"Exif\x00\x00" + rng.integers(0, 256, int(rng.integers(8, 400)), dtype=np.uint8).tobytes()
        segment = b"\xff\xe1" + struct.pack(">H", len(blob) + 2) + blob
        jpeg = _encoded(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "JPEG")
        return kind, ".jpg", jpeg[:2] + segment + jpeg[2:]
    if kind == "text":
        return kind, suffix, b"this is not an image\n" * int(rng.integers(1, 50))
    if kind == "zeros":
        return kind, suffix, bytes(int(rng.integers(1, 5000)))
    return kind, suffix, data


def make_corpus(folder: Path, count: int, seed: int) -> dict[str, str]:
    """Write ``count`` files (and a few non-files) into ``folder``; returns {file name: mutation}."""
    rng = np.random.default_rng(seed)
    bases = base_files(rng)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for index in range(count):
        suffix, data = bases[int(rng.integers(len(bases)))]
        kind, suffix, data = mutate(data, suffix, rng)
        name = f"{index:05d}_{kind}{suffix}"
        (folder / name).write_bytes(data)
        made[name] = kind
    (folder / "a_folder.jpg").mkdir(exist_ok=True)  # a folder named like an image
    (folder / "broken_link.png").unlink(missing_ok=True)
    (folder / "broken_link.png").symlink_to(folder / "does-not-exist.png")
    return made


# ----------------------------------------------------------------------------------------------
# The run


@dataclass
class FuzzReport:
    files: int
    restored: int
    failed: int
    exit_status: int | None
    seconds: float
    peak_rss_mib: float | None
    crashes: int
    hangs: int
    tracebacks: int
    inputs_changed: int
    unexplained: int
    stray_lines: int

    def clean(self) -> bool:
        return not (self.crashes or self.hangs or self.tracebacks or self.inputs_changed or self.unexplained
                    or self.stray_lines)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


def run_restore(corpus: Path, out_dir: Path, timeout: float, extra: list[str]) -> FuzzReport:
    """One `faceprior restore CORPUS -o OUT` in a fresh process, judged as the module docstring says."""
    before = _digests(corpus)
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "restore", str(corpus), "-o", str(out_dir), *extra]
    start = time.monotonic()
    hangs = crashes = 0
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        status, stderr = result.returncode, result.stderr + result.stdout
    except subprocess.TimeoutExpired as expired:
        hangs, status = 1, None
        stderr = (expired.stderr or b"").decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
    seconds = time.monotonic() - start
    if status is not None and status not in (0, 1):
        crashes = 1
    after = _digests(corpus)
    changed = sum(1 for name, digest in before.items() if after.get(name) != digest)
    peak = peak_kib_of(stderr)
    failure_lines = [line for line in stderr.splitlines() if line.startswith("  failed: ")]
    failed_names = {line[len("  failed: "):].split(": ", 1)[0] for line in failure_lines}
    restored = {p.name for p in out_dir.rglob("*") if p.is_file() and not p.name.startswith(".")} if out_dir.exists() else set()
    unexplained = sum(1 for line in failure_lines if str(corpus) not in line)
    for name in before:
        if name not in restored and str(corpus / name) not in failed_names:
            unexplained += 1
    known = ("faceprior: model ", f"faceprior: {corpus}/", "  failed: ", "PEAK_KB ")
    stray = [line for line in stderr.splitlines()
             if line.strip() and not line.startswith(known) and " image(s) restored, " not in line]
    return FuzzReport(files=len(before), restored=len(restored), failed=len(failure_lines), exit_status=status,
                      seconds=round(seconds, 1), peak_rss_mib=round(peak / 1024, 1) if peak else None, crashes=crashes,
                      hangs=hangs, tracebacks=int("Traceback" in stderr), inputs_changed=changed, unexplained=unexplained,
                      stray_lines=len(stray))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="corpus files (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus (default 0)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds the restore may take (default 900)")
    parser.add_argument("--keep", type=Path, default=None, help="write the corpus here and keep it")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="faceprior-fuzz-") as tmp:
        corpus = args.keep or Path(tmp) / "corpus"
        made = make_corpus(corpus, args.count, args.seed)
        report = run_restore(corpus, Path(tmp) / "out", args.timeout, [])
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        kinds = {kind: sum(1 for k in made.values() if k == kind) for kind in MUTATIONS}
        print(f"corpus: {report.files} files (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
        print(f"restored {report.restored}, failed with one line {report.failed}, exit status {report.exit_status}, "
              f"{report.seconds} s, peak RSS {report.peak_rss_mib} MiB")
        print(f"crashes {report.crashes}, hangs {report.hangs}, tracebacks {report.tracebacks}, "
              f"inputs changed {report.inputs_changed}, unexplained {report.unexplained}, stray lines {report.stray_lines}")
    return 0 if report.clean() else 1


if __name__ == "__main__":
    sys.exit(main())
