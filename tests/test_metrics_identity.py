"""Identity metrics (ArcFace "Deg." with self-made weights, the offline dlib-id distance on real
faces) and LMD with the MTCNN detector; plus the uniform unavailability reporting."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
import torch

from faceprior.metrics.availability import MetricUnavailable, try_load
from faceprior.metrics.identity import (
    DLIB_ID_THRESHOLD,
    angle_degrees,
    arcface_embeddings,
    arcface_identity,
    cosine_similarity,
    load_arcface_identity,
    load_dlib_identity,
)
from faceprior.metrics.landmarks import landmark_distance, load_landmark_detector
from faceprior.models.arcface import ResNetArcFace
from faceprior.weights import catalogue
from faceprior.weights.store import sha256_of_file


def test_angle_and_cosine_hand_values():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [1.0, 1.0], [-5.0, 0.0], [6.0, 8.0]])
    assert np.allclose(cosine_similarity(a, b), [0.0, np.sqrt(0.5), -1.0, 1.0])
    assert np.allclose(angle_degrees(a, b), [90.0, 45.0, 180.0, 0.0], atol=1e-6)
    assert np.allclose(angle_degrees(torch.tensor(a), torch.tensor(b)), angle_degrees(a, b))


@pytest.fixture(scope="module")
def arcface() -> ResNetArcFace:
    torch.manual_seed(0)
    return ResNetArcFace().eval()


def test_arcface_preprocessing_is_gfpgan_gray_128(arcface):
    # A pure-red face in [-1, 1]: R = 1, G = B = -1 -> grey 0.2989 - 0.5870 - 0.1140 everywhere.
    face = torch.full((1, 3, 96, 96), -1.0)
    face[:, 0] = 1.0
    with torch.no_grad():
        expected = arcface(torch.full((1, 1, 128, 128), 0.2989 - 0.5870 - 0.1140))
    assert torch.allclose(arcface_embeddings(arcface, face), expected, atol=1e-5)


def test_arcface_identity_of_images(arcface):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    same = arcface_identity(a, a, arcface)
    assert same.degrees == pytest.approx(0.0, abs=1e-3) and same.cosine == pytest.approx(1.0)
    other = arcface_identity(a, b, arcface)
    assert 0 < other.degrees <= 180 and other.cosine < 1
    assert np.isclose(np.cos(np.radians(other.degrees)), other.cosine)
    big = np.kron(a, np.ones((2, 2, 1), dtype=np.uint8))  # sizes may differ: both go to 128x128
    assert arcface_identity(big, a, arcface).degrees < other.degrees


@pytest.mark.slow
def test_arcface_loader_reads_a_checkpoint_from_the_store(tmp_path, arcface, monkeypatch):
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    model, reason = try_load(load_arcface_identity, cache_dir=tmp_path)
    assert model is None and "arcface_resnet18.pth" in reason and str(tmp_path / "weights") in reason
    (tmp_path / "weights").mkdir()
    placed = tmp_path / "weights" / "arcface_resnet18.pth"
    torch.save({"params": arcface.state_dict()}, placed)
    with pytest.raises(MetricUnavailable, match="has SHA-256"):  # not the released file
        load_arcface_identity(cache_dir=tmp_path)
    entry = catalogue.CATALOGUE["arcface-resnet18"]
    monkeypatch.setitem(catalogue.CATALOGUE, entry.name, replace(entry, sha256=sha256_of_file(placed)))
    loaded = load_arcface_identity(cache_dir=tmp_path)
    assert not loaded.training
    for key, value in arcface.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


# ----------------------------------------------------------------------------------------------
# Real faces: dlib-id distance and LMD


@pytest.fixture(scope="module")
def faces(data_dir):
    from PIL import Image

    folder = data_dir / "faces-gt-512"
    names = ["00005__0.jpg", "00005__1.jpg", "00022__0.jpg"]
    if not all((folder / n).is_file() for n in names):
        pytest.skip(f"{folder} lacks the test faces {names}")
    return [np.asarray(Image.open(folder / n).convert("RGB")) for n in names]


@pytest.fixture(scope="module")
def dlib_identity():
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib is not installed (pip install 'faceprior[eval]')")
    return load_dlib_identity()


@pytest.mark.slow
def test_dlib_identity_on_real_faces(dlib_identity, faces):
    person_a, person_a_again, person_b = faces
    assert dlib_identity.distance(person_a, person_a) == 0.0
    same_person = dlib_identity.distance(person_a_again, person_a)
    other_person = dlib_identity.distance(person_b, person_a)
    assert same_person < DLIB_ID_THRESHOLD < other_person
    noisy = np.clip(person_a + np.random.default_rng(0).normal(0, 8, person_a.shape), 0, 255).astype(np.uint8)
    assert dlib_identity.distance(noisy, person_a) < same_person
    assert dlib_identity.distance(person_a / 255.0, person_a) == pytest.approx(0.0, abs=1e-6)


def test_dlib_identity_without_faces(dlib_identity):
    blank = np.zeros((96, 96, 3), dtype=np.uint8)
    assert dlib_identity.distance(blank, blank) is None
    with pytest.raises(ValueError, match="shapes differ"):
        dlib_identity.distance(blank, blank[:64])


@pytest.fixture(scope="module")
def detector():
    model, reason = try_load(load_landmark_detector)
    if model is None:
        pytest.skip(f"MTCNN weights not available: {reason}")
    return model


def test_landmark_distance_on_real_faces(detector, faces):
    from PIL import Image

    face = np.asarray(Image.fromarray(faces[0]).resize((256, 256), Image.BICUBIC))  # smaller: faster
    assert landmark_distance(face, face, detector) == 0.0
    shifted = np.roll(face, 5, axis=1)  # every landmark moves 5 px to the right
    assert abs(landmark_distance(shifted, face, detector) - 5.0) < 1.5
    half = np.asarray(Image.fromarray(face).resize((128, 128), Image.BICUBIC))
    assert landmark_distance(half, face, detector) < 2.0  # measured in ground-truth (256) pixels
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    assert landmark_distance(noise, face, detector) is None
    assert landmark_distance(face, noise, detector) is None


def test_landmark_loader_works_offline_from_the_bundled_weights(tmp_path, monkeypatch):
    """LMD's detector is the bundled MTCNN: offline, with an empty cache, it loads; with its files
    altered it is unavailable with a one-line reason."""
    monkeypatch.setenv("FACEPRIOR_OFFLINE", "1")
    monkeypatch.setenv("FACEPRIOR_HOME", str(tmp_path / "empty-cache"))
    assert load_landmark_detector() is not None
    monkeypatch.setattr(catalogue, "BUNDLED_DIR", tmp_path / "no-bundle")
    with pytest.raises(MetricUnavailable, match=r"^LMD: .*pnet\.pt.*reinstall"):
        load_landmark_detector()
