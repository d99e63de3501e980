"""Every security check of ``edgepad serve``, in one file to review (API and threat model: docs/SERVICE.md).

At start-up, fail closed, in this order:

1. :func:`check_exposure`: a TCP address that is not loopback needs a bearer token; the service refuses to
   start without one.
2. :func:`verify_model_at_start`: the model's sha256 against its manifest, and the vendor's Ed25519 signature
   of the manifest when a public key is configured (the cryptography is in :mod:`edgepad.runtime.integrity`).
3. :func:`check_loaded_manifest`: the manifest the backend loaded is the one that was verified.

Per connection: :class:`ConnectionLimit` (a connection beyond the limit gets 503 and no thread); decision
streams are counted with :class:`Slots`.

Per request (:class:`RequestGuard`, called by the handler in ``http.py``):

* without a token, a TCP request must name a loopback ``Host`` (blocks DNS rebinding);
* with a token, every request must present it (``Authorization: Bearer`` or the ``edgepad_token`` cookie that
  ``GET /?token=`` sets for the browser page, HttpOnly, SameSite=Strict), compared in constant time;
* query strings hold at most :data:`MAX_QUERY_FIELDS` fields; GET takes no body; a POST body must be
  ``Content-Type: application/json`` (a cross-site form cannot send it without a CORS preflight, which this
  service never grants), have a ``Content-Length`` (no chunked bodies) and at most ``max_body_bytes``;
* the page is served with a strict Content-Security-Policy (:data:`PAGE_HEADERS`).
"""
from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from edgepad.errors import ConfigError, IntegrityError
from edgepad.runtime.integrity import verify_model
from edgepad.runtime.service.config import ServiceConfig, is_loopback
from edgepad.runtime.service.http import HttpError

log = logging.getLogger(__name__)

#: name of the cookie that carries the token for the browser page
SESSION_COOKIE = "edgepad_token"
#: most fields parsed from a query string (more: 400)
MAX_QUERY_FIELDS = 16
#: headers of the live-view page and its static files: scripts, styles and images from this origin only
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                           "script-src 'self'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer"}
_AUTH_HEADER = {"WWW-Authenticate": 'Bearer realm="edgepad"'}
_INVALID_TOKEN_HEADER = {"WWW-Authenticate": 'Bearer realm="edgepad", error="invalid_token"'}
_REFUSAL_503 = b'{"error":"too_many_connections","message":"connection limit reached; retry later","status":503}\n'


# ---------------------------------------------------------------------------------------------- start-up
def check_exposure(config: ServiceConfig) -> None:
    """Refuse a configuration that exposes the service beyond this machine without a bearer token.

    Raises:
        ConfigError: ``config.host`` is not loopback (and no Unix socket is used) and no token is set.
    """
    if config.exposed and not config.token:
        raise ConfigError(f"binding to {config.host} exposes the service beyond this machine: a bearer token is "
                          "required (--token-file FILE: a random token of >= 16 characters, chmod 600), or bind "
                          "127.0.0.1 / --unix-socket", key="token_file")


def verify_model_at_start(model: Path, public_key: Any = None) -> Any:
    """Check a model before it is loaded: the file exists, its sha256 matches the manifest, and (with
    ``public_key``) the manifest carries the vendor's valid Ed25519 signature.

    Args:
        model: artifact path (``.onnx``, ``.engine``, ``.pt``) with its sidecar manifest.
        public_key: vendor public key (see :func:`edgepad.runtime.integrity.load_public_key`); None = no
            signature check.

    Returns:
        the verified :class:`~edgepad.engines.manifest.ModelManifest`.

    Raises:
        ConfigError: the file does not exist.
        IntegrityError: hash or signature mismatch, or a missing signature when a key is configured.
    """
    if not Path(model).is_file():
        raise ConfigError(f"model file not found: {model}", key="model")
    return verify_model(model, public_key=public_key)


def check_loaded_manifest(loaded: Any, verified: Any, model: Path) -> None:
    """Refuse a pipeline whose backend loaded another manifest than the verified one (changed in between).

    Raises:
        IntegrityError: the two manifests differ.
    """
    if loaded.to_dict() != verified.to_dict():
        raise IntegrityError(f"the manifest of {model} changed after it was verified; refusing to load",
                             path=str(model), field="manifest")


# ---------------------------------------------------------------------------------------------- connections
class Slots:
    """A non-blocking, thread-safe count of a limited resource (connections, decision streams).

    Args:
        limit: most slots in use at once (>= 1).
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.in_use = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Take a slot; False (and one more ``rejected``) when all are in use."""
        with self._lock:
            if self.in_use < self.limit:
                self.in_use += 1
                return True
            self.rejected += 1
            return False

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1


class ConnectionLimit(Slots):
    """Concurrent connections (each holds a handler thread); one beyond the limit gets 503 at once."""

    def admit(self, sock: Any) -> bool:
        """Take a slot for a new connection, or answer 503 on ``sock`` and return False (the caller closes it)."""
        if self.acquire():
            return True
        try:
            sock.settimeout(1.0)
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                         + str(len(_REFUSAL_503)).encode() + b"\r\n\r\n" + _REFUSAL_503)
        except OSError:
            pass
        return False


# ---------------------------------------------------------------------------------------------- requests
class RequestGuard:
    """Per-request checks: Host, token, request shape and body limits. Each check raises :class:`HttpError`.

    Args:
        config: the service settings (token, Unix socket, ``max_body_bytes``).
    """

    max_query_fields = MAX_QUERY_FIELDS

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._token = config.token.encode() if config.token else None

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def check_host(self, headers: Mapping[str, str]) -> None:
        """Without a token, a TCP request must name a loopback Host (DNS-rebinding guard)."""
        if self._token is not None or self._config.unix_socket:
            return
        host = headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.find("]")]
        if host and not is_loopback(name):   # (no Host at all: not a browser, so not a rebinding attack)
            raise HttpError(403, "bad_host", f"Host {host[:64]!r} is not a loopback name; this service "
                                             "only answers http://127.0.0.1 or http://localhost")

    def check_auth(self, headers: Mapping[str, str]) -> None:
        """With a token configured, the request must present it (header or cookie)."""
        if self._token is None:
            return
        presented = _presented_token(headers)
        if presented is None:
            raise HttpError(401, "unauthorized", "a bearer token is required: send `Authorization: Bearer "
                            "<token>` (browser: open /?token=<token> once)", headers=_AUTH_HEADER)
        if not self._token_ok(presented):
            raise HttpError(401, "invalid_token", "the token is wrong", headers=_INVALID_TOKEN_HEADER)

    def login(self, presented: str) -> dict[str, str]:
        """``GET /?token=T``: headers of the 303 redirect to ``/`` (drops T from the URL) that set an HttpOnly,
        SameSite=Strict cookie for the page; without a configured token, a plain redirect."""
        if self._token is None:
            return {"Location": "/"}
        if not self._token_ok(presented.encode()):
            raise HttpError(401, "invalid_token", "the token is wrong", headers=_INVALID_TOKEN_HEADER)
        return {"Location": "/",
                "Set-Cookie": f"{SESSION_COOKIE}={self._config.token}; Path=/; HttpOnly; SameSite=Strict"}

    def check_no_body(self, method: str, headers: Mapping[str, str]) -> None:
        """GET requests take no body."""
        if method == "GET" and headers.get("Content-Length", "0") not in ("", "0"):
            raise HttpError(400, "unexpected_body", "GET requests take no body")

    def json_body_length(self, headers: Mapping[str, str]) -> int:
        """Bytes of JSON body to read: Content-Length present and within ``max_body_bytes``, not chunked,
        ``Content-Type: application/json``."""
        limit = self._config.max_body_bytes
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "length_required", "chunked bodies are not accepted; send Content-Length")
        ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        raw_len = headers.get("Content-Length", "0").strip() or "0"
        if not raw_len.isdigit():
            raise HttpError(400, "bad_content_length", f"Content-Length must be a non-negative integer, "
                                                       f"got {raw_len[:32]!r}")
        n = int(raw_len)
        if n > limit:
            raise HttpError(413, "body_too_large", f"request body of {n} bytes exceeds {limit}")
        if ctype != "application/json":
            raise HttpError(415, "unsupported_media_type", "POST bodies must be sent with "
                                                           "Content-Type: application/json (an empty body is fine)")
        return n

    def _token_ok(self, presented: bytes | None) -> bool:
        # compare_digest runs in time independent of where the strings differ
        return presented is not None and self._token is not None and hmac.compare_digest(presented, self._token)


def _presented_token(headers: Mapping[str, str]) -> bytes | None:
    """The token a request presents: ``Authorization: Bearer T`` or the session cookie; None when absent."""
    auth = headers.get("Authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HttpError(401, "bad_authorization", "use `Authorization: Bearer <token>`", headers=_AUTH_HEADER)
        return value.strip().encode()
    for part in headers.get("Cookie", "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == SESSION_COOKIE and v:
            return v.encode()
    return None
