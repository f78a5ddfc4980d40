"""Soft face masks, pasting faces back (exactness outside masks, no seams, overlaps, upscale),
and background upsampling (Lanczos against Pillow, network upsampler tiling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faceprior.face.align import align_face, warp_affine
from faceprior.face.paste import face_mask, face_to_image_matrix, paste_faces, photo_edge_mask
from faceprior.face.templates import FFHQ_TEMPLATE_512, scale_template
from faceprior.imaging.resize import upscale_lanczos
from faceprior.restoration.upsampling import LanczosUpsampler, NetworkUpsampler, Upsampler


def smooth_photo(height: int = 300, width: int = 400) -> np.ndarray:
    """Smooth float32 RGB photo [H, W, 3] in [0.1, 0.9]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [0.5 + 0.4 * np.sin(x / 37 + y / 53), 0.5 + 0.4 * np.cos(x / 41 - y / 29),
              0.5 + 0.3 * np.sin((x + y) / 61)]
    return np.stack(planes, axis=2).astype(np.float32)


def landmarks_at(x: float, y: float, face_width: float, angle: float = 0.0) -> np.ndarray:
    """Template landmarks of a face about ``face_width`` pixels wide, rotated, placed at (x, y)."""
    points = scale_template(FFHQ_TEMPLATE_512, 512, face_width) - face_width / 2
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) + (x, y)


def untouched_region(shape, align_matrix, size, erosion, upscale=1.0):
    """Pixels of the (upscaled) photo that map into the crop's zero band or outside the crop,
    with one pixel of slack for interpolation (computed independently of paste_faces)."""
    height, width = shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    # upscaled pixel -> original photo pixel -> face pixel
    ox, oy = (x - (upscale - 1) / 2) / upscale, (y - (upscale - 1) / 2) / upscale
    fx = align_matrix[0, 0] * ox + align_matrix[0, 1] * oy + align_matrix[0, 2]
    fy = align_matrix[1, 0] * ox + align_matrix[1, 1] * oy + align_matrix[1, 2]
    distance = np.minimum(np.minimum(fx + 0.5, size - 0.5 - fx), np.minimum(fy + 0.5, size - 0.5 - fy))
    scale = np.sqrt(abs(np.linalg.det(align_matrix[:, :2]))) / upscale  # face px per photo px
    return distance < erosion - 2 * max(scale, 1.0)


# ---------------------------------------------------------------------------------------------
# mask


def test_face_mask_profile():
    mask = face_mask(256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    erosion = 256 / 20
    band = int(np.floor(erosion - 0.5))  # pixel centres within the eroded border
    assert (mask[:band + 1] == 0).all() and (mask[:, -band - 1:] == 0).all()
    assert (mask[80:176, 80:176] == 1).all()
    row = mask[128]
    assert (np.diff(row[:128]) >= 0).all()  # rises monotonically towards the centre
    np.testing.assert_array_equal(mask, mask[::-1, ::-1])
    np.testing.assert_array_equal(mask, mask.T)
    assert (face_mask(64, erosion=0, feather=0) == 1).all()


def test_photo_edge_mask_fades_only_towards_edges_inside_the_photo():
    size = 128
    _, inside = align_face(np.zeros((400, 400, 3)), landmarks_at(200, 200, 100, 0.3), out_size=size)
    assert photo_edge_mask(size, face_to_image_matrix(inside), (400, 400)) is face_mask(size)
    # the crop's top and left edges lie on the photo's edges, its bottom and right inside it
    shifted = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = photo_edge_mask(size, shifted, (300, 200))
    np.testing.assert_array_equal(mask[0, :64], 1.0)      # top edge: restored up to the photo's edge
    np.testing.assert_array_equal(mask[:64, 0], 1.0)      # left edge too
    np.testing.assert_array_equal(mask[-1, 8:], 0.0)      # bottom and right: faded out as before
    np.testing.assert_array_equal(mask[8:, -1], 0.0)      # (less where they meet the photo's edge)
    np.testing.assert_array_equal(mask[64:, 64:], face_mask(size)[64:, 64:])
    # an edge just inside the photo fades partly, a quarter of the eroded band inside fully
    near = photo_edge_mask(size, np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 0.8]]), (300, 400))
    far = photo_edge_mask(size, np.array([[1.0, 0.0, 50.0], [0.0, 1.0, size / 80]]), (300, 400))
    assert 0.0 < near[0, 64] < 1.0 and far[0, 64] == 0.0


def test_a_face_cut_by_the_photos_edge_is_restored_up_to_it():
    """White faces on black whose crops reach above the photo's top: the top row under the face
    is the face, and away from that edge the paste is as smooth as anywhere."""
    background = np.zeros((300, 300, 3), dtype=np.float32)
    white = np.ones((256, 256, 3), np.float32)
    _, level = align_face(background, landmarks_at(150, 97, 200), out_size=256)
    to_image = face_to_image_matrix(level)
    assert -5 < (to_image @ [0.0, -0.5, 1.0])[1] < -2  # the crop's top edge lies just above the photo
    out = paste_faces(background, [(white, level)])
    assert (out[0, 90:210, 0] > 1 - 1e-6).all()
    assert (warp_affine(face_mask(256), to_image, (300, 300))[0, 90:210] == 0).all()  # face_mask: black
    # tilted: the top edge crosses the photo's (above it on the left, inside on the right)
    _, tilted = align_face(background, landmarks_at(150, 110, 200, 0.2), out_size=256)
    gray = paste_faces(background, [(white, tilted)])[:, :, 0]
    steepest = 1 / ((256 / 60) * (200 / 256) * np.sqrt(2 * np.pi))
    assert np.abs(np.diff(gray[8:], axis=0)).max() < 1.2 * steepest
    assert np.abs(np.diff(gray[8:], axis=1)).max() < 1.2 * steepest
    assert gray[0, 80:110].min() > 1 - 1e-6 and gray[0, 140:].max() == 0.0  # restored to the edge, then faded


# ---------------------------------------------------------------------------------------------
# pasting


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_outside_masks_is_exactly_the_input(dtype):
    rng = np.random.default_rng(0)
    full = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    background = (rng.random((200, 260, 3)) * full).astype(dtype)
    size = 128
    faces = []
    for x, y, width, angle in ((90, 100, 110, 0.3), (170, 90, 90, -0.5)):
        _, align_matrix = align_face(background, landmarks_at(x, y, width, angle), out_size=size)
        faces.append((rng.random((size, size, 3)).astype(np.float32), align_matrix))
    out = paste_faces(background, faces)
    assert out.dtype == background.dtype and out.shape == background.shape
    untouched = np.ones(background.shape[:2], dtype=bool)
    for _, align_matrix in faces:
        untouched &= untouched_region(background.shape, align_matrix, size, size / 20)
    assert untouched.sum() > 10000 and (~untouched).sum() > 5000
    np.testing.assert_array_equal(out[untouched], background[untouched])
    assert (out != background).any(axis=2).sum() > 5000  # the faces did land


def test_face_pasted_back_from_its_own_crop_has_no_seam():
    photo = smooth_photo()
    crop, align_matrix = align_face(photo, landmarks_at(200, 150, 160, 0.2), out_size=256)
    out = paste_faces(photo, [(crop, align_matrix)])
    assert np.abs(out - photo).max() < 1e-3  # everywhere, including the mask border

    photo8 = np.rint(photo * 255).astype(np.uint8)
    crop8, align_matrix = align_face(photo8, landmarks_at(200, 150, 160, 0.2), out_size=256)
    out8 = paste_faces(photo8, [(crop8, align_matrix)])
    assert np.abs(out8.astype(int) - photo8).max() <= 1


def test_blend_ramp_is_smooth():
    """A white face on black: the result is the warped soft mask, without steps."""
    background = np.zeros((300, 300, 3), dtype=np.float32)
    _, align_matrix = align_face(background, landmarks_at(150, 150, 200, 0.4), out_size=256)
    out = paste_faces(background, [(np.ones((256, 256, 3), np.float32), align_matrix)])
    gray = out[:, :, 0]
    assert gray.max() == pytest.approx(1.0) and gray.min() == 0.0
    # ramp of 6 sigma = 25.6 crop pixels ~ 20 photo pixels: Gaussian slope <= 1 / (sigma sqrt(2 pi))
    steepest = 1 / ((256 / 60) * (200 / 256) * np.sqrt(2 * np.pi))
    assert np.abs(np.diff(gray, axis=0)).max() < 1.2 * steepest
    assert np.abs(np.diff(gray, axis=1)).max() < 1.2 * steepest


def test_overlapping_faces():
    background = np.full((200, 300, 3), 0.25, dtype=np.float32)
    size = 128
    _, first = align_face(background, landmarks_at(120, 100, 120), out_size=size)
    _, second = align_face(background, landmarks_at(180, 100, 120, 0.3), out_size=size)
    same = np.full((size, size, 3), 0.25, np.float32)
    # faces of the background colour: the overlap must not darken or brighten anything
    out = paste_faces(background, [(same, first), (same, second)])
    np.testing.assert_allclose(out, background, atol=1e-6)
    # later faces go over earlier ones
    red = np.zeros((size, size, 3), np.float32)
    red[:, :, 0] = 1.0
    blue = np.zeros((size, size, 3), np.float32)
    blue[:, :, 2] = 1.0
    out = paste_faces(background, [(red, first), (blue, second)])
    inside_first = warp_affine(face_mask(size), face_to_image_matrix(first), (200, 300)) > 1 - 1e-5
    inside_second = warp_affine(face_mask(size), face_to_image_matrix(second), (200, 300)) > 1 - 1e-5
    both = inside_first & inside_second
    only_first = inside_first & untouched_region(background.shape, second, size, size / 20)
    assert both.sum() > 100 and only_first.sum() > 100
    np.testing.assert_allclose(out[both], np.tile([0, 0, 1.0], (both.sum(), 1)), atol=1e-4)
    np.testing.assert_allclose(out[only_first], np.tile([1.0, 0, 0], (only_first.sum(), 1)), atol=1e-4)


def test_pasting_the_change_keeps_the_photos_own_detail():
    """A face larger in the photo than its crop: pasting the face replaces the photo's fine detail
    with the (upsampled) crop's; pasting its change keeps that detail and adds only what changed."""
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 200, (300, 300, 3), dtype=np.uint8)           # full of detail finer than the crop
    crop, align_matrix = align_face(photo, landmarks_at(150, 150, 220), out_size=64)   # ~3.4x smaller
    # unchanged face: replacing blurs the photo, pasting the change leaves it exactly as it was
    replaced = paste_faces(photo, [(crop, align_matrix)])
    assert np.abs(replaced.astype(int) - photo).mean() > 10  # of the whole photo; the face covers about half
    np.testing.assert_array_equal(paste_faces(photo, [(crop, align_matrix)], inputs=[crop]), photo)
    # a uniform change of +40 levels: the photo plus 40 times the warped mask, detail kept
    changed = crop + np.uint8(40)                                           # no clipping: photo < 200
    out = paste_faces(photo, [(changed, align_matrix)], inputs=[crop]).astype(float)
    mask = warp_affine(face_mask(64), face_to_image_matrix(align_matrix), (300, 300))[:, :, None]
    assert np.abs(out - (photo + 40 * mask)).max() <= 1                    # everywhere
    with pytest.raises(ValueError, match="1 faces but 2 input crops"):
        paste_faces(photo, [(crop, align_matrix)], inputs=[crop, crop])


def test_pasting_changes_of_overlapping_faces_adds_each_once():
    background = np.full((200, 300, 3), 0.25, dtype=np.float32)
    size = 128
    first_crop, first = align_face(background, landmarks_at(120, 100, 120), out_size=size)
    second_crop, second = align_face(background, landmarks_at(180, 100, 120, 0.3), out_size=size)
    out = paste_faces(background, [(first_crop + 0.5, first), (second_crop + 0.5, second)],
                      inputs=[first_crop, second_crop])
    inside_first = warp_affine(face_mask(size), face_to_image_matrix(first), (200, 300)) > 1 - 1e-5
    inside_second = warp_affine(face_mask(size), face_to_image_matrix(second), (200, 300)) > 1 - 1e-5
    both = inside_first & inside_second
    assert both.sum() > 100
    np.testing.assert_allclose(out[both], 0.75, atol=1e-5)   # later over earlier: +0.5 once, not twice


def test_paste_with_upscale():
    photo = smooth_photo(150, 200)
    upscaled = upscale_lanczos(photo, 2.0)
    assert upscaled.shape == (300, 400, 3)
    crop, align_matrix = align_face(photo, landmarks_at(100, 75, 90, -0.2), out_size=256)
    out = paste_faces(upscaled, [(crop, align_matrix)], upscale=2.0)
    assert np.abs(out - upscaled).max() < 3e-3  # the face lands where it came from
    # a visibly different face changes only the face area of the upscaled photo
    out = paste_faces(upscaled, [(np.zeros_like(crop), align_matrix)], upscale=2.0)
    untouched = untouched_region(upscaled.shape, align_matrix, 256, 256 / 20, upscale=2.0)
    np.testing.assert_array_equal(out[untouched], upscaled[untouched])
    centre = np.round(face_to_image_matrix(align_matrix, 2.0) @ [128, 128, 1]).astype(int)
    assert (out[centre[1], centre[0]] == 0).all()


def test_custom_masks_and_faces_outside():
    photo = smooth_photo(120, 160)
    crop, align_matrix = align_face(photo, landmarks_at(80, 60, 70), out_size=64)
    dark = np.zeros_like(crop)
    np.testing.assert_array_equal(paste_faces(photo, [(dark, align_matrix)], masks=[np.zeros((64, 64))]), photo)
    square = np.zeros((64, 64), np.float32)
    square[20:44, 20:44] = 1.0
    out = paste_faces(photo, [(dark, align_matrix)], masks=[square])
    changed = (out != photo).any(axis=2)
    default = (paste_faces(photo, [(dark, align_matrix)]) != photo).any(axis=2)
    assert 0 < changed.sum() < default.sum()
    _, far_away = align_face(photo, landmarks_at(900, 900, 70), out_size=64)
    np.testing.assert_array_equal(paste_faces(photo, [(dark, far_away)]), photo)
    with pytest.raises(ValueError):
        paste_faces(photo, [(dark, align_matrix)], masks=[np.zeros((32, 32))])


# ---------------------------------------------------------------------------------------------
# background upsampling


@pytest.mark.parametrize("scale, size", [(2.0, (30, 40)), (3.0, (20, 30)), (1.5, (30, 40)),
                                         (4.0, (10, 14)), (0.5, (30, 40)), (1.37, (100, 200))])
def test_lanczos_matches_pillow(scale, size):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    image = rng.random(size).astype(np.float32)
    ours = upscale_lanczos(image, scale)
    out_h, out_w = round(size[0] * scale), round(size[1] * scale)
    assert ours.shape == (out_h, out_w) and ours.dtype == np.float32
    pillow = np.asarray(Image.fromarray(image, "F").resize((out_w, out_h), Image.LANCZOS))
    np.testing.assert_allclose(ours, np.clip(pillow, 0, 1), atol=1e-5)


def test_lanczos_dtypes_and_constant_image():
    rng = np.random.default_rng(2)
    for dtype, full in ((np.uint8, 255), (np.uint16, 65535)):
        image = rng.integers(0, full + 1, size=(13, 17, 3)).astype(dtype)
        out = upscale_lanczos(image, 2.0)
        assert out.dtype == dtype and out.shape == (26, 34, 3)
        reference = upscale_lanczos(image.astype(np.float32) / full, 2.0)
        assert np.abs(out / full - reference).max() <= 0.5 / full + 1e-6
        constant = np.full((9, 11), full // 3, dtype=dtype)
        np.testing.assert_array_equal(upscale_lanczos(constant, 2.5), np.full((22, 28), full // 3, dtype))
    image = rng.random((5, 6, 3)).astype(np.float32)
    same = upscale_lanczos(image, 1.0)
    np.testing.assert_array_equal(same, image)
    assert same is not image


def test_upsampler_protocol_and_network_tiling():
    assert isinstance(LanczosUpsampler(), Upsampler)
    image = np.random.default_rng(3).integers(0, 256, size=(37, 50, 3)).astype(np.uint8)

    nearest = NetworkUpsampler(nn.Upsample(scale_factor=2, mode="nearest"), model_scale=2,
                               tile_size=16, tile_pad=4, pad_multiple=2)
    assert isinstance(nearest, Upsampler)
    out = nearest.upsample(image, 2.0)
    np.testing.assert_array_equal(out, image.repeat(2, axis=0).repeat(2, axis=1))
    assert nearest.upsample(image, 3.0).shape == (111, 150, 3)

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    tiled = NetworkUpsampler(network, model_scale=2, tile_size=16, tile_pad=2).upsample_native(image)
    whole = NetworkUpsampler(network, model_scale=2, tile_size=0).upsample_native(image)
    assert tiled.shape == (74, 100, 3) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
