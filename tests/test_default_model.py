"""The bundled default model "faceprior-256": catalogue entry, fallback choice, integrity checks.

Tests that build their own bundled folder use random weights of the registered architecture; the
last tests check the file that actually ships in faceprior/data/.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprior.face.templates import CELEBA_HQ_TEMPLATE_256
from faceprior.models import create_model
from faceprior.models.gfpgan_clean import DECODER_NOISE_STRENGTH
from faceprior.models.loading import infer_architecture, resolve_model
from faceprior.restoration.restorer import FaceRestorer, NoModelError, choose_model
from faceprior.weights import catalogue
from faceprior.weights.catalogue import CATALOGUE, entries, fetch_weights, is_present, local_path
from faceprior.weights.safetensors import load_safetensors, save_safetensors
from faceprior.weights.store import WeightsUnavailableError, sha256_of_file

NAME = "faceprior-256"


@pytest.fixture
def random_bundle(monkeypatch, tmp_path: Path) -> Path:
    """An fp16 safetensors of random faceprior-256 weights as the bundled file, catalogue entry pinned to it."""
    entry = CATALOGUE[NAME]
    torch.manual_seed(0)
    model = create_model(entry.arch, **resolve_model(NAME).options)
    path = tmp_path / "bundled" / entry.filename
    path.parent.mkdir()
    save_safetensors({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    monkeypatch.setattr(catalogue, "BUNDLED_DIR", path.parent)
    monkeypatch.setitem(CATALOGUE, NAME, replace(entry, sha256=sha256_of_file(path), size=path.stat().st_size))
    return path


def test_bundled_model_is_the_fallback_when_the_cache_is_empty(random_bundle: Path, tmp_path: Path):
    present = [entry.name for entry in entries("restoration") if is_present(entry, tmp_path / "empty-cache")]
    assert present == [NAME] and local_path(CATALOGUE[NAME]) == random_bundle
    choice = choose_model(None, cache_dir=str(tmp_path / "empty-cache"))
    assert choice.name == NAME and choice.input_size == 256
    assert "bundled default model" in choice.reason and "GFPGANv1.4.pth" in choice.reason
    np.testing.assert_array_equal(choice.template, CELEBA_HQ_TEMPLATE_256)
    assert type(choice.model).__name__ == "GFPGANv1Clean" and next(choice.model.parameters()).dtype == torch.float32


def test_official_model_in_the_cache_wins_over_the_bundled_one(random_bundle: Path, tmp_path: Path, reference_dir: Path,
                                                               monkeypatch):
    config = json.loads((reference_dir / "index.json").read_text())["configs"]["GFPGANv1Clean_small"]
    monkeypatch.setitem(CATALOGUE, "gfpgan-1.3", replace(CATALOGUE["gfpgan-1.3"], sha256=None, size=None))
    cache = tmp_path / "cache"
    (cache / "weights").mkdir(parents=True)
    shutil.copy(reference_dir / config["ckpt"], cache / "weights" / "GFPGANv1.3.pth")
    assert choose_model(None, cache_dir=str(cache)).name == "gfpgan-1.3"
    (cache / "weights" / "GFPGANv1.3.pth").unlink()
    assert choose_model(None, cache_dir=str(cache)).name == NAME


def test_bundled_file_missing_or_altered_is_a_one_line_error(random_bundle: Path, tmp_path: Path):
    data = bytearray(random_bundle.read_bytes())
    data[-1] ^= 0xFF
    random_bundle.write_bytes(bytes(data))
    with pytest.raises(WeightsUnavailableError, match=r"does not match its SHA-256 .*reinstall"):
        fetch_weights(CATALOGUE[NAME])
    random_bundle.unlink()
    with pytest.raises(WeightsUnavailableError, match="missing from this installation"):
        fetch_weights(CATALOGUE[NAME])
    with pytest.raises(NoModelError, match=r"GFPGANv1\.4\.pth"):
        choose_model(None, cache_dir=str(tmp_path / "empty-cache"))


def test_restorer_aligns_faces_to_the_bundled_template(random_bundle: Path, tmp_path: Path):
    class TemplateDetector:  # one face whose landmarks sit exactly on the template
        def detect_arrays(self, image):
            return (np.array([[30, 30, 226, 226]], np.float32), np.ones(1, np.float32),
                    CELEBA_HQ_TEMPLATE_256[None].astype(np.float32))

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    restorer = FaceRestorer(model=None, detector=TemplateDetector(), cache_dir=str(tmp_path / "empty-cache"), weight=1.0,
                            background=False, refine_landmarks=False)  # this bundle folder holds the model alone
    (face,) = restorer.restore(image).faces
    assert face.aligned.shape == (256, 256, 3) and face.restored.shape == (256, 256, 3)
    inner = (slice(8, -8), slice(8, -8))  # identity warp: the crop is the image itself
    assert np.abs(face.aligned[inner].astype(int) - image[inner]).max() <= 1


# ----------------------------------------------------------------------------------------------
# The file that ships


def test_shipped_file_matches_its_catalogue_entry():
    entry = CATALOGUE[NAME]
    path = local_path(entry)
    if not path.is_file():
        pytest.fail(f"{path}: the bundled model is missing from the checkout")
    assert entry.sha256 is not None and entry.size is not None
    assert fetch_weights(entry) == path  # size and SHA-256 checked
    assert path.stat().st_size < 40 * 2**20


def test_shipped_model_has_its_decoder_noise_off():
    """From version 4 on the decoder's noise strengths ship as zero (docs/default_model.md): the
    restored face must not depend on the stored noise buffers (they put one fixed mottled pattern
    on every face)."""
    entry = CATALOGUE[NAME]
    state = load_safetensors(local_path(entry))
    arch, options = infer_architecture(state)
    model = create_model(arch, **options).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    noises = [buffer for name, buffer in model.named_buffers() if name.startswith("stylegan_decoder.noises.")]
    strengths = {k: v for k, v in state.items() if DECODER_NOISE_STRENGTH.match(k)}
    assert len(strengths) == len(noises) == 13  # one per StyleConv at 256 px
    assert all(float(v.abs().max()) == 0 for v in strengths.values())
    torch.manual_seed(0)
    face = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        before = model(face)[0]
        for buffer in noises:
            buffer.normal_()
        after = model(face)[0]
    assert torch.equal(before, after)


def test_restore_on_an_offline_machine_uses_the_bundled_model(tmp_path: Path, monkeypatch, capsys):
    """What `make demo` runs: the bundled examples, no official model, no network (MTCNN weights
    copied into the fresh weight cache as the first run would have downloaded them)."""
    from faceprior.cli import main
    from faceprior.face.mtcnn import MTCNNWeightsError, mtcnn_weights_dir
    from faceprior.imaging.io import read_image
    from faceprior.weights import store

    try:
        mtcnn = mtcnn_weights_dir()
    except MTCNNWeightsError as error:
        pytest.skip(f"MTCNN weights unavailable: {error}")
    home = tmp_path / "home"
    shutil.copytree(mtcnn, home / "weights" / "mtcnn")
    monkeypatch.setenv(store.ENV_HOME, str(home))
    monkeypatch.setenv(store.ENV_OFFLINE, "1")
    examples = Path(__file__).resolve().parent.parent / "examples"
    inputs = sorted(p for p in examples.iterdir() if p.suffix in (".png", ".jpg"))
    assert main(["restore", str(examples), "-o", str(tmp_path / "out"), "--report"]) == 0
    err = capsys.readouterr().err
    assert f"model {NAME} (bundled default model" in err
    for path in inputs:
        report = json.loads((tmp_path / "out" / "reports" / f"{path.stem}.json").read_text())
        assert report["model"] == NAME and len(report["faces"]) >= 1, path.name
        restored = read_image(tmp_path / "out" / path.name).pixels
        assert restored.shape == read_image(path).pixels.shape and np.any(restored != read_image(path).pixels)
