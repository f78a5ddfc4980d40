"""What the evaluation caches are keyed by (content hashes, settings) and how they are stored
(small JSON files, written atomically)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from faceprior.paths import atomic_write

__all__ = ["CACHE_VERSION", "read_json", "short_hash", "slug", "state_dict_sha256", "write_json"]

#: Part of every cache key: raising it invalidates every cached output and metric value.
CACHE_VERSION = 1


def slug(text: str) -> str:
    """Folder-safe version of a name: letters, digits, '.', '_', '-' (others become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def short_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:10]


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, values), for cache keys."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """A cache file's content, or None when it is missing or unreadable (it is then rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Write a cache file atomically (its folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write((json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))
