"""Issue 14, "fail closed for real": the model that runs is the verified one, health means usable decisions,
start-up validates before listening, slow clients cannot starve others, the audit log never drops rows
silently, one service per Unix socket, and a response leaves in one write."""
from __future__ import annotations

import dataclasses
import http.client
import json
import shutil
import socket
import socketserver
import sqlite3
import threading
import time

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.errors import ConfigError, EdgePadError, IntegrityError, SourceError
from edgepad.runtime.audit import AuditLog, AuditWriter
from edgepad.runtime.service import DecisionHub, LivenessService, PipelineProducer, ServiceConfig
from edgepad.types import Decision, Modality, Reason, Verdict

TOKEN = "s3cret-token-0123456789abcdef"
SOURCE = "synthetic://default?seed=2&width=320&height=240&realtime=true&fps=15"


def decision(verdict: Verdict = Verdict.LIVE, reasons=(Reason.OK,)) -> Decision:
    return Decision(verdict, 0.9 if verdict is not Verdict.UNKNOWN else None, 0.5, evidence={Modality.RGB: 0.9},
                    reasons=tuple(reasons), timestamp_ns=time.monotonic_ns(), latency_ms={"total": 9.0},
                    modalities=frozenset({Modality.RGB}))


def get(svc: LivenessService, path: str, token: str | None = None, timeout: float = 10.0):
    if svc.config.unix_socket:
        class UnixConn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(svc.config.unix_socket)
        c = UnixConn("localhost", timeout=timeout)
    else:
        c = http.client.HTTPConnection(*svc.address, timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


# ------------------------------------------------------------------------------------------- model integrity
def test_model_swapped_after_verification_is_not_run(tmp_path):
    """The backend loads the bytes it hashed: replacing the file between the check and the (later) session
    creation changes nothing that runs; a new load of the swapped file is refused."""
    from tests.helpers.onnx_model import build_tiny_model

    from edgepad.engines.backend import load_backend
    signed, evil = tmp_path / "a" / "m.onnx", tmp_path / "b" / "m.onnx"
    signed.parent.mkdir()
    evil.parent.mkdir()
    build_tiny_model(signed, gain=4.0)
    build_tiny_model(evil, gain=-40.0)            # a different model: spoof-like scores where the signed is live
    feed = None

    def scores(path, verify=True):
        nonlocal feed
        with load_backend(path, threads=1, verify=verify) as be:
            feed = feed or {n: np.full(tuple(1 if s == -1 else s for s in spec.shape), 0.5, np.float32)
                            for n, spec in be.inputs.items()}
            return be.infer(feed)["score"].copy()
    want, attacker = scores(signed), scores(evil, verify=False)
    assert not np.allclose(want, attacker)
    be = load_backend(signed, threads=1)          # verified now ...
    shutil.copyfile(evil, signed)                 # ... swapped before the session is created
    with be:
        got = be.infer(feed)["score"].copy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(IntegrityError, match="refusing to load"):
        load_backend(signed)


# ------------------------------------------------------------------------------------------- health
def test_health_means_usable_decisions_and_writable_audit():
    now = [10**12]
    hub = DecisionHub(clock_ns=lambda: now[0])
    audit_error: list[str | None] = [None]
    svc = LivenessService(hub, ServiceConfig(port=0, health_max_age_ms=500, health_window_s=2.0),
                          clock_ns=lambda: now[0], audit_unavailable=lambda: audit_error[0])
    h = svc.health()
    assert (h["status"], h["reason"]) == ("unhealthy", "no_decision")
    for _ in range(5):                                     # fresh, but every one UNKNOWN stale: not usable
        hub.publish(decision(Verdict.UNKNOWN, (Reason.STALE,)))
        now[0] += 50_000_000
    h = svc.health()
    assert (h["healthy"], h["status"], h["reason"], h["unusable_reason"]) == (False, "unhealthy",
                                                                               "decisions_unusable", "stale")
    hub.publish(decision(Verdict.UNKNOWN, (Reason.NO_FACE,)))   # nobody at the door: usable
    h = svc.health()
    assert (h["healthy"], h["status"], h["reason"]) == (True, "degraded", "some_decisions_unusable")
    now[0] += 3_000_000_000                                # the camera stalls: no frames, no decisions
    hub.publish(decision(Verdict.UNKNOWN, (Reason.NO_FRAMES,)))
    h = svc.health()
    assert (h["status"], h["unusable_reason"]) == ("unhealthy", "no_frames")
    now[0] += 2_500_000_000                                # past the window: only the next decision counts
    assert svc.health()["reason"] == "stale"
    hub.publish(decision())
    assert svc.health()["status"] == "ok"
    audit_error[0] = "OperationalError: database or disk is full"
    h = svc.health()
    assert (h["status"], h["reason"], h["audit_error"]) == ("unhealthy", "audit_unavailable", audit_error[0])
    with svc:
        status, body = get(svc, "/v1/health")
        assert status == 503 and body["reason"] == "audit_unavailable"
        audit_error[0] = None
        status, body = get(svc, "/v1/health")
        assert status == 200 and body["status"] == "ok"


# ------------------------------------------------------------------------------------------- start-up
@pytest.mark.parametrize("fault", ["truncated", "input_shape", "source", "audit"])
def test_serve_validates_model_source_and_audit_before_listening(fault, tiny_model, tmp_path, capsys):
    from edgepad.engines.manifest import read_manifest, write_manifest
    model, source, extra = tiny_model, SOURCE, []
    if fault in ("truncated", "input_shape"):
        model = tmp_path / "m.onnx"
        data = tiny_model.read_bytes()
        model.write_bytes(data[: len(data) // 2] if fault == "truncated" else data)
        man = read_manifest(tiny_model)
        if fault == "input_shape":
            man = man.replace(inputs={n: dataclasses.replace(t, shape=(*t.shape[:2], 64, 64))   # model: 32×32
                                      for n, t in man.inputs.items()})
        write_manifest(man, model)                       # a consistent sha256: only loading can tell
    elif fault == "source":
        source = f"replay://{tmp_path / 'no-such-recording'}"
    else:
        (tmp_path / "file").write_text("not a folder")
        extra = ["--audit", str(tmp_path / "file" / "audit.db")]
    rc = main(["serve", source, "--model", str(model), "--port", "0", "--locator", "truth", *extra])
    out, err = capsys.readouterr()
    assert rc != 0 and "listening" not in out
    line = err.strip().splitlines()[-1]
    assert line.startswith("edgepad") or "error" in line.lower(), err
    assert {"truncated": "cannot load", "input_shape": "shape", "source": "no-such-recording",
            "audit": "audit"}[fault] in err


def test_producer_prime_needs_a_first_frame_set():
    class NoFrames:
        closed = False

        def open(self):
            pass

        def close(self):
            NoFrames.closed = True

        def decisions(self):
            while True:
                time.sleep(0.01)
                yield decision(Verdict.UNKNOWN, (Reason.NO_FRAMES,))
    with pytest.raises(SourceError, match="no frame set within 0.2 s"):
        PipelineProducer(NoFrames).prime(0.2, "cam")
    assert NoFrames.closed


# ------------------------------------------------------------------------------------------- slow clients
def test_32_slow_clients_do_not_starve_an_authenticated_health_check():
    hub = DecisionHub()
    hub.publish(decision())
    cfg = ServiceConfig(port=0, token=TOKEN, max_connections=32, header_timeout_s=30.0)
    with LivenessService(hub, cfg) as svc:
        slow = []
        for _ in range(32):                                   # each sends a partial request, then stalls
            s = socket.create_connection(svc.address, timeout=5)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nX-Slow: 1\r\n")
            slow.append(s)
        try:
            deadline = time.monotonic() + 10
            while svc.connections.in_use < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
            for _ in range(3):
                status, body = get(svc, "/v1/health", TOKEN)
                assert status == 200 and body["healthy"] is True
            assert svc.connections.evicted >= 3
        finally:
            for s in slow:
                s.close()


def test_header_deadline_closes_a_slow_client():
    hub = DecisionHub()
    with LivenessService(hub, ServiceConfig(port=0, header_timeout_s=0.3)) as svc:
        s = socket.create_connection(svc.address, timeout=10)   # generous bound; the deadline is 0.3 s
        try:
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            assert s.recv(100) == b""                           # closed without an answer
        finally:
            s.close()
        assert svc.connections.timed_out >= 1


# ------------------------------------------------------------------------------------------- audit
def test_audit_keeps_rows_through_a_lock_blocks_when_full_and_clears_its_error(tmp_path):
    db = tmp_path / "audit.db"
    writer = AuditWriter(lambda: AuditLog(db, synchronous="NORMAL", busy_timeout_s=0.05), max_pending=4)
    writer.start(first_event=("service_start", {}))
    locker = sqlite3.connect(str(db), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")                        # another process holds the write lock
    submitted: list[bool] = []
    th = threading.Thread(target=lambda: submitted.extend(writer.submit(decision()) for _ in range(20)))
    th.start()
    deadline = time.monotonic() + 10
    while writer.stats()["error"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "locked" in writer.stats()["error"] and writer.unavailable()
    th.join(0.3)
    assert th.is_alive() and len(submitted) < 20              # back-pressure: the decision stream waits
    locker.execute("COMMIT")
    locker.close()
    th.join(10)
    assert not th.is_alive() and submitted == [True] * 20
    writer.close()
    st = writer.stats()
    assert st["dropped"] == 0 and st["error"] is None and st["recoveries"] >= 1 and "locked" in st["last_error"]
    with AuditLog(db) as a:
        assert a.count() == 20


def test_audit_that_cannot_be_opened_is_a_typed_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgePadError, match="audit"):
        AuditWriter(lambda: AuditLog(tmp_path / "file" / "a.db")).start()


# ------------------------------------------------------------------------------------------- unix socket
def test_second_service_on_the_same_unix_socket_is_refused(tmp_path):
    path = str(tmp_path / "edgepad.sock")
    hub = DecisionHub()
    hub.publish(decision())
    first = LivenessService(hub, ServiceConfig(unix_socket=path)).start()
    try:
        with pytest.raises(ConfigError, match="another edgepad serve"):
            LivenessService(hub, ServiceConfig(unix_socket=path)).start()
        assert get(first, "/v1/health")[0] == 200             # its socket was left alone
    finally:
        first.stop()
    with LivenessService(hub, ServiceConfig(unix_socket=path)) as again:   # the lock went with the first
        assert get(again, "/v1/health")[0] == 200


def test_second_serve_process_exits_nonzero(tmp_path, tiny_model):
    import subprocess
    import sys
    path = str(tmp_path / "s.sock")
    hub = DecisionHub()
    with LivenessService(hub, ServiceConfig(unix_socket=path)):
        out = subprocess.run([sys.executable, "-m", "edgepad", "serve", SOURCE, "--model", str(tiny_model),
                              "--unix-socket", path], capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "another edgepad serve" in out.stderr
        assert socket.socket(socket.AF_UNIX).connect_ex(path) == 0


# ------------------------------------------------------------------------------------------- one write
def test_response_leaves_in_one_write(monkeypatch):
    writes: list[int] = []
    orig = socketserver._SocketWriter.write

    def counting(self, b):
        writes.append(len(b))
        return orig(self, b)
    monkeypatch.setattr(socketserver._SocketWriter, "write", counting)
    hub = DecisionHub()
    hub.publish(decision())
    with LivenessService(hub, ServiceConfig(port=0)) as svc:
        c = http.client.HTTPConnection(*svc.address, timeout=10)
        for _ in range(3):                                     # keep-alive: same connection
            writes.clear()
            c.request("GET", "/v1/health")
            r = c.getresponse()
            body = r.read()
            assert r.status == 200 and len(writes) == 1 and writes[0] > len(body) > 0
        c.close()


def test_audit_disk_full_is_retried_not_dropped(tmp_path):
    """A write that fails (here: "database or disk is full" for the first 3 tries) keeps its rows."""
    fails = [3]

    class FullDisk(AuditLog):
        def record_many(self, items):
            if fails[0] > 0:
                fails[0] -= 1
                raise sqlite3.OperationalError("database or disk is full")
            return super().record_many(items)
    writer = AuditWriter(lambda: FullDisk(tmp_path / "a.db", synchronous="NORMAL")).start()
    for _ in range(10):
        writer.submit(decision())
    writer.close()
    st = writer.stats()
    assert fails[0] == 0 and st["dropped"] == 0 and st["committed"] == 10 and st["error"] is None
    assert "disk is full" in st["last_error"] and st["recoveries"] == 1


def test_serve_exits_with_the_error_when_the_producer_fails_after_start(tiny_model, monkeypatch):
    """No listening service with a dead producer: a source that fails for good (no restarts) ends run_service."""
    from edgepad.engines.manifest import read_manifest
    from edgepad.runtime.service import ServeOptions, run_service
    from edgepad.runtime.service import app

    class Failing:
        manifest, policy, stats, last_frameset, rig = read_manifest(tiny_model), None, None, None, None

        def open(self):
            pass

        def close(self):
            pass

        def decisions(self):
            for _ in range(3):
                yield decision()
            raise SourceError("camera unplugged", "fake://")
    monkeypatch.setattr(app, "open_pipeline", lambda *a, **k: Failing())
    ready = []
    with pytest.raises(SourceError, match="camera unplugged"):
        run_service(ServeOptions(source="fake://", model=tiny_model, restart_s=None,
                                 service=ServiceConfig(port=0)), on_ready=ready.append)
    assert len(ready) == 1 and ready[0].hub.count == 3 and ready[0].address is None   # stopped and closed


def test_external_data_companion_swapped_after_verification_is_not_run(tmp_path):
    """An ONNX model with external weights: the verified companion bytes are what ONNX Runtime loads."""
    onnx = pytest.importorskip("onnx")
    from tests.helpers.onnx_model import build_tiny_model

    from edgepad.engines.backend import load_backend
    from edgepad.engines.manifest import read_manifest, write_manifest
    src = tmp_path / "src" / "m.onnx"
    src.parent.mkdir()
    build_tiny_model(src)
    ext = tmp_path / "ext" / "m.onnx"
    ext.parent.mkdir()
    onnx.save_model(onnx.load(str(src)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    write_manifest(read_manifest(src).replace(artifact_files=("m.onnx.data",)), ext)
    with load_backend(src, threads=1) as be:
        feed = {n: np.full(tuple(1 if s == -1 else s for s in spec.shape), 0.5, np.float32)
                for n, spec in be.inputs.items()}
        want = be.infer(feed)["score"].copy()
    be = load_backend(ext, threads=1)                       # model and weights verified ...
    data = ext.with_name("m.onnx.data")
    data.write_bytes(np.full(data.stat().st_size // 4, 3.0, np.float32).tobytes())   # ... weights swapped
    with be:
        np.testing.assert_allclose(be.infer(feed)["score"], want, rtol=1e-6)
    with pytest.raises(IntegrityError):
        load_backend(ext)
