"""dlib's face-recognition ResNet in PyTorch: read from dlib's own file, equal to dlib's descriptor;
the identity loss built on it and its wiring into GFP-GAN training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprior.models.dlib_resnet import DLIB_CHIP_SIZE, DlibFaceResNet, load_dlib_face_resnet, read_dlib_resnet_parameters
from faceprior.training.losses import DlibIdentityLoss

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO_ROOT.parent / "shared" / "data" / "faces-train-256"


@pytest.fixture(scope="module")
def dlib_files():
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib is not installed (pip install 'faceprior[eval]')")
    from faceprior.metrics.identity import dlib_model_paths

    return dlib_model_paths()


@pytest.fixture(scope="module")
def net(dlib_files) -> DlibFaceResNet:
    return load_dlib_face_resnet(dlib_files[0])


def _example_chip() -> np.ndarray:
    """A 150x150 uint8 RGB chip cut from a bundled example photo (any image gives a descriptor)."""
    from PIL import Image

    image = Image.open(sorted((REPO_ROOT / "examples").glob("*.jpg"))[0]).convert("RGB")
    return np.array(image.resize((DLIB_CHIP_SIZE, DLIB_CHIP_SIZE), Image.BICUBIC))


def test_descriptor_equals_dlibs_own_on_the_same_chip(net, dlib_files):
    import dlib

    recognizer = dlib.face_recognition_model_v1(str(dlib_files[0]))
    rng = np.random.default_rng(0)
    chips = [_example_chip(), rng.integers(0, 256, (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3), dtype=np.uint8)]
    for chip in chips:
        expected = np.asarray(recognizer.compute_face_descriptor(chip))
        x = torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            ours = net.descriptor_from_unit_range(x)[0].double().numpy()
        assert np.linalg.norm(expected) > 0.5
        assert np.abs(ours - expected).max() < 1e-5


def test_parameters_are_frozen_and_every_tensor_comes_from_the_file(net, dlib_files):
    state = read_dlib_resnet_parameters(dlib_files[0])
    assert set(state) == set(DlibFaceResNet().state_dict())
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    # no tensor kept its initial value (ones / zeros / PyTorch's init)
    fresh = DlibFaceResNet().state_dict()
    assert all(not torch.equal(state[name], fresh[name]) for name in state)


def test_a_file_that_is_not_the_network_is_a_one_line_error(tmp_path, dlib_files):
    other = tmp_path / "shape_predictor.dat"
    other.write_bytes(dlib_files[1].read_bytes()[:4096])
    with pytest.raises(ValueError, match=f"{other}: not a dlib metric-learning network"):
        read_dlib_resnet_parameters(other)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dlib_files[0].read_bytes()[:2_000_000])
    with pytest.raises(ValueError, match=f"{cut}: expected 29 con_4"):
        read_dlib_resnet_parameters(cut)


def test_identity_loss_is_zero_for_the_same_face_and_trains_only_the_restored_face(net):
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 64, 64) * 2 - 1
    restored = (gt + 0.3 * torch.randn_like(gt)).clamp(-1, 1).requires_grad_(True)
    gt.requires_grad_(True)
    loss = DlibIdentityLoss(net, (4, 6, 59, 61), weight=2.0)
    assert loss(gt.detach(), gt.detach()).item() == 0.0
    value = loss(restored, gt)
    value.backward()
    assert value.item() > 0 and restored.grad.abs().sum() > 0 and gt.grad is None
    # the chip is the box resampled, blurred, in grey: a box of the whole image gives a ramp back
    # (a Gaussian keeps a linear ramp away from the borders), and pixel noise mostly goes
    ramp = torch.arange(150.0).expand(1, 3, 150, 150)
    chip = DlibIdentityLoss(net, (0, 0, 149, 149)).chips(ramp)
    assert torch.allclose(chip[..., 3:-3], ramp[..., 3:-3], rtol=2e-4, atol=1e-3)
    noise = torch.randn(1, 3, 256, 256)
    grey_noise = (0.2989 * noise[:, 0] + 0.5870 * noise[:, 1] + 0.1140 * noise[:, 2])
    assert DlibIdentityLoss(net, (0, 0, 255, 255)).chips(noise).std() < 0.5 * grey_noise.std()
    # colour alone (same grey) does not change the loss
    tinted = gt.detach().clone()
    tinted[:, 0] += 0.1 / 0.2989 * 0.05
    tinted[:, 1] -= 0.1 / 0.5870 * 0.05
    assert loss(tinted, gt.detach()).item() < 1e-3
    with pytest.raises(ValueError, match="right > left"):
        DlibIdentityLoss(net, (10, 0, 5, 20))


@pytest.mark.slow
def test_training_with_the_dlib_identity_loss(tmp_path, dlib_files):
    """identity_net: dlib: the chip box comes from real training faces, the loss is logged and
    moves the generator; on faces dlib cannot find, a one-line config error."""
    from train_helpers import make_face_folder, tiny_config

    from faceprior.training.config import ConfigError
    from faceprior.training.distributed import DistributedContext
    from faceprior.training.logging import NullLogger
    from faceprior.training.train_gfpgan import GFPGANTrainer

    # (the other auxiliary losses off: no warnings about their random networks or missing boxes)
    only_identity = {"model__identity_net": "dlib", "losses__identity": 1.0, "losses__perceptual": 0.0,
                     "losses__style": 0.0, "losses__component_gan": 0.0, "losses__component_style": 0.0}
    synthetic = make_face_folder(tmp_path / "synthetic")
    with pytest.raises(ConfigError, match="dlib found a face in only 0 of"):
        GFPGANTrainer(tiny_config(tmp_path, synthetic, **only_identity), DistributedContext(), NullLogger())
    if not SHARED_TRAIN.is_dir():
        pytest.skip(f"{SHARED_TRAIN} is absent: the chip box needs real faces")
    from PIL import Image

    real = tmp_path / "real"
    real.mkdir()
    for path in sorted(SHARED_TRAIN.iterdir())[:48]:  # copies in the test's temporary folder only
        Image.open(path).convert("RGB").save(real / f"{path.stem}.png")
    config = tiny_config(tmp_path, real, **only_identity)
    trainer = GFPGANTrainer(config, DistributedContext(), NullLogger())
    assert trainer.arcface is None and trainer.dlib_identity is not None
    left, top, right, bottom = trainer.dlib_identity.box
    assert 0 <= left < right <= 31 and 0 <= top < bottom <= 31 and abs(left + right - 31) < 1e-6
    batch = [next(iter(torch.utils.data.DataLoader(trainer.train_dataset, batch_size=2)))]
    before = [p.detach().clone() for p in trainer.net_g.parameters()]
    logs = trainer.train_step(1, batch)
    assert torch.isfinite(logs["l_identity"]) and logs["l_identity"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.net_g.parameters()))


def test_the_identity_loss_from_given_weights_and_box_needs_no_dlib(tmp_path, dlib_files, monkeypatch):
    """model.dlib_resnet (a float16 .safetensors of the network) and model.dlib_chip_box: the
    trainer builds the loss without the dlib package (as on a machine that cannot install it)."""
    from train_helpers import make_face_folder, tiny_config

    from faceprior.training import train_gfpgan
    from faceprior.training.distributed import DistributedContext
    from faceprior.training.logging import NullLogger
    from faceprior.weights.safetensors import save_safetensors

    state = read_dlib_resnet_parameters(dlib_files[0])
    weights = tmp_path / "dlib_resnet.safetensors"
    save_safetensors({name: tensor.half() for name, tensor in state.items()}, weights)

    def no_dlib():
        raise AssertionError("load_dlib_identity was called")

    monkeypatch.setattr(train_gfpgan, "load_dlib_identity", no_dlib)
    config = tiny_config(tmp_path, make_face_folder(tmp_path / "faces"), model__identity_net="dlib",
                         model__dlib_resnet=str(weights), model__dlib_chip_box=[3.0, 5.0, 28.0, 30.0],
                         losses__identity=1.0, losses__perceptual=0.0, losses__style=0.0,
                         losses__component_gan=0.0, losses__component_style=0.0)
    trainer = train_gfpgan.GFPGANTrainer(config, DistributedContext(), NullLogger())
    assert trainer.dlib_identity.box == (3.0, 5.0, 28.0, 30.0)
    loaded = trainer.dlib_identity.net.state_dict()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor.half().float()), name
