"""The service application: :class:`LivenessService` (the endpoints of docs/SERVICE.md) and :func:`run_service`,
the typed entry point of ``edgepad serve`` (:class:`ServeOptions` in, the service running until ``stop``).

The checks that admit or refuse a start, a connection or a request are in ``security.py``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgepad import __version__
from edgepad.errors import ConfigError, EdgePadError
from edgepad.runtime.audit import AuditLog, AuditWriter
from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
from edgepad.runtime.service.config import ServiceConfig
from edgepad.runtime.service.hub import DecisionHub, PipelineProducer, ProducerThread, Published, PublishedEvent
from edgepad.runtime.service.http import (CONTENT_TYPES, PREVIEW_RE, STATIC_RE, HttpError, Handler, TcpServer,
                                          UnixServer)
from edgepad.runtime.service.preview import REASON_HINTS, encode_image, render_published
from edgepad.runtime.service.security import (PAGE_HEADERS, ConnectionLimit, RequestGuard, Slots, SocketLock,
                                              check_exposure, check_loaded_manifest, verify_model_at_start)
from edgepad.types import Modality, Verdict

log = logging.getLogger(__name__)

#: the live-view page and its scripts (package data ``edgepad/runtime/static``)
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
API_VERSION = 1
#: presentation events shown in ``/v1/status`` (``events.recent``)
RECENT_EVENTS = 10


class LivenessService:
    """The HTTP/JSON service (see ``docs/SERVICE.md`` for the API).

    Args:
        hub: source of decisions and previews.
        config: :class:`ServiceConfig`.
        info: static facts shown in ``/v1/status`` (model name, sha256, threshold, source URI …).
        on_lockout_reset: called with the request's JSON body (a dict) by ``POST /v1/lockout/reset``; returns a
            JSON-ready dict or None. Without it the endpoint answers 501.
        status_extra: called for ``/v1/status`` to add live fields (e.g. audit-writer counters).
        audit_unavailable: called by ``/v1/health``: why the audit log cannot take decisions now, or None
            (e.g. :meth:`edgepad.runtime.audit.AuditWriter.unavailable`).
        clock_ns: monotonic clock (ns), shared with the hub in tests.

    Example:
        >>> with LivenessService(hub, ServiceConfig(port=0)) as svc:       # doctest: +SKIP
        ...     print(svc.url)
    """

    def __init__(self, hub: DecisionHub, config: ServiceConfig | None = None, *,
                 info: Mapping[str, Any] | None = None,
                 on_lockout_reset: Callable[[dict], Mapping[str, Any] | None] | None = None,
                 status_extra: Callable[[], Mapping[str, Any]] | None = None,
                 audit_unavailable: Callable[[], str | None] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.hub = hub
        self.config = config or ServiceConfig()
        check_exposure(self.config)
        self.info = dict(info or {})
        self._on_lockout_reset = on_lockout_reset
        self._status_extra = status_extra
        self._audit_unavailable = audit_unavailable
        self._clock_ns = clock_ns
        self._started_ns = clock_ns()
        self._server: TcpServer | UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._preview_cache: dict[tuple, bytes] = {}
        self._socket_lock: SocketLock | None = None
        self.guard = RequestGuard(self.config)
        self.connections = ConnectionLimit(self.config.max_connections, self.config.max_connections_per_client,
                                           self.config.header_timeout_s)
        self.streams = Slots(self.config.max_sse_clients)

    # ---------------------------------------------------------------- lifecycle
    def bind(self) -> "LivenessService":
        """Claim the address without serving yet: the Unix socket's lock (:class:`SocketLock`; a second service
        on the same path is refused and its socket left alone) and the bind. Connections wait in the backlog
        until :meth:`start`. Idempotent.

        Raises:
            ConfigError: address in use, another service on the Unix socket, or a non-socket file there.
        """
        if self._server is not None:
            return self
        cfg = self.config
        if cfg.unix_socket:
            self._socket_lock = SocketLock(cfg.unix_socket)
        try:
            if cfg.unix_socket:
                p = Path(cfg.unix_socket)
                if p.exists() or p.is_symlink():
                    if not stat.S_ISSOCK(p.lstat().st_mode):
                        raise ConfigError(f"{p} exists and is not a socket; choose another --unix-socket path",
                                          key="unix_socket")
                    p.unlink()       # a stale socket from a previous run
                self._server = UnixServer(str(p), self)
            else:
                self._server = TcpServer((cfg.host, cfg.port), self)
        except (OSError, ConfigError) as exc:
            self._release_lock()
            if isinstance(exc, ConfigError):
                raise
            where = cfg.unix_socket or f"{cfg.host}:{cfg.port}"
            raise ConfigError(f"cannot bind {where}: {exc}", key="port") from exc
        return self

    def _release_lock(self) -> None:
        lock, self._socket_lock = self._socket_lock, None
        if lock is not None:
            lock.release()

    def start(self) -> "LivenessService":
        """Bind (unless :meth:`bind` was called) and serve in a background thread."""
        self.bind()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgepad-http", daemon=True)
        self._thread.start()
        log.info("edgepad service listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, end SSE streams, close the socket."""
        self._stopping.set()
        srv, self._server = self._server, None
        if srv is not None:
            if self._thread is not None:
                srv.shutdown()
            srv.server_close()
            if self.config.unix_socket and self._socket_lock is not None:
                try:
                    os.unlink(self.config.unix_socket)       # ours: we hold its lock
                except OSError:
                    pass
        self._release_lock()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> "LivenessService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Block until ``stop`` is set (or forever); used by ``edgepad serve``."""
        ev = stop or threading.Event()
        while not ev.wait(0.5):
            pass

    @property
    def address(self) -> Any:
        """``(host, port)`` actually bound, or the Unix socket path."""
        if self._server is None:
            return None
        return self.config.unix_socket if self.config.unix_socket else self._server.server_address[:2]

    @property
    def rejected_connections(self) -> int:
        """Connections refused at the connection limit since start."""
        return self.connections.rejected

    @property
    def url(self) -> str:
        if self.config.unix_socket:
            return f"http+unix://{self.config.unix_socket}"
        addr = self.address or (self.config.host, self.config.port)
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else addr[0]
        return f"http://{host}:{addr[1]}"

    # ---------------------------------------------------------------- routes
    def route(self, h: Handler, method: str, path: str, query: Mapping[str, list[str]]) -> None:
        """Answer an admitted request (the handler has checked the path, method, Host and token)."""
        if path == "/v1/status":
            return h._send_json(200, self.status())
        if path == "/v1/health":
            health = self.health()
            return h._send_json(200 if health["healthy"] else 503, health)
        if path == "/v1/decision/latest":
            latest = self.hub.latest()
            if latest is None:
                raise HttpError(503, "no_decision", "no decision yet; the runtime is starting or has no frames",
                                headers={"Retry-After": "1"})
            return h._send_json(200, self._envelope(latest))
        if path == "/v1/decisions/stream":
            return self._stream(h, query)
        if path == "/v1/events":
            return self._events(h, query)
        if path == "/v1/lockout/reset":
            return self._lockout_reset(h)
        m = PREVIEW_RE.match(path)
        if m:
            return self._preview(h, Modality(m.group(1)), m.group(2), query)
        if path == "/":
            return self._static(h, "index.html")
        m = STATIC_RE.match(path)
        if m:
            return self._static(h, m.group(1))
        raise HttpError(404, "not_found", f"no such endpoint {path!r}")  # pragma: no cover - routes checked above

    def _envelope(self, p: Published) -> dict:
        return {"seq": p.seq, "age_ms": round((self._clock_ns() - p.published_ns) / 1e6, 3),
                "decision": _finite(p.decision.to_dict()), "view": _finite(dict(p.view))}

    def health(self) -> dict:
        """Fail-closed health (docs/SERVICE.md, "Health"): are the decisions usable right now?

        ``status`` is ``ok``, ``degraded`` (HTTP 200: some recent decisions unusable) or ``unhealthy`` (HTTP 503),
        with a ``reason``: ``producer_stopped``, ``audit_unavailable``, ``no_decision``, ``stale`` (no decision
        for ``health_max_age_ms``: frames stopped arriving or the stream is blocked) or ``decisions_unusable``
        (every decision of the last ``health_window_s`` was UNKNOWN for an evidence reason such as ``stale``,
        ``no_frames`` or ``sensor_integrity``; ``unusable_reason`` names the most frequent).
        """
        max_age = float(self.config.health_max_age_ms)
        age = self.hub.age_ms()
        out: dict[str, Any] = {"healthy": False, "status": "unhealthy", "reason": None,
                               "age_ms": None if age is None else round(age, 3), "max_age_ms": max_age}
        audit = self._audit_unavailable() if self._audit_unavailable is not None else None
        if self.hub.closed:
            out["reason"] = "producer_stopped"
            out["error"] = self.hub.error
            return out
        if audit:
            out["reason"], out["audit_error"] = "audit_unavailable", audit
            return out
        if age is None:
            out["reason"] = "no_decision"
            return out
        if age > max_age:
            out["reason"] = "stale"
            return out
        win = self.hub.recent(self.config.health_window_s)
        out["window"] = {"seconds": self.config.health_window_s, **win}
        if win["decisions"] and win["unusable"] == win["decisions"]:
            out["reason"] = "decisions_unusable"
            out["unusable_reason"] = max(win["by_reason"], key=win["by_reason"].get)
            return out
        out["healthy"] = True
        if win["unusable"]:
            out["status"], out["reason"] = "degraded", "some_decisions_unusable"
        else:
            out["status"] = "ok"
        return out

    def status(self) -> dict:
        """Service, model and runtime facts (``GET /v1/status``)."""
        latest = self.hub.latest()
        out = {
            "service": "edgepad", "api_version": API_VERSION, "version": __version__,
            "uptime_s": round((self._clock_ns() - self._started_ns) / 1e9, 3),
            "health": self.health(),
            "decisions": self.hub.count, "fps": round(self.hub.fps(), 2),
            "last": None if latest is None else self._envelope(latest),
            "events": {"count": self.hub.event_count,
                       "recent": [self._event_envelope(e) for e in self.hub.recent_events(RECENT_EVENTS)]},
            "sse_clients": self.streams.in_use, "max_sse_clients": self.config.max_sse_clients,
            "connections": self.connections.in_use, "rejected_connections": self.rejected_connections,
            "evicted_connections": self.connections.evicted, "header_timeouts": self.connections.timed_out,
            "token_required": self.guard.token_required,
            "lockout_reset_supported": self._on_lockout_reset is not None,
            "reason_hints": {r.value: h for r, h in REASON_HINTS.items()},
            **_finite(self.info),
        }
        if self._status_extra is not None:
            out.update(_finite(dict(self._status_extra())))
        return out

    def _lockout_reset(self, h: Handler) -> None:
        body = h.read_json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise HttpError(400, "bad_body", "the body must be a JSON object, e.g. {\"reason\": \"badge 42\"}")
        unknown = sorted(set(body) - {"reason", "operator"})
        if unknown:
            raise HttpError(400, "unknown_field", f"unknown field(s) {unknown}; allowed: reason, operator")
        for k in ("reason", "operator"):
            if k in body and not (isinstance(body[k], str) and len(body[k]) <= 200):
                raise HttpError(400, "bad_field", f"{k} must be a string of at most 200 characters")
        if self._on_lockout_reset is None:
            raise HttpError(501, "not_supported", "this runtime has no lockout to reset")
        try:
            result = self._on_lockout_reset(dict(body)) or {}
        except EdgePadError as exc:
            raise HttpError(409, "conflict", str(exc)) from None
        log.warning("lockout reset by %s (%s)", h.address_string(), body.get("reason", "no reason given"))
        h._send_json(200, {"reset": True, **_finite(dict(result))})

    def _stream(self, h: Handler, query: Mapping[str, list[str]]) -> None:
        """``/v1/decisions/stream``: the latest decision now, then each newer one (a slow reader skips)."""
        def fetch(after: int, timeout_s: float) -> list[tuple[int, str, dict]]:
            latest = self.hub.latest()
            if latest is None or latest.seq <= after:
                latest = self.hub.wait(after, timeout_s) if timeout_s > 0 else None
            return [] if latest is None else [(latest.seq, "decision", self._envelope(latest))]

        def drained(after: int) -> bool:
            latest = self.hub.latest()
            return latest is None or latest.seq <= after
        self._sse(h, query, 0, fetch, drained)

    def _events(self, h: Handler, query: Mapping[str, list[str]]) -> None:
        """``/v1/events``: presentation events from now on (or after the ``Last-Event-ID`` a reconnecting client
        sends), every one in order."""
        last_id = (h.headers.get("Last-Event-ID") or "").strip()
        if last_id and not (last_id.isdigit() and len(last_id) <= 18):
            raise HttpError(400, "bad_last_event_id", "Last-Event-ID must be an event id (a non-negative integer)")
        start = int(last_id) if last_id else self.hub.event_count

        def fetch(after: int, timeout_s: float) -> list[tuple[int, str, dict]]:
            return [(e.seq, e.event.kind, self._event_envelope(e)) for e in self.hub.events_after(after, timeout_s)]
        self._sse(h, query, start, fetch, lambda after: self.hub.event_count <= after)

    def _event_envelope(self, e: PublishedEvent) -> dict:
        return {"seq": e.seq, "age_ms": round((self._clock_ns() - e.published_ns) / 1e6, 3),
                **_finite(e.event.to_dict())}

    def _sse(self, h: Handler, query: Mapping[str, list[str]], start: int,
             fetch: Callable[[int, float], list[tuple[int, str, dict]]], drained: Callable[[int], bool]) -> None:
        """Serve one Server-Sent-Events stream (every stream endpoint goes through here: one slot pool, one
        ``limit`` query, keepalives, the ``end`` event when the producer stops).

        ``fetch(after, timeout_s)`` returns ``(id, event name, payload)`` items newer than ``after`` (waiting up to
        ``timeout_s``; 0 = do not wait); ``drained(after)`` says nothing newer is left.
        """
        limit = _int_param(query, "limit", default=0, lo=0, hi=1_000_000)
        if not self.streams.acquire():
            raise HttpError(503, "too_many_streams", f"at most {self.config.max_sse_clients} streams; "
                            "close one or retry later", headers={"Retry-After": "2"})
        h.close_connection = True
        try:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream; charset=utf-8")
            h.send_header("Cache-Control", "no-store")
            h.send_header("X-Accel-Buffering", "no")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"retry: 1000\n\n")
            h.wfile.flush()
            sent, cursor = 0, start
            items = fetch(cursor, 0.0)
            keepalive = float(self.config.sse_keepalive_s)
            last_write = time.monotonic()
            while not self._stopping.is_set():
                for seq, name, payload in items:
                    cursor = seq
                    data = json.dumps(payload, allow_nan=False, separators=(",", ":"))
                    h.wfile.write(f"id: {seq}\nevent: {name}\ndata: {data}\n\n".encode())
                    sent += 1
                    if limit and sent >= limit:
                        break
                if items:
                    h.wfile.flush()
                    last_write = time.monotonic()
                    if limit and sent >= limit:
                        break
                if self.hub.closed and drained(cursor):
                    end = json.dumps({"error": self.hub.error})
                    h.wfile.write(f"event: end\ndata: {end}\n\n".encode())
                    h.wfile.flush()
                    break
                left = keepalive - (time.monotonic() - last_write)
                items = fetch(cursor, max(0.001, min(0.25, left)))
                if not items and time.monotonic() - last_write >= keepalive:
                    h.wfile.write(b": keepalive\n\n")
                    h.wfile.flush()
                    last_write = time.monotonic()
        finally:
            self.streams.release()

    def _preview(self, h: Handler, m: Modality, fmt: str, query: Mapping[str, list[str]]) -> None:
        box = _int_param(query, "box", default=1, lo=0, hi=1)
        overlay = _int_param(query, "overlay", default=0, lo=0, hi=1)
        latest = self.hub.latest()
        if latest is None or latest.frames.get(m) is None:
            raise HttpError(404, "no_frame", f"no {m} frame yet (the source may not provide {m})",
                            headers={"Retry-After": "1"})
        key = (latest.frames_seq, m, fmt, box, overlay)
        with self._lock:
            body = self._preview_cache.get(key)
        if body is None:
            bgr = render_published(latest, m, box=bool(box), overlay=bool(overlay))
            if bgr is None:
                raise HttpError(404, "no_frame", "no rgb->ir overlay (it needs ir and rgb frames, a rig and a face)",
                                headers={"Retry-After": "1"})
            body = encode_image(bgr, fmt)
            with self._lock:
                if len(self._preview_cache) >= 12:
                    self._preview_cache.clear()
                self._preview_cache[key] = body
        h._send_bytes(200, body, CONTENT_TYPES[fmt], {"X-Edgepad-Seq": str(latest.frames_seq)})

    def _static(self, h: Handler, name: str) -> None:
        p = STATIC_DIR / name
        try:
            body = p.read_bytes()
        except OSError:
            raise HttpError(404, "not_found", f"no static file {name!r}") from None
        h._send_bytes(200, body, CONTENT_TYPES[name.rsplit(".", 1)[1]], PAGE_HEADERS)


def _int_param(query: Mapping[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    if name not in query:
        return default
    raw = query[name][-1]
    if not (raw.isdigit() and lo <= int(raw) <= hi):
        raise HttpError(400, "bad_query", f"query parameter {name} must be an integer in {lo}..{hi}, "
                                          f"got {raw[:32]!r}")
    return int(raw)


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, float) or isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (Modality, Verdict)):
        return obj.value
    return obj



# ---------------------------------------------------------------------------------------------- edgepad serve
@dataclass(frozen=True)
class AuditOptions:
    """The SQLite audit log of every decision (docs/SERVICE.md).

    Attributes:
        path: database file (WAL mode).
        retention_days: rows older than this are deleted (0 = keep).
        max_rows: most rows kept, oldest deleted first (0 = unbounded).
        store_images: also store face crops (JPEG); off by default for privacy.
        synchronous: SQLite ``synchronous`` mode: ``"FULL"`` survives power loss, ``"NORMAL"`` process kills.
    """

    path: Path
    retention_days: float = 30.0
    max_rows: int = 1_000_000
    store_images: bool = False
    synchronous: str = "FULL"


@dataclass(frozen=True)
class ServeOptions:
    """Everything :func:`run_service` needs (``edgepad serve`` builds it from its arguments).

    Attributes:
        source: source URI, or one URI per camera (``realsense://SERIAL``, ``replay://DIR``, ``synthetic://…``).
        model: model artifact (``.onnx``, ``.engine``, ``.pt``) with its sidecar manifest.
        rig: rig file from ``edgepad calibrate`` (None = the source's own).
        fps: stream rate for the sync tolerance (frames/s; None = the source's).
        locator: face locator spec (``learned`` default, ``haar``, ``truth``, ``fixed:x,y,w,h``).
        threads: ONNX Runtime intra-op threads (None = its default).
        pipeline: pipeline and decision-policy settings.
        service: HTTP settings (address, token, limits).
        preview_fps: preview frames attached per second (0 = no previews).
        restart_s: rebuild the pipeline this many seconds after a source failure (None = stop instead).
        audit: the audit log (None = no log).
        public_key: vendor Ed25519 public key; the model's manifest must be signed by it (None = no check).
        startup_timeout_s: the source must yield its first frame set within this many seconds of opening, or
            the service does not start.
    """

    source: str | list[str]
    model: Path
    rig: str | Path | None = None
    fps: float | None = None
    locator: str = "learned"
    threads: int | None = None
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    preview_fps: float = 10.0
    restart_s: float | None = 2.0
    audit: AuditOptions | None = None
    public_key: str | Path | None = None
    startup_timeout_s: float = 10.0


def run_service(options: ServeOptions, *, stop: threading.Event | None = None,
                on_ready: Callable[[LivenessService], None] | None = None) -> int:
    """Run the service until ``stop`` is set: pipeline → hub → HTTP API (and the audit log).

    Start-up fails fast and closed, before anything listens, in this order: the network exposure (no token off
    loopback: refuse, ``security.py``), the address (bound now; the Unix socket path locked against a second
    service), the model's integrity (sha256, and the vendor signature with ``public_key``), the audit log
    (opened and the ``service_start`` event committed: writable), then the pipeline is built and opened in the
    foreground: the backend loads the verified bytes, checks the input names and shapes against the manifest
    and runs one warm-up inference, and the source must yield its first frame set within
    ``startup_timeout_s``. Only then does the service accept connections (and ``on_ready`` run).

    After start, a producer that fails (a source that cannot be rebuilt, a crash) ends the service with that
    error; a recording that ends leaves it answering, unhealthy ``producer_stopped``.

    Args:
        options: what to serve and how.
        stop: event that ends the service (None = run until interrupted).
        on_ready: called with the running service (the command prints its URL; tests connect to it).

    Returns:
        the number of decisions published.

    Raises:
        ConfigError: exposed without a token, missing model, bad rig, address in use, another service on the
            Unix socket.
        IntegrityError / ManifestError: the model's hash, signature, manifest, input names or shapes do not
            check out.
        EngineBuildError: the model does not load.
        SourceError: the source does not open or yields no frame set within ``startup_timeout_s``, or fails
            for good after start.
        EdgePadError: the audit log cannot be opened or written.
    """
    cfg = options.service
    check_exposure(cfg)
    hub = DecisionHub()
    service = LivenessService(hub, cfg)
    service.bind()
    producer: PipelineProducer | None = None
    writer: AuditWriter | None = None
    thread: ProducerThread | None = None
    try:
        model = Path(options.model)
        manifest = verify_model_at_start(model, options.public_key)
        uri = options.source
        audit = options.audit
        if audit is not None:
            writer = AuditWriter(lambda: AuditLog(audit.path, model_sha256=manifest.artifact_sha256,
                                                  retention_days=audit.retention_days, max_rows=audit.max_rows,
                                                  store_images=audit.store_images,
                                                  synchronous=audit.synchronous))
            writer.start(first_event=("service_start", {
                "model": str(model), "model_sha256": manifest.artifact_sha256, "source": str(uri),
                "signed": options.public_key is not None}))

        def build() -> Any:
            pipe = open_pipeline(uri, model, rig=options.rig, locator=options.locator, config=options.pipeline,
                                 fps=options.fps, threads=options.threads)
            check_loaded_manifest(pipe.manifest, manifest, model)     # the verified manifest is the one in use
            return pipe

        producer = PipelineProducer(build, preview_fps=options.preview_fps,
                                    audit_images=bool(audit is not None and audit.store_images),
                                    restart_s=options.restart_s)
        producer.prime(options.startup_timeout_s, str(uri))

        def on_reset(body: dict) -> Mapping[str, Any]:
            result = producer.reset_lockout(body)
            if writer is not None:
                writer.submit_event("lockout_reset", {**body, **result})
            return result

        def status_extra() -> Mapping[str, Any]:
            out = dict(producer.status())
            if writer is not None:
                out["audit"] = {"path": str(audit.path), **writer.stats()}
            return out

        operating_point = options.pipeline.policy.operating_point
        service.info = {"model": {"name": manifest.model, "path": str(model), "sha256": manifest.artifact_sha256,
                                  "format": manifest.format, "precision": manifest.precision,
                                  "modalities": [m.value for m in manifest.modalities],
                                  "threshold": manifest.threshold,
                                  "threshold_criterion": manifest.threshold_criterion,
                                  "operating_point": operating_point or manifest.threshold_criterion,
                                  "signature_checked": options.public_key is not None},
                        "source": str(uri)}
        service._on_lockout_reset = on_reset
        service._status_extra = status_extra
        service._audit_unavailable = writer.unavailable if writer is not None else None
        thread = ProducerThread(hub, producer, audit=writer, model_sha256=manifest.artifact_sha256)
        service.start()
        thread.start()
        if on_ready is not None:
            on_ready(service)
        ev = stop or threading.Event()
        while not ev.wait(0.2):
            if not thread.running and thread.exception is not None:
                raise thread.exception              # the producer failed for good: exit, do not sit unhealthy
    finally:
        if producer is not None:
            producer.close()
        if thread is not None:
            thread.stop()
        service.stop()
        if writer is not None:
            writer.submit_event("service_stop", {"decisions": hub.count})
            writer.close()
    return hub.count
