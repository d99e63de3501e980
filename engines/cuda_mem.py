"""Device memory, pinned host memory, one stream and CUDA graphs behind one small class.

``CudaMemory`` uses cuda-python (``cuda.bindings.runtime``) by default and pycuda where that is what the image
ships (``prefer="pycuda"``, or ``"auto"`` when cuda-python is absent). Calls of cuda-python return tuples led by
an error code; every call goes through :func:`_check`. Both bindings are lazy handles (imported on use), and nothing
creates a CUDA context until :class:`CudaMemory` is constructed.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from edgepad._optional import available, lazy
from edgepad.errors import ConfigError, EngineBuildError

_cudart = lazy("cuda.bindings.runtime", extra="trt")
_pycuda = lazy("pycuda.driver", extra="pycuda")
log = logging.getLogger(__name__)


class CudaError(EngineBuildError):
    """A CUDA runtime call failed (message names the call and the CUDA error)."""


def _check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python ``(err, *values)`` result; raise CudaError when ``err`` is not success."""
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if int(err) != 0:
        raise CudaError(f"{what} failed: {err!r}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


class CudaMemory:
    """One CUDA device, one non-default stream, device/pinned allocations and optional graph capture.

    Args:
        prefer: ``"auto"`` (cuda-python, else pycuda), ``"cuda-python"`` or ``"pycuda"``.
        device: CUDA device ordinal.

    Attributes:
        backend: ``"cuda-python"`` or ``"pycuda"``; ``stream_handle``: the stream as an int (for TensorRT).
    """

    def __init__(self, prefer: str = "auto", device: int = 0) -> None:
        if prefer not in ("auto", "cuda-python", "pycuda"):
            raise ConfigError(f"unknown CUDA binding {prefer!r}; use auto, cuda-python or pycuda", key="cuda")
        if prefer == "pycuda" or (prefer == "auto" and not available("cuda") and available("pycuda")):
            self.backend = "pycuda"
        else:
            self.backend = "cuda-python"
        self.device = int(device)
        self._device_ptrs: list[Any] = []
        self._host: list[tuple[int, np.ndarray]] = []
        self._graphs: list[Any] = []
        if self.backend == "cuda-python":
            self._rt = _cudart()
            _check(self._rt.cudaSetDevice(self.device), "cudaSetDevice")
            self._stream = _check(self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking),
                                  "cudaStreamCreate")
        else:
            self._cuda = _pycuda()
            self._cuda.init()
            self._ctx = self._cuda.Device(self.device).retain_primary_context()
            self._ctx.push()
            self._stream = self._cuda.Stream()

    # ------------------------------------------------------------------ info
    @property
    def stream_handle(self) -> int:
        if self.backend == "pycuda":
            return int(self._stream.handle)
        return int(self._stream)

    def device_name(self) -> str:
        """``"<GPU name> sm_<major><minor>"`` — the device part of engine cache keys."""
        if self.backend == "pycuda":
            d = self._cuda.Device(self.device)
            major, minor = d.compute_capability()
            return f"{d.name()} sm_{major}{minor}"
        prop = _check(self._rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return f"{name.strip(chr(0)).strip()} sm_{prop.major}{prop.minor}"

    # ------------------------------------------------------------------ memory
    def malloc(self, nbytes: int) -> int:
        """Device allocation of ``nbytes`` (>= 1); returns the device pointer as an int."""
        nbytes = max(int(nbytes), 1)
        if self.backend == "pycuda":
            buf = self._cuda.mem_alloc(nbytes)
            self._device_ptrs.append(buf)
            return int(buf)
        ptr = _check(self._rt.cudaMalloc(nbytes), "cudaMalloc")
        self._device_ptrs.append(ptr)
        return int(ptr)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Page-locked host array (staging for async copies; on Jetson the iGPU shares this DRAM)."""
        dtype = np.dtype(dtype)
        if self.backend == "pycuda":
            return self._cuda.pagelocked_empty(shape, dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(_check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        arr = np.frombuffer(raw, dtype=np.uint8, count=nbytes)[: int(np.prod(shape)) * dtype.itemsize]
        arr = arr.view(dtype).reshape(shape)
        self._host.append((ptr, arr))
        return arr

    def h2d(self, dst: int, src: np.ndarray) -> None:
        """Asynchronous host → device copy of ``src`` (pinned for true overlap) on the stream."""
        if self.backend == "pycuda":
            self._cuda.memcpy_htod_async(dst, src, self._stream)
            return
        _check(self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes,
                                        self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
               "cudaMemcpyAsync(H2D)")

    def d2h(self, dst: np.ndarray, src: int) -> None:
        """Asynchronous device → host copy into ``dst`` on the stream."""
        if self.backend == "pycuda":
            self._cuda.memcpy_dtoh_async(dst, src, self._stream)
            return
        _check(self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes,
                                        self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
               "cudaMemcpyAsync(D2H)")

    def synchronize(self) -> None:
        if self.backend == "pycuda":
            self._stream.synchronize()
        else:
            _check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    # ------------------------------------------------------------------ CUDA graphs
    @property
    def supports_graphs(self) -> bool:
        return self.backend == "cuda-python"

    def begin_capture(self) -> None:
        """Start capturing the stream's work into a graph (cuda-python only)."""
        if not self.supports_graphs:
            raise ConfigError("CUDA graphs need cuda-python (pycuda has no stream capture here)", key="cuda_graph")
        _check(self._rt.cudaStreamBeginCapture(
            self._stream, self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture")

    def end_capture(self) -> Any:
        """Finish the capture; returns an executable graph for :meth:`launch`."""
        graph = _check(self._rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        gexec = _check(self._rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self._graphs.append((graph, gexec))
        return gexec

    def launch(self, gexec: Any) -> None:
        _check(self._rt.cudaGraphLaunch(gexec, self._stream), "cudaGraphLaunch")

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Free every allocation, graph and the stream (idempotent)."""
        if self.backend == "pycuda":
            for buf in self._device_ptrs:
                buf.free()
            self._device_ptrs.clear()
            if getattr(self, "_ctx", None) is not None:
                self._ctx.pop()
                self._ctx = None
            return
        rt = self._rt
        for graph, gexec in self._graphs:
            rt.cudaGraphExecDestroy(gexec)
            rt.cudaGraphDestroy(graph)
        self._graphs.clear()
        for ptr in self._device_ptrs:
            rt.cudaFree(ptr)
        self._device_ptrs.clear()
        for ptr, _ in self._host:
            rt.cudaFreeHost(ptr)
        self._host.clear()
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
            self._stream = None

    def __enter__(self) -> "CudaMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
