"""MTCNN face detector: weight files, crops, the cascade on real photos, the bundled weights.

The real-photo tests need ../shared/data (``data_dir`` fixture). The MTCNN weights ship inside the
package (``mtcnn_weights_dir()``), so nothing here needs a network.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprior.face.mtcnn import (
    MTCNN,
    MTCNN_CATALOGUE_NAMES,
    MTCNN_WEIGHT_FILES,
    MTCNNWeightsError,
    ONet,
    PNet,
    RNet,
    build_mipmaps,
    crop_and_resize,
    mtcnn_weights_dir,
    pyramid_scales,
)
from faceprior.face.templates import FFHQ_TEMPLATE_512
from faceprior.weights import catalogue, pypi_wheel
from faceprior.weights.catalogue import CATALOGUE
from faceprior.weights.store import sha256_of_file

# Hand-labelled faces: the approximate centre (x, y) of every clearly visible, roughly frontal
# face, read off the photos by eye (realworld-whole/<path>). 35 faces in 7 photos.
HAND_LABELLED_FACES = {
    "codeformer/00.jpg": [(78, 100), (195, 100), (298, 102), (410, 90)],
    "codeformer/01.jpg": [(60, 72), (125, 42), (187, 88), (118, 138)],
    "dlib/2007_007763.jpg": [(117, 210), (178, 130), (218, 105), (320, 100), (415, 105), (200, 225), (337, 250)],
    "dlib/2008_002470.jpg": [(78, 170), (172, 180), (203, 97), (258, 95), (350, 70), (303, 193)],
    "dlib/2008_007676.jpg": [(130, 155), (153, 95), (242, 75), (213, 130), (282, 145), (338, 135), (385, 148)],
    "groups/2.jpg": [(175, 170), (355, 165), (600, 145), (775, 200)],
    "vqfr/example.jpg": [(100, 125), (395, 115), (660, 120)],
}


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def mtcnn_dir() -> Path:
    """The three weight files shipped inside the package."""
    return mtcnn_weights_dir()


@pytest.fixture(scope="session")
def detector(mtcnn_dir: Path) -> MTCNN:
    return MTCNN(weights_dir=mtcnn_dir)


# ---- weight files ------------------------------------------------------------------------


def test_weight_files_are_plain_state_dicts_matching_the_networks(mtcnn_dir):
    for name, network in zip(MTCNN_WEIGHT_FILES, (PNet(), RNet(), ONet())):
        assert sha256_of_file(mtcnn_dir / name) == CATALOGUE[MTCNN_CATALOGUE_NAMES[name]].sha256
        state = torch.load(mtcnn_dir / name, map_location="cpu", weights_only=True)
        expected = network.state_dict()
        assert list(state) == list(expected)
        assert all(state[key].shape == expected[key].shape for key in expected)


def test_bad_weight_file_is_a_one_line_error(tmp_path, mtcnn_dir):
    for name in MTCNN_WEIGHT_FILES:
        (tmp_path / name).write_bytes((mtcnn_dir / name).read_bytes())
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "rnet.pt")
    with pytest.raises(MTCNNWeightsError, match=r"rnet\.pt: not a valid RNet state dict") as error:
        MTCNN(weights_dir=tmp_path)
    assert "\n" not in str(error.value)
    (tmp_path / "onet.pt").unlink()
    torch.save(RNet().state_dict(), tmp_path / "rnet.pt")
    with pytest.raises(MTCNNWeightsError, match=r"onet\.pt: MTCNN weight file not found"):
        MTCNN(weights_dir=tmp_path)


# ---- pyramid and crops -------------------------------------------------------------------


def test_pyramid_scales_hand_computed():
    # 12 / 20 = 0.6; the shorter side 100 gives 60, 42.5, 30.2, 21.4, 15.2 >= 12, then 10.8.
    scales = pyramid_scales(100, 300, min_face_size=20, scale_factor=0.709)
    np.testing.assert_allclose(scales, [0.6 * 0.709**k for k in range(5)])
    assert pyramid_scales(8, 8, min_face_size=20, scale_factor=0.709) == []


def test_crop_and_resize_reproduces_a_linear_ramp():
    """Mipmaps, bilinear sampling and 2x2 averaging all preserve linear images exactly, so a
    crop of a ramp must equal the ramp at the output pixel centres: this pins down the
    coordinate convention (pixel i spans [i, i + 1)) at every mipmap level."""
    height, width = 300, 400
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    image = (0.3 * xs + 0.5 * ys + 7.0)[None, None].expand(1, 3, height, width).contiguous()
    image[:, 1] *= 2
    mipmaps = build_mipmaps(image, min_size=12)
    assert len(mipmaps) >= 4
    # Squares from 10 to 190 px (levels 0 to 3), fractional corners, away from the borders.
    boxes = torch.tensor(
        [[20.3, 30.7, 30.3, 40.7], [50.0, 60.0, 90.5, 100.5], [100.25, 40.75, 201.25, 141.75], [180.5, 90.0, 370.5, 280.0]]
    )
    for size in (24, 48):
        crops = crop_and_resize(mipmaps, boxes, torch.zeros(4, dtype=torch.int64), size)
        assert crops.shape == (4, 3, size, size)
        steps = (torch.arange(size) + 0.5) / size
        centre_x = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1])  # [4, size]
        centre_y = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
        expected = 0.3 * centre_x[:, None, :] + 0.5 * centre_y[:, :, None] + 7.0
        torch.testing.assert_close(crops[:, 0], expected, atol=2e-3, rtol=1e-5)
        torch.testing.assert_close(crops[:, 1], 2 * expected, atol=4e-3, rtol=1e-5)


def test_crop_and_resize_pads_with_zeros_and_picks_the_right_image():
    images = torch.stack([torch.full((3, 40, 50), 10.0), torch.full((3, 40, 50), 200.0)])
    mipmaps = build_mipmaps(images, min_size=12)
    boxes = torch.tensor([[60.0, 0.0, 80.0, 20.0], [-10.0, 10.0, 10.0, 30.0], [5.0, 5.0, 25.0, 25.0]])
    crops = crop_and_resize(mipmaps, boxes, torch.tensor([0, 1, 1]), 24)
    assert torch.all(crops[0] == 0)  # entirely outside the image
    assert torch.all(crops[1, :, :, :10] == 0) and torch.allclose(crops[1, :, :, 14:], torch.tensor(200.0))
    assert torch.allclose(crops[2], torch.tensor(200.0))


# ---- detector on real photos -------------------------------------------------------------


def test_recall_on_hand_labelled_photos(detector, data_dir):
    """A labelled face counts as found when its centre lies inside a detected box (each box
    matches at most one face); boxes matching no labelled face are false positives."""
    total_faces = total_found = total_false = 0
    for name, centres in HAND_LABELLED_FACES.items():
        faces = detector.detect(_read_rgb(data_dir / "realworld-whole" / name))
        unmatched = list(range(len(faces)))
        found = 0
        for x, y in centres:
            inside = [k for k in unmatched if faces[k].box[0] <= x <= faces[k].box[2] and faces[k].box[1] <= y <= faces[k].box[3]]
            if inside:
                unmatched.remove(inside[0])
                found += 1
        assert found >= 0.75 * len(centres), f"{name}: found {found} of {len(centres)} faces"
        total_faces, total_found, total_false = total_faces + len(centres), total_found + found, total_false + len(unmatched)
    print(f"\nMTCNN recall {total_found}/{total_faces}, false positives {total_false}")
    assert total_found >= 0.9 * total_faces
    assert total_false <= 3


@pytest.mark.slow
def test_landmarks_on_aligned_faces_match_the_ffhq_template(detector, data_dir):
    """realworld-aligned faces were aligned to FFHQ_TEMPLATE_512, so the detected landmarks of
    the central face must lie near the template (measured: mean 9.8 px, eyes 5 px, nose and
    mouth corners 13 px: MTCNN puts them slightly differently from the template's detector)."""
    paths = sorted((data_dir / "realworld-aligned").glob("*/*.png"))
    assert len(paths) >= 60
    images = [_read_rgb(path) for path in paths]
    errors = []
    for start in range(0, len(images), 8):
        batch = images[start : start + 8]
        for path, (boxes, scores, landmarks) in zip(paths[start:], detector.detect_batch_arrays(batch)):
            assert len(boxes) >= 1, f"{path.name}: no face found"
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            central = np.argmin(np.linalg.norm(centres - 255.5, axis=1))
            points = landmarks[central]
            assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0], f"{path.name}: left/right swapped"
            assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min(), f"{path.name}: eyes, nose, mouth out of order"
            errors.append(np.linalg.norm(points - FFHQ_TEMPLATE_512, axis=1))
    errors = np.array(errors)
    print(f"\nMTCNN landmark error vs FFHQ_TEMPLATE_512 over {len(errors)} faces: mean {errors.mean():.2f} px, "
          f"per landmark {np.round(errors.mean(0), 2).tolist()}")
    assert errors.mean() < 12.0
    assert errors[:, :2].mean() < 7.0
    assert np.median(errors.mean(1)) < 12.0


@pytest.mark.slow
def test_mirrored_photo_gives_mirrored_landmarks(detector, data_dir):
    """Mirroring maps x to W - 1 - x in pixel-centre coordinates and swaps left and right. The
    networks are nearly mirror-symmetric, so on many small faces the mean signed x difference
    stays well below a pixel (measured -0.27 and -0.14 px); an off-by-half-pixel coordinate
    convention would shift it by 1 px, swapped left/right landmarks by the eye distance."""
    for name in ("groups/26.jpg", "groups/1.jpg"):
        image = _read_rgb(data_dir / "realworld-whole" / name)
        width = image.shape[1]
        _, _, landmarks = detector.detect_arrays(image)
        _, _, mirrored = detector.detect_arrays(np.ascontiguousarray(image[:, ::-1]))
        mirrored = mirrored[:, [1, 0, 2, 4, 3]]
        mirrored[..., 0] = width - 1 - mirrored[..., 0]
        differences = []
        for points in landmarks:
            distance = np.abs(mirrored - points).mean(axis=(1, 2))
            if distance.min() < 3:
                differences.append((mirrored[distance.argmin()] - points).mean(axis=0))
        differences = np.array(differences)
        assert len(differences) >= 0.9 * len(landmarks) >= 45, name
        assert abs(differences[:, 0].mean()) < 0.5 and abs(differences[:, 1].mean()) < 0.3, name


def test_batch_equals_single_images(detector, data_dir):
    paths = sorted((data_dir / "realworld-aligned" / "gfpgan").glob("*.png"))[:2]
    images = [_read_rgb(path) for path in paths]
    batched = detector.detect_batch_arrays(images)
    for image, (boxes, scores, landmarks) in zip(images, batched):
        single_boxes, single_scores, single_landmarks = detector.detect_arrays(image)
        np.testing.assert_allclose(boxes, single_boxes, atol=1e-2)
        np.testing.assert_allclose(scores, single_scores, atol=1e-4)
        np.testing.assert_allclose(landmarks, single_landmarks, atol=1e-2)


def test_detect_returns_faces_consistent_with_arrays(detector, data_dir):
    image = _read_rgb(data_dir / "realworld-whole" / "codeformer" / "00.jpg")
    faces = detector.detect(image)
    boxes, scores, landmarks = detector.detect_arrays(image)
    assert len(faces) == len(boxes) == 4
    assert boxes.dtype == np.float32 and boxes.shape == (4, 4) and landmarks.shape == (4, 5, 2)
    assert np.all(np.diff(scores) <= 0) and np.all((scores > 0.7) & (scores <= 1))
    for face, box, score, points in zip(faces, boxes, scores, landmarks):
        np.testing.assert_array_equal(face.box, box)
        np.testing.assert_array_equal(face.landmarks, points)
        assert face.score == pytest.approx(float(score))
        # Landmarks lie inside (or just at) their face box.
        assert np.all(points >= box[:2] - 2) and np.all(points <= box[2:] + 2)


def test_upside_down_faces_are_not_detected(detector, data_dir):
    """These four aligned faces are found upright and not when rotated by 180 degrees. (MTCNN
    is not rotation invariant but does fire on some upside-down faces: with these weights on
    ~20 of the 70 realworld-aligned faces, exactly as facenet-pytorch's own pipeline does.)"""
    for path in sorted((data_dir / "realworld-aligned" / "gfpgan").glob("*.png")):
        image = _read_rgb(path)
        assert len(detector.detect(image)) == 1, path.name
        assert detector.detect(np.ascontiguousarray(image[::-1, ::-1])) == [], path.name


def test_blank_noise_and_tiny_images_give_no_faces(detector):
    for value in (0, 128, 255):
        assert detector.detect(np.full((240, 320, 3), value, dtype=np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    for shape in ((8, 8, 3), (1, 1, 3), (11, 500, 3), (40, 12, 3)):
        boxes, scores, landmarks = detector.detect_arrays(np.zeros(shape, dtype=np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,) and landmarks.shape == (0, 5, 2)


def test_small_min_face_size_upsamples_without_error(mtcnn_dir, data_dir):
    image = _read_rgb(data_dir / "realworld-whole" / "codeformer" / "01.jpg")
    faces = MTCNN(weights_dir=mtcnn_dir, min_face_size=10).detect(image)
    assert len(faces) >= 4


def test_bad_input_is_a_one_line_error(detector):
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)):
        with pytest.raises(ValueError, match="expected an HxWx3 uint8 RGB image") as error:
            detector.detect(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="must share one size"):
        detector.detect_batch([np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        detector.detect_batch([])
    assert detector.detect_batch(np.zeros((2, 30, 30, 3), np.uint8)) == [[], []]


# ---- weight acquisition ------------------------------------------------------------------


def test_weights_ship_inside_the_package_with_their_licence(mtcnn_dir):
    """Offline restoring needs no download: the three files (MIT, facenet-pytorch 2.6.0) are package
    data next to their licence, and each is checked against its catalogue entry."""
    assert mtcnn_dir == catalogue.BUNDLED_DIR / "mtcnn"
    assert "MIT License" in (mtcnn_dir / "LICENSE.md").read_text()
    for name in MTCNN_WEIGHT_FILES:
        entry = CATALOGUE[MTCNN_CATALOGUE_NAMES[name]]
        assert entry.bundled and entry.kind == "detector" and entry.license.startswith("MIT")
        assert (mtcnn_dir / name).stat().st_size == entry.size


def test_altered_or_missing_bundled_weights_are_a_one_line_error(tmp_path, monkeypatch, mtcnn_dir):
    bundle = tmp_path / "data"
    (bundle / "mtcnn").mkdir(parents=True)
    for name in MTCNN_WEIGHT_FILES:
        (bundle / "mtcnn" / name).write_bytes((mtcnn_dir / name).read_bytes())
    monkeypatch.setattr(catalogue, "BUNDLED_DIR", bundle)
    assert mtcnn_weights_dir() == bundle / "mtcnn"
    data = bytearray((bundle / "mtcnn" / "rnet.pt").read_bytes())
    data[100] ^= 0xFF
    (bundle / "mtcnn" / "rnet.pt").write_bytes(bytes(data))
    with pytest.raises(MTCNNWeightsError, match=r"rnet\.pt .*does not match its SHA-256 .*reinstall") as error:
        mtcnn_weights_dir()
    assert "\n" not in str(error.value)
    (bundle / "mtcnn" / "onet.pt").unlink()
    (bundle / "mtcnn" / "rnet.pt").write_bytes((mtcnn_dir / "rnet.pt").read_bytes())
    with pytest.raises(MTCNNWeightsError, match="missing from this installation"):
        mtcnn_weights_dir()


def test_extract_members_checks_sha256_before_writing(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/data/a.bin", b"hello")
        archive.writestr("pkg/data/b.bin", b"world")
    good = {"pkg/data/a.bin": pypi_wheel.sha256_of_bytes(b"hello")}
    written = pypi_wheel.extract_members(wheel, ["pkg/data/a.bin", "pkg/data/b.bin"], tmp_path / "out", good)
    assert [path.read_bytes() for path in written] == [b"hello", b"world"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.bin", "b.bin"]  # no temp files left
    with pytest.raises(pypi_wheel.WheelContentError, match="b.bin has SHA-256"):
        pypi_wheel.extract_members(wheel, ["pkg/data/b.bin"], tmp_path / "bad", {"pkg/data/b.bin": "0" * 64})
    assert not (tmp_path / "bad" / "b.bin").exists()
    with pytest.raises(pypi_wheel.WheelContentError, match="no member 'pkg/data/c.bin'"):
        pypi_wheel.extract_members(wheel, ["pkg/data/c.bin"], tmp_path / "out")


def test_pip_failures_are_one_line_errors(tmp_path, monkeypatch):
    def offline_pip(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        assert "--only-binary=:all:" in command and "facenet-pytorch==2.6.0" in command
        return subprocess.CompletedProcess(command, 1, "", "WARNING: retrying\nERROR: No matching distribution found for facenet-pytorch==2.6.0\n")

    monkeypatch.setattr(pypi_wheel.subprocess, "run", offline_pip)
    with pytest.raises(pypi_wheel.WheelDownloadError, match="pip download failed .*No matching distribution") as error:
        pypi_wheel.extract_from_wheel("facenet-pytorch", "2.6.0", ["x"], tmp_path)
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    monkeypatch.setattr(pypi_wheel.sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(pypi_wheel.WheelDownloadError, match="cannot run pip"):
        pypi_wheel.extract_from_wheel("facenet-pytorch", "2.6.0", ["x"], tmp_path)
