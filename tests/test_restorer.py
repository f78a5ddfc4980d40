"""The restoration pipeline (FaceRestorer) with a small random-weight official-format checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceprior.face.align import warp_affine
from faceprior.face.paste import face_to_image_matrix, photo_edge_mask
from faceprior.face.templates import FFHQ_TEMPLATE_512, scale_template
from faceprior.models.loading import load_model
from faceprior.restoration.restorer import FaceRestorer, NoModelError, choose_model, select_faces
from faceprior.weights import catalogue


@pytest.fixture(scope="module")
def small_checkpoint(reference_dir):
    return reference_dir / "ckpt" / "GFPGANv1Clean_small.pth"  # out_size 128, random weights


class FixedDetector:
    """Stands in for MTCNN: reports the given faces for any image."""

    def __init__(self, landmarks: np.ndarray, scores=None):
        self.landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        self.scores = np.ones(len(self.landmarks), np.float32) if scores is None else np.asarray(scores, np.float32)

    def detect_arrays(self, image):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        mins, maxs = self.landmarks.min(axis=1), self.landmarks.max(axis=1)
        pad = (maxs - mins).max(axis=1, keepdims=True) * 0.6
        boxes = np.concatenate([mins - pad, maxs + pad], axis=1)
        return boxes, self.scores, self.landmarks


def _face_landmarks(centre_x: float, centre_y: float, eye_distance: float) -> np.ndarray:
    """Landmarks of an upright face: the FFHQ template scaled to the given eye distance."""
    template = FFHQ_TEMPLATE_512
    scale = eye_distance / (template[1, 0] - template[0, 0])
    return (template - template.mean(axis=0)) * scale + np.array([centre_x, centre_y])


def _reference_forward(model, faces_uint8: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(faces_uint8).float().div(255).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        out = model(x, return_rgb=False, randomize_noise=False)[0]
    out = ((out.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return np.rint(out * 255.0).astype(np.uint8)


def test_aligned_mode_equals_the_model_forward_exactly(small_checkpoint):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    restorer = FaceRestorer(model=str(small_checkpoint), aligned=True, precision="reference", weight=1.0)
    assert restorer.network is restorer.model
    model = load_model(small_checkpoint)
    for face in faces:
        result = restorer.restore(face)
        np.testing.assert_array_equal(result.image, _reference_forward(model, face[None])[0])
        assert len(result.faces) == 1
    # Batched: the same bytes as the model run on the same batch (batch_size 4 >= 3 faces).
    np.testing.assert_array_equal(restorer.restore_aligned(faces), _reference_forward(model, faces))


def test_default_fast_path_matches_the_reference_forward(small_checkpoint):
    faces = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    restorer = FaceRestorer(model=str(small_checkpoint), aligned=True, weight=1.0)
    assert type(restorer.network).__name__ == "FastGFPGAN" and "fast CPU path, float32" in restorer.precision_note
    difference = np.abs(restorer.restore_aligned(faces).astype(int) - _reference_forward(load_model(small_checkpoint), faces))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # float32 summation order only


def test_models_without_a_fast_path_run_the_reference_forward(reference_dir):
    restorer = FaceRestorer(model=str(reference_dir / "ckpt" / "GFPGANv1_small.pth"), aligned=True)
    assert restorer.network is restorer.model and "no fast path for GFPGANv1" in restorer.precision_note
    with pytest.raises(ValueError, match="precision must be one of"):
        FaceRestorer(model=str(reference_dir / "ckpt" / "GFPGANv1_small.pth"), aligned=True, precision="fp64")


def test_whole_image_changes_only_inside_the_pasted_masks(small_checkpoint):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    landmarks = np.stack([_face_landmarks(120, 150, 40), _face_landmarks(290, 140, 55)])
    restorer = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks), precision="reference",
                            weight=1.0, background=False)  # the photo around the faces: tests/test_background.py
    result = restorer.restore(image)
    assert len(result.faces) == 2
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    # Union of the pasted masks, in photo coordinates.
    union = np.zeros(image.shape[:2], np.float32)
    for face in result.faces:
        to_image = face_to_image_matrix(face.affine)
        mask = photo_edge_mask(128, to_image, image.shape[:2])  # face_mask(128) unless a crop edge is outside
        union = np.maximum(union, warp_affine(mask, to_image, image.shape[:2], border="constant"))
    changed = np.any(result.image != image, axis=2)
    assert changed.any()
    assert not changed[union == 0].any(), "pixels outside every face mask were modified"
    # Each restored crop is the model output on the aligned crop.
    model = load_model(small_checkpoint)
    crops = np.stack([face.aligned for face in result.faces])
    np.testing.assert_array_equal(np.stack([face.restored for face in result.faces]), _reference_forward(model, crops))


def test_weight_zero_returns_the_input_faces(small_checkpoint):
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    restorer = FaceRestorer(model=str(small_checkpoint), aligned=True, weight=0.0)
    np.testing.assert_array_equal(restorer.restore_aligned(faces), faces)
    half = FaceRestorer(model=str(small_checkpoint), aligned=True, weight=0.5).restore_aligned(faces)
    full = FaceRestorer(model=str(small_checkpoint), aligned=True, weight=1.0).restore_aligned(faces)
    expected = (faces.astype(np.float64) + full) / 2
    assert np.abs(half - expected).max() <= 1.0


def test_seed_gives_reproducible_random_noise_and_leaves_global_rng_alone(small_checkpoint):
    faces = np.random.default_rng(3).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    seeded = FaceRestorer(model=str(small_checkpoint), aligned=True, seed=7, weight=1.0)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = seeded.restore_aligned(faces)
    after = torch.rand(3)
    np.testing.assert_array_equal(before.numpy(), after.numpy())
    b = FaceRestorer(model=str(small_checkpoint), aligned=True, seed=7, weight=1.0).restore_aligned(faces)
    c = FaceRestorer(model=str(small_checkpoint), aligned=True, seed=8, weight=1.0).restore_aligned(faces)
    stored = FaceRestorer(model=str(small_checkpoint), aligned=True, weight=1.0).restore_aligned(faces)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c) and np.any(a != stored)


def test_upscale_alpha_and_16_bit_are_kept(small_checkpoint):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 65536, (200, 240, 4), dtype=np.uint16)
    landmarks = _face_landmarks(120, 100, 45)[None]
    restorer = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks), upscale=1.5)
    result = restorer.restore(image)
    assert result.image.shape == (300, 360, 3) and result.image.dtype == np.uint16
    assert result.alpha is not None and result.alpha.shape == (300, 360) and result.alpha.dtype == np.uint16
    assert set(result.timings_ms) >= {"detect", "align", "restore", "upsample", "paste"}


def test_no_face_leaves_the_image_unchanged(small_checkpoint):
    image = np.full((64, 80, 3), 77, np.uint8)
    restorer = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(np.zeros((0, 5, 2))))
    result = restorer.restore(image)
    assert result.faces == []
    np.testing.assert_array_equal(result.image, image)


def test_select_faces_filters():
    big = _face_landmarks(300, 300, 80)
    small = _face_landmarks(50, 50, 12)
    tiny = _face_landmarks(500, 50, 3)  # eyes 3 px apart: below the eye-distance threshold
    landmarks = np.stack([small, big, tiny]).astype(np.float32)
    mins, maxs = landmarks.min(axis=1), landmarks.max(axis=1)
    boxes = np.concatenate([mins - 10, maxs + 10], axis=1)
    scores = np.array([0.9, 0.99, 0.95], np.float32)
    kept_boxes, kept_scores, kept = select_faces(boxes, scores, landmarks, (600, 600))
    assert len(kept) == 2 and np.allclose(kept[0], big)  # largest first, tiny dropped
    _, _, only_big = select_faces(boxes, scores, landmarks, (600, 600), min_face=60)
    assert len(only_big) == 1 and np.allclose(only_big[0], big)
    _, _, centre = select_faces(boxes, scores, landmarks, (600, 600), only_center_face=True)
    assert len(centre) == 1 and np.allclose(centre[0], big)
    _, _, first = select_faces(boxes, scores, landmarks, (600, 600), max_faces=1)
    assert len(first) == 1 and np.allclose(first[0], big)


def test_no_model_error_names_the_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogue, "BUNDLED_DIR", tmp_path / "no-bundled-model")
    with pytest.raises(NoModelError, match=r"GFPGANv1\.4\.pth .*at .*weights"):
        choose_model(None, cache_dir=str(tmp_path))


def test_template_scales_with_the_model_input(small_checkpoint):
    choice = choose_model(str(small_checkpoint))
    assert choice.input_size == 128
    np.testing.assert_allclose(choice.template, scale_template(FFHQ_TEMPLATE_512, 512, 128))


def test_named_template_for_a_checkpoint_file_and_instead_of_a_registered_ones_own(small_checkpoint):
    from faceprior.face.templates import CELEBA_HQ_TEMPLATE_256

    choice = choose_model(str(small_checkpoint), template="celeba-hq")
    np.testing.assert_allclose(choice.template, scale_template(CELEBA_HQ_TEMPLATE_256, 256, 128))
    assert "celeba-hq framing" in choice.reason
    assert "--template" in choose_model(str(small_checkpoint)).reason
    bundled = choose_model("faceprior-256", template="ffhq")
    np.testing.assert_allclose(bundled.template, scale_template(FFHQ_TEMPLATE_512, 512, 256))
    assert "ffhq framing instead of its own" in bundled.reason
    np.testing.assert_allclose(choose_model("faceprior-256").template, CELEBA_HQ_TEMPLATE_256)
    with pytest.raises(ValueError, match="unknown face template .celeba.; known: ffhq, celeba-hq, gpen"):
        choose_model(str(small_checkpoint), template="celeba")


def test_black_and_white_photo_stored_as_rgb_gets_grey_faces(small_checkpoint):
    from faceprior.imaging.pixels import looks_gray

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    chroma_noise = rng.integers(-2, 3, (300, 400, 3))  # JPEG-like: channels a few levels apart
    image = np.clip(np.repeat(grey[..., None], 3, axis=2) + chroma_noise, 0, 255).astype(np.uint8)
    assert looks_gray(image)
    landmarks = _face_landmarks(200, 150, 60)[None]
    restorer = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks))
    (face,) = restorer.restore(image).faces
    assert np.array_equal(face.restored[..., 0], face.restored[..., 1])
    assert np.array_equal(face.restored[..., 1], face.restored[..., 2])
    # A colour photo keeps the model's colours.
    colour = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert not looks_gray(colour)
    (face,) = restorer.restore(colour).faces
    assert not np.array_equal(face.restored[..., 0], face.restored[..., 1])
    aligned = FaceRestorer(model=str(small_checkpoint), aligned=True).restore(image[:128, :128]).image
    assert np.array_equal(aligned[..., 0], aligned[..., 2])


def test_a_sepia_photo_gets_sepia_faces(small_checkpoint):
    from faceprior.imaging.tone import photo_tone

    rng = np.random.default_rng(6)
    grey = np.clip(np.linspace(0.05, 0.95, 400)[None, :] + rng.normal(0, 0.08, (300, 400)), 0, 1)
    sepia = np.stack([grey * 1.07 + 0.02, grey * 0.95 + 0.01, grey * 0.78], axis=-1)
    image = np.round(np.clip(sepia, 0, 1) * 255).astype(np.uint8)
    assert photo_tone(image) is not None
    landmarks = _face_landmarks(200, 150, 60)[None]
    toned = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks), weight=1.0).restore(image)
    assert not np.array_equal(toned.image, image) and photo_tone(toned.image) is not None
    painted = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks), weight=1.0,
                           keep_tone=False).restore(image)
    assert photo_tone(painted.image) is None  # the model's own colours: no longer one tint
    kept = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(landmarks), weight=0.0).restore(image)
    assert np.array_equal(kept.image, image)


def test_a_sepia_video_scene_keeps_sepia_faces_where_a_frame_fails_the_test(small_checkpoint):
    """A toned scene in which two frames carry a red title (photo_tone: not toned) keeps toned faces
    on every frame: a majority of the scene's first frames decides. Frame by frame, the two switch."""
    from faceprior.imaging.tone import photo_tone
    from faceprior.imaging.video import VideoFrame
    from faceprior.restoration.video import VideoRestorer

    rng = np.random.default_rng(7)
    grey = np.clip(np.linspace(0.05, 0.95, 400)[None, :] + rng.normal(0, 0.08, (300, 400)), 0, 1)
    sepia = np.round(np.clip(np.stack([grey * 1.07 + 0.02, grey * 0.95 + 0.01, grey * 0.78], axis=-1), 0, 1) * 255)
    plain = sepia.astype(np.uint8)
    titled = plain.copy()
    titled[250:290, 10:60] = (220, 30, 30)  # 1.7 % of the frame
    frames = [plain, plain, titled, plain, titled, plain]
    assert photo_tone(plain) is not None and photo_tone(titled) is None
    restorer = FaceRestorer(model=str(small_checkpoint), detector=FixedDetector(_face_landmarks(200, 130, 60)[None]),
                            weight=1.0)

    def toned_faces(independent: bool, cuts: int = 0) -> list[bool]:
        video = VideoRestorer(restorer, independent=independent)
        out = [image.copy() for _, image, _ in video.run(VideoFrame(i, i, i / 25, pixels) for i, pixels in enumerate(frames))]
        assert video.cuts == cuts and all(not np.array_equal(a[100:160], b[100:160]) for a, b in zip(out, frames))
        for image in out:
            image[250:290, 10:60] = plain[250:290, 10:60]  # the title away: is the rest one tone?
        return [photo_tone(image) is not None for image in out]

    assert toned_faces(independent=False) == [True] * 6
    assert toned_faces(independent=True) == [True, True, False, True, False, True]
    # a colour scene first: after the cut the sepia scene decides anew
    colour = np.stack([grey, grey[:, ::-1], np.full_like(grey, 0.4)], axis=-1)
    frames = [np.round(colour * 255).astype(np.uint8)] * 2 + [titled, plain, plain, titled, plain]
    assert toned_faces(independent=False, cuts=1)[2:] == [True] * 5  # the first sepia frame is titled
    frames = frames[:2] + [titled, plain, titled]
    assert toned_faces(independent=False, cuts=1)[2:] == [False] * 3  # the scene is mostly not toned


class CountingNetwork:
    """Wraps a network and records the batch size of every forward."""

    def __init__(self, network):
        self.network, self.batches = network, []

    def __call__(self, x, **kwargs):
        self.batches.append(x.shape[0])
        return self.network(x, **kwargs)


def test_faces_of_several_photos_share_forwards_and_give_the_same_photos(small_checkpoint, tmp_path):
    """restore_many / restore_files batch faces across photos (batch_size 4: 2 + 1 + 2 faces ->
    forwards of 4 and 1) and give what restore gives photo by photo; a bad file among them fails alone."""
    from faceprior.imaging.io import read_image, write_image
    from faceprior.restoration import batch

    rng = np.random.default_rng(3)
    photos = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(3)]
    landmarks = np.stack([_face_landmarks(120, 150, 40), _face_landmarks(290, 140, 55)])
    detectors = [FixedDetector(landmarks), FixedDetector(landmarks[:1]), FixedDetector(landmarks)]

    class PerPhotoDetector:  # the detector of the photo it is shown (photos differ in their pixels)
        def detect_arrays(self, image):
            (index,) = [i for i, photo in enumerate(photos) if np.array_equal(photo, image)]
            return detectors[index].detect_arrays(image)

    restorer = FaceRestorer(model=str(small_checkpoint), detector=PerPhotoDetector(), precision="reference")
    one_by_one = [restorer.restore(photo) for photo in photos]
    restorer.network = counter = CountingNetwork(restorer.network)
    together = restorer.restore_many(photos)
    assert counter.batches == [4, 1]
    for single, shared in zip(one_by_one, together):
        assert len(shared.faces) == len(single.faces) and set(shared.timings_ms) == set(single.timings_ms)
        assert np.abs(shared.image.astype(int) - single.image.astype(int)).max() <= 1

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i, photo in enumerate(photos):
        write_image(folder / f"{i}.png", photo)
    (folder / "1b.png").write_bytes(b"not an image")  # sorted between 1.png and 2.png
    counter.batches.clear()
    inputs, _ = batch.find_inputs([str(folder)])
    plans, _ = batch.plan_outputs(inputs, out)
    summary = batch.restore_files(restorer, plans, out)
    assert counter.batches == [4, 1]
    assert (summary.images, summary.faces) == (3, 5)
    assert [name for name, _ in summary.failures] == [str(folder / "1b.png")]
    for i, shared in enumerate(together):
        np.testing.assert_array_equal(read_image(out / f"{i}.png").pixels, shared.image)
