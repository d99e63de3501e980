"""``edgepad serve``: a local HTTP/JSON service over the liveness runtime, plus the installer's live view.

Standard library only (``http.server``); ``cv2`` is imported lazily to encode preview images.

Pieces:
    * :class:`DecisionHub`: thread-safe "latest value" store. A producer publishes decisions (and optionally
      the frames they were made on); HTTP handlers read the latest one or wait for the next one.
    * :class:`ProducerThread`: drives any iterable of decisions (the :class:`LivenessPipeline`, a test fake)
      into the hub and, optionally, into the audit writer.
    * :class:`LivenessService`: the HTTP server (TCP or Unix socket) with the API in ``docs/SERVICE.md``.

Security model: bound to loopback or a Unix socket by default. A non-loopback TCP address requires a bearer
token (the service refuses to start without one); when a token is configured it is checked on every request
with a constant-time compare (``Authorization: Bearer`` or the ``edgepad_token`` cookie that ``/?token=`` sets
for the browser page). Without a token, TCP requests must name a loopback ``Host`` (blocks DNS rebinding); POST
requires ``Content-Type: application/json`` (a cross-site form cannot send it without a CORS preflight, which
this service never grants).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import re
import socket
import socketserver
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgepad.errors import ConfigError, EdgePadError
from edgepad.types import Decision, Modality, Verdict

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = 1
_COOKIE = "edgepad_token"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


# ---------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the HTTP service.

    Attributes:
        host, port: TCP address (ignored with ``unix_socket``); port 0 picks a free port.
        unix_socket: path of a Unix socket to bind instead of TCP (mode 0660).
        token: bearer token; required when ``host`` is not loopback. At least 16 characters.
        health_max_age_ms: ``/v1/health`` is unhealthy when the newest decision is older than this.
        max_sse_clients: concurrent ``/v1/decisions/stream`` clients; more get 503.
        max_connections: concurrent connections (each holds a thread); more get 503 immediately.
        max_body_bytes: larger request bodies get 413.
        sse_keepalive_s: comment line sent on an idle stream so proxies and clients see it alive.
        request_timeout_s: socket timeout per connection (slow or stalled clients are dropped).
    """

    host: str = "127.0.0.1"
    port: int = 8470
    unix_socket: str | None = None
    token: str | None = None
    health_max_age_ms: float = 1000.0
    max_sse_clients: int = 8
    max_connections: int = 32
    max_body_bytes: int = 16 * 1024
    sse_keepalive_s: float = 15.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the service token must be at least 16 characters (e.g. `openssl rand -hex 24`)",
                              key="token")
        for name in ("health_max_age_ms", "sse_keepalive_s", "request_timeout_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v!r}", key=name)
        for name in ("max_sse_clients", "max_connections", "max_body_bytes"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}", key=name)
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ConfigError(f"port must be in 0..65535, got {self.port!r}", key="port")

    @property
    def exposed(self) -> bool:
        """True when bound to a TCP address other than loopback (a token is then mandatory)."""
        return self.unix_socket is None and not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) is a loopback address; unknown names count as exposed."""
    h = host.strip().strip("[]").lower()
    if h in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def read_token_file(path: str | os.PathLike) -> str:
    """Read a bearer token from a file (surrounding whitespace stripped); warns when others can read it."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read token file {p}: {exc}", key="token_file") from exc
    if not token:
        raise ConfigError(f"token file {p} is empty; write a random token into it (`openssl rand -hex 24`)",
                          key="token_file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is readable by group/others; chmod 600 it", p)
    return token


# ---------------------------------------------------------------------------------------------- decision hub
@dataclass(frozen=True)
class Update:
    """What a producer may yield instead of a bare :class:`Decision`.

    Attributes:
        decision: the decision.
        frames: latest images by modality (rgb ``uint8 H×W×3`` RGB order, depth ``uint16 H×W``, ir
            ``uint8|uint16 H×W``); empty = keep showing the previous frames.
        boxes: face box ``(x, y, w, h)`` per modality in that modality's pixels; when absent, the decision's
            ``face_box`` (rgb pixels) is drawn on rgb, and on depth when the depth frame has the rgb frame's size
            (registered to rgb).
        images: face crops for the audit log (stored only when images are enabled).
    """

    decision: Decision
    frames: Mapping[Modality, np.ndarray] = field(default_factory=dict)
    boxes: Mapping[Modality, tuple[int, int, int, int]] = field(default_factory=dict)
    images: Mapping[Modality, Any] | None = None


@dataclass(frozen=True)
class Published:
    """One published decision, as the hub keeps it."""

    seq: int
    decision: Decision
    published_ns: int                        # host monotonic
    frames_seq: int                          # seq of the update that carried ``frames``
    frames: Mapping[Modality, np.ndarray]
    boxes: Mapping[Modality, tuple[int, int, int, int]]
    frames_verdict: Verdict                  # verdict of the update that carried the frames (box colour)


class DecisionHub:
    """Latest-decision store with blocking waits; safe for one producer and many readers.

    Readers that fall behind skip to the newest decision (sequence numbers show the gap); nothing queues up.

    Args:
        clock_ns: monotonic clock in ns (injectable for tests).
        fps_window_s: window for :meth:`fps`.
    """

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns, fps_window_s: float = 2.0) -> None:
        self._clock_ns = clock_ns
        self._cond = threading.Condition()
        self._latest: Published | None = None
        self._times: deque[int] = deque(maxlen=256)
        self._window_ns = int(fps_window_s * 1e9)
        self._closed = False
        self.error: str | None = None
        self.count = 0

    def publish(self, item: Decision | Update) -> int:
        """Publish a decision (or an :class:`Update`); returns its sequence number (1, 2, …)."""
        upd = item if isinstance(item, Update) else Update(item)
        if not isinstance(upd.decision, Decision):
            raise EdgePadError(f"a producer yielded {type(upd.decision).__name__}, expected Decision or Update")
        now = self._clock_ns()
        with self._cond:
            seq = self.count + 1
            prev = self._latest
            if upd.frames or prev is None:
                frames = {Modality.parse(k): v for k, v in upd.frames.items()}
                boxes = {Modality.parse(k): tuple(int(x) for x in v) for k, v in upd.boxes.items()}
                fseq, fverdict = seq, upd.decision.verdict
                if upd.decision.face_box and Modality.RGB not in boxes:
                    boxes[Modality.RGB] = tuple(int(x) for x in upd.decision.face_box)
                    rgb, depth = frames.get(Modality.RGB), frames.get(Modality.DEPTH)
                    if rgb is not None and depth is not None and depth.shape[:2] == rgb.shape[:2] \
                            and Modality.DEPTH not in boxes:
                        boxes[Modality.DEPTH] = boxes[Modality.RGB]
            else:
                frames, boxes, fseq, fverdict = prev.frames, prev.boxes, prev.frames_seq, prev.frames_verdict
            self._latest = Published(seq, upd.decision, now, fseq, frames, boxes, fverdict)
            self.count = seq
            self._times.append(now)
            self._cond.notify_all()
        return seq

    def latest(self) -> Published | None:
        with self._cond:
            return self._latest

    def wait(self, after_seq: int, timeout_s: float) -> Published | None:
        """Block until a decision newer than ``after_seq`` exists (returned) or timeout / close (None)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed and (self._latest is None or self._latest.seq <= after_seq):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._latest is not None and self._latest.seq > after_seq:
                return self._latest
            return None

    def close(self, error: str | None = None) -> None:
        """Mark the producer finished (``error`` when it failed); wakes every waiter."""
        with self._cond:
            self._closed = True
            self.error = error
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def age_ms(self) -> float | None:
        """Milliseconds since the newest decision was published; None before the first one."""
        latest = self.latest()
        return None if latest is None else (self._clock_ns() - latest.published_ns) / 1e6

    def fps(self) -> float:
        """Decisions per second over the last ``fps_window_s`` (0 when idle)."""
        now = self._clock_ns()
        with self._cond:
            ts = [t for t in self._times if now - t <= self._window_ns]
        if len(ts) < 2 or ts[-1] == ts[0]:
            return 0.0
        return (len(ts) - 1) * 1e9 / (ts[-1] - ts[0])


class ProducerThread:
    """Runs a decision producer (any iterable of :class:`Decision` / :class:`Update`) into a hub.

    Args:
        hub: where decisions go.
        producer: e.g. a :class:`~edgepad.runtime.pipeline.LivenessPipeline` adapter, or a test generator.
        audit: an :class:`~edgepad.runtime.audit.AuditWriter` (optional); every decision is submitted to it.
        model_sha256: recorded with audit rows.
        on_exit: called (in the thread) with the error text or None when the producer ends.
    """

    def __init__(self, hub: DecisionHub, producer: Iterable[Decision | Update], *, audit: Any = None,
                 model_sha256: str | None = None, on_exit: Callable[[str | None], None] | None = None) -> None:
        self.hub = hub
        self._producer = producer
        self._audit = audit
        self._sha = model_sha256
        self._on_exit = on_exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgepad-producer", daemon=True)

    def start(self) -> "ProducerThread":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the producer to stop (checked between decisions) and wait for it."""
        self._stop.set()
        close = getattr(self._producer, "close", None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if callable(close) and not self._thread.is_alive():
            try:
                close()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.debug("producer close failed", exc_info=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        error: str | None = None
        try:
            it: Iterator = iter(self._producer)
            for item in it:
                self.hub.publish(item)
                if self._audit is not None:
                    upd = item if isinstance(item, Update) else Update(item)
                    self._audit.submit(upd.decision, upd.images, self._sha)
                if self._stop.is_set():
                    break
        except EdgePadError as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("decision producer stopped: %s", error)
        except Exception as exc:  # a bug in the producer must not leave the service healthy
            error = f"{type(exc).__name__}: {exc}"
            log.exception("decision producer crashed")
        finally:
            self.hub.close(error)
            if self._on_exit is not None:
                self._on_exit(error)


class PipelineProducer:
    """Adapts :class:`~edgepad.runtime.pipeline.LivenessPipeline` into :class:`Update` items for the hub.

    Frames for the previews are attached at most ``preview_fps`` times per second (they are references to the
    read-only frame arrays, not copies). On a ``SourceError`` (camera unplugged) the pipeline is rebuilt with
    ``factory`` after ``restart_s`` seconds (None = stop); meanwhile no decisions arrive, so ``/v1/health`` turns
    unhealthy (fail closed). ``EndOfStream`` (a finished recording) ends the producer.

    Args:
        factory: builds an unopened pipeline (called again after each source failure).
        preview_fps: preview frame rate limit (0 = no previews).
        audit_images: attach face crops (rgb, registered depth, ir) for an audit log that stores images.
        restart_s: delay before rebuilding the pipeline after a source failure; None = give up.
    """

    def __init__(self, factory: Callable[[], Any], *, preview_fps: float = 10.0, audit_images: bool = False,
                 restart_s: float | None = 2.0) -> None:
        self._factory = factory
        self._preview_period_ns = int(1e9 / preview_fps) if preview_fps > 0 else None
        self._audit_images = audit_images
        self._restart_s = restart_s
        self._stop = threading.Event()
        self.pipeline: Any = None
        self.restarts = 0

    def close(self) -> None:
        self._stop.set()

    def reset_lockout(self, body: Mapping[str, Any]) -> dict:
        """``POST /v1/lockout/reset`` handler."""
        pipe = self.pipeline
        if pipe is None:
            raise EdgePadError("the runtime is not running; nothing to reset")
        was = bool(getattr(pipe.policy, "locked", False))
        pipe.reset_lockout()
        return {"was_locked": was}

    def status(self) -> dict:
        """Live fields for ``/v1/status``: lockout state, pipeline counters, restarts."""
        pipe = self.pipeline
        if pipe is None:
            return {"runtime": {"running": False, "restarts": self.restarts}}
        pol = pipe.policy
        return {"runtime": {"running": True, "restarts": self.restarts,
                            "stats": pipe.stats.to_dict() if hasattr(pipe.stats, "to_dict") else None},
                "lockout": {"locked": bool(getattr(pol, "locked", False)),
                            "spoof_attempts": int(getattr(pol, "spoof_attempts", 0))}}

    def __iter__(self) -> Iterator[Update]:
        from edgepad.errors import EndOfStream, SourceError
        last_preview = 0
        while not self._stop.is_set():
            pipe = self._factory()
            self.pipeline = pipe
            try:
                with pipe:
                    for d in pipe.decisions():
                        fs = getattr(pipe, "last_frameset", None)
                        frames: dict = {}
                        boxes: dict = {}
                        now = time.monotonic_ns()
                        if fs is not None and self._preview_period_ns is not None and \
                                now - last_preview >= self._preview_period_ns:
                            last_preview = now
                            frames = {m: f.data for m, f in fs.frames.items()}
                            boxes = face_boxes(fs, d.face_box, getattr(pipe, "rig", None))
                        images = None
                        if self._audit_images and fs is not None and d.face_box:
                            images = face_crops_for_audit(fs, face_boxes(fs, d.face_box, getattr(pipe, "rig", None)))
                        yield Update(d, frames, boxes, images)
                        if self._stop.is_set():
                            return
                return                                    # the pipeline ended (EndOfStream inside decisions())
            except EndOfStream:
                return
            except SourceError as exc:
                if self._restart_s is None:
                    raise
                self.restarts += 1
                log.error("source failed (%s); rebuilding the pipeline in %.1f s", exc, self._restart_s)
                if self._stop.wait(self._restart_s):
                    return


def face_boxes(fs: Any, box_rgb: tuple[int, int, int, int] | None, rig: Any) -> dict:
    """The rgb face box in every frame of a frame set: as is on rgb and on depth registered to rgb; lifted with the
    median face depth and projected through the rig into an unregistered depth/IR camera. Missing = not drawn."""
    if not box_rgb:
        return {}
    box = tuple(int(v) for v in box_rgb)
    out: dict[Modality, tuple[int, int, int, int]] = {Modality.RGB: box}
    depth = fs.frames.get(Modality.DEPTH)
    depth_m = None
    if depth is not None and getattr(depth, "registered_to", None) is Modality.RGB:
        out[Modality.DEPTH] = box
        x, y, w, h = box
        roi = np.asarray(depth.data)[max(0, y + h // 4):max(0, y + 3 * h // 4), max(0, x + w // 4):max(0, x + 3 * w // 4)]
        valid = roi[roi > 0]
        if valid.size:
            depth_m = float(np.median(valid)) * float(depth.depth_scale_m or 0.001)
    rgb = fs.frames.get(Modality.RGB)
    if rig is None or rgb is None or depth_m is None:
        return out
    for m in (Modality.IR, Modality.DEPTH):
        if m in out or m not in fs.frames:
            continue
        try:
            from edgepad.geometry import deproject, project
            x, y, w, h = box
            corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64)
            pts = rig.extrinsics(Modality.RGB, m).apply(deproject(corners, depth_m, rgb.intrinsics))
            px = project(pts, fs.frames[m].intrinsics)
            if np.all(np.isfinite(px)):
                x0, y0 = np.floor(px.min(axis=0)).astype(int)
                x1, y1 = np.ceil(px.max(axis=0)).astype(int)
                out[m] = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        except Exception:  # noqa: BLE001 - a preview box is cosmetic; never fail a decision for it
            log.debug("could not project the face box into %s", m, exc_info=True)
    return out


def face_crops_for_audit(fs: Any, boxes: Mapping[Modality, tuple[int, int, int, int]]) -> dict:
    """Face regions (box plus 25 % margin) of each frame, for an audit log that stores images."""
    out = {}
    for m, (x, y, w, h) in boxes.items():
        f = fs.frames.get(m)
        if f is None:
            continue
        a = np.asarray(f.data)
        mx, my = w // 4, h // 4
        crop = a[max(0, y - my):max(0, y + h + my), max(0, x - mx):max(0, x + w + mx)]
        if crop.size:
            out[m] = crop
    return out


# ---------------------------------------------------------------------------------------------- previews
_BOX_BGR = {Verdict.LIVE: (80, 200, 40), Verdict.SPOOF: (60, 60, 230), Verdict.UNKNOWN: (0, 190, 255)}


def render_preview(modality: Modality, image: np.ndarray, box: tuple[int, int, int, int] | None,
                   verdict: Verdict = Verdict.UNKNOWN) -> np.ndarray:
    """8-bit BGR image for display: rgb as is, ir scaled to 8 bit, depth colour-mapped (0 = invalid = black).

    Args:
        modality: which stream ``image`` is.
        image: rgb ``uint8 H×W×3`` (RGB order), ir ``uint8|uint16 H×W``, depth ``uint16 H×W``.
        box: face box ``(x, y, w, h)`` in this image's pixels, drawn in the verdict's colour.

    Returns:
        ``uint8 H×W×3`` BGR (OpenCV order).
    """
    from edgepad._optional import require
    cv2 = require("cv2")
    a = np.asarray(image)
    if modality is Modality.RGB:
        out = cv2.cvtColor(np.ascontiguousarray(a, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    elif modality is Modality.DEPTH:
        valid = a > 0
        out = np.zeros(a.shape + (3,), np.uint8)
        if valid.any():
            lo, hi = np.percentile(a[valid], (2, 98))
            span = max(float(hi - lo), 1.0)
            g = np.clip((a.astype(np.float32) - float(lo)) * (255.0 / span), 0, 255).astype(np.uint8)
            colour = cv2.applyColorMap(255 - g, cv2.COLORMAP_TURBO)   # near = warm
            out[valid] = colour[valid]
    else:
        if a.dtype != np.uint8:
            hi = float(np.percentile(a, 99.5)) if a.size else 0.0
            a = np.clip(a.astype(np.float32) * (255.0 / max(hi, 1.0)), 0, 255).astype(np.uint8)
        out = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_GRAY2BGR)
    if box is not None:
        x, y, w, h = (int(v) for v in box)
        t = max(2, round(max(out.shape[:2]) / 240))
        p0, p1 = (x, y), (x + w - 1, y + h - 1)
        cv2.rectangle(out, p0, p1, (0, 0, 0), t + 2)       # dark halo: visible on any colour map
        cv2.rectangle(out, p0, p1, _BOX_BGR.get(verdict, _BOX_BGR[Verdict.UNKNOWN]), t)
    return out


def encode_image(bgr: np.ndarray, fmt: str, jpeg_quality: int = 80) -> bytes:
    """Encode a BGR image as ``"jpg"`` or ``"png"`` bytes."""
    from edgepad._optional import require
    cv2 = require("cv2")
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if fmt == "jpg" else []
    ok, buf = cv2.imencode("." + fmt, bgr, params)
    if not ok:
        raise EdgePadError(f"could not encode a preview as {fmt}")
    return buf.tobytes()


# ---------------------------------------------------------------------------------------------- HTTP layer
class HttpError(Exception):
    """An error response: status, machine code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


_PREVIEW_RE = re.compile(r"^/v1/preview/(rgb|ir|depth)\.(jpg|png)$")
_STATIC_RE = re.compile(r"^/static/([a-z0-9_-]{1,64}\.(?:js|css|html|svg|png))$")
_CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                  "html": "text/html; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
                  "jpg": "image/jpeg"}
#: path -> allowed methods (exact paths; previews and static files are matched by pattern)
_ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET",), "/v1/status": ("GET",), "/v1/health": ("GET",), "/v1/decision/latest": ("GET",),
    "/v1/decisions/stream": ("GET",), "/v1/lockout/reset": ("POST",),
}


def _allowed_methods(path: str) -> tuple[str, ...] | None:
    if path in _ROUTES:
        return _ROUTES[path]
    if _PREVIEW_RE.match(path) or _STATIC_RE.match(path):
        return ("GET",)
    return None


class _Handler(BaseHTTPRequestHandler):
    """One connection. ``self.server.service`` is the :class:`LivenessService`."""

    protocol_version = "HTTP/1.1"
    server_version = "edgepad"
    sys_version = ""
    error_content_type = "application/json"
    service: "LivenessService"

    def setup(self) -> None:
        self.service = self.server.service  # type: ignore[attr-defined]
        self.timeout = self.service.config.request_timeout_s
        super().setup()

    # ---------------------------------------------------------------- plumbing
    def version_string(self) -> str:
        return self.server_version

    def address_string(self) -> str:
        ca = self.client_address
        return str(ca[0]) if isinstance(ca, tuple) and ca else "unix"

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's stderr lines to logging
        log.debug("%s %s", self.address_string(), fmt % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, 414, 431, 501) as JSON too."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"        # always send a status line and headers (no HTTP/0.9)
        self._send_json(code, {"error": re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_"),
                               "message": message or explain or phrase, "status": code},
                        headers={"Connection": "close"})

    def _send_bytes(self, status: int, body: bytes, content_type: str,
                    headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = (json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n").encode()
        self._send_bytes(status, body, "application/json", headers)

    # ---------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _method_not_allowed(self) -> None:
        self._dispatch(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_TRACE = do_CONNECT = _method_not_allowed

    def _dispatch(self, method: str) -> None:
        # an unread body must never be parsed as the next request: errors before reading it close the connection
        self._body_pending = bool(self.headers.get("Transfer-Encoding")) or \
            self.headers.get("Content-Length", "0").strip() not in ("", "0")
        try:
            split = urlsplit(self.path)
            if not self.path.startswith("/") or split.fragment:
                raise HttpError(400, "bad_path", "the request target must be an absolute path like /v1/status")
            path = split.path
            try:
                query = parse_qs(split.query, keep_blank_values=True, strict_parsing=False, max_num_fields=16)
            except ValueError as exc:
                raise HttpError(400, "bad_query", f"malformed query string: {exc}") from None
            allowed = _allowed_methods(path)
            if allowed is None:
                raise HttpError(404, "not_found", f"no such endpoint {path!r}; see GET /v1/status and "
                                                  "docs/SERVICE.md")
            self.service._check_host(self)
            if method not in allowed:
                # body (if any) is not read: close the connection rather than parse it as a next request
                self.close_connection = True
                raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}; use "
                                f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
            if path == "/" and "token" in query:
                return self.service._login(self, query)
            self.service._check_auth(self)
            if method == "GET" and self.headers.get("Content-Length", "0") not in ("", "0"):
                self.close_connection = True
                raise HttpError(400, "unexpected_body", "GET requests take no body")
            self.service._route(self, method, path, query)
        except HttpError as exc:
            self._send_error_json(exc)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # never crash the server on a request; report a typed 500
            log.exception("internal error on %s %s", method, self.path)
            self.close_connection = True
            try:
                self._send_error_json(HttpError(500, "internal_error", f"{type(exc).__name__}: {exc}"))
            except OSError:
                pass

    def _send_error_json(self, exc: HttpError) -> None:
        headers = dict(exc.headers)
        self.close_connection = True          # after an error, start clean: the client reconnects
        headers["Connection"] = "close"
        self._send_json(exc.status, {"error": exc.code, "message": exc.message, "status": exc.status}, headers)

    def read_json_body(self) -> Any:
        """Read and parse a JSON request body (empty body -> None)."""
        cfg = self.service.config
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "length_required", "chunked bodies are not accepted; send Content-Length")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        raw_len = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_len.isdigit():
            self.close_connection = True
            raise HttpError(400, "bad_content_length", f"Content-Length must be a non-negative integer, "
                                                       f"got {raw_len[:32]!r}")
        n = int(raw_len)
        if n > cfg.max_body_bytes:
            self.close_connection = True
            raise HttpError(413, "body_too_large", f"request body of {n} bytes exceeds {cfg.max_body_bytes}")
        if ctype != "application/json":
            self.close_connection = True
            raise HttpError(415, "unsupported_media_type", "POST bodies must be sent with "
                                                           "Content-Type: application/json (an empty body is fine)")
        body = self.rfile.read(n) if n else b""
        self._body_pending = False
        if len(body) != n:
            self.close_connection = True
            raise HttpError(400, "short_body", f"expected {n} body bytes, received {len(body)}")
        if not body.strip():
            return None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, "bad_json", f"request body is not valid JSON: {exc}") from None


class _ConnectionLimit:
    """Mixin for a ThreadingMixIn server: a connection beyond the limit gets 503 and no thread."""

    service: "LivenessService"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.service._acquire_connection(request):
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.service._release_connection()


class _TcpServer(_ConnectionLimit, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], service: "LivenessService") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup (getfqdn) of the bound address
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _UnixServer(_ConnectionLimit, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 32

    def __init__(self, path: str, service: "LivenessService") -> None:
        self.service = service
        super().__init__(path, _Handler)

    def server_bind(self) -> None:
        old = os.umask(0o117)            # socket file mode 0660: owner and group may connect
        try:
            super().server_bind()
        finally:
            os.umask(old)


class LivenessService:
    """The HTTP/JSON service (see ``docs/SERVICE.md`` for the API).

    Args:
        hub: source of decisions and previews.
        config: :class:`ServiceConfig`.
        info: static facts shown in ``/v1/status`` (model name, sha256, threshold, source URI …).
        on_lockout_reset: called with the request's JSON body (a dict) by ``POST /v1/lockout/reset``; returns a
            JSON-ready dict or None. Without it the endpoint answers 501.
        status_extra: called for ``/v1/status`` to add live fields (e.g. audit-writer counters).
        clock_ns: monotonic clock (ns), shared with the hub in tests.

    Example:
        >>> with LivenessService(hub, ServiceConfig(port=0)) as svc:       # doctest: +SKIP
        ...     print(svc.url)
    """

    def __init__(self, hub: DecisionHub, config: ServiceConfig | None = None, *,
                 info: Mapping[str, Any] | None = None,
                 on_lockout_reset: Callable[[dict], Mapping[str, Any] | None] | None = None,
                 status_extra: Callable[[], Mapping[str, Any]] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.hub = hub
        self.config = config or ServiceConfig()
        if self.config.exposed and not self.config.token:
            raise ConfigError(f"binding to {self.config.host} exposes the service beyond this machine: a bearer "
                              "token is required (--token-file FILE), or bind 127.0.0.1 / a Unix socket",
                              key="token")
        self.info = dict(info or {})
        self._on_lockout_reset = on_lockout_reset
        self._status_extra = status_extra
        self._clock_ns = clock_ns
        self._started_ns = clock_ns()
        self._server: _TcpServer | _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sse_clients = 0
        self._connections = 0
        self._preview_cache: dict[tuple, bytes] = {}
        self._token = self.config.token.encode() if self.config.token else None
        self.rejected_connections = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "LivenessService":
        """Bind and serve in a background thread."""
        cfg = self.config
        try:
            if cfg.unix_socket:
                p = Path(cfg.unix_socket)
                if p.exists() or p.is_symlink():
                    if not stat.S_ISSOCK(p.lstat().st_mode):
                        raise ConfigError(f"{p} exists and is not a socket; choose another --unix-socket path",
                                          key="unix_socket")
                    p.unlink()       # a stale socket from a previous run
                self._server = _UnixServer(str(p), self)
            else:
                self._server = _TcpServer((cfg.host, cfg.port), self)
        except OSError as exc:
            where = cfg.unix_socket or f"{cfg.host}:{cfg.port}"
            raise ConfigError(f"cannot bind {where}: {exc}", key="port") from exc
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
            srv.shutdown()
            srv.server_close()
            if self.config.unix_socket:
                try:
                    os.unlink(self.config.unix_socket)
                except OSError:
                    pass
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
    def url(self) -> str:
        if self.config.unix_socket:
            return f"http+unix://{self.config.unix_socket}"
        addr = self.address or (self.config.host, self.config.port)
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else addr[0]
        return f"http://{host}:{addr[1]}"

    # ---------------------------------------------------------------- limits
    def _acquire_connection(self, request: Any) -> bool:
        with self._lock:
            if self._connections < self.config.max_connections:
                self._connections += 1
                return True
            self.rejected_connections += 1
        body = b'{"error":"too_many_connections","message":"connection limit reached; retry later","status":503}\n'
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
                            + b"\r\n\r\n" + body)
        except OSError:
            pass
        return False

    def _release_connection(self) -> None:
        with self._lock:
            self._connections -= 1

    # ---------------------------------------------------------------- security
    def _check_host(self, h: _Handler) -> None:
        """Without a token, a TCP request must name a loopback Host (DNS-rebinding guard)."""
        if self._token is not None or self.config.unix_socket:
            return
        host = h.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.find("]")]
        if host and not is_loopback(name):   # (no Host at all: not a browser, so not a rebinding attack)
            raise HttpError(403, "bad_host", f"Host {host[:64]!r} is not a loopback name; this service "
                                             "only answers http://127.0.0.1 or http://localhost")

    def _presented_token(self, h: _Handler) -> bytes | None:
        auth = h.headers.get("Authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise HttpError(401, "bad_authorization", "use `Authorization: Bearer <token>`",
                                headers={"WWW-Authenticate": 'Bearer realm="edgepad"'})
            return value.strip().encode()
        for part in h.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == _COOKIE and v:
                return v.encode()
        return None

    def _token_ok(self, presented: bytes | None) -> bool:
        # compare_digest runs in time independent of where the strings differ
        return presented is not None and self._token is not None and hmac.compare_digest(presented, self._token)

    def _check_auth(self, h: _Handler) -> None:
        if self._token is None:
            return
        presented = self._presented_token(h)
        if presented is None:
            raise HttpError(401, "unauthorized", "a bearer token is required: send `Authorization: Bearer "
                            "<token>` (browser: open /?token=<token> once)",
                            headers={"WWW-Authenticate": 'Bearer realm="edgepad"'})
        if not self._token_ok(presented):
            raise HttpError(401, "invalid_token", "the token is wrong",
                            headers={"WWW-Authenticate": 'Bearer realm="edgepad", error="invalid_token"'})

    def _login(self, h: _Handler, query: Mapping[str, list[str]]) -> None:
        """``GET /?token=T``: set an HttpOnly cookie for the page and redirect to ``/`` (drops T from the URL)."""
        if self._token is None:
            return h._send_bytes(303, b"", "text/plain", {"Location": "/"})
        if not self._token_ok(query["token"][-1].encode()):
            raise HttpError(401, "invalid_token", "the token is wrong",
                            headers={"WWW-Authenticate": 'Bearer realm="edgepad", error="invalid_token"'})
        cookie = f"{_COOKIE}={self.config.token}; Path=/; HttpOnly; SameSite=Strict"
        h._send_bytes(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})

    # ---------------------------------------------------------------- routes
    def _route(self, h: _Handler, method: str, path: str, query: Mapping[str, list[str]]) -> None:
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
        if path == "/v1/lockout/reset":
            return self._lockout_reset(h)
        m = _PREVIEW_RE.match(path)
        if m:
            return self._preview(h, Modality(m.group(1)), m.group(2), query)
        if path == "/":
            return self._static(h, "index.html")
        m = _STATIC_RE.match(path)
        if m:
            return self._static(h, m.group(1))
        raise HttpError(404, "not_found", f"no such endpoint {path!r}")  # pragma: no cover - routes checked above

    def _envelope(self, p: Published) -> dict:
        return {"seq": p.seq, "age_ms": round((self._clock_ns() - p.published_ns) / 1e6, 3),
                "decision": _finite(p.decision.to_dict())}

    def health(self) -> dict:
        """Fail-closed health: healthy only while fresh decisions arrive and the producer runs."""
        max_age = float(self.config.health_max_age_ms)
        age = self.hub.age_ms()
        out: dict[str, Any] = {"healthy": False, "age_ms": None if age is None else round(age, 3),
                               "max_age_ms": max_age, "reason": None}
        if self.hub.closed:
            out["reason"] = "producer_stopped"
            out["error"] = self.hub.error
        elif age is None:
            out["reason"] = "no_decision"
        elif age > max_age:
            out["reason"] = "stale"
        else:
            out["healthy"] = True
        return out

    def status(self) -> dict:
        """Service, model and runtime facts (``GET /v1/status``)."""
        from edgepad import __version__
        latest = self.hub.latest()
        with self._lock:
            sse, conns = self._sse_clients, self._connections
        out = {
            "service": "edgepad", "api_version": API_VERSION, "version": __version__,
            "uptime_s": round((self._clock_ns() - self._started_ns) / 1e9, 3),
            "health": self.health(),
            "decisions": self.hub.count, "fps": round(self.hub.fps(), 2),
            "last": None if latest is None else self._envelope(latest),
            "sse_clients": sse, "max_sse_clients": self.config.max_sse_clients,
            "connections": conns, "rejected_connections": self.rejected_connections,
            "token_required": self._token is not None,
            "lockout_reset_supported": self._on_lockout_reset is not None,
            **_finite(self.info),
        }
        if self._status_extra is not None:
            out.update(_finite(dict(self._status_extra())))
        return out

    def _lockout_reset(self, h: _Handler) -> None:
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

    def _stream(self, h: _Handler, query: Mapping[str, list[str]]) -> None:
        limit = _int_param(query, "limit", default=0, lo=0, hi=1_000_000)
        with self._lock:
            if self._sse_clients >= self.config.max_sse_clients:
                raise HttpError(503, "too_many_streams", f"at most {self.config.max_sse_clients} decision streams; "
                                "close one or retry later", headers={"Retry-After": "2"})
            self._sse_clients += 1
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
            sent, seq = 0, 0
            latest = self.hub.latest()
            keepalive = float(self.config.sse_keepalive_s)
            last_write = time.monotonic()
            while not self._stopping.is_set():
                if latest is not None and latest.seq > seq:
                    seq = latest.seq
                    data = json.dumps(self._envelope(latest), allow_nan=False, separators=(",", ":"))
                    h.wfile.write(f"id: {seq}\nevent: decision\ndata: {data}\n\n".encode())
                    h.wfile.flush()
                    last_write = time.monotonic()
                    sent += 1
                    if limit and sent >= limit:
                        break
                if self.hub.closed and (self.hub.latest() is None or self.hub.latest().seq <= seq):
                    end = json.dumps({"error": self.hub.error})
                    h.wfile.write(f"event: end\ndata: {end}\n\n".encode())
                    h.wfile.flush()
                    break
                left = keepalive - (time.monotonic() - last_write)
                latest = self.hub.wait(seq, timeout_s=max(0.0, min(0.25, left)))
                if latest is None and time.monotonic() - last_write >= keepalive:
                    h.wfile.write(b": keepalive\n\n")
                    h.wfile.flush()
                    last_write = time.monotonic()
        finally:
            with self._lock:
                self._sse_clients -= 1

    def _preview(self, h: _Handler, m: Modality, fmt: str, query: Mapping[str, list[str]]) -> None:
        box = _int_param(query, "box", default=1, lo=0, hi=1)
        latest = self.hub.latest()
        img = None if latest is None else latest.frames.get(m)
        if img is None:
            raise HttpError(404, "no_frame", f"no {m} frame yet (the source may not provide {m})",
                            headers={"Retry-After": "1"})
        key = (latest.frames_seq, m, fmt, box)
        with self._lock:
            body = self._preview_cache.get(key)
        if body is None:
            bgr = render_preview(m, img, latest.boxes.get(m) if box else None, latest.frames_verdict)
            body = encode_image(bgr, fmt)
            with self._lock:
                if len(self._preview_cache) >= 12:
                    self._preview_cache.clear()
                self._preview_cache[key] = body
        h._send_bytes(200, body, _CONTENT_TYPES[fmt], {"X-Edgepad-Seq": str(latest.frames_seq)})

    def _static(self, h: _Handler, name: str) -> None:
        p = STATIC_DIR / name
        try:
            body = p.read_bytes()
        except OSError:
            raise HttpError(404, "not_found", f"no static file {name!r}") from None
        h._send_bytes(200, body, _CONTENT_TYPES[name.rsplit(".", 1)[1]],
                      {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                  "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
                       "Referrer-Policy": "no-referrer"})


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
def run_service(args: Any, *, stop: threading.Event | None = None,
                on_ready: Callable[[LivenessService], None] | None = None) -> int:
    """Implementation of ``edgepad serve`` (CLI code: prints one line with the URL, then logs).

    Order matters for fail-fast and fail-closed start-up: the network exposure is checked first (no token off
    loopback → refuse), then the model's integrity (sha256, and the vendor signature with ``--public-key``), then
    the pipeline is built once in the foreground so a bad source or model fails the command, not a thread.

    Args:
        args: the parsed ``edgepad serve`` arguments.
        stop: event that ends the service (default: SIGINT/SIGTERM when run in the main thread).
        on_ready: called with the running service (tests).
    """
    import signal
    import sys

    from edgepad.runtime.integrity import verify_model
    from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
    from edgepad.runtime.policy import PolicyConfig

    token = read_token_file(args.token_file) if args.token_file else None
    cfg = ServiceConfig(host=args.host, port=args.port, unix_socket=args.unix_socket, token=token,
                        health_max_age_ms=args.health_max_age_ms, max_sse_clients=args.max_sse_clients)
    if cfg.exposed and not cfg.token:
        raise ConfigError(f"--host {args.host} exposes the service beyond this machine: give --token-file FILE "
                          "(a random token of >= 16 characters, chmod 600), or bind 127.0.0.1 / --unix-socket",
                          key="token_file")
    model = Path(args.model)
    if not model.is_file():
        raise ConfigError(f"model file not found: {model}", key="model")
    manifest = verify_model(model, public_key=args.public_key)
    pcfg = PipelineConfig(policy=PolicyConfig(operating_point=args.operating_point, k=args.k, n=args.n,
                                              max_age_ms=args.max_age_ms, lockout_after=args.lockout_after),
                          threaded=bool(args.threaded))
    uri = args.source[0] if len(args.source) == 1 else list(args.source)

    def build() -> Any:
        pipe = open_pipeline(uri, model, rig=args.rig, locator=args.locator, config=pcfg, fps=args.fps,
                             threads=args.threads)
        if pipe.manifest.to_dict() != manifest.to_dict():     # the verified manifest is the one in use
            from edgepad.errors import IntegrityError
            raise IntegrityError(f"the manifest of {model} changed after it was verified; refusing to load",
                                 path=str(model), field="manifest")
        return pipe

    first = [build()]

    def factory() -> Any:
        return first.pop() if first else build()

    producer = PipelineProducer(factory, preview_fps=args.preview_fps, audit_images=bool(args.store_images),
                                restart_s=None if args.restart_s < 0 else args.restart_s)
    writer = None
    if args.audit:
        from edgepad.runtime.audit import AuditLog, AuditWriter
        writer = AuditWriter(lambda: AuditLog(args.audit, model_sha256=manifest.artifact_sha256,
                                              retention_days=args.retention_days, max_rows=args.max_rows,
                                              store_images=bool(args.store_images),
                                              synchronous=args.audit_sync)).start()
        writer.submit_event("service_start", {"model": str(model), "model_sha256": manifest.artifact_sha256,
                                              "source": str(uri), "signed": args.public_key is not None})

    def on_reset(body: dict) -> Mapping[str, Any]:
        result = producer.reset_lockout(body)
        if writer is not None:
            writer.submit_event("lockout_reset", {**body, **result})
        return result

    def status_extra() -> Mapping[str, Any]:
        out = dict(producer.status())
        if writer is not None:
            out["audit"] = {"path": str(args.audit), **writer.stats()}
        return out

    hub = DecisionHub()
    info = {"model": {"name": manifest.model, "path": str(model), "sha256": manifest.artifact_sha256,
                      "format": manifest.format, "precision": manifest.precision,
                      "modalities": [m.value for m in manifest.modalities], "threshold": manifest.threshold,
                      "threshold_criterion": manifest.threshold_criterion,
                      "operating_point": args.operating_point or manifest.threshold_criterion,
                      "signature_checked": args.public_key is not None},
            "source": str(uri)}
    service = LivenessService(hub, cfg, info=info, on_lockout_reset=on_reset, status_extra=status_extra)
    thread = ProducerThread(hub, producer, audit=writer, model_sha256=manifest.artifact_sha256)
    stop = stop or threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        service.start()
        thread.start()
        print(f"edgepad serve: listening on {service.url} (model {manifest.model}, source {uri})", flush=True)
        if on_ready is not None:
            on_ready(service)
        service.serve_forever(stop)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
        producer.close()
        thread.stop()
        service.stop()
        if writer is not None:
            writer.submit_event("service_stop", {"decisions": hub.count})
            writer.close()
        print(f"edgepad serve: stopped after {hub.count} decisions", file=sys.stderr, flush=True)
    return 0
