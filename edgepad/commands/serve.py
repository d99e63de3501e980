"""``edgepad serve``: the liveness runtime behind a local HTTP/JSON API with an installer live view.

Light module (numpy only at import); the implementation lives in :mod:`edgepad.runtime.service` and is imported
when the command runs. API: docs/SERVICE.md.
"""
from __future__ import annotations

import argparse

from edgepad.commands.runtime import add_policy_arguments, add_source_arguments


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    net = parser.add_argument_group("network (default: 127.0.0.1:8470, no token)")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1); anything but loopback requires --token-file")
    net.add_argument("--port", type=int, default=8470, help="TCP port (default 8470; 0 = any free port)")
    net.add_argument("--unix-socket", default=None, metavar="PATH",
                     help="bind a Unix socket (mode 0660) instead of TCP")
    net.add_argument("--token-file", default=None, metavar="FILE",
                     help="file holding the bearer token (>= 16 characters, chmod 600); required off loopback")
    net.add_argument("--health-max-age-ms", type=float, default=1000.0,
                     help="/v1/health is unhealthy when the newest decision is older than this (default 1000)")
    net.add_argument("--max-sse-clients", type=int, default=8, help="concurrent decision streams (default 8)")
    net.add_argument("--preview-fps", type=float, default=10.0,
                     help="preview frame rate for the live view (default 10; 0 = no previews)")
    aud = parser.add_argument_group("audit log")
    aud.add_argument("--audit", default=None, metavar="DB", help="SQLite audit log of every decision (WAL)")
    aud.add_argument("--retention-days", type=float, default=30.0,
                     help="delete audit rows older than N days (default 30; 0 = keep)")
    aud.add_argument("--max-rows", type=int, default=1_000_000,
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
    pol.add_argument("--restart-s", type=float, default=2.0,
                     help="rebuild the pipeline N s after a source failure (default 2; -1 = exit instead)")


def serve_main(args: argparse.Namespace) -> int:
    from edgepad.runtime.service import run_service
    return run_service(args)
