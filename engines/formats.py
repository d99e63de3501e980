"""The one capability table: artifact formats, their backends, precisions, extras and GPU needs.

Read by the CLI (`edgepad doctor`, `export`, `build`), :func:`edgepad.engines.backend.load_backend` and bench.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepad.config import suggest
from edgepad.errors import ConfigError


@dataclass(frozen=True)
class FormatInfo:
    name: str
    suffix: str
    backend: str          # "module:Class", imported on first use
    kind: str             # load_backend kind
    precisions: tuple[str, ...]
    extra: str
    modules: tuple[str, ...]   # import names it needs
    needs_gpu: bool


FORMATS: tuple[FormatInfo, ...] = (
    FormatInfo("torch", ".pt", "edgepad.engines.torch_backend:TorchBackend", "torch", ("fp32", "fp16"), "torch",
               ("torch",), False),
    FormatInfo("onnx", ".onnx", "edgepad.engines.ort_backend:OnnxRuntimeBackend", "onnxruntime",
               ("fp32", "fp16", "int8"), "onnx", ("onnxruntime",), False),
    FormatInfo("tensorrt", ".engine", "edgepad.engines.trt_backend:TensorRTBackend", "trt",
               ("fp32", "fp16", "int8"), "trt", ("tensorrt", "cuda.bindings"), True),
)


def format_for(path: Path | str) -> FormatInfo:
    """Format of an artifact by suffix; raises ConfigError for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    for f in FORMATS:
        if f.suffix == suffix:
            return f
    raise ConfigError(f"unknown model artifact suffix {suffix!r} ({path}); known: "
                      f"{', '.join(f.suffix for f in FORMATS)}", key="artifact")


def format_by_kind(kind: str) -> FormatInfo:
    """Format by backend kind (``torch``, ``onnxruntime``, ``trt``)."""
    for f in FORMATS:
        if kind in (f.kind, f.name):
            return f
    kinds = [f.kind for f in FORMATS]
    raise ConfigError(f"unknown backend kind {kind!r}", key="backend", suggestions=suggest(kind, kinds))
