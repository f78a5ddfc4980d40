"""The package's structure: layers that import downward only, and architectures that declare
themselves (a new one is one module plus one table entry)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import faceprior
from faceprior.models import ARCHITECTURES
from faceprior.models.architecture import ArchitectureError
from faceprior.restoration.restorer import FaceRestorer
from faceprior.weights.checkpoint import save_state_dict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_layers  # noqa: E402
import toy_architecture  # noqa: E402


def test_the_package_imports_downward_only_without_cycles():
    assert check_layers.find_violations(REPO) == []


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_layer_check_finds_upward_imports_and_cycles(tmp_path):
    """The check itself: an upward import hidden in a function, a relative one, an unlisted group and
    a cycle between two modules are each reported; the clean package is not."""
    root = tmp_path / "src"
    _write(root / "pkg" / "__init__.py", "")
    _write(root / "pkg" / "low" / "__init__.py", "")
    _write(root / "pkg" / "low" / "a.py", "import os\n")
    _write(root / "pkg" / "high" / "__init__.py", "")
    _write(root / "pkg" / "high" / "b.py", "from pkg.low import a\nfrom ..low.a import os\n")
    layers = {"low": 0, "high": 1, "": 2}
    assert check_layers.find_violations(root, "pkg", layers) == []

    _write(root / "pkg" / "low" / "a.py", "def later():\n    from pkg.high import b\n")
    _write(root / "pkg" / "low" / "c.py", "from . import d\n")
    _write(root / "pkg" / "low" / "d.py", "import pkg.low.c\n")
    _write(root / "pkg" / "extra.py", "")
    problems = check_layers.find_violations(root, "pkg", layers)
    assert any("pkg/low/a.py:2" in p and "pkg.high.b" in p and "not downward" in p for p in problems), problems
    assert any(p.startswith("import cycle:") and "pkg.low.c" in p and "pkg.low.d" in p for p in problems), problems
    assert any("pkg/extra.py" in p and "no layer" in p for p in problems), problems
    assert any(p.startswith("import cycle:") and "pkg.low.a" in p and "pkg.high.b" in p for p in problems), problems


@pytest.fixture
def toy_in_the_table(monkeypatch):
    """The one table entry a new architecture adds."""
    monkeypatch.setitem(ARCHITECTURES, "ToyRestorer", toy_architecture.ARCHITECTURE)


def test_a_new_architecture_is_one_module_and_one_table_entry(toy_in_the_table, tmp_path):
    torch.manual_seed(0)
    toy = toy_architecture.ToyRestorer(channels=6, size=24)
    path = tmp_path / "toy.pth"
    save_state_dict(toy.state_dict(), path, key="params_ema")

    model = faceprior.load_model(path)  # recognised from the file alone
    assert type(model) is toy_architecture.ToyRestorer and not model.training
    descriptor = faceprior.resolve_model(path)
    assert (descriptor.arch, descriptor.options, descriptor.face_size) == ("ToyRestorer", {"channels": 6, "size": 24}, 24)
    assert descriptor.purpose == "restoration" and descriptor.license.startswith("unknown")

    # ... and the restorer runs it with no other change (aligned 24 px faces; the reference forward).
    restorer = FaceRestorer(model=str(path), aligned=True, precision="reference", weight=1.0)
    face = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    result = restorer.restore(face)
    with torch.no_grad():
        expected = toy(torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1).clamp(-1, 1)
    expected = ((expected[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype(np.uint8)
    assert np.abs(result.image.astype(int) - expected.astype(int)).max() <= 1


def test_without_its_table_entry_the_toy_is_unknown(tmp_path):
    path = tmp_path / "toy.pth"
    save_state_dict(toy_architecture.ToyRestorer().state_dict(), path)
    with pytest.raises(ArchitectureError, match="unknown state-dict layout"):
        faceprior.load_model(path)
