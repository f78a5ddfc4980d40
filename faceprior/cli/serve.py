"""``faceprior serve``: the web page and the HTTP API (faceprior.service; the faceprior[serve] extra)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from faceprior.cli.common import CommandError
from faceprior.restoration.restorer import PRECISIONS

__all__ = ["add_serve_command", "is_loopback"]

TOKEN_ENV = "FACEPRIOR_TOKEN"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the web page and the HTTP API (open http://127.0.0.1:8000)",
        description="Serve a web page (drop photos, compare before and after, download) and an HTTP API (OpenAPI "
        "docs at /docs; docs/service.md) on one port. Binds to 127.0.0.1 by default; binding to another address "
        f"needs an API token (--token or ${TOKEN_ENV}), which every /api request must then send.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model", default=None, help="default model (a catalogue name; default: the best present)")
    parser.add_argument("--token", default=None, help=f"API token (default ${TOKEN_ENV}); required off loopback")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="as in faceprior restore")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="photos restored together (default 4)")
    parser.add_argument("--max-queue", type=int, default=16, metavar="N", help="waiting photos before 429 (default 16)")
    parser.add_argument("--max-upload-mb", type=float, default=25, metavar="MB", help="largest upload (default 25)")
    parser.add_argument("--max-pixels", type=int, default=50_000_000, metavar="N", help="largest image (default 50 Mpx)")
    parser.add_argument("--timeout", type=float, default=120, metavar="S",
                        help="seconds POST /api/restore waits before 504 (default 120)")
    parser.add_argument("--result-ttl", type=float, default=600, metavar="S", help="seconds results are kept (default 600)")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise CommandError(f"--host {args.host} lets other machines connect: set an API token with --token or "
                           f"${TOKEN_ENV} (or bind to 127.0.0.1)")
    for name, value in (("--batch-size", args.batch_size), ("--max-queue", args.max_queue), ("--port", args.port)):
        if value < 1:
            raise CommandError(f"{name} must be >= 1, got {value}")
    try:
        import uvicorn

        from faceprior.service.app import ServiceSettings, create_app
    except ImportError as error:
        raise CommandError(f"faceprior serve needs the serve extra: pip install 'faceprior[serve]' ({error})") from None
    settings = ServiceSettings(model=args.model, token=token, device=str(args.device), precision=args.precision,
                               max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                               max_queue=args.max_queue, batch_size=args.batch_size, request_timeout=args.timeout,
                               result_ttl=args.result_ttl)
    app = create_app(settings)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"faceprior: serving http://{shown}:{args.port}/ (API docs at /docs){'; API token required' if token else ''}",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
