"""Depth registration: re-render a depth frame in another camera (depth → rgb, or depth → a separate IR camera).

The algorithm is librealsense's ``rs.align(rs.stream.color)`` (``src/proc/align.cpp``, ``sse/sse-align.cpp``,
2.58.1+ rounding): for each depth pixel with ``z > 0``, its top-left corner ``(x - 0.5, y - 0.5)`` and bottom-right
corner ``(x + 0.5, y + 0.5)`` are deprojected at ``z`` with the depth intrinsics, moved by the depth → target
extrinsics and projected with the target intrinsics; the corners are rounded with ``int(p + 0.5)`` (truncation
toward zero), and every target pixel of the spanned rectangle that lies inside the image receives ``z``, keeping
the **minimum** (nearest surface wins). Nothing is interpolated: holes, shadows and out-of-view pixels stay 0.

Arithmetic is float32 in librealsense's SSE operation order, so results agree with the pinned pyrealsense2
(2.59.1, x86-64) on all but float-rounding edge pixels (see docs/DRIVERS.md for the measured agreement).

Three implementations share that arithmetic and must give identical output (tests compare them):

* ``method="reference"``: corners per pixel, then an explicit loop that fills each rectangle (clear, slow);
* ``method="numpy"``: cached per-camera rays, in-place float32 maths and an ``np.minimum.at`` z-buffer (fast);
* ``method="torch"``: the same arithmetic in torch (``scatter_reduce`` amin) on CUDA when present, else on the
  CPU; ``"auto"`` picks it when torch is already imported and a GPU is present.

Distortion (``semantics``):

* ``"align"`` reproduces ``rs.align``: depth pixels are undistorted only for ``inverse_brown_conrady`` (align's
  closed form, tangential terms on the undistorted x, y) and target points distorted only for
  ``modified_brown_conrady``; ``brown_conrady`` coefficients are ignored, as librealsense's align does.
* ``"rsutil"`` (default) follows ``rs2_deproject_pixel_to_point``/``rs2_project_point_to_pixel`` exactly as
  :mod:`edgepad.geometry` does (brown_conrady = OpenCV's model both ways; inverse/modified RealSense forms), which
  is what a lens calibrated with OpenCV needs. Both agree whenever coefficients are zero (RealSense factory data).

``footprint="rect"`` always fills the corner rectangle (the plain and CUDA librealsense builds); ``"sse"`` mimics
the x86 SSE build, which writes one target pixel per depth pixel (the top-left corner) when the target camera has no
more pixels per degree than the depth camera.
"""
from __future__ import annotations

import functools
import logging
import math
import sys
import threading
import time
from typing import Literal, NamedTuple

import numpy as np

from edgepad.errors import ConfigError, ShapeError
from edgepad.geometry import Extrinsics, Intrinsics, distort, undistort
from edgepad.types import Frame, Modality

log = logging.getLogger(__name__)

Method = Literal["auto", "reference", "numpy", "torch"]
Semantics = Literal["rsutil", "align"]
Footprint = Literal["rect", "sse"]
Arithmetic = Literal["exact", "fast"]

_F32 = np.float32


# ----------------------------------------------------------------------------------------------- rays
@functools.lru_cache(maxsize=32)
def corner_rays(intr: Intrinsics, offset: float, semantics: Semantics = "rsutil") -> tuple[np.ndarray, np.ndarray]:
    """Normalised rays ``(x/z, y/z)`` (float32, H×W each, read-only) through pixel corners ``(u+offset, v+offset)``.

    Computed in float32 in librealsense's order (``(float(u) + offset - ppx) / fx``), then undistorted per
    ``semantics``. Cached per camera.
    """
    u = np.arange(intr.width, dtype=_F32) + _F32(offset)
    v = np.arange(intr.height, dtype=_F32) + _F32(offset)
    x = ((u - _F32(intr.cx)) / _F32(intr.fx))[None, :].repeat(intr.height, axis=0)
    y = ((v - _F32(intr.cy)) / _F32(intr.fy))[:, None].repeat(intr.width, axis=1)
    if intr.distortion == "inverse_brown_conrady" and intr.has_distortion and semantics == "align":
        # sse-align.cpp pre_compute_x_y_map: closed form, tangential terms on the undistorted x, y
        k1, k2, p1, p2, k3 = (_F32(c) for c in intr.dist5)
        r2 = x * x + y * y
        f = _F32(1) + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
        ux = x * f + _F32(2) * p1 * x * y + p2 * (r2 + _F32(2) * x * x)
        uy = y * f + _F32(2) * p2 * x * y + p1 * (r2 + _F32(2) * y * y)
        x, y = ux, uy
    elif (semantics == "rsutil" and intr.distortion in ("brown_conrady", "inverse_brown_conrady")
          and intr.has_distortion):
        # rs2_deproject_pixel_to_point (iterative), as edgepad.geometry.undistort
        ux, uy = undistort(x.astype(np.float64), y.astype(np.float64), intr)
        x, y = ux.astype(_F32), uy.astype(_F32)
    x = np.ascontiguousarray(x, dtype=_F32)
    y = np.ascontiguousarray(y, dtype=_F32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _check(depth: Frame, target: Intrinsics, semantics: str, footprint: str) -> None:
    if depth.modality is not Modality.DEPTH:
        raise ShapeError("depth.modality", "depth", depth.modality)
    if semantics not in ("rsutil", "align"):
        raise ConfigError(f"unknown semantics {semantics!r}; use 'rsutil' or 'align'", key="semantics")
    if footprint not in ("rect", "sse"):
        raise ConfigError(f"unknown footprint {footprint!r}; use 'rect' or 'sse'", key="footprint")
    if not isinstance(target, Intrinsics):
        raise ConfigError("target must be an Intrinsics", key="target")


def fov_deg(intr: Intrinsics) -> tuple[float, float]:
    """Field of view (degrees) as librealsense's ``rs2_fov`` computes it."""
    fx = math.atan2(intr.cx + 0.5, intr.fx) + math.atan2(intr.width - (intr.cx + 0.5), intr.fx)
    fy = math.atan2(intr.cy + 0.5, intr.fy) + math.atan2(intr.height - (intr.cy + 0.5), intr.fy)
    return math.degrees(fx), math.degrees(fy)


def fills_rectangle(depth: Intrinsics, target: Intrinsics, footprint: Footprint = "rect") -> bool:
    """Whether the corner rectangle is filled (always for ``"rect"``; the SSE build's test for ``"sse"``)."""
    if footprint == "rect":
        return True
    special = ((depth.width, depth.height, target.width, target.height) in
               ((640, 240, 320, 180), (640, 480, 640, 360)))
    fd, ft = fov_deg(depth), fov_deg(target)
    ppa_d = (depth.width / fd[0], depth.height / fd[1])
    ppa_t = (target.width / ft[0], target.height / ft[1])
    return ppa_d[0] < ppa_t[0] or ppa_d[1] < ppa_t[1] or special


def _project_corner(z: np.ndarray, rx: np.ndarray, ry: np.ndarray, scale: float, ext: Extrinsics,
                    target: Intrinsics, semantics: Semantics) -> tuple[np.ndarray, np.ndarray]:
    """Integer target pixel of one corner per depth value (float32, librealsense SSE operation order).

    Args:
        z: raw depth (N,) uint16; rx, ry: corner rays (N,) float32.
    Returns:
        (iu, iv) int32 (N,); non-finite, out-of-int32 or behind-camera corners give INT32_MIN (pixel dropped).
    """
    d = z.astype(_F32)
    d *= _F32(scale)
    px = d * rx
    py = d * ry
    r = ext.r.astype(_F32)
    t = ext.t.astype(_F32)
    out = []
    for row in range(3):
        acc = d * r[row, 2]
        acc += t[row]
        tmp = py * r[row, 1]
        acc += tmp
        np.multiply(px, r[row, 0], out=tmp)
        tmp += acc
        out.append(tmp)
    X, Y, Z = out
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        X /= Z
        Y /= Z
        _to_pixels_f32(X, Y, target, semantics)
        lim = _F32(2.0 ** 31)
        bad = ~((Z > 0) & (np.abs(X) < lim) & (np.abs(Y) < lim))  # NaN compares False: dropped too
        X[bad] = 0
        Y[bad] = 0
    iu = X.astype(np.int32)  # truncation toward zero, as (int)(p + 0.5) / _mm_cvttps_epi32
    iv = Y.astype(np.int32)
    if bad.any():
        iu[bad] = np.int32(_INT_LIMITS[0])
        iv[bad] = np.int32(_INT_LIMITS[0])
    return iu, iv


@functools.lru_cache(maxsize=16)
def folded_coefficients(intr: Intrinsics, offset: float, semantics: Semantics, ext: Extrinsics,
                        target: Intrinsics) -> tuple:
    """Per-pixel constants of the ``arithmetic="fast"`` projection (cached per camera pair).

    ``u = (d * au + tu) / (d * az + tz)`` and ``v = (d * av + tv) / (d * az + tz)`` (then truncated), where
    ``a = R @ ray``, the focal lengths and ``principal point + 0.5`` are folded in float64 and stored as float32.
    When the target's distortion applies, ``u, v`` are the normalised coordinates instead (distorted, then
    ``* f + (c + 0.5)`` in float32; see :func:`_finish_distorted`).
    """
    rx, ry = corner_rays(intr, offset, semantics)
    rx, ry = rx.reshape(-1).astype(np.float64), ry.reshape(-1).astype(np.float64)
    r, t = ext.r, ext.t
    a = [r[k, 0] * rx + r[k, 1] * ry + r[k, 2] for k in range(3)]
    if _distorts_target(target, semantics):
        fx = fy = 1.0
        cu = cv = 0.0
    else:
        fx, fy = target.fx, target.fy
        cu, cv = target.cx + 0.5, target.cy + 0.5  # the principal point (and rounding half) folded in as well
    out = (np.ascontiguousarray(fx * a[0] + cu * a[2], _F32),
           np.ascontiguousarray(fy * a[1] + cv * a[2], _F32), np.ascontiguousarray(a[2], _F32),
           _F32(fx * t[0] + cu * t[2]), _F32(fy * t[1] + cv * t[2]), _F32(t[2]))
    for arr in out[:3]:
        arr.flags.writeable = False
    return out


def _finish_distorted(u: np.ndarray, v: np.ndarray, target: Intrinsics, semantics: Semantics,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised → distorted → pixel + 0.5 (float32), for the fast arithmetic with a distorting target."""
    x, y = _distort_f32(u, v, target, semantics)
    x *= _F32(target.fx)
    x += _F32(target.cx + 0.5)
    y *= _F32(target.fy)
    y += _F32(target.cy + 0.5)
    return x, y


def _project_corner_folded(z: np.ndarray, index: np.ndarray, coeffs: tuple, scale: float, target: Intrinsics,
                           semantics: Semantics) -> tuple[np.ndarray, np.ndarray]:
    """``arithmetic="fast"`` corner of the pixels ``index`` (plain expressions; same values as the fast path)."""
    au, av, az, tu, tv, tz = coeffs
    d = z.astype(_F32) * _F32(scale)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        zz = d * az[index] + tz
        u = (d * au[index] + tu) / zz
        v = (d * av[index] + tv) / zz
        if _distorts_target(target, semantics):
            u, v = _finish_distorted(u, v, target, semantics)
        lim = _F32(2.0 ** 31)
        bad = ~((zz > 0) & (np.abs(u) < lim) & (np.abs(v) < lim))
        u[bad] = 0
        v[bad] = 0
    iu, iv = u.astype(np.int32), v.astype(np.int32)
    iu[bad] = _INT_LIMITS[0]
    iv[bad] = _INT_LIMITS[0]
    return iu, iv


def _distorts_target(target: Intrinsics, semantics: Semantics) -> bool:
    """Whether projection into ``target`` applies its distortion (module docstring)."""
    if not target.has_distortion:
        return False
    if semantics == "align":
        return target.distortion == "modified_brown_conrady"
    return target.distortion != "none"


def _distort_f32(x: np.ndarray, y: np.ndarray, intr: Intrinsics, semantics: Semantics = "align",
                 ) -> tuple[np.ndarray, np.ndarray]:
    if intr.distortion == "modified_brown_conrady" and semantics == "align":
        # sse-align.cpp distorte_x_y<MODIFIED>: r² of the undistorted point, tangential terms on the radial result
        k1, k2, p1, p2, k3 = (_F32(c) for c in intr.dist5)
        two = _F32(2)
        r2 = x * x + y * y
        f = _F32(1) + (k1 * r2 + (k2 * (r2 * r2) + k3 * (r2 * (r2 * r2))))
        xf = x * f
        yf = y * f
        dx = xf + (two * (p1 * (xf * yf)) + p2 * (r2 + two * (xf * xf)))
        dy = yf + (two * (p2 * (xf * yf)) + p1 * (r2 + two * (yf * yf)))
        return dx, dy
    # rsutil semantics (edgepad.geometry.distort) evaluated in float32
    k1, k2, p1, p2, k3 = (_F32(c) for c in intr.dist5)
    two = _F32(2)
    with np.errstate(invalid="ignore", over="ignore"):
        r2 = x * x + y * y
        f = _F32(1) + r2 * (k1 + r2 * (k2 + r2 * k3))
        if intr.distortion == "brown_conrady":
            xy2 = two * x * y
            return (x * f + p1 * xy2 + p2 * (r2 + two * x * x),
                    y * f + p2 * xy2 + p1 * (r2 + two * y * y))
        xf, yf = x * f, y * f  # modified / inverse: tangential terms on the radially distorted point
        xy2 = two * xf * yf
        return (xf + p1 * xy2 + p2 * (r2 + two * xf * xf),
                yf + p2 * xy2 + p1 * (r2 + two * yf * yf))


def register_corners(depth: Frame, target: Intrinsics, depth_to_target: Extrinsics, *,
                     semantics: Semantics = "rsutil", footprint: Footprint = "rect",
                     arithmetic: Arithmetic = "exact",
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Target rectangles of every valid depth pixel (shared by all implementations).

    Returns:
        ``(index, z, x0, y0, x1, y1)``: flat depth-pixel indices (N,), raw depth (N,) uint16 and the inclusive
        target rectangle corners (N,) int32, before clipping to the target image.
    """
    intr = depth.intrinsics
    flat = depth.data.reshape(-1)
    index = np.flatnonzero(flat)
    z = flat[index]
    scale = float(depth.depth_scale_m)
    rect = fills_rectangle(intr, target, footprint)
    if _folded(target, semantics, arithmetic):
        x0, y0 = _project_corner_folded(z, index, folded_coefficients(intr, -0.5, semantics, depth_to_target,
                                                                      target), scale, target, semantics)
        x1, y1 = (_project_corner_folded(z, index, folded_coefficients(intr, 0.5, semantics, depth_to_target,
                                                                       target), scale, target, semantics)
                  if rect else (x0, y0))
        return _drop_bad(index, z, x0, y0, x1, y1)
    tlx, tly = corner_rays(intr, -0.5, semantics)
    x0, y0 = _project_corner(z, tlx.reshape(-1)[index], tly.reshape(-1)[index], scale, depth_to_target, target,
                             semantics)
    if rect:
        brx, bry = corner_rays(intr, 0.5, semantics)
        x1, y1 = _project_corner(z, brx.reshape(-1)[index], bry.reshape(-1)[index], scale, depth_to_target,
                                 target, semantics)
    else:
        x1, y1 = x0, y0
    return _drop_bad(index, z, x0, y0, x1, y1)


def _folded(target: Intrinsics, semantics: Semantics, arithmetic: str) -> bool:
    """Whether the folded (``"fast"``) arithmetic is requested."""
    if arithmetic not in ("exact", "fast"):
        raise ConfigError(f"unknown arithmetic {arithmetic!r}; use 'exact' or 'fast'", key="arithmetic")
    return arithmetic == "fast"


def _drop_bad(index, z, x0, y0, x1, y1):
    lo = _INT_LIMITS[0]
    good = (x0 != lo) & (y0 != lo) & (x1 != lo) & (y1 != lo)
    if not good.all():
        index, z, x0, y0, x1, y1 = index[good], z[good], x0[good], y0[good], x1[good], y1[good]
    return index, z, x0, y0, x1, y1


# ----------------------------------------------------------------------------------------------- implementations
def _fill_reference(z, x0, y0, x1, y1, target: Intrinsics) -> np.ndarray:
    w, h = target.width, target.height
    out = np.zeros((h, w), dtype=np.uint16)
    for i in range(len(z)):
        zi = int(z[i])
        for ty in range(max(int(y0[i]), 0), min(int(y1[i]), h - 1) + 1):
            for tx in range(max(int(x0[i]), 0), min(int(x1[i]), w - 1) + 1):
                cur = out[ty, tx]
                out[ty, tx] = zi if cur == 0 else min(int(cur), zi)
    return out


def _fill_numpy(z, x0, y0, x1, y1, target: Intrinsics) -> np.ndarray:
    """The generic vectorised fill (``method="generic"``): masks per rectangle offset + ``np.minimum.at``."""
    buf = np.full((target.height, target.width), 0xFFFF, np.uint16)
    _fill_into(buf, (z.astype(np.int64) - 1).astype(np.uint16), x0, y0, x1, y1)  # z - 1: 0xFFFF stays "empty"
    return np.add(buf, np.uint16(1), dtype=np.uint16)


class _Workspace(threading.local):
    """Per-thread scratch buffers of the fast path, reused across frames of one size."""

    def get(self, name: str, shape, dtype) -> np.ndarray:
        bufs = self.__dict__.setdefault("bufs", {})
        key = (name, shape, np.dtype(dtype).str)
        buf = bufs.get(key)
        if buf is None:
            if len(bufs) > 96:
                bufs.clear()
            buf = bufs[key] = np.empty(shape, dtype)
        return buf


_WS = _Workspace()
_INT_LIMITS = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
_POOL: dict = {}
#: pixels per chunk of the fast path: its float32 scratch buffers stay cache-resident
_CHUNK = 102400


def _pool(threads: int):
    """A shared thread pool for the chunked fast path (numpy releases the GIL in its loops)."""
    ex = _POOL.get(threads)
    if ex is None:
        from concurrent.futures import ThreadPoolExecutor
        ex = _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="edgepad-register")
    return ex


def _corner_fast(d, acc, rx, ry, r, target: Intrinsics, semantics: Semantics, tag: str, valid) -> tuple:
    """:func:`_project_corner` on a chunk with reused buffers; identical float32 values. Updates ``valid``."""
    n = d.size
    ws = _WS
    px = np.multiply(d, rx, out=ws.get("px", n, _F32))
    py = np.multiply(d, ry, out=ws.get("py", n, _F32))
    xyz = []
    for row in range(3):
        s = np.multiply(py, r[row, 1], out=ws.get("s", n, _F32))
        s += acc[row]
        o = np.multiply(px, r[row, 0], out=ws.get(f"o{row}", n, _F32))
        o += s
        xyz.append(o)
    X, Y, Z = xyz
    valid &= np.greater(Z, 0, out=ws.get("zgt", n, np.bool_))
    X /= Z
    Y /= Z
    _to_pixels_f32(X, Y, target, semantics)
    iu = ws.get(f"iu{tag}", n, np.int32)
    iv = ws.get(f"iv{tag}", n, np.int32)
    iu[...] = X  # truncation toward zero; NaN/overflow give an int32 limit (handled with the rare rectangles)
    iv[...] = Y
    return iu, iv


def _corner_folded_fast(d, coeffs, lo: int, hi: int, tag: str, zpos, target: Intrinsics,
                        semantics: Semantics) -> tuple:
    """:func:`_project_corner_folded` on a chunk with reused buffers (identical values). ``zpos &= z' > 0``."""
    au, av, az, tu, tv, tz = coeffs
    n = d.size
    ws = _WS
    zz = np.multiply(d, az[lo:hi], out=ws.get("zz", n, _F32))
    zz += tz
    zpos &= np.greater(zz, 0, out=ws.get("zgt", n, np.bool_))
    iu = ws.get(f"iu{tag}", n, np.int32)
    iv = ws.get(f"iv{tag}", n, np.int32)
    if _distorts_target(target, semantics):
        u = (d * au[lo:hi] + tu) / zz
        v = (d * av[lo:hi] + tv) / zz
        u, v = _finish_distorted(u, v, target, semantics)
        lim = _F32(2.0 ** 31)
        zpos &= (np.abs(u) < lim) & (np.abs(v) < lim)  # as the reference: such a corner drops the pixel
        iu[...] = u
        iv[...] = v
        return iu, iv
    for a, t, out in ((au, tu, iu), (av, tv, iv)):
        u = np.multiply(d, a[lo:hi], out=ws.get("u", n, _F32))
        u += t
        u /= zz
        out[...] = u  # truncation toward zero
    return iu, iv


class _PixelData:
    """Per-pixel constants of one camera pair for the fast path, optionally restricted to the depth pixels that
    can reach the target image at all (``subset``; None = every pixel)."""

    def __init__(self, subset, folded: bool, corner0, corner1) -> None:
        self.subset, self.folded, self.corner0, self.corner1 = subset, folded, corner0, corner1


#: depths (m) from which out-of-view culling is precomputed; a frame uses the largest one below its nearest pixel
_CULL_DEPTHS_M = (0.1, 0.2, 0.3, 0.5)


@functools.lru_cache(maxsize=16)
def _pixel_data(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, rect: bool,
                folded: bool, cull: tuple[float, float] | None) -> _PixelData:
    """Cached constants; with ``cull = (dmin_m, dmax_m)`` only pixels whose corners can land within 2 px of the
    target for some depth in that range are kept (projection is monotonic in depth between the two ends, so the
    end points bound it). Culled pixels cannot write any target pixel: the output is unchanged."""
    offsets = (-0.5, 0.5) if rect else (-0.5,)
    subset = None
    if cull is not None:
        distorted = _distorts_target(target, semantics)
        lo_u, hi_u, lo_v, hi_v, unsure = _corner_bounds(intr, target, ext, semantics, offsets, cull)
        m = 8.0 if distorted else 2.0
        keep = unsure | ((hi_u >= -m) & (lo_u <= target.width - 1 + m) & (hi_v >= -m)
                         & (lo_v <= target.height - 1 + m))
        if keep.mean() < 0.9:
            subset = np.flatnonzero(keep)

    def pick(arr: np.ndarray) -> np.ndarray:
        out = arr.reshape(-1) if subset is None else arr.reshape(-1)[subset]
        out = np.ascontiguousarray(out)
        out.flags.writeable = False
        return out

    corners = []
    for off in offsets:
        if folded:
            au, av, az, tu, tv, tz = folded_coefficients(intr, off, semantics, ext, target)
            corners.append((pick(au), pick(av), pick(az), tu, tv, tz))
        else:
            rx, ry = corner_rays(intr, off, semantics)
            corners.append((pick(rx), pick(ry)))
    return _PixelData(subset, folded, corners[0], corners[1] if rect else None)


def _to_pixels_f32(X: np.ndarray, Y: np.ndarray, target: Intrinsics, semantics: Semantics) -> None:
    """In place: normalised float32 coordinates → target pixel + 0.5 (librealsense's float32 operation order)."""
    if _distorts_target(target, semantics):
        X[...], Y[...] = _distort_f32(X, Y, target, semantics)
    X *= _F32(target.fx)
    X += _F32(target.cx)
    X += _F32(0.5)
    Y *= _F32(target.fy)
    Y += _F32(target.cy)
    Y += _F32(0.5)


def _corner_bounds(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                   offsets: tuple[float, ...], cull: tuple[float, float]):
    """Per depth pixel (flattened): the target-pixel range ``lo_u, hi_u, lo_v, hi_v`` its corners can reach for
    any depth in ``cull`` (metres), and an ``unsure`` mask of pixels for which no bound holds.

    Projection is monotonic in depth along the epipolar line, so the two ends bound it; a distorting target lens
    bends the line, so it is sampled at 8 depths and points beyond the monotonic part of its radial map (which may
    fold back into view) are unsure.
    """
    distorted = _distorts_target(target, semantics)
    lo_u = np.full(intr.width * intr.height, np.inf)
    hi_u, lo_v, hi_v = -lo_u, lo_u.copy(), -lo_u
    unsure = np.zeros(lo_u.shape, bool)
    r, t = ext.r, ext.t
    depths = np.geomspace(cull[0], cull[1], 8) if distorted else cull
    r_safe = _monotonic_radius(target) if distorted else np.inf
    for off in offsets:
        rx, ry = (a.reshape(-1).astype(np.float64) for a in corner_rays(intr, off, semantics))
        a = [r[k, 0] * rx + r[k, 1] * ry + r[k, 2] for k in range(3)]
        for dm in depths:
            zz = dm * a[2] + t[2]
            unsure |= ~(zz > 1e-9)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                x, y = (dm * a[0] + t[0]) / zz, (dm * a[1] + t[1]) / zz
                if distorted:
                    unsure |= ~(x * x + y * y < r_safe * r_safe)
                    x, y = distort(x, y, target)
                u, v = x * target.fx + target.cx, y * target.fy + target.cy
            unsure |= ~(np.isfinite(u) & np.isfinite(v))
            lo_u, hi_u = np.fmin(lo_u, u), np.fmax(hi_u, u)
            lo_v, hi_v = np.fmin(lo_v, v), np.fmax(hi_v, v)
    return lo_u, hi_u, lo_v, hi_v, unsure


def _monotonic_radius(intr: Intrinsics, r_max: float = 3.0) -> float:
    """Largest normalised radius up to which the radial distortion ``r (1 + k1 r² + k2 r⁴ + k3 r⁶)`` increases."""
    k1, k2, _, _, k3 = intr.dist5
    r = np.linspace(0.0, r_max, 3001)
    r2 = r * r
    slope = 1 + 3 * k1 * r2 + 5 * k2 * r2 * r2 + 7 * k3 * r2 * r2 * r2
    bad = np.flatnonzero(slope <= 0.05)
    return float(r[bad[0]] * 0.95) if len(bad) else r_max


def _cull_range(z: np.ndarray, scale: float) -> tuple[float, float] | None:
    """The precomputed depth range that contains every valid pixel of this frame, if any."""
    z1 = np.subtract(z, np.uint16(1), out=_WS.get("zmin", z.size, np.uint16))
    nearest_m = (int(z1.min()) + 1) * scale  # holes wrap to 0xFFFF and never win
    usable = [d for d in _CULL_DEPTHS_M if d <= nearest_m]
    return _cull_key(usable[-1], scale) if usable else None


def _cull_key(nearest_m: float, scale: float) -> tuple[float, float]:
    """The cache key of one nearest-depth bucket: ``(bucket floor, farthest raw depth)`` in metres."""
    return nearest_m, 65535 * float(scale)


class _Size(NamedTuple):
    """A z-buffer's size (the part of :class:`Intrinsics` that :class:`_Layout` reads)."""

    width: int
    height: int


class _Layout:
    """Geometry of the class planes: rectangle sides ``s0 .. s0 + k - 1`` get a plane each (indexed
    ``[h - s0][w - s0]``), top-left corners stored at ``+off``; one trash cell follows the planes."""

    def __init__(self, target: Intrinsics, sizes: tuple[int, int]) -> None:
        self.s0, s1 = sizes
        self.k = s1 - self.s0 + 1
        self.off = s1 - 1  # a class-sized rectangle further left/up misses the image
        self.we = target.width + self.off
        self.he = target.height + self.off
        self.plane = self.we * self.he
        self.trash = self.k * self.k * self.plane
        self.size = self.trash + 1


def _chunk(z, lo: int, hi: int, pix: "_PixelData", scale: float, target: Intrinsics, ext: Extrinsics,
           semantics: Semantics, lay: _Layout, idx_out: np.ndarray, z1_out: np.ndarray) -> tuple | None:
    """Corners and class-plane indices of depth pixels ``lo:hi`` (written to ``idx_out``; ``z1_out = z - 1``
    wrapping, so a hole (0) becomes 0xFFFF, the empty value of the min z-buffer).

    Returns the pixels whose rectangle has another size as ``(pixel, x0, y0, x1, y1, z - 1)``.
    """
    ws = _WS
    zc = z[lo:hi]
    n = hi - lo
    z1 = np.subtract(zc, np.uint16(1), out=z1_out[lo:hi])
    d = np.multiply(zc, _F32(scale), out=ws.get("d", n, _F32), dtype=_F32)
    zpos = ws.get("zpos", n, np.bool_)
    zpos.fill(True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rect = pix.corner1 is not None
        if pix.folded:
            x0, y0 = _corner_folded_fast(d, pix.corner0, lo, hi, "0", zpos, target, semantics)
            x1, y1 = (_corner_folded_fast(d, pix.corner1, lo, hi, "1", zpos, target, semantics) if rect
                      else (x0, y0))
        else:
            r = ext.r.astype(_F32)
            t = ext.t.astype(_F32)
            acc = []
            for row in range(3):
                a = np.multiply(d, r[row, 2], out=ws.get(f"a{row}", n, _F32))
                a += t[row]
                acc.append(a)
            rx, ry = pix.corner0
            x0, y0 = _corner_fast(d, acc, rx[lo:hi], ry[lo:hi], r, target, semantics, "0", zpos)
            if rect:
                rx, ry = pix.corner1
                x1, y1 = _corner_fast(d, acc, rx[lo:hi], ry[lo:hi], r, target, semantics, "1", zpos)
            else:
                x1, y1 = x0, y0
    if not zpos.all():  # corners behind the target camera: the pixel is dropped
        np.logical_not(zpos, out=zpos)
        np.copyto(z1, np.uint16(0xFFFF), where=zpos)
    k, s0 = lay.k, lay.s0
    i32 = np.int32
    rw = np.subtract(x1, x0, out=ws.get("rw", n, i32))
    rw -= s0 - 1
    rh = np.subtract(y1, y0, out=ws.get("rh", n, i32))
    rh -= s0 - 1
    # int32 ops only (fast, SIMD); negative values seen as uint32 are huge, so one compare tests both ends
    bad = np.greater_equal(rw.view(np.uint32), k, out=ws.get("bad", n, np.bool_))
    tmpb = ws.get("tmpb", n, np.bool_)
    bad |= np.greater_equal(rh.view(np.uint32), k, out=tmpb)
    sx = np.add(x0, lay.off, out=ws.get("sx", n, i32))
    sy = np.add(y0, lay.off, out=ws.get("sy", n, i32))
    drop = np.greater_equal(sx.view(np.uint32), lay.we, out=ws.get("drop", n, np.bool_))
    drop |= np.greater_equal(sy.view(np.uint32), lay.he, out=tmpb)  # class-sized and off the planes: misses
    drop |= bad
    cls = np.multiply(rh, k, out=ws.get("cls", n, i32))
    cls += rw
    cls *= lay.plane
    tmp = np.multiply(sy, lay.we, out=ws.get("tmp32", n, i32))
    cls += tmp
    cls += sx
    np.copyto(cls, lay.trash, where=drop)
    idx_out[lo:hi] = cls
    rest = np.flatnonzero(bad) if bad.any() else ()
    if not len(rest):
        return None
    zr = z1[rest]
    keep = zr != 0xFFFF
    rest = rest[keep]
    if not len(rest):
        return None
    return rest + lo, x0[rest].copy(), y0[rest].copy(), x1[rest].copy(), y1[rest].copy(), zr[keep]


def _spread(a: np.ndarray, axis: int, buf: np.ndarray) -> np.ndarray:
    """``buf = min(a, a shifted by one pixel along axis)`` (extends each run by one pixel right/down)."""
    if axis == 1:
        buf[:, 0] = a[:, 0]
        np.minimum(a[:, 1:], a[:, :-1], out=buf[:, 1:])
    else:
        buf[0] = a[0]
        np.minimum(a[1:], a[:-1], out=buf[1:])
    return buf


def _fill_into(result: np.ndarray, z, x0, y0, x1, y1) -> None:
    """Generic vectorised rectangle fill (min) into ``result`` (uint16, 0xFFFF = empty); clips to the image."""
    th, tw = result.shape
    if not result.flags.c_contiguous:
        raise ValueError("_fill_into needs a contiguous result")  # internal invariant
    lim = np.zeros(len(z), bool)
    for a in (x0, y0, x1, y1):
        lim |= (a == _INT_LIMITS[0]) | (a == _INT_LIMITS[1])
    cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    cx1, cy1 = np.minimum(x1, tw - 1), np.minimum(y1, th - 1)
    keep = (cx1 >= cx0) & (cy1 >= cy0) & ~lim
    if not keep.any():
        return
    cx0, cy0, cx1, cy1, z = cx0[keep], cy0[keep], cx1[keep], cy1[keep], z[keep]
    rw, rh = cx1 - cx0 + 1, cy1 - cy0 + 1
    big = (rw * rh) > 64
    flat = result.reshape(-1)
    for i in np.flatnonzero(big):  # degenerate geometry: a few huge rectangles
        view = result[cy0[i]:cy1[i] + 1, cx0[i]:cx1[i] + 1]
        np.minimum(view, z[i], out=view)
    small = ~big
    cx0, cy0, rw, rh, z = cx0[small], cy0[small], rw[small], rh[small], z[small]
    if not len(z):
        return
    base = cy0.astype(np.intp) * tw + cx0
    for dy in range(int(rh.max())):
        for dx in range(int(rw.max())):
            m = (rw > dx) & (rh > dy)
            np.minimum.at(flat, base[m] + (dy * tw + dx), z[m])


def _sizes(depth: Intrinsics, target: Intrinsics) -> tuple[int, int]:
    """The two rectangle sides expected most often: a depth pixel spans ``ratio`` target pixels and its rounded
    corners are both included, so sides are ``floor(ratio) + 1`` or ``+ 2``."""
    ratio = max(target.fx / depth.fx, target.fy / depth.fy)
    s0 = max(1, int(math.floor(ratio)) + 1)
    return s0, s0 + 1


def _min_planes(idx: np.ndarray, z1: np.ndarray, lay: _Layout, th: int, tw: int, key: str) -> np.ndarray:
    """The z-buffer (uint16 ``z - 1``, 0xFFFF = empty; ``th × tw`` view) of class-sized rectangles: ``z1`` is
    min-scattered to each rectangle's top-left cell of its class plane (``idx``, trash for the others), then each
    plane is spread to its rectangle size by separable one-pixel min shifts (wider classes first, merged on the
    way) and the planes are merged."""
    k = lay.k
    flat = _WS.get(key, lay.size, np.uint16)
    flat[:lay.trash].fill(0xFFFF)
    np.minimum.at(flat, idx, z1)
    planes = flat[:lay.trash].reshape(k, k, lay.he, lay.we)
    present = planes.reshape(k, k, -1).min(axis=2) != 0xFFFF
    nbuf = 0

    def buffer() -> np.ndarray:
        nonlocal nbuf
        nbuf += 1
        return _WS.get(f"{key}-spread{nbuf}", (lay.he, lay.we), np.uint16)

    def merged(layers: list, axis: int) -> np.ndarray | None:
        """min over ``layers[j]`` spread to side ``s0 + j`` along ``axis`` (None = empty layer)."""
        m = None
        for side in range(lay.s0 + k - 1, 0, -1):
            if m is not None:
                m = _spread(m, axis, buffer())
            j = side - lay.s0
            layer = layers[j] if 0 <= j < len(layers) else None
            if layer is not None:
                m = layer if m is None else np.minimum(m, layer, out=m)
        return m

    rows = [merged([planes[h, w] if present[h, w] else None for w in range(k)], 1) for h in range(k)]
    m = merged(rows, 0)
    return (np.full((th, tw), 0xFFFF, np.uint16) if m is None
            else m[lay.off:lay.off + th, lay.off:lay.off + tw])


def _register_fast(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                   footprint: Footprint, threads: int = 1, arithmetic: Arithmetic = "exact") -> np.ndarray:
    """Dense float32 corners (cached rays, chunked), then a z-buffer by rectangle-size class.

    Each pixel's ``z - 1`` (holes wrap to 0xFFFF, the empty value) is scattered with one ``np.minimum.at`` to
    its rectangle's top-left corner in the plane of its (height, width) class, for the two most common sides;
    planes are spread by separable one-pixel min shifts (wider classes first, merged as they go) and merged.
    Other rectangles take the generic fill. Exact: equals the reference fill.
    """
    intr = depth.intrinsics
    z = depth.data.reshape(-1)
    folded = _folded(target, semantics, arithmetic)
    tw, th = target.width, target.height
    rect = fills_rectangle(intr, target, footprint)
    lay = _Layout(target, _sizes(intr, target) if rect else (1, 2))
    scale = float(depth.depth_scale_m)
    pix = _pixel_data(intr, target, ext, semantics, rect, folded, _cull_range(z, scale))
    if pix.subset is not None:
        z = np.take(z, pix.subset, out=_WS.get("zsub", len(pix.subset), np.uint16))
    n = z.size
    idx = _WS.get("idx", n, np.intp)
    z1 = _WS.get("z1", n, np.uint16)
    bounds = list(range(0, n, _CHUNK)) + [n]
    jobs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    args = (pix, scale, target, ext, semantics, lay, idx, z1)
    if threads > 1 and len(jobs) > 1:
        rests = list(_pool(threads).map(lambda ab: _chunk(z, ab[0], ab[1], *args), jobs))
    else:
        rests = [_chunk(z, a, b, *args) for a, b in jobs]
    crop = _min_planes(idx, z1, lay, th, tw, "planes")
    rests = [r for r in rests if r is not None]
    if rests:
        crop = np.ascontiguousarray(crop)  # _fill_into scatters into the flat buffer
        for rest in rests:
            _fill_into(crop, rest[5], *rest[1:5])
    return np.add(crop, np.uint16(1), dtype=np.uint16)  # z - 1 + 1 = z; empty 0xFFFF wraps to 0 (hole)


@functools.lru_cache(maxsize=16)
def _device_constants(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, offset: float,
                      folded: bool, device: str) -> tuple:
    """The cached per-pixel constants of one corner as tensors on ``device`` (uploaded once per camera pair)."""
    torch = sys.modules["torch"]
    if folded:
        arrays = folded_coefficients(intr, offset, semantics, ext, target)[:3]
    else:
        arrays = tuple(a.reshape(-1) for a in corner_rays(intr, offset, semantics))
    return tuple(torch.from_numpy(np.array(a)).to(device) for a in arrays)


def _register_torch(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                    footprint: Footprint, device: str | None = None, arithmetic: Arithmetic = "exact") -> np.ndarray:
    """The fast path in torch (CUDA when available); same float32 operation order as the numpy path."""
    torch = sys.modules.get("torch")
    if torch is None:
        from edgepad._optional import require
        torch = require("torch")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    intr = depth.intrinsics
    zt = torch.from_numpy(depth.data.astype(np.int32)).to(dev).reshape(-1)
    index = torch.nonzero(zt, as_tuple=True)[0]
    z = zt[index]
    r = torch.tensor(ext.r, dtype=torch.float32, device=dev)
    t = torch.tensor(ext.t, dtype=torch.float32, device=dev)
    scale = torch.tensor(float(depth.depth_scale_m), dtype=torch.float32, device=dev)
    folded = _folded(target, semantics, arithmetic)
    lim = 2.0 ** 31

    def corner(offset: float):
        consts = [c[index] for c in _device_constants(intr, target, ext, semantics, offset, folded, str(dev))]
        d = z.to(torch.float32) * scale
        if folded:
            au, av, az, tu, tv, tz = folded_coefficients(intr, offset, semantics, ext, target)
            zz = d * consts[2] + float(tz)
            u = (d * consts[0] + float(tu)) / zz
            v = (d * consts[1] + float(tv)) / zz
            if _distorts_target(target, semantics):
                un, vn = _finish_distorted(u.cpu().numpy(), v.cpu().numpy(), target, semantics)
                u, v = torch.from_numpy(un).to(dev), torch.from_numpy(vn).to(dev)
        else:
            px, py = d * consts[0], d * consts[1]
            comp = [px * r[k, 0] + (py * r[k, 1] + (d * r[k, 2] + t[k])) for k in range(3)]
            zz = comp[2]
            x, y = comp[0] / zz, comp[1] / zz
            if _distorts_target(target, semantics):
                xn, yn = _distort_f32(x.cpu().numpy(), y.cpu().numpy(), target, semantics)
                x, y = torch.from_numpy(xn).to(dev), torch.from_numpy(yn).to(dev)
            u = x * float(np.float32(target.fx)) + float(np.float32(target.cx)) + 0.5
            v = y * float(np.float32(target.fy)) + float(np.float32(target.cy)) + 0.5
        bad = ~((zz > 0) & (u.abs() < lim) & (v.abs() < lim))  # NaN compares False: dropped
        iu = torch.where(bad, torch.zeros_like(u), u).to(torch.int64)  # truncation toward zero
        iv = torch.where(bad, torch.zeros_like(v), v).to(torch.int64)
        return iu, iv, bad

    x0, y0, bad0 = corner(-0.5)
    x1, y1, bad1 = corner(0.5) if fills_rectangle(intr, target, footprint) else (x0, y0, bad0)
    w, h = target.width, target.height
    cx0, cy0 = x0.clamp(min=0), y0.clamp(min=0)
    rw = x1.clamp(max=w - 1) - cx0 + 1
    rh = y1.clamp(max=h - 1) - cy0 + 1
    keep = (rw > 0) & (rh > 0) & ~bad0 & ~bad1
    big = keep & ((rw > 8) | (rh > 8))  # degenerate geometry: filled on the CPU
    keep &= ~big
    zbuf = torch.full((w * h,), 0x10000, dtype=torch.int32, device=dev)
    zk, base, rwk, rhk = z[keep], (cy0 * w + cx0)[keep], rw[keep], rh[keep]
    if zk.numel():
        for dy in range(int(rhk.max())):
            for dx in range(int(rwk.max())):
                m = (rwk > dx) & (rhk > dy)
                zbuf.scatter_reduce_(0, base[m] + dy * w + dx, zk[m], reduce="amin")
    out = zbuf.cpu().numpy()
    out[out == 0x10000] = 0xFFFF + 1
    result = (out - 1).astype(np.uint16).reshape(h, w)  # z - 1, empty = 0xFFFF (as the numpy path)
    if bool(big.any()):
        sel = big.cpu().numpy()
        _fill_into(result, (z.cpu().numpy()[sel] - 1).astype(np.uint16), x0.cpu().numpy()[sel],
                   y0.cpu().numpy()[sel], x1.cpu().numpy()[sel], y1.cpu().numpy()[sel])
    return np.add(result, np.uint16(1), dtype=np.uint16)


# ----------------------------------------------------------------------------------------------- window
Window = tuple[int, int, int, int]


class _WindowBounds:
    """Per-column / per-row bounds of where a depth pixel's corners can land in the target (cached per camera pair
    and nearest-depth bucket), for :func:`_register_window`."""

    def __init__(self, col_lo_u, col_hi_u, row_lo_v, row_hi_v, unsure, margin: float) -> None:
        self.col_lo_u, self.col_hi_u, self.row_lo_v, self.row_hi_v = col_lo_u, col_hi_u, row_lo_v, row_hi_v
        self.unsure, self.margin = unsure, margin


@functools.lru_cache(maxsize=16)
def _window_bounds(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, rect: bool,
                   cull: tuple[float, float]) -> _WindowBounds:
    """The out-of-view culling bounds of :func:`_pixel_data` (same argument: projection is monotonic in depth
    between the ends of ``cull``; a distorting target is sampled at 8 depths with an 8 px margin and points beyond
    the monotonic part of its radial map are "unsure", i.e. always processed), reduced per depth column (u) and
    per depth row (v). A depth pixel can only write target pixels within ``margin`` of its column's u range and
    its row's v range."""
    offsets = (-0.5, 0.5) if rect else (-0.5,)
    distorted = _distorts_target(target, semantics)
    lo_u, hi_u, lo_v, hi_v, unsure = _corner_bounds(intr, target, ext, semantics, offsets, cull)
    shape = (intr.height, intr.width)
    sure = ~unsure.reshape(shape)

    def red(a: np.ndarray, fill: float, fn, axis: int) -> np.ndarray:
        return fn(np.where(sure, a.reshape(shape), fill), axis=axis)

    out = _WindowBounds(red(lo_u, np.inf, np.min, 0), red(hi_u, -np.inf, np.max, 0),
                        red(lo_v, np.inf, np.min, 1), red(hi_v, -np.inf, np.max, 1), np.flatnonzero(unsure),
                        8.0 if distorted else 2.0)
    for arr in (out.col_lo_u, out.col_hi_u, out.row_lo_v, out.row_hi_v, out.unsure):
        arr.flags.writeable = False
    return out


def prepare_window(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, depth_scale_m: float, *,
                   semantics: Semantics = "rsutil", footprint: Footprint = "rect") -> int:
    """Build the window registration's culling bounds for every nearest-depth bucket now (≈ 0.1 s each on a
    640×480 pair), so the first frame of a nearer face does not pay for them (a one-off 70-150 ms stall seen in
    ``edgepad bench`` before). Returns the number of buckets prepared. The runtime calls it when it opens."""
    rect = fills_rectangle(intr, target, footprint)
    for d in _CULL_DEPTHS_M:
        _window_bounds(intr, target, ext, semantics, rect, _cull_key(d, depth_scale_m))
    return len(_CULL_DEPTHS_M)


def _clip_window(window: object, target: Intrinsics) -> Window:
    try:
        x0, y0, x1, y1 = (int(v) for v in window)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError("window", "(x0, y0, x1, y1) target pixels, end-exclusive", window) from None
    return max(0, x0), max(0, y0), min(target.width, x1), min(target.height, y1)


def _register_window(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics, footprint: Footprint,
                     arithmetic: Arithmetic, window: Window) -> np.ndarray:
    """Registration of the target pixels inside ``window`` only (``(x0, y0, x1, y1)``, end-exclusive, clipped);
    0 elsewhere.

    Only depth pixels whose corners can land within the window (:func:`_window_bounds`, plus the "unsure" ones)
    are projected, with the corner arithmetic of :func:`register_corners`, and their rectangles are min-filled
    into a window-sized z-buffer (the generic fill). Inside the window the result is identical to the full-frame
    registration: a depth pixel left out cannot write any pixel of the window.
    """
    wx0, wy0, wx1, wy1 = window
    out = np.zeros((target.height, target.width), np.uint16)
    if wx1 <= wx0 or wy1 <= wy0:
        return out
    intr = depth.intrinsics
    data = depth.data
    scale = float(depth.depth_scale_m)
    rect = fills_rectangle(intr, target, footprint)
    cull = _cull_range(data.reshape(-1), scale)
    if cull is None:  # something nearer than 0.1 m: no precomputed bounds, take every pixel
        r0, r1, c0, c1 = 0, intr.height, 0, intr.width
        extra = None
    else:
        b = _window_bounds(intr, target, ext, semantics, rect, cull)
        m = b.margin
        cols = np.flatnonzero((b.col_hi_u >= wx0 - m) & (b.col_lo_u <= wx1 - 1 + m))
        rows = np.flatnonzero((b.row_hi_v >= wy0 - m) & (b.row_lo_v <= wy1 - 1 + m))
        if not len(cols) or not len(rows):
            r0 = r1 = c0 = c1 = 0
        else:
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        extra = b.unsure
        if len(extra):
            ur, uc = np.divmod(extra, intr.width)
            extra = extra[~((ur >= r0) & (ur < r1) & (uc >= c0) & (uc < c1))]
            extra = extra[data.reshape(-1)[extra] > 0]
    sub = data[r0:r1, c0:c1]
    rr, cc = np.nonzero(sub)
    index = (rr + r0).astype(np.intp) * intr.width + (cc + c0)
    if extra is not None and len(extra):
        index = np.concatenate([index, extra.astype(np.intp)])
    z = data.reshape(-1)[index]
    if _folded(target, semantics, arithmetic):
        co = folded_coefficients(intr, -0.5, semantics, ext, target)
        x0, y0 = _project_corner_folded(z, index, co, scale, target, semantics)
        if rect:
            co = folded_coefficients(intr, 0.5, semantics, ext, target)
            x1, y1 = _project_corner_folded(z, index, co, scale, target, semantics)
        else:
            x1, y1 = x0, y0
    else:
        tlx, tly = corner_rays(intr, -0.5, semantics)
        x0, y0 = _project_corner(z, tlx.reshape(-1)[index], tly.reshape(-1)[index], scale, ext, target, semantics)
        if rect:
            brx, bry = corner_rays(intr, 0.5, semantics)
            x1, y1 = _project_corner(z, brx.reshape(-1)[index], bry.reshape(-1)[index], scale, ext, target,
                                     semantics)
        else:
            x1, y1 = x0, y0
    _, z, x0, y0, x1, y1 = _drop_bad(index, z, x0, y0, x1, y1)
    ww, wh = wx1 - wx0, wy1 - wy0
    # window coordinates, clipped to one pixel beyond each side: the written set inside the window is unchanged
    # and no value can collide with the int32 sentinels of _fill_into
    xs0, xs1 = (np.clip(a.astype(np.int64) - wx0, -1, ww) for a in (x0, x1))
    ys0, ys1 = (np.clip(a.astype(np.int64) - wy0, -1, wh) for a in (y0, y1))
    z1 = (z.astype(np.int64) - 1).astype(np.uint16)
    # the two common rectangle sizes through class planes (as the full-frame path), the rest by the generic fill
    lay = _Layout(_Size(ww, wh), _sizes(intr, target) if rect else (1, 2))
    rw, rh = xs1 - xs0 - (lay.s0 - 1), ys1 - ys0 - (lay.s0 - 1)
    bad = (rw < 0) | (rw >= lay.k) | (rh < 0) | (rh >= lay.k)
    sx, sy = xs0 + lay.off, ys0 + lay.off
    idx = (rh * lay.k + rw) * lay.plane + sy * lay.we + sx
    idx[bad | (sx < 0) | (sx >= lay.we) | (sy < 0) | (sy >= lay.he)] = lay.trash
    buf = np.ascontiguousarray(_min_planes(idx, z1, lay, wh, ww, "wplanes"))
    if bad.any():
        _fill_into(buf, z1[bad], xs0[bad], ys0[bad], xs1[bad], ys1[bad])
    out[wy0:wy1, wx0:wx1] = np.add(buf, np.uint16(1), dtype=np.uint16)  # empty 0xFFFF wraps to 0 (hole)
    return out


def _gpu_available() -> bool:
    torch = sys.modules.get("torch")  # never import torch just to look for a GPU
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:
        return False


def register_depth(depth: Frame, target: Intrinsics, depth_to_target: Extrinsics,
                   target_modality: Modality = Modality.RGB, *, method: Method = "auto",
                   semantics: Semantics = "rsutil", footprint: Footprint = "rect", threads: int = 1,
                   arithmetic: Arithmetic = "fast", window: Window | None = None) -> Frame:
    """Re-render ``depth`` in the ``target`` camera (librealsense ``align`` algorithm; nearest wins; holes 0).

    Args:
        depth: depth frame (uint16 H×W raw units, ``depth_scale_m`` set) in the depth camera.
        target: intrinsics of the camera to register to (output size = target size).
        depth_to_target: extrinsics depth camera → target camera (metres).
        target_modality: recorded in ``registered_to``.
        method: ``"auto"`` (torch on CUDA when present and torch is imported, else numpy), ``"numpy"``,
            ``"reference"`` or ``"torch"``.
        semantics: distortion semantics, ``"rsutil"`` or ``"align"`` (module docstring).
        footprint: ``"rect"`` or ``"sse"`` (module docstring).
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
    if window is not None:
        if method not in ("auto", "numpy", "generic", "reference", "torch"):
            raise ConfigError(f"unknown registration method {method!r}", key="method")
        data = _register_window(depth, target, depth_to_target, semantics, footprint, arithmetic,
                                _clip_window(window, target))
        return Frame(Modality.DEPTH, data, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence,
                     depth.source, target, depth.depth_scale_m, Modality.parse(target_modality))
    if method == "auto":
        method = "torch" if _gpu_available() else "numpy"
    if method == "torch":
        data = _register_torch(depth, target, depth_to_target, semantics, footprint, arithmetic=arithmetic)
    elif method == "numpy":
        data = _register_fast(depth, target, depth_to_target, semantics, footprint, threads=threads,
                              arithmetic=arithmetic)
    elif method in ("generic", "reference"):
        _, z, x0, y0, x1, y1 = register_corners(depth, target, depth_to_target, semantics=semantics,
                                                footprint=footprint, arithmetic=arithmetic)
        fill = _fill_numpy if method == "generic" else _fill_reference
        data = fill(z, x0, y0, x1, y1, target)
    else:
        raise ConfigError(f"unknown registration method {method!r}", key="method",
                          suggestions=[m for m in ("auto", "numpy", "reference", "torch") if m[0] == str(method)[:1]])
    return Frame(Modality.DEPTH, data, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence, depth.source,
                 target, depth.depth_scale_m, Modality.parse(target_modality))


# ----------------------------------------------------------------------------------------------- rs.align oracle
def align_with_librealsense(depth: Frame, color_intrinsics: Intrinsics, depth_to_color: Extrinsics) -> np.ndarray:
    """``rs.align(rs.stream.color)`` on the same depth frame, through a pyrealsense2 software device.

    Returns:
        The aligned depth ``uint16 color.height × color.width``. Needs pyrealsense2 (oracle for tests and benchmarks).
    """
    return _RsAligner(depth.intrinsics, color_intrinsics, depth_to_color, float(depth.depth_scale_m)).align(
        depth.data)


def to_rs_intrinsics(rs, intr: Intrinsics):
    """Our Intrinsics → ``rs.intrinsics``."""
    ri = rs.intrinsics()
    ri.width, ri.height = intr.width, intr.height
    ri.fx, ri.fy, ri.ppx, ri.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    ri.model = {"none": rs.distortion.none, "brown_conrady": rs.distortion.brown_conrady,
                "modified_brown_conrady": rs.distortion.modified_brown_conrady,
                "inverse_brown_conrady": rs.distortion.inverse_brown_conrady}[intr.distortion]
    ri.coeffs = [float(c) for c in intr.dist5]
    return ri


def to_rs_extrinsics(rs, ext: Extrinsics):
    """Our Extrinsics (row-major R) → ``rs.extrinsics`` (column-major R)."""
    re = rs.extrinsics()
    re.rotation = [float(v) for v in ext.r.flatten(order="F")]
    re.translation = [float(v) for v in ext.t]
    return re


class _RsAligner:
    """A pyrealsense2 software device with a depth and a colour stream, driving ``rs.align`` at sensor level."""

    def __init__(self, depth_intr: Intrinsics, color_intr: Intrinsics, depth_to_color: Extrinsics,
                 depth_scale_m: float) -> None:
        from edgepad._optional import require
        rs = self.rs = require("pyrealsense2", "realsense")
        self.dev = rs.software_device()
        self.sensor = self.dev.add_sensor("Stereo Module")
        self.csensor = self.dev.add_sensor("RGB Camera")
        ds = rs.video_stream()
        ds.type, ds.index, ds.uid = rs.stream.depth, 0, 0
        ds.width, ds.height, ds.fps, ds.bpp = depth_intr.width, depth_intr.height, 30, 2
        ds.fmt, ds.intrinsics = rs.format.z16, to_rs_intrinsics(rs, depth_intr)
        cs = rs.video_stream()
        cs.type, cs.index, cs.uid = rs.stream.color, 0, 1
        cs.width, cs.height, cs.fps, cs.bpp = color_intr.width, color_intr.height, 30, 3
        cs.fmt, cs.intrinsics = rs.format.rgb8, to_rs_intrinsics(rs, color_intr)
        self.dprof = self.sensor.add_video_stream(ds, True).as_video_stream_profile()
        self.cprof = self.csensor.add_video_stream(cs, True).as_video_stream_profile()
        self.sensor.add_read_only_option(rs.option.depth_units, float(depth_scale_m))
        self.dprof.register_extrinsics_to(self.cprof, to_rs_extrinsics(rs, depth_to_color))
        for s in (self.sensor, self.csensor):
            s.set_metadata(rs.frame_metadata_value.actual_fps, 30000)
        self.sync = rs.syncer(100)
        self.sensor.open(self.dprof)
        self.csensor.open(self.cprof)
        self.sensor.start(self.sync)
        self.csensor.start(self.sync)
        self.rs_align = rs.align(rs.stream.color)
        self.color = np.zeros((color_intr.height, color_intr.width, 3), np.uint8)
        self.n = 0
        self.depth_intr, self.color_intr = depth_intr, color_intr

    def _push(self, data: np.ndarray) -> None:
        rs = self.rs
        self.n += 1
        ts = self.n * 1000.0 / 30
        for sensor, prof, arr, bpp in ((self.sensor, self.dprof, data, 2), (self.csensor, self.cprof, self.color, 3)):
            f = rs.software_video_frame()
            arr = np.ascontiguousarray(arr)
            f.pixels = arr
            f.bpp = bpp
            f.stride = arr.shape[1] * bpp
            f.timestamp = ts
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = self.n
            f.profile = prof
            sensor.on_video_frame(f)

    def frameset(self, data: np.ndarray):
        """Push one depth+colour pair and return the matched ``rs.composite_frame``."""
        self._push(data)
        for _ in range(4):
            fs = self.sync.try_wait_for_frames(2000)
            if fs[0] if isinstance(fs, tuple) else fs:
                fs = fs[1] if isinstance(fs, tuple) else fs
                if fs.size() == 2:
                    return fs
            self._push(data)
        raise RuntimeError("rs.syncer did not pair the software-device frames")

    def align(self, data: np.ndarray) -> np.ndarray:
        fs = self.frameset(data)
        out = self.rs_align.process(fs).get_depth_frame()
        return np.asanyarray(out.get_data()).copy()

    def close(self) -> None:
        for s in (self.sensor, self.csensor):
            try:
                s.stop()
                s.close()
            except Exception:  # best effort on teardown
                pass


# ----------------------------------------------------------------------------------------------- benchmark
def benchmark(depth: Frame | None = None, target: Intrinsics | None = None, depth_to_target: Extrinsics | None = None,
              *, repeats: int = 30, warmup: int = 3, with_librealsense: bool = True, threads: int = 1,
              arithmetic: Arithmetic = "fast", semantics: Semantics = "align") -> dict:
    """Time our registration and ``rs.align`` on the same frames, side by side, interleaved.

    Without arguments a 640x480 → 640x480 D435-like scene is used (the real recording's factory calibration,
    a slanted plane with an occluder and holes). ``semantics`` defaults to ``"align"``, the algorithm rs.align
    runs; ``"rsutil"`` (the runtime's default) differs only for lenses with Brown-Conrady coefficients, which
    rs.align ignores. Returns medians in ms and ``ratio = ours / rs.align``.
    """
    if depth is None:
        depth, target, depth_to_target = d435_like_scene()
    assert target is not None and depth_to_target is not None
    res: dict = {"width": depth.intrinsics.width, "height": depth.intrinsics.height, "threads": threads,
                 "arithmetic": arithmetic, "semantics": semantics,
                 "target": f"{target.width}x{target.height}", "repeats": repeats}
    aligner = None
    if with_librealsense:
        aligner = _RsAligner(depth.intrinsics, target, depth_to_target, float(depth.depth_scale_m))
        res["librealsense"] = aligner.rs.__version__
    ours, theirs, agree = [], [], None
    try:
        for i in range(warmup + repeats):
            t0 = time.perf_counter_ns()
            mine = register_depth(depth, target, depth_to_target, method="numpy", threads=threads,
                                  arithmetic=arithmetic, semantics=semantics)
            t1 = time.perf_counter_ns()
            if i >= warmup:
                ours.append((t1 - t0) / 1e6)
            if aligner is not None:
                fs = aligner.frameset(depth.data)
                t2 = time.perf_counter_ns()
                out = aligner.rs_align.process(fs).get_depth_frame()
                t3 = time.perf_counter_ns()
                if i >= warmup:
                    theirs.append((t3 - t2) / 1e6)
                if agree is None:
                    ref = np.asanyarray(out.get_data())
                    agree = float(np.mean(ref == mine.data))
    finally:
        if aligner is not None:
            aligner.close()
    res["ours_ms"] = float(np.median(ours))
    res["ours_min_ms"] = float(np.min(ours))
    if theirs:
        res["rs_align_ms"] = float(np.median(theirs))
        res["rs_align_min_ms"] = float(np.min(theirs))
        res["ratio"] = res["ours_ms"] / res["rs_align_ms"]
        res["ratio_min"] = res["ours_min_ms"] / res["rs_align_min_ms"]
        res["identical_fraction"] = agree
    return res


def d435_like_scene(width: int = 640, height: int = 480, seed: int = 0) -> tuple[Frame, Intrinsics, Extrinsics]:
    """A depth frame of a slanted plane with a box occluder and holes, in a D435-like rig (real factory values)."""
    from edgepad.types import make_frame
    sx, sy = width / 640, height / 480
    dintr = Intrinsics(width, height, 390.431 * sx, 390.431 * sy, 331.388 * sx, 242.187 * sy, "brown_conrady",
                       (0, 0, 0, 0, 0))
    cintr = Intrinsics(width, height, 613.204 * sx, 613.419 * sy, 319.939 * sx, 239.183 * sy, "brown_conrady",
                       (0, 0, 0, 0, 0))
    ang = math.radians(0.9)
    r = np.array([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]])
    ext = Extrinsics.from_rt(r, (0.0143113, 0.000602306, 0.000610804))
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    z_mm = 800.0 + 0.6 * (u - width / 2) / sx + 0.3 * (v - height / 2) / sy
    box = (abs(u - width * 0.45) < width * 0.12) & (abs(v - height * 0.5) < height * 0.15)
    z_mm = np.where(box, 520.0, z_mm)
    z = np.round(z_mm).astype(np.uint16)
    z[rng.random(z.shape) < 0.05] = 0
    z[:, : width // 20] = 0
    return make_frame("depth", z, 0, intrinsics=dintr, depth_scale_m=0.001), cintr, ext


def _main(argv=None) -> int:
    """``python -m edgepad.drivers.registration [--repeats N] [--threads T] [--size WxH]``: the benchmark."""
    import argparse
    import json
    p = argparse.ArgumentParser(description="depth registration vs rs.align on the same frames, side by side")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", default="640x480")
    p.add_argument("--arithmetic", default="fast", choices=("fast", "exact"))
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    print(json.dumps(benchmark(*d435_like_scene(w, h), repeats=a.repeats, threads=a.threads,
                               arithmetic=a.arithmetic), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
