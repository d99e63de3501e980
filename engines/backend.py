"""The inference-backend contract shared by TensorRT, ONNX Runtime and PyTorch.

Lifecycle: ``load_backend(path)`` -> ``activate()`` (allocate, warm up) -> ``infer(feed)`` … -> ``deactivate()``;
also a context manager. ``infer`` takes ``{"rgb": 1×3×H×W, "depth": 1×1×H×W, "ir": 1×1×H×W}`` float32 arrays
and returns ``{"score": (B,), "score_<m>": (B,)}`` float32 arrays. Returned arrays may be buffers that the
backend reuses on the next call: copy them to keep them.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal, Mapping, Protocol, runtime_checkable

import numpy as np

from edgepad.errors import EdgePadError, ShapeError
from edgepad.engines.formats import format_by_kind, format_for
from edgepad.engines.manifest import (ModelManifest, TensorSpec, VerifiedArtifact, read_manifest,
                                      read_verified)


@runtime_checkable
class InferenceBackend(Protocol):
    kind: str
    manifest: ModelManifest
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    def activate(self) -> None: ...
    def deactivate(self) -> None: ...
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def __enter__(self) -> "InferenceBackend": ...
    def __exit__(self, *exc: object) -> None: ...


class BackendStateError(EdgePadError):
    """``infer`` called on a backend that is not active (or after ``deactivate``)."""


class BaseBackend:
    """Shared lifecycle: public methods check state and call ``_activate_impl``/``_infer_impl``/``_deactivate_impl``.

    Subclasses set ``kind`` and implement the three ``_impl`` methods.
    """

    kind = "base"

    def __init__(self, artifact: Path | str, manifest: ModelManifest) -> None:
        self.artifact = Path(artifact)
        self.manifest = manifest
        self.inputs: Mapping[str, TensorSpec] = dict(manifest.inputs)
        self.outputs: Mapping[str, TensorSpec] = dict(manifest.outputs)
        self.is_active = False
        self.degraded = False  # set by a fallback chain when this is not the preferred backend
        self.verified: VerifiedArtifact | None = None   # set by load_backend(verify=True): the bytes to load

    def artifact_bytes(self) -> bytes:
        """The bytes to load: the verified ones when :func:`load_backend` checked them, else the file's now."""
        return self.verified.data if self.verified is not None else self.artifact.read_bytes()

    def __enter__(self) -> "BaseBackend":
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self._activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self._deactivate_impl()

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on one batch.

        Args:
            feed: name -> float32 array; every model input must be present with a matching shape
                (-1 axes accept any size).

        Returns:
            name -> array; buffers may be reused by the next call.

        Raises:
            BackendStateError: not activated.
            ShapeError: a missing input or a wrong shape/dtype.
        """
        if not self.is_active:
            raise BackendStateError(f"{self.kind} backend for {self.artifact.name} is not active; call activate()")
        self.check_feed(feed)
        return self._infer_impl(feed)

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        for name, spec in self.inputs.items():
            if name not in feed:
                raise ShapeError(name, spec.shape, "missing")
            arr = feed[name]
            if not isinstance(arr, np.ndarray) or arr.ndim != len(spec.shape) or any(
                    s not in (-1, a) for s, a in zip(spec.shape, arr.shape)):
                raise ShapeError(name, spec.shape, getattr(arr, "shape", type(arr).__name__))
            if arr.dtype != np.dtype(spec.dtype):
                raise ShapeError(f"{name}.dtype", spec.dtype, str(arr.dtype))

    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        pass

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _resolve(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_backend(artifact: Path | str, kind: Literal["auto", "trt", "onnxruntime", "torch"] = "auto", *,
                 verify: bool = True, **options: object) -> BaseBackend:
    """Open the backend for ``artifact`` after checking its manifest and sha256.

    With ``verify`` the artifact is read once here (:func:`read_verified`); the backend loads those bytes
    (ONNX Runtime, TensorRT), so replacing the file later changes nothing that runs.

    Args:
        artifact: ``.onnx``, ``.pt`` or ``.engine`` with a sidecar ``<artifact>.json``.
        kind: backend kind; ``auto`` picks by suffix.
        verify: check the artifact's sha256 against the manifest (refuse on mismatch).
        options: backend-specific options (e.g. ``threads`` for ONNX Runtime).

    Raises:
        ManifestError / IntegrityError: manifest missing or artifact altered.
        MissingDependencyError: the backend's package is not installed.
    """
    artifact = Path(artifact)
    fmt = format_for(artifact) if kind == "auto" else format_by_kind(kind)
    manifest = read_manifest(artifact)
    verified = read_verified(artifact, manifest) if verify else None
    cls = _resolve(fmt.backend)
    backend = cls(artifact, manifest, **options)
    backend.verified = verified
    return backend
