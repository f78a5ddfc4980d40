"""Evaluate restoration methods on a folder of aligned LQ faces (optionally with GT faces).

``evaluate`` runs every method on every LQ image, computes the metrics and writes, under OUT:

    restored/<method-key>/<name>.png       outputs (cached, see below)
    restored/<method-key>/index.json       which LQ file (SHA-256) each output was made from
    metrics/<method-key>/<metric>.json     per-image metric values (cached)
    metrics/<method-key>/fid-features.npz  FID features of the outputs (cached)
    metrics/gt/fid-features.npz            FID features of the GT images (cached)
    results.md / results.csv / results.json    the table (see faceprior.evaluation.report)
    compare.png / compare.html             sample faces x (input, methods, GT)

Methods (rows of the table), in order:

    input     the LQ image itself. Where its size differs from the reference size (the GT's;
              the LQ's own without GT) it is resized to it with the degradation model's
              bilinear resize (half-pixel centres, no antialiasing), the resize with which the
              CelebA-Test protocol itself brings LQ faces back to the GT size.
    lanczos   the LQ image resampled to the reference size with Lanczos-3 (antialiased when
              shrinking), the classical-interpolation baseline. When the LQ is already at the
              reference size (as in the CelebA-Test protocol) it is the LQ itself, identical
              to "input", and the table says so.
    <model>   each model (registered name or checkpoint path) in aligned mode, the LQ faces taken
              to be in the model's own framing (``FaceRestorer(aligned="model")``, stored decoder
              noise, weight 1): LQ faces of the model's size S go in as they are, others are
              resized to S and the model's change is pasted back at their own size; an output
              whose size differs from the reference size is resized to it with Lanczos-3.

Caching. A model's outputs live in restored/<name>-<hash>/, where the hash covers the SHA-256 of
the weights (of the state dict for an nn.Module) and the settings above; an output is reused
when the SHA-256 of its LQ file and the reference size are unchanged, and the model is only
loaded when some output is missing. Per-image metric values are kept per method and metric,
keyed by the SHA-256 of the output (and of the GT), so a second run only computes what changed.

Metrics (``METRIC_NAMES``): psnr, ssim (basicsr conventions, all three channels unless
``y_channel``), niqe, and the learned ones lpips, fid, deg (ArcFace angle), dlib-id, lmd, which
need weight files. A metric that cannot run (weights absent, no GT for a full-reference metric)
is reported as unavailable with its reason; the others still run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from faceprior.evaluation.cache import read_json, write_json
from faceprior.evaluation.methods import (
    BASELINES,
    InputBaseline,
    LanczosBaseline,
    Log,
    Method,
    MethodOutputs,
    ModelMethod,
    log_to_stderr,
    produce_outputs,
)
from faceprior.evaluation.pairs import EvaluationError, ImagePair, find_pairs, load_rgb, subsample
from faceprior.evaluation.report import (
    MethodRow,
    MetricColumn,
    ResultsTable,
    SheetColumn,
    format_value,
    write_comparison_sheet,
    write_table_files,
)
from faceprior.evaluation.scores import DEFAULT_METRICS, METRIC_NAMES, FidMetric, PerImageMetric, make_metric
from faceprior.metrics.availability import MetricUnavailable
from faceprior.metrics.fid import frechet_distance, statistics_of_features
from faceprior.models.loading import ModelSpec
from faceprior.paths import PathLike

__all__ = ["Evaluation", "evaluate", "per_image_values"]


def _content_key(metric: PerImageMetric, pair: ImagePair, output_sha256: str) -> str:
    return f"{output_sha256}:{pair.gt_sha256}" if metric.full_reference else output_sha256


def _means_over_common_images(metric: PerImageMetric, rows: Sequence[MethodRow]) -> List[str]:
    """Set each row's mean of ``metric`` over the images where every row has a value, so that the
    rows compare the same faces; returns notes naming what was left out (e.g. no face found)."""
    names = list(rows[0].per_image[metric.name]) if rows else []
    common = [n for n in names if all(row.per_image[metric.name][n] is not None for row in rows)]
    for row in rows:
        row.values[metric.name] = _mean([row.per_image[metric.name][n] for n in common])
    if len(common) == len(names):
        return []
    missing = [f"{row.label} {sum(v is None for v in row.per_image[metric.name].values())}" for row in rows]
    return [f"{metric.label}: mean over the {len(common)} of {len(names)} images where every method has a value "
            f"(images without a value, e.g. no face found: {', '.join(missing)})"]


def per_image_values(metric: PerImageMetric, method: Method, pairs: Sequence[ImagePair], outputs: MethodOutputs,
                     out_dir: PathLike, memo: Dict[Tuple[str, str], Optional[float]], batch_size: int = 8
                     ) -> Tuple[Dict[str, Optional[float]], int]:
    """{image name: value} of ``metric`` on the outputs of ``method``, from the cache file
    out_dir/metrics/<method key>/<metric>.json and ``memo`` (values already computed in this
    run, by content) where possible; None where the metric has no value for an image (e.g.
    no face found). Returns (values, number of values computed now)."""
    path = Path(out_dir) / "metrics" / method.key / f"{metric.name}.json"
    cache = read_json(path)
    if cache is None or cache.get("settings") != metric.settings():
        cache = {"format": "faceprior.evaluation.metric", "metric": metric.name, "settings": metric.settings(),
                 "values": {}}
    stored: Dict[str, Any] = cache["values"]
    values: Dict[str, Optional[float]] = {}
    todo = []
    for pair in pairs:
        key = _content_key(metric, pair, outputs.sha256[pair.name])
        entry = stored.get(pair.name)
        if entry and entry.get("key") == key:
            values[pair.name] = _optional_float(entry["value"])
        elif (metric.name, key) in memo:
            values[pair.name] = memo[(metric.name, key)]
            stored[pair.name] = {"key": key, "value": values[pair.name]}
        else:
            todo.append(pair)
    for first in range(0, len(todo), batch_size):
        chunk = todo[first:first + batch_size]
        images = [load_rgb(outputs.files[pair.name]) for pair in chunk]
        references = [load_rgb(pair.gt) if metric.full_reference else None for pair in chunk]
        for pair, value in zip(chunk, metric.compute(images, references)):
            key = _content_key(metric, pair, outputs.sha256[pair.name])
            values[pair.name] = memo[(metric.name, key)] = _optional_float(value)
            stored[pair.name] = {"key": key, "value": values[pair.name]}
    if todo or not path.is_file():
        write_json(path, cache)
    return {pair.name: values[pair.name] for pair in pairs}, len(todo)


def _optional_float(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)


def _mean(values: Sequence[Optional[float]]) -> float:
    """Mean of the values that are not None (NaN when there are none)."""
    present = [value for value in values if value is not None]
    return float(np.mean(np.asarray(present, dtype=np.float64))) if present else math.nan


# ----------------------------------------------------------------------------------------------
# the whole evaluation


@dataclass
class Evaluation:
    """What ``evaluate`` did: the table, the files written, and for each method key how many
    outputs were computed (not cached) and how many metric values were computed."""

    table: ResultsTable
    files: Dict[str, Path]
    restored: Dict[str, int] = field(default_factory=dict)
    metric_values_computed: Dict[str, int] = field(default_factory=dict)


def evaluate(lq_dir: PathLike, out_dir: PathLike, gt_dir: Optional[PathLike] = None,
             models: Sequence[Union[ModelSpec, Method]] = (), metrics: Sequence[str] = DEFAULT_METRICS,
             sample: Optional[int] = None, fid_stats: Optional[PathLike] = None,
             device: Union[str, torch.device] = "cpu", batch_size: int = 4, crop_border: int = 0,
             y_channel: bool = False, lpips_net: str = "vgg", compare_rows: int = 8, compare_tile: int = 256,
             baselines: Sequence[str] = BASELINES, title: str = "Evaluation",
             log: Log = log_to_stderr) -> Evaluation:
    """Evaluate the baselines and ``models`` on ``lq_dir`` and write the reports into ``out_dir``.

    Args:
        lq_dir: aligned LQ faces (any image format, recursive).
        out_dir: output folder (created); caches live in it, see the module docstring.
        gt_dir: GT faces with the same relative names (any suffix); None: no-reference only.
        models: registered names, checkpoint paths, nn.Modules, or ready ``Method`` objects.
        metrics: names from ``METRIC_NAMES``.
        sample: evaluate only this many images, evenly spaced over the sorted list.
        fid_stats: .npz with the reference FID statistics (mu, sigma); default: the GT's.
        device, batch_size: for the models and learned metrics.
        crop_border, y_channel: PSNR / SSIM (and NIQE crop) conventions (basicsr's).
        lpips_net: LPIPS backbone, "vgg" (default) or "alex".
        compare_rows, compare_tile: rows and tile size of compare.png / compare.html.
        baselines: which of "input", "lanczos" to include (both by default).
        title: heading of results.md.
        log: progress messages.
    Returns:
        An Evaluation (table, files written, work done).
    """
    out_dir = Path(out_dir)
    unknown = [name for name in metrics if name not in METRIC_NAMES]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(METRIC_NAMES)})")
    all_pairs = find_pairs(lq_dir, gt_dir)
    pairs = subsample(all_pairs, sample)
    log(f"{len(pairs)} of {len(all_pairs)} images from {lq_dir}" + (f" with GT from {gt_dir}" if gt_dir else ""))

    methods: List[Method] = []
    for name in baselines:
        if name not in BASELINES:
            raise EvaluationError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
        methods.append(InputBaseline() if name == "input" else LanczosBaseline())
    for spec in models:
        methods.append(spec if isinstance(spec, Method) else ModelMethod(spec, device=device, batch_size=batch_size))
    keys = [method.key for method in methods]
    if len(set(keys)) != len(keys):
        raise EvaluationError(f"the same method is listed twice ({', '.join(keys)})")

    produced = {method.key: produce_outputs(method, pairs, out_dir, batch_size, log) for method in methods}

    columns: List[MetricColumn] = []
    rows = [MethodRow(method.key, method.label, method.description) for method in methods]
    computed = {method.key: 0 for method in methods}
    memo: Dict[Tuple[str, str], Optional[float]] = {}
    notes: List[str] = []
    reference = None  # FID statistics of the reference set
    for name in metrics:
        metric = make_metric(name, crop_border, y_channel, device, lpips_net, fid_stats)
        reason = None
        if isinstance(metric, FidMetric) and len(pairs) < 2:
            reason = "needs at least 2 images"
        elif metric.full_reference and gt_dir is None and not (isinstance(metric, FidMetric) and fid_stats):
            reason = "needs the GT images (--gt)"
        else:
            try:
                metric.prepare()
                for method, row in zip(methods, rows):
                    if isinstance(metric, FidMetric):
                        if reference is None:
                            reference = metric.reference_statistics(pairs, out_dir)
                        outputs = produced[method.key]
                        features, count = metric.features([outputs.files[p.name] for p in pairs],
                                                          [outputs.sha256[p.name] for p in pairs],
                                                          out_dir / "metrics" / method.key / "fid-features.npz")
                        row.values[metric.name] = frechet_distance(*statistics_of_features(features), *reference)
                    else:
                        values, count = per_image_values(metric, method, pairs, produced[method.key], out_dir, memo)
                        row.per_image[metric.name] = values
                    computed[method.key] += count
                if not isinstance(metric, FidMetric):
                    notes.extend(_means_over_common_images(metric, rows))
            except MetricUnavailable as error:
                reason = str(error)
        columns.append(MetricColumn(metric.name, metric.label, metric.higher_is_better, metric.decimals, reason))
        if reason is None:
            log(f"{metric.label}: " + ", ".join(
                f"{row.label} {format_value(row.values[metric.name], metric.decimals)}" for row in rows))
        else:
            log(f"{metric.label}: unavailable: {reason}")
            for row in rows:
                row.values[metric.name] = None
                row.per_image.pop(metric.name, None)

    for method, row in zip(methods, rows):
        outputs = produced[method.key]
        row.extra = {"outputs": str(Path(out_dir) / "restored" / method.key), "settings": method.settings,
                     "computed_now": outputs.computed,
                     "seconds_per_image_now": outputs.seconds / outputs.computed if outputs.computed else None}

    head = [f"{len(pairs)} images from {lq_dir}" + (f", GT from {gt_dir}" if gt_dir else " (no GT)") +
            (f" (an evenly spaced sample of {len(all_pairs)})" if len(pairs) < len(all_pairs) else "")]
    if "lanczos" in keys and all(pair.lq_size == pair.reference_size for pair in pairs):
        head.append("lanczos is identical to input here: the LQ images already have the reference size")
    if crop_border or y_channel:
        head.append(f"PSNR/SSIM with crop_border {crop_border}" + (", on the Y channel" if y_channel else ""))
    if any(column.name == "fid" and column.unavailable is None for column in columns):
        head.append(f"FID over {len(pairs)} images against "
                    + (f"the statistics in {fid_stats}" if fid_stats else "the GT images")
                    + " (FID is biased upward for small sets: compare only at equal counts)")
    notes = head + notes
    table = ResultsTable(title, columns, rows, notes, settings={
        "lq_dir": str(lq_dir), "gt_dir": None if gt_dir is None else str(gt_dir), "images": len(pairs),
        "image_names": [pair.name for pair in pairs], "crop_border": crop_border, "y_channel": y_channel,
        "fid_stats": None if fid_stats is None else str(fid_stats)})
    files = write_table_files(table, out_dir)
    files.update(_write_sheet(methods, rows, pairs, produced, out_dir, compare_rows, compare_tile, columns))
    return Evaluation(table, files, {key: produced[key].computed for key in keys}, computed)


def _write_sheet(methods: Sequence[Method], rows: Sequence[MethodRow], pairs: Sequence[ImagePair],
                 produced: Dict[str, MethodOutputs], out_dir: Path, count: int, tile: int,
                 columns: Sequence[MetricColumn]) -> Dict[str, Path]:
    """compare.png / compare.html: ``count`` evenly spaced faces; columns input (the LQ file),
    every other method whose outputs differ from the LQ files, GT."""
    if count < 1:
        return {}
    chosen = subsample(pairs, count)

    def captions(row: MethodRow) -> List[str]:
        texts = []
        for pair in chosen:
            parts = [f"{c.label} {format_value(row.per_image[c.name][pair.name], c.decimals)}"
                     for c in columns if c.name in row.per_image]
            texts.append(" · ".join(parts))
        return texts

    input_row = next((row for row in rows if row.key == "input"), None)
    sheet = [SheetColumn("input", [pair.lq for pair in chosen], captions(input_row) if input_row else ())]
    for method, row in zip(methods, rows):
        files = [produced[method.key].files[pair.name] for pair in chosen]
        if method.key == "input" or all(f == pair.lq for f, pair in zip(files, chosen)):
            continue
        sheet.append(SheetColumn(method.label, files, captions(row)))
    if all(pair.gt is not None for pair in chosen):
        sheet.append(SheetColumn("GT", [pair.gt for pair in chosen]))
    tile = min(tile, max(max(pair.reference_size) for pair in chosen))
    return write_comparison_sheet(sheet, [pair.name for pair in chosen], out_dir, tile=tile)
