"""Synthetic test clips with known motion, made from still photos (tests/test_video.py, bench/bench_video.py).

Shot 1 pans over a group photo to the right and back, zooming in slowly, so that faces leave the
frame and come back; shot 2 (after a cut) zooms slowly into another photo. Every frame is the
photo warped by a known similarity (``Clip.motions[i]``: photo pixels -> frame pixels) and then
degraded with Gaussian noise drawn independently per frame (the flicker a per-frame restorer
turns into face flicker). A stereo sine-tone AAC track is muxed in. The clean frames can be
remade from the photos and the motions (``clean_frame``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from faceprior.face.align import warp_affine


@dataclass
class Clip:
    path: Path
    photos: list[np.ndarray]
    motions: list[np.ndarray]     # [2, 3] photo -> frame, per frame
    shots: list[int]              # the photo of each frame
    size: tuple[int, int]         # (width, height)
    fps: Fraction
    audio_rate: int

    def clean_frame(self, index: int) -> np.ndarray:
        width, height = self.size
        return warp_affine(self.photos[self.shots[index]], self.motions[index], (height, width), border="reflect")


def _motion(photo_shape, size, centre_x: float, centre_y: float, zoom: float) -> np.ndarray:
    """photo -> frame similarity putting (centre_x, centre_y) of the photo at the frame centre, at
    ``zoom`` x the scale at which the photo's height fills the frame."""
    width, height = size
    scale = zoom * height / photo_shape[0]
    return np.array([[scale, 0.0, (width - 1) / 2 - scale * centre_x],
                     [0.0, scale, (height - 1) / 2 - scale * centre_y]])


def make_clip(path: Path, first: np.ndarray, second: np.ndarray, size: tuple[int, int] = (640, 360),
              frames: tuple[int, int] = (40, 12), fps: Fraction = Fraction(25), noise: float = 6.0,
              seed: int = 0, audio: bool = True, crf: int = 12) -> Clip:
    """Write the clip (H.264 in MP4, AAC stereo at 48 kHz) and return its description."""
    import av

    motions, shots = [], []
    h1, w1 = first.shape[:2]
    for i in range(frames[0]):
        phase = math.sin(math.pi * i / max(frames[0] - 1, 1))    # 0 -> 1 -> 0: right and back
        visible = w1 * 0.5                                          # half the photo's width is hidden at the far right
        motions.append(_motion(first.shape, size, w1 / 2 + visible * 0.75 * phase, h1 / 2,
                               1.0 + 0.2 * i / max(frames[0] - 1, 1)))
        shots.append(0)
    h2, w2 = second.shape[:2]
    for i in range(frames[1]):
        motions.append(_motion(second.shape, size, w2 / 2, h2 / 2, 1.0 + 0.1 * i / max(frames[1] - 1, 1)))
        shots.append(1)
    clip = Clip(path, [first, second], motions, shots, size, fps, 48000)
    rng = np.random.default_rng(seed)
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=fps)
    video.width, video.height = size
    video.pix_fmt = "yuv420p"
    video.options = {"crf": str(crf)}
    sound = container.add_stream("aac", rate=clip.audio_rate, layout="stereo") if audio else None
    for index in range(len(motions)):
        frame = clip.clean_frame(index).astype(np.float32) + rng.normal(0, noise, (size[1], size[0], 3))
        picture = av.VideoFrame.from_ndarray(np.clip(np.rint(frame), 0, 255).astype(np.uint8), format="rgb24")
        picture.pts = index
        picture.time_base = 1 / fps
        for packet in video.encode(picture):
            container.mux(packet)
    for packet in video.encode(None):
        container.mux(packet)
    if sound is not None:
        seconds = len(motions) / float(fps)
        count = int(seconds * clip.audio_rate)
        t = np.arange(count) / clip.audio_rate
        samples = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
        for start in range(0, count, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            chunk.sample_rate = clip.audio_rate
            chunk.pts = start
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    container.close()
    return clip
