"""`faceprior restore` on batches with bad files, resumption and the never-overwrite rules."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceprior.cli import main
from faceprior.imaging.io import read_image
from faceprior.restoration.batch import OUTPUT_RECORD

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_checkpoint(reference_dir):
    return str(reference_dir / "ckpt" / "GFPGANv1Clean_small.pth")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _face_png(path: Path, seed: int, size: int = 128) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "in put"
    (folder / "sub").mkdir(parents=True)
    _face_png(folder / "good.png", 0)
    _face_png(folder / "sub" / "visage é 1.png", 1)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image")
    return folder


def test_batch_goes_on_past_bad_files_and_reports_them(mixed_folder, tmp_path, small_checkpoint, capsys):
    before = _digest(mixed_folder)
    out = tmp_path / "out"
    code = main(["restore", str(mixed_folder), "-o", str(out), "--aligned", "--model", small_checkpoint, "--report"])
    err = capsys.readouterr().err
    assert code == 1
    assert (out / "good.png").is_file() and (out / "sub" / "visage é 1.png").is_file()
    assert read_image(out / "good.png").pixels.shape == (128, 128, 3)
    assert "2 image(s) restored" in err and "3 failed" in err
    for name in ("truncated.jpg", "empty.jpg", "notes.png"):
        lines = [line for line in err.splitlines() if "failed:" in line and name in line]
        assert len(lines) == 1, err
    assert "Traceback" not in err
    report = json.loads((out / "reports" / "good.json").read_text())
    assert len(report["faces"]) == 1 and "restore" in report["timings_ms"]
    assert _digest(mixed_folder) == before, "an input file was modified"
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_output_folder_equal_to_input_folder_never_overwrites_inputs(tmp_path, small_checkpoint):
    folder = tmp_path / "photos"
    folder.mkdir()
    _face_png(folder / "a.png", 3)
    _face_png(folder / "b.png", 4)
    before = _digest(folder)
    assert main(["restore", str(folder), "-o", str(folder), "--aligned", "--model", small_checkpoint]) == 0
    after = _digest(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) == {"a.png", "b.png", "a_restored.png", "b_restored.png", OUTPUT_RECORD}
    # Run again: the outputs of the first run are recognised as such, not restored again.
    assert main(["restore", str(folder), "-o", str(folder), "--aligned", "--model", small_checkpoint,
                 "--skip-existing"]) == 0
    assert set(_digest(folder)) == set(after)


def test_skip_existing_resumes_and_existing_outputs_are_kept(tmp_path, small_checkpoint, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        _face_png(folder / f"{i}.png", 10 + i)
    out = tmp_path / "out"
    assert main(["restore", str(folder), "-o", str(out), "--aligned", "--model", small_checkpoint]) == 0
    outputs = _digest(out)
    first_run = read_image(out / "1.png").pixels.astype(int)
    (out / "1.png").unlink()
    capsys.readouterr()
    assert main(["restore", str(folder), "-o", str(out), "--aligned", "--model", small_checkpoint, "--skip-existing"]) == 0
    assert "1 image(s) restored" in capsys.readouterr().err
    remade = _digest(out)
    assert {k: v for k, v in remade.items() if k != "1.png"} == {k: v for k, v in outputs.items() if k != "1.png"}
    # deterministic: the re-made file is the same image, to the float rounding of a forward of one
    # face instead of three (a level at a few pixels)
    assert np.abs(read_image(out / "1.png").pixels.astype(int) - first_run).max() <= 1
    # Without --skip-existing or --overwrite, existing outputs are reported, not replaced.
    assert main(["restore", str(folder), "-o", str(out), "--aligned", "--model", small_checkpoint]) == 1
    assert "exists" in capsys.readouterr().err
    assert _digest(out) == remade


def test_globs_and_output_extension(tmp_path, small_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    _face_png(folder / "x.png", 20)
    _face_png(folder / "y.png", 21)
    out = tmp_path / "out"
    assert main(["restore", str(folder / "*.png"), "-o", str(out), "--aligned", "--model", small_checkpoint,
                 "--ext", "jpg"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg", "y.jpg"]
    assert read_image(out / "x.jpg").format == "JPEG"


def test_missing_input_and_bad_model_are_one_line_errors(tmp_path, small_checkpoint, capsys):
    assert main(["restore", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--aligned",
                 "--model", small_checkpoint]) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "Traceback" not in err
    _face_png(tmp_path / "a.png", 0)
    bad_model = tmp_path / "model.pth"
    bad_model.write_bytes(b"not a checkpoint")
    assert main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(bad_model)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pth" in err[0]


def test_huge_image_is_refused_before_decoding(tmp_path, small_checkpoint, capsys):
    Image.new("L", (6000, 6000)).save(tmp_path / "big.png")
    _face_png(tmp_path / "ok.png", 5)
    code = main(["restore", str(tmp_path / "big.png"), str(tmp_path / "ok.png"), "-o", str(tmp_path / "o"),
                 "--aligned", "--model", small_checkpoint, "--max-pixels", "1000000"])
    err = capsys.readouterr().err
    assert code == 1 and "big.png" in err and (tmp_path / "o" / "ok.png").is_file()


def test_sepia_photos_keep_their_tone_unless_told(tmp_path, small_checkpoint, capsys):
    from faceprior.face.mtcnn import MTCNNWeightsError, mtcnn_weights_dir
    from faceprior.imaging.pixels import rgb_to_gray
    from faceprior.imaging.tone import photo_tone

    try:
        mtcnn_weights_dir()
    except MTCNNWeightsError as error:
        pytest.skip(f"MTCNN weights unavailable: {error}")
    luma = rgb_to_gray(read_image(REPO / "examples" / "astronaut.png").pixels.astype(np.float32) / 255)
    sepia = np.stack([luma * 1.07 + 0.02, luma * 0.95 + 0.01, luma * 0.78], axis=-1)
    Image.fromarray(np.round(np.clip(sepia, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "sepia.png")
    toned = {}
    for flag in ("--keep-tone", "--no-keep-tone"):
        out = tmp_path / flag
        assert main(["restore", str(tmp_path / "sepia.png"), "-o", str(out), "--model", small_checkpoint,
                     "--weight", "1", flag]) == 0, capsys.readouterr().err
        toned[flag] = photo_tone(read_image(out / "sepia.png").pixels) is not None
    assert toned == {"--keep-tone": True, "--no-keep-tone": False}


@pytest.mark.slow
def test_whole_photo_with_the_default_detector(tmp_path, small_checkpoint, capsys):
    """The bundled example photo: MTCNN finds the face, the output keeps size and format."""
    from faceprior.face.mtcnn import MTCNNWeightsError, mtcnn_weights_dir

    try:
        mtcnn_weights_dir()
    except MTCNNWeightsError as error:
        pytest.skip(f"MTCNN weights unavailable: {error}")
    out = tmp_path / "out"
    code = main(["restore", str(REPO / "examples" / "astronaut.png"), "-o", str(out), "--model", small_checkpoint,
                 "--report", "--save-faces", "--save-compare", "--upscale", "2"])
    assert code == 0, capsys.readouterr().err
    restored = read_image(out / "astronaut.png")
    assert restored.pixels.shape == (1024, 1024, 3)
    report = json.loads((out / "reports" / "astronaut.json").read_text())
    assert len(report["faces"]) == 1
    x1, y1, x2, y2 = report["faces"][0]["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200  # Eileen Collins' face
    assert (out / "faces" / "astronaut_00_restored.png").is_file()
    assert (out / "compare" / "astronaut_00.png").is_file()


@pytest.mark.slow
def test_photo_with_a_hundred_faces(tmp_path, small_checkpoint):
    """A 10 x 10 grid of the example face: every face is found, restored in batches and pasted."""
    from faceprior.face.mtcnn import MTCNNWeightsError, mtcnn_weights_dir
    from faceprior.restoration.restorer import FaceRestorer

    try:
        mtcnn_weights_dir()
    except MTCNNWeightsError as error:
        pytest.skip(f"MTCNN weights unavailable: {error}")
    face = np.asarray(Image.open(REPO / "examples" / "astronaut.png").convert("RGB").crop((150, 30, 300, 200)).resize((100, 110)))
    grid = np.tile(face, (10, 10, 1))
    restorer = FaceRestorer(model=small_checkpoint, batch_size=16)
    result = restorer.restore(grid)
    assert len(result.faces) == 100
    centres = sorted((round(float(f.box[1] + f.box[3]) / 2 // 110), round(float(f.box[0] + f.box[2]) / 2 // 100))
                     for f in result.faces)
    assert centres == [(row, col) for row in range(10) for col in range(10)]  # one face per cell
    assert result.image.shape == grid.shape and np.any(result.image != grid)


def test_next_input_is_decoded_in_the_background_and_skipped_files_are_not_read(tmp_path, monkeypatch):
    import threading
    from types import SimpleNamespace

    from faceprior.restoration import batch
    from faceprior.restoration.restorer import Result

    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(4):
        _face_png(folder / f"{seed}.png", seed, size=32)
    (folder / "3.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    _face_png(out / "1.png", 9, size=32)  # already restored: skipped, never decoded

    reads = []

    def recording_read(path, max_pixels=None):
        reads.append((path.name, threading.current_thread().name))
        return read_image(path, max_pixels=max_pixels)

    class Identity:  # a restorer that finds no faces and returns the image unchanged
        batch_size = 4

        def prepare(self, image):
            return SimpleNamespace(image=image, crops=[])

        def restore_prepared(self, photos):
            return [Result(image=photo.image, alpha=None, faces=[]) for photo in photos]

    monkeypatch.setattr(batch, "read_image", recording_read)
    inputs, _ = batch.find_inputs([str(folder)])
    plans, _ = batch.plan_outputs(inputs, out)
    summary = batch.restore_files(Identity(), plans, out, skip_existing=True)
    assert sorted(name for name, _ in reads) == ["0.png", "2.png", "3.png"]
    assert all(thread.startswith("faceprior-read") for _, thread in reads)
    assert summary.images == 2 and summary.skipped == 1
    assert [Path(name).name for name, _ in summary.failures] == ["3.png"]
    np.testing.assert_array_equal(read_image(out / "2.png").pixels, read_image(folder / "2.png").pixels)
