"""TensorRT backend: named-tensor I/O, buffers allocated once, one stream, optional CUDA graph.

One code path for TensorRT 8.6, 10.x and 11.x: ``num_io_tensors`` / ``get_tensor_name`` / ``set_input_shape`` /
``set_tensor_address`` / ``execute_async_v3`` (the bindings API is not used). Device buffers are allocated once
at the profile's maximum shape, addresses are set once, inputs are staged through pinned host memory, outputs
come back into pinned host buffers (returned as views: copy them to keep them). Before deserializing, the
engine's manifest is checked against the running TensorRT version and GPU (:meth:`ModelManifest.check_compatible`: a
``version_compatible`` plan is accepted on a later runtime TensorRT supports for it); a mismatch raises
EngineMismatchError (the fallback chain rebuilds), never a silent load. :func:`open_runtime` sets
``runtime.DLA_core`` for a DLA plan (the default -1 is not a DLA core) and ``engine_host_code_allowed`` for a
version-compatible plan (its embedded lean runtime) before :func:`deserialize`. Needs ``tensorrt`` and cuda-python
(or pycuda).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from edgepad._optional import require
from edgepad.engines.backend import BaseBackend
from edgepad.engines.manifest import ModelManifest
from edgepad.errors import (ConfigError, EngineBuildError, ManifestError,
                            PrecisionUnsupportedError, ShapeError)

log = logging.getLogger(__name__)

def open_runtime(trt, manifest: ModelManifest, logger):
    """``trt.Runtime`` prepared for the manifest's plan: ``DLA_core`` set for a DLA plan (checked against
    ``num_DLA_cores``), ``engine_host_code_allowed`` for a version-compatible plan. Call before deserializing."""
    runtime = trt.Runtime(logger)
    build = dict(manifest.build)
    if build.get("version_compatible"):
        runtime.engine_host_code_allowed = True
    dla = build.get("dla_core")
    if dla is not None:
        n = int(getattr(runtime, "num_DLA_cores", 0))
        if not 0 <= int(dla) < n:
            raise PrecisionUnsupportedError(f"{manifest.precision} on DLA core {dla}", f"a device with {n} DLA cores")
        runtime.DLA_core = int(dla)
    return runtime


def deserialize(runtime, plan: bytes, name: str):
    """Deserialize ``plan`` with a runtime from :func:`open_runtime`; EngineBuildError on a null engine."""
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"TensorRT could not deserialize {name} (null engine); rebuild it on this device")
    return engine


class TensorRTBackend(BaseBackend):
    """Runs a serialized TensorRT engine.

    Args:
        artifact: ``.engine`` plan with its manifest.
        manifest: the plan's manifest (trt_version and device must match this machine).
        cuda_graph: capture copy-in + execute + copy-out into a CUDA graph (static shapes only, not with DLA).
        cuda: ``auto`` | ``cuda-python`` | ``pycuda`` (see :class:`~edgepad.engines.cuda_mem.CudaMemory`).
        check_device: refuse an engine built for another TensorRT version or GPU (default; always on in the
            runtime).
    """

    kind = "trt"

    def __init__(self, artifact: Path | str, manifest: ModelManifest, cuda_graph: bool = False, cuda: str = "auto",
                 check_device: bool = True) -> None:
        super().__init__(artifact, manifest)
        if manifest.format != "tensorrt":
            raise ManifestError(f"{Path(artifact).name} is a {manifest.format} artifact, not a TensorRT engine",
                                field="format")
        self.cuda_graph = bool(cuda_graph)
        self.cuda = cuda
        self.check_device = check_device
        self._mem = None
        self._graph = None

    def _activate_impl(self) -> None:
        trt = require("tensorrt", extra="trt")
        from edgepad.engines.cuda_mem import CudaMemory
        mem = CudaMemory(self.cuda)
        try:
            self._setup(trt, mem)
        except BaseException:
            self._release()
            mem.close()
            raise

    def _setup(self, trt, mem) -> None:
        self._mem = mem
        if self.check_device:
            self.manifest.check_compatible(str(trt.__version__), self._device_of_manifest(mem))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = open_runtime(trt, self.manifest, self._logger)
        self._engine = deserialize(self._runtime, self.artifact_bytes(), self.artifact.name)
        self._context = self._engine.create_execution_context()
        self._device: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        self._is_input: dict[str, bool] = {}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        want = set(self.inputs) | set(self.outputs)
        if not want <= set(names):
            raise ManifestError(f"engine tensors {names} lack manifest tensors {sorted(want - set(names))}",
                                path=str(self.artifact), field="inputs")
        for name in names:
            is_in = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = tuple(self._engine.get_tensor_shape(name))
            if is_in and any(d < 0 for d in shape):
                shape = tuple(self._engine.get_tensor_profile_shape(name, 0)[2])   # max of profile 0
            elif not is_in and any(d < 0 for d in shape):
                max_batch = max((tuple(self._engine.get_tensor_profile_shape(n, 0)[2])[0] for n in self.inputs
                                 if any(d < 0 for d in self._engine.get_tensor_shape(n))), default=1)
                shape = tuple(max_batch if d < 0 else d for d in shape)
            self._host[name] = mem.pinned(shape, dtype)
            self._device[name] = mem.malloc(self._host[name].nbytes)
            self._is_input[name] = is_in
            self._context.set_tensor_address(name, self._device[name])
        self._shapes: dict[str, tuple[int, ...]] = {}
        warm = {n: np.zeros(tuple(1 if d == -1 else d for d in spec.shape), np.dtype(spec.dtype))
                for n, spec in self.inputs.items()}
        self._run(warm)   # TensorRT allocates on the first execution
        static = all(-1 not in spec.shape for spec in self.inputs.values())
        if self.cuda_graph:
            if not static:
                raise ConfigError("CUDA graphs need static input shapes; export with a fixed batch", key="cuda_graph")
            if "DLA" in (self.manifest.device or ""):
                raise ConfigError("CUDA graphs are not available with DLA engines", key="cuda_graph")
            mem.begin_capture()
            self._enqueue()
            self._graph = mem.end_capture()

    def _device_of_manifest(self, mem) -> str:
        dev = mem.device_name()
        dla = dict(self.manifest.build).get("dla_core")
        return dev + (f" DLA{dla}" if dla is not None else "")

    def _enqueue(self) -> None:
        mem = self._mem
        for name, is_in in self._is_input.items():
            if is_in:
                n = int(np.prod(self._shapes.get(name, self._host[name].shape)))
                mem.h2d(self._device[name], self._host[name].reshape(-1)[:n])
        if not self._context.execute_async_v3(mem.stream_handle):
            raise EngineBuildError("TensorRT execute_async_v3 failed")
        for name, is_in in self._is_input.items():
            if not is_in:
                shape = tuple(self._context.get_tensor_shape(name))
                n = int(np.prod(shape))
                mem.d2h(self._host[name].reshape(-1)[:n], self._device[name])

    def _run(self, feed: Mapping[str, np.ndarray]) -> None:
        for name in self.inputs:
            arr = feed[name]
            if self._shapes.get(name) != arr.shape:
                if any(a > m for a, m in zip(arr.shape, self._host[name].shape)):
                    raise ShapeError(name, self._host[name].shape, arr.shape)
                if not self._context.set_input_shape(name, arr.shape):
                    raise ShapeError(name, self.inputs[name].shape, arr.shape)
                self._shapes[name] = tuple(arr.shape)
            self._host[name].reshape(-1)[: arr.size] = arr.reshape(-1)
        if self._graph is not None:
            self._mem.launch(self._graph)
        else:
            self._enqueue()
        self._mem.synchronize()

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._run(feed)
        out = {}
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            n = int(np.prod(shape))
            out[name] = self._host[name].reshape(-1)[:n].astype(np.float32, copy=False)
        return out

    def _release(self) -> None:
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        self._graph = None

    def _deactivate_impl(self) -> None:
        self._release()
        if self._mem is not None:
            self._mem.close()
            self._mem = None
