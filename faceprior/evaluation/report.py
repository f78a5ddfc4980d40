"""Result tables (Markdown, CSV, JSON) and the visual comparison sheet (PNG + HTML).

A ``ResultsTable`` has one row per method (baseline, model or ablation variant) and one column
per metric; ``write_table_files`` writes it as ``results.md`` / ``results.csv`` /
``results.json``. ``write_comparison_sheet`` lays sample faces out as rows and methods as
columns, as ``compare.png`` and ``compare.html``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from faceprior.imaging.io import read_image, write_image
from faceprior.imaging.pixels import to_float01
from faceprior.imaging.resize import upscale_lanczos
from faceprior.paths import PathLike


@dataclass(frozen=True)
class MetricColumn:
    """One metric of a table.

    name: command-line name ("psnr"). label: column title ("PSNR"). higher_is_better: the
    arrow of the column. decimals: digits after the point in Markdown. unavailable: None, or
    the one-line reason the metric could not be computed (its cells are "n/a").
    """

    name: str
    label: str
    higher_is_better: bool
    decimals: int = 4
    unavailable: Optional[str] = None

    @property
    def title(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


@dataclass
class MethodRow:
    """One method of a table.

    key: folder-safe identifier (cache folder name). label: shown name. description: what it
    is (e.g. the checkpoint path and its SHA-256). values: metric name -> mean over the images
    (None when the metric is unavailable). per_image: metric name -> {image name -> value}.
    extra: anything else worth keeping in results.json (timings, settings).
    """

    key: str
    label: str
    description: str = ""
    values: Dict[str, Optional[float]] = field(default_factory=dict)
    per_image: Dict[str, Dict[str, float]] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ResultsTable:
    """Rows (methods) x columns (metrics), plus notes printed under the Markdown table and the
    settings of the run (folders, image count, command) kept in results.json."""

    title: str
    columns: List[MetricColumn]
    rows: List[MethodRow]
    notes: List[str] = field(default_factory=list)
    settings: Dict[str, Any] = field(default_factory=dict)


def format_value(value: Optional[float], decimals: int) -> str:
    """A table cell: ``n/a`` for None, ``inf`` / ``nan`` spelled out, else fixed decimals."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


def _best_rows(table: ResultsTable, column: MetricColumn) -> set:
    values = [(row.values.get(column.name), row.key) for row in table.rows]
    finite = [(v, k) for v, k in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return set()
    best = max(v for v, _ in finite) if column.higher_is_better else min(v for v, _ in finite)
    return {k for v, k in finite if v == best}


def markdown_table(table: ResultsTable) -> str:
    """The table as GitHub Markdown: a header, one line per method (the best value of each
    column in bold), then the notes and the reasons of unavailable metrics as a list."""
    lines = [f"## {table.title}", ""] if table.title else []
    lines.append("| method | " + " | ".join(column.title for column in table.columns) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in table.columns) + " |")
    best = {column.name: _best_rows(table, column) for column in table.columns}
    for row in table.rows:
        cells = []
        for column in table.columns:
            text = format_value(row.values.get(column.name), column.decimals)
            cells.append(f"**{text}**" if row.key in best[column.name] else text)
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    remarks = list(table.notes)
    for column in table.columns:
        if column.unavailable:
            reason = column.unavailable
            remarks.append(f"unavailable: {reason}" if reason.startswith(column.label) else
                           f"{column.label}: unavailable: {reason}")
    if remarks:
        lines.append("")
        lines += [f"- {remark}" for remark in remarks]
    return "\n".join(lines) + "\n"


def csv_table(table: ResultsTable) -> str:
    """The table as CSV: columns ``method`` then one per metric name (full precision; empty
    cells for unavailable metrics)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method"] + [column.name for column in table.columns])
    for row in table.rows:
        cells = []
        for column in table.columns:
            value = row.values.get(column.name)
            cells.append("" if value is None else repr(float(value)))
        writer.writerow([row.label] + cells)
    return buffer.getvalue()


def _json_number(value: Optional[float]) -> Any:
    """JSON has no inf / nan: they become the strings "inf", "-inf", "nan"."""
    if value is None or math.isfinite(value):
        return value
    return format_value(value, 0)


def table_to_json(table: ResultsTable) -> Dict[str, Any]:
    """Everything in the table as a JSON-ready dict (non-finite numbers as strings)."""
    return {
        "format": "faceprior.evaluation.results",
        "version": 1,
        "title": table.title,
        "settings": table.settings,
        "notes": table.notes,
        "metrics": [
            {"name": c.name, "label": c.label, "higher_is_better": c.higher_is_better, "unavailable": c.unavailable}
            for c in table.columns
        ],
        "methods": [
            {
                "key": row.key,
                "label": row.label,
                "description": row.description,
                "mean": {name: _json_number(value) for name, value in row.values.items()},
                "per_image": {
                    metric: {image: _json_number(value) for image, value in values.items()}
                    for metric, values in row.per_image.items()
                },
                **row.extra,
            }
            for row in table.rows
        ],
    }


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary file, then replace)."""
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_table_files(table: ResultsTable, out_dir: PathLike, stem: str = "results") -> Dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` into ``out_dir`` (replacing
    earlier ones). Returns {"md": path, "csv": path, "json": path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("md", "csv", "json")}
    _write_text(paths["md"], markdown_table(table))
    _write_text(paths["csv"], csv_table(table))
    _write_text(paths["json"], json.dumps(table_to_json(table), indent=1) + "\n")
    return paths


# ----------------------------------------------------------------------------------------------
# comparison sheet


@dataclass(frozen=True)
class SheetColumn:
    """A column of the comparison sheet: its title and one image file per row (None: blank),
    plus an optional caption per row (e.g. "PSNR 24.31")."""

    title: str
    images: Sequence[Optional[Path]]
    captions: Sequence[str] = ()


def _tile(path: Optional[Path], size: int) -> np.ndarray:
    """An image file as a float32 [size, size, 3] tile in [0, 1] (Lanczos-resized to size
    along its longer side, centred on white); white for None."""
    tile = np.ones((size, size, 3), np.float32)
    if path is None:
        return tile
    pixels = to_float01(read_image(path).pixels, np.float32)
    scale = size / max(pixels.shape[:2])
    if scale != 1.0:
        pixels = upscale_lanczos(pixels, scale)
    h, w = min(pixels.shape[0], size), min(pixels.shape[1], size)
    top, left = (size - h) // 2, (size - w) // 2
    tile[top:top + h, left:left + w] = pixels[:h, :w]
    return tile


def _label_strip(titles: Sequence[str], tile: int, gap: int, height: int) -> np.ndarray:
    """White [height, width, 3] float32 strip with each title written above its column."""
    width = len(titles) * (tile + gap) - gap
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, title in enumerate(titles):
        text = title if len(title) <= tile // 7 else title[: max(1, tile // 7 - 1)] + "…"
        draw.text((i * (tile + gap) + 4, 4), text, fill=(0, 0, 0))
    return np.asarray(strip, dtype=np.float32) / 255.0


def write_comparison_sheet(columns: Sequence[SheetColumn], row_names: Sequence[str], out_dir: PathLike,
                           tile: int = 256, stem: str = "compare") -> Dict[str, Path]:
    """Write ``<stem>.png`` (tiles of tile x tile pixels, a title strip on top, 4-pixel white
    gaps) and ``<stem>.html`` (full-size images linked by relative path, with captions) into
    ``out_dir``. Rows are ``row_names`` (one face each), columns are ``columns`` in order.
    Returns {"png": path, "html": path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gap, header = 4, 20
    width = len(columns) * (tile + gap) - gap
    height = header + len(row_names) * (tile + gap)
    canvas = np.ones((height, width, 3), np.float32)
    canvas[:header] = _label_strip([column.title for column in columns], tile, gap, header)
    for r in range(len(row_names)):
        for c, column in enumerate(columns):
            top, left = header + gap + r * (tile + gap), c * (tile + gap)
            canvas[top:top + tile, left:left + tile] = _tile(column.images[r], tile)
    png = write_image(out_dir / f"{stem}.png", canvas, format="PNG", overwrite=True)

    def cell(path: Optional[Path], caption: str) -> str:
        if path is None:
            return "<td></td>"
        source = html.escape(Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix())
        return (f'<td><a href="{source}"><img src="{source}" width="{tile}" loading="lazy"></a>'
                f"<br><small>{html.escape(caption)}</small></td>")

    lines = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>faceprior comparison</title>',
             "<style>body{font-family:sans-serif} td,th{padding:2px;vertical-align:top;text-align:center}"
             " th{position:sticky;top:0;background:#fff}</style></head><body>",
             "<table>", "<tr><th>image</th>" + "".join(f"<th>{html.escape(c.title)}</th>" for c in columns) + "</tr>"]
    for r, name in enumerate(row_names):
        cells = "".join(cell(c.images[r], c.captions[r] if r < len(c.captions) else "") for c in columns)
        lines.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    lines += ["</table>", "</body></html>"]
    page = out_dir / f"{stem}.html"
    _write_text(page, "\n".join(lines) + "\n")
    return {"png": png, "html": page}
