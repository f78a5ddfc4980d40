"""Weight files shipped inside a published package: fetch one distribution with pip, extract members.

Some permissively licensed weights are published on a package index inside a distribution: the
MTCNN face detector weights in the facenet-pytorch wheel, NIQE's pristine model in the basicsr
1.4.2 source distribution. Installing such a package would pull in its dependency pins; this
module only downloads the one file with the user's own pip configuration (index URL, proxy,
certificates), reads the named members out of it (a wheel's zip or an sdist's .tar.gz, nothing
else is unpacked) and writes them next to each other, checking SHA-256 digests before anything
lands in place.

pip prepares an sdist's metadata by running its build backend (the package's own setup code), so
sdists are only ever downloaded pinned to their SHA-256 (``--require-hashes``): pip checks the
digest before it runs anything from the archive.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from faceprior.weights.store import ENV_OFFLINE, WeightsUnavailableError, sha256_of_file


class WheelDownloadError(WeightsUnavailableError):
    """pip could not be run or could not fetch the distribution (offline, no such version, ...)."""


class WheelContentError(WeightsUnavailableError):
    """The archive lacks a requested member, or a digest (archive or member) is not the expected one."""


def sha256_of_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def download_distribution(
    package: str, version: str, dest_dir: Path, sdist: bool = False, sha256: str | None = None
) -> Path:
    """Download one distribution of ``package==version`` (no dependencies) into ``dest_dir`` with pip.

    Runs ``sys.executable -m pip download --no-deps`` with ``--only-binary=:all:`` (a wheel) or,
    for ``sdist=True``, ``--no-binary=:all: --no-build-isolation`` (the source archive; pip
    prepares its metadata with the build tools already installed). The index, proxy and
    certificate settings are the user's pip configuration.

    sha256: expected hex digest of the downloaded file. Given, the requirement is passed to pip
        with ``--require-hashes`` so pip refuses any other file before running its build backend.
        Required for sdists.

    Returns the downloaded file's path. Raises WheelDownloadError (one line) when pip is missing,
    offline, finds no such distribution, or the digest differs.
    """
    label = f"{package}=={version}"
    if sdist and sha256 is None:
        raise ValueError(f"{label}: an sdist is only downloaded pinned to its SHA-256 (pip runs its build backend)")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        *(["--no-binary=:all:", "--no-build-isolation"] if sdist else ["--only-binary=:all:"]),
        "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "20",
        "-d", str(dest_dir),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="faceprior-pip-") as temp_dir:
        if sha256 is None:
            command.append(label)
        else:
            requirements = Path(temp_dir) / "requirements.txt"
            requirements.write_text(f"{label} --hash=sha256:{sha256.lower()}\n")
            command += ["--require-hashes", "-r", str(requirements)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise WheelDownloadError(f"{label}: cannot run pip ({error})") from None
    if result.returncode != 0:
        output = result.stderr or result.stdout or ""
        reason = _last_line(output)
        if "No module named pip" in output:
            reason = f"pip is not installed for {sys.executable}"
        elif "DO NOT MATCH THE HASHES" in output:
            reason = f"the downloaded file does not have the SHA-256 {sha256}"
        raise WheelDownloadError(f"{label}: pip download failed (offline or not on the index?): {reason}")
    pattern = f"*{version}.tar.gz" if sdist else "*.whl"
    found = sorted(dest_dir.glob(pattern))
    if not found:
        kind = "sdist (.tar.gz)" if sdist else "wheel"
        raise WheelDownloadError(f"{label}: pip download produced no {kind} in {dest_dir}")
    return found[0]


def download_wheel(package: str, version: str, dest_dir: Path) -> Path:
    """The wheel of ``package==version`` (:func:`download_distribution` with ``sdist=False``)."""
    return download_distribution(package, version, dest_dir)


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


def read_archive_members(archive_path: Path, members: list[str]) -> list[bytes]:
    """The contents of the named members of a zip (.whl, .zip) or gzip tar (.tar.gz, .tgz).

    Only the named members are read, and from a tar only regular files (no links, devices or
    folders); nothing is unpacked on disk. Raises WheelContentError naming a missing member.
    """
    archive_path = Path(archive_path)
    contents = []
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as archive:
            names = set(archive.namelist())
            for member in members:
                if member not in names:
                    raise WheelContentError(f"{archive_path.name}: no member {member!r} in the archive")
                contents.append(archive.read(member))
        return contents
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            for member in members:
                try:
                    info = archive.getmember(member)
                except KeyError:
                    raise WheelContentError(f"{archive_path.name}: no member {member!r} in the archive") from None
                if not info.isfile():
                    raise WheelContentError(f"{archive_path.name}: member {member!r} is not a regular file")
                contents.append(archive.extractfile(info).read())
    except (tarfile.TarError, OSError, EOFError) as error:
        raise WheelContentError(f"{archive_path.name}: not a readable .whl/.zip or .tar.gz archive ({error})") from None
    return contents


def extract_members(
    archive_path: Path,
    members: list[str],
    dest_dir: Path,
    sha256: dict[str, str] | None = None,
) -> list[Path]:
    """Copy the named members of a wheel / zip / .tar.gz into ``dest_dir`` under their base names.

    Each member is read fully and, when ``sha256`` has an entry for it (keyed by the member
    name as listed in the archive, e.g. ``"facenet_pytorch/data/pnet.pt"``), its digest is
    checked before it is written; a file is only ever renamed into place complete and verified.
    Returns the written paths in the order of ``members``.
    """
    dest_dir = Path(dest_dir)
    contents = read_archive_members(archive_path, members)
    for member, data in zip(members, contents):
        expected = (sha256 or {}).get(member)
        if expected is not None and sha256_of_bytes(data) != expected.lower():
            raise WheelContentError(
                f"{Path(archive_path).name}: {member} has SHA-256 {sha256_of_bytes(data)}, expected {expected.lower()}"
            )
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for member, data in zip(members, contents):
        target = dest_dir / Path(member).name
        _write_atomically(data, target)
        written.append(target)
    return written


def extract_from_pypi(
    package: str,
    version: str,
    members: list[str],
    dest_dir: Path,
    sha256: dict[str, str] | None = None,
    sdist: bool = False,
    archive_sha256: str | None = None,
) -> list[Path]:
    """Download ``package==version`` with pip and extract ``members`` into ``dest_dir``.

    Args:
        package: distribution name on the index, e.g. ``"facenet-pytorch"``.
        version: exact version, e.g. ``"2.6.0"``.
        members: paths inside the archive, e.g. ``["facenet_pytorch/data/pnet.pt"]`` in a wheel
            or ``["basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"]`` in an sdist.
        dest_dir: folder that receives each member under its base name (created if needed).
        sha256: expected lower-case hex digests keyed by member name; members without an entry
            are not checked.
        sdist: fetch the source distribution (.tar.gz) instead of the wheel.
        archive_sha256: expected digest of the downloaded archive, enforced by pip
            (``--require-hashes``); required for sdists.

    Returns:
        The extracted file paths, in the order of ``members``.

    Raises:
        WheelDownloadError: ``FACEPRIOR_OFFLINE`` is set, pip is missing, or the download failed.
        WheelContentError: a member is missing from the archive or has the wrong digest.
    """
    if os.environ.get(ENV_OFFLINE, "").lower() not in ("", "0", "false", "no"):
        raise WheelDownloadError(f"{package}=={version}: pip download not tried ({ENV_OFFLINE} is set)")
    with tempfile.TemporaryDirectory(prefix="faceprior-pypi-") as temp_dir:
        if sdist or archive_sha256 is not None:
            archive = download_distribution(package, version, Path(temp_dir), sdist, archive_sha256)
            if sha256_of_file(archive) != archive_sha256.lower():  # pip checked it; so do we
                raise WheelContentError(f"{archive.name}: SHA-256 {sha256_of_file(archive)}, expected {archive_sha256}")
        else:
            archive = download_wheel(package, version, Path(temp_dir))
        return extract_members(archive, members, dest_dir, sha256)


def extract_from_wheel(
    package: str,
    version: str,
    members: list[str],
    dest_dir: Path,
    sha256: dict[str, str] | None = None,
) -> list[Path]:
    """:func:`extract_from_pypi` from the wheel of ``package==version``."""
    return extract_from_pypi(package, version, members, dest_dir, sha256)
