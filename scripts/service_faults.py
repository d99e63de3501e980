"""Loopback measurements of the service's fault behaviour (docs/SERVICE.md, "Fault figures").

Three figures, all on 127.0.0.1 / a temp file, no camera, no model:

* ``keepalive``: median latency (ms) of ``GET /v1/health`` on one keep-alive connection vs a new connection per
  request;
* ``slow``: 32 slow clients (one header line every 5 s, never finishing) against ``max_connections=32``, then an
  authenticated health check: its status code;
* ``audit``: decisions submitted at ~30/s to the audit writer while another connection holds a SQLite write lock
  for ``--lock-s`` seconds: rows submitted, committed, dropped, and the writer's error after recovery.

Usage: ``python scripts/service_faults.py [keepalive|slow|audit ...] [--lock-s 12]``
"""
from __future__ import annotations

import argparse
import http.client
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgepad.runtime.audit import AuditLog, AuditWriter
from edgepad.runtime.service import DecisionHub, LivenessService, ServiceConfig
from edgepad.types import Decision, Modality, Reason, Verdict

TOKEN = "bench-token-0123456789abcdef"


def _decision() -> Decision:
    return Decision(Verdict.LIVE, 0.9, 0.5, evidence={Modality.RGB: 0.9}, reasons=(Reason.OK,),
                    timestamp_ns=time.monotonic_ns(), latency_ms={"total": 9.0},
                    modalities=frozenset({Modality.RGB}))


def _feed(hub: DecisionHub, stop: threading.Event) -> None:
    while not stop.wait(0.02):
        hub.publish(_decision())


def keepalive(n: int = 200) -> dict:
    hub, stop = DecisionHub(), threading.Event()
    hub.publish(_decision())
    threading.Thread(target=_feed, args=(hub, stop), daemon=True).start()
    with LivenessService(hub, ServiceConfig(port=0)) as svc:
        host, port = svc.address
        c = http.client.HTTPConnection(host, port, timeout=5)
        ka = []
        for _ in range(n):
            t = time.perf_counter()
            c.request("GET", "/v1/health")
            c.getresponse().read()
            ka.append((time.perf_counter() - t) * 1e3)
        c.close()
        fresh = []
        for _ in range(n):
            t = time.perf_counter()
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", "/v1/health")
            c.getresponse().read()
            c.close()
            fresh.append((time.perf_counter() - t) * 1e3)
    stop.set()
    return {"keepalive_median_ms": round(statistics.median(ka), 3),
            "new_connection_median_ms": round(statistics.median(fresh), 3), "requests": n}


def slow(clients: int = 32, hold_s: float = 7.0) -> dict:
    hub, stop = DecisionHub(), threading.Event()
    hub.publish(_decision())
    threading.Thread(target=_feed, args=(hub, stop), daemon=True).start()
    with LivenessService(hub, ServiceConfig(port=0, token=TOKEN, max_connections=32)) as svc:
        host, port = svc.address
        socks = []
        for _ in range(clients):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            socks.append(s)

        def drip() -> None:
            while not stop.wait(5.0):
                for s in socks:
                    try:
                        s.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
        threading.Thread(target=drip, daemon=True).start()
        time.sleep(0.5)
        codes = []
        t_end = time.monotonic() + hold_s
        while time.monotonic() < t_end:
            c = http.client.HTTPConnection(host, port, timeout=10)
            try:
                c.request("GET", "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
                codes.append(c.getresponse().status)
            except OSError as exc:
                codes.append(type(exc).__name__)
            finally:
                c.close()
            time.sleep(1.0)
        stop.set()
        for s in socks:
            s.close()
    return {"slow_clients": clients, "authenticated_health_codes": codes}


def audit(lock_s: float = 12.0, rate: float = 30.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        writer = AuditWriter(lambda: AuditLog(db, synchronous="NORMAL")).start()
        submitted = 0
        locker = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")
        during: list[dict] = []

        def release() -> None:         # from another thread: a blocked submit must not hold the lock's release
            during.append(writer.stats())
            locker.execute("COMMIT")
            locker.close()
        timer = threading.Timer(lock_s, release)
        timer.start()
        t0 = time.monotonic()
        blocked_ms = 0.0
        while time.monotonic() - t0 < lock_s + 2.0:
            t = time.monotonic()
            writer.submit(_decision())
            blocked_ms = max(blocked_ms, (time.monotonic() - t) * 1e3)
            submitted += 1
            time.sleep(1.0 / rate)
        timer.join()
        writer.close()
        after = writer.stats()
        with AuditLog(db) as a:
            rows = a.count()
    return {"lock_s": lock_s, "submitted": submitted, "rows_in_db": rows, "dropped": after["dropped"],
            "longest_submit_ms": round(blocked_ms, 1), "blocked_submits": after.get("blocked_submits"),
            "error_during_lock": during[0]["error"], "error_after_recovery": after["error"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="*", default=["keepalive", "slow", "audit"])
    ap.add_argument("--lock-s", type=float, default=12.0)
    args = ap.parse_args(argv)
    for w in args.what:
        out = {"keepalive": keepalive, "slow": slow, "audit": lambda: audit(args.lock_s)}[w]()
        print(w, out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
