"""Video (docs/video.md): faceprior restore on clips made here from ../shared/data photos with a
known motion, a cut, faces leaving and coming back and a stereo audio track; tracking; atomic
outputs; broken files. Needs PyAV (faceprior[video])."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceprior.cli import main
from faceprior.face.tracking import FaceTracker, colour_histogram, is_scene_cut
from faceprior.imaging.io import read_image
from faceprior.restoration.restorer import FaceRestorer
from faceprior.restoration.video import VideoRestorer, parse_frame_range, restore_video_file

av = pytest.importorskip("av", reason="video needs PyAV: pip install 'faceprior[video]'")

from video_clips import make_clip  # noqa: E402  (needs av)


@pytest.fixture(scope="module")
def clip(data_dir, tmp_path_factory):
    """26 frames at 320x180: a pan over a group photo (faces leave and come back), a cut, audio."""
    first = read_image(data_dir / "realworld-whole" / "dlib" / "2008_002079.jpg").pixels
    second = read_image(data_dir / "realworld-whole" / "dlib" / "2008_001322.jpg").pixels
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", first, second, size=(320, 180), frames=(20, 6))


def _packets(path: Path, kind: str) -> list[tuple]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pts, p.dts, p.duration, bytes(p)) for p in container.demux(stream) if p.size]


def _frame_times(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


@pytest.mark.slow
def test_restore_command_keeps_frames_time_stamps_and_audio(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", str(clip.path), "-o", str(out), "--report", "--crf", "0"]) == 0  # lossless
    restored = out / "clip.mp4"
    assert _frame_times(restored) == _frame_times(clip.path) and len(_frame_times(restored)) == 26
    assert _packets(restored, "audio") == _packets(clip.path, "audio")  # copied bit for bit
    with av.open(str(restored)) as a, av.open(str(clip.path)) as b:
        assert a.streams.video[0].average_rate == b.streams.video[0].average_rate == Fraction(25)
        assert abs(a.duration - b.duration) <= 40_000  # microseconds: one frame
    report = json.loads((out / "reports" / "clip.json").read_text())
    assert report["frames"] == report["restored_frames"] == 26 and report["scene_cuts"] == 1
    assert report["faces"] > 20 and 1 <= report["tracks"] < report["faces"]
    assert "1 video(s)" in capsys.readouterr().err
    # the faces changed, the rest of the frame did not (beyond the RGB <-> YUV 4:2:0 round trip)
    with av.open(str(restored)) as a, av.open(str(clip.path)) as b:
        first_out = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        first_in = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(first_out - first_in).max() > 20 and np.median(np.abs(first_out - first_in)) <= 1
    # --skip-existing leaves the finished video alone; without it, nothing is replaced
    stamp = restored.stat().st_mtime_ns
    assert main(["restore", str(clip.path), "-o", str(out), "--skip-existing", "--report"]) == 0
    assert main(["restore", str(clip.path), "-o", str(out)]) == 1
    assert restored.stat().st_mtime_ns == stamp and "exists" in capsys.readouterr().err
    # nothing else in the folder: the temporary name of the video was removed once it was in place
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "reports"]
    assert restored.stat().st_nlink == 1


@pytest.mark.slow
def test_frame_range_and_preview(clip, tmp_path):
    restorer = FaceRestorer(weight=1.0)
    report = restore_video_file(restorer, clip.path, tmp_path / "part.mp4", frames="5:9")
    assert report.frames == 26 and report.restored_frames == 4
    assert main(["restore", str(clip.path), "-o", str(tmp_path / "preview"), "--preview", "10"]) == 0
    assert sorted(p.name for p in (tmp_path / "preview").iterdir()) == [
        "clip_frame000000.png", "clip_frame000010.png", "clip_frame000020.png"]
    assert not (tmp_path / "preview" / "clip.mp4").exists()


def test_a_failed_run_leaves_nothing_that_looks_complete(clip, tmp_path):
    class Failing(FaceRestorer):
        calls = 0

        def run_model(self, faces):
            Failing.calls += 1
            if Failing.calls > 2:
                raise RuntimeError("killed")
            return super().run_model(faces)

    restorer = Failing(weight=1.0)
    with pytest.raises(RuntimeError, match="killed"):
        restore_video_file(restorer, clip.path, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_broken_and_videoless_files_are_one_line_each_and_the_batch_goes_on(clip, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(clip.path.read_bytes()[:3000])  # truncated: the header only
    (folder / "text.mkv").write_text("not a video")
    with av.open(str(folder / "sound.mp4"), "w") as container:  # audio only
        stream = container.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    rng = np.random.default_rng(0)
    from faceprior.imaging.io import write_image

    write_image(folder / "photo.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert main(["restore", str(folder), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 3, err
    assert any("sound.mp4: has no video stream" in line for line in failed)
    assert any("text.mkv" in line and "cannot read as a video" in line for line in failed)
    assert "Traceback" not in err
    assert (tmp_path / "out" / "photo.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png"]


# ---- tracking ---------------------------------------------------------------------------------------


def _landmarks(x: float, y: float) -> np.ndarray:
    return np.array([[x - 10, y], [x + 10, y], [x, y + 8], [x - 7, y + 16], [x + 7, y + 16]], np.float64)


def _box(x: float, y: float) -> np.ndarray:
    return np.array([x - 20, y - 20, x + 20, y + 30], np.float64)


def test_tracks_survive_short_misses_and_end_at_cuts():
    tracker = FaceTracker(max_gap=3, radius=2, sigma=1.0)
    ids = []
    for frame in range(12):
        x = 100 + 3 * frame
        if frame in (4, 5):  # missed twice
            ids.append(tracker.update(frame, np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)))
            continue
        ids.append(tracker.update(frame, [_box(x, 50), _box(300, 50)], [_landmarks(x, 50), _landmarks(300, 50)],
                                  [0.99, 0.99], cut=frame == 9))
    assert ids[0] == ids[3] == ids[6] == ids[8] == [0, 1]       # kept through the gap
    assert ids[9] == ids[11] == [2, 3]                         # new ids after the cut
    filled = {track: landmarks for track, landmarks, _, _ in tracker.smoothed(5)}
    np.testing.assert_allclose(filled[0], _landmarks(115, 50), atol=1e-6)  # the missed frame, filled
    assert {track for track, *_ in tracker.smoothed(8)} == {0, 1} and {t for t, *_ in tracker.smoothed(9)} == {2, 3}


def test_a_gap_filled_track_is_not_restored_twice_where_another_track_has_the_face():
    """The detector reports one face twice (two overlapping boxes) in frames 3 and 5: the second
    box makes track 1. In frame 4 track 1 is filled in across its gap, over the face that track 0
    detected there: the copy is dropped, the face is restored once."""
    tracker = FaceTracker(max_gap=3, radius=2, sigma=1.0)
    for frame, xs in ((0, [100]), (1, [100]), (3, [100, 108]), (4, [100]), (5, [100, 108])):
        ids = tracker.update(frame, [_box(x, 50) for x in xs], [_landmarks(x, 50) for x in xs], [0.99] * len(xs))
    assert ids == [0, 1]
    assert [track for track, *_ in tracker.smoothed(4)] == [0]
    assert [track for track, *_ in tracker.smoothed(3)] == [0, 1]  # both detected there: both kept


def test_smoothing_removes_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(radius=4, sigma=2.0)
    truth = {}
    for frame in range(40):
        x = 100 + 0.05 * frame ** 2  # speeding up
        truth[frame] = _landmarks(x, 80)
        noisy = truth[frame] + rng.normal(0, 1.0, (5, 2))
        tracker.update(frame, [_box(x, 80)], [noisy], [0.99])
    raw = np.mean([np.abs(t.landmarks - truth[t.frame]).mean() for t in tracker.tracks[0].observations[4:-4]])
    smooth = np.mean([np.abs(tracker.smoothed(f)[0][1] - truth[f]).mean() for f in range(4, 36)])
    assert smooth < 0.6 * raw


def test_scene_cuts_are_found_between_photos_not_within_a_pan(clip):
    from faceprior.imaging.video import read_frames

    histograms = [colour_histogram(frame.pixels) for frame in read_frames(clip.path)]
    cuts = [i for i in range(1, len(histograms)) if is_scene_cut(histograms[i - 1], histograms[i])]
    assert cuts == [20]


def test_frame_ranges():
    class F:
        def __init__(self, index):
            self.index = index

    assert [i for i in range(10) if parse_frame_range("3:6")(F(i))] == [3, 4, 5]
    assert [i for i in range(10) if parse_frame_range("7:")(F(i))] == [7, 8, 9]
    for bad in ("5", "6:3", "a:b", "-1:4"):
        with pytest.raises(ValueError, match="--frames"):
            parse_frame_range(bad)


def test_video_restorer_needs_a_whole_photo_restorer(reference_dir):
    with pytest.raises(ValueError, match="whole-photo"):
        VideoRestorer(FaceRestorer(model=str(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth"), aligned=True,
                                   weight=1.0))
