"""Video: flicker of per-frame restoration against tracked and smoothed restoration; speed and memory.

1. Flicker (always). A clip with known motion (tests/video_clips.py: a pan and zoom over a group
   photo of ../shared/data/realworld-whole, noise drawn independently per frame, a cut to a
   second photo) is restored twice with the same model and weight: ``independent`` (every frame
   on its own, as per-frame tools do) and ``tracked`` (faceprior's default: tracks, landmarks
   smoothed in time, weights smoothed along tracks). Each output frame is warped back onto its
   photo with the inverse of the known motion; the **flicker** of a clip is the mean absolute
   change (0-255 levels) between consecutive motion-compensated frames of one shot, over the face
   regions (the boxes of the faces found on the clean photo) that both frames show. The
   clean clip's own flicker (resampling alone) is the floor; the table gives each method's
   flicker, its excess over the floor, and the ratio of excesses tracked / independent.
2. ``--speed``: frames/s of `faceprior restore clip.mp4` at 1280x720 (decode, restore, encode,
   audio copy) with the bundled model, and the peak RSS of a 300-frame and a 3000-frame clip,
   each in a fresh process (the 3000-frame run takes a while).

    .venv/bin/python bench/bench_video.py [--frames 48] [--size 640x360] [--weight auto] [--speed]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from process_memory import PEAK_RSS_WRAPPER, peak_kib_of
from video_clips import Clip, make_clip

from faceprior.face.align import invert_affine, warp_affine
from faceprior.imaging.io import read_image
from faceprior.imaging.video import read_frames
from faceprior.restoration.restorer import FaceRestorer
from faceprior.restoration.video import VideoRestorer

PHOTOS = REPO.parent / "shared" / "data" / "realworld-whole"
FIRST, SECOND = PHOTOS / "groups" / "3.jpg", PHOTOS / "dlib" / "2008_002079.jpg"


def face_regions(restorer: FaceRestorer, photo: np.ndarray) -> np.ndarray:
    """[H, W] bool: the boxes of the faces found on a clean photo (inside the paste masks)."""
    boxes, _, _ = restorer.detect(photo)
    mask = np.zeros(photo.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(int(y1), 0):int(y2) + 1, max(int(x1), 0):int(x2) + 1] = True
    return mask


def flicker(clip: Clip, frames: list[np.ndarray], regions: list[np.ndarray]) -> float:
    """Mean |change| (0-255) of consecutive motion-compensated frames of a shot over the face regions."""
    changes, previous = [], None
    for index, frame in enumerate(frames):
        photo = clip.photos[clip.shots[index]]
        back = invert_affine(clip.motions[index])
        size = photo.shape[:2]
        warped = warp_affine(frame.astype(np.float32), back, size, border="constant", border_value=-1.0)
        valid = (warped >= 0).all(axis=2) & regions[clip.shots[index]]
        if previous is not None and previous[2] == clip.shots[index]:
            both = valid & previous[1]
            if both.sum() > 100:
                changes.append(float(np.abs(warped - previous[0])[both].mean()))
        previous = (warped, valid, clip.shots[index])
    return float(np.mean(changes))


def restore_frames(restorer: FaceRestorer, clip: Clip, independent: bool) -> tuple[list[np.ndarray], float]:
    video = VideoRestorer(restorer, independent=independent)
    start = time.perf_counter()
    out = [pixels for _, pixels, _ in video.run(read_frames(clip.path))]
    return out, time.perf_counter() - start


def speed_and_memory(work: Path, first: np.ndarray, second: np.ndarray) -> None:
    print("\nspeed and memory: `faceprior restore clip.mp4` at 1280x720, bundled model, fresh process each")
    for count in (300, 3000):
        path = work / f"clip{count}.mp4"
        make_clip(path, first, second, size=(1280, 720), frames=(count - count // 5, count // 5), crf=20)
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "restore", str(path), "-o", str(work / "out"),
                   "--overwrite", "--report"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        report_file = work / "out" / f"clip{count}.json"
        if result.returncode != 0 or not report_file.is_file():
            print(f"  {count} frames: failed ({result.stderr.strip().splitlines()[-2:]})")
            continue
        report = json.loads(report_file.read_text())
        print(f"  {count} frames: {report['fps']:.2f} frames/s, {report['faces']} faces, {report['tracks']} tracks; "
              f"peak RSS {peak_kib_of(result.stderr) / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the first shot (the second has a quarter)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--weight", default="auto")
    parser.add_argument("--speed", action="store_true", help="also the 720p frames/s and the 300/3000-frame RSS")
    args = parser.parse_args()
    if not FIRST.is_file():
        raise SystemExit(f"needs the photos of {PHOTOS}")
    width, height = (int(v) for v in args.size.split("x"))
    first, second = read_image(FIRST).pixels, read_image(SECOND).pixels
    restorer = FaceRestorer(weight=args.weight if args.weight == "auto" else float(args.weight))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", first, second, size=(width, height), frames=(args.frames, args.frames // 4))
        regions = [face_regions(restorer, photo) for photo in clip.photos]
        clean = [clip.clean_frame(i) for i in range(len(clip.motions))]
        noisy = [frame.pixels for frame in read_frames(clip.path)]
        floor = flicker(clip, clean, regions)
        rows = {"clean clip (floor)": (floor, None), "noisy input": (flicker(clip, noisy, regions), None)}
        for name, independent in (("independent", True), ("tracked", False)):
            frames, seconds = restore_frames(restorer, clip, independent)
            rows[name] = (flicker(clip, frames, regions), seconds)
        print(f"{len(clip.motions)} frames at {width}x{height}, model {restorer.choice.name}, weight {args.weight}; "
              f"flicker = mean |change| (0-255) of motion-compensated face pixels between consecutive frames")
        print("| clip | flicker | excess over the clean clip | seconds |\n|---|---:|---:|---:|")
        for name, (value, seconds) in rows.items():
            print(f"| {name} | {value:.3f} | {value - floor:.3f} | {'' if seconds is None else f'{seconds:.1f}'} |")
        ratio = (rows["tracked"][0] - floor) / (rows["independent"][0] - floor)
        print(f"tracked / independent excess flicker: {ratio:.3f}")
        if args.speed:
            speed_and_memory(work, first, second)


if __name__ == "__main__":
    main()
