"""The photo around the faces is restored as much as its faces (docs/no_harm.md, section 7):
PhotoRestorerNet, the background weight, how faces are pasted over a restored photo, the options
that turn it off, and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from faceprior.cli import main
from faceprior.face.align import warp_affine
from faceprior.face.paste import face_to_image_matrix, photo_edge_mask
from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.pixels import looks_gray
from faceprior.models.loading import build_from_state_dict, infer_architecture
from faceprior.models.photo_restorer import PhotoRestorerNet, macs_per_pixel
from faceprior.models.rrdbnet import upsample_tiled
from faceprior.imaging.colour import IDENTITY_COLOUR_MAP, apply_colour_map, fit_colour_map, keep_greys
from faceprior.restoration.restorer import BACKGROUND_MIN_WEIGHT, FaceRestorer, faces_colour_map, keep_white_balance
from faceprior.training.photo_restorer import degraded_photo, held_out_psnr, train_photo_restorer

from test_restorer import FixedDetector, _face_landmarks


@pytest.fixture(scope="module")
def small_checkpoint(reference_dir):
    return str(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth")  # 128 px, FFHQ framing, random weights


def _photo(seed: int, shape=(300, 400)) -> np.ndarray:
    """A smooth random photo (blurred noise), so that a restorer has something to sharpen."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1, 3))
    image = np.kron(coarse, np.ones((8, 8, 1)))[:shape[0], :shape[1]]
    return np.clip(image * 255 + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def _outside_faces(restorer, result, shape) -> np.ndarray:
    """[H, W] bool: pixels the photo restorer's output reaches in full (beyond every face's crop
    and the margin around it), checked against the faces' own paste masks."""
    outside = restorer.crop_coverage(shape[:2], np.stack([face.affine for face in result.faces]))[..., 0] == 0
    for face in result.faces:
        to_image = face_to_image_matrix(face.affine)
        mask = warp_affine(photo_edge_mask(128, to_image, shape[:2]), to_image, shape[:2], border="constant")
        assert not (outside & (mask > 0)).any()
    return outside


# ---- the network --------------------------------------------------------------------------------


def test_the_photo_restorer_takes_any_size_and_is_recognised_from_its_weights():
    torch.manual_seed(0)
    network = PhotoRestorerNet(half_width=8, width=16, blocks=2).eval()
    photos = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        out = network(photos)
    assert out.shape == photos.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, photos)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        network(torch.rand(3, 37, 50))
    arch, options = infer_architecture(network.state_dict())
    assert arch == "PhotoRestorerNet" and options == {"half_width": 8, "width": 16, "blocks": 2}
    rebuilt = build_from_state_dict(network.state_dict(), "test").network.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(photos), out)
    # its cost per photo pixel: the convs at half size count a quarter, at quarter size a sixteenth
    assert macs_per_pixel(network) == pytest.approx(
        (12 * 8 * 9 + 8 * 8 * 9 + 16 * 8 * 9 + 8 * 12 * 9) / 4 + (32 * 16 * 9 + 4 * 16 * 16 * 9 + 16 * 32 * 9) / 16)


def test_tiles_give_the_whole_photo_where_they_overlap_its_reach():
    torch.manual_seed(1)
    network = PhotoRestorerNet(half_width=8, width=16, blocks=1).eval()
    photo = torch.rand(1, 3, 152, 232)  # multiples of 4: no padding, which differs (reflect / replicate)
    with torch.no_grad():
        whole = network(photo)
        tiled = upsample_tiled(network, photo, tile=64, tile_pad=32, scale=1, pad_multiple=4).clamp(0, 1)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_the_colour_map_is_the_faces_change_and_stays_put_where_they_say_nothing():
    rng = np.random.default_rng(11)
    truth = np.array([[0.9, 0.05, 0.0, 0.04], [0.0, 1.1, 0.0, -0.02], [0.1, 0.0, 0.8, 0.06]])
    sources = rng.random((500, 3))
    targets = np.concatenate([sources, np.ones((500, 1))], axis=1) @ truth.T
    weights = np.full(500, 1 / 500)
    np.testing.assert_allclose(fit_colour_map(sources, targets, weights, ridge=0.0), truth, atol=1e-9)
    # skin-like colours: all on one line through colour space; brighter by 0.1 along it
    tone = np.array([0.8, 0.6, 0.5])
    skin = rng.uniform(0.3, 1.0, (500, 1)) * tone
    fitted = fit_colour_map(skin, skin + 0.1 * tone, weights)
    np.testing.assert_allclose(apply_colour_map(skin[None].astype(np.float32), fitted)[0], skin + 0.1 * tone, atol=0.02)
    # a colour far from the faces' (a blue sky) moves little: the map is pulled to the identity
    sky = np.array([[[0.2, 0.4, 0.9]]], np.float32)
    assert np.abs(apply_colour_map(sky, fitted) - sky).max() < 0.12
    np.testing.assert_array_equal(apply_colour_map(_photo(12), IDENTITY_COLOUR_MAP), _photo(12))
    assert fit_colour_map(skin, skin, weights) == pytest.approx(IDENTITY_COLOUR_MAP, abs=1e-9)


def _grey_shift(matrix: np.ndarray) -> float:
    """How far a map moves greys off the grey axis: the largest spread of a grey's three channels."""
    greys = np.linspace(0, 1, 11)[:, None].repeat(3, axis=1)
    out = greys @ matrix[:, :3].T + matrix[:, 3]
    return float(np.ptp(out, axis=1).max())


def test_keeping_greys_takes_the_cast_off_a_colour_map_and_nothing_else():
    rng = np.random.default_rng(21)
    cast = np.array([[1.05, 0.02, -0.01, 0.04], [0.01, 0.97, 0.0, 0.01], [-0.02, 0.03, 0.9, -0.03]])
    kept = keep_greys(cast)
    assert _grey_shift(cast) > 0.05 and _grey_shift(kept) < 1e-12
    np.testing.assert_allclose(keep_greys(kept), kept, atol=1e-12)  # a map that keeps greys stays as it is
    # brightness, contrast and saturation (a grey-keeping map) pass through untouched
    saturate = 1.2 * np.eye(3) - 0.2 * np.full((3, 3), 1 / 3)
    contrast = np.concatenate([1.1 * saturate, np.full((3, 1), -0.05)], axis=1)
    np.testing.assert_allclose(keep_greys(contrast), contrast, atol=1e-12)
    # the nearest such map: any other grey-keeping map is farther from the original
    for _ in range(20):
        other = kept + keep_greys(rng.normal(0, 0.05, (3, 4))) - keep_greys(np.zeros((3, 4)))
        assert _grey_shift(other) < 1e-9
        assert np.linalg.norm(other - cast) >= np.linalg.norm(kept - cast) - 1e-12


def test_faces_keep_the_white_balance_and_their_detail():
    rng = np.random.default_rng(22)
    crops = np.clip(_photo(23, (64, 64))[None].astype(np.float32) / 255, 0, 1)
    cast = np.array([[1.0, 0.0, 0.0, 0.06], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.9, -0.04]])  # warmer
    detail = rng.normal(0, 0.02, crops.shape).astype(np.float32)
    restored = np.clip(apply_colour_map(crops[0], cast)[None] + detail, 0, 1)
    kept = keep_white_balance(restored, crops)
    before = _grey_shift(faces_colour_map(crops, restored))
    # measured again (the fit is pulled towards the identity, so a little of the cast stays in it)
    assert before > 0.05 and _grey_shift(faces_colour_map(crops, kept)) < before / 5
    # only an affine colour function of the crop was taken away: the model's detail stays
    taken = (restored - kept).reshape(-1, 3)
    sources = crops.reshape(-1, 3)
    fitted = fit_colour_map(sources, taken, np.full(len(sources), 1 / len(sources)), ridge=0.0)
    residual = taken - (sources @ fitted[:, :3].T + fitted[:, 3])
    assert np.abs(taken).max() > 0.03 and np.quantile(np.abs(residual), 0.99) < 1e-3


# ---- in the pipeline ----------------------------------------------------------------------------


def test_the_background_gets_the_faces_weight_of_the_restorers_change(small_checkpoint):
    image = _photo(3)
    landmarks = _face_landmarks(200, 150, 50)[None]
    plain = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=0.6, background=False)
    restorer = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=0.6)
    without, result = plain.restore(image), restorer.restore(image)
    assert without.background_weight is None and result.background_weight == pytest.approx(0.6)
    outside = _outside_faces(restorer, result, image.shape)
    assert outside.mean() > 0.4
    np.testing.assert_array_equal(without.image[outside], image[outside])  # off: the photo stays
    colour_map = faces_colour_map(result.faces[0].aligned[None], result.faces[0].restored[None])
    expected = apply_colour_map(restorer.restore_background(image, 0.6), colour_map)
    np.testing.assert_array_equal(result.image[outside], expected[outside])
    assert np.abs(result.image[outside].astype(int) - image[outside]).max() > 3  # the restorer did change it
    # the faces themselves: their restoration is the same, only what they are blended with changed
    np.testing.assert_array_equal(result.faces[0].restored, without.faces[0].restored)


def test_a_photo_whose_faces_need_nothing_is_left_exactly_as_it_was(small_checkpoint):
    image = _photo(4)
    landmarks = _face_landmarks(200, 150, 50)[None]
    for weight in (0.0, BACKGROUND_MIN_WEIGHT / 2):
        restorer = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=weight)
        result = restorer.restore(image)
        assert result.background_weight == pytest.approx(weight) and "background" not in result.timings_ms
        outside = _outside_faces(restorer, result, image.shape)
        np.testing.assert_array_equal(result.image[outside], image[outside])
        if weight == 0:
            np.testing.assert_array_equal(result.image, image)
    # no face: nothing at all
    empty = FaceRestorer(model=small_checkpoint, detector=FixedDetector(np.zeros((0, 5, 2))), weight=1.0)
    result = empty.restore(image)
    assert result.background_weight == 0.0
    np.testing.assert_array_equal(result.image, image)


def test_faces_count_by_their_area_and_a_fully_restored_face_is_the_models(small_checkpoint):
    image = _photo(5, (300, 500))
    landmarks = np.stack([_face_landmarks(130, 150, 60), _face_landmarks(380, 150, 30)])
    restorer = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=1.0, refine_landmarks=False)
    photo = restorer.prepare(image)
    # the larger face (twice the eye distance: four times the area) counts four times as much
    assert restorer.background_weight(photo, np.array([1.0, 0.0])) == pytest.approx(0.8, abs=1e-3)
    assert restorer.background_weight(photo, np.array([0.0, 1.0])) == pytest.approx(0.2, abs=1e-3)
    # at weight 1 a face the crop holds at full resolution is the model's face, whatever lay under it
    assert np.sqrt(np.linalg.det(photo.matrices[1][:, :2])) > 1
    with_background = restorer.restore(image)
    without = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=1.0,
                           background=False, refine_landmarks=False).restore(image)
    centre = (slice(140, 160), slice(370, 390))
    assert np.abs(with_background.image[centre].astype(int) - without.image[centre]).max() <= 1
    assert np.abs(with_background.image.astype(int) - without.image).max() > 3


def test_the_photo_restorers_output_never_lies_under_a_face(small_checkpoint):
    """Faces are pasted into the photo in their colours; the restored photo only goes around them."""
    image = _photo(13)
    landmarks = _face_landmarks(200, 150, 50)[None]
    results = {}
    for name, network in (("identity", lambda x: x), ("grey", lambda x: torch.full_like(x, 0.5))):
        restorer = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=0.8)
        restorer.photo_restorer = network
        results[name] = restorer.restore(image)
    outside = _outside_faces(restorer, results["grey"], image.shape)
    to_image = face_to_image_matrix(results["grey"].faces[0].affine)
    inside = warp_affine(photo_edge_mask(128, to_image, image.shape[:2]), to_image, image.shape[:2]) >= 0.999
    assert inside.mean() > 0.05
    np.testing.assert_array_equal(results["grey"].image[inside], results["identity"].image[inside])
    assert np.abs(results["grey"].image[outside].astype(int) - results["identity"].image[outside]).mean() > 10


def test_a_black_and_white_photo_stays_grey_around_its_faces(small_checkpoint):
    grey = _photo(6)[..., :1].repeat(3, axis=2)
    landmarks = _face_landmarks(200, 150, 50)[None]
    result = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=1.0).restore(grey)
    assert result.background_weight == 1.0 and looks_gray(result.image)
    assert np.array_equal(result.image[..., 0], result.image[..., 1])


def test_keep_white_balance_keeps_greys_in_the_faces_and_around_them(small_checkpoint):
    image = _photo(24)
    landmarks = _face_landmarks(200, 150, 50)[None]
    plain = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=1.0,
                         refine_landmarks=False).restore(image)
    restorer = FaceRestorer(model=small_checkpoint, detector=FixedDetector(landmarks), weight=1.0, keep_white_balance=True,
                            refine_landmarks=False)
    result = restorer.restore(image)
    face = result.faces[0]
    # random weights: the model casts its colours far off; kept, the face's change keeps greys
    before = _grey_shift(faces_colour_map(plain.faces[0].aligned[None], plain.faces[0].restored[None]))
    assert before > 0.05 and _grey_shift(faces_colour_map(face.aligned[None], face.restored[None])) < before / 5
    # the photo around the face gets the faces' colour change without its cast
    photo_map = keep_greys(faces_colour_map(face.aligned[None], face.restored[None]))
    outside = _outside_faces(restorer, result, image.shape)
    expected = apply_colour_map(restorer.restore_background(image, 1.0), photo_map)
    np.testing.assert_array_equal(result.image[outside], expected[outside])


def test_aligned_faces_in_the_models_framing_have_no_background(small_checkpoint):
    face = _photo(7, (128, 128))
    result = FaceRestorer(model=small_checkpoint, aligned="model", weight=1.0).restore(face)
    assert result.background_weight is None
    np.testing.assert_array_equal(result.image, result.faces[0].restored)
    # FFHQ-aligned faces for a model of another framing: the face's surroundings in the image are restored
    ffhq = FaceRestorer(model=small_checkpoint, template="celeba-hq", aligned="ffhq", weight=1.0).restore(_photo(7, (300, 300)))
    assert ffhq.background_weight == 1.0


def test_the_command_line_reports_the_background_weight_and_can_turn_it_off(small_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "face.png", _photo(8, (128, 128)))
    for flag, expected in ((None, 1.0), ("--no-background", None), ("--keep-white-balance", 1.0)):
        out = tmp_path / f"out-{flag}"
        argv = ["restore", str(folder), "-o", str(out), "--aligned", "--template", "celeba-hq", "--model",
                small_checkpoint, "--weight", "1", "--report"] + ([flag] if flag else [])
        assert main(argv) == 0
        report = json.loads(next(out.rglob("*.json")).read_text())
        assert report["background_weight"] == expected
        assert read_image(next(p for p in out.rglob("face*.png"))).pixels.shape == (128, 128, 3)


# ---- training -----------------------------------------------------------------------------------


def test_training_pairs_keep_colours_and_a_tiny_run_writes_a_loadable_restorer(tmp_path):
    rng = np.random.default_rng(9)
    gt = np.clip(_photo(9, (200, 200)) / 255.0, 0, 1).astype(np.float32)
    lq, reference = degraded_photo(gt, "clean", rng)
    assert lq is gt and reference is gt
    for _ in range(6):
        lq, reference = degraded_photo(gt, "paper", rng)
        assert lq.shape == gt.shape and lq.dtype == np.float32
        # no colour steps: the mean colour stays (grey ones are grey on both sides)
        assert np.abs(lq.mean(axis=(0, 1)) - reference.mean(axis=(0, 1))).max() < 0.03
    files = []
    for i in range(8):
        files.append(tmp_path / f"{i}.png")
        write_image(files[-1], _photo(10 + i, (192, 192)))
    out = tmp_path / "photo-restorer.safetensors"
    lines: list[str] = []
    summary = train_photo_restorer(files, out, iterations=4, batch_size=2, crop=96, holdout=3, eval_every=2,
                                   log=lines.append)
    assert out.is_file() and len(lines) == 2 and set(summary) == {"clean", "mild", "paper", "all"}
    network = build_from_state_dict(load_file(str(out)), str(out)).network
    assert isinstance(network, PhotoRestorerNet)
    assert held_out_psnr(network, [("clean", gt, gt)])["clean"]["output"] > 20
