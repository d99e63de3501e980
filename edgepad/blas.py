"""Process-wide numeric runtime settings: the thread count of every OpenBLAS loaded in this process (numpy's and,
e.g., the copy bundled with the OpenCV wheel; the runtime pins it while a pipeline is open, docs/RUNTIME.md) and
glibc's malloc thresholds (:func:`keep_freed_memory`)."""
from __future__ import annotations

import ctypes
import os
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


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the heap settings :func:`keep_freed_memory` applies (bytes)
MMAP_THRESHOLD_B, TRIM_THRESHOLD_B = 32 << 20, 128 << 20
_HEAP_SET: list[bool] = []


def keep_freed_memory() -> bool:
    """Serve numpy's per-frame temporaries (0.1–5 MB) from the reused heap instead of fresh ``mmap`` pages.

    glibc maps every block above its mmap threshold (128 KiB until it adapts) anew and returns it at free: each
    such array then costs a page fault per 4 KiB on first touch (≈ 1 150 faults per IR crop resample), which on a
    loaded CPU stretches the call ~10× in wall time. Sets ``M_MMAP_THRESHOLD`` 32 MiB and ``M_TRIM_THRESHOLD``
    128 MiB, once per process (no getter exists, so it is not undone); skipped where the user tuned malloc through
    ``MALLOC_*_THRESHOLD_`` / ``GLIBC_TUNABLES`` or the C library has no ``mallopt``.

    Returns:
        True when the settings are in force (now or from an earlier call).
    """
    if _HEAP_SET:
        return _HEAP_SET[0]
    ok = False
    env = os.environ
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in env or "MALLOC_TRIM_THRESHOLD_" in env \
            or "malloc" in env.get("GLIBC_TUNABLES", ""):
        log.debug("malloc thresholds left as they are")
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_B))
            ok = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_B)) and ok
        except (OSError, AttributeError):
            ok = False
    _HEAP_SET.append(ok)
    return ok
