"""Similarity estimation, affine warping (checked against a numpy bilinear reference) and face alignment."""

from __future__ import annotations

import numpy as np
import pytest

from faceprior.face.align import (
    align_face,
    aligned_crops,
    compose_affine,
    estimate_similarity,
    invert_affine,
    scale_affine,
    warp_affine,
)
from faceprior.face.templates import FFHQ_TEMPLATE_512, scale_template


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def smooth_image(height: int, width: int, channels: int = 3) -> np.ndarray:
    """Smooth float64 image [H, W, C] in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [0.5 + 0.45 * np.sin(x / (7.0 + 3 * c) + y / (11.0 + 2 * c) + c) for c in range(channels)]
    return np.stack(planes, axis=2)


def reference_bilinear(image, matrix, out_h, out_w, border, value):
    """Per-pixel numpy bilinear warp (OpenCV semantics) of a float [H, W, C] image."""
    height, width, channels = image.shape
    inverse = invert_affine(matrix)
    out = np.zeros((out_h, out_w, channels))

    def fetch(yy, xx):
        if border == "constant":
            if 0 <= yy < height and 0 <= xx < width:
                return image[yy, xx]
            return np.full(channels, value)
        if border == "replicate":
            return image[min(max(yy, 0), height - 1), min(max(xx, 0), width - 1)]
        def mirror(i, n):  # reflect about the image edge: -1 -> 0, n -> n - 1
            i = i % (2 * n)
            return 2 * n - 1 - i if i >= n else i
        return image[mirror(yy, height), mirror(xx, width)]

    for v in range(out_h):
        for u in range(out_w):
            x, y = inverse @ np.array([u, v, 1.0])
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            fx, fy = x - x0, y - y0
            out[v, u] = ((1 - fy) * ((1 - fx) * fetch(y0, x0) + fx * fetch(y0, x0 + 1))
                         + fy * ((1 - fx) * fetch(y0 + 1, x0) + fx * fetch(y0 + 1, x0 + 1)))
    return out


# ---------------------------------------------------------------------------------------------
# transforms


def test_estimate_similarity_recovers_known_transform():
    rng = np.random.default_rng(0)
    truth = similarity(0.7, 1.9, 12.5, -30.25)
    src = rng.uniform(0, 300, size=(5, 2))
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(estimate_similarity(src, dst), truth, atol=1e-10)
    np.testing.assert_allclose(estimate_similarity(dst, src), invert_affine(truth), atol=1e-10)


def test_estimate_similarity_least_squares_and_no_reflection():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(5, 2))
    mirrored = src * [-1.0, 1.0]
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation, never a reflection
    # least squares: the residual is not improved by perturbing the parameters
    dst = src @ similarity(0.2, 0.8, 5, 6)[:, :2].T + rng.normal(0, 2.0, size=(5, 2))
    best = estimate_similarity(src, dst)

    def residual(m):
        return ((src @ m[:, :2].T + m[:, 2] - dst) ** 2).sum()

    a, b = best[0, 0], best[1, 0]
    for da, db, dt in [(1e-3, 0, 0), (0, 1e-3, 0), (0, 0, 1e-2), (-1e-3, 1e-3, -1e-2)]:
        moved = np.array([[a + da, -(b + db), best[0, 2] + dt], [b + db, a + da, best[1, 2] - dt]])
        assert residual(moved) > residual(best)
    with pytest.raises(ValueError):
        estimate_similarity(np.ones((5, 2)), dst)
    with pytest.raises(ValueError):
        estimate_similarity(src[:, :1], dst)


def test_invert_compose_and_scale_affine():
    matrix = similarity(-1.1, 0.37, 40.0, 2.0)
    np.testing.assert_allclose(compose_affine(invert_affine(matrix), matrix), np.eye(2, 3), atol=1e-12)
    # pixel-centre resize convention: image edges map to image edges (-0.5 -> -0.5, W - 0.5 ->
    # 3 W - 0.5), pixel centres to the centres of the 3 x 3 blocks
    np.testing.assert_allclose(scale_affine(3.0) @ [-0.5, 9.5, 1.0], [-0.5, 29.5])
    np.testing.assert_allclose(scale_affine(3.0) @ [0.0, 1.0, 1.0], [1.0, 4.0])
    np.testing.assert_allclose(scale_affine(2.0) @ [0.0, 1.0, 1.0], [0.5, 2.5])


# ---------------------------------------------------------------------------------------------
# warping


def test_integer_translation_shifts_array_exactly():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    out = warp_affine(image, [[1, 0, 5], [0, 1, -3]], (30, 40), border_value=7)
    np.testing.assert_array_equal(out[:27, 5:], image[3:, :35])
    assert (out[:, :5] == 7).all() and (out[27:] == 7).all()


def test_upsample_by_two_hand_computed():
    image = np.array([[0.0, 4.0], [8.0, 12.0]])
    out = warp_affine(image, [[2, 0, 0], [0, 2, 0]], 4, border="replicate")
    # output (u, v) samples the source at (u / 2, v / 2)
    assert out[0, 0] == 0.0 and out[2, 2] == 12.0
    assert out[1, 1] == pytest.approx(6.0) and out[0, 1] == pytest.approx(2.0)
    assert out[1, 0] == pytest.approx(4.0) and out[3, 3] == pytest.approx(12.0)


@pytest.mark.parametrize("border", ["constant", "replicate", "reflect"])
def test_warp_matches_numpy_reference(border):
    rng = np.random.default_rng(3)
    image = rng.random((23, 31, 3))
    for trial in range(3):
        matrix = similarity(rng.uniform(-3, 3), rng.uniform(0.6, 1.6), rng.uniform(-10, 10), rng.uniform(-10, 10))
        expected = reference_bilinear(image, matrix, 19, 27, border, 0.3)
        got64 = warp_affine(image, matrix, (19, 27), border=border, border_value=0.3, antialias=False)
        np.testing.assert_allclose(got64, expected, atol=1e-9)
        got32 = warp_affine(image.astype(np.float32), matrix, (19, 27), border=border, border_value=0.3,
                            antialias=False)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, expected, atol=2e-5)


def test_uint16_and_gray_inputs_keep_dtype_and_shape():
    image = (smooth_image(20, 24, 1)[:, :, 0] * 65535).round().astype(np.uint16)
    matrix = similarity(0.3, 1.2, 1.0, -2.0)
    out = warp_affine(image, matrix, (18, 22), border="replicate", antialias=False)
    assert out.dtype == np.uint16 and out.shape == (18, 22)
    expected = reference_bilinear(image[:, :, None].astype(np.float64), matrix, 18, 22, "replicate", 0)[:, :, 0]
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.51  # rounding + float32


def test_warp_then_inverse_round_trip():
    image = smooth_image(80, 90)
    matrix = similarity(0.4, 1.3, 20.0, -15.0)
    forward = warp_affine(image, matrix, (140, 140), border="replicate")
    back = warp_affine(forward, invert_affine(matrix), (80, 90), border="replicate")
    interior = (slice(25, 55), slice(25, 65))  # inside the forward crop
    assert np.abs(back[interior] - image[interior]).max() < 5e-3


def test_batched_matrices_and_images():
    image = smooth_image(50, 60).astype(np.float32)
    matrices = np.stack([similarity(0.1 * i, 0.9 + 0.1 * i, 3 * i, -2 * i) for i in range(3)])
    batch = warp_affine(image, matrices, (32, 40), border="reflect")
    assert batch.shape == (3, 32, 40, 3)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], warp_affine(image, matrices[i], (32, 40), border="reflect"))
    images = np.stack([image, image[::-1].copy(), 1 - image])
    batch = warp_affine(images, matrices, 16)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], warp_affine(images[i], matrices[i], 16))


def test_antialias_when_shrinking():
    checker = (np.indices((400, 400)).sum(axis=0) % 2).astype(np.float32)[:, :, None]
    matrix = similarity(0.2, 0.25, 0.0, 20.0)
    smooth = warp_affine(checker, matrix, 90, border="reflect")
    aliased = warp_affine(checker, matrix, 90, border="reflect", antialias=False)
    assert smooth.std() < 0.02 and abs(smooth.mean() - 0.5) < 0.01
    assert aliased.std() > 0.1
    # block averaging keeps the geometry: a linear ramp stays exactly linear
    y, x = np.mgrid[0:400, 0:400].astype(np.float64)
    ramp = (0.001 * x + 0.002 * y + 0.1)[:, :, None]
    matrix = similarity(0.5, 1 / 4.5, 30.0, 10.0)
    out = warp_affine(ramp, matrix, 60)
    v, u = np.mgrid[0:60, 0:60].astype(np.float64)
    inverse = invert_affine(matrix)
    sx = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]
    sy = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    inside = (sx > 6) & (sx < 393) & (sy > 6) & (sy < 393)
    assert inside.sum() > 1000
    np.testing.assert_allclose(out[:, :, 0][inside], (0.001 * sx + 0.002 * sy + 0.1)[inside], atol=1e-9)


def test_bad_arguments():
    image = np.zeros((5, 5, 3))
    with pytest.raises(ValueError):
        warp_affine(image, np.eye(3), 4)
    with pytest.raises(ValueError):
        warp_affine(image, np.eye(2, 3), 4, border="wrap")


# ---------------------------------------------------------------------------------------------
# alignment


def test_align_face_puts_landmarks_on_template():
    size = 128
    template = scale_template(FFHQ_TEMPLATE_512, 512, size)
    face_to_image = similarity(0.35, 2.2, 140.0, 60.0)  # crop coordinates -> photo coordinates
    landmarks = template @ face_to_image[:, :2].T + face_to_image[:, 2]
    y, x = np.mgrid[0:500, 0:520].astype(np.float64)
    photo = np.zeros((500, 520))
    for lx, ly in landmarks:
        photo += np.exp(-((x - lx) ** 2 + (y - ly) ** 2) / (2 * 4.0 ** 2))
    photo = np.clip(photo, 0, 1)
    rgb = np.repeat(photo[:, :, None], 3, axis=2).astype(np.float32)

    crop, matrix = align_face(rgb, landmarks, out_size=size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.float32
    np.testing.assert_allclose(matrix, invert_affine(face_to_image), atol=1e-9)
    for tx, ty in template:  # each blob peaks at its template position
        window = crop[int(ty) - 4:int(ty) + 6, int(tx) - 4:int(tx) + 6, 0]
        peak_y, peak_x = np.unravel_index(window.argmax(), window.shape)
        assert abs(int(ty) - 4 + peak_y - ty) <= 1 and abs(int(tx) - 4 + peak_x - tx) <= 1


def test_align_face_default_border_is_facexlib_grey():
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    landmarks = scale_template(FFHQ_TEMPLATE_512, 512, 40) - 12  # face at the corner: crop shows outside
    crop, _ = align_face(image, landmarks, out_size=64)
    np.testing.assert_array_equal(crop[0, 0], [132, 133, 135])
    crop16, _ = align_face(image.astype(np.uint16), landmarks, out_size=64)
    np.testing.assert_array_equal(crop16[0, 0], np.array([132, 133, 135]) * 257)


def test_aligned_crops_mirror_the_photo_where_a_crop_leaves_it():
    """The restorer's crops: beyond the photo's edge the photo mirrored (what FFHQ/CelebA-HQ-trained
    models have seen), not facexlib's grey band; "grey" keeps the official fill."""
    photo = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    shift = np.array([[1.0, 0.0, 6.0], [0.0, 1.0, 0.0]])  # the crop starts 6 px left of the photo
    crop = aligned_crops(photo, shift[None], 40)[0]
    np.testing.assert_array_equal(crop[:, 6:], photo[:, :34])
    np.testing.assert_array_equal(crop[:, :6], photo[:, 5::-1])  # mirrored about the edge
    grey = aligned_crops(photo, shift[None], 40, border="grey")[0]
    np.testing.assert_array_equal(grey[:, :6], np.broadcast_to([132, 133, 135], (40, 6, 3)))
    np.testing.assert_array_equal(grey[:, 6:], crop[:, 6:])
    assert aligned_crops(photo, np.zeros((0, 2, 3)), 40).shape == (0, 40, 40, 3)
    with pytest.raises(ValueError, match="border"):
        aligned_crops(photo, shift[None], 40, border="black")
