"""HTTP/JSON service: endpoints, SSE, previews, health (fail-closed), token, robustness against bad requests."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from edgepad.errors import ConfigError, EdgePadError
from edgepad.runtime.service import (DecisionHub, LivenessService, ProducerThread, ServiceConfig, Update,
                                     is_loopback, read_token_file)
from edgepad.types import Decision, Modality, Reason, Verdict

TOKEN = "s3cret-token-0123456789abcdef"


def decision(verdict: Verdict = Verdict.LIVE, score: float | None = 0.9, **kw) -> Decision:
    base = dict(evidence={Modality.RGB: 0.8}, reasons=(Reason.OK,), timestamp_ns=time.monotonic_ns(),
                latency_ms={"infer": 2.5, "total": 9.0}, modalities=frozenset({Modality.RGB, Modality.DEPTH}),
                face_box=(10, 8, 20, 24))
    base.update(kw)
    return Decision(verdict, score, 0.5, **base)


def frames(h: int = 48, w: int = 64) -> dict:
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 4, yy * 5, np.full_like(xx, 60)], -1).astype(np.uint8)
    depth = (500 + xx * 3).astype(np.uint16)
    depth[:4] = 0
    return {Modality.RGB: rgb, Modality.DEPTH: depth}


class Client:
    """Tiny HTTP client over TCP or a Unix socket."""

    def __init__(self, svc: LivenessService, token: str | None = None) -> None:
        self.svc, self.token = svc, token

    def conn(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        if self.svc.config.unix_socket:
            path = self.svc.config.unix_socket

            class UnixConn(http.client.HTTPConnection):
                def connect(self) -> None:
                    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.sock.settimeout(timeout)
                    self.sock.connect(path)
            return UnixConn("localhost", timeout=timeout)
        host, port = self.svc.address
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if self.token and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.token}"
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), data
        finally:
            c.close()

    def json(self, method: str, path: str, **kw):
        status, headers, data = self.request(method, path, **kw)
        return status, json.loads(data)


@pytest.fixture
def hub() -> DecisionHub:
    return DecisionHub()


@pytest.fixture
def service(hub):
    resets: list[dict] = []

    def on_reset(body: dict) -> dict:
        resets.append(body)
        return {"was_locked": True}
    svc = LivenessService(hub, ServiceConfig(port=0, health_max_age_ms=300, sse_keepalive_s=0.3,
                                             max_sse_clients=2),
                          info={"model": {"name": "tiny", "sha256": "ab" * 32}, "source": "fake://"},
                          on_lockout_reset=on_reset)
    svc.resets = resets  # type: ignore[attr-defined]
    with svc:
        yield svc


def raw(svc: LivenessService, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    s = socket.create_connection(svc.address, timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------ hub
def test_hub_latest_wait_fps_and_frames_carry_over():
    t = [0]
    hub = DecisionHub(clock_ns=lambda: t[0])
    assert hub.latest() is None and hub.age_ms() is None and hub.fps() == 0.0
    assert hub.wait(0, timeout_s=0.01) is None
    for i in range(5):
        t[0] = i * 100_000_000                          # 10 Hz
        hub.publish(Update(decision(), frames()) if i == 0 else decision(Verdict.SPOOF, 0.1, face_box=None))
    p = hub.latest()
    assert p.seq == 5 and p.decision.verdict is Verdict.SPOOF
    assert abs(hub.fps() - 10.0) < 1e-6
    # frames from the update that carried them stay, with that update's box (depth has rgb's size -> boxed too)
    assert p.frames_seq == 1 and set(p.frames) == {Modality.RGB, Modality.DEPTH}
    assert p.boxes[Modality.RGB] == (10, 8, 20, 24) == p.boxes[Modality.DEPTH]
    assert p.frames_verdict is Verdict.LIVE
    t[0] += 250_000_000
    assert hub.age_ms() == pytest.approx(250.0)
    got = []
    th = threading.Thread(target=lambda: got.append(hub.wait(5, timeout_s=5.0)))
    th.start()
    time.sleep(0.05)
    hub.publish(decision())
    th.join(5)
    assert got[0].seq == 6
    with pytest.raises(Exception, match="expected Decision"):
        hub.publish(Update("not a decision"))  # type: ignore[arg-type]


def test_producer_thread_error_closes_hub_and_health_fails_closed(hub):
    def producer():
        yield decision()
        raise RuntimeError("camera on fire")
    svc = LivenessService(hub, ServiceConfig(port=0))
    th = ProducerThread(hub, producer()).start()
    th.join(5)
    assert hub.closed and "camera on fire" in hub.error
    h = svc.health()
    assert h["healthy"] is False and h["reason"] == "producer_stopped"


# ------------------------------------------------------------------------------------------------ endpoints
def test_status_health_latest():
    now = [10**12]
    hub = DecisionHub(clock_ns=lambda: now[0])
    service = LivenessService(hub, ServiceConfig(port=0, health_max_age_ms=300), clock_ns=lambda: now[0],
                              info={"model": {"name": "tiny", "sha256": "ab" * 32}, "source": "fake://"},
                              on_lockout_reset=lambda body: None)
    with service:
        _check_status_health_latest(service, hub, now)


def _check_status_health_latest(service, hub, now):
    c = Client(service)
    status, body = c.json("GET", "/v1/decision/latest")
    assert status == 503 and body["error"] == "no_decision"
    status, body = c.json("GET", "/v1/health")
    assert status == 503 and body == {"healthy": False, "status": "unhealthy", "age_ms": None, "max_age_ms": 300.0,
                                      "reason": "no_decision"}
    hub.publish(decision(score=float("nan"), evidence={Modality.RGB: float("inf")}))
    now[0] += 120_000_000
    status, body = c.json("GET", "/v1/health")
    assert status == 200 and body["healthy"] is True and body["status"] == "ok" and body["reason"] is None
    assert body["age_ms"] == 120.0 and body["max_age_ms"] == 300.0
    assert body["window"] == {"seconds": 2.0, "decisions": 1, "unusable": 0, "by_reason": {}}
    status, body = c.json("GET", "/v1/decision/latest")
    assert status == 200 and body["seq"] == 1 and body["age_ms"] == 120.0
    d = body["decision"]
    assert d["verdict"] == "live" and d["score"] is None      # NaN never leaks into JSON
    assert d["reasons"] == ["ok"] and d["modalities"] == ["depth", "rgb"] and d["latency_ms"]["total"] == 9.0
    status, body = c.json("GET", "/v1/status")
    assert status == 200
    assert body["model"]["name"] == "tiny" and body["source"] == "fake://" and body["decisions"] == 1
    assert body["health"]["healthy"] is True and body["token_required"] is False
    assert body["lockout_reset_supported"] is True and body["last"]["seq"] == 1
    now[0] += 181_000_000                                           # 301 ms > health_max_age_ms: fail closed
    status, body = c.json("GET", "/v1/health")
    assert status == 503 and body["reason"] == "stale" and body["age_ms"] == 301.0


def test_sse_stream_delivers_new_decisions_and_keepalives(service, hub):
    hub.publish(decision(Verdict.UNKNOWN, None, reasons=(Reason.NO_FACE,)))
    c = Client(service).conn()
    c.request("GET", "/v1/decisions/stream?limit=3")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")

    def feed():
        time.sleep(0.8)                                        # long enough for at least one keepalive
        hub.publish(decision(Verdict.SPOOF, 0.05))
        time.sleep(0.05)
        hub.publish(decision(Verdict.LIVE, 0.95))
    th = threading.Thread(target=feed)
    th.start()
    text = r.read().decode()                                  # ends after limit=3 events
    th.join()
    c.close()
    events = [blk for blk in text.split("\n\n") if "event: decision" in blk]
    payloads = [json.loads(line[6:]) for blk in events for line in blk.splitlines() if line.startswith("data: ")]
    assert [p["decision"]["verdict"] for p in payloads] == ["unknown", "spoof", "live"]
    assert [p["seq"] for p in payloads] == [1, 2, 3]
    assert ": keepalive" in text and text.startswith("retry: ")
    assert service.status()["sse_clients"] == 0


def test_sse_client_limit_and_end_event(service, hub):
    hub.publish(decision())
    conns = []
    for _ in range(2):
        c = Client(service).conn()
        c.request("GET", "/v1/decisions/stream")
        r = c.getresponse()
        assert r.status == 200
        conns.append((c, r))
    deadline = time.monotonic() + 5
    while service.status()["sse_clients"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    status, body = Client(service).json("GET", "/v1/decisions/stream")
    assert status == 503 and body["error"] == "too_many_streams"
    hub.close("EndOfStream: replay finished")                  # the producer ended: streams end cleanly
    for c, r in conns:
        text = r.read().decode()
        assert "event: end" in text and "replay finished" in text
        c.close()
    deadline = time.monotonic() + 5
    while service.status()["sse_clients"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.status()["sse_clients"] == 0


def test_previews(service, hub):
    cv2 = pytest.importorskip("cv2")
    c = Client(service)
    status, _, body = c.request("GET", "/v1/preview/rgb.jpg")
    assert status == 404 and json.loads(body)["error"] == "no_frame"
    hub.publish(Update(decision(Verdict.LIVE), frames()))
    status, headers, body = c.request("GET", "/v1/preview/rgb.png?box=0")
    assert status == 200 and headers["Content-Type"] == "image/png" and headers["X-Edgepad-Seq"] == "1"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    src = frames()[Modality.RGB]
    assert img.shape == (48, 64, 3) and np.array_equal(img[..., ::-1], src)        # exact, RGB order kept
    status, _, body = c.request("GET", "/v1/preview/rgb.png")
    boxed = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    diff = np.any(boxed != img, axis=2)
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 50 and xs.min() >= 10 - 3 and xs.max() <= 10 + 20 + 2      # box drawn where it is
    assert tuple(boxed[8, 20]) == (80, 200, 40)                                      # live colour on the edge
    status, headers, body = c.request("GET", "/v1/preview/depth.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    dimg = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert dimg.shape == (48, 64, 3) and dimg[:3].max() < 40 and dimg[20:, 40:].std() > 5   # invalid rows black
    status, _, body = c.request("GET", "/v1/preview/ir.jpg")
    assert status == 404
    for bad in ("/v1/preview/thermal.jpg", "/v1/preview/rgb.gif", "/v1/preview/rgb"):
        assert c.request("GET", bad)[0] == 404
    assert c.request("GET", "/v1/preview/rgb.jpg?box=2")[0] == 400


def test_lockout_reset(service, hub):
    c = Client(service)
    hdr = {"Content-Type": "application/json"}
    status, body = c.json("POST", "/v1/lockout/reset", body=b'{"reason": "badge 42", "operator": "ann"}',
                          headers=hdr)
    assert status == 200 and body == {"reset": True, "was_locked": True}
    status, body = c.json("POST", "/v1/lockout/reset", body=b"", headers=hdr)
    assert status == 200
    assert service.resets == [{"reason": "badge 42", "operator": "ann"}, {}]
    for payload, code in [(b"[1,2]", "bad_body"), (b'{"reason": 5}', "bad_field"), (b'{"x": 1}', "unknown_field"),
                          (b'{"reason": "' + b"a" * 300 + b'"}', "bad_field"), (b"{nope", "bad_json"),
                          (b"\xff\xfe", "bad_json")]:
        status, body = c.json("POST", "/v1/lockout/reset", body=payload, headers=hdr)
        assert (status, body["error"]) == (400, code), payload
    status, body = c.json("POST", "/v1/lockout/reset", body=b"reason=x",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415                                   # cross-site forms cannot reset the lockout
    assert len(service.resets) == 2


def test_lockout_reset_not_supported_or_failing(hub):
    with LivenessService(hub, ServiceConfig(port=0)) as svc:
        status, body = Client(svc).json("POST", "/v1/lockout/reset", body=b"{}",
                                        headers={"Content-Type": "application/json"})
    assert status == 501 and body["error"] == "not_supported"

    def refuse(body):
        raise EdgePadError("the runtime is not running; nothing to reset")
    with LivenessService(hub, ServiceConfig(port=0), on_lockout_reset=refuse) as svc:
        status, body = Client(svc).json("POST", "/v1/lockout/reset", body=b"{}",
                                        headers={"Content-Type": "application/json"})
    assert status == 409 and "not running" in body["message"]


def test_page_and_static_files(service):
    c = Client(service)
    status, headers, body = c.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="verdict"' in body and b"/static/app.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = c.request("GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(ctype) and len(body) > 500
    for bad in ("/static/../service.py", "/static/%2e%2e/service.py", "/static/missing.js", "/static/a/b.js"):
        assert c.request("GET", bad)[0] == 404, bad


# ------------------------------------------------------------------------------------------------ robustness
def test_bad_methods_paths_and_queries(service):
    c = Client(service)
    status, headers, body = c.request("DELETE", "/v1/status")
    assert status == 405 and headers["Allow"] == "GET" and json.loads(body)["error"] == "method_not_allowed"
    assert c.request("GET", "/v1/lockout/reset")[0] == 405
    assert c.request("PUT", "/v1/lockout/reset", body=b"{}")[0] == 405
    assert c.request("OPTIONS", "/v1/status")[0] == 405                # no CORS preflight is ever granted
    status, headers, body = c.request("HEAD", "/v1/status")
    assert status == 405 and body == b""
    assert c.request("GET", "/v1/nope")[0] == 404
    assert c.request("GET", "/v1/decisions/stream?limit=abc")[0] == 400
    assert c.request("GET", "/v1/decisions/stream?limit=-1")[0] == 400
    status, _, body = c.request("GET", "/v1/status", body=b"{}", headers={"Content-Length": "2"})
    assert status == 400 and json.loads(body)["error"] == "unexpected_body"


def test_malformed_http_never_crashes(service, hub):
    hub.publish(decision())
    cases = {
        b"GARBAGE\r\n\r\n": 400,
        b"GET /v1/status HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n": 505,
        b"GET " + b"/a" * 40000 + b" HTTP/1.1\r\n\r\n": 414,
        b"BREW /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n": 501,
        b"GET http://evil/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n": 400,
        b"POST /v1/lockout/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999\r\n\r\n{}": 413,
        b"POST /v1/lockout/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: -5\r\n\r\n": 400,
        b"POST /v1/lockout/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n": 411,
        b"POST /v1/lockout/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\nConnection: close\r\n\r\n{}": 400,               # short body (client hangs up)
        b"GET /v1/status HTTP/1.1\r\nHost: evil.example:8470\r\n\r\n": 403,    # DNS-rebinding guard
        b"GET /v1/status HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n": 431,
    }
    for req, expected in cases.items():
        if req.startswith(b"POST") and b"Content-Length: 10\r\n" in req:
            s = socket.create_connection(service.address, timeout=5)
            s.sendall(req)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            s.close()
        else:
            out = raw(service, req)
        line = out.split(b"\r\n", 1)[0]
        assert line.split(b" ")[1] == str(expected).encode(), (req[:60], out[:200])
        body = out.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["status"] == expected                   # JSON errors, even from http.server
    # after all that the service still answers, and nothing crashed
    status, body = Client(service).json("GET", "/v1/health")
    assert status == 200 and body["healthy"] is True
    assert service.resets == []


def test_unread_body_is_not_parsed_as_next_request(service):
    smuggled = b"GET /v1/lockout/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    req = (b"DELETE /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + str(len(smuggled)).encode()
           + b"\r\n\r\n" + smuggled)
    out = raw(service, req)
    assert out.count(b"HTTP/1.1 ") == 1 and b" 405 " in out.split(b"\r\n", 1)[0]


def test_connection_limit(hub):
    """Idle connections (no request headers yet) make room for a new one; busy ones (streams) do not."""
    hub.publish(decision())
    with LivenessService(hub, ServiceConfig(port=0, max_connections=2, request_timeout_s=5)) as svc:
        idle = [socket.create_connection(svc.address, timeout=5) for _ in range(2)]
        deadline = time.monotonic() + 5
        while svc.status()["connections"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Client(svc).request("GET", "/v1/status")[0] == 200      # the oldest idle one was closed for it
        assert idle[0].recv(10) == b"" and svc.connections.evicted >= 1
        for s in idle:
            s.close()
        streams = []
        for _ in range(2):
            c = Client(svc).conn()
            c.request("GET", "/v1/decisions/stream")
            r = c.getresponse()
            assert r.status == 200
            streams.append((c, r))
        out = raw(svc, b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503") and b"too_many_connections" in out
        assert svc.rejected_connections == 1
        for c, r in streams:
            r.close()
            c.close()


# ------------------------------------------------------------------------------------------------ security
def test_exposed_address_requires_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.5.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("terminal.local")
    with pytest.raises(ConfigError, match="token is required"):
        LivenessService(DecisionHub(), ServiceConfig(host="0.0.0.0", port=0))
    with pytest.raises(ConfigError, match="at least 16"):
        ServiceConfig(host="0.0.0.0", token="short")
    assert ServiceConfig(host="0.0.0.0", token=TOKEN).exposed
    assert not ServiceConfig(host="0.0.0.0", unix_socket="/tmp/x.sock").exposed


def test_token_file(tmp_path):
    p = tmp_path / "token"
    p.write_text(f"  {TOKEN}\n")
    p.chmod(0o600)
    assert read_token_file(p) == TOKEN
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_token_file(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        read_token_file(tmp_path / "missing")


def test_token_checked_on_every_request(hub):
    hub.publish(decision())
    # exposed on all interfaces with a token; clients still talk over loopback here
    with LivenessService(hub, ServiceConfig(host="0.0.0.0", port=0, token=TOKEN)) as svc:
        port = svc.address[1]

        class C(Client):
            def conn(self, timeout: float = 5.0):
                return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        anon, good, bad = C(svc), C(svc, TOKEN), C(svc, TOKEN[:-1] + "X")
        for path in ("/", "/v1/status", "/v1/health", "/v1/decision/latest", "/v1/decisions/stream",
                     "/v1/preview/rgb.jpg", "/static/app.js"):
            status, headers, body = anon.request("GET", path)
            assert status == 401 and json.loads(body)["error"] == "unauthorized", path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert bad.request("GET", path)[0] == 401, path
        assert anon.request("POST", "/v1/lockout/reset", body=b"{}",
                            headers={"Content-Type": "application/json"})[0] == 401
        assert anon.request("GET", "/v1/status", headers={"Authorization": "Basic dXNlcjpwdw=="})[0] == 401
        assert anon.request("GET", "/v1/status", headers={"Authorization": "Bearer "})[0] == 401
        assert good.request("GET", "/v1/status")[0] == 200
        assert good.json("GET", "/v1/status")[1]["token_required"] is True
        assert good.request("GET", "/v1/status", headers={"Host": "terminal.example"})[0] == 200
        assert good.request("GET", "/v1/decision/latest")[0] == 200
        # browser login: /?token= sets an HttpOnly cookie and redirects to a URL without the token
        status, headers, _ = anon.request("GET", "/?token=" + TOKEN[:-1] + "X")
        assert status == 401 and "Set-Cookie" not in headers
        status, headers, _ = anon.request("GET", "/?token=" + TOKEN)
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert anon.request("GET", "/v1/status", headers={"Cookie": "a=b; " + cookie})[0] == 200
        assert anon.request("GET", "/v1/status", headers={"Cookie": "edgepad_token=nope"})[0] == 401


def test_unix_socket(tmp_path, hub):
    path = tmp_path / "edgepad.sock"
    path.write_bytes(b"")                                                 # not a socket: refused
    with pytest.raises(ConfigError, match="not a socket"):
        LivenessService(hub, ServiceConfig(unix_socket=str(path))).start()
    path.unlink()
    hub.publish(decision())
    for _ in range(2):                                     # the second start replaces the stale socket file
        svc = LivenessService(hub, ServiceConfig(unix_socket=str(path)))
        with svc:
            assert svc.url == f"http+unix://{path}"
            assert (path.stat().st_mode & 0o777) == 0o660
            status, body = Client(svc).json("GET", "/v1/decision/latest")
            assert status == 200 and body["decision"]["verdict"] == "live"
            assert Client(svc).request("GET", "/v1/status", headers={"Host": "evil.example"})[0] == 200
        # leave a stale socket behind, as a crashed process would
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()


# ------------------------------------------------------------------------------------------------ pipeline adapter
class _FakePolicy:
    def __init__(self) -> None:
        self.locked, self.spoof_attempts = True, 2


class _FakePipeline:
    """Stands in for LivenessPipeline: open/close, and decisions() that may fail like an unplugged camera."""

    def __init__(self, n: int, fail: bool, fs=None, rig=None) -> None:
        self.n, self.fail, self.last_frameset, self.rig = n, fail, fs, rig
        self.policy = _FakePolicy()
        self.opened = self.closed = False
        self.stats = None

    def open(self):
        self.opened = True

    def close(self):
        self.closed = True

    def decisions(self):
        from edgepad.errors import SourceError
        for i in range(self.n):
            yield decision(face_box=(40, 30, 50, 60))
        if self.fail:
            raise SourceError("unplugged", uri="fake://cam")

    def reset_lockout(self):
        self.policy.locked = False


def test_pipeline_producer_rebuilds_after_source_error_and_maps_frames():
    from tests.helpers.scene import make_rig, plane_frameset

    from edgepad.runtime.service import PipelineProducer, face_boxes
    rig = make_rig(baseline_m=0.0, yaw_deg=0.0, distort=False)
    fs = plane_frameset(rig, z_m=0.5)
    built: list[_FakePipeline] = []

    def factory():
        p = _FakePipeline(3, fail=not built, fs=fs, rig=rig)      # the first pipeline loses its camera
        built.append(p)
        return p
    prod = PipelineProducer(factory, preview_fps=1000.0, audit_images=True, restart_s=0.01)
    items = list(prod)
    assert len(built) == 2 and prod.restarts == 1 and all(p.opened and p.closed for p in built)
    assert len(items) == 6 and all(isinstance(u, Update) for u in items)
    u = items[0]
    assert set(u.frames) == {Modality.RGB, Modality.DEPTH, Modality.IR}
    assert u.boxes[Modality.RGB] == (40, 30, 50, 60) == u.boxes[Modality.DEPTH]     # depth registered to rgb
    # IR: same centre of projection, fx 140 vs 150: the box shrinks about the principal point
    x, y, w, h = u.boxes[Modality.IR]
    assert abs(w - 50 * 140 / 150) <= 2 and abs(h - 60 * 140 / 151) <= 2
    assert abs(x - (81 + (40 - 79) * 140 / 150)) <= 1.5
    assert u.view["face_distance_m"] == 0.5 and u.view["boxes"]["ir"] == list(u.boxes[Modality.IR])   # live view
    assert u.view["streams"]["rgb"]["drops"] == 0
    assert set(u.images) == {Modality.RGB, Modality.DEPTH, Modality.IR} and u.images[Modality.RGB].shape[:2] == (90, 74)
    assert prod.reset_lockout({}) == {"was_locked": True} and not built[-1].policy.locked
    assert prod.status()["lockout"] == {"locked": False, "spoof_attempts": 2}
    assert face_boxes(fs, None, rig) == {}
    # without restarts the source error ends the producer, and the thread marks the hub unhealthy
    built.clear()
    hub = DecisionHub()
    th = ProducerThread(hub, PipelineProducer(factory, restart_s=None)).start()
    th.join(5)
    assert hub.closed and "SourceError" in hub.error and hub.count == 3


def test_start_up_and_connection_checks_fail_closed(tmp_path, tiny_model):
    """security.py on its own: exposure, model file, manifest swap, slot counting."""
    import dataclasses

    from edgepad.errors import IntegrityError
    from edgepad.runtime.service.security import (ConnectionLimit, Slots, check_exposure, check_loaded_manifest,
                                                  verify_model_at_start)
    with pytest.raises(ConfigError, match="token is required"):
        check_exposure(ServiceConfig(host="0.0.0.0"))
    check_exposure(ServiceConfig(host="0.0.0.0", token=TOKEN))
    check_exposure(ServiceConfig(host="0.0.0.0", unix_socket=str(tmp_path / "s.sock")))
    with pytest.raises(ConfigError, match="not found"):
        verify_model_at_start(tmp_path / "missing.onnx")
    manifest = verify_model_at_start(tiny_model)
    check_loaded_manifest(manifest, manifest, tiny_model)
    with pytest.raises(IntegrityError, match="changed after it was verified"):
        check_loaded_manifest(dataclasses.replace(manifest, threshold=0.99), manifest, tiny_model)
    slots = Slots(2)
    assert slots.acquire() and slots.acquire() and not slots.acquire()
    assert (slots.in_use, slots.rejected) == (2, 1)
    slots.release()
    assert slots.acquire() and slots.in_use == 2

    class Sock:
        sent = b""

        def settimeout(self, t):
            pass

        def sendall(self, data):
            Sock.sent += data
        def shutdown(self, how):
            self.down = True
    limit = ConnectionLimit(1)
    first = Sock()
    assert limit.admit(first) and Sock.sent == b""
    limit.serving(first)                                  # headers complete: not evictable
    assert not limit.admit(Sock()) and Sock.sent.startswith(b"HTTP/1.1 503 ") and limit.rejected == 1
    limit.waiting(first)                                  # waiting for its next request: evictable
    second = Sock()
    assert limit.admit(second) and getattr(first, "down", False) and limit.in_use == 1
    limit.release(first)                                  # its thread ends later: no double count
    assert limit.in_use == 1
