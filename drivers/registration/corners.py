"""Shared corner maths of depth registration: rays through pixel corners, corner projection (exact and folded
arithmetic), distortion, and the out-of-view culling bounds (see docs/DRIVERS.md).

Every implementation (reference, fast CPU, window, torch) projects corners with these functions, so they agree.
"""
from __future__ import annotations

import functools
import math
import threading
from typing import Literal

import numpy as np

from edgepad.errors import ConfigError, ShapeError
from edgepad.geometry import Extrinsics, Intrinsics, distort, undistort
from edgepad.types import Frame, Modality

Method = Literal["auto", "native", "reference", "numpy", "torch"]
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


def _distort_inplace(x: np.ndarray, y: np.ndarray, intr: Intrinsics, semantics: Semantics = "align") -> None:
    """:func:`_distort_f32` into ``x, y`` (float32, 1-D), with scratch buffers for align's modified model (same
    operations on the same operands, so identical values; no temporaries)."""
    if not (intr.distortion == "modified_brown_conrady" and semantics == "align" and x.ndim == 1):
        x[...], y[...] = _distort_f32(x, y, intr, semantics)
        return
    k1, k2, p1, p2, k3 = (_F32(c) for c in intr.dist5)
    n, ws, two = x.size, _WS, _F32(2)
    r2 = np.multiply(x, x, out=ws.get("dr2", n, _F32))
    s = np.multiply(y, y, out=ws.get("ds", n, _F32))
    r2 += s
    q = np.multiply(r2, r2, out=ws.get("dq", n, _F32))  # r2 * r2
    np.multiply(r2, q, out=s)  # r2 * (r2 * r2)
    s *= k3
    q *= k2
    q += s  # k2 * r4 + k3 * r6
    f = np.multiply(r2, k1, out=ws.get("df", n, _F32))
    f += q
    f += _F32(1)
    x *= f  # xf
    y *= f  # yf
    dx = np.multiply(x, y, out=q)  # dx = xf + (2 (p1 xf yf) + p2 (r2 + 2 xf²))
    dx *= p1
    dx *= two
    np.multiply(x, x, out=s)
    s *= two
    s += r2
    s *= p2
    dx += s
    dx += x
    dy = np.multiply(x, y, out=f)  # dy = yf + (2 (p2 xf yf) + p1 (r2 + 2 yf²))
    dy *= p2
    dy *= two
    np.multiply(y, y, out=s)
    s *= two
    s += r2
    s *= p1
    dy += s
    dy += y
    x[...] = dx
    y[...] = dy


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

#: depths (m) from which out-of-view culling is precomputed; a frame uses the largest one below its nearest pixel
_CULL_DEPTHS_M = (0.1, 0.2, 0.3, 0.5)


def _to_pixels_f32(X: np.ndarray, Y: np.ndarray, target: Intrinsics, semantics: Semantics) -> None:
    """In place: normalised float32 coordinates → target pixel + 0.5 (librealsense's float32 operation order)."""
    if _distorts_target(target, semantics):
        _distort_inplace(X, Y, target, semantics)
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

