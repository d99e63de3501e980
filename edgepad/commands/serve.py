"""``edgepad serve``: the liveness runtime behind a local HTTP/JSON API with an installer live view.

Turns the arguments into :class:`~edgepad.runtime.service.ServeOptions`, prints the command's lines and stops
the service on SIGINT/SIGTERM; the implementation is :mod:`edgepad.runtime.service`. API: docs/SERVICE.md.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from edgepad.commands.common import finite_float, nonneg_float, nonneg_int, positive_float, positive_int, verdict
from edgepad.commands.runtime import add_policy_arguments, add_source_arguments, pipeline_config, source_uri
from edgepad.runtime.service import (AuditOptions, LivenessService, ServeOptions, ServiceConfig, read_token_file,
                                     run_service)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    net = parser.add_argument_group("network (default: 127.0.0.1:8470, no token)")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1); anything but loopback requires --token-file")
    net.add_argument("--port", type=nonneg_int, default=8470, help="TCP port (default 8470; 0 = any free port)")
    net.add_argument("--unix-socket", default=None, metavar="PATH",
                     help="bind a Unix socket (mode 0660) instead of TCP")
    net.add_argument("--token-file", default=None, metavar="FILE",
                     help="file holding the bearer token (>= 16 characters, chmod 600); required off loopback")
    net.add_argument("--health-max-age-ms", type=positive_float, default=1000.0,
                     help="/v1/health is unhealthy when the newest decision is older than this (default 1000)")
    net.add_argument("--max-sse-clients", type=positive_int, default=8, help="concurrent decision streams (default 8)")
    net.add_argument("--preview-fps", type=nonneg_float, default=10.0,
                     help="preview frame rate for the live view (default 10; 0 = no previews)")
    aud = parser.add_argument_group("audit log")
    aud.add_argument("--audit", default=None, metavar="DB", help="SQLite audit log of every decision (WAL)")
    aud.add_argument("--retention-days", type=nonneg_float, default=30.0,
                     help="delete audit rows older than N days (default 30; 0 = keep)")
    aud.add_argument("--max-rows", type=nonneg_int, default=1_000_000,
                     help="keep at most N audit rows, oldest deleted first (default 1000000; 0 = unbounded)")
    aud.add_argument("--store-images", action="store_true",
                     help="also store face images (JPEG) in the audit log; off by default (privacy)")
    aud.add_argument("--audit-sync", choices=("FULL", "NORMAL"), default="FULL",
                     help="SQLite synchronous mode: FULL survives power loss (default), NORMAL only process kills")
    sec = parser.add_argument_group("model integrity")
    sec.add_argument("--public-key", default=None, metavar="FILE",
                     help="vendor Ed25519 public key: refuse a model whose manifest is not signed by it")
    pol = parser.add_argument_group("decision policy")
    add_policy_arguments(pol)  # same options as `edgepad run`; lockout reset here: POST /v1/lockout/reset
    pol.add_argument("--restart-s", type=finite_float, default=2.0,
                     help="rebuild the pipeline N s after a source failure (default 2; -1 = exit instead)")


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The typed settings of ``edgepad serve`` (reads the token file)."""
    token = read_token_file(args.token_file) if args.token_file else None
    service = ServiceConfig(host=args.host, port=args.port, unix_socket=args.unix_socket, token=token,
                            health_max_age_ms=args.health_max_age_ms, max_sse_clients=args.max_sse_clients)
    audit = None
    if args.audit:
        audit = AuditOptions(Path(args.audit), retention_days=args.retention_days, max_rows=args.max_rows,
                             store_images=bool(args.store_images), synchronous=args.audit_sync)
    return ServeOptions(source=source_uri(args), model=Path(args.model), rig=args.rig, fps=args.fps,
                        locator=args.locator, threads=args.threads, pipeline=pipeline_config(args), service=service,
                        preview_fps=args.preview_fps, restart_s=None if args.restart_s < 0 else args.restart_s,
                        audit=audit, public_key=args.public_key)


def _print_ready(service: LivenessService) -> None:
    print(f"edgepad serve: listening on {service.url} (model {service.info['model']['name']}, "
          f"source {service.info['source']})", flush=True)


def serve_main(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run ``edgepad serve`` until SIGINT/SIGTERM (or ``stop``); prints the URL when ready."""
    stop = stop or threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        count = run_service(serve_options(args), stop=stop, on_ready=_print_ready)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return verdict(args, True, f"stopped after {count} decisions", stream=sys.stderr)
