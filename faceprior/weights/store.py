"""The weight store: a local cache of downloaded weight files.

Where files go
    ``$FACEPRIOR_HOME/weights/`` if the environment variable ``FACEPRIOR_HOME`` is set, else
    ``$XDG_CACHE_HOME/faceprior/weights/``, else ``~/.cache/faceprior/weights/``.
    A file that is already there under its registered name is used as is (after its checksum is
    checked), so offline machines can be provisioned by copying files in.

How a file is fetched (:func:`fetch`)
    1. If ``url`` is a local path (or ``file://`` URL), that file is used directly.
    2. If ``<weights dir>/<filename>`` exists and matches the expected size and SHA-256, it is
       returned. The check hashes the file once; the result is remembered in a sidecar file
       ``<filename>.sha256`` (keyed by size and modification time), so later calls are instant.
    3. Otherwise the sources are tried in order: the mirror in ``FACEPRIOR_MIRROR`` (if set),
       the original ``url``, then the ``mirrors`` argument. A mirror is a base URL or a local
       folder; the file name is appended unless the mirror already ends with it.
       A local mirror file is used in place (not copied).
    4. A download goes to ``<filename>.part``. With a known SHA-256 it resumes an existing ``.part``
       with an HTTP ``Range`` request (if the server ignores it, the download restarts from zero),
       and after the transfer size and SHA-256 are checked; a mismatch deletes the ``.part`` file.
       Without a known SHA-256 the file is always downloaded whole and kept only if the server
       stated its length and all of it arrived; nothing of a failed transfer is kept. Only then is
       the file renamed (``os.replace``, atomic) to its final name, so a killed or cut-off download
       never leaves a file that looks complete. Every download has an overall deadline
       (``FACEPRIOR_DOWNLOAD_DEADLINE``), so a server that trickles bytes cannot hold a run forever.
    5. If nothing works, :class:`WeightsUnavailableError` says in one line which file to put where
       and the URL to get it from. ``FACEPRIOR_OFFLINE=1`` skips the network entirely.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

from faceprior.errors import FacepriorError
from faceprior.progress import Progress
from faceprior.version import __version__

__all__ = [
    "ENV_DEADLINE",
    "ENV_HOME",
    "ENV_MIRROR",
    "ENV_OFFLINE",
    "ChecksumMismatchError",
    "WeightsUnavailableError",
    "default_cache_dir",
    "download_deadline",
    "fetch",
    "remembered_sha256",
    "sha256_of_file",
    "verify_file",
    "weights_dir",
]

ENV_HOME = "FACEPRIOR_HOME"
ENV_MIRROR = "FACEPRIOR_MIRROR"
ENV_OFFLINE = "FACEPRIOR_OFFLINE"

_CHUNK_BYTES = 1 << 20


class WeightsUnavailableError(FacepriorError, RuntimeError):
    """A weight file is not in the cache and could not be obtained. The message is one line."""


class ChecksumMismatchError(WeightsUnavailableError):
    """A weight file exists but its size or SHA-256 is not the expected one."""


class _SourceFailed(Exception):
    """One source (URL or local mirror) could not deliver the file; the next one is tried."""


def default_cache_dir() -> Path:
    """``$FACEPRIOR_HOME``, else ``$XDG_CACHE_HOME/faceprior``, else ``~/.cache/faceprior``."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "faceprior"
    return Path.home() / ".cache" / "faceprior"


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding weight files: ``<cache_dir>/weights`` (default cache dir if None)."""
    return Path(cache_dir).expanduser() / "weights" if cache_dir is not None else default_cache_dir() / "weights"


# ----------------------------------------------------------------------------------------------
# Checksums


def sha256_of_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def _remember_sha256(path: Path, digest: str) -> None:
    """Record ``digest`` as the SHA-256 of ``path`` as it is now (size and mtime) in its sidecar."""
    with contextlib.suppress(OSError):  # a read-only folder just means re-hashing next time
        _sidecar(path).write_text(f"{digest} {_stamp(path)}\n")


def remembered_sha256(path: Path) -> str:
    """SHA-256 of ``path``, from its sidecar when size and mtime still match, else computed (and remembered)."""
    with contextlib.suppress(OSError, ValueError):
        digest, recorded_stamp = _sidecar(path).read_text().strip().split(" ", 1)
        if recorded_stamp == _stamp(path) and re.fullmatch(r"[0-9a-f]{64}", digest):
            return digest
    digest = sha256_of_file(path)
    _remember_sha256(path, digest)
    return digest


def verify_file(path: str | os.PathLike, sha256: str | None = None, size: int | None = None) -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` has the given size and SHA-256 (None = unchecked)."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumMismatchError(f"{path} has {actual_size} bytes, expected {size}; delete it (it will be downloaded again) or replace it")
    if sha256 is not None:
        actual = remembered_sha256(path)
        if actual != sha256.lower():
            raise ChecksumMismatchError(
                f"{path} has SHA-256 {actual}, expected {sha256.lower()}; delete it (it will be downloaded again) or replace it"
            )


# ----------------------------------------------------------------------------------------------
# Sources


def _local_path(location: str) -> Path | None:
    """The filesystem path meant by ``location`` (a plain path or file:// URL), or None for a remote URL."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # http, https, ftp ... (a 1-letter "scheme" is a Windows drive)
        return None
    return Path(location).expanduser()


def _filename_of(url: str) -> str:
    name = urllib.parse.unquote(Path(urllib.parse.urlsplit(url).path).name)
    if not name:
        raise ValueError(f"cannot tell a file name from the URL {url!r}; pass filename=")
    return name


def _source_for(mirror: str, filename: str) -> str | Path:
    """The URL or local path of ``filename`` on ``mirror`` (a base URL/folder, or the file itself)."""
    local = _local_path(mirror)
    if local is not None:
        return local if local.name == filename and not local.is_dir() else local / filename
    if urllib.parse.unquote(mirror.rstrip("/").rsplit("/", 1)[-1]) == filename:
        return mirror
    return mirror.rstrip("/") + "/" + urllib.parse.quote(filename)


# ----------------------------------------------------------------------------------------------
# Downloading


def _content_range_start(header: str | None) -> int | None:
    found = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header or "")
    return int(found.group(1)) if found else None


#: Environment variable: the longest a single download may take, in seconds (default: 10 minutes
#: plus the time the file takes at 50 kB/s), so that a server that trickles bytes cannot hold a run.
ENV_DEADLINE = "FACEPRIOR_DOWNLOAD_DEADLINE"
_DEADLINE_BASE_SECONDS = 600.0
_DEADLINE_BYTES_PER_SECOND = 50_000.0
_DEADLINE_UNKNOWN_SIZE_SECONDS = 3600.0


def download_deadline(size: int | None) -> float:
    """Seconds a download of ``size`` bytes (None: unknown) may take in all (see :data:`ENV_DEADLINE`)."""
    if os.environ.get(ENV_DEADLINE):
        return float(os.environ[ENV_DEADLINE])
    if size is None:
        return _DEADLINE_UNKNOWN_SIZE_SECONDS
    return _DEADLINE_BASE_SECONDS + size / _DEADLINE_BYTES_PER_SECOND


def _download(url: str, part: Path, size: int | None, verified: bool, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part``. Raises _SourceFailed.

    A file with a known SHA-256 (``verified``) resumes what ``part`` already holds (HTTP Range); on
    an interrupted transfer the bytes received so far stay for the next attempt, and the checksum
    decides in the end. A file without one is always downloaded whole, and only when the server
    states its length: a resumed or cut-off transfer could not be told from the real file.
    """
    offset = part.stat().st_size if part.exists() else 0
    if offset and (not verified or (size is not None and offset > size)):  # not a prefix we can trust
        part.unlink()
        offset = 0
    headers = {"User-Agent": f"faceprior/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset and size is not None and offset == size:
            return  # the part file is already complete; the checksum decides
        if e.code == 416 and offset:
            part.unlink()
            return _download(url, part, size, verified, progress, timeout)
        raise _SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _SourceFailed(f"{getattr(e.reason, 'strerror', None) or e.reason}") from None
    except (OSError, ValueError) as e:
        raise _SourceFailed(str(e) or type(e).__name__) from None

    with response:
        if offset and response.status == 206 and _content_range_start(response.headers.get("Content-Range")) == offset:
            mode = "ab"
        else:  # the server ignored the Range request (or there was none): start from zero
            offset, mode = 0, "wb"
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if length is None and not verified:
            raise _SourceFailed("the server does not say how long the file is, and no checksum of it is known: "
                                "a cut-off transfer could not be told from the real file")
        if size is not None and length is not None and offset + length != size:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise _SourceFailed(f"the server has {offset + length} bytes, expected {size}: not the expected file")
        total = offset + length if length is not None else size
        deadline = time.monotonic() + download_deadline(total)
        bar = Progress(total, unit="B", description=f"downloading {part.name[: -len('.part')]}",
                       enabled=progress, interval=60.0)
        bar.advance(offset)
        received = 0
        try:
            with open(part, mode) as f:
                while True:
                    chunk = response.read1(_CHUNK_BYTES)  # returns what has arrived, never waits for a full chunk
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.advance(len(chunk))
                    if time.monotonic() > deadline:
                        raise _SourceFailed(f"the transfer took longer than {download_deadline(total):.0f} s "
                                            f"({offset + received} bytes so far; {ENV_DEADLINE} sets the limit)")
        except (OSError, ValueError) as e:  # connection reset, timeout, http.client.IncompleteRead
            raise _SourceFailed(
                f"transfer interrupted after {offset + received} bytes ({type(e).__name__})"
                + (f"; {part} is kept and the next attempt resumes it" if verified else "")
            ) from None
        finally:
            bar.close()
        if length is not None and received < length:
            raise _SourceFailed(f"connection closed after {offset + received} of {offset + length} bytes"
                                + (f"; {part} is kept and the next attempt resumes it" if verified else ""))


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX), so two processes never write the same .part file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _download_verified(url: str, final: Path, sha256: str | None, size: int | None, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``final`` through ``final.part``, checking size and SHA-256 before the rename."""
    part = final.with_name(final.name + ".part")
    try:
        _download(url, part, size, sha256 is not None, progress, timeout)
    except _SourceFailed:
        if sha256 is None:  # nothing of an unverified transfer is worth keeping
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        raise
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise _SourceFailed(f"downloaded {actual_size} bytes, expected {size}")
    actual = sha256_of_file(part) if sha256 is not None else None
    if sha256 is not None and actual != sha256.lower():
        part.unlink()
        raise _SourceFailed(f"checksum mismatch: SHA-256 {actual}, expected {sha256.lower()} (the download was deleted)")
    os.replace(part, final)
    with contextlib.suppress(OSError):
        _sidecar(final).unlink()
    if actual is not None:
        _remember_sha256(final, actual)


def fetch(
    url: str,
    filename: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    mirrors: Sequence[str] = (),
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> Path:
    """The local path of a weight file, downloading it into the cache if needed.

    Args:
        url: where the file is published (http/https), or a local path / ``file://`` URL,
            which is then used directly (checked against ``sha256``/``size`` if given).
        filename: name in the cache (default: the last component of ``url``).
        sha256: expected hex SHA-256, or None to skip the check.
        size: expected size in bytes, or None.
        mirrors: more sources, tried after ``FACEPRIOR_MIRROR`` and ``url``: base URLs or local
            folders (the file name is appended unless the mirror already ends with it).
        progress: show a progress bar on stderr (only when stderr is a terminal).
        cache_dir: the cache root (default :func:`default_cache_dir`); files go in ``<cache_dir>/weights``.
        timeout: seconds to wait for the server on each network operation.

    Returns:
        The path of a complete, verified file.

    Raises:
        ChecksumMismatchError: the file in the cache (or at the given local path) has the wrong
            size or SHA-256.
        WeightsUnavailableError: the file could not be obtained from any source; the message
            names the URL and the full path where to put the file by hand.
    """
    local = _local_path(url)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailableError(f"weight file {local} does not exist")
        verify_file(local, sha256, size)
        return local

    filename = filename or _filename_of(url)
    if Path(filename).name != filename or filename in (".", ".."):
        raise ValueError(f"filename must be a plain file name, got {filename!r}")
    folder = weights_dir(cache_dir)
    final = folder / filename
    if final.is_file():
        verify_file(final, sha256, size)
        return final

    sources: list[str | Path] = []
    if os.environ.get(ENV_MIRROR):
        sources.append(_source_for(os.environ[ENV_MIRROR], filename))
    sources.append(url)
    sources.extend(_source_for(mirror, filename) for mirror in mirrors)
    offline = os.environ.get(ENV_OFFLINE, "").lower() not in ("", "0", "false", "no")

    failures: list[str] = []
    for source in sources:
        if isinstance(source, Path):
            if source.is_file():
                verify_file(source, sha256, size)
                return source
            failures.append(f"{source}: no such file")
            continue
        if offline:
            failures.append(f"{source}: not tried ({ENV_OFFLINE} is set)")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WeightsUnavailableError(f"cannot create the weight folder {folder} ({e.strerror or e}); set {ENV_HOME} to a writable folder") from None
        with _exclusive_lock(final.with_name(final.name + ".lock")):
            if final.is_file():  # another process finished it while we waited for the lock
                verify_file(final, sha256, size)
                return final
            try:
                _download_verified(source, final, sha256, size, progress, timeout)
                return final
            except _SourceFailed as e:
                failures.append(f"{source}: {e}")
    raise WeightsUnavailableError(
        f"{filename} is not in the cache and could not be obtained ({'; '.join(failures)}). "
        f"Download {url} and put it at {final} (or set {ENV_MIRROR} to a folder or URL that has it)"
    )
