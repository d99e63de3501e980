"""``edgepad serve`` end to end: the real pipeline (synthetic camera, tiny ONNX model) behind the HTTP API, with
the audit log, lockout reset, integrity refusal and exposure refusal."""
from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time

import pytest

from edgepad.cli import build_parser, main
from edgepad.commands import serve as serve_cmd
from edgepad.commands.serve import serve_main, serve_options
from edgepad.runtime.service import AuditOptions, ServeOptions

SOURCE = "synthetic://default?seed=2&width=320&height=240&realtime=true&fps=15"


def parse(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def get(svc, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    c = http.client.HTTPConnection(*svc.address, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_serve_real_pipeline_with_audit(tiny_model, tmp_path, capsys, monkeypatch):
    pytest.importorskip("cv2")
    audit = tmp_path / "audit.db"
    args = parse(SOURCE, "--model", str(tiny_model), "--port", "0", "--locator", "truth", "--audit", str(audit),
                 "--health-max-age-ms", "5000", "--max-age-ms", "5000", "--lockout-after", "1")
    stop, ready = threading.Event(), []
    opts = serve_options(args)
    assert isinstance(opts, ServeOptions) and opts.audit == AuditOptions(audit) and opts.source == SOURCE
    assert opts.pipeline.policy.lockout_after == 1 and opts.service.health_max_age_ms == 5000
    # through the command, which prints the URL when ready: wrap that hook to get hold of the service
    printed = serve_cmd._print_ready
    monkeypatch.setattr(serve_cmd, "_print_ready", lambda svc: (printed(svc), ready.append(svc)))
    th = threading.Thread(target=lambda: ready.append(serve_main(args, stop=stop)))
    th.start()
    try:
        deadline = time.monotonic() + 60
        while not ready and time.monotonic() < deadline and th.is_alive():
            time.sleep(0.05)
        assert ready, "edgepad serve did not start"
        svc = ready[0]
        deadline = time.monotonic() + 60
        status = body = None
        while time.monotonic() < deadline:
            status, body = get(svc, "/v1/decision/latest")
            if status == 200 and json.loads(body)["seq"] >= 5:
                break
            time.sleep(0.1)
        assert status == 200, body
        d = json.loads(body)["decision"]
        assert d["verdict"] in ("live", "spoof", "unknown") and set(d["latency_ms"]) >= {"infer", "total"}
        assert d["threshold"] in (0.5, 0.6, 0.65)          # full set or a calibrated degraded subset (manifest)
        status, body = get(svc, "/v1/status")
        s = json.loads(body)
        assert s["model"]["name"] == "tiny" and len(s["model"]["sha256"]) == 64 and s["source"] == SOURCE
        assert s["runtime"]["running"] is True and "lockout" in s and s["audit"]["error"] is None
        status, body = get(svc, "/v1/health")
        assert status == 200, body
        for m in ("rgb", "ir", "depth"):
            status, body = get(svc, f"/v1/preview/{m}.jpg")
            assert status == 200 and body[:2] == b"\xff\xd8", m
        status, body = get(svc, "/v1/lockout/reset", "POST", b'{"reason": "test"}',
                           {"Content-Type": "application/json"})
        assert status == 200 and "was_locked" in json.loads(body)
        c = http.client.HTTPConnection(*svc.address, timeout=10)
        c.request("GET", "/v1/decisions/stream?limit=2")
        text = c.getresponse().read().decode()
        c.close()
        assert text.count("event: decision") == 2
    finally:
        stop.set()
        th.join(30)
    assert not th.is_alive() and ready[-1] == 0
    captured = capsys.readouterr()
    assert "listening on http://127.0.0.1:" in captured.out and "(model tiny, source synthetic://" in captured.out
    assert "stopped after" in captured.err
    con = sqlite3.connect(audit)
    try:
        n = con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        assert n >= 5
        sha = {r[0] for r in con.execute("SELECT DISTINCT model_sha256 FROM decisions")}
        assert sha == {s["model"]["sha256"]}
        rows = [(r[0], json.loads(r[1])) for r in con.execute("SELECT kind, detail FROM events ORDER BY id")]
        assert [k for k, _ in rows if k != "presentation_decided"] == ["service_start", "lockout_reset",
                                                                        "service_stop"]
        decided = [d for k, d in rows if k == "presentation_decided"]       # one per decided presentation
        assert all(d["verdict"] in ("live", "spoof") and d["model_sha256"] == s["model"]["sha256"] for d in decided)
        assert [d["presentation"] for d in decided] == sorted({d["presentation"] for d in decided})
        assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0            # privacy default
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_serve_refuses_exposed_without_token(tiny_model, capsys):
    rc = main(["serve", SOURCE, "--model", str(tiny_model), "--host", "0.0.0.0", "--port", "0"])
    assert rc == 1
    assert "token" in capsys.readouterr().err


def test_serve_refuses_tampered_or_unsigned_model(tiny_model, tmp_path, capsys):
    pytest.importorskip("cryptography")
    from edgepad.runtime.integrity import generate_keypair
    bad = tmp_path / "tampered.onnx"
    bad.write_bytes(tiny_model.read_bytes() + b"\0")
    (tmp_path / "tampered.onnx.json").write_bytes((tiny_model.parent / "tiny.onnx.json").read_bytes())
    assert main(["serve", SOURCE, "--model", str(bad), "--port", "0"]) == 1
    assert "refusing to load" in capsys.readouterr().err
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    assert main(["serve", SOURCE, "--model", str(tiny_model), "--port", "0", "--public-key",
                 str(tmp_path / "k.pub")]) == 1                       # the tiny model is not signed
    assert "signature" in capsys.readouterr().err
