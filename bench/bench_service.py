"""Load test of `faceprior serve` on loopback: N concurrent clients for a fixed time.

    .venv/bin/python bench/bench_service.py --clients 8 --seconds 60

Starts `faceprior serve` on a free 127.0.0.1 port (a subprocess, so that its memory is its own),
waits until /ready, warms it up with the same load for --warmup seconds (batches of every size,
allocator pools), then runs N client threads that each POST the photo to /api/restore again and
again until the time is up. Prints the throughput (photos/s), the
latency of the successful requests (p50 / p95), every non-200 answer by status (429 is the
documented "queue full, retry" answer; anything else is an error), and the server's resident
memory after the warm-up and at the end (growth must stay under 10 %). Exit status 1 when an
undocumented error occurred or memory grew by more. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED = {429}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def load(base: str, name: str, photo: bytes, clients: int, seconds: float) -> tuple[list, Counter, Counter]:
    """``clients`` threads POSTing ``photo`` to /api/restore for ``seconds``: (latencies of the
    200s, answers by status, undocumented errors by message)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=300) as session:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                retry_after = 0.0
                try:
                    response = session.post("/api/restore", files={"file": (name, photo)})
                    status = response.status_code
                    message = "" if status == 200 else response.json().get("error", "")
                    retry_after = float(response.headers.get("retry-after", "1")) / 10 if status == 429 else 0.0
                except httpx.HTTPError as error:
                    status, message = "transport", str(error)
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(elapsed)
                    elif status not in DOCUMENTED:
                        errors[f"{status}: {message}"] += 1
                time.sleep(retry_after)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of load before the measurement")
    parser.add_argument("--photo", type=Path, default=REPO / "examples" / "astronaut-old-print.jpg")
    parser.add_argument("--max-queue", type=int, default=4, help="the server's --max-queue (default 4)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "faceprior", "serve", "--port", str(port), "--max-queue",
                               str(args.max_queue), "--batch-size", str(args.batch_size)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("the server did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.2)
        photo = args.photo.read_bytes()
        warm = httpx.post(f"{base}/api/restore", files={"file": (args.photo.name, photo)}, timeout=300)
        warm.raise_for_status()
        load(base, args.photo.name, photo, args.clients, args.warmup)
        rss_before = rss_mib(server.pid)
        started = time.perf_counter()
        latencies, statuses, errors = load(base, args.photo.name, photo, args.clients, args.seconds)
        elapsed = time.perf_counter() - started
        rss_after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    done = statuses.get(200, 0)
    growth = rss_after / rss_before - 1
    print(f"faceprior serve load test: {args.clients} clients for {args.seconds:g} s on loopback, photo {args.photo.name}, "
          f"server --max-queue {args.max_queue} --batch-size {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"restored: {done} photos in {elapsed:.1f} s = {done / elapsed:.2f} photos/s")
    if latencies:
        quantiles = statistics.quantiles(latencies, n=20)
        print(f"latency of 200s: p50 {statistics.median(latencies):.2f} s, p95 {quantiles[18]:.2f} s")
    print("answers: " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=str)))
    print(f"undocumented errors: {sum(errors.values())}" + "".join(f"\n  {line} (x{n})" for line, n in errors.items()))
    print(f"server RSS: {rss_before:.0f} MiB after {args.warmup:g} s of warm-up load, {rss_after:.0f} MiB at the end "
          f"({growth:+.1%})")
    return 1 if errors or growth > 0.10 else 0


if __name__ == "__main__":
    sys.exit(main())
