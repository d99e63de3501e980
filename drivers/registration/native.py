"""The compiled path (``method="native"``): ``_kernel.c`` does the fast path's float32 corner arithmetic and the
min z-buffer fill in one pass per pixel. It is compiled on first use with the system C compiler (no network, no
build step at install) into a per-user cache and loaded with ctypes; without a compiler (or with
``EDGEPAD_NATIVE=0``) the numpy path runs instead, with one log line. Output equals the numpy path's. Built with
``-march=native`` where the compiler takes it (same float results; the CPU is part of the cache key). The same library
carries the runtime's face crops (:class:`CropSampler`, :func:`crop_sampler`), the sensor monitor's frozen-frame
thumbnails (:class:`BlockSums`, :func:`block_sums`), the face detector's area resize (:class:`AreaResize`,
:func:`area_resize`) and the model inputs' arithmetic (:class:`InputArithmetic`, :func:`input_arithmetic`)."""
from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from edgepad.drivers.registration.corners import (_F32, Arithmetic, Footprint, Semantics, _cull_range,
                                                  _distorts_target, _folded, fills_rectangle)
from edgepad.drivers.registration.fast import _pixel_data, _PixelData
from edgepad.drivers.registration.window import SCAN, _window_sources
from edgepad.errors import EdgePadInternalError
from edgepad.geometry import Extrinsics, Intrinsics
from edgepad.types import Frame

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_kernel.c")
#: -ffp-contract=off and no -ffast-math: every float32 operation rounds as numpy's (no FMA, no reassociation)
_FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99", "-ffp-contract=off", "-fno-fast-math")
#: tuned for the CPU it is built on (AVX2 / AVX-512 on x86, the core's extensions on ARM): the same float results
#: (still no contraction, no reassociation), wider integer and float loops; tried first, then _FLAGS alone
#: (``EDGEPAD_NATIVE_TUNE=0``: _FLAGS only, e.g. for a kernel cache shared by different CPUs' builds)
_TUNE = ("-march=native",)
_LOCK = threading.Lock()
_STATE: dict = {}
#: per _PixelData (a registrar caches those): the kernel's constant arguments, so a frame costs one ctypes call
_ARGS: "weakref.WeakKeyDictionary[_PixelData, tuple]" = weakref.WeakKeyDictionary()


def _cache_dir() -> Path:
    env = os.environ.get("EDGEPAD_KERNEL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgepad"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    """The CPU a tuned kernel is built for (part of its cache key, so a cache shared between machines never loads
    another CPU's build): the model and feature lines of /proc/cpuinfo, else ``platform.processor()``."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor()
    keys = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(sorted({ln for ln in lines if ln.split(":")[0].strip() in keys})) or platform.processor()


def _compiled(cc: str, flags: tuple[str, ...], src: bytes, version: str) -> tuple[Path | None, str]:
    """The cached build of ``_kernel.c`` with ``flags``, compiled now if missing: ``(path or None, why not)``."""
    key = hashlib.sha256(src + " ".join(flags).encode() + version.encode() + platform.machine().encode()
                         + (_cpu_id().encode() if _TUNE[0] in flags else b""))
    lib = _cache_dir() / f"register-{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib, ""
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
        os.close(fd)
        r = subprocess.run([cc, *flags, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            os.unlink(tmp)
            return None, f"{Path(cc).name} failed: {r.stderr.strip()[:200]}"
        os.replace(tmp, lib)  # atomic: concurrent builders agree
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"kernel build failed: {exc}"
    return lib, ""


def _build() -> tuple[Callable | None, str]:
    """Compile (or reuse) the kernel; returns ``(function or None, description)``."""
    if os.environ.get("EDGEPAD_NATIVE", "1") == "0":
        return None, "numpy (EDGEPAD_NATIVE=0)"
    if not _SOURCE.exists():
        return None, f"numpy ({_SOURCE.name} not installed)"
    cc = _compiler()
    if cc is None:
        return None, "numpy (no C compiler found: set CC or install gcc)"
    src = _SOURCE.read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"numpy ({cc} --version failed: {exc})"
    failed = []
    tuned = () if os.environ.get("EDGEPAD_NATIVE_TUNE", "1") == "0" else ((*_FLAGS, *_TUNE),)
    for flags in (*tuned, _FLAGS):
        lib, why = _compiled(cc, flags, src, version)
        if lib is not None:
            break
        failed.append(why)
    else:
        return None, f"numpy ({'; '.join(failed)})"
    try:
        so = ctypes.CDLL(str(lib))  # CDLL releases the GIL during a call
        fn = so.edgepad_register
        runs = so.edgepad_register_runs
        sampler = CropSampler(so)
        blocks = BlockSums(so)
        area = AreaResize(so)
        inputs = InputArithmetic(so)
    except (OSError, AttributeError) as exc:
        return None, f"numpy (kernel load failed: {exc})"
    fn.restype = ctypes.c_int
    ptr = ctypes.c_void_p
    fn.argtypes = [ptr, ctypes.c_int64, ptr, ctypes.c_int, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ctypes.c_int, ptr,
                   ctypes.c_int, ctypes.c_int]
    runs.restype = ctypes.c_int
    runs.argtypes = [ptr, ptr, ctypes.c_int, *fn.argtypes[2:]]
    fn.runs, fn.crop_sampler, fn.block_sums = runs, sampler, blocks
    fn.area_resize = area
    fn.input_arithmetic = inputs
    return fn, f"native C kernel ({lib}{', tuned for this CPU' if flags != _FLAGS else ''})"


def _kernel() -> Callable | None:
    """The loaded kernel, built on first call (None = unavailable; logged once)."""
    if "fn" not in _STATE:
        with _LOCK:
            if "fn" not in _STATE:
                fn, why = _build()
                if fn is None:
                    log.warning("depth registration: compiled kernel unavailable, using %s", why)
                _STATE["fn"], _STATE["why"] = fn, why
    return _STATE["fn"]


class CropSampler:
    """The face crops compiled with the registration kernel (``_kernel.c``), passed to
    :func:`edgepad.preprocess.crop_face` as ``sample`` by the runtime (:class:`edgepad.preprocess.Sampler`).

    ``box`` is ``preprocess._sample_box`` bit for bit; ``lattice`` and ``resample`` are the IR and rgb crops, equal to
    numpy's up to the float summation order (a value moves by one grey level at a rounding tie; docs/PERFORMANCE.md
    §0j); ``reproject`` is the IR crop's lattice (``geometry.reproject``, equal but for the rotation's last bits).
    Every method raises EdgePadInternalError on arguments outside its contract (callers check them)."""

    def __init__(self, so: ctypes.CDLL) -> None:
        ptr, i32, f64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        self._box = so.edgepad_bilinear_box_u8
        self._box.restype = None
        self._box.argtypes = [ptr, i32, i32, ptr, ptr, i32, i32, ptr, ptr, ptr]
        self._lattice = so.edgepad_lattice_box_u8
        self._lattice.restype = None
        self._lattice.argtypes = [ptr, i32, i32, ptr, i32, ptr, ptr, i32, i32, ptr, ptr, ptr]
        self._resample = so.edgepad_resample_u8
        self._resample.restype = ctypes.c_int
        self._resample.argtypes = [ptr, i32, i32, i32, f64, f64, f64, i32, i32, ptr]
        self._reproject = so.edgepad_reproject
        self._reproject.restype = None
        self._reproject.argtypes = [ptr, ctypes.c_int64, f64, ptr, i32, i32, ptr]
        self._rig: tuple = (None, None, None, None)  # (src, dst, src_to_dst, (params, undist, dist)) of the last call

    def _rig_args(self, src: Intrinsics, dst: Intrinsics, ext: Extrinsics) -> tuple[np.ndarray, int, int]:
        """``edgepad_reproject``'s float64 parameters and lens modes for a camera pair, kept for the last pair
        seen (a runtime crops with the same cameras frame after frame; frames may carry equal copies)."""
        last = self._rig
        if all(a is b or a == b for a, b in zip(last[:3], (src, dst, ext))):
            return last[3]
        p = np.concatenate([[src.fx, src.fy, src.cx, src.cy], src.dist5, ext.r.reshape(-1), ext.t,
                            [dst.fx, dst.fy, dst.cx, dst.cy], dst.dist5]).astype(np.float64)
        # the models geometry.undistort / geometry.distort apply (none where no coefficient is set)
        undist = {"brown_conrady": 1, "inverse_brown_conrady": 2}.get(src.distortion, 0) if src.has_distortion else 0
        dist = 0 if not dst.has_distortion else 1 if dst.distortion == "brown_conrady" else 2
        args = (p, undist, dist)
        self._rig = (src, dst, ext, args)
        return args

    def reproject(self, uv: np.ndarray, depth_m: float, src: Intrinsics, dst: Intrinsics,
                  src_to_dst: Extrinsics) -> np.ndarray:
        """``geometry.reproject`` compiled (``edgepad_reproject``): src pixels ``(..., 2)`` lifted onto the plane
        ``z_src = depth_m`` (m) → dst pixels float64 ``(..., 2)``, NaN behind dst. Equal to numpy's bit for bit but
        for the rotation ``R p + t``, summed in another order than numpy's matrix product: within 1e-12 ×
        max(1 px, |pixel|) on realistic rigs (tests/drivers/test_crop_kernels.py).

        Raises:
            EdgePadInternalError: pixels not ``(..., 2)`` or a non-finite depth.
        """
        uv = np.ascontiguousarray(uv, np.float64)
        if uv.ndim < 1 or uv.shape[-1] != 2 or not math.isfinite(depth_m):
            raise EdgePadInternalError(f"reprojection: (..., 2) pixels and a finite depth expected, got {uv.shape}, "
                                       f"{depth_m!r}")
        p, undist, dist = self._rig_args(src, dst, src_to_dst)
        out = np.empty(uv.shape, np.float64)
        self._reproject(uv.ctypes.data, uv.size // 2, float(depth_m), p.ctypes.data, undist, dist, out.ctypes.data)
        return out

    def box(self, img: np.ndarray, mx: np.ndarray, my: np.ndarray, k: int) -> np.ndarray:
        """Bilinear samples of a uint8 ``H×W`` image at float32 ``N×N`` pixel coordinates (0 outside), then the
        mean of each ``k × k`` block rounded to uint8 ``(N/k)×(N/k)``: ``preprocess._bilinear`` (float32
        coordinates) + ``preprocess._box_mean_u8``, bit for bit.

        Raises:
            EdgePadInternalError: not a uint8 image and float32 ``N×N`` maps with ``k | N``.
        """
        img = np.ascontiguousarray(img)
        mx = np.ascontiguousarray(mx, np.float32)
        my = np.ascontiguousarray(my, np.float32)
        n = mx.shape[0]
        if img.dtype != np.uint8 or img.ndim != 2 or mx.shape != (n, n) or my.shape != (n, n) or k < 1 or n % k:
            raise EdgePadInternalError(f"IR sampler: uint8 H×W and float32 N×N with k | N expected, got "
                                       f"{img.dtype} {img.shape}, {mx.shape}, k={k}")
        h, w = img.shape
        out = np.empty((n // k, n // k), np.uint8)
        scratch = np.empty((6 + k) * n, np.float32)      # offsets, 4 weight rows, spare, k sample rows
        pad = np.empty((h + 4) * (w + 4), np.uint8)      # the image with a 2-px zero border
        self._box(img.ctypes.data, h, w, mx.ctypes.data, my.ctypes.data, n, k, out.ctypes.data, scratch.ctypes.data,
                  pad.ctypes.data)
        return out

    def lattice(self, img: np.ndarray, lat: np.ndarray, g0: np.ndarray, fr: np.ndarray, k: int) -> np.ndarray:
        """The IR crop from the projection lattice (``preprocess._projected_lattice``): uint8 ``H×W`` image, finite
        float64 ``(G, G, 2)`` lattice, int32 cells ``g0`` in ``[0, G − 2]`` and float64 fractions ``fr``, both of
        length ``N = S·k`` → uint8 ``S×S``. The ``N×N`` maps are interpolated row by row in C (never stored).

        Raises:
            EdgePadInternalError: arguments outside that contract.
        """
        img = np.ascontiguousarray(img)
        lat = np.ascontiguousarray(lat, np.float64)
        g0 = np.ascontiguousarray(g0, np.int32)
        fr = np.ascontiguousarray(fr, np.float64)
        n, grid = len(g0), lat.shape[0]
        if (img.dtype != np.uint8 or img.ndim != 2 or lat.shape != (grid, grid, 2) or grid < 2 or fr.shape != (n,)
                or k < 1 or n % k or n == 0 or g0.min() < 0 or g0.max() > grid - 2 or not np.isfinite(lat).all()):
            raise EdgePadInternalError(f"IR lattice sampler: uint8 H×W, finite (G, G, 2) lattice and N cells in "
                                       f"[0, G-2] with k | N expected, got {img.dtype} {img.shape}, {lat.shape}, "
                                       f"{g0.shape}, k={k}")
        h, w = img.shape
        out = np.empty((n // k, n // k), np.uint8)
        scratch = np.empty((7 + k) * n, np.float32)      # offsets, 4 weight rows, x and y rows, k sample rows
        pad = np.empty((h + 4) * (w + 4), np.uint8)
        self._lattice(img.ctypes.data, h, w, lat.ctypes.data, grid, g0.ctypes.data, fr.ctypes.data, n, k,
                      out.ctypes.data, scratch.ctypes.data, pad.ctypes.data)
        return out

    def resample(self, img: np.ndarray, x0: float, y0: float, side: float, size_px: int, k: int) -> np.ndarray:
        """The axis-aligned rgb crop: uint8 ``H×W×C`` (or ``H×W``), window ``(x0, y0, side)`` in continuous pixels,
        ``k`` sub-samples per output pixel and axis → uint8 ``S×S×C`` (``S×S``); 0 outside the image.

        Raises:
            EdgePadInternalError: not a uint8 image, a non-finite window or ``side <= 0``, ``size_px < 1``, ``k < 1``.
        """
        img = np.ascontiguousarray(img)
        if (img.dtype != np.uint8 or img.ndim not in (2, 3) or not all(np.isfinite((x0, y0, side))) or side <= 0
                or size_px < 1 or k < 1):
            raise EdgePadInternalError(f"rgb resampler: uint8 H×W(×C), finite window, S, k >= 1 expected, got "
                                       f"{img.dtype} {img.shape}, {(x0, y0, side)}, S={size_px}, k={k}")
        h, w = img.shape[:2]
        c = img.shape[2] if img.ndim == 3 else 1
        out = np.empty((size_px, size_px) + img.shape[2:], np.uint8)
        if self._resample(img.ctypes.data, h, w, c, float(x0), float(y0), float(side), size_px, k, out.ctypes.data):
            raise MemoryError("rgb resampler: out of memory")
        return out


def crop_sampler() -> CropSampler | None:
    """The compiled face-crop drop-ins (:class:`CropSampler`), or None where the kernel is unavailable (built on
    first call, as :func:`native_available`)."""
    fn = _kernel()
    return None if fn is None else fn.crop_sampler


class BlockSums:
    """The frozen-frame thumbnails of :mod:`edgepad.runtime.sensors` compiled with the registration kernel
    (``edgepad_block_sums``, ``edgepad_fewest_changed`` in ``_kernel.c``): exact integer sums, so equal to the numpy
    path value for value."""

    def __init__(self, so: ctypes.CDLL) -> None:
        ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        self._sums = so.edgepad_block_sums
        self._sums.restype = i32
        self._sums.argtypes = [ptr, i32, i32, i32, i32, i32, ptr, ptr]
        self._fewest = so.edgepad_fewest_changed
        self._fewest.restype = i64
        self._fewest.argtypes = [ptr, ptr, i32, i64]

    def sums(self, img: np.ndarray, s: int) -> tuple[np.ndarray, bool]:
        """Block sums of a uint8/uint16 ``H×W`` or ``H×W×C`` image in ``s × s`` blocks → uint32 ``(H//s, W//s[, C])``
        (``edgepad.runtime.sensors.thumbnail``'s layout), and whether all sums are equal.

        Raises:
            EdgePadInternalError: another dtype or rank, or ``s`` outside 1..min(H, W).
        """
        a = np.ascontiguousarray(img)
        if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or not 1 <= s <= min(a.shape[:2]):
            raise EdgePadInternalError(f"block sums: uint8/uint16 H×W[×C] and 1 <= s <= min(H, W) expected, got "
                                       f"{a.dtype} {a.shape}, s={s}")
        h, w = a.shape[:2]
        c = a.shape[2] if a.ndim == 3 else 1
        out = np.empty((h // s, w // s) + a.shape[2:], np.uint32)
        acc = np.empty(w * c, np.uint32)
        const = self._sums(a.ctypes.data, a.itemsize, h, w, c, s, out.ctypes.data, acc.ctypes.data)
        return out, bool(const)

    def fewest_changed(self, key: np.ndarray, ring: np.ndarray, m: int) -> int:
        """The fewest values in which a uint16 thumbnail key (``edgepad.runtime.sensors``: the block sums' low 16
        bits) differs from any of the first ``m`` rows of ``ring`` (uint16 ``(K, key.size)``, C-contiguous);
        ``key.size + 1`` when ``m`` is 0."""
        if key.dtype != np.uint16 or ring.dtype != np.uint16 or not ring.flags.c_contiguous or \
                ring.shape[1:] != (key.size,) or not 0 <= m <= ring.shape[0]:
            raise EdgePadInternalError(f"fewest_changed: uint16 key and (K, {key.size}) ring expected, got "
                                       f"{key.dtype} {key.shape}, {ring.dtype} {ring.shape}, m={m}")
        key = np.ascontiguousarray(key)
        return int(self._fewest(key.ctypes.data, ring.ctypes.data, m, key.size))


def block_sums() -> BlockSums | None:
    """The compiled thumbnail sums, or None where the kernel is unavailable (built on first call)."""
    fn = _kernel()
    return None if fn is None else fn.block_sums


class AreaResize:
    """OpenCV's ``cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)`` of a uint8 image compiled with the
    registration kernel (``edgepad_area_u8`` in ``_kernel.c``), value for value, where OpenCV takes its weighted area
    path: a downscale (W <= w and H <= h, not both equal) by a non-integer factor on at least one axis. The other
    cases (OpenCV's integer-factor block means, a copy, an upscale) are left to cv2: :meth:`resize` returns None.
    Used by :func:`edgepad.runtime.detector.crop_batch` (the MTCNN crops)."""

    def __init__(self, so: ctypes.CDLL) -> None:
        ptr, i32 = ctypes.c_void_p, ctypes.c_int
        self._area = so.edgepad_area_u8
        self._area.restype = i32
        self._area.argtypes = [ptr, ctypes.c_int64, i32, i32, i32, i32, i32, ptr]

    def resize(self, img: np.ndarray, size: int | tuple[int, int],
               out: np.ndarray | None = None) -> np.ndarray | None:
        """Area-resize a uint8 ``h×w×C`` (C = 1..4) or ``h×w`` image (a view is fine where each row's ``w·C`` values
        are contiguous) to ``size`` = S (S×S) or ``(W, H)``: uint8 ``H×W×C`` (``H×W``), written into ``out`` if given
        (C-contiguous, that shape and dtype). None (nothing written) where OpenCV would not take its area path.

        Raises:
            EdgePadInternalError: another dtype or rank, more than 4 channels, a size < 1 or a wrong ``out``.
        """
        dw, dh = (size, size) if isinstance(size, (int, np.integer)) else size
        dw, dh = int(dw), int(dh)
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) or \
                (img.ndim == 3 and not 1 <= img.shape[2] <= 4) or min(img.shape[:2]) < 1 or dw < 1 or dh < 1:
            raise EdgePadInternalError(f"area resize: uint8 h×w or h×w×C (C <= 4) and a size >= 1 expected, got "
                                       f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}, "
                                       f"{(dw, dh)}")
        h, w = img.shape[:2]
        c = img.shape[2] if img.ndim == 3 else 1
        if img.strides[1] != c or (img.ndim == 3 and img.strides[2] != 1) or (h > 1 and img.strides[0] < w * c):
            img = np.ascontiguousarray(img)  # the kernel reads rows of w·C contiguous values, stride >= w·C
        shape = (dh, dw) + img.shape[2:]
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise EdgePadInternalError(f"area resize: out must be C-contiguous uint8 {shape}, got {out.dtype} "
                                       f"{out.shape}")
        stride = img.strides[0] if h > 1 else w * c
        rc = self._area(img.ctypes.data, stride, h, w, c, dw, dh, out.ctypes.data)
        if rc == 1:
            return None
        if rc:
            raise MemoryError("area resize: out of memory") if rc == -1 else \
                EdgePadInternalError(f"area resize: kernel refused {img.shape} -> {(dw, dh)} ({rc})")
        return out


def area_resize() -> AreaResize | None:
    """The compiled INTER_AREA resize (:class:`AreaResize`), or None where the kernel is unavailable (built on first
    call)."""
    fn = _kernel()
    return None if fn is None else fn.area_resize


class InputArithmetic:
    """The per-pixel arithmetic of :func:`edgepad.preprocess.normalise` compiled with the registration kernel
    (``edgepad_inputs_u8``, ``edgepad_inputs_depth``), passed to it as ``kernel`` by the runtime
    (:class:`edgepad.preprocess.InputKernel`): numpy's float32 steps in numpy's order in one pass per crop, equal to
    the numpy path bit for bit. Raises EdgePadInternalError on arguments outside its contract."""

    def __init__(self, so: ctypes.CDLL) -> None:
        ptr, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
        self._u8 = so.edgepad_inputs_u8
        self._u8.restype = None
        self._u8.argtypes = [ptr, i64, i32, i32, f32, f32, f32, ptr, ptr, ptr]
        self._depth = so.edgepad_inputs_depth
        self._depth.restype = None
        self._depth.argtypes = [ptr, i64, f32, i32, f32, f32, f32, f32, f32, f32, ptr]

    def image(self, crop: np.ndarray, gain: float | None, lo: float, span: float, mean: np.ndarray,
              std: np.ndarray, out: np.ndarray) -> None:
        """uint8 ``S×S×C`` (or ``S×S``) → ``out`` float32 ``C×S×S``: ``((clip01(((v·gain) − lo) / span)) − mean_c) /
        std_c`` with float32 ``gain`` (None: none), ``lo``, ``span`` and per-channel ``mean``, ``std`` (C,)."""
        crop = np.ascontiguousarray(crop)
        c = crop.shape[2] if crop.ndim == 3 else 1
        mean = np.ascontiguousarray(mean, np.float32).reshape(-1)
        std = np.ascontiguousarray(std, np.float32).reshape(-1)
        if (crop.dtype != np.uint8 or crop.ndim not in (2, 3) or out.dtype != np.float32 or not out.flags.c_contiguous
                or out.shape != (c, *crop.shape[:2]) or mean.shape != (c,) or std.shape != (c,)):
            raise EdgePadInternalError(f"input arithmetic: uint8 S×S(×C), float32 C×S×S out and C means/stds "
                                       f"expected, got {crop.dtype} {crop.shape}, {out.dtype} {out.shape}, "
                                       f"{mean.shape}, {std.shape}")
        self._u8(crop.ctypes.data, crop.shape[0] * crop.shape[1], c, gain is not None,
                 0.0 if gain is None else float(gain), float(lo), float(span), mean.ctypes.data, std.ctypes.data,
                 out.ctypes.data)

    def depth(self, crop: np.ndarray, scale: float, ref: float | None, lo: float, span: float, mean: float,
              std: float, hole: float, out: np.ndarray) -> None:
        """uint16 ``S×S`` raw depth → ``out`` float32 ``S×S``: ``(clip01(((v·scale) [− ref]) − lo) / span) − mean) /
        std``, ``hole`` where ``v == 0``; every number float32 (``ref`` None: not subtracted)."""
        crop = np.ascontiguousarray(crop)
        if (crop.dtype != np.uint16 or crop.ndim != 2 or out.dtype != np.float32 or not out.flags.c_contiguous
                or out.shape != crop.shape):
            raise EdgePadInternalError(f"input arithmetic: uint16 S×S depth and float32 S×S out expected, got "
                                       f"{crop.dtype} {crop.shape}, {out.dtype} {out.shape}")
        self._depth(crop.ctypes.data, crop.size, float(scale), ref is not None, 0.0 if ref is None else float(ref),
                    float(lo), float(span), float(mean), float(std), float(hole), out.ctypes.data)


def input_arithmetic() -> InputArithmetic | None:
    """The compiled model-input arithmetic (:class:`InputArithmetic`), or None where the kernel is unavailable
    (built on first call)."""
    fn = _kernel()
    return None if fn is None else fn.input_arithmetic


def native_available() -> bool:
    """Whether ``method="native"`` runs the compiled kernel (builds it on first call)."""
    return _kernel() is not None


def active_path() -> str:
    """Which CPU registration path ``method="auto"`` uses without a GPU, and why (for ``edgepad doctor``)."""
    _kernel()
    return _STATE["why"]


_DIST_MODES = {("align", "modified_brown_conrady"): 1, ("rsutil", "brown_conrady"): 2,
               ("rsutil", "modified_brown_conrady"): 3, ("rsutil", "inverse_brown_conrady"): 3}


def _params(scale: float, pix: _PixelData, ext: Extrinsics, target: Intrinsics, semantics: Semantics) -> tuple:
    p = np.zeros(27, _F32)
    p[0] = scale
    if pix.folded:
        p[1:4] = pix.corner0[3:6]  # tu, tv, tz: the same for both corners (they depend on t and the target only)
    p[4:13] = ext.r.astype(_F32).reshape(-1)
    p[13:16] = ext.t.astype(_F32)
    p[16:20] = (_F32(target.fx), _F32(target.cx), _F32(target.fy), _F32(target.cy))
    p[20:22] = (_F32(target.cx + 0.5), _F32(target.cy + 0.5))
    p[22:27] = [_F32(c) for c in target.dist5]
    dist = _DIST_MODES[(semantics, target.distortion)] if _distorts_target(target, semantics) else 0
    return p, dist


def _constant_args(pix: _PixelData, scale: float, ext: Extrinsics, target: Intrinsics,
                   semantics: Semantics) -> tuple[tuple, np.ndarray | None, list]:
    """``(args, index, arrays)``, cached per ``pix`` (a pixel table belongs to one registrar, i.e. one
    ``ext``/``target``/``semantics``; the scale is checked): ``args`` = the kernel call's constant arguments
    ``(index, n, folded, 6 corner-constant pointers, params, dist)``, ``index`` the int64 pixel subset (or None) and
    ``arrays`` the 6 corner-constant arrays behind the pointers (None where a corner/term is absent)."""
    hit = _ARGS.get(pix)
    if hit is not None and hit[0] == scale:
        return hit[1]
    index = None if pix.subset is None else np.ascontiguousarray(pix.subset, np.int64)
    p, dist = _params(scale, pix, ext, target, semantics)
    arrays = [a for c in (pix.corner0, pix.corner1)
              for a in ((None, None, None) if c is None else c[:3] if pix.folded else (*c[:2], None))]
    args = (None if index is None else index.ctypes.data, None if index is None else index.size, int(pix.folded),
            *[None if a is None else a.ctypes.data for a in arrays], p.ctypes.data, dist)
    _ARGS[pix] = (scale, (args, index, arrays), p)  # index, arrays and p stay alive with the pointers
    return args, index, arrays


def _register_native(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                     footprint: Footprint, arithmetic: Arithmetic = "exact",
                     pixels: Callable[[tuple[float, float] | None], _PixelData] | None = None) -> np.ndarray:
    """The registered depth (uint16 ``target.height × target.width``) by the compiled kernel; same per-pixel
    constants and culling as :func:`edgepad.drivers.registration.fast._register_fast`, identical output.

    Raises:
        EdgePadInternalError: the kernel is unavailable (callers check :func:`native_available` first).
    """
    fn = _kernel()
    if fn is None:
        raise EdgePadInternalError(f"compiled registration kernel unavailable: {_STATE['why']}")
    intr = depth.intrinsics
    z = np.ascontiguousarray(depth.data.reshape(-1), np.uint16)
    folded = _folded(target, semantics, arithmetic)
    rect = fills_rectangle(intr, target, footprint)
    scale = float(depth.depth_scale_m)
    cull = _cull_range(z, scale)
    pix = (pixels(cull) if pixels is not None
           else _pixel_data(intr, target, ext, semantics, rect, folded, cull))
    (index, n, *rest), _, _ = _constant_args(pix, scale, ext, target, semantics)
    out = np.zeros((target.height, target.width), np.uint16)
    fn(z.ctypes.data, z.size if n is None else n, index, *rest, out.ctypes.data, target.width, target.height)
    return out


def _register_native_window(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                            footprint: Footprint, arithmetic: Arithmetic, window: tuple[int, int, int, int],
                            pixels: Callable[[tuple[float, float] | None], _PixelData],
                            bounds: Callable[[tuple[float, float]], object],
                            bucket: tuple[float, float] | None | str = SCAN) -> np.ndarray:
    """:func:`edgepad.drivers.registration.window._register_window` by the compiled kernel: the block of depth rows
    × columns that can reach ``window`` (one run of the pixel table per row) plus the "unsure" pixels outside it,
    filled into the full-size output, then everything outside the window cleared. Identical inside the window to
    :func:`_register_native` (a pixel left out cannot write there), 0 elsewhere. ``bucket``: as
    :func:`~edgepad.drivers.registration.window._register_window`."""
    fn = _kernel()
    if fn is None:
        raise EdgePadInternalError(f"compiled registration kernel unavailable: {_STATE['why']}")
    wx0, wy0, wx1, wy1 = window
    if wx1 <= wx0 or wy1 <= wy0:
        return np.zeros((target.height, target.width), np.uint16)
    # only the window starts empty (0): what the kernel writes outside it is cleared below (one full-frame pass
    # less than zeroing the whole output first)
    out = np.empty((target.height, target.width), np.uint16)
    out[wy0:wy1, wx0:wx1] = 0
    intr = depth.intrinsics
    z = np.ascontiguousarray(depth.data.reshape(-1), np.uint16)
    rect = fills_rectangle(intr, target, footprint)
    scale = float(depth.depth_scale_m)
    cull, r0, r1, c0, c1, extra = _window_sources(depth, target, ext, semantics, rect, window, bounds, bucket)
    pix = pixels(cull)
    (_, _, folded, *_, p_ptr, dist), index, arrays = _constant_args(pix, scale, ext, target, semantics)
    sub = pix.subset
    w = intr.width
    # the block rows r0:r1 × columns c0:c1 as one run of the pixel table per row (positions = pixel indices, or
    # their places in the culled table)
    if r1 > r0 and c1 > c0:
        starts = np.arange(r0, r1, dtype=np.int64) * w
        runs = np.stack([starts + c0, starts + c1], axis=1)
        if sub is not None:
            runs = np.ascontiguousarray(np.searchsorted(sub, runs), np.int64)
        fn.runs(z.ctypes.data, runs.ctypes.data, len(runs), None if index is None else index.ctypes.data, folded,
                *[None if a is None else a.ctypes.data for a in arrays], p_ptr, dist, out.ctypes.data,
                target.width, target.height)
    if extra is not None and len(extra):
        pos = extra if sub is None else np.searchsorted(sub, extra)
        if sub is not None:  # an unsure pixel the table culled cannot reach the target at all
            keep = pos < len(sub)
            keep[keep] = sub[pos[keep]] == extra[keep]
            pos, extra = pos[keep], extra[keep]
        if len(pos):
            idx = np.ascontiguousarray(extra, np.int64)
            gathered = [None if a is None else np.ascontiguousarray(a[pos]) for a in arrays]
            fn(z.ctypes.data, len(idx), idx.ctypes.data, folded,
               *[None if a is None else a.ctypes.data for a in gathered], p_ptr, dist, out.ctypes.data,
               target.width, target.height)
    out[:wy0] = 0
    out[wy1:] = 0
    out[wy0:wy1, :wx0] = 0
    out[wy0:wy1, wx1:] = 0
    return out
