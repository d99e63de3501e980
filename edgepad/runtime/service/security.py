"""Every security check of ``edgepad serve``, in one file to review (API and threat model: docs/SERVICE.md).

At start-up, fail closed, in this order:

1. :func:`check_exposure`: a TCP address that is not loopback needs a bearer token; the service refuses to
   start without one.
2. :func:`verify_model_at_start`: the model's sha256 against its manifest, and the vendor's Ed25519 signature
   of the manifest when a public key is configured (the cryptography is in :mod:`edgepad.runtime.integrity`).
3. :func:`check_loaded_manifest`: the manifest the backend loaded is the one that was verified.

One service per Unix socket path: :class:`SocketLock` (an exclusive ``flock`` on ``<socket>.lock``); a second
``serve`` on the same path is refused and leaves the first one's socket alone.

Per connection: :class:`ConnectionLimit`: at most ``max_connections`` at once and ``max_connections_per_client``
per peer (TCP address; uid on the Unix socket). A connection must complete its request headers within
``header_timeout_s`` of connecting (or of its previous response, keep-alive) or it is closed; when a new
connection finds no free slot, the connection that has waited longest for its headers (of the same peer when
the per-peer limit is the one reached) is closed to make room, so slow or idle clients cannot starve
others. Only when every slot is serving a request does a new connection get 503. Decision streams are counted
with :class:`Slots`.

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

import errno
import fcntl
import hmac
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
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


class SocketLock:
    """Exclusive ownership of a Unix socket path: ``flock`` on ``<path>.lock`` (the lock file holds the owner's pid).

    The lock is released when the process exits, however it exits; the lock file itself stays (removing it
    would let two processes lock two different files of the same name).

    Raises:
        ConfigError: another process holds the lock (a running ``edgepad serve`` on that path).
    """

    def __init__(self, socket_path: str | os.PathLike) -> None:
        self.path = Path(str(socket_path) + ".lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create the socket lock {self.path}: {exc}", key="unix_socket") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"another edgepad serve (pid {owner}) is serving {socket_path} (it holds "
                                  f"{self.path}); stop it or choose another --unix-socket path",
                                  key="unix_socket") from None
            raise ConfigError(f"cannot lock {self.path}: {exc}", key="unix_socket") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)          # closing the only descriptor drops the flock


@dataclass
class _Conn:
    peer: str
    waiting_since: float | None     # monotonic s while waiting for request headers; None while serving
    sock: Any


def peer_key(sock: Any, client_address: Any) -> str:
    """Who a connection belongs to for the per-client limit: ``ip:<address>`` on TCP, ``uid:<n>`` on a Unix
    socket (``SO_PEERCRED``)."""
    if isinstance(client_address, tuple) and client_address:
        return f"ip:{client_address[0]}"
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
        return f"uid:{uid}"
    except (OSError, AttributeError):
        return "unix"


class ConnectionLimit(Slots):
    """Concurrent connections (each holds a handler thread): the global and per-client limits, the header
    deadline and eviction of the longest-waiting connection (module docstring).

    Args:
        limit: most connections at once.
        per_client: most connections of one peer at once.
        header_timeout_s: a connection waiting longer than this for its request headers is closed.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, limit: int, per_client: int | None = None, header_timeout_s: float = 5.0,
                 clock: Any = time.monotonic) -> None:
        super().__init__(limit)
        self.per_client = int(per_client or limit)
        self.header_timeout_s = float(header_timeout_s)
        self.evicted = 0
        self.timed_out = 0
        self._clock = clock
        self._conns: dict[int, _Conn] = {}

    def admit(self, sock: Any, client_address: Any = None) -> bool:
        """Take a slot for a new connection (closing the longest-waiting one when full), or answer 503 on
        ``sock`` and return False (the caller closes it)."""
        peer = peer_key(sock, client_address)
        with self._lock:
            mine = [c for c in self._conns.values() if c.peer == peer]
            if len(mine) >= self.per_client:
                self._evict_locked(mine)
            elif self.in_use >= self.limit:
                self._evict_locked(list(self._conns.values()))
            if self.in_use < self.limit and sum(c.peer == peer for c in self._conns.values()) < self.per_client:
                self.in_use += 1
                self._conns[id(sock)] = _Conn(peer, self._clock(), sock)
                return True
            self.rejected += 1
        self._refuse(sock)
        return False

    def _evict_locked(self, candidates: list[_Conn]) -> None:
        waiting = [c for c in candidates if c.waiting_since is not None]
        if waiting:
            victim = min(waiting, key=lambda c: c.waiting_since)
            self.evicted += 1
            self._drop_locked(victim)

    def _drop_locked(self, conn: _Conn) -> None:
        if self._conns.pop(id(conn.sock), None) is not None:
            self.in_use -= 1
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)     # its handler thread reads EOF and ends
        except OSError:
            pass

    def serving(self, sock: Any) -> None:
        """The connection's request headers are complete: not evictable until :meth:`waiting`."""
        with self._lock:
            c = self._conns.get(id(sock))
            if c is not None:
                c.waiting_since = None

    def waiting(self, sock: Any) -> None:
        """The connection waits for (the next) request headers: the header deadline runs from now."""
        with self._lock:
            c = self._conns.get(id(sock))
            if c is not None:
                c.waiting_since = self._clock()

    def reap(self) -> int:
        """Close connections past the header deadline; returns how many."""
        now = self._clock()
        with self._lock:
            late = [c for c in self._conns.values()
                    if c.waiting_since is not None and now - c.waiting_since > self.header_timeout_s]
            self.timed_out += len(late)  # counted before the close a client can observe
            for c in late:
                self._drop_locked(c)
        return len(late)

    def release(self, sock: Any = None) -> None:  # type: ignore[override]
        """The connection's thread ended (a no-op for one already evicted)."""
        with self._lock:
            if sock is None or self._conns.pop(id(sock), None) is not None:
                self.in_use -= 1

    def _refuse(self, sock: Any) -> None:
        try:
            sock.settimeout(1.0)
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                         + str(len(_REFUSAL_503)).encode() + b"\r\n\r\n" + _REFUSAL_503)
        except OSError:
            pass


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
