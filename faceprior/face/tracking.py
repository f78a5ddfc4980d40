"""Faces across the frames of a video: tracks, time-smoothed landmarks, scene cuts.

Detections of one frame are matched to the tracks of the frames before by the overlap of their
boxes with where each track's face should be (its last box moved at its last speed; greedy,
highest IoU first); a track survives ``max_gap`` frames without a detection, so a face that is
missed for a few frames (turned away, motion blur) keeps its id. A scene cut ends every track.

The landmarks that align a face in frame ``t`` are not its raw detection but a local quadratic
fit (linear with fewer than four frames) over the track's detections in ``t - radius .. t + radius``
with Gaussian weights (sigma ``sigma`` frames): detector jitter averages out, while a face that
moves, speeds up or turns back is followed without lag. Frames inside a gap of the
track (missed detections with detections on both sides) get the fitted landmarks too, so the face
is restored there as well.

Everything is causal up to ``radius`` frames: the landmarks of frame ``t`` are final once frame
``t + radius`` has been seen (:meth:`FaceTracker.smoothed` says which faces frame ``t`` has).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from faceprior.face.boxes import box_iou

__all__ = ["FaceTracker", "Observation", "Track", "colour_histogram", "is_scene_cut"]


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """[512] normalised 8 x 8 x 8 RGB histogram of a frame (every 4th pixel), for scene-cut detection."""
    levels = (np.asarray(pixels)[::4, ::4, :3] // 32).reshape(-1, 3).astype(np.int64)
    counts = np.bincount(levels[:, 0] * 64 + levels[:, 1] * 8 + levels[:, 2], minlength=512).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def is_scene_cut(previous: np.ndarray, current: np.ndarray, threshold: float = 0.35) -> bool:
    """Whether two frames' :func:`colour_histogram` belong to different shots: one minus their
    intersection exceeds ``threshold`` (a pan or zoom changes it by < 0.1 a frame; a cut by > 0.5
    in the test clips of tests/video_clips.py)."""
    return float(1.0 - np.minimum(previous, current).sum()) > threshold


@dataclass
class Observation:
    """A detection of a tracked face: frame index, box [4], landmarks [5, 2], score."""

    frame: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float


@dataclass
class Track:
    """One face over time."""

    id: int
    observations: list[Observation] = field(default_factory=list)
    ended: bool = False

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    def predicted_box(self, frame: int) -> np.ndarray:
        """Where the face should be in ``frame``: its last box moved at its last speed."""
        if len(self.observations) < 2:
            return self.last.box
        previous = self.observations[-2]
        speed = (self.last.box - previous.box) / max(self.last.frame - previous.frame, 1)
        return self.last.box + speed * (frame - self.last.frame)


class FaceTracker:
    """Tracks faces from per-frame detections (see the module docstring).

    max_gap: frames a track survives without a detection.
    min_iou: box overlap needed to continue a track.
    radius / sigma: the smoothing window (frames each side) and its Gaussian width.
    """

    def __init__(self, max_gap: int = 8, min_iou: float = 0.3, radius: int = 4, sigma: float = 2.0):
        self.max_gap, self.min_iou, self.radius, self.sigma = int(max_gap), float(min_iou), int(radius), float(sigma)
        self.tracks: list[Track] = []
        self.next_id = 0
        self.cuts: list[int] = [0]  # first frame of each shot

    def update(self, frame: int, boxes: np.ndarray, landmarks: np.ndarray, scores: np.ndarray,
               cut: bool = False) -> list[int]:
        """Add frame ``frame``'s detections (frames in increasing order); returns their track ids."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if cut:
            for track in self.tracks:
                track.ended = True
            self.cuts.append(frame)
        live = [t for t in self.tracks if not t.ended and frame - t.last.frame <= self.max_gap + 1]
        for track in self.tracks:
            if not track.ended and frame - track.last.frame > self.max_gap + 1:
                track.ended = True
        ids = [-1] * len(boxes)
        if live and len(boxes):
            predicted = np.stack([t.predicted_box(frame) for t in live])
            overlap = box_iou(torch.from_numpy(np.asarray(boxes, np.float64).reshape(-1, 4)),
                              torch.from_numpy(predicted.astype(np.float64))).numpy()
            for flat in np.argsort(-overlap, axis=None):
                i, j = np.unravel_index(flat, overlap.shape)
                if overlap[i, j] < self.min_iou:
                    break
                if ids[i] == -1 and live[j] is not None:
                    ids[i] = live[j].id
                    live[j].observations.append(Observation(frame, boxes[i], landmarks[i], float(scores[i])))
                    live[j] = None
        for i in range(len(boxes)):
            if ids[i] == -1:
                track = Track(self.next_id, [Observation(frame, boxes[i], landmarks[i], float(scores[i]))])
                self.tracks.append(track)
                ids[i] = track.id
                self.next_id += 1
        return ids

    def smoothed(self, frame: int) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
        """The faces of ``frame`` as (track id, smoothed landmarks [5, 2], box [4], score), for
        every track detected in ``frame`` or in a gap of at most ``max_gap`` frames around it.
        Final once frame ``frame + radius`` has been added."""
        shot_start = max(c for c in self.cuts if c <= frame)
        later_cuts = [c for c in self.cuts if c > frame]
        shot_end = min(later_cuts) if later_cuts else None
        faces = []
        for track in self.tracks:
            frames = [o.frame for o in track.observations]
            if not frames or frames[0] > frame or frames[0] < shot_start:
                continue
            before = [o for o in track.observations if o.frame <= frame]
            after = [o for o in track.observations if o.frame >= frame]
            if not before or not after:
                continue  # the track has ended before this frame, or (so far) not come back
            if after[0].frame - before[-1].frame > self.max_gap + 1:
                continue  # a gap too long to fill
            if shot_end is not None and after[0].frame >= shot_end:
                continue
            window = [o for o in track.observations if abs(o.frame - frame) <= self.radius]
            if not window:  # a gap wider than the window: interpolate between its ends
                window = [before[-1], after[0]]
            landmarks = self._fit(window, frame)
            nearest = min(window, key=lambda o: abs(o.frame - frame))
            shift = landmarks.mean(axis=0) - nearest.landmarks.mean(axis=0)
            box = nearest.box + np.tile(shift, 2)
            faces.append((before[-1].frame == frame, track.id, landmarks, box, nearest.score))
        return [face[1:] for face in self._without_duplicates(faces)]

    def _without_duplicates(self, faces: list[tuple]) -> list[tuple]:
        """One face per place: a track filled in across a gap is dropped where it overlaps a face
        detected in this frame (the same face, picked up by another track) or a stronger fill."""
        order = sorted(faces, key=lambda face: (not face[0], -face[4]))  # detected first, then by score
        kept: list[tuple] = []
        for face in order:
            if kept:
                overlap = box_iou(torch.from_numpy(face[3][None].astype(np.float64)),
                                  torch.from_numpy(np.stack([k[3] for k in kept]).astype(np.float64)))
                if face[0] is False and float(overlap.max()) >= self.min_iou:
                    continue
            kept.append(face)
        return sorted(kept, key=lambda face: face[1])  # in track order, as before

    def _fit(self, window: list[Observation], frame: int) -> np.ndarray:
        """Weighted local polynomial fit of the landmarks over ``window``, evaluated at ``frame``."""
        times = np.array([o.frame - frame for o in window], np.float64)
        points = np.stack([o.landmarks for o in window]).reshape(len(window), -1)
        weights = np.exp(-0.5 * (times / self.sigma) ** 2) if self.sigma > 0 else (times == 0).astype(float)
        distinct = len(np.unique(times))
        if distinct == 1:
            return (weights[:, None] * points).sum(axis=0).reshape(5, 2) / weights.sum()
        degree = 2 if distinct >= 4 else 1  # quadratic where the window allows: a pan that slows or turns
        design = np.stack([times ** k for k in range(degree + 1)], axis=1)
        gram = design.T @ (weights[:, None] * design)
        coefficients = np.linalg.solve(gram + 1e-9 * np.eye(degree + 1), design.T @ (weights[:, None] * points))
        return coefficients[0].reshape(5, 2)  # the value at t = frame

    def forget_before(self, frame: int) -> None:
        """Drop what no later frame needs (observations older than ``frame - radius - max_gap``)."""
        horizon = frame - self.radius - self.max_gap - 2
        kept = []
        for track in self.tracks:
            track.observations = [o for o in track.observations if o.frame >= horizon] or track.observations[-1:]
            if not (track.ended and track.last.frame < horizon):
                kept.append(track)
        self.tracks = kept
        older = [c for c in self.cuts if c < horizon]
        self.cuts = ([max(older)] if older else []) + [c for c in self.cuts if c >= horizon]
