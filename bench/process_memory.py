"""Process memory readings shared by the benchmark scripts (Linux /proc)."""

from __future__ import annotations

import resource
from pathlib import Path


def current_rss_mib() -> float:
    """Resident set size of this process now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM of /proc/self/status; ru_maxrss where that is missing).

    ru_maxrss is not preferred on Linux: it carries over the parent's RSS through fork + exec.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: ``python -c PEAK_RSS_WRAPPER ARGS...`` runs ``faceprior ARGS...`` and then writes its peak
#: resident set as a last stderr line ``PEAK_KB <kibibytes>`` (read with :func:`peak_kib_of`).
PEAK_RSS_WRAPPER = """
import runpy, sys
sys.argv = ["faceprior"] + sys.argv[1:]
try:
    runpy.run_module("faceprior", run_name="__main__")
finally:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"PEAK_KB {line.split()[1]}\\n")
"""


def peak_kib_of(stderr: str) -> int | None:
    """The peak RSS (KiB) a PEAK_RSS_WRAPPER run printed, or None."""
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("PEAK_KB")]
    return peaks[-1] if peaks else None
