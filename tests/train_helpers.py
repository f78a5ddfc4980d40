"""Shared helpers of the training tests: tiny synthetic face folders and configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest
import torch

from faceprior.imaging.io import write_image
from faceprior.training.config import TrainConfig, config_from_dict
from faceprior.training.dataset import ComponentBoxes, ComponentBoxFile, save_component_boxes

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_test.yaml"


def make_face_folder(folder: Path, count: int = 8, size: int = 32, seed: int = 0) -> Path:
    """``count`` smooth random RGB images (size x size PNG): low-frequency noise, face-sized blobs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = torch.from_numpy(rng.random((1, 3, 4, 4), dtype=np.float32))
        image = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        image = image[0].clamp(0, 1).permute(1, 2, 0).numpy()
        write_image(folder / f"{i:05d}.png", image)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: two threads on a CPU shared with other processes are many times slower.
    Autouse in every test module that imports it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """A module-wide folder of 8 synthetic 32 px faces."""
    return make_face_folder(tmp_path_factory.mktemp("faces") / "faces")


def make_component_file(path: Path, folder: Path, size: int = 32) -> Path:
    """A component-box JSON for every image of ``folder`` (eyes and mouth where a face would have them)."""
    s = size / 32
    boxes = ComponentBoxes(left_eye=(10.5 * s, 12 * s, 3 * s), right_eye=(21.5 * s, 12 * s, 3 * s),
                           mouth=(16 * s, 24 * s, 4 * s))
    names = sorted(p.name for p in folder.iterdir())
    save_component_boxes(ComponentBoxFile(frame_size=size, boxes={name: boxes for name in names}), path)
    return path


def tiny_yaml_dict() -> dict:
    import yaml

    return yaml.safe_load(TINY_CONFIG.read_text())


def deep_update(data: dict, updates: Mapping[str, Any]) -> dict:
    """Set dotted keys (``"train.out_dir"``) of a nested dict in place; returns it."""
    for key, value in updates.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def tiny_config(tmp_path: Path, faces: Path, out_name: str = "run", **updates: Any) -> TrainConfig:
    """configs/tiny_test.yaml on ``faces`` (train and val), out_dir ``tmp_path/out_name``; ``updates``
    are dotted keys with ``__`` for dots, e.g. ``train__total_iter=4``."""
    data = deep_update(tiny_yaml_dict(), {"data.train": str(faces), "data.val": str(faces),
                                          "train.out_dir": str(tmp_path / out_name)})
    deep_update(data, {key.replace("__", "."): value for key, value in updates.items()})
    return config_from_dict(data, source=str(TINY_CONFIG))


def flat_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor / number inside nested dicts and lists, keyed by its path."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flat_tensors(value, f"{prefix}{key}/"))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(flat_tensors(value, f"{prefix}{i}/"))
    elif isinstance(obj, (torch.Tensor, int, float)):
        out[prefix.rstrip("/")] = obj
    return out
