"""The rows of an evaluation: the baselines (input, Lanczos) and restoration models, and their
outputs, restored once and cached under ``OUT/restored/<method-key>/`` (see
:mod:`faceprior.evaluation.runner`)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from faceprior.evaluation.cache import CACHE_VERSION, read_json, short_hash, slug, state_dict_sha256, write_json
from faceprior.evaluation.pairs import EvaluationError, ImagePair, load_rgb
from faceprior.imaging.io import write_image
from faceprior.imaging.resize import resize_bilinear_to, resize_lanczos_to
from faceprior.models.loading import ModelSpec
from faceprior.paths import PathLike
from faceprior.restoration.restorer import FaceRestorer
from faceprior.weights.catalogue import UnknownWeightsError, locate_weights
from faceprior.weights.store import sha256_of_file

__all__ = ["BASELINES", "InputBaseline", "LanczosBaseline", "Log", "Method", "MethodOutputs", "ModelMethod",
           "log_to_stderr", "produce_outputs"]

Log = Callable[[str], None]

BASELINES = ("input", "lanczos")


def log_to_stderr(message: str) -> None:
    print(f"faceprior: {message}", file=sys.stderr, flush=True)


class Method:
    """A row of the table: maps LQ images to outputs at the reference size.

    key: folder name under restored/ and metrics/. label: shown name. settings: everything the
    outputs depend on besides the LQ image (part of the cache key).
    """

    key: str
    label: str
    description: str
    settings: Dict[str, Any]

    def passes_through(self, lq_size: Tuple[int, int], reference_size: Tuple[int, int]) -> bool:
        """True when the output is the LQ file itself (nothing to compute or store)."""
        return False

    def run(self, images: List[np.ndarray], reference_sizes: List[Tuple[int, int]]) -> List[np.ndarray]:
        """Outputs for a batch of LQ images [H, W, 3] (uint8 or float32 in [0, 1]), each at its
        reference size, same dtype."""
        raise NotImplementedError


class InputBaseline(Method):
    """The LQ image, bilinear-resized to the reference size when it differs (see module doc)."""

    def __init__(self):
        self.key = self.label = "input"
        self.description = "the degraded input (bilinear to the reference size where it differs)"
        self.settings = {"method": "input", "resize": "bilinear half-pixel, no antialias", "version": CACHE_VERSION}

    def passes_through(self, lq_size, reference_size) -> bool:
        return tuple(lq_size) == tuple(reference_size)

    def run(self, images, reference_sizes):
        return [resize_bilinear_to(image, size) for image, size in zip(images, reference_sizes)]


class LanczosBaseline(Method):
    """The LQ image resampled to the reference size with Lanczos-3 (see module doc)."""

    def __init__(self):
        self.key = self.label = "lanczos"
        self.description = "the degraded input resampled to the reference size with Lanczos-3"
        self.settings = {"method": "lanczos", "lobes": 3, "version": CACHE_VERSION}

    def passes_through(self, lq_size, reference_size) -> bool:
        return tuple(lq_size) == tuple(reference_size)

    def run(self, images, reference_sizes):
        return [resize_lanczos_to(image, size) for image, size in zip(images, reference_sizes)]


class ModelMethod(Method):
    """A restoration network in aligned mode (see module doc); loaded on first use.

    spec: catalogue name (``faceprior models``), checkpoint path or URL, or an nn.Module.
    label: shown name (default: the name, or the file name, or the class name).
    description: longer text for results.json (default: the file and its SHA-256).
    extra_settings: anything else the outputs depend on (e.g. a forward hook on the module),
        added to the cache key.
    """

    def __init__(self, spec: ModelSpec, device: Union[str, torch.device] = "cpu", batch_size: int = 4,
                 label: Optional[str] = None, description: Optional[str] = None,
                 extra_settings: Optional[Dict[str, Any]] = None, cache_dir: Optional[str] = None):
        self.spec = spec
        self.device = device
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.restorer: Optional[FaceRestorer] = None
        if isinstance(spec, nn.Module):
            weights, default_label = state_dict_sha256(spec), type(spec).__name__
            default_description = f"{default_label} module (state dict SHA-256 {weights[:12]})"
        else:
            try:
                path, entry = locate_weights(spec, cache_dir=cache_dir)  # the file, fetched if needed; not loaded
            except UnknownWeightsError:
                raise EvaluationError(f"{spec}: no such checkpoint file, and not in the weight catalogue "
                                      "(faceprior models lists it)") from None
            weights = sha256_of_file(path)
            default_label = entry.name if entry is not None else path.name
            default_description = f"{path} (SHA-256 {weights[:12]})"
        self.label = label or default_label
        self.description = description or default_description
        self.settings = {"method": "model", "weights_sha256": weights, "aligned": "model", "paste": "change", "weight": 1.0,
                         "noise": "stored", "resize_out": "lanczos-3", "grey_images": "grey faces", "version": CACHE_VERSION,
                         **(extra_settings or {})}
        stem = self.label if isinstance(spec, nn.Module) or label else Path(self.label).stem
        self.key = f"{slug(stem)}-{short_hash(self.settings)}"

    def _load(self) -> FaceRestorer:
        if self.restorer is None:
            self.restorer = FaceRestorer(model=self.spec, aligned="model", weight=1.0, batch_size=self.batch_size,
                                         device=self.device, cache_dir=self.cache_dir, keep_tone=False)
        return self.restorer

    def run(self, images, reference_sizes):
        # The paper's protocol: LQ faces are in the model's framing, scaled to its input size (unchanged
        # when they have it), the change pasted back at their own size; grey images give grey faces. One batch of images at a time, so
        # that no copy of every crop is held at once.
        restorer = self._load()
        outputs = []
        for start in range(0, len(images), self.batch_size):
            results = restorer.restore_many(images[start:start + self.batch_size])
            outputs += [resize_lanczos_to(result.image, ref)
                        for result, ref in zip(results, reference_sizes[start:start + self.batch_size])]
        return outputs


@dataclass
class MethodOutputs:
    """The output of one method per image name: file and its SHA-256, plus how many outputs
    were computed in this run (0 when all came from the cache) and the time spent on them."""

    files: Dict[str, Path]
    sha256: Dict[str, str]
    computed: int
    seconds: float


def produce_outputs(method: Method, pairs: Sequence[ImagePair], out_dir: PathLike, batch_size: int = 4,
                    log: Log = log_to_stderr) -> MethodOutputs:
    """Outputs of ``method`` for every pair, from the cache under out_dir/restored/<key>/ where
    valid, computed (in batches) and stored there otherwise; see the module docstring."""
    folder = Path(out_dir) / "restored" / method.key
    index_path = folder / "index.json"
    index = read_json(index_path)
    if index is None or index.get("settings") != method.settings:
        index = {"format": "faceprior.evaluation.restored", "method": method.label, "settings": method.settings,
                 "files": {}}
    entries: Dict[str, Any] = index["files"]
    files, hashes, todo = {}, {}, []
    for pair in pairs:
        if method.passes_through(pair.lq_size, pair.reference_size):
            files[pair.name], hashes[pair.name] = pair.lq, pair.lq_sha256
            continue
        entry = entries.get(pair.name)
        target = folder / f"{pair.name}.png"
        if (entry and entry.get("lq_sha256") == pair.lq_sha256 and entry.get("reference_size") == list(pair.reference_size)
                and target.is_file()):
            files[pair.name], hashes[pair.name] = target, entry["output_sha256"]
        else:
            todo.append(pair)
    start = time.perf_counter()
    if todo:
        log(f"{method.label}: restoring {len(todo)} of {len(pairs)} images")
    for first in range(0, len(todo), batch_size):
        chunk = todo[first:first + batch_size]
        outputs = method.run([load_rgb(pair.lq) for pair in chunk], [pair.reference_size for pair in chunk])
        for pair, output in zip(chunk, outputs):
            target = folder / f"{pair.name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, output, format="PNG", bit_depth=16 if output.dtype != np.uint8 else 8, overwrite=True)
            digest = sha256_of_file(target)
            entries[pair.name] = {"lq": str(pair.lq), "lq_sha256": pair.lq_sha256,
                                  "reference_size": list(pair.reference_size), "output_sha256": digest}
            files[pair.name], hashes[pair.name] = target, digest
        write_json(index_path, index)  # after every batch: an interrupted run keeps its work
    return MethodOutputs(files, hashes, len(todo), time.perf_counter() - start)
