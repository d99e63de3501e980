"""The edgepad error tree: one root, typed subclasses that carry data.

Every error a user can cause derives from :class:`EdgePadError`, so an integrator can catch one type.
:class:`EdgePadInternalError` sits outside the tree on purpose: it marks a bug in edgepad itself.
"""
from __future__ import annotations

from typing import Any, Sequence


class EdgePadError(Exception):
    """Root of every error edgepad raises on bad input, configuration or environment."""


class ConfigError(EdgePadError, ValueError):
    """A configuration value or key is invalid.

    Args:
        message: what is wrong and what to do.
        key: the offending key (dotted path), if any.
        suggestions: close matches for an unknown key.
    """

    def __init__(self, message: str, key: str | None = None, suggestions: Sequence[str] = ()) -> None:
        self.key = key
        self.suggestions = tuple(suggestions)
        if self.suggestions:
            message += " (did you mean " + " or ".join(f"`{s}`" for s in self.suggestions) + "?)"
        super().__init__(message)


class UsageError(ConfigError):
    """A command line is malformed: unknown option, missing argument, a value out of range (NaN, negative)."""


class MissingDependencyError(EdgePadError, ImportError):
    """An optional heavy dependency is not installed.

    Args:
        module: the import name that failed (e.g. ``"onnxruntime"``).
        extra: the pip extra that provides it (e.g. ``"onnx"``).
        hint: a platform-specific hint.
    """

    def __init__(self, module: str, extra: str | None, hint: str = "") -> None:
        self.module = module
        self.extra = extra
        msg = f"edgepad needs the optional dependency `{module}`"
        if extra:
            msg += f": pip install 'edgepad[{extra}]'"
        if hint:
            msg += f". {hint}"
        super().__init__(msg, name=module)


class SourceError(EdgePadError):
    """A frame source failed (open error, unplugged camera, corrupt recording)."""

    def __init__(self, message: str, uri: str = "") -> None:
        self.uri = uri
        super().__init__(f"{uri}: {message}" if uri else message)


class EndOfStream(EdgePadError):
    """A finite source (recording, synthetic clip) has no more frames."""

    def __init__(self, uri: str = "") -> None:
        self.uri = uri
        super().__init__(f"end of stream: {uri}" if uri else "end of stream")


class CalibrationError(EdgePadError):
    """Calibration could not produce a trustworthy result."""

    def __init__(self, message: str, rms_px: float | None = None, views: int | None = None) -> None:
        self.rms_px = rms_px
        self.views = views
        super().__init__(message)


class ShapeError(EdgePadError, ValueError):
    """An array or tensor has the wrong shape.

    Args:
        name: the tensor's name.
        expected: the expected shape (``-1`` or ``None`` = any size).
        actual: the shape received.
    """

    def __init__(self, name: str, expected: Any, actual: Any) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(f"{name}: expected shape {expected}, got {actual}")


class ManifestError(EdgePadError):
    """A model manifest is missing, unreadable, or contradicts its artifact."""

    def __init__(self, message: str, path: str | None = None, field: str | None = None) -> None:
        self.path = path
        self.field = field
        super().__init__(message)


class IntegrityError(ManifestError):
    """An artifact's sha256 or signature does not match its manifest."""


class CheckpointError(ManifestError):
    """A training checkpoint is unreadable, lacks a field, or holds pickled objects outside the allow-list."""


class EngineBuildError(EdgePadError):
    """Building a TensorRT engine (or converting an ONNX model) failed."""


class EngineMismatchError(EdgePadError):
    """A cached engine was built for another TensorRT version, device or ONNX.

    Args:
        field: what differs (``"trt_version"``, ``"device"``, ``"onnx_sha256"`` …).
    """

    def __init__(self, field: str, expected: Any, actual: Any) -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        super().__init__(f"engine {field} mismatch: expected {expected!r}, found {actual!r}; rebuild the engine")


class PrecisionUnsupportedError(EdgePadError):
    """The requested precision is not supported on this device (never downgraded silently)."""

    def __init__(self, requested: str, device: str) -> None:
        self.requested = requested
        self.device = device
        super().__init__(f"precision {requested} is not supported on {device}")


class ValidationError(EdgePadError):
    """A converted artifact failed its accuracy gate; ``report`` holds the figures."""

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)


class DatasetError(EdgePadError, ValueError):
    """A dataset, protocol file or score file is malformed or inconsistent."""


class MetricError(EdgePadError, ValueError):
    """A metric is undefined on the given scores (e.g. a class or species with no samples)."""


class EdgePadInternalError(RuntimeError):
    """A bug in edgepad itself (outside the EdgePadError tree on purpose): please report it."""
