"""Peak memory of `faceprior restore` on large photos: bytes of RSS per input pixel.

    python bench/bench_memory.py                         # this tree only
    python bench/bench_memory.py --baseline-rev 851a30e  # and a baseline revision, in the same run

For each input (a 25 Mpx 8-bit RGB JPEG and the same photo as a 16-bit RGB PNG, made from
examples/astronaut.png so that a face is found) the command runs in a fresh process and its peak
resident set (VmHWM) is read; the same command on a 64 x 64 photo gives the process's own
footprint (torch, the model), and

    bytes per pixel = (peak on the large photo - peak on the small one) / pixels of the large photo.

The baseline revision is checked out into a temporary git worktree and run with the same Python
(it must be able to find its own weights: the baseline may need the MTCNN files in the cache).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from process_memory import PEAK_RSS_WRAPPER, peak_kib_of  # noqa: E402


def make_inputs(folder: Path, side: int) -> dict[str, Path]:
    """The large 8-bit JPEG and 16-bit PNG, and a small photo, written once into ``folder``."""
    from faceprior.imaging.io import write_image

    photo = Image.open(REPO / "examples" / "astronaut.png").convert("RGB")
    large = photo.resize((side, side), Image.LANCZOS)
    paths = {"small": folder / "small.jpg", "8-bit": folder / "large8.jpg", "16-bit": folder / "large16.png"}
    photo.resize((64, 64), Image.LANCZOS).save(paths["small"], quality=92)
    large.save(paths["8-bit"], quality=92)
    write_image(paths["16-bit"], np.asarray(large).astype(np.uint16) * 257, bit_depth=16)
    return paths


def peak_kib(source: Path, image: Path, out_dir: Path) -> int:
    """Peak RSS (KiB) of `faceprior restore IMAGE` run from the code in ``source``."""
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "restore", str(image), "-o", str(out_dir), "--overwrite"]
    result = subprocess.run(command, cwd=source, capture_output=True, text=True,
                            env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    peak = peak_kib_of(result.stderr)
    if result.returncode != 0 or peak is None:
        raise SystemExit(f"bench_memory: {source}: restore {image.name} failed:\n{result.stderr[-2000:]}")
    return peak


def measure(source: Path, paths: dict[str, Path], out_dir: Path, pixels: int) -> dict[str, tuple[float, float]]:
    """{input: (peak MiB, bytes per pixel)} for the large inputs."""
    base = peak_kib(source, paths["small"], out_dir / "small")
    results = {}
    for name in ("8-bit", "16-bit"):
        peak = peak_kib(source, paths[name], out_dir / name)
        results[name] = (peak / 1024, (peak - base) * 1024 / pixels)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=5000, help="side of the square large photo (default 5000: 25 Mpx)")
    parser.add_argument("--baseline-rev", default=None, help="also measure this git revision (e.g. 851a30e)")
    args = parser.parse_args()
    pixels = args.side * args.side
    with tempfile.TemporaryDirectory(prefix="faceprior-memory-") as tmp:
        tmp = Path(tmp)
        paths = make_inputs(tmp, args.side)
        runs = {"this tree": REPO}
        if args.baseline_rev:
            worktree = tmp / "baseline"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline_rev],
                           check=True, capture_output=True)
            runs = {f"baseline {args.baseline_rev}": worktree, **runs}
        try:
            results = {label: measure(source, paths, tmp / label.replace(" ", "_"), pixels) for label, source in runs.items()}
        finally:
            if args.baseline_rev:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "baseline")],
                               capture_output=True)
    print(f"faceprior restore on a {args.side} x {args.side} photo ({pixels / 1e6:.0f} Mpx, one face); "
          "bytes per pixel = (peak RSS - peak RSS on a 64 x 64 photo) / pixels")
    print(f"{'code':<22} {'input':<7} {'peak RSS':>10} {'bytes/pixel':>12}")
    for label, result in results.items():
        for name, (peak, per_pixel) in result.items():
            print(f"{label:<22} {name:<7} {peak:>8.0f} MiB {per_pixel:>12.1f}")
    if args.baseline_rev:
        baseline, current = results[f"baseline {args.baseline_rev}"], results["this tree"]
        for name in ("8-bit", "16-bit"):
            print(f"{name}: this tree uses {current[name][1] / baseline[name][1]:.2f} x the baseline's bytes per pixel")


if __name__ == "__main__":
    main()
