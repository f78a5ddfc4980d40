"""Reading and writing image files (JPEG, PNG, WebP, BMP, TIFF) with Pillow.

16-bit PNG and TIFF (grey or colour, with or without alpha) are read as uint16 and written as
uint16. Pillow decodes and encodes 8-bit files; 16-bit colour PNG/TIFF, which Pillow can only hand
over as 8 bits, are decoded by Pillow twice (high bytes, then low bytes) and encoded by small
writers here. Pixel conventions: :mod:`faceprior.imaging.pixels`.
"""

from __future__ import annotations

import io
import struct
import sys
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from faceprior.errors import FacepriorError, one_line
from faceprior.imaging.pixels import convert_bit_depth, pil_to_arrays, rgb_to_gray, to_rgb_array
from faceprior.paths import PathLike, atomic_write

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_SUFFIXES",
    "IMAGE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "LoadedImage",
    "UnsupportedImageError",
    "apply_exif_orientation",
    "format_from_path",
    "probe_image",
    "read_image",
    "write_image",
]

# Images with more pixels than this are refused by default before being decoded.
DEFAULT_MAX_PIXELS = 100_000_000

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
_SUFFIX_TO_FORMAT = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".webp": "WEBP",
    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}
_FORMATS_WITH_16_BIT = ("PNG", "TIFF")
_FORMATS_WITH_ALPHA = ("PNG", "WEBP", "TIFF")
_EXIF_PREFIX = b"Exif\x00\x00"
_EXIF_ORIENTATION = 0x0112

#: File-name suffixes of the image files faceprior reads (lower case, with the dot).
IMAGE_SUFFIXES = tuple(_SUFFIX_TO_FORMAT)
#: The usual suffix of each format (the first one listed): "JPEG" -> ".jpg", "TIFF" -> ".tif".
FORMAT_SUFFIXES = {fmt: suffix for suffix, fmt in reversed(_SUFFIX_TO_FORMAT.items())}


class ImageReadError(FacepriorError, ValueError):
    """An image file could not be read; the message is one line naming the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """The file header declares more pixels than allowed (found before any pixel is decoded)."""


class UnsupportedImageError(ImageReadError):
    """Not an image file of a supported format (JPEG, PNG, WebP, BMP, TIFF)."""


class ImageWriteError(FacepriorError, ValueError):
    """An image file could not be written; the message is one line naming the file and the reason."""


@dataclass
class LoadedImage:
    """A decoded image file.

    pixels: [H, W, 3] RGB, uint8 (bit_depth 8) or uint16 (bit_depth 16), upright (EXIF
        orientation already applied). Grey files are expanded to three equal channels.
    alpha: [H, W] of the same dtype (255 / 65535 = opaque), or None when the file has none.
    format: "JPEG", "PNG", "WEBP", "BMP" or "TIFF".
    bit_depth: 8 or 16.
    was_gray: True when the file stored grey levels only (modes 1, L, LA, I;16 ...).
    icc_profile: the embedded ICC profile (bytes) or None. Profiles of CMYK files are dropped
        because the pixels were converted to RGB.
    exif: EXIF block (bytes starting with b"Exif\\0\\0") with the orientation tag removed, or None.
    path: the file that was read.
    notes: what the decoder warned about while reading (e.g. corrupt EXIF data, which is dropped),
        one line each, for the caller to report with the file's name.
    """

    pixels: np.ndarray
    alpha: Optional[np.ndarray]
    format: str
    bit_depth: int
    was_gray: bool
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None
    path: Optional[Path] = None
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Make a stored image upright: [H, W, ...] array -> the array as it should be displayed for
    the EXIF orientation value 1..8 (2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
    clockwise, 7 transverse, 8 rotate 90 counter-clockwise). Returns a view where possible."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return array.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return array.swapaxes(0, 1)[::-1]
    return array


# ----------------------------------------------------------------------------------------------
# reading


class _PixelLimit:
    """Records the warnings of decoding (``self.notes``: Pillow's DecompressionBombWarning is
    dropped, the size is checked here instead; others become notes the caller reports with the
    file's name) and, only when ``max_pixels`` exceeds what Pillow's own check allows
    (2 * Image.MAX_IMAGE_PIXELS), raises Pillow's global limit under a lock, restoring it afterwards."""

    _lock = threading.Lock()

    def __init__(self, max_pixels: Optional[int]):
        pillow_limit = Image.MAX_IMAGE_PIXELS
        self.raise_limit = pillow_limit is not None and (max_pixels is None or max_pixels > 2 * pillow_limit)
        self.max_pixels = max_pixels

    def __enter__(self):
        self._warnings = warnings.catch_warnings(record=True)
        self._recorded = self._warnings.__enter__()
        warnings.simplefilter("always")
        if self.raise_limit:
            self._lock.acquire()
            self._saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None if self.max_pixels is None else self.max_pixels // 2 + 1
        return self

    def __exit__(self, *exc):
        if self.raise_limit:
            Image.MAX_IMAGE_PIXELS = self._saved
            self._lock.release()
        self._warnings.__exit__(*exc)
        return False

    @property
    def notes(self) -> tuple[str, ...]:
        found = (one_line(w.message) for w in self._recorded if not issubclass(w.category, Image.DecompressionBombWarning))
        return tuple(dict.fromkeys(note for note in found if note))


_RAWMODE_LOW_BYTES = {"16B": "16L", "16L": "16B", "16N": "16B" if sys.byteorder == "little" else "16L"}
_WIDE_COLOUR_RAWMODES = ("RGB;16", "RGBA;16", "RGBX;16")


def _tile_rawmode(tile: Any) -> Optional[str]:
    args = tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode,) + tuple(args[1:])
    if hasattr(tile, "_replace"):
        return tile._replace(args=new_args)
    return (tile[0], tile[1], tile[2], new_args)


def _wide_rawmode(im: "Image.Image") -> Optional[str]:
    """The rawmode of a 16-bit-per-channel colour / grey+alpha PNG or TIFF that Pillow would
    reduce to 8 bits, or None."""
    if im.format not in ("PNG", "TIFF") or im.mode not in ("RGB", "RGBA") or not im.tile:
        return None
    rawmodes = {_tile_rawmode(t) for t in im.tile}
    if len(rawmodes) != 1:
        return None
    rawmode = rawmodes.pop()
    if rawmode is None:
        return None
    if rawmode == "LA;16B" and im.format == "PNG":
        return rawmode
    if rawmode.startswith(_WIDE_COLOUR_RAWMODES) and rawmode[-3:] in _RAWMODE_LOW_BYTES:
        return rawmode
    return None


def _decode_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Decode the first frame of ``path`` with Pillow, unpacking its samples with ``rawmode``."""
    with Image.open(path) as im:
        im.tile = [_with_rawmode(t, rawmode) for t in im.tile]
        im.load()
        return np.array(im)


def _read_wide(path: Path, rawmode: str, high: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray], bool]:
    """Full 16-bit samples of a wide PNG/TIFF. ``high`` is Pillow's 8-bit decode (high bytes)."""
    if rawmode == "LA;16B":  # grey + alpha, 16 bit: the 4 bytes of each pixel as R, G, B, A
        raw = _decode_with_rawmode(path, "RGBA").astype(np.uint16)
        gray = (raw[:, :, 0] << 8) | raw[:, :, 1]
        alpha = (raw[:, :, 2] << 8) | raw[:, :, 3]
        return np.repeat(gray[:, :, None], 3, axis=2), alpha, True
    low_rawmode = rawmode[:-3] + _RAWMODE_LOW_BYTES[rawmode[-3:]]
    low = _decode_with_rawmode(path, low_rawmode)
    values = (high.astype(np.uint16) << 8) | low.astype(np.uint16)
    if values.shape[2] == 4:
        return values[:, :, :3], np.ascontiguousarray(values[:, :, 3]), False
    return values, None, False


def _exif_of(im: "Image.Image") -> Tuple[Optional[bytes], int]:
    """(EXIF bytes with orientation removed, orientation 1..8) of an opened PIL image."""
    orientation = 1
    try:
        exif = im.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
        orientation = int(value) if int(value) in range(1, 9) else 1
    except Exception:  # unreadable EXIF: keep the pixels, drop the metadata
        return None, 1
    raw = im.info.get("exif")
    if not isinstance(raw, (bytes, bytearray)) or not raw:
        return None, orientation
    raw = bytes(raw)
    if not raw.startswith(_EXIF_PREFIX):
        raw = _EXIF_PREFIX + raw
    if _EXIF_ORIENTATION in exif:
        try:
            del exif[_EXIF_ORIENTATION]
            raw = exif.tobytes()
        except Exception:
            return None, orientation
    return raw, orientation


def _open_checked(path: Path, max_pixels: Optional[int]) -> tuple["Image.Image", str, int, int]:
    """Open ``path`` with Pillow and check its header (inside a ``_PixelLimit``): a supported
    format, a valid size within ``max_pixels``. Returns (image, format, width, height); no pixel
    data is decoded. Raises ImageReadError (or its subclasses) naming the file."""

    def fail(reason: str, kind: type = ImageReadError) -> ImageReadError:
        return kind(f"{path}: {one_line(reason)}")

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as error:
        raise fail(f"cannot access file ({error.strerror or error})") from None
    if path.is_dir():
        raise fail("is a folder, not an image file")
    if size == 0:
        raise fail("empty file (0 bytes)")
    try:
        im = Image.open(path, formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        raise fail("not a recognised image file (supported: JPEG, PNG, WebP, BMP, TIFF)", UnsupportedImageError) from None
    except Image.DecompressionBombError:
        raise fail(f"image too large (more than {max_pixels} pixels)", ImageTooLargeError) from None
    except PermissionError:
        raise fail("permission denied") from None
    except Exception as error:
        raise fail(f"corrupt image header ({type(error).__name__}: {error})") from None
    width, height = im.size
    file_format = "JPEG" if im.format == "MPO" else im.format
    problem = None
    if width <= 0 or height <= 0:
        problem = fail(f"invalid image size {width}x{height}")
    elif max_pixels is not None and width * height > max_pixels:
        problem = fail(f"image too large ({width}x{height} = {width * height} pixels, limit {max_pixels})",
                       ImageTooLargeError)
    elif file_format not in SUPPORTED_FORMATS:
        problem = fail(f"unsupported image format {im.format}", UnsupportedImageError)
    if problem is not None:
        im.close()
        raise problem
    return im, file_format, width, height


def probe_image(path: PathLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of an image file from its header alone, checked as
    :func:`read_image` checks it (format, size, ``max_pixels``) without decoding any pixel."""
    with _PixelLimit(max_pixels):
        im, file_format, width, height = _open_checked(Path(path), max_pixels)
        im.close()
    return file_format, width, height


def read_image(path: PathLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read a JPEG, PNG, WebP, BMP or TIFF file (the first frame of multi-frame files).

    The image size is taken from the file header and checked against ``max_pixels`` (None: no
    limit) before any pixel data is decoded. EXIF orientation is applied to the pixels.
    Returns a LoadedImage (see its docstring for shapes and dtypes). Raises ImageReadError for
    missing, empty, truncated, corrupt, unsupported or too large files (ImageTooLargeError,
    UnsupportedImageError for the last two).
    """
    path = Path(path)

    def fail(reason: str) -> ImageReadError:
        return ImageReadError(f"{path}: {one_line(reason)}")

    with _PixelLimit(max_pixels) as limit:
        im, file_format, width, height = _open_checked(path, max_pixels)
        with im:
            try:
                im.seek(0)
                wide = _wide_rawmode(im)  # from the tile list, which load() empties
                im.load()
                if wide is None:
                    pixels, alpha, bit_depth, was_gray = pil_to_arrays(im)
                else:
                    pixels, alpha, was_gray = _read_wide(path, wide, high=np.asarray(im))
                    bit_depth = 16
            except Image.DecompressionBombError:
                raise fail(f"image too large (more than {max_pixels} pixels)") from None
            except MemoryError:
                raise fail(f"not enough memory to decode a {width}x{height} image") from None
            except Exception as error:
                reason = str(error) or type(error).__name__
                raise fail(f"truncated or corrupt image data ({reason})") from None
            exif, orientation = _exif_of(im)
            icc = im.info.get("icc_profile") or None
            if im.mode == "CMYK" or (icc is not None and icc[16:20] == b"CMYK"):
                icc = None

    pixels = np.ascontiguousarray(apply_exif_orientation(pixels, orientation))
    if alpha is not None:
        alpha = np.ascontiguousarray(apply_exif_orientation(alpha, orientation))
    return LoadedImage(pixels=pixels, alpha=alpha, format=file_format, bit_depth=bit_depth,
                       was_gray=was_gray, icc_profile=icc, exif=exif, path=path, notes=limit.notes)


# ----------------------------------------------------------------------------------------------
# writing


def format_from_path(path: PathLike) -> str:
    """"JPEG", "PNG", "WEBP", "BMP" or "TIFF" from a file name's suffix; ImageWriteError if unknown."""
    fmt = _SUFFIX_TO_FORMAT.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: unknown image file suffix (use .jpg, .png, .webp, .bmp or .tif)")
    return fmt


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


#: Rows of 16-bit samples filtered and compressed at a time (memory stays a few MB per band).
_BAND_ROWS = 128


def _write_chunk(handle: BinaryIO, kind: bytes, data: bytes) -> None:
    handle.write(_png_chunk(kind, data))


def _write_png16(handle: BinaryIO, samples: np.ndarray, icc_profile: Optional[bytes], exif: Optional[bytes]) -> None:
    """Write [H, W, C] uint16 (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a 16-bit PNG to ``handle``.

    Every row uses the Paeth filter; rows are filtered and compressed a band at a time and written
    as they come (several IDAT chunks), so memory does not grow with the image."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    handle.write(b"\x89PNG\r\n\x1a\n")
    _write_chunk(handle, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    if icc_profile:
        _write_chunk(handle, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        _write_chunk(handle, b"eXIf", exif[len(_EXIF_PREFIX):] if exif.startswith(_EXIF_PREFIX) else exif)
    bpp = channels * 2
    compressor = zlib.compressobj(6)
    above = np.zeros(width * bpp, dtype=np.int16)  # the row above the first row: zeros
    for top in range(0, height, _BAND_ROWS):
        rows = samples[top:top + _BAND_ROWS].astype(">u2").view(np.uint8).reshape(-1, width * bpp).astype(np.int16)
        up = np.concatenate([above[None], rows[:-1]])
        left = np.zeros_like(rows)
        left[:, bpp:] = rows[:, :-bpp]
        up_left = np.zeros_like(rows)
        up_left[:, bpp:] = up[:, :-bpp]
        estimate = left + up - up_left
        dist_left, dist_up, dist_up_left = (np.abs(estimate - v) for v in (left, up, up_left))
        predictor = np.where((dist_left <= dist_up) & (dist_left <= dist_up_left), left,
                             np.where(dist_up <= dist_up_left, up, up_left))
        filtered = ((rows - predictor) & 0xFF).astype(np.uint8)
        scanlines = np.concatenate([np.full((len(rows), 1), 4, dtype=np.uint8), filtered], axis=1)
        compressed = compressor.compress(scanlines.tobytes())
        if compressed:
            _write_chunk(handle, b"IDAT", compressed)
        above = rows[-1]
    _write_chunk(handle, b"IDAT", compressor.flush())
    _write_chunk(handle, b"IEND", b"")


def _write_tiff16(handle: BinaryIO, samples: np.ndarray, icc_profile: Optional[bytes], compress: bool = True) -> None:
    """Write [H, W, C] uint16 (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a little-endian TIFF to
    ``handle`` (seekable): one strip, Adobe deflate compression with horizontal differencing
    (predictor 2), or uncompressed when ``compress`` is False. The strip is written a band of rows
    at a time; the directory follows it."""
    height, width, channels = samples.shape
    data_start = 8
    handle.write(b"II" + struct.pack("<HI", 42, 0))  # the directory's offset is filled in at the end
    compressor = zlib.compressobj(6) if compress else None
    strip_length = 0
    for top in range(0, height, _BAND_ROWS):
        band = samples[top:top + _BAND_ROWS].astype("<u2")
        if compressor is not None:
            band[:, 1:] -= samples[top:top + _BAND_ROWS, :-1].astype("<u2")  # wraps modulo 65536, as predictor 2 expects
            data = compressor.compress(band.tobytes())
        else:
            data = band.tobytes()
        handle.write(data)
        strip_length += len(data)
    if compressor is not None:
        data = compressor.flush()
        handle.write(data)
        strip_length += len(data)
    if strip_length & 1:
        handle.write(b"\x00")

    extra = bytearray()
    extra_start = data_start + strip_length + (strip_length & 1)

    def put_extra(blob: bytes) -> int:
        offset = extra_start + len(extra)
        extra.extend(blob)
        if len(extra) & 1:
            extra.append(0)
        return offset

    SHORT, LONG, RATIONAL, UNDEFINED = 3, 4, 5, 7
    entries = []  # (tag, type, count, value bytes: 4 bytes inline or an offset)

    def tag(number: int, kind: int, values: Any) -> None:
        if kind == UNDEFINED:
            blob, count = bytes(values), len(values)
        elif kind == RATIONAL:
            blob, count = struct.pack("<II", *values), 1
        else:
            values = list(values)
            blob, count = struct.pack("<" + ("H" if kind == SHORT else "I") * len(values), *values), len(values)
        field = blob.ljust(4, b"\x00") if len(blob) <= 4 else struct.pack("<I", put_extra(blob))
        entries.append((number, kind, count, field))

    tag(256, LONG, [width])
    tag(257, LONG, [height])
    tag(258, SHORT, [16] * channels)
    tag(259, SHORT, [8 if compress else 1])  # Adobe deflate or none
    tag(262, SHORT, [2 if channels >= 3 else 1])  # RGB or BlackIsZero
    tag(273, LONG, [data_start])
    tag(277, SHORT, [channels])
    tag(278, LONG, [height])
    tag(279, LONG, [strip_length])
    tag(282, RATIONAL, (72, 1))
    tag(283, RATIONAL, (72, 1))
    tag(284, SHORT, [1])  # chunky
    tag(296, SHORT, [2])  # inch
    tag(317, SHORT, [2 if compress else 1])  # horizontal differencing or none
    if channels in (2, 4):
        tag(338, SHORT, [2])  # unassociated alpha
    if icc_profile:
        tag(34675, UNDEFINED, icc_profile)
    ifd_offset = extra_start + len(extra)
    handle.write(bytes(extra))
    handle.write(struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", number, kind, count) + field for number, kind, count, field in entries
    ) + struct.pack("<I", 0))
    handle.seek(4)
    handle.write(struct.pack("<I", ifd_offset))
    handle.seek(0, io.SEEK_END)


def _icc_fits(icc_profile: Optional[bytes], gray: bool) -> bool:
    if not icc_profile or len(icc_profile) < 20:
        return False
    return icc_profile[16:20] == (b"GRAY" if gray else b"RGB ")


def _exif_for_output(exif: Optional[bytes]) -> Optional[bytes]:
    """EXIF bytes (with the b"Exif\\0\\0" prefix) without an orientation tag, or None (also for an
    EXIF block that Pillow finds corrupt: it is not copied into the output)."""
    if not exif:
        return None
    exif = bytes(exif)
    if not exif.startswith(_EXIF_PREFIX):
        exif = _EXIF_PREFIX + exif
    try:
        with warnings.catch_warnings(record=True) as complaints:
            warnings.simplefilter("always")
            parsed = Image.Exif()
            parsed.load(exif)
            if _EXIF_ORIENTATION in parsed:
                del parsed[_EXIF_ORIENTATION]
                exif = parsed.tobytes()
        if complaints:
            return None
    except Exception:
        return None
    return exif


def _encode_into(handle: BinaryIO, fmt: str, samples: np.ndarray, quality: int, icc_profile: Optional[bytes],
                 exif: Optional[bytes]) -> None:
    """Write [H, W, C] uint8/uint16 samples (C = 1, 2, 3, 4) in ``fmt`` to ``handle``."""
    if samples.dtype == np.uint16:
        if fmt == "PNG":
            return _write_png16(handle, samples, icc_profile, exif)
        return _write_tiff16(handle, samples, icc_profile)
    channels = samples.shape[2]
    if fmt == "WEBP" and channels <= 2:  # WebP has no grey modes
        colour = np.repeat(samples[:, :, :1], 3, axis=2)
        samples = np.concatenate([colour, samples[:, :, 1:]], axis=2)
        channels = samples.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    im = Image.fromarray(samples[:, :, 0] if channels == 1 else samples, mode)
    options: dict = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif and fmt in ("JPEG", "PNG", "WEBP"):
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=quality, lossless=quality >= 100, exact=True, method=4)
    elif fmt == "TIFF" and features.check("libtiff"):
        options["compression"] = "tiff_adobe_deflate"
    im.save(handle, format=fmt, **options)


def write_image(
    path: PathLike,
    pixels: Any,
    alpha: Optional[np.ndarray] = None,
    format: Optional[str] = None,
    bit_depth: int = 8,
    quality: int = 95,
    *,
    gray: bool = False,
    icc_profile: Optional[bytes] = None,
    exif: Optional[bytes] = None,
    overwrite: bool = False,
) -> Path:
    """Write an image file atomically (temporary file in the same folder, then os.replace).

    pixels: [H, W, 3] RGB or [H, W] grey (anything ``to_rgb_array`` accepts), uint8, uint16 or
        float in [0, 1]. A 4th (or 2nd) channel is taken as alpha unless ``alpha`` is given.
    alpha: [H, W] transparency (same value conventions), kept for PNG, WebP and TIFF, dropped
        for JPEG and BMP.
    format: "JPEG", "PNG", "WEBP", "BMP" or "TIFF"; None picks it from the suffix of ``path``.
    bit_depth: 8 or 16. 16 is kept for PNG and TIFF; other formats store 8 bits.
    quality: 1..100 for JPEG and WebP (100 = lossless WebP; JPEG >= 90 uses 4:4:4 chroma).
    gray: store one grey channel (BT.601 luma of the RGB pixels); pass ``LoadedImage.was_gray``
        to keep grey files grey. [H, W] pixels are stored grey too. (16-bit grey + alpha
        TIFF is stored as RGBA, since Pillow cannot read that layout back.)
    icc_profile, exif: metadata to embed (e.g. from ``LoadedImage``); an ICC profile is only
        embedded when it matches the stored colour space; EXIF orientation is removed.
    overwrite: replace an existing file; otherwise ImageWriteError if ``path`` exists.
    Returns the path written. Raises ImageWriteError with a one-line message on failure.
    """
    path = Path(path)
    fmt = format_from_path(path) if format is None else format.upper()
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in SUPPORTED_FORMATS:
        raise ImageWriteError(f"{path}: unsupported format {format!r} (use JPEG, PNG, WEBP, BMP or TIFF)")
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"{path}: bit_depth must be 8 or 16, got {bit_depth}")
    if not 1 <= int(quality) <= 100:
        raise ImageWriteError(f"{path}: quality must be in 1..100, got {quality}")
    if not path.parent.is_dir():
        raise ImageWriteError(f"{path}: folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise ImageWriteError(f"{path}: file exists (pass overwrite=True to replace it)")
    try:
        gray = gray or np.ndim(pixels) == 2
        colour, own_alpha = to_rgb_array(pixels)
        if alpha is None:
            alpha = own_alpha
        else:
            alpha, _ = to_rgb_array(alpha)
            alpha = alpha[:, :, 0]
            if alpha.shape != colour.shape[:2]:
                raise ValueError(f"alpha shape {alpha.shape} does not match image shape {colour.shape[:2]}")
    except ValueError as error:
        raise ImageWriteError(f"{path}: {one_line(str(error))}") from None

    depth = bit_depth if fmt in _FORMATS_WITH_16_BIT else 8
    if gray and depth == 16 and fmt == "TIFF" and alpha is not None:
        gray = False  # Pillow cannot read 16-bit grey + alpha TIFF back: store RGBA
    colour = convert_bit_depth(colour, depth)
    planes = [rgb_to_gray(colour)[:, :, None] if gray else colour]
    if alpha is not None and fmt in _FORMATS_WITH_ALPHA:
        planes.append(convert_bit_depth(alpha, depth)[:, :, None])
    samples = np.ascontiguousarray(np.concatenate(planes, axis=2))
    icc = icc_profile if _icc_fits(icc_profile, gray and fmt != "WEBP") else None
    try:  # encoded straight into a temporary file next to path, then moved into place
        with atomic_write(path, overwrite=overwrite) as handle:
            _encode_into(handle, fmt, samples, int(quality), icc, _exif_for_output(exif))
    except FileExistsError:
        raise ImageWriteError(f"{path}: file exists (pass overwrite=True to replace it)") from None
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write file ({error.strerror or error})") from None
    except Exception as error:  # the encoder refused the data (Pillow raises many types)
        raise ImageWriteError(f"{path}: cannot encode {fmt} ({one_line(str(error))})") from None
    return path
