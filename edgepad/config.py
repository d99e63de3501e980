"""Strict, frozen configuration: dataclasses loaded from YAML/JSON mappings.

Unknown keys raise :class:`ConfigError` with close-match suggestions; nested dataclasses, tuples, enums,
``Path`` (resolved against the config file's folder) and ``X | None`` are converted by type hint.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from edgepad._optional import lazy
from edgepad.errors import ConfigError

T = TypeVar("T")

yaml = lazy("yaml")


def suggest(key: str, choices: typing.Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``key`` among ``choices`` (for "did you mean" messages)."""
    return difflib.get_close_matches(key, list(choices), n=n, cutoff=0.6)


def _convert(value: Any, hint: Any, where: str, base: Path | None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where, base)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: {'; '.join(errors)}", key=where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}", key=where,
                              suggestions=suggest(str(value), [str(a) for a in args]))
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {hint.__name__}, got {type(value).__name__}", key=where)
        return from_mapping(hint, value, base=base, where=where)
    if origin in (tuple, list, frozenset, collections.abc.Sequence, collections.abc.Collection) or hint in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", key=where)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}", key=where)
            return tuple(_convert(v, a, f"{where}[{i}]", base) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = tuple(_convert(v, item, f"{where}[{i}]", base) for i, v in enumerate(value))
        return frozenset(out) if origin is frozenset else out
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", key=where)
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, where, base): _convert(v, vt, f"{where}.{k}", base) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            names = [str(m.value) for m in hint]
            raise ConfigError(f"{where}: {value!r} is not one of {names}", key=where,
                              suggestions=suggest(str(value), names)) from None
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}", key=where)
        p = Path(value).expanduser()
        return (base / p) if (base is not None and not p.is_absolute()) else p
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}", key=where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}", key=where)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}", key=where)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}", key=where)
        return value
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], *, base: Path | None = None, where: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, strictly.

    Args:
        cls: a dataclass type; its field defaults are the one place defaults live.
        data: plain mapping (from YAML/JSON).
        base: folder that relative ``Path`` fields resolve against (the config file's folder).
        where: dotted prefix used in error messages.

    Raises:
        ConfigError: unknown key (with suggestions), missing required key, or a value of the wrong type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}", key=where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key `{path}` in {cls.__name__}", key=path, suggestions=suggest(str(key), fields))
        kwargs[key] = _convert(value, hints[key], path, base)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{cls.__name__}: missing required key(s) {missing}", key=missing[0])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}", key=where) from exc


def to_mapping(obj: Any) -> Any:
    """Inverse of :func:`from_mapping`: plain dicts/lists/str for YAML/JSON output."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {to_mapping(k): to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, frozenset, set)):
        return [to_mapping(v) for v in obj]
    return obj


def read_mapping(path: Path | str) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON file into a dict.

    Raises:
        ConfigError: the file is missing, unparsable or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", key=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not UTF-8 text (byte {exc.start})", key=str(path)) from exc
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    parse = yaml.safe_load if is_yaml else json.loads  # a YAML file without PyYAML: MissingDependencyError
    try:
        data = parse(text)
    except Exception as exc:  # either parser's error type
        raise ConfigError(f"cannot parse {path}: {exc}", key=str(path)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}", key=str(path))
    return data


def write_mapping(data: Mapping[str, Any], path: Path | str) -> None:
    """Write a mapping as YAML or JSON by suffix (atomically: temp file then rename)."""
    path = Path(path)
    plain = to_mapping(data)
    if path.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump(plain, sort_keys=False)
    else:
        text = json.dumps(plain, indent=2) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def load_config(cls: type[T], path: Path | str) -> T:
    """Load a dataclass config from a YAML/JSON file; relative paths resolve against its folder."""
    path = Path(path)
    return from_mapping(cls, read_mapping(path), base=path.resolve().parent)


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for result documents: numpy scalars and arrays as numbers and lists, anything
    else (paths, enums) as its string."""
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:   # numpy scalar
        return o.item()
    if hasattr(o, "tolist"):                                   # numpy array
        return o.tolist()
    return str(o)
