"""The manifest of an archive run: one JSON line per finished input, appended as results arrive.

    {"input": "2019/img_001.jpg", "status": "done", "output": "2019/img_001.jpg", "faces": 3,
     "timings_ms": {"read": 4.1, "detect": ..., "write": 6.0}, "error": null, "worker": "10.0.0.7:4121",
     "time": 1796584446.3}

``status`` is "done" or "failed" (with ``error``, one line). Lines are appended and flushed one by
one, so a killed driver loses at most the line being written; a torn last line is ignored when
the manifest is read again. The last line of an input wins: a re-run skips the inputs whose last
line is "done" and whose output is still there, and tries the others again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, Optional

from faceprior.errors import FacepriorError
from faceprior.paths import PathLike

__all__ = ["Manifest", "ManifestError"]


class ManifestError(FacepriorError, ValueError):
    """A manifest that cannot be read or written; the message is one line."""


class Manifest:
    """A JSON-lines manifest at ``path`` (created with its folder when missing)."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.records: Dict[str, dict] = {}
        if self.path.exists():
            self._read()
        self._handle = None

    def _read(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ManifestError(f"{self.path}: cannot read the manifest ({error})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines) or not line.rstrip().endswith("}"):  # torn by a killed run
                    continue
                raise ManifestError(f"{self.path}:{number}: not a JSON line") from None
            if not isinstance(record, dict) or "input" not in record or "status" not in record:
                raise ManifestError(f"{self.path}:{number}: not a manifest record (needs input and status)")
            self.records[record["input"]] = record

    def done(self, relative: str) -> Optional[dict]:
        """The record of ``relative`` if its last status is "done", else None."""
        record = self.records.get(relative)
        return record if record is not None and record["status"] == "done" else None

    def append(self, record: dict) -> None:
        """Add one record (with the time) and flush it to disk."""
        record = {**record, "time": round(time.time(), 3)}
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
            self._handle = open(self.path, "a", encoding="utf-8")
            if torn:  # end the line a killed run left half-written; it is skipped when read
                self._handle.write("\n")
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records[record["input"]] = record

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
