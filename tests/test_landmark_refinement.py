"""Landmarks of degraded faces are refined (docs/no_harm.md, section 9): LandmarkRefinerNet, how its
offsets map back to the photo, the shipped refiner on degraded copies of the bundled examples, the
restorer's use of it, and its training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from faceprior.cli import main
from faceprior.face.landmark_refinement import refine_landmarks
from faceprior.face.templates import named_template
from faceprior.imaging.io import read_image, write_image
from faceprior.models.landmark_refiner import LandmarkRefinerNet
from faceprior.models.loading import build_from_state_dict, infer_architecture, resolve_model
from faceprior.restoration.restorer import LANDMARK_REFINER, FaceRestorer, make_detector
from faceprior.training.degradations import degrade
from faceprior.training.landmark_refiner import landmark_samples, train_landmark_refiner

from test_restorer import FixedDetector

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class ConstantOffsets(torch.nn.Module):
    """Stands in for the refiner: the same offsets (256 px crop pixels) for every face."""

    def __init__(self, offsets):
        super().__init__()
        self.offsets = torch.nn.Parameter(torch.as_tensor(offsets, dtype=torch.float32).reshape(1, 5, 2))

    def forward(self, faces):
        assert tuple(faces.shape[1:]) == (3, 64, 64) and 0 <= float(faces.min()) and float(faces.max()) <= 1
        return self.offsets.expand(len(faces), 5, 2)


def test_the_network_takes_64_px_faces_and_is_recognised_from_its_weights():
    torch.manual_seed(0)
    network = LandmarkRefinerNet(widths=(8, 8, 16, 16)).eval()
    faces = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = network(faces)
    assert out.shape == (3, 5, 2)
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        network(torch.rand(1, 3, 128, 128))
    arch, options = infer_architecture(network.state_dict())
    assert arch == "LandmarkRefinerNet" and options == {"widths": (8, 8, 16, 16)}
    rebuilt = build_from_state_dict(network.state_dict(), "test").network.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(faces), out)


def test_offsets_in_the_crop_map_back_to_the_photo():
    photo = np.full((400, 500, 3), 128, np.uint8)
    template = named_template("celeba-hq", 256)
    landmarks = (template * 0.5 + np.array([100.0, 80.0]))[None].astype(np.float32)  # crop px = 2 photo px
    # no offset: the landmarks come back as the template fitted to them (here: exactly)
    np.testing.assert_allclose(refine_landmarks(ConstantOffsets(np.zeros((5, 2))), photo, landmarks), landmarks, atol=1e-3)
    # 4 crop pixels right and 2 down: 2 and 1 photo pixels
    moved = refine_landmarks(ConstantOffsets(np.tile([4.0, 2.0], (5, 1))), photo, landmarks)
    np.testing.assert_allclose(moved, landmarks + np.array([2.0, 1.0]), atol=1e-3)
    # a face turned by 90 degrees: the crop's right is the photo's down
    turned = landmarks[0] - landmarks[0].mean(axis=0)
    turned = (np.stack([-turned[:, 1], turned[:, 0]], axis=1) + np.array([250.0, 200.0]))[None].astype(np.float32)
    moved = refine_landmarks(ConstantOffsets(np.tile([4.0, 0.0], (5, 1))), photo, turned)
    np.testing.assert_allclose(moved, turned + np.array([0.0, 2.0]), atol=1e-3)
    assert refine_landmarks(ConstantOffsets(np.zeros((5, 2))), photo, np.zeros((0, 5, 2))).shape == (0, 5, 2)


@pytest.mark.parametrize("name", ["astronaut.png"])
def test_the_shipped_refiner_moves_degraded_landmarks_towards_the_sharp_ones(name):
    sharp = read_image(EXAMPLES / name).pixels
    detector = make_detector("mtcnn")
    network = resolve_model(LANDMARK_REFINER).network.eval()
    truth = detector.detect_arrays(sharp)[2][0]
    eyes = np.linalg.norm(truth[1] - truth[0])
    before, after = [], []
    for seed in range(8):
        degraded = (degrade(sharp, seed=seed)[0] * 255).round().astype(np.uint8)
        found = detector.detect_arrays(degraded)[2]
        if not len(found):
            continue
        refined = refine_landmarks(network, degraded, found[:1])[0]
        before.append(np.linalg.norm(found[0] - truth, axis=1).mean() / eyes)
        after.append(np.linalg.norm(refined - truth, axis=1).mean() / eyes)
    assert len(before) >= 5
    assert np.mean(after) < np.mean(before)
    # the sharp face's own landmarks move little
    still = refine_landmarks(network, sharp, truth[None])[0]
    assert np.linalg.norm(still - truth, axis=1).mean() / eyes < 0.05


def test_the_restorer_refines_detected_landmarks_unless_told(tmp_path):
    image = read_image(EXAMPLES / "astronaut-old-print.jpg").pixels
    landmarks = make_detector("mtcnn").detect_arrays(image)[2][:1]
    refined = FaceRestorer(detector=FixedDetector(landmarks)).detect(image)[2]
    plain = FaceRestorer(detector=FixedDetector(landmarks), refine_landmarks=False).detect(image)[2]
    np.testing.assert_array_equal(plain, landmarks)
    assert refined.shape == landmarks.shape and 0 < np.abs(refined - landmarks).max() < 20
    assert FaceRestorer(aligned=True).landmark_refiner is None
    # the command line turns it off
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "print.png", image)
    assert main(["restore", str(folder), "-o", str(tmp_path / "out"), "--no-refine-landmarks", "--no-background"]) == 0
    assert (tmp_path / "out" / "print.png").is_file()


def test_training_samples_and_a_tiny_run_write_a_loadable_refiner(tmp_path):
    files = sorted(EXAMPLES.glob("*.png")) + sorted(EXAMPLES.glob("*.jpg"))
    faces, offsets = landmark_samples(files * 4, make_detector("mtcnn"), seed=3)
    assert faces.dtype == np.uint8 and faces.shape[1:] == (64, 64, 3) and offsets.shape == (len(faces), 5, 2)
    assert len(faces) >= 6 and np.abs(offsets).max() < 64
    out = tmp_path / "refiner.safetensors"
    best = train_landmark_refiner(faces, offsets, out, epochs=2, holdout=2, batch_size=4)
    assert out.is_file() and np.isfinite(best["after"]) and best["epoch"] >= 0
    network = build_from_state_dict(load_file(str(out)), "tiny").network
    assert isinstance(network, LandmarkRefinerNet)
