"""Shared test fixtures: paths to ../shared (reference pack and face photos)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED / "reference"
DATA_DIR = SHARED / "data"


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official reference pack (checkpoints + outputs); skips if absent."""
    if not (REFERENCE_DIR / "index.json").is_file():
        pytest.skip(f"reference pack not found at {REFERENCE_DIR} (needs ../shared/reference)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real face photos in ../shared/data; skips if absent."""
    if not (DATA_DIR / "README.md").is_file():
        pytest.skip(f"face photo folder not found at {DATA_DIR} (needs ../shared/data)")
    return DATA_DIR
