"""Toned monochrome photos (sepia, cyanotype) are recognised, and their tint is applied."""

from __future__ import annotations

import numpy as np

from faceprior.imaging.tone import photo_tone


def _grey_photo(seed: int = 0, shape=(240, 320)) -> np.ndarray:
    """A grey photo [H, W] float in [0, 1]: a ramp with texture, every brightness present."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.02, 0.98, shape[1])[None, :].repeat(shape[0], axis=0)
    return np.clip(ramp + rng.normal(0, 0.05, shape), 0, 1)


def _sepia(grey: np.ndarray) -> np.ndarray:
    return np.clip(np.stack([grey * 1.07 + 0.02, grey * 0.95 + 0.01, grey * 0.78], axis=-1), 0, 1)


def _cyanotype(grey: np.ndarray) -> np.ndarray:
    return np.clip(np.stack([grey * 0.75, grey * 0.95 + 0.02, grey * 1.1 + 0.05], axis=-1), 0, 1)


def _uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(pixels * 255).astype(np.uint8)


def test_a_sepia_print_is_toned_and_its_tint_is_measured():
    grey = _grey_photo()
    rng = np.random.default_rng(1)
    photo = np.clip(_uint8(_sepia(grey)).astype(int) + rng.integers(-2, 3, grey.shape + (3,)), 0, 255).astype(np.uint8)
    tone = photo_tone(photo)
    assert tone is not None
    levels = np.linspace(0.1, 0.75, 14)
    grey_pixels = np.repeat(levels[:, None], 3, axis=1).astype(np.float32)  # grey in, sepia out
    luma = _sepia(levels) @ np.array([0.299, 0.587, 0.114])
    toned = tone.apply(np.repeat(luma[:, None], 3, axis=1).astype(np.float32))
    np.testing.assert_allclose(toned, _sepia(levels), atol=2.5 / 255)
    assert np.abs(tone.apply(grey_pixels) @ np.array([0.299, 0.587, 0.114]) - levels).max() < 1e-5  # luma kept
    assert photo_tone(_uint8(_cyanotype(grey))) is not None
    noisy = _uint8(_sepia(grey)).astype(float) + rng.normal(0, 6, grey.shape + (3,))  # a print photographed
    assert photo_tone(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)) is not None


def test_colour_grey_and_two_toned_photos_are_not_toned():
    grey = _grey_photo()
    rng = np.random.default_rng(2)
    assert photo_tone(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) is None  # colour
    assert photo_tone(_uint8(np.repeat(grey[..., None], 3, axis=2))) is None  # grey: looks_gray's case
    two = _sepia(grey)
    two[120:] = _cyanotype(grey)[120:]  # two hues at every brightness (top and bottom half)
    assert photo_tone(_uint8(two)) is None
    assert photo_tone(np.zeros((4, 4, 3), np.uint8)) is None  # too small to say


def test_an_unchanged_face_stays_exactly_as_it_was():
    photo = _uint8(_sepia(_grey_photo()))
    tone = photo_tone(photo)
    crop = photo[:64, :64]
    assert np.array_equal(tone.apply_change(crop, crop), crop)
    changed = crop.copy()
    changed[10:20, 10:20] = (200, 60, 60)  # a red patch the model painted
    result = tone.apply_change(changed, crop)
    assert np.array_equal(result[30:], crop[30:])  # elsewhere untouched
    assert photo_tone(np.concatenate([photo[64:], np.pad(result, ((0, 0), (0, 256), (0, 0)), mode="edge")])) is not None
