"""The device fallback chain: engine → rebuild from ONNX → ONNX Runtime, with the degradation recorded.

:func:`open_backend` returns an activated backend. The preferred engine is used when it loads and matches this
TensorRT version and GPU; otherwise the engine is rebuilt from its ONNX (when allowed and TensorRT works); and
as a last resort the ONNX runs in ONNX Runtime. Any backend other than the requested engine has
``degraded = True`` and ``fallback_reasons`` listing why, so the runtime can mark its decisions degraded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from edgepad.engines.backend import BaseBackend, load_backend
from edgepad.engines.build import BuildConfig, build_engine
from edgepad.engines.manifest import read_manifest
from edgepad.errors import EdgePadError

log = logging.getLogger(__name__)


def open_backend(engine: Path | str | None, onnx: Path | str | None, *, config: Any | None = None,
                 cache: Path | str | None = None, allow_rebuild: bool = True, allow_onnxruntime: bool = True,
                 trt_options: Mapping[str, Any] | None = None, ort_options: Mapping[str, Any] | None = None
                 ) -> BaseBackend:
    """Open the best available backend for a model, falling back step by step.

    Args:
        engine: the preferred ``.engine`` (None = start with the rebuild step).
        onnx: the ONNX the engine was (or will be) built from; needed for the rebuild and ORT steps.
        config: BuildConfig for a rebuild (default: the precision of the ONNX).
        cache: engine cache folder for a rebuild.
        allow_rebuild / allow_onnxruntime: enable those steps.
        trt_options / ort_options: backend options (e.g. ``{"cuda_graph": True}``, ``{"threads": 2}``).

    Returns:
        an activated backend with ``degraded`` and ``fallback_reasons`` set.

    Raises:
        EdgePadError: the last error when every allowed step failed (reasons chained in the message).
    """
    reasons: list[str] = []
    if engine is not None:
        try:
            be = load_backend(engine, "trt", **dict(trt_options or {}))
            be.activate()
            be.fallback_reasons = []
            return be
        except (EdgePadError, ImportError) as exc:
            reasons.append(f"engine {Path(engine).name}: {type(exc).__name__}: {exc}")
            log.warning("engine %s unusable: %s", engine, exc)
    if onnx is not None and allow_rebuild:
        try:
            cfg = config or BuildConfig(precision=read_manifest(onnx).precision)
            path, _ = build_engine(onnx, cfg, cache)
            be = load_backend(path, "trt", **dict(trt_options or {}))
            be.activate()
            reasons.append(f"rebuilt {path.name} from {Path(onnx).name} (not validated on this device)")
            return _mark(be, reasons)
        except (EdgePadError, ImportError) as exc:
            reasons.append(f"rebuild from {Path(onnx).name}: {type(exc).__name__}: {exc}")
            log.warning("rebuilding the engine from %s failed: %s", onnx, exc)
    if onnx is not None and allow_onnxruntime:
        try:
            be = load_backend(onnx, "onnxruntime", **dict(ort_options or {}))
            be.activate()
            reasons.append(f"running {Path(onnx).name} in ONNX Runtime")
            return _mark(be, reasons)
        except (EdgePadError, ImportError) as exc:
            reasons.append(f"onnxruntime on {Path(onnx).name}: {type(exc).__name__}: {exc}")
    raise EdgePadError("no backend could be opened: " + " | ".join(reasons or ["no engine or ONNX given"]))


def _mark(backend: BaseBackend, reasons: list[str]) -> BaseBackend:
    backend.degraded = True
    backend.fallback_reasons = list(reasons)
    log.warning("using a degraded backend (%s): %s", backend.kind, "; ".join(reasons))
    return backend
