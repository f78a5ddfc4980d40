"""The one base class of every error that is the user's input or environment, not a bug.

Every exception that faceprior raises for a bad file, a missing weight file, a wrong option or an
unusable configuration derives from :class:`FacepriorError`. Its message is one line that names
what is wrong (usually the file) and, where there is one, what to do about it.

The command line prints a ``FacepriorError`` as ``faceprior: error: <message>`` and exits with
status 1; any other exception is a bug and keeps its traceback. Library users can catch
``FacepriorError`` to tell the two apart. Most subclasses also derive from the built-in type a
caller would expect (``ValueError`` for bad values, ``OSError``-like failures stay ``RuntimeError``),
so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["FacepriorError", "OptionError", "one_line", "printable"]


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def printable(text: object) -> str:
    """``text`` with control characters (a newline in a file name, say) shown as escapes, so that a
    message about it stays on one line: ``"a\\nb.jpg"``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class FacepriorError(Exception):
    """A user-facing error: bad input, missing weights, unusable settings. The message is one line."""

    def __init__(self, message: object = ""):
        super().__init__(one_line(message))


class OptionError(FacepriorError, ValueError):
    """An option or argument has a value that cannot be used (out of range, unknown name, not
    supported on this machine)."""
