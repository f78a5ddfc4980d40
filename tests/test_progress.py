"""Progress of long work: a bar with ETA on a terminal, periodic lines with rate and ETA in logs."""

from __future__ import annotations

import io

from faceprior import progress as progress_module
from faceprior.progress import Progress, format_duration


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_with_rate_and_eta(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    log = io.StringIO()  # not a terminal: lines, no bar
    progress = Progress(100, unit="image", description="restoring", stream=log, interval=30)
    clock.now += 10
    progress.advance(20)
    assert log.getvalue() == ""  # less than the interval since the start
    clock.now += 30
    progress.advance(20)  # 40 of 100 in 40 s: 1 image/s, 60 s left
    assert log.getvalue() == "faceprior: restoring 40/100 images (40 %), 1.00 images/s, ETA 1 min 0 s\n"
    progress.message("faceprior: x.jpg: truncated")
    progress.close()
    lines = log.getvalue().splitlines()
    assert lines[1] == "faceprior: x.jpg: truncated" and lines[2].startswith("faceprior: restoring 40/100")


def test_a_terminal_gets_a_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = Progress(4, unit="image", description="restoring", stream=terminal)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        progress.advance(1, note=name)
    progress.close()
    text = terminal.getvalue()
    assert "restoring" in text and "4/4" in text and "d.jpg" in text


def test_format_duration():
    assert (format_duration(42), format_duration(420), format_duration(3900)) == ("42 s", "7 min 0 s", "1 h 5 min")
