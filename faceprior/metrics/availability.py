"""Whether a learned metric can run here: one exception type and two helpers shared by the loaders.

Every loader of a learned metric (``load_lpips``, ``load_fid_inception``, ``load_arcface_identity``,
``load_dlib_identity``, ``load_landmark_detector``) raises :class:`MetricUnavailable` when a weight
file or an optional package is missing, with a one-line message naming the file (or package) and
where to put it (or how to install it). An evaluation runner asks each metric the same way::

    model, reason = try_load(load_lpips, "alex")
    if model is None:
        print(f"LPIPS: unavailable ({reason})")

Weight files come from the weight store (``faceprior.weights.store``): offline machines are
provisioned by copying the files into the weight folder; ``FACEPRIOR_OFFLINE=1`` stops every
download attempt.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, TypeVar

from faceprior.weights.store import WeightsUnavailableError, fetch, sha256_of_file

__all__ = ["MetricUnavailable", "fetch_metric_weights", "require_package", "try_load"]

T = TypeVar("T")


class MetricUnavailable(Exception):
    """A metric cannot run here (weights or an optional package missing). The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# (path, size, mtime_ns) -> hex SHA-256, so a prefix check hashes a large file once per process.
_digests: dict[tuple[str, int, int], str] = {}


def _sha256_once(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_of_file(path)
    return _digests[key]


def fetch_metric_weights(
    metric: str,
    url: str,
    filename: str | None = None,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of a weight file that ``metric`` needs, from the weight store (downloaded if allowed).

    Args:
        metric: the metric's name, the start of every error message (e.g. ``"LPIPS (alex)"``).
        url: where the file is published.
        filename: its name in the weight folder (default: the URL's last component).
        sha256: full expected SHA-256, or None when unknown.
        sha256_prefix: the leading hex digits of the SHA-256 (torchvision / torch.hub file names
            carry the first 8), checked after the file is obtained when the full digest is unknown.
        size: expected size in bytes, or None.
        cache_dir: weight cache root (default: the store's).

    Raises:
        MetricUnavailable: the file is missing and cannot be downloaded, or fails its checks; the
            message names the file, where to put it and where to get it.
    """
    try:
        path = fetch(url, filename=filename, sha256=sha256, size=size, cache_dir=cache_dir)
    except WeightsUnavailableError as error:
        raise MetricUnavailable(f"{metric}: {error}") from None
    if sha256_prefix is not None:
        digest = _sha256_once(path)
        if not digest.startswith(sha256_prefix.lower()):
            raise MetricUnavailable(
                f"{metric}: {path} has SHA-256 {digest}, expected one starting with {sha256_prefix.lower()}; "
                f"delete it (it will be downloaded again from {url}) or replace it"
            )
    return path


def require_package(metric: str, module: str, pip_name: str, extra: str = "eval") -> ModuleType:
    """Import an optional package, or raise MetricUnavailable saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MetricUnavailable(
            f"{metric}: needs the Python package {pip_name} ({error}); install it with "
            f"pip install 'faceprior[{extra}]'"
        ) from None


def try_load(loader: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, str | None]:
    """``(loader(*args, **kwargs), None)``, or ``(None, reason)`` when the metric is unavailable.

    Only :class:`MetricUnavailable` is turned into a reason; any other error (a corrupt file, a
    bug) propagates.
    """
    try:
        return loader(*args, **kwargs), None
    except MetricUnavailable as error:
        return None, str(error)
