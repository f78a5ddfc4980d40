"""Video: flicker of per-frame restoration against tracked and smoothed restoration; speed and memory.

1. Flicker (always). A clip with known motion (tests/video_clips.py: a pan and zoom over a group
   photo of ../shared/data/realworld-whole, noise drawn independently per frame, a cut to a
   second photo) is restored twice with the same model and weight: ``independent`` (every frame
   on its own, as per-frame tools do) and ``tracked`` (faceprior's default: tracks, landmarks
   smoothed in time, weights smoothed along tracks). Each output frame is warped back onto its
   photo with the inverse of the known motion; the **flicker** of a clip is the mean absolute
   change (0-255 levels) between consecutive motion-compensated frames of one shot, over the face
   regions that both frames show: the face interiors (the central half of each face box found on
   the clean photo, in width and height: where the restored face replaces the input), and the
   whole boxes (which also hold the paste mask's feathered edge, where the noisy input shows
   through in both methods alike). The clean clip's own flicker (resampling alone) is the floor;
   the tables give each method's flicker, its excess over the floor, and the ratio of excesses
   tracked / independent.
2. ``--speed``: frames/s of `faceprior restore clip.mp4` (decode, restore, encode, audio copy)
   with the bundled model, and the peak RSS, for clips of ``--speed-frames`` (default 300 and
   3000) at ``--speed-size`` (default 1280x720), each in a fresh process (the 3000-frame run takes
   a long while on a CPU: the clip holds five faces a frame).

    .venv/bin/python bench/bench_video.py [--frames 48] [--size 640x360] [--weight auto] [--speed [--speed-size WxH] [--speed-frames 300,3000]]
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


def face_regions(restorer: FaceRestorer, photo: np.ndarray, part: float = 1.0) -> np.ndarray:
    """[H, W] bool: the boxes of the faces found on a clean photo, or the central ``part`` of each
    box's width and height (0.5: the face's interior, eyes to mouth, where the restored face
    replaces the input completely)."""
    boxes, _, _ = restorer.detect(photo)
    mask = np.zeros(photo.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * part / 2, (y2 - y1) * part / 2
        mask[max(int(cy - half_h), 0):int(cy + half_h) + 1, max(int(cx - half_w), 0):int(cx + half_w) + 1] = True
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


def speed_and_memory(work: Path, first: np.ndarray, second: np.ndarray, size: tuple[int, int],
                     counts: list[int]) -> None:
    print(f"\nspeed and memory: `faceprior restore clip.mp4 --weight auto` at {size[0]}x{size[1]}, bundled model, "
          f"a fresh process per clip")
    peaks = []
    for count in counts:
        path = work / f"clip{count}.mp4"
        make_clip(path, first, second, size=size, frames=(count - count // 5, count // 5), crf=20)
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "restore", str(path), "-o", str(work / "out"),
                   "--overwrite", "--report"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        report_file = work / "out" / "reports" / f"clip{count}.json"
        if result.returncode != 0 or not report_file.is_file():
            print(f"  {count} frames: failed ({result.stderr.strip().splitlines()[-2:]})")
            continue
        report = json.loads(report_file.read_text())
        peaks.append(peak_kib_of(result.stderr) / 1024)
        print(f"  {count} frames: {report['fps']:.2f} frames/s, {report['faces']} faces, {report['tracks']} tracks; "
              f"peak RSS {peaks[-1]:.0f} MiB; timings {report['timings_ms']}")
    if len(peaks) == len(counts) > 1:
        print(f"peak RSS {counts[-1]} / {counts[0]} frames: {peaks[-1] / peaks[0]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the first shot (the second has a quarter)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--weight", default="auto")
    parser.add_argument("--speed", action="store_true", help="also frames/s and peak RSS of whole `restore` runs")
    parser.add_argument("--speed-size", default="1280x720")
    parser.add_argument("--speed-frames", default="300,3000", help="clip lengths of the speed and memory runs")
    args = parser.parse_args()
    if not FIRST.is_file():
        raise SystemExit(f"needs the photos of {PHOTOS}")
    width, height = (int(v) for v in args.size.split("x"))
    first, second = read_image(FIRST).pixels, read_image(SECOND).pixels
    restorer = FaceRestorer(weight=args.weight if args.weight == "auto" else float(args.weight))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", first, second, size=(width, height), frames=(args.frames, args.frames // 4))
        clean = [clip.clean_frame(i) for i in range(len(clip.motions))]
        noisy = [frame.pixels for frame in read_frames(clip.path)]
        outputs = {}
        for name, independent in (("independent", True), ("tracked", False)):
            outputs[name] = restore_frames(restorer, clip, independent)
        print(f"{len(clip.motions)} frames at {width}x{height}, model {restorer.choice.name}, weight {args.weight}; "
              f"flicker = mean |change| (0-255) of motion-compensated face pixels between consecutive frames")
        for label, part in (("face interior (central half of each face box)", 0.5), ("whole face boxes", 1.0)):
            regions = [face_regions(restorer, photo, part) for photo in clip.photos]
            floor = flicker(clip, clean, regions)
            rows = {"clean clip (floor)": (floor, None), "noisy input": (flicker(clip, noisy, regions), None)}
            for name, (frames, seconds) in outputs.items():
                rows[name] = (flicker(clip, frames, regions), seconds)
            print(f"\n{label}\n| clip | flicker | excess over the clean clip | seconds |\n|---|---:|---:|---:|")
            for name, (value, seconds) in rows.items():
                print(f"| {name} | {value:.3f} | {value - floor:.3f} | {'' if seconds is None else f'{seconds:.1f}'} |")
            ratio = (rows["tracked"][0] - floor) / (rows["independent"][0] - floor)
            print(f"tracked / independent excess flicker, {label}: {ratio:.3f}")
        if args.speed:
            speed_size = tuple(int(v) for v in args.speed_size.split("x"))
            speed_and_memory(work, first, second, speed_size, [int(n) for n in args.speed_frames.split(",")])


if __name__ == "__main__":
    main()
