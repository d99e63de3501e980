"""Process-wide BLAS thread control: the thread count of every OpenBLAS loaded in this process (numpy's and, e.g.,
the copy bundled with the OpenCV wheel). The runtime pins it while a pipeline is open (docs/RUNTIME.md)."""
from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any, Mapping

log = logging.getLogger(__name__)

_BLAS_LIBS: dict[str, tuple[Any, Any]] = {}


def _openblas_apis() -> dict[str, tuple[Any, Any]]:
    """``{library path: (set_num_threads, get_num_threads)}`` of every OpenBLAS loaded in this process; empty where
    that cannot be found (non-Linux, MKL …)."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        with open("/proc/self/maps") as f:
            paths = list(dict.fromkeys(p for p in (ln.split(maxsplit=5)[-1].strip() for ln in f if "/" in ln)
                                       if "openblas" in p.rsplit("/", 1)[-1].lower()))
    except OSError:
        return {}
    out = {}
    for path in paths:
        cached = _BLAS_LIBS.get(path)
        if cached is not None:
            out[path] = cached
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if setter is not None and getter is not None and path not in out:
                    setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                    out[path] = _BLAS_LIBS[path] = (setter, getter)
    return out


def blas_threads() -> dict[str, int]:
    """Thread count of every OpenBLAS loaded in this process, by library path (empty when none can be queried)."""
    return {path: int(api[1]()) for path, api in _openblas_apis().items()}


def set_blas_threads(n: int | Mapping[str, int]) -> dict[str, int]:
    """Set the thread count of every loaded OpenBLAS (process-wide), or per library from a mapping as returned.

    Returns:
        the previous counts ``{library path: threads}`` (pass them back to restore); empty when not possible.
    """
    prev = {}
    for path, (setter, getter) in _openblas_apis().items():
        want = n.get(path) if isinstance(n, Mapping) else n
        if want is None:
            continue
        prev[path] = int(getter())
        setter(int(want))
    if not prev:
        log.debug("no OpenBLAS thread control in this process; BLAS threads left as they are")
    return prev
