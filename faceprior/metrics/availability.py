"""Whether a learned metric can run here: one exception type and two helpers shared by the loaders.

Every loader of a learned metric (``load_lpips``, ``load_fid_inception``, ``load_arcface_identity``,
``load_dlib_identity``, ``load_landmark_detector``) raises :class:`MetricUnavailable` when a weight
file or an optional package is missing, with a one-line message naming the file (or package) and
where to put it (or how to install it). An evaluation runner asks each metric the same way::

    model, reason = try_load(load_lpips, "alex")
    if model is None:
        print(f"LPIPS: unavailable ({reason})")

Weight files are catalogue entries (``faceprior.weights.catalogue``) fetched through the weight
store: offline machines are provisioned by copying the files into the weight folder (or with
``faceprior models --fetch metric``); ``FACEPRIOR_OFFLINE=1`` stops every download attempt.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, TypeVar

from faceprior.errors import FacepriorError
from faceprior.weights.catalogue import fetch_weights
from faceprior.weights.store import WeightsUnavailableError

__all__ = ["MetricUnavailable", "fetch_metric_weights", "require_package", "try_load"]

T = TypeVar("T")


class MetricUnavailable(FacepriorError):
    """A metric cannot run here (weights or an optional package missing). The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def fetch_metric_weights(metric: str, name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the weight file that ``metric`` needs: the catalogue entry ``name``
    (``faceprior.weights.catalogue``), from the weight store, downloaded if allowed, always checked.

    Raises:
        MetricUnavailable: the file is missing and cannot be obtained, or fails its checks; the
            message starts with ``metric`` and names the file, where to put it and where to get it.
    """
    try:
        return fetch_weights(name, cache_dir=cache_dir)
    except WeightsUnavailableError as error:
        raise MetricUnavailable(f"{metric}: {error}") from None


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
