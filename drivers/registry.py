"""Sources by URI: scheme or file suffix -> ``"module:Class"``, imported on first use.

``synthetic://default?seed=3&fps=30``, ``replay:///path/to/dir``, ``realsense://<serial>``, ``x.bag``, ``x.db3``,
``uvc:///dev/video2``. Query parameters become constructor options and are validated strictly by the source.
"""
from __future__ import annotations

import importlib
import urllib.parse
from pathlib import Path
from typing import Any

from edgepad.config import suggest
from edgepad.errors import ConfigError

_SCHEMES: dict[str, str] = {
    "synthetic": "edgepad.drivers.synthetic:SyntheticSource",
    "replay": "edgepad.drivers.replay:ReplaySource",
    "realsense": "edgepad.drivers.realsense:RealSenseSource",
    "uvc": "edgepad.drivers.uvc:UvcSource",
}
_SUFFIXES: dict[str, str] = {".bag": "realsense", ".db3": "realsense"}


def register_source(scheme: str, target: str) -> None:
    """Register a source class for a URI scheme (``target`` = ``"module:Class"``)."""
    _SCHEMES[scheme] = target


def schemes() -> dict[str, str]:
    return dict(_SCHEMES)


def _coerce(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def parse_uri(uri: str) -> tuple[str, str, dict[str, Any]]:
    """Split a source URI into ``(scheme, location, options)``; a bare path maps by suffix or to replay."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme
    if not scheme or (len(scheme) == 1 and uri[1:3] == ":\\"):  # bare path
        suffix = Path(uri).suffix.lower()
        return (_SUFFIXES.get(suffix, "replay"), uri, {})
    location = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    if scheme in ("replay", "uvc") and parsed.netloc == "" and parsed.path:
        location = parsed.path
    options = {k: _coerce(v) for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)}
    return scheme, location, options


def source_class(scheme: str) -> type:
    if scheme not in _SCHEMES:
        raise ConfigError(f"unknown source scheme {scheme!r}; known: {sorted(_SCHEMES)}", key="source",
                          suggestions=suggest(scheme, _SCHEMES))
    module, _, name = _SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(module), name)


def open_source(uri: str, **options: Any):
    """Create (not yet opened) the source for ``uri``; keyword options override URI query options."""
    scheme, location, query = parse_uri(uri)
    cls = source_class(scheme)
    return cls(location, **{**query, **options})
