"""Image file reading/writing: formats, bit depths, alpha, EXIF orientation, errors, atomic writes."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, features

from faceprior import paths
from faceprior.imaging import io as image_io
from faceprior.imaging import pixels
from faceprior.imaging.io import ImageReadError, ImageWriteError, apply_exif_orientation, read_image, write_image
from faceprior.imaging.pixels import convert_bit_depth, to_rgb_array


def smooth_rgb(height: int = 48, width: int = 64, dtype=np.uint8) -> np.ndarray:
    """A smooth colour image [H, W, 3] (JPEG-friendly) in the full range of ``dtype``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([x / (width - 1), y / (height - 1), 0.5 + 0.4 * np.sin(x / 9.0 + y / 13.0)], axis=2)
    return pixels.from_float01(image, dtype)


def random_image(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, int(pixels.dtype_max(dtype)) + 1, size=shape).astype(dtype)


def assert_one_line_error(error: Exception, path: Path) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".bmp", "BMP"), (".tif", "TIFF"), (".webp", "WEBP")])
def test_lossless_round_trip_8bit(tmp_path, suffix, fmt):
    pixels = random_image((31, 45, 3), np.uint8)
    path = write_image(tmp_path / f"image{suffix}", pixels, quality=100)  # quality 100: lossless WebP
    loaded = read_image(path)
    assert loaded.format == fmt and loaded.bit_depth == 8 and not loaded.was_gray
    assert loaded.pixels.dtype == np.uint8 and loaded.alpha is None
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_jpeg_round_trip_is_close(tmp_path):
    pixels = smooth_rgb()
    loaded = read_image(write_image(tmp_path / "image.jpg", pixels, quality=95))
    assert loaded.format == "JPEG" and loaded.pixels.shape == pixels.shape
    assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 1.5


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_round_trip_exact(tmp_path, suffix, channels):
    samples = random_image((23, 37, channels), np.uint16, seed=channels)
    colour = samples[:, :, :3] if channels >= 3 else np.repeat(samples[:, :, :1], 3, axis=2)
    alpha = samples[:, :, -1] if channels in (2, 4) else None
    path = write_image(tmp_path / f"image{suffix}", colour, alpha, bit_depth=16, gray=channels <= 2)
    loaded = read_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(loaded.pixels, colour)
    if alpha is None:
        assert loaded.alpha is None
    else:
        assert loaded.alpha.dtype == np.uint16
        np.testing.assert_array_equal(loaded.alpha, alpha)
    if channels == 1 or (channels == 2 and suffix == ".png"):
        assert loaded.was_gray


def test_16bit_tiff_uncompressed_from_other_writers(tmp_path):
    """Uncompressed 16-bit RGB TIFF goes through Pillow's raw decoder, not libtiff."""
    samples = random_image((17, 29, 3), np.uint16, seed=5)
    path = tmp_path / "raw.tif"
    with open(path, "wb") as handle:
        image_io._write_tiff16(handle, samples, None, compress=False)
    np.testing.assert_array_equal(read_image(path).pixels, samples)


def test_16bit_gray_png_written_by_pillow(tmp_path):
    gray = random_image((19, 21), np.uint16, seed=3)
    Image.fromarray(gray).save(tmp_path / "gray16.png")
    loaded = read_image(tmp_path / "gray16.png")
    assert loaded.bit_depth == 16 and loaded.was_gray
    np.testing.assert_array_equal(loaded.pixels, np.repeat(gray[:, :, None], 3, axis=2))


def test_16bit_to_8bit_formats(tmp_path):
    pixels16 = convert_bit_depth(smooth_rgb(), 16)
    assert pixels16.dtype == np.uint16 and pixels16.max() > 255 * 200
    loaded = read_image(write_image(tmp_path / "image.bmp", pixels16, bit_depth=16))
    assert loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels, smooth_rgb())


def test_float_input_is_scaled(tmp_path):
    pixels = np.linspace(0.0, 1.0, 20 * 30 * 3, dtype=np.float32).reshape(20, 30, 3)
    loaded = read_image(write_image(tmp_path / "f.png", pixels, bit_depth=16))
    np.testing.assert_array_equal(loaded.pixels, np.rint(pixels * 65535).astype(np.uint16))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_rgba_alpha_kept(tmp_path, suffix):
    pixels = random_image((21, 33, 3), np.uint8, seed=1)
    alpha = random_image((21, 33), np.uint8, seed=2)
    loaded = read_image(write_image(tmp_path / f"rgba{suffix}", pixels, alpha, quality=100))
    np.testing.assert_array_equal(loaded.alpha, alpha)
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_alpha_dropped_for_jpeg(tmp_path):
    rgba = np.concatenate([smooth_rgb(), np.full((48, 64, 1), 128, np.uint8)], axis=2)
    loaded = read_image(write_image(tmp_path / "rgba.jpg", rgba))
    assert loaded.alpha is None and loaded.pixels.shape == (48, 64, 3)


def test_grayscale_read_and_kept_gray(tmp_path):
    gray = random_image((25, 35), np.uint8, seed=4)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    loaded = read_image(tmp_path / "gray.png")
    assert loaded.was_gray and loaded.bit_depth == 8 and loaded.pixels.shape == (25, 35, 3)
    np.testing.assert_array_equal(loaded.pixels, np.repeat(gray[:, :, None], 3, axis=2))
    out = write_image(tmp_path / "out.png", loaded.pixels, gray=loaded.was_gray)
    with Image.open(out) as im:
        assert im.mode == "L"
    np.testing.assert_array_equal(read_image(out).pixels, loaded.pixels)
    out_jpg = write_image(tmp_path / "out.jpg", loaded.pixels, gray=True)
    with Image.open(out_jpg) as im:
        assert im.mode == "L"


def test_one_bit_and_gray_alpha(tmp_path):
    bits = np.zeros((10, 16), dtype=bool)
    bits[:, ::2] = True
    Image.fromarray(bits).save(tmp_path / "bits.png")
    loaded = read_image(tmp_path / "bits.png")
    assert loaded.was_gray
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], bits.astype(np.uint8) * 255)

    la = np.stack([random_image((9, 11), np.uint8, 1), random_image((9, 11), np.uint8, 2)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    loaded = read_image(tmp_path / "la.png")
    assert loaded.was_gray
    np.testing.assert_array_equal(loaded.pixels[:, :, 2], la[:, :, 0])
    np.testing.assert_array_equal(loaded.alpha, la[:, :, 1])


def test_palette_png_with_transparency(tmp_path):
    indices = np.array([[0, 1, 2, 1], [2, 1, 0, 0]], dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "palette.png", transparency=1)
    loaded = read_image(tmp_path / "palette.png")
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(loaded.pixels, colours[indices])
    np.testing.assert_array_equal(loaded.alpha, np.where(indices == 1, 0, 255))


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    Image.new("CMYK", (24, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    loaded = read_image(tmp_path / "cmyk.jpg")
    assert loaded.format == "JPEG" and loaded.pixels.shape == (16, 24, 3) and loaded.icc_profile is None
    np.testing.assert_allclose(loaded.pixels.reshape(-1, 3).mean(0), [255, 0, 0], atol=3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    stored = random_image((5, 7, 3), np.uint8, seed=orientation)
    im = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(apply_exif_orientation(stored, orientation), expected)


def test_jpeg_exif_orientation_6(tmp_path):
    stored = np.zeros((40, 80, 3), dtype=np.uint8)
    stored[:, :40] = (255, 0, 0)  # left half red
    stored[:, 40:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "faceprior-test"  # Make, to check the rest of EXIF is carried over
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    loaded = read_image(tmp_path / "rotated.jpg")
    assert loaded.pixels.shape == (80, 40, 3)
    # rotating clockwise puts the stored left (red) half on top
    assert loaded.pixels[:35, :, 0].min() > 200 and loaded.pixels[:35, :, 2].max() < 60
    assert loaded.pixels[45:, :, 2].min() > 200 and loaded.pixels[45:, :, 0].max() < 60
    # the orientation tag is removed, other tags are kept through a write
    for name in ("out.jpg", "out.png", "out.webp"):
        out = write_image(tmp_path / name, loaded.pixels, exif=loaded.exif)
        with Image.open(out) as im:
            written = im.getexif()
            assert written.get(0x0112, 1) == 1
            assert written.get(0x010F) == "faceprior-test"
        assert read_image(out).pixels.shape == (80, 40, 3)


def test_write_removes_orientation_from_given_exif(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    out = write_image(tmp_path / "o.jpg", smooth_rgb(), exif=exif.tobytes())
    assert read_image(out).pixels.shape == (48, 64, 3)


@pytest.mark.skipif(not features.check("littlecms2"), reason="Pillow built without littlecms2")
def test_icc_profile_carried_over(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(smooth_rgb()).save(tmp_path / "icc.jpg", icc_profile=icc)
    loaded = read_image(tmp_path / "icc.jpg")
    assert loaded.icc_profile == icc
    for name, bit_depth in (("a.png", 8), ("b.png", 16), ("c.tif", 16), ("d.webp", 8)):
        out = write_image(tmp_path / name, loaded.pixels, bit_depth=bit_depth, icc_profile=loaded.icc_profile)
        assert read_image(out).icc_profile == icc
    # an RGB profile is not embedded in a grey file
    out = write_image(tmp_path / "gray.png", loaded.pixels, gray=True, icc_profile=icc)
    assert read_image(out).icc_profile is None


def test_unicode_and_space_path(tmp_path):
    folder = tmp_path / "dossier été 写真"
    folder.mkdir()
    pixels = random_image((8, 9, 3), np.uint8)
    path = write_image(folder / "visage n°1 – ß.png", pixels)
    np.testing.assert_array_equal(read_image(str(path)).pixels, pixels)


# ---------------------------------------------------------------------------------------------
# errors


def test_missing_empty_and_folder(tmp_path):
    for path, reason in ((tmp_path / "nope.png", "not found"), (tmp_path, "folder")):
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(path)
        assert_one_line_error(info.value, path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as info:
        read_image(empty)
    assert_one_line_error(info.value, empty)


def test_text_file_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\nsecond line\n")
    with pytest.raises(ImageReadError, match="not a recognised image") as info:
        read_image(path)
    assert_one_line_error(info.value, path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    write_image(full, random_image((64, 64, 3), np.uint8), quality=90)
    data = full.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt") as info:
        read_image(path)
    assert_one_line_error(info.value, path)
    header_only = tmp_path / f"header{suffix}"
    header_only.write_bytes(data[:20])
    with pytest.raises(ImageReadError) as info:
        read_image(header_only)
    assert_one_line_error(info.value, header_only)


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height RGB pixels (its data covers one row only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [30000, 12000])  # above Pillow's own limit, and between limits
def test_decompression_bomb_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_claimed_size(side, side))
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match="too large") as info:
        read_image(path)
    assert time.perf_counter() - start < 0.5
    assert_one_line_error(info.value, path)


def test_configurable_pixel_limit(tmp_path):
    path = write_image(tmp_path / "small.png", random_image((50, 100, 3), np.uint8))
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path, max_pixels=4999)
    assert read_image(path, max_pixels=5000).pixels.shape == (50, 100, 3)
    assert read_image(path, max_pixels=None).pixels.shape == (50, 100, 3)
    assert Image.MAX_IMAGE_PIXELS is not None  # the global Pillow setting is restored


# ---------------------------------------------------------------------------------------------
# writing: overwrite protection, atomicity, bad input


def test_overwrite_protection(tmp_path):
    first = random_image((8, 8, 3), np.uint8, seed=1)
    second = random_image((8, 8, 3), np.uint8, seed=2)
    path = write_image(tmp_path / "x.png", first)
    with pytest.raises(ImageWriteError, match="exists") as info:
        write_image(path, second)
    assert_one_line_error(info.value, path)
    np.testing.assert_array_equal(read_image(path).pixels, first)
    write_image(path, second, overwrite=True)
    np.testing.assert_array_equal(read_image(path).pixels, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    old = random_image((8, 8, 3), np.uint8, seed=1)
    write_image(path, old)

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paths.os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError, match="No space left") as info:
        write_image(path, random_image((8, 8, 3), np.uint8, seed=2), overwrite=True)
    assert_one_line_error(info.value, path)
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "new.png", old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no temp files, no new.png
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(path).pixels, old)


def test_write_errors(tmp_path):
    pixels = random_image((8, 8, 3), np.uint8)
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "x.gif", pixels)
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "missing" / "x.png", pixels)
    with pytest.raises(ImageWriteError, match="range"):
        write_image(tmp_path / "x.png", pixels.astype(np.float32))  # 0..255 floats
    with pytest.raises(ImageWriteError, match="alpha shape"):
        write_image(tmp_path / "x.png", pixels, alpha=np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# in-memory inputs


def test_to_rgb_array_numpy_inputs():
    gray = random_image((6, 7), np.uint16)
    pixels, alpha = to_rgb_array(gray)
    assert pixels.shape == (6, 7, 3) and pixels.dtype == np.uint16 and alpha is None
    np.testing.assert_array_equal(pixels[:, :, 2], gray)

    rgba = random_image((6, 7, 4), np.uint8)
    pixels, alpha = to_rgb_array(rgba)
    np.testing.assert_array_equal(pixels, rgba[:, :, :3])
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])

    pixels, alpha = to_rgb_array(np.full((3, 4, 2), 0.25, dtype=np.float64))
    assert pixels.dtype == np.float32 and pixels.shape == (3, 4, 3) and alpha.shape == (3, 4)

    for bad in (np.zeros((3, 4, 5), np.uint8), np.zeros((3,), np.uint8), np.zeros((3, 4), np.int32),
                np.full((3, 4, 3), np.nan, np.float32), np.full((3, 4, 3), 2.0, np.float32)):
        with pytest.raises(ValueError):
            to_rgb_array(bad)


def test_to_rgb_array_pil_inputs():
    rgba = random_image((6, 7, 4), np.uint8)
    pixels, alpha = to_rgb_array(Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(pixels, rgba[:, :, :3])
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    pixels, alpha = to_rgb_array(Image.new("CMYK", (4, 3), (0, 0, 0, 0)))
    assert pixels.shape == (3, 4, 3) and (pixels == 255).all() and alpha is None
    gray16 = random_image((5, 6), np.uint16)
    pixels, _ = to_rgb_array(Image.fromarray(gray16))
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels[:, :, 0], gray16)


def test_convert_bit_depth():
    values = np.array([0, 1, 128, 254, 255], dtype=np.uint8)
    wide = convert_bit_depth(values, 16)
    np.testing.assert_array_equal(wide, values.astype(np.uint16) * 257)
    np.testing.assert_array_equal(convert_bit_depth(wide, 8), values)
    np.testing.assert_array_equal(convert_bit_depth(np.array([0, 128, 129, 385, 65535], np.uint16), 8),
                                  [0, 0, 1, 1, 255])


# ---------------------------------------------------------------------------------------------
# real photos


def test_reads_every_realworld_aligned_image(data_dir):
    folder = data_dir / "realworld-aligned"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    assert paths
    for path in paths:
        loaded = read_image(path)
        assert loaded.pixels.ndim == 3 and loaded.pixels.shape[2] == 3
        assert loaded.pixels.dtype in (np.uint8, np.uint16)


def test_16_bit_files_larger_than_one_band_round_trip(tmp_path):
    """16-bit PNG and TIFF are written a band of rows at a time (bounded memory): images of several
    bands, with an odd number of rows, read back exactly."""
    samples = random_image((3 * 128 + 5, 37, 3), np.uint16, seed=11)
    alpha = random_image((3 * 128 + 5, 37), np.uint16, seed=12)
    for name in ("big.png", "big.tif"):
        write_image(tmp_path / name, samples, alpha=alpha, bit_depth=16)
        loaded = read_image(tmp_path / name)
        np.testing.assert_array_equal(loaded.pixels, samples)
        np.testing.assert_array_equal(loaded.alpha, alpha)
