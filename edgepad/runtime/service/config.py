"""Settings of the HTTP service: :class:`ServiceConfig`, the loopback test and the token file reader.

What the service refuses on the strength of these settings is in :mod:`edgepad.runtime.service.security`.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import ConfigError

log = logging.getLogger(__name__)

#: minimum length of the bearer token (characters)
MIN_TOKEN_CHARS = 16
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the HTTP service.

    Attributes:
        host, port: TCP address (ignored with ``unix_socket``); port 0 picks a free port.
        unix_socket: path of a Unix socket to bind instead of TCP (mode 0660).
        token: bearer token; required when ``host`` is not loopback. At least 16 characters.
        health_max_age_ms: ``/v1/health`` is unhealthy when the newest decision is older than this.
        max_sse_clients: concurrent stream clients (``/v1/decisions/stream`` and ``/v1/events`` together); more
            get 503.
        max_connections: concurrent connections (each holds a thread); when all are taken, the one waiting
            longest for its request headers is closed for a new one; only when all are serving requests does a
            new connection get 503.
        max_connections_per_client: concurrent connections of one peer (TCP address; uid on the Unix socket).
        header_timeout_s: a connection must complete its request headers within this many seconds of
            connecting (or of its previous response) or it is closed (before authentication: slow clients).
        health_window_s: ``/v1/health`` judges the decisions of this many recent seconds (all unusable:
            unhealthy; some: degraded).
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
    max_connections_per_client: int = 16
    header_timeout_s: float = 5.0
    health_window_s: float = 2.0
    max_body_bytes: int = 16 * 1024
    sse_keepalive_s: float = 15.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the service token must be at least {MIN_TOKEN_CHARS} characters "
                              "(e.g. `openssl rand -hex 24`)",
                              key="token")
        for name in ("health_max_age_ms", "sse_keepalive_s", "request_timeout_s", "header_timeout_s",
                     "health_window_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v!r}", key=name)
        for name in ("max_sse_clients", "max_connections", "max_connections_per_client", "max_body_bytes"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}", key=name)
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ConfigError(f"port must be in 0..65535, got {self.port!r}", key="port")

    @property
    def exposed(self) -> bool:
        """True when bound to a TCP address other than loopback (a token is then mandatory: see
        :func:`edgepad.runtime.service.security.check_exposure`)."""
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

