"""Sources by URI: scheme or file suffix -> ``"module:Class"``, imported on first use.

``synthetic://default?seed=3&fps=30``, ``replay:///path/to/dir``, ``realsense://<serial>``, ``x.bag``, ``x.db3``,
``uvc:///dev/video2``. Query parameters become constructor options.

Options are checked here, once, for every source and before the source is constructed (so before any device
is touched): each source class declares the options a URI may carry and their types in ``URI_OPTIONS``
(name -> ``int``, ``float``, ``bool``, ``str``, or ``X | None``). An unknown option or a value that does not
parse raises :class:`ConfigError` with close-match suggestions; keyword options given in Python are checked by
name against the constructor and, when they are strings, parsed like URI values. Tables: ``docs/DRIVERS.md``.
"""
from __future__ import annotations

import importlib
import inspect
import typing
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
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("", "none", "default")


def register_source(scheme: str, target: str) -> None:
    """Register a source class for a URI scheme (``target`` = ``"module:Class"``; the class has ``URI_OPTIONS``)."""
    _SCHEMES[scheme] = target


def schemes() -> dict[str, str]:
    """Registered scheme -> ``"module:Class"``."""
    return dict(_SCHEMES)


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """Split a source URI into ``(scheme, location, raw options)``; a bare path maps by suffix or to replay.

    Option values stay strings here; :func:`check_options` parses them to the source's declared types.
    """
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as exc:  # e.g. an unbalanced '[' (IPv6 netloc)
        raise ConfigError(f"malformed source URI {uri!r}: {exc}", key="source") from None
    scheme = parsed.scheme
    if not scheme or (len(scheme) == 1 and uri[1:3] == ":\\"):  # bare path, e.g. x.bag or x.bag?realtime=true
        path, _, query = uri.partition("?")
        suffix = Path(path).suffix.lower()
        return (_SUFFIXES.get(suffix, "replay"), path, _query(query, uri))
    location = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    if scheme in ("replay", "uvc") and parsed.netloc == "" and parsed.path:
        location = parsed.path
    return scheme, location, _query(parsed.query, uri)


def _query(query: str, uri: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if k in out:
            raise ConfigError(f"option {k!r} given twice in {uri!r}", key=k)
        out[k] = v
    return out


def source_class(scheme: str) -> type:
    """The source class registered for ``scheme`` (imported now)."""
    if scheme not in _SCHEMES:
        raise ConfigError(f"unknown source scheme {scheme!r}; known: {sorted(_SCHEMES)}", key="source",
                          suggestions=suggest(scheme, _SCHEMES))
    module, _, name = _SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(module), name)


def uri_options(scheme: str) -> dict[str, Any]:
    """Options a ``scheme://`` URI may carry: name -> declared type (``int``, ``float``, ``bool``, ``str``, ``X | None``)."""
    return dict(getattr(source_class(scheme), "URI_OPTIONS", {}))


def _type_name(kind: Any) -> str:
    args = typing.get_args(kind)
    if args:
        return " or ".join("none" if a is type(None) else _type_name(a) for a in args)
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(kind, str(kind))


def parse_value(scheme: str, name: str, text: str, kind: Any) -> Any:
    """Parse the URI value ``text`` of option ``name`` to ``kind``; a bad value raises ConfigError."""
    args = typing.get_args(kind)
    low = text.strip().lower()
    if args and type(None) in args and low in _NONE:
        return None
    inner = [a for a in args if a is not type(None)] if args else [kind]
    base = inner[0] if len(inner) == 1 else str
    try:
        if base is bool:
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError(text)
        if base is int:
            return int(low)
        if base is float:
            value = float(low)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(text)
            return value
    except ValueError:
        raise ConfigError(f"option {name!r} of {scheme}:// must be {_type_name(kind)}, got {text!r}",
                          key=name) from None
    return text


def _constructor_options(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self", "location"}


def check_options(scheme: str, query: dict[str, str], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one option check for every source: ``query`` (URI strings) and ``options`` (Python keywords) → kwargs.

    Raises:
        ConfigError: an option the source does not have (with close matches), or a value that does not parse.
    """
    cls = source_class(scheme)
    declared: dict[str, Any] = dict(getattr(cls, "URI_OPTIONS", {}))
    accepted = _constructor_options(cls)
    out: dict[str, Any] = {}
    for name, text in query.items():
        if name not in declared:
            raise ConfigError(f"unknown option {name!r} for {scheme}://; known: {', '.join(sorted(declared))}",
                              key=name, suggestions=suggest(name, declared))
        out[name] = parse_value(scheme, name, text, declared[name])
    for name, value in (options or {}).items():
        if name not in accepted:
            raise ConfigError(f"unknown option {name!r} for {scheme}://; known: {', '.join(sorted(accepted))}",
                              key=name, suggestions=suggest(name, accepted))
        out[name] = parse_value(scheme, name, value, declared[name]) if isinstance(value, str) and name in declared \
            else value
    return out


def open_source(uri: str, **options: Any):
    """Create (not yet opened) the source for ``uri``; keyword options override URI query options.

    Raises:
        ConfigError: unknown scheme, unknown option or a malformed option value (checked before construction).
    """
    scheme, location, query = parse_uri(uri)
    kwargs = check_options(scheme, query, options)
    return source_class(scheme)(location, **kwargs)
