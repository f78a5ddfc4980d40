"""The weight store, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faceprior.weights import store
from faceprior.weights.store import ChecksumMismatchError, WeightsUnavailableError, default_cache_dir, fetch, weights_dir

PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(300_000))
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with the behaviour switches of ``server``."""

    server: "_FileServer"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        found = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if found and self.server.honour_range:
            start = int(found.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if self.server.send_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True  # the end of the connection is the end of the body
        self.end_headers()
        if self.server.truncate_after is not None:
            body = body[: self.server.truncate_after]  # promise everything, then hang up
            self.close_connection = True
        # Counted before the write: the client may finish reading (and the test assert) before
        # this thread runs again.
        self.server.bytes_sent += len(body)
        if self.server.drip_seconds:
            for byte in body:  # one byte at a time, forever slow
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.server.drip_seconds)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _FileServer(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        self.truncate_after: int | None = None
        self.send_length = True
        self.drip_seconds = 0.0
        self.bytes_sent = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server():
    httpd = _FileServer()
    httpd.files["/releases/model.pth"] = PAYLOAD
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    for name in (store.ENV_HOME, store.ENV_MIRROR, store.ENV_OFFLINE, "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "faceprior"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "faceprior"
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert weights_dir() == tmp_path / "mine" / "weights"
    assert weights_dir(tmp_path / "other") == tmp_path / "other" / "weights"


def test_download_verifies_and_is_cached(server, tmp_path):
    path = fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "weights" / "model.pth"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name("model.pth.part").exists()
    assert path.with_name("model.pth.sha256").read_text().startswith(PAYLOAD_SHA256)
    requests_before = len(server.requests)
    assert fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, cache_dir=tmp_path) == path
    assert len(server.requests) == requests_before  # served from the cache, no network


def test_default_cache_location_and_filename_override(server, monkeypatch, tmp_path):
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "home"))
    path = fetch(server.url("/releases/model.pth"), filename="renamed.pth", progress=False)
    assert path == tmp_path / "home" / "weights" / "renamed.pth"
    assert path.read_bytes() == PAYLOAD


def test_resume_from_partial_file(server, tmp_path):
    part = tmp_path / "weights" / "model.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:123_457])
    path = fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/releases/model.pth", "bytes=123457-")
    assert server.bytes_sent == len(PAYLOAD) - 123_457  # only the missing tail was transferred


def test_truncated_transfer_keeps_part_then_resumes(server, tmp_path):
    server.truncate_after = 100_000
    url = server.url("/releases/model.pth")
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(url, sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path, progress=False)
    message = str(error.value)
    assert "\n" not in message and "100000 of 300000 bytes" in message
    final = tmp_path / "weights" / "model.pth"
    assert not final.exists()
    assert final.with_name("model.pth.part").read_bytes() == PAYLOAD[:100_000]

    server.truncate_after = None
    assert fetch(url, sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1][1] == "bytes=100000-"


def test_wrong_checksum_deletes_the_download(server, tmp_path):
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(server.url("/releases/model.pth"), sha256="0" * 64, cache_dir=tmp_path, progress=False)
    assert "checksum mismatch" in str(error.value) and PAYLOAD_SHA256 in str(error.value)
    assert list((tmp_path / "weights").glob("model.pth*")) == [tmp_path / "weights" / "model.pth.lock"]


def test_wrong_size_announced_by_server(server, tmp_path):
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(server.url("/releases/model.pth"), size=len(PAYLOAD) + 1, cache_dir=tmp_path, progress=False)
    assert "not the expected file" in str(error.value)
    assert not (tmp_path / "weights" / "model.pth").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    part = tmp_path / "weights" / "model.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)  # not even a prefix of the file: must not survive
    path = fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1][1] == "bytes=5000-"
    assert server.bytes_sent == len(PAYLOAD)


def test_complete_part_file_with_range_not_satisfiable(server, tmp_path):
    part = tmp_path / "weights" / "model.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)  # killed between the last byte and the rename
    path = fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and server.bytes_sent == 0


def test_offline_error_says_what_to_put_where(tmp_path):
    url = f"http://127.0.0.1:{_unused_port()}/releases/GFPGANv1.4.pth"
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(url, cache_dir=tmp_path, progress=False, timeout=5)
    message = str(error.value)
    assert "\n" not in message
    assert f"Download {url} and put it at {tmp_path / 'weights' / 'GFPGANv1.4.pth'}" in message
    assert not (tmp_path / "weights" / "GFPGANv1.4.pth").exists()


def test_offline_mode_never_touches_the_network(server, monkeypatch, tmp_path):
    monkeypatch.setenv(store.ENV_OFFLINE, "1")
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(server.url("/releases/model.pth"), cache_dir=tmp_path, progress=False)
    assert store.ENV_OFFLINE in str(error.value)
    assert server.requests == []


def test_mirror_fallback_in_order(server, tmp_path):
    server.files["/mirror/model.pth"] = PAYLOAD
    dead = f"http://127.0.0.1:{_unused_port()}/releases/model.pth"
    path = fetch(
        dead,
        sha256=PAYLOAD_SHA256,
        mirrors=[server.url("/missing/"), server.url("/mirror")],
        cache_dir=tmp_path,
        progress=False,
        timeout=5,
    )
    assert path.read_bytes() == PAYLOAD
    assert [r[0] for r in server.requests] == ["/missing/model.pth", "/mirror/model.pth"]


def test_env_mirror_url_is_tried_first(server, monkeypatch, tmp_path):
    server.files["/env-mirror/model.pth"] = PAYLOAD
    monkeypatch.setenv(store.ENV_MIRROR, server.url("/env-mirror/"))
    fetch(server.url("/releases/model.pth"), sha256=PAYLOAD_SHA256, cache_dir=tmp_path, progress=False)
    assert [r[0] for r in server.requests] == ["/env-mirror/model.pth"]


def test_env_mirror_local_folder_is_used_in_place(monkeypatch, tmp_path):
    folder = tmp_path / "usb-stick"
    folder.mkdir()
    (folder / "model.pth").write_bytes(PAYLOAD)
    monkeypatch.setenv(store.ENV_MIRROR, str(folder))
    dead = f"http://127.0.0.1:{_unused_port()}/releases/model.pth"
    assert fetch(dead, sha256=PAYLOAD_SHA256, cache_dir=tmp_path / "cache", progress=False) == folder / "model.pth"
    with pytest.raises(ChecksumMismatchError):
        fetch(dead, sha256="f" * 64, cache_dir=tmp_path / "cache", progress=False)


def test_user_placed_file_in_cache_is_used_and_checked(tmp_path):
    final = tmp_path / "weights" / "model.pth"
    final.parent.mkdir(parents=True)
    final.write_bytes(PAYLOAD)
    dead = f"http://127.0.0.1:{_unused_port()}/releases/model.pth"
    assert fetch(dead, sha256=PAYLOAD_SHA256, size=len(PAYLOAD), cache_dir=tmp_path) == final
    final.write_bytes(PAYLOAD[:-1] + b"\x00")  # modified: the sidecar no longer applies
    with pytest.raises(ChecksumMismatchError) as error:
        fetch(dead, sha256=PAYLOAD_SHA256, cache_dir=tmp_path)
    assert str(final) in str(error.value) and "\n" not in str(error.value)
    assert final.exists()  # never deletes a file the user put there


def test_local_path_and_file_url(tmp_path):
    local = tmp_path / "weights.pth"
    local.write_bytes(PAYLOAD)
    assert fetch(str(local), sha256=PAYLOAD_SHA256) == local
    assert fetch(local.as_uri()) == local
    with pytest.raises(WeightsUnavailableError):
        fetch(str(tmp_path / "missing.pth"))


def test_progress_bar_only_on_a_terminal(server, tmp_path, capsys):
    fetch(server.url("/releases/model.pth"), cache_dir=tmp_path, progress=True)
    assert capsys.readouterr().err == ""  # stderr is not a TTY under pytest


def test_sidecar_avoids_rehashing(tmp_path, monkeypatch):
    final = tmp_path / "weights" / "model.pth"
    final.parent.mkdir(parents=True)
    final.write_bytes(PAYLOAD)
    store.verify_file(final, sha256=PAYLOAD_SHA256)
    calls = []
    monkeypatch.setattr(store, "sha256_of_file", lambda p: calls.append(p) or "0" * 64)
    store.verify_file(final, sha256=PAYLOAD_SHA256)  # remembered: no hashing
    assert calls == []
    os.utime(final, ns=(0, 0))  # touched: the remembered value no longer applies
    with pytest.raises(ChecksumMismatchError):
        store.verify_file(final, sha256=PAYLOAD_SHA256)
    assert calls == [final]



# ----------------------------------------------------------------------------------------------
# What a hostile or broken server does (../shared/findings/trust-repros.md, 9 and 10)


def test_unverified_file_cut_off_without_a_length_is_not_kept(server, tmp_path):
    """No published checksum (as for some releases) and a reply without Content-Length that closes
    early: the stub must not end up looking complete (GFPGAN #244)."""
    server.send_length = False
    server.truncate_after = 100_000
    with pytest.raises(WeightsUnavailableError, match="does not say how long the file is"):
        fetch(server.url("/releases/model.pth"), cache_dir=tmp_path)
    assert not (tmp_path / "weights" / "model.pth").exists() and not (tmp_path / "weights" / "model.pth.part").exists()


def test_unverified_file_is_never_resumed_or_spliced(server, tmp_path):
    """A left-over .part of an unverified file is not resumed (a changed mirror would splice two
    files, a 416 reply would turn the stub into the final file): the download starts from zero."""
    part = tmp_path / "weights" / "model.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"an older version of the file, or another file altogether")
    path = fetch(server.url("/releases/model.pth"), cache_dir=tmp_path)
    assert path.read_bytes() == PAYLOAD and server.requests[-1][1] is None  # no Range header
    # Cut off with a length: not kept either, and not resumable.
    (tmp_path / "weights" / "model.pth").unlink()
    server.truncate_after = 50_000
    with pytest.raises(WeightsUnavailableError, match="connection closed after 50000 of 300000 bytes"):
        fetch(server.url("/releases/model.pth"), cache_dir=tmp_path)
    assert not (tmp_path / "weights" / "model.pth").exists() and not (tmp_path / "weights" / "model.pth.part").exists()


def test_a_server_that_trickles_bytes_hits_the_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_DEADLINE, "1.5")
    server.drip_seconds = 0.05
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="took longer than 2 s"):
        fetch(server.url("/releases/model.pth"), cache_dir=tmp_path, sha256=PAYLOAD_SHA256)
    assert time.monotonic() - started < 10
    assert store.download_deadline(None) == 1.5
    monkeypatch.delenv(store.ENV_DEADLINE)
    assert store.download_deadline(10**9) == pytest.approx(600 + 10**9 / 50_000)


def test_a_killed_downloader_leaves_no_lock_behind(server, tmp_path):
    """The lock is an OS advisory lock held by a process: when the process dies, the lock goes
    with it, and the next download proceeds (the lock file itself is harmless)."""
    import subprocess
    import sys

    lock = tmp_path / "weights" / "model.pth.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"handle = open({str(lock)!r}, 'a')\n"
        "fcntl.flock(handle.fileno(), fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert fetch(server.url("/releases/model.pth"), cache_dir=tmp_path, sha256=PAYLOAD_SHA256).read_bytes() == PAYLOAD
