"""What every subcommand module shares: the user-error type and small formatting helpers."""

from __future__ import annotations

from typing import Optional

from faceprior.errors import FacepriorError

__all__ = ["CommandError", "format_size"]


class CommandError(FacepriorError):
    """A user error found by a subcommand; printed as ``faceprior: error: <message>``."""


def format_size(num_bytes: Optional[int]) -> str:
    """``"332.5 MiB"``, or ``"unknown"`` for None."""
    return "unknown" if num_bytes is None else f"{num_bytes / 2**20:.1f} MiB"
