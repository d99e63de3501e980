"""HTTP plumbing of the service: the request handler, the TCP and Unix-socket servers, :class:`HttpError`.

Standard library only (``http.server``). The handler parses and dispatches; every check that admits or refuses
a connection or a request (host, token, body limits, connection count) is a call into the service's
:class:`~edgepad.runtime.service.security.RequestGuard` and
:class:`~edgepad.runtime.service.security.ConnectionLimit`, kept in ``security.py``. The endpoints themselves are
:class:`~edgepad.runtime.service.app.LivenessService` methods (API: docs/SERVICE.md).
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from edgepad.runtime.service.app import LivenessService

log = logging.getLogger(__name__)


class HttpError(Exception):
    """An error response: status, machine code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


PREVIEW_RE = re.compile(r"^/v1/preview/(rgb|ir|depth)\.(jpg|png)$")
STATIC_RE = re.compile(r"^/static/([a-z0-9_-]{1,64}\.(?:js|css|html|svg|png))$")
CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                  "html": "text/html; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
                  "jpg": "image/jpeg"}
#: path -> allowed methods (exact paths; previews and static files are matched by pattern)
ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET",), "/v1/status": ("GET",), "/v1/health": ("GET",), "/v1/decision/latest": ("GET",),
    "/v1/decisions/stream": ("GET",), "/v1/events": ("GET",), "/v1/lockout/reset": ("POST",),
}


def allowed_methods(path: str) -> tuple[str, ...] | None:
    if path in ROUTES:
        return ROUTES[path]
    if PREVIEW_RE.match(path) or STATIC_RE.match(path):
        return ("GET",)
    return None


class Handler(BaseHTTPRequestHandler):
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

    def handle_one_request(self) -> None:
        # the header deadline (security.ConnectionLimit) runs while the next request's headers are awaited
        self.service.connections.waiting(self.connection)
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()      # reads the request line's headers
        if ok:
            self.service.connections.serving(self.connection)
        return ok

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
        # status line, headers and body leave in one write: a separate body write waits for the client's
        # delayed ACK under Nagle (≈ 40 ms per keep-alive request; docs/SERVICE.md, "Fault figures")
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

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
        # every error response closes the connection (_send_error_json): an unread body is never parsed as the
        # next request
        guard = self.service.guard
        try:
            split = urlsplit(self.path)
            if not self.path.startswith("/") or split.fragment:
                raise HttpError(400, "bad_path", "the request target must be an absolute path like /v1/status")
            path = split.path
            try:
                query = parse_qs(split.query, keep_blank_values=True, strict_parsing=False,
                                 max_num_fields=guard.max_query_fields)
            except ValueError as exc:
                raise HttpError(400, "bad_query", f"malformed query string: {exc}") from None
            allowed = allowed_methods(path)
            if allowed is None:
                raise HttpError(404, "not_found", f"no such endpoint {path!r}; see GET /v1/status and "
                                                  "docs/SERVICE.md")
            guard.check_host(self.headers)
            if method not in allowed:
                raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}; use "
                                f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
            if path == "/" and "token" in query:
                return self._send_bytes(303, b"", "text/plain", guard.login(query["token"][-1]))
            guard.check_auth(self.headers)
            guard.check_no_body(method, self.headers)
            self.service.route(self, method, path, query)
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
        """Read and parse a JSON request body within the guard's limits (empty body -> None)."""
        n = self.service.guard.json_body_length(self.headers)
        body = self.rfile.read(n) if n else b""
        if len(body) != n:
            raise HttpError(400, "short_body", f"expected {n} body bytes, received {len(body)}")
        if not body.strip():
            return None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, "bad_json", f"request body is not valid JSON: {exc}") from None


class _ConnectionLimit:
    """Mixin for a ThreadingMixIn server: admission by the service's connection limit (``security.py``); a
    refused connection gets its 503 there and no thread here."""

    service: "LivenessService"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.service.connections.admit(request, client_address):
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        if request.family in (socket.AF_INET, socket.AF_INET6):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # SSE events leave at once
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.service.connections.release(request)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` between accepts (every ``poll_interval``): apply the header deadline."""
        super().service_actions()  # type: ignore[misc]
        self.service.connections.reap()


class TcpServer(_ConnectionLimit, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], service: "LivenessService") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        super().__init__(address, Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup (getfqdn) of the bound address
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class UnixServer(_ConnectionLimit, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 32

    def __init__(self, path: str, service: "LivenessService") -> None:
        self.service = service
        super().__init__(path, Handler)

    def server_bind(self) -> None:
        old = os.umask(0o117)            # socket file mode 0660: owner and group may connect
        try:
            super().server_bind()
        finally:
            os.umask(old)

