"""The registrar: one object per camera pair (like ``rs.align``) that owns the registration caches, and the
functional API :func:`register_depth` / :func:`prepare_window` built on it (see docs/DRIVERS.md)."""
from __future__ import annotations

import enum
import functools
import threading
from typing import Any

import numpy as np

from edgepad.drivers.registration.corners import (_CULL_DEPTHS_M, Arithmetic, Footprint, Method, Semantics, _check,
                                                  _cull_key, _cull_range, _folded, corner_rays, fills_rectangle,
                                                  folded_coefficients, register_corners)
from edgepad.drivers.registration.cuda import _device_constants, _gpu_available, _register_torch
from edgepad.drivers.registration.fast import _pixel_data, _PixelData, _register_fast
from edgepad.drivers.registration.native import _register_native, _register_native_window, native_available
from edgepad.drivers.registration.reference import _fill_numpy, _fill_reference
from edgepad.drivers.registration.window import (SCAN, Window, _clip_window, _register_window, _window_bounds,
                                                 _WindowBounds)
from edgepad.errors import ConfigError
from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.types import Frame, Modality

_METHODS = ("auto", "native", "numpy", "generic", "reference", "torch")


class RegistrationMode(enum.Enum):
    """What a drivers ``Capture`` does with depth: register the whole ``FRAME`` to the target camera; pass it on
    unregistered for the consumer to register a face ``WINDOW`` with the capture's registrar; or ``OFF``."""

    FRAME = "frame"
    WINDOW = "window"
    OFF = "off"

    @classmethod
    def parse(cls, value: "RegistrationMode | str | bool") -> "RegistrationMode":
        """A mode from an enum member, its name/value, or a bool (True = FRAME, False = OFF)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            return cls.FRAME if value else cls.OFF
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown registration mode {value!r}; use frame, window or off",
                              key="registration") from None


class Registrar:
    """Depth → target-camera registration of one camera pair, with its caches (built once, like ``rs.align``).

    Args:
        depth_intrinsics: the depth camera (frames must have its size; its model wins over the frames').
        target_intrinsics: the camera to register to (output size = its size).
        depth_to_target: extrinsics depth camera → target camera (metres).
        depth_scale_m: metres per raw depth unit (the nearest-depth buckets that :meth:`prepare` builds).
        target_modality: recorded in ``registered_to`` of the output frames.
        semantics, footprint, arithmetic: see :func:`register_depth`.
        method: full-frame implementation: ``"auto"`` (torch on CUDA when torch is imported and sees a GPU, else
            native when its kernel builds, else numpy), ``"native"`` (the compiled kernel; numpy without it),
            ``"numpy"``, ``"generic"``, ``"reference"`` or ``"torch"``.
        threads: worker threads of the numpy path.
        device: torch device of the torch path (default: cuda when available, else cpu).

    Caches (per nearest-depth bucket): the fast path's per-pixel constants, the window path's culling bounds, and
    the torch path's device constants. Thread-safe.
    """

    def __init__(self, depth_intrinsics: Intrinsics, target_intrinsics: Intrinsics, depth_to_target: Extrinsics,
                 depth_scale_m: float, *, target_modality: Modality | str = Modality.RGB,
                 semantics: Semantics = "rsutil", footprint: Footprint = "rect", arithmetic: Arithmetic = "fast",
                 method: Method = "auto", threads: int = 1, device: str | None = None) -> None:
        for name, v in (("depth_intrinsics", depth_intrinsics), ("target_intrinsics", target_intrinsics)):
            if not isinstance(v, Intrinsics):
                raise ConfigError(f"{name} must be an Intrinsics", key=name)
        if semantics not in ("rsutil", "align"):
            raise ConfigError(f"unknown semantics {semantics!r}; use 'rsutil' or 'align'", key="semantics")
        if footprint not in ("rect", "sse"):
            raise ConfigError(f"unknown footprint {footprint!r}; use 'rect' or 'sse'", key="footprint")
        if method not in _METHODS:
            raise ConfigError(f"unknown registration method {method!r}", key="method",
                              suggestions=[m for m in ("auto", "native", "numpy", "reference", "torch")
                                           if m[0] == str(method)[:1]])
        if not (isinstance(depth_scale_m, (int, float)) and depth_scale_m > 0):
            raise ConfigError(f"depth_scale_m must be > 0, got {depth_scale_m!r}", key="depth_scale_m")
        self.depth_intrinsics = depth_intrinsics
        self.target_intrinsics = target_intrinsics
        self.depth_to_target = depth_to_target
        self.depth_scale_m = float(depth_scale_m)
        self.target_modality = Modality.parse(target_modality)
        self.semantics, self.footprint, self.arithmetic = semantics, footprint, arithmetic
        self.method, self.threads, self.device = method, int(threads), device
        self._folded = _folded(target_intrinsics, semantics, arithmetic)
        self._rect = fills_rectangle(depth_intrinsics, target_intrinsics, footprint)
        self._lock = threading.Lock()
        self._bounds: dict[tuple[float, float], _WindowBounds] = {}
        self._pixels: dict[Any, _PixelData] = {}
        self._device: dict[tuple[float, bool, str], tuple] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_rig(cls, rig: Rig, target: Modality | str = Modality.RGB, **options: Any) -> "Registrar":
        """The registrar of a rig's depth → ``target`` pair (``options`` as the constructor's keywords).

        Raises:
            ConfigError: the rig has no depth or no ``target`` camera, or no depth scale.
        """
        target = Modality.parse(target)
        intr = getattr(rig, "intrinsics", None) or {}
        if Modality.DEPTH not in intr or target not in intr:
            raise ConfigError(f"the rig has no depth/{target.value} camera pair to register depth", key="rig")
        return cls(intr[Modality.DEPTH], intr[target], rig.extrinsics(Modality.DEPTH, target),
                   rig.depth_scale_m or 0.0, target_modality=target, **options)

    def __repr__(self) -> str:
        d, t = self.depth_intrinsics, self.target_intrinsics
        return (f"Registrar({d.width}x{d.height} -> {self.target_modality.value} {t.width}x{t.height}, "
                f"{self.semantics}, {self.footprint}, {self.arithmetic})")

    # ------------------------------------------------------------------------------------------- caches
    def _cached(self, cache: dict, key: Any, build) -> Any:
        with self._lock:
            hit = cache.get(key)
            if hit is not None:
                self.hits += 1
                return hit
            self.misses += 1
            value = cache[key] = build()
            return value

    def _window_bounds(self, cull: tuple[float, float]) -> _WindowBounds:
        return self._cached(self._bounds, cull, lambda: _window_bounds(
            self.depth_intrinsics, self.target_intrinsics, self.depth_to_target, self.semantics, self._rect, cull))

    def _pixel_data(self, cull: tuple[float, float] | None) -> _PixelData:
        return self._cached(self._pixels, cull, lambda: _pixel_data(
            self.depth_intrinsics, self.target_intrinsics, self.depth_to_target, self.semantics, self._rect,
            self._folded, cull))

    def _device_constants(self, offset: float, folded: bool, device: str) -> tuple:
        return self._cached(self._device, (offset, folded, device), lambda: _device_constants(
            self.depth_intrinsics, self.target_intrinsics, self.depth_to_target, self.semantics, offset, folded,
            device))

    def cache_info(self) -> dict[str, int]:
        """``{"hits", "misses", "window_buckets", "frame_buckets"}`` of this registrar's caches."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "window_buckets": len(self._bounds),
                    "frame_buckets": len(self._pixels)}

    def prepare(self) -> int:
        """Build the face-window culling bounds for every nearest-depth bucket and the per-camera corner tables
        now (≈ 0.1 s per bucket on an idle 640×480 pair), so the first frame of a nearer face does not stall
        (70-150 ms otherwise), and the native kernel with each bucket's pixel table when it will serve windows
        (compiled once per machine). Returns the bucket count."""
        kernel_windows = self.method in ("auto", "native") and native_available()
        for off in ((-0.5, 0.5) if self._rect else (-0.5,)):
            if self._folded:
                folded_coefficients(self.depth_intrinsics, off, self.semantics, self.depth_to_target,
                                    self.target_intrinsics)
            else:
                corner_rays(self.depth_intrinsics, off, self.semantics)
        for d in _CULL_DEPTHS_M:
            self._window_bounds(_cull_key(d, self.depth_scale_m))
            if kernel_windows:  # the kernel's window reads the bucket's pixel table too
                self._pixel_data(_cull_key(d, self.depth_scale_m))
        return len(_CULL_DEPTHS_M)

    # ------------------------------------------------------------------------------------------- registration
    def _source(self, depth: Frame) -> Frame:
        """``depth`` checked, with this registrar's depth-camera model."""
        _check(depth, self.target_intrinsics, self.semantics, self.footprint)
        d = self.depth_intrinsics
        if (d.width, d.height) != (depth.data.shape[1], depth.data.shape[0]):
            raise ConfigError(f"registrar depth camera is {d.width}x{d.height} but the depth frame is "
                              f"{depth.data.shape[1]}x{depth.data.shape[0]}: use the rig of this stream "
                              f"configuration", key="rig")
        if depth.intrinsics == d:
            return depth
        return Frame(depth.modality, depth.data, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence,
                     depth.source, d, depth.depth_scale_m, None)

    def _result(self, depth: Frame, data) -> Frame:
        return Frame(Modality.DEPTH, data, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence,
                     depth.source, self.target_intrinsics, depth.depth_scale_m, self.target_modality)

    def frame(self, depth: Frame) -> Frame:
        """The whole depth frame re-rendered in the target camera (uint16 target H×W raw units, holes 0).

        Raises:
            ShapeError: not a depth frame. ConfigError: the frame has another size than the depth camera.
        """
        depth = self._source(depth)
        method = self.resolved_method()
        target, ext = self.target_intrinsics, self.depth_to_target
        if method == "native":
            data = _register_native(depth, target, ext, self.semantics, self.footprint, arithmetic=self.arithmetic,
                                    pixels=self._pixel_data)
        elif method == "torch":
            data = _register_torch(depth, target, ext, self.semantics, self.footprint, device=self.device,
                                   arithmetic=self.arithmetic, constants=self._device_constants)
        elif method == "numpy":
            data = _register_fast(depth, target, ext, self.semantics, self.footprint, threads=self.threads,
                                  arithmetic=self.arithmetic, pixels=self._pixel_data)
        else:
            _, z, x0, y0, x1, y1 = register_corners(depth, target, ext, semantics=self.semantics,
                                                    footprint=self.footprint, arithmetic=self.arithmetic)
            data = (_fill_numpy if method == "generic" else _fill_reference)(z, x0, y0, x1, y1, target)
        return self._result(depth, data)

    def resolved_method(self) -> str:
        """The full-frame implementation :meth:`frame` runs: ``"auto"`` → torch on a GPU, else native (the
        compiled kernel, built on first call), else numpy; ``"native"`` without its kernel → numpy."""
        method = self.method
        if method == "auto":
            method = "torch" if _gpu_available() else "native"
        if method == "native" and not native_available():
            method = "numpy"
        return method

    def bucket(self, depth: Frame) -> tuple[float, float] | None:
        """The nearest-depth bucket of ``depth`` (uint16 H×W; one pass over the frame, ≈ 0.1 ms at 640×480): the
        key of the window path's culling bounds, None when a pixel is nearer than the nearest bucket (no culling).
        Needs no face box, so the runtime computes it beside face location and passes it to :meth:`window`."""
        return _cull_range(np.asarray(depth.data).reshape(-1), float(depth.depth_scale_m))

    def window(self, depth: Frame, window: Window, bucket: tuple[float, float] | None | str = SCAN) -> Frame:
        """Registration of the target pixels in ``window`` = ``(x0, y0, x1, y1)`` (end-exclusive, clipped) only:
        values identical to :meth:`frame` there, 0 elsewhere; only depth pixels that can reach the window are
        projected, on the CPU: by the compiled kernel (the block of depth rows × columns that can reach the window)
        for ``auto``/``native`` when it is available, else by the numpy window path. ``bucket``: :meth:`bucket` of
        this same frame when computed ahead (default: computed here); another frame's bucket may cull pixels
        that reach the window."""
        depth = self._source(depth)
        win = _clip_window(window, self.target_intrinsics)
        if self.method in ("auto", "native") and native_available():
            data = _register_native_window(depth, self.target_intrinsics, self.depth_to_target, self.semantics,
                                           self.footprint, self.arithmetic, win, self._pixel_data,
                                           self._window_bounds, bucket)
        else:
            data = _register_window(depth, self.target_intrinsics, self.depth_to_target, self.semantics,
                                    self.footprint, self.arithmetic, win, bounds=self._window_bounds, bucket=bucket)
        return self._result(depth, data)


@functools.lru_cache(maxsize=16)
def _registrar(depth: Intrinsics, target: Intrinsics, ext: Extrinsics, scale: float, target_modality: Modality,
               semantics: str, footprint: str, arithmetic: str, method: str, threads: int) -> Registrar:
    """The registrar behind the functional API, one per camera pair and options (its caches persist)."""
    return Registrar(depth, target, ext, scale, target_modality=target_modality, semantics=semantics,
                     footprint=footprint, arithmetic=arithmetic, method=method, threads=threads)


def register_depth(depth: Frame, target: Intrinsics, depth_to_target: Extrinsics,
                   target_modality: Modality = Modality.RGB, *, method: Method = "auto",
                   semantics: Semantics = "rsutil", footprint: Footprint = "rect", threads: int = 1,
                   arithmetic: Arithmetic = "fast", window: Window | None = None) -> Frame:
    """Re-render ``depth`` in the ``target`` camera (librealsense ``align`` algorithm; nearest wins; holes 0).

    A functional front of :class:`Registrar` (one is kept per camera pair and options, with its caches).

    Args:
        depth: depth frame (uint16 H×W raw units, ``depth_scale_m`` set) in the depth camera.
        target: intrinsics of the camera to register to (output size = target size).
        depth_to_target: extrinsics depth camera → target camera (metres).
        target_modality: recorded in ``registered_to``.
        method: ``"auto"`` (torch on CUDA when present and torch is imported, else the compiled ``"native"``
            kernel, else numpy), ``"native"``, ``"numpy"``, ``"reference"`` or ``"torch"``.
        semantics: distortion semantics, ``"rsutil"`` or ``"align"`` (docs/DRIVERS.md).
        footprint: ``"rect"`` or ``"sse"`` (docs/DRIVERS.md).
        threads: worker threads of the numpy path (numpy releases the GIL; 2 helps on an idle 2-core CPU).
        arithmetic: ``"exact"`` repeats librealsense's float32 operation order (bit-identical to rs.align on the
            real D435 recording); ``"fast"`` folds rotation and focal length into cached per-pixel constants
            (about 3x less arithmetic; a corner moves to the neighbouring pixel when it lies within ~1e-4 px of a
            rounding edge). Every method gives identical output for a given arithmetic.
        window: ``(x0, y0, x1, y1)`` target pixels (end-exclusive, clipped to the image): compute only this
            window (e.g. around a face), with values identical to the full registration there and 0 elsewhere;
            only the depth pixels that can reach the window are projected (CPU; ``method`` is then ignored).

    Returns:
        A depth frame ``uint16 target.height × target.width`` in raw units with ``intrinsics=target``,
        ``registered_to=target_modality`` and the timestamps, sequence and scale of ``depth``.

    Raises:
        ShapeError: ``depth`` is not a depth frame.
        ConfigError: unknown method, semantics or footprint.
    """
    _check(depth, target, semantics, footprint)
    _folded(target, semantics, arithmetic)
    reg = _registrar(depth.intrinsics, target, depth_to_target, float(depth.depth_scale_m or 0.001),
                     Modality.parse(target_modality), semantics, footprint, arithmetic, method, int(threads))
    return reg.frame(depth) if window is None else reg.window(depth, window)


def prepare_window(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, depth_scale_m: float, *,
                   semantics: Semantics = "rsutil", footprint: Footprint = "rect",
                   arithmetic: Arithmetic = "fast") -> int:
    """:meth:`Registrar.prepare` of the functional API's registrar for this pair (see :func:`register_depth`).
    Returns the number of nearest-depth buckets prepared."""
    return _registrar(intr, target, ext, float(depth_scale_m), Modality.RGB, semantics, footprint, arithmetic,
                      "auto", 1).prepare()
