"""Video files: decode the frames of one video stream, encode replacements, copy every other stream.

PyAV (FFmpeg in its wheels) does the work; it is the optional extra ``faceprior[video]``
(``pip install av``). :class:`VideoTranscoder` reads a file once, in order::

    with VideoTranscoder(source, target) as video:
        for frame in video.frames():            # VideoFrame: index, pts, pixels [H, W, 3] uint8 upright
            video.write(restore(frame.pixels), frame)   # in order; may lag behind frames()
    # target is complete only after the context exits without an error

What is kept: the container (by the target's suffix), the frame rate and time base, every frame's
time stamp (variable frame rate too), the display rotation (frames are handed out upright and
rotated back before encoding), the colour range, primaries, transfer and matrix, and the pixel
format where the encoder takes it. Audio, subtitle and data streams are copied packet for packet
(bit-exact); a stream the target container cannot hold is left out with a note. The video is
re-encoded: ``codec`` (default: H.264 for MP4/MOV/MKV/AVI, VP9 for WebM) at ``crf`` (default 18,
visually lossless for H.264).

Memory: one decoded frame at a time here; the caller bounds how many it holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from faceprior.errors import FacepriorError
from faceprior.imaging.files import VIDEO_SUFFIXES, is_video_file

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoFrame", "VideoInfo", "VideoTranscoder", "is_video_file",
           "probe_video", "read_frames", "require_av"]

#: FFmpeg muxer for each suffix
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
#: default encoder for each muxer
_DEFAULT_CODECS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "avi": "libx264", "webm": "libvpx-vp9"}
DEFAULT_CRF = 18


class VideoError(FacepriorError, ValueError):
    """A video cannot be read or written (one line naming the file and the reason)."""


def require_av() -> Any:
    """The ``av`` module, or VideoError saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'faceprior[video]' (or pip install av)") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. frames: the container's count (0 if it does not say)."""

    width: int
    height: int
    frames: int
    rate: Optional[Fraction]
    time_base: Fraction
    duration: Optional[float]
    rotation: int
    codec: str
    pix_fmt: str
    other_streams: tuple[str, ...] = field(default_factory=tuple)
    container: str = ""  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"

    @property
    def suffix(self) -> Optional[str]:
        """The file suffix of this video by its content (".mp4", ".mkv", ".webm", ".avi"), whatever
        its name; None for a container faceprior does not write."""
        suffix = _CONTAINER_SUFFIXES.get(self.container)
        return ".webm" if suffix == ".mkv" and self.codec in ("vp8", "vp9", "av1") else suffix

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as displayed, after the rotation."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


@dataclass
class VideoFrame:
    """One decoded frame: its index in the stream, time stamp (in ``time_base`` units), seconds,
    and pixels [H, W, 3] uint8 RGB as displayed (rotation applied)."""

    index: int
    pts: Optional[int]
    time: Optional[float]
    pixels: np.ndarray


def _open_input(path: Path) -> Any:
    av = require_av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{path}: cannot read as a video ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.splitlines()[0]


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """The :class:`VideoInfo` of a file (VideoError if it is not a readable video)."""
    path = Path(path)
    container = _open_input(path)
    av = require_av()
    try:
        return _info(container, path)
    except (av.FFmpegError, ValueError) as error:  # its first frame does not decode
        raise VideoError(f"{path}: cannot read as a video ({_reason(error)})") from None
    finally:
        container.close()


#: Output suffix by container: FFmpeg's demuxer name -> suffix (matroska: .webm for VP8/VP9/AV1 video).
_CONTAINER_SUFFIXES = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi"}


def _info(container: Any, path: Path) -> VideoInfo:
    stream = container.streams.video[0]
    context = stream.codec_context
    rotation = 0
    for frame in container.decode(stream):  # the rotation is reliably on the decoded frame
        rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        break
    duration = float(container.duration / 1_000_000) if container.duration else None
    others = tuple(f"{s.type}:{s.codec_context.name if s.codec_context else '?'}"
                   for s in container.streams if s.index != stream.index)
    return VideoInfo(width=int(context.width), height=int(context.height), frames=int(stream.frames or 0),
                     rate=stream.average_rate or stream.guessed_rate, time_base=stream.time_base,
                     duration=duration, rotation=rotation, codec=context.name, pix_fmt=str(context.pix_fmt),
                     other_streams=others, container=container.format.name)


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[VideoFrame]:
    """The frames of a video file (upright), or every ``every``-th of them, without writing anything."""
    path = Path(path)
    info = probe_video(path)
    container = _open_input(path)
    av = require_av()
    try:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index % every == 0:
                yield VideoFrame(index, frame.pts, float(frame.time) if frame.time is not None else None,
                                 _upright(frame.to_ndarray(format="rgb24"), info.rotation))
    except av.FFmpegError as error:
        raise VideoError(f"{path}: broken ({_reason(error)})") from None
    finally:
        container.close()


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """Stored -> displayed: rotate by ``rotation`` degrees counter-clockwise."""
    return np.ascontiguousarray(np.rot90(pixels, k=rotation // 90)) if rotation else pixels


def _stored(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """Displayed -> stored: the inverse of :func:`_upright`."""
    return np.ascontiguousarray(np.rot90(pixels, k=-(rotation // 90))) if rotation else pixels


class VideoTranscoder:
    """Decode ``source``'s first video stream and encode replacement frames into ``target``.

    target: the file to write (its suffix picks the container). Pass a temporary name and move it
        into place when the context exits cleanly: a killed run must not leave a complete-looking file.
    codec / crf: the video encoder and its constant-rate factor (see the module docstring).
    notes: what could not be kept (filled while opening), one line each.
    """

    def __init__(self, source: str | os.PathLike, target: str | os.PathLike, codec: Optional[str] = None,
                 crf: Optional[int] = None, muxer: Optional[str] = None):
        self.av = require_av()
        self.source, self.target = Path(source), Path(target)
        self.notes: list[str] = []
        self.info = probe_video(self.source)
        self.input = _open_input(self.source)
        try:
            self._open_output(codec, crf, muxer or _MUXERS.get(self.source.suffix.lower(), "mp4"))
        except BaseException:
            self.input.close()
            raise
        self.frames_written = 0

    def _open_output(self, codec: Optional[str], crf: Optional[int], muxer: str) -> None:
        av = self.av
        self.video_in = self.input.streams.video[0]
        self.video_in.thread_type = "AUTO"
        try:
            self.output = av.open(str(self.target), "w", format=muxer)
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"{self.target}: cannot create ({_reason(error)})") from None
        codec = codec or _DEFAULT_CODECS.get(muxer, "libx264")
        try:
            stream = self.output.add_stream(codec, rate=self.info.rate or Fraction(25))
        except (av.FFmpegError, ValueError) as error:
            self.output.close()
            raise VideoError(f"{self.source}: cannot encode with {codec!r} ({_reason(error)})") from None
        context_in = self.video_in.codec_context
        stream.width, stream.height = self.info.width, self.info.height
        formats = {f.name for f in stream.codec_context.codec.video_formats or ()}
        stream.pix_fmt = self.info.pix_fmt if self.info.pix_fmt in formats else "yuv420p"
        stream.time_base = self.video_in.time_base
        stream.codec_context.time_base = self.video_in.time_base
        for name in ("color_range", "color_primaries", "color_trc", "colorspace"):
            value = getattr(context_in, name, None)
            if value is not None and hasattr(stream.codec_context, name):
                try:
                    setattr(stream.codec_context, name, value)
                except (ValueError, TypeError, AttributeError):
                    pass
        if self.video_in.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = self.video_in.sample_aspect_ratio
        stream.options = {"crf": str(DEFAULT_CRF if crf is None else int(crf))} if codec in (
            "libx264", "libx265", "libvpx-vp9") else {}
        if codec == "libvpx-vp9":
            stream.options["b"] = "0"
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        self.video_out = stream
        self.copied: dict[int, Any] = {}
        for source_stream in self.input.streams:
            if source_stream.index == self.video_in.index or source_stream.type not in ("audio", "subtitle", "data"):
                continue
            try:
                self.copied[source_stream.index] = self.output.add_stream_from_template(source_stream, opaque=True)
            except (av.FFmpegError, ValueError, TypeError) as error:
                self.notes.append(f"{source_stream.type} stream {source_stream.index} "
                                  f"({source_stream.codec_context.name if source_stream.codec_context else '?'}) "
                                  f"not copied: {_reason(error)}")
        if self.input.metadata:
            self.output.metadata.update(self.input.metadata)

    # ---- reading ------------------------------------------------------------------------------

    def frames(self) -> Iterator[VideoFrame]:
        """The decoded frames in presentation order; other streams' packets are copied on the way."""
        av = self.av
        index = 0
        rotation = self.info.rotation
        try:
            for packet in self.input.demux():  # its last, empty packet flushes the decoder
                if packet.stream.index == self.video_in.index:
                    for frame in packet.decode():
                        pixels = frame.to_ndarray(format="rgb24")
                        yield VideoFrame(index, frame.pts, float(frame.time) if frame.time is not None else None,
                                         _upright(pixels, rotation))
                        index += 1
                elif packet.stream.index in self.copied and packet.dts is not None:
                    packet.stream = self.copied[packet.stream.index]
                    self.output.mux(packet)
        except av.FFmpegError as error:
            raise VideoError(f"{self.source}: broken after frame {index} ({_reason(error)})") from None

    # ---- writing ------------------------------------------------------------------------------

    def write(self, pixels: np.ndarray, frame: VideoFrame) -> None:
        """Encode ``pixels`` [H, W, 3] uint8 (upright, the size of ``frame``) at ``frame``'s time stamp."""
        av = self.av
        stored = _stored(np.ascontiguousarray(pixels, dtype=np.uint8), self.info.rotation)
        out = av.VideoFrame.from_ndarray(stored, format="rgb24")
        out.pts = frame.pts
        out.time_base = self.video_in.time_base
        context = self.video_in.codec_context
        if getattr(context, "color_range", None):
            try:
                out.color_range = context.color_range
            except (AttributeError, ValueError, TypeError):
                pass
        try:
            for packet in self.video_out.encode(out):
                self.output.mux(packet)
        except av.FFmpegError as error:
            raise VideoError(f"{self.target}: cannot encode frame {frame.index} ({_reason(error)})") from None
        self.frames_written += 1

    def close(self, complete: bool = True) -> None:
        """Flush the encoder (``complete``) and close both files."""
        try:
            if complete:
                for packet in self.video_out.encode(None):
                    self.output.mux(packet)
        finally:
            self.output.close()
            self.input.close()

    def __enter__(self) -> "VideoTranscoder":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(complete=kind is None)
