"""Resumable training checkpoints, written atomically.

Run folder layout (``train.out_dir``)::

    checkpoints/state_00005000.pth   full training state (below), the newest ``keep_checkpoints``
    models/net_g_00005000.pth        {"params": G, "params_ema": EMA G}, as basicsr's net_g_*.pth:
                                     loadable by faceprior.load_model / decoder_load_path

A training state is a plain dict read back with ``torch.load(weights_only=True)`` (no pickled
Python objects)::

    {"format": "faceprior.training_state", "version": 1, "task": "gfpgan", "iteration": 5000,
     "data_position": {"epoch": 3, "batches_done": 120}, "world_size": 1,
     "modules": {"net_g": state_dict, "net_g_ema": ..., "net_d": ..., ...},
     "optimizers": {"optimizer_g": Adam state_dict, ...},
     "schedulers": {"optimizer_g": {"base_lr": ..., "lr": ..., "milestones": [...], "gamma": ...}, ...},
     "rng": [per-rank {"python", "numpy", "torch", "cuda"} states],
     "extra": {...trainer state, e.g. the StyleGAN2 mean path length...},
     "config": "the YAML text of the config"}

Files are written to a temporary name in the same folder, flushed, fsync'ed and renamed with
``os.replace``: a crash at any moment leaves either the previous checkpoint set or the new one,
never a truncated file under a final name (stale temporary files are removed on the next start).
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import nn

from faceprior.paths import PathLike, atomic_write, is_temporary_file
from faceprior.weights.checkpoint import CheckpointError, read_checkpoint

__all__ = [
    "TRAINING_STATE_FORMAT",
    "capture_rng_state",
    "checkpoint_path",
    "exported_model_path",
    "export_generator",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_training_state",
    "prune_run_files",
    "remove_stale_temporary_files",
    "restore_rng_state",
    "save_training_state",
]

TRAINING_STATE_FORMAT = "faceprior.training_state"
TRAINING_STATE_VERSION = 1
_STATE_NAME = re.compile(r"^state_(\d{8,})\.pth$")
_MODEL_NAME = re.compile(r"^net_g_(\d{8,})\.pth$")



def checkpoint_path(out_dir: PathLike, iteration: int) -> Path:
    """``out_dir/checkpoints/state_{iteration:08d}.pth``."""
    return Path(out_dir) / "checkpoints" / f"state_{iteration:08d}.pth"


def exported_model_path(out_dir: PathLike, iteration: int) -> Path:
    """``out_dir/models/net_g_{iteration:08d}.pth``."""
    return Path(out_dir) / "models" / f"net_g_{iteration:08d}.pth"


def _numbered(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name)) and p.is_file()]
    return sorted(found)


def list_checkpoints(out_dir: PathLike) -> list[tuple[int, Path]]:
    """[(iteration, path)] of the training states in ``out_dir/checkpoints``, oldest first."""
    return _numbered(Path(out_dir) / "checkpoints", _STATE_NAME)


def save_training_state(state: Mapping[str, Any], path: PathLike) -> Path:
    """Write a training state atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(dict(state), f)
    return path


def load_training_state(path: PathLike) -> dict:
    """Read a training state safely (``weights_only``). Raises CheckpointError (one line)."""
    return check_training_state(read_checkpoint(path), path)


def check_training_state(state: object, path: PathLike) -> dict:
    """``state`` (what :func:`read_checkpoint` read from ``path``) as a training-state dict, or
    CheckpointError (one line) when it is not one of this version."""
    if not isinstance(state, Mapping) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(path, "not a faceprior training state (no 'format': 'faceprior.training_state')")
    if state.get("version") != TRAINING_STATE_VERSION:
        raise CheckpointError(path, f"unsupported training-state version {state.get('version')!r}")
    return dict(state)


def find_latest_checkpoint(out_dir: PathLike) -> Optional[tuple[Path, dict]]:
    """The newest readable training state of a run folder as (path, state), or None.

    An unreadable newest file (which atomic writes should make impossible, but a disk can fail)
    is skipped with a warning and the previous one is used.
    """
    for _, path in reversed(list_checkpoints(out_dir)):
        try:
            return path, load_training_state(path)
        except CheckpointError as error:
            warnings.warn(f"skipping unreadable checkpoint: {error}", stacklevel=2)
    return None


def remove_stale_temporary_files(out_dir: PathLike) -> list[Path]:
    """Delete temporary files left by writes interrupted by a crash (:func:`faceprior.paths.is_temporary_file`)."""
    removed = []
    for folder in (Path(out_dir) / "checkpoints", Path(out_dir) / "models"):
        if folder.is_dir():
            for path in filter(is_temporary_file, folder.iterdir()):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def prune_run_files(out_dir: PathLike, keep: int, keep_generators_every: Optional[int] = None) -> None:
    """Keep only the newest ``keep`` training states and exported generators, plus every exported
    generator whose iteration is a multiple of ``keep_generators_every`` (None: none of them)."""
    out_dir = Path(out_dir)
    for folder, pattern in ((out_dir / "checkpoints", _STATE_NAME), (out_dir / "models", _MODEL_NAME)):
        files = _numbered(folder, pattern)
        for iteration, path in files[:max(0, len(files) - keep)]:
            if pattern is _MODEL_NAME and keep_generators_every and iteration % keep_generators_every == 0:
                continue
            path.unlink(missing_ok=True)


def export_generator(path: PathLike, net_g: nn.Module, net_g_ema: nn.Module) -> Path:
    """Write ``{"params": net_g, "params_ema": net_g_ema}`` (CPU tensors) atomically, the layout of
    the official ``net_g_*.pth`` files; ``read_state_dict`` / ``load_model`` pick ``params_ema``."""
    def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu") for k, v in module.state_dict().items()}

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save({"params": cpu(net_g), "params_ema": cpu(net_g_ema)}, f)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Random number generator states


def capture_rng_state(device: torch.device) -> dict:
    """States of Python's ``random``, numpy's global RNG and torch's CPU (and CUDA) generators,
    as tensors / tuples that ``torch.load(weights_only=True)`` reads back."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), int(np_state["pos"]),
                         int(np_state["has_gauss"]), float(np_state["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
