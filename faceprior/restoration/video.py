"""Restore the faces of a video, steady from frame to frame (docs/video.md).

:class:`VideoRestorer` takes frames in order and gives back restored frames in order, ``radius``
frames later. On the way:

1. each frame's faces are detected (the restorer's detector) and matched to tracks
   (:class:`~faceprior.face.tracking.FaceTracker`); a scene cut ends every track;
2. once ``radius`` more frames have been seen, a frame's faces are aligned with their landmarks
   smoothed along their tracks (gaps of a few missed detections filled), so the crops do not jitter;
3. the faces of ``batch_frames`` consecutive frames go through the network together; with
   ``weight="auto"`` each face's weight is smoothed along its track (exponential moving average),
   so the blend does not pump; the decoder noise is the stored one (the same on every frame); the
   model's output is averaged along the track in the aligned crop, damping the changes that noise
   causes while letting real motion through (``temporal``, ``motion_tolerance``);
4. the faces are pasted back (only their change: see ``faceprior.face.paste``), made grey or
   toned as a majority of their scene's first frames decides (``FaceRestorer.photo_colour``).

Memory holds ``radius + batch_frames`` frames, whatever the video's length.
``independent=True`` restores each frame on its own (no tracking, no smoothing), as per-frame tools
do; bench/bench_video.py measures the flicker of both.

:func:`restore_video_file` runs it over a file with :class:`~faceprior.imaging.video.VideoTranscoder`
(audio and other streams copied, the output written to a temporary name and moved into place only
when complete).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from faceprior.face.align import warp_affine
from faceprior.face.tracking import FaceTracker, colour_histogram, is_scene_cut
from faceprior.imaging.io import write_image
from faceprior.imaging.video import VideoError, VideoFrame, VideoTranscoder, probe_video, read_frames
from faceprior.paths import atomic_write, move_into_place, remove_temporary, temporary_path
from faceprior.restoration.restorer import FaceRestorer, PhotoColour, Result, blend_faces

__all__ = ["VideoReport", "VideoRestorer", "preview_video", "restore_video_file"]


@dataclass
class _Waiting:
    frame: VideoFrame
    restore: bool  # inside the --frames range


@dataclass
class VideoReport:
    """What happened to one video (written as its JSON report)."""

    input: str
    output: str
    frames: int = 0
    restored_frames: int = 0
    faces: int = 0
    tracks: int = 0
    scene_cuts: int = 0
    seconds: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**self.__dict__, "fps": round(self.frames / self.seconds, 3) if self.seconds else None}


class VideoRestorer:
    """Frames in, restored frames out, in order (see the module docstring).

    restorer: a whole-photo :class:`FaceRestorer` (not ``aligned``).
    radius / sigma: landmark smoothing window (frames each side) and Gaussian width, in frames.
    max_gap: frames a face may be missed and keep its track (and be restored from its neighbours).
    weight_smoothing: factor of the moving average of ``weight="auto"`` along a track (1 = none).
    temporal / motion_tolerance: how much of the previous output a pixel keeps when it did not
        change (0 = none), and the change (in [0, 1] units) at which it keeps only 37 % of that.
    batch_frames: frames whose faces share network batches.
    independent: restore every frame on its own (the per-frame baseline).
    """

    def __init__(self, restorer: FaceRestorer, radius: int = 4, sigma: float = 2.0, max_gap: int = 8,
                 weight_smoothing: float = 0.3, temporal: float = 0.7, motion_tolerance: float = 0.05,
                 batch_frames: int = 4, independent: bool = False):
        if restorer.aligned:
            raise ValueError("VideoRestorer needs a whole-photo FaceRestorer (aligned=False)")
        self.restorer = restorer
        self.independent = independent
        self.radius = 0 if independent else int(radius)
        self.tracker = FaceTracker(max_gap=0 if independent else max_gap, radius=self.radius,
                                   sigma=0.0 if independent else sigma)
        self.weight_smoothing = 1.0 if independent else float(weight_smoothing)
        self.temporal = 0.0 if independent else float(temporal)
        self.motion_tolerance = float(motion_tolerance)
        self.track_outputs: dict[int, np.ndarray] = {}
        self.batch_frames = max(1, int(batch_frames))
        self.track_weights: dict[int, float] = {}
        self.previous_histogram: Optional[np.ndarray] = None
        self.scene = 0  # counts cuts and skipped stretches: frames between are one scene
        self.frame_scenes: dict[int, int] = {}  # frame index -> scene, for frames observed, not yet restored
        self.scene_colours: dict[int, PhotoColour] = {}
        self.scene_votes: dict[int, list[PhotoColour]] = {}  # the first frames' own colours, per scene
        self.timings: dict[str, float] = {"detect": 0.0, "align": 0.0, "restore": 0.0, "paste": 0.0}
        self.faces = 0
        self.cuts = 0

    def run(self, frames: Iterable[VideoFrame], restore: Callable[[VideoFrame], bool] = lambda frame: True
            ) -> Iterator[tuple[VideoFrame, np.ndarray, Optional[Result]]]:
        """Restore ``frames`` (in order); yields (frame, restored pixels, Result or None) in order.

        restore: which frames to restore (others come back unchanged, and their faces are not tracked).
        """
        waiting: deque[_Waiting] = deque()
        ready: list[_Waiting] = []
        newest = -1
        for frame in frames:
            wanted = bool(restore(frame))
            if wanted:
                self._observe(frame)
            elif self.previous_histogram is not None:
                self.previous_histogram = None
                self.scene += 1
            waiting.append(_Waiting(frame, wanted))
            newest = frame.index
            while waiting and waiting[0].frame.index <= newest - self.radius:
                ready.append(waiting.popleft())
                if len(ready) >= self.batch_frames:
                    yield from self._restore(ready)
                    ready = []
            oldest = ready[0].frame.index if ready else waiting[0].frame.index if waiting else newest + 1
            self.tracker.forget_before(oldest)  # what no frame still to restore needs
        ready.extend(waiting)
        if ready:
            yield from self._restore(ready)

    def _observe(self, frame: VideoFrame) -> None:
        start = time.perf_counter()
        histogram = colour_histogram(frame.pixels)
        cut = self.previous_histogram is not None and is_scene_cut(self.previous_histogram, histogram)
        self.previous_histogram = histogram
        if cut:
            self.cuts += 1
            self.scene += 1
            self.track_weights.clear()
        self.frame_scenes[frame.index] = self.scene
        votes = self.scene_votes.setdefault(self.scene, [])
        if not self.independent and self.scene not in self.scene_colours and len(votes) <= self.radius:
            votes.append(self.restorer.photo_colour(frame.pixels))
        boxes, scores, landmarks = self.restorer.detect(frame.pixels)
        self.tracker.update(frame.index, boxes, landmarks, scores, cut=cut)
        self.timings["detect"] += time.perf_counter() - start

    def _restore(self, batch: list[_Waiting]) -> Iterator[tuple[VideoFrame, np.ndarray, Optional[Result]]]:
        restorer = self.restorer
        start = time.perf_counter()
        prepared, track_ids = [], []
        for item in batch:
            if not item.restore:
                prepared.append(None)
                track_ids.append([])
                continue
            faces = self.tracker.smoothed(item.frame.index)
            track_ids.append([face[0] for face in faces])
            prepared.append(restorer.prepare_faces(
                item.frame.pixels, None, np.array([f[2] for f in faces]).reshape(-1, 4),
                np.array([f[3] for f in faces]), np.array([f[1] for f in faces]).reshape(-1, 5, 2)))
        self.timings["align"] += time.perf_counter() - start
        start = time.perf_counter()
        crops = [p.crops for p in prepared if p is not None and len(p.crops)]
        outputs = weights = np.zeros(0)
        if crops:
            outputs, weights = restorer.run_model(np.concatenate(crops))
        self.timings["restore"] += time.perf_counter() - start
        offset = 0
        for item, photo, ids in zip(batch, prepared, track_ids):
            if photo is None or not len(photo.crops):
                yield item.frame, item.frame.pixels, None
                continue
            count = len(photo.crops)
            chosen = self._smooth_weights(ids, weights[offset:offset + count])
            steady = self._smooth_outputs(ids, outputs[offset:offset + count])
            blended = blend_faces(photo.crops, steady, chosen)
            offset += count
            start = time.perf_counter()
            # no background restoration in videos yet: frames without faces pass through as they
            # are, so a background restored only around faces would come and go with them
            result = restorer.finish(photo, blended, chosen, colour=self._scene_colour(item.frame),
                                     background_weight=0.0)
            self.timings["paste"] += time.perf_counter() - start
            self.faces += count
            yield item.frame, result.image, result

    def _scene_colour(self, frame: VideoFrame) -> Optional[PhotoColour]:
        """Whether the faces of a frame's scene are made grey, toned or left in colour, decided once
        per scene by a majority of its first ``radius + 1`` frames' own colours (those seen when its
        first frame is restored), so that they do not switch from frame to frame where a frame of a
        black-and-white or sepia scene fails the test (a coloured title, noise). None (each frame
        decides) for ``independent``."""
        scene = self.frame_scenes.pop(frame.index, self.scene)
        if self.independent:
            return None
        if scene not in self.scene_colours:
            for old in [s for s in self.scene_colours if s < scene]:
                del self.scene_colours[old]
            votes = self.scene_votes.pop(scene, None) or [self.restorer.photo_colour(frame.pixels)]
            kinds = ["gray" if vote.gray else "tone" if vote.tone is not None else "colour" for vote in votes]
            winner = Counter(kinds).most_common(1)[0][0]
            self.scene_colours[scene] = votes[kinds.index(winner)]
        for old in [s for s in self.scene_votes if s < scene]:
            del self.scene_votes[old]
        return self.scene_colours[scene]

    def _smooth_weights(self, ids: list[int], weights: np.ndarray) -> np.ndarray:
        """Along each track: w_t = w_{t-1} + factor * (estimate_t - w_{t-1}) (weight="auto" only)."""
        if self.restorer.weight != "auto" or self.weight_smoothing >= 1:
            return weights
        smoothed = np.empty_like(weights)
        for i, (track, estimate) in enumerate(zip(ids, weights)):
            previous = self.track_weights.get(track)
            value = estimate if previous is None else previous + self.weight_smoothing * (estimate - previous)
            self.track_weights[track] = smoothed[i] = value
        return smoothed

    def _smooth_outputs(self, ids: list[int], outputs: np.ndarray) -> np.ndarray:
        """Along each track, a motion-adaptive running average of the model's output in the aligned
        crop (where the smoothed landmarks hold the face still): each pixel moves towards the new
        output by ``1 - temporal * exp(-(d / motion_tolerance)^2)``, d its change in [0, 1] units,
        so noise-driven changes are damped and real ones (a mouth opening) pass at once."""
        if self.temporal <= 0:
            return outputs
        steady = np.empty_like(outputs)
        for i, (track, output) in enumerate(zip(ids, outputs)):
            previous = self.track_outputs.get(track)
            if previous is None or previous.shape != output.shape:
                steady[i] = output
            else:
                shift = image_shift(previous, output)
                if np.abs(shift).max() > 0.05:  # what the landmarks left: register the previous output
                    matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
                    previous = warp_affine(previous, matrix, previous.shape[0], border="replicate")
                change = np.abs(output - previous).mean(axis=2, keepdims=True)
                keep = self.temporal * np.exp(-np.square(change / self.motion_tolerance))
                steady[i] = output + keep * (previous - output)
            self.track_outputs[track] = steady[i]
        live = {track.id for track in self.tracker.tracks}
        for track in [t for t in self.track_outputs if t not in live]:
            del self.track_outputs[track]
        return steady

    @property
    def tracks(self) -> int:
        return self.tracker.next_id


def parse_frame_range(text: Optional[str]) -> Callable[[VideoFrame], bool]:
    """``"A:B"`` (frames A to B-1; either may be left out) -> a frame predicate; None -> all frames."""
    if not text:
        return lambda frame: True
    first, separator, last = text.partition(":")
    try:
        low = int(first) if first else 0
        high = int(last) if last else None
    except ValueError:
        raise ValueError(f"--frames must be A:B (frame numbers), got {text!r}") from None
    if not separator or low < 0 or (high is not None and high <= low):
        raise ValueError(f"--frames must be A:B with 0 <= A < B, got {text!r}")
    return lambda frame: low <= frame.index and (high is None or frame.index < high)


def restore_video_file(restorer: FaceRestorer, source: Path, target: Path, overwrite: bool = False,
                       frames: Optional[str] = None, codec: Optional[str] = None, crf: Optional[int] = None,
                       progress: Optional[Callable[[int, Optional[int]], None]] = None,
                       **smoothing) -> VideoReport:
    """Restore ``source`` into ``target`` (the same container), atomically: the file appears only
    when complete; an existing ``target`` is replaced only with ``overwrite``.

    frames: ``"A:B"`` restores only those frames (the others are copied unchanged).
    progress: called with (frames done, total frames or None) after each frame.
    Raises VideoError (one line) for unreadable or unwritable videos, FileExistsError.
    """
    restore = parse_frame_range(frames)
    info = probe_video(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists")
    report = VideoReport(str(source), str(target))
    start = time.perf_counter()
    temporary = temporary_path(target)
    video = VideoRestorer(restorer, **smoothing)
    try:
        with VideoTranscoder(source, temporary, codec=codec, crf=crf) as transcoder:
            report.notes += transcoder.notes
            for frame, pixels, result in video.run(transcoder.frames(), restore):
                transcoder.write(pixels, frame)
                report.frames += 1
                report.restored_frames += result is not None
                if progress is not None:
                    progress(report.frames, info.frames or None)
        if report.frames == 0:
            raise VideoError(f"{source}: no frame could be decoded")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        move_into_place(temporary, target, overwrite)
    except BaseException:
        remove_temporary(temporary)
        raise
    report.faces, report.tracks, report.scene_cuts = video.faces, video.tracks, video.cuts
    report.seconds = round(time.perf_counter() - start, 3)
    report.timings_ms = {k: round(v * 1000, 1) for k, v in video.timings.items()}
    return report


def write_video_report(path: Path, report: VideoReport, overwrite: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=overwrite) as handle:
        handle.write(json.dumps(report.to_json(), indent=1).encode())


def preview_video(restorer: FaceRestorer, source: Path, out_dir: Path, every: int, overwrite: bool = False) -> list[Path]:
    """Restore every ``every``-th frame of ``source`` as a PNG image (``<stem>_frame000123.png``)
    in ``out_dir``, each on its own: a quick look before a long run. Returns the files written."""
    if every < 1:
        raise ValueError(f"--preview must be >= 1, got {every}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for frame in read_frames(source, every):
        path = out_dir / f"{source.stem}_frame{frame.index:06d}.png"
        write_image(path, restorer.restore(frame.pixels).image, overwrite=overwrite)
        written.append(path)
    return written


def image_shift(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """(dx, dy) in pixels that moves ``reference`` onto ``moved`` (both [S, S, 3] float), by phase
    correlation of their grey levels with a Hann window, refined to sub-pixel by a parabola."""
    size = reference.shape[0]
    window = np.outer(np.hanning(size), np.hanning(size))
    grey_a, grey_b = reference.mean(axis=2), moved.mean(axis=2)
    a = np.fft.rfft2((grey_a - grey_a.mean()) * window)  # without the means the window itself correlates
    b = np.fft.rfft2((grey_b - grey_b.mean()) * window)
    cross = b * np.conj(a)
    surface = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12), s=(size, size))
    peak_y, peak_x = np.unravel_index(int(np.argmax(surface)), surface.shape)

    def refine(before: float, at: float, after: float) -> float:
        curvature = before - 2 * at + after
        return 0.0 if curvature >= 0 else 0.5 * (before - after) / curvature

    dy = peak_y + refine(surface[peak_y - 1, peak_x], surface[peak_y, peak_x], surface[(peak_y + 1) % size, peak_x])
    dx = peak_x + refine(surface[peak_y, peak_x - 1], surface[peak_y, peak_x], surface[peak_y, (peak_x + 1) % size])
    return np.array([(dx + size / 2) % size - size / 2, (dy + size / 2) % size - size / 2])
