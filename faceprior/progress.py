"""Progress of long work: a tqdm bar on a terminal, a periodic line with rate and ETA in logs.

    progress = Progress(total=len(files), unit="image", description="restoring")
    for file in files:
        ...
        progress.advance(1, note=file.name)
    progress.close()

On a terminal (stderr is a TTY) this is a tqdm progress bar (count, rate, elapsed and ETA). Anywhere
else (a log file, CI, a service) it writes one line every ``interval`` seconds, e.g.
``faceprior: restoring 120/1000 images (12 %), 2.10 images/s, ETA 7 min 0 s``, and a final line.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"7 min 0 s"``, ``"1 h 5 min"``, ``"42 s"``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


class Progress:
    """Count work done out of ``total`` (None: unknown) and show it (see the module docstring).

    Args:
        total: units of work expected, or None.
        unit: what is counted ("image", "frame", "iteration", "B").
        description: what is being done ("restoring", "downloading GFPGANv1.4.pth").
        stream: where it is shown (default stderr).
        interval: seconds between log lines when ``stream`` is not a terminal.
        enabled: False shows nothing at all.
    """

    def __init__(self, total: Optional[int], unit: str = "item", description: str = "", stream: Optional[TextIO] = None,
                 interval: float = 30.0, enabled: bool = True):
        self.total, self.unit, self.description = total, unit, description
        self.stream = stream if stream is not None else sys.stderr
        self.interval = float(interval)
        self.done = 0
        self.start = time.monotonic()
        self.last_line = self.start
        self.enabled = enabled
        self.bar: Optional[tqdm] = None
        if enabled and _is_terminal(self.stream):
            self.bar = tqdm(total=total, unit=unit, desc=description, file=self.stream, dynamic_ncols=True,
                            unit_scale=unit == "B", leave=True)

    def advance(self, count: int = 1, note: str = "") -> None:
        """``count`` more units are done; ``note`` (e.g. the file name) is shown on the bar."""
        self.done += count
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note[:40], refresh=False)
            self.bar.update(count)
        elif self.enabled and time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            self._line()

    def message(self, text: str) -> None:
        """Print a line without breaking the bar (e.g. a failure of one file)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def eta_seconds(self) -> Optional[float]:
        """Seconds left at the rate so far, or None when unknown."""
        elapsed = time.monotonic() - self.start
        if not self.total or not self.done or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / self.done

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total else ""
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        eta = self.eta_seconds()
        eta_text = f", ETA {format_duration(eta)}" if eta is not None else ""
        self.stream.write(f"faceprior: {self.description} {self.done}{total} {self.unit}s{share}, "
                          f"{rate:.2f} {self.unit}s/s{eta_text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar (or write the last line)."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done and time.monotonic() - self.start >= self.interval:
            self._line()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
