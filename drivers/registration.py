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
from typing import Literal

import numpy as np

from edgepad.errors import ConfigError, ShapeError
from edgepad.geometry import Extrinsics, Intrinsics, distort, undistort
from edgepad.types import Frame, Modality

log = logging.getLogger(__name__)

Method = Literal["auto", "reference", "numpy", "torch"]
Semantics = Literal["rsutil", "align"]
Footprint = Literal["rect", "sse"]

_F32 = np.float32
#: rectangles larger than this (pixels per side) are filled one by one in the fast path (degenerate geometry)
_MAX_FAST_SIDE = 6


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
        if _distorts_target(target, semantics):
            X, Y = _distort_f32(X, Y, target, semantics)
        X *= _F32(target.fx)
        X += _F32(target.cx)
        X += _F32(0.5)
        Y *= _F32(target.fy)
        Y += _F32(target.cy)
        Y += _F32(0.5)
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
    dx, dy = distort(x.astype(np.float64), y.astype(np.float64), intr)
    return dx.astype(_F32), dy.astype(_F32)


def register_corners(depth: Frame, target: Intrinsics, depth_to_target: Extrinsics, *,
                     semantics: Semantics = "rsutil", footprint: Footprint = "rect",
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
    tlx, tly = corner_rays(intr, -0.5, semantics)
    x0, y0 = _project_corner(z, tlx.reshape(-1)[index], tly.reshape(-1)[index], scale, depth_to_target, target,
                             semantics)
    if fills_rectangle(intr, target, footprint):
        brx, bry = corner_rays(intr, 0.5, semantics)
        x1, y1 = _project_corner(z, brx.reshape(-1)[index], bry.reshape(-1)[index], scale, depth_to_target,
                                 target, semantics)
    else:
        x1, y1 = x0, y0
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
    w, h = target.width, target.height
    cx0 = np.maximum(x0, 0)
    cy0 = np.maximum(y0, 0)
    cx1 = np.minimum(x1, w - 1)
    cy1 = np.minimum(y1, h - 1)
    rw = cx1 - cx0 + 1
    rh = cy1 - cy0 + 1
    keep = (rw > 0) & (rh > 0)
    if not keep.all():
        z, cx0, cy0, rw, rh = z[keep], cx0[keep], cy0[keep], rw[keep], rh[keep]
    zbuf = np.full(w * h, 0x10000, dtype=np.uint32)
    if len(z):
        big = (rw > _MAX_FAST_SIDE) | (rh > _MAX_FAST_SIDE)
        if big.any():
            for i in np.flatnonzero(big):
                view = zbuf.reshape(h, w)[cy0[i]:cy0[i] + rh[i], cx0[i]:cx0[i] + rw[i]]
                np.minimum(view, np.uint32(z[i]), out=view)
            small = ~big
            z, cx0, cy0, rw, rh = z[small], cx0[small], cy0[small], rw[small], rh[small]
        base = cy0.astype(np.intp) * w + cx0
        z32 = z.astype(np.uint32)
        max_w = int(rw.max()) if len(rw) else 0
        max_h = int(rh.max()) if len(rh) else 0
        for dy in range(max_h):
            for dx in range(max_w):
                if dx == 0 and dy == 0:
                    np.minimum.at(zbuf, base, z32)
                    continue
                m = (rw > dx) & (rh > dy)
                np.minimum.at(zbuf, base[m] + (dy * w + dx), z32[m])
    zbuf[zbuf == 0x10000] = 0
    return zbuf.astype(np.uint16).reshape(h, w)


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
_CHUNK = 65536


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
    zpos = np.greater(Z, 0, out=ws.get("zpos", n, np.bool_))
    valid &= zpos
    X /= Z
    Y /= Z
    if _distorts_target(target, semantics):
        X[...], Y[...] = _distort_f32(X, Y, target, semantics)
    X *= _F32(target.fx)
    X += _F32(target.cx)
    X += _F32(0.5)
    Y *= _F32(target.fy)
    Y += _F32(target.cy)
    Y += _F32(0.5)
    iu = ws.get(f"iu{tag}", n, np.int32)
    iv = ws.get(f"iv{tag}", n, np.int32)
    iu[...] = X  # truncation toward zero; NaN/overflow give an int32 limit (handled with the rare rectangles)
    iv[...] = Y
    return iu, iv


def _chunk(z, lo: int, hi: int, intr: Intrinsics, scale: float, target: Intrinsics, ext: Extrinsics,
           semantics: Semantics, rect: bool, side: int, idx_out: np.ndarray) -> tuple | None:
    """Corners and class-plane indices of depth pixels ``lo:hi`` (written to ``idx_out[lo:hi]``).

    Returns the rare pixels whose rectangle does not fit a class plane: ``(pixel, x0, y0, x1, y1, z)``.
    """
    ws = _WS
    zc = z[lo:hi]
    n = hi - lo
    d = np.multiply(zc, _F32(scale), out=ws.get("d", n, _F32), dtype=_F32)
    r = ext.r.astype(_F32)
    t = ext.t.astype(_F32)
    acc = []
    for row in range(3):
        a = np.multiply(d, r[row, 2], out=ws.get(f"a{row}", n, _F32))
        a += t[row]
        acc.append(a)
    valid = np.not_equal(zc, 0, out=ws.get("valid", n, np.bool_))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rx, ry = corner_rays(intr, -0.5, semantics)
        x0, y0 = _corner_fast(d, acc, rx.reshape(-1)[lo:hi], ry.reshape(-1)[lo:hi], r, target, semantics, "0",
                              valid)
        if rect:
            rx, ry = corner_rays(intr, 0.5, semantics)
            x1, y1 = _corner_fast(d, acc, rx.reshape(-1)[lo:hi], ry.reshape(-1)[lo:hi], r, target, semantics,
                                  "1", valid)
        else:
            x1, y1 = x0, y0
    tw, th = target.width, target.height
    pad = side - 1
    wp, hp = tw + pad, th + pad
    i32 = np.int32
    rw = np.subtract(x1, x0, out=ws.get("rw", n, i32))  # width - 1 (wraps harmlessly on int32 limits)
    rh = np.subtract(y1, y0, out=ws.get("rh", n, i32))  # height - 1
    ok = np.less(rw.view(np.uint32), side, out=ws.get("ok", n, np.bool_))
    tmp = ws.get("tmpb", n, np.bool_)
    ok &= np.less(rh.view(np.uint32), side, out=tmp)
    ok &= valid
    sx = np.add(x0, pad, out=ws.get("sx", n, i32))
    sy = np.add(y0, pad, out=ws.get("sy", n, i32))
    ok &= np.less(sx.view(np.uint32), wp, out=tmp)
    ok &= np.less(sy.view(np.uint32), hp, out=tmp)
    # index in the class planes [rh][rw][sy][sx]; every other pixel goes to one trash cell
    cls = np.multiply(rh, side, out=ws.get("cls", n, i32))
    cls += rw
    cls *= hp
    cls += sy
    cls *= wp
    cls += sx
    out = idx_out[lo:hi]
    out[...] = cls
    np.logical_not(ok, out=tmp)
    np.copyto(out, side * side * wp * hp, where=tmp)
    # the rest: valid pixels outside the planes whose rectangle still meets the image (rare)
    tmp &= valid
    tmp2 = ws.get("tmpb2", n, np.bool_)
    tmp &= np.greater_equal(x1, 0, out=tmp2)
    tmp &= np.greater_equal(y1, 0, out=tmp2)
    tmp &= np.less(x0, tw, out=tmp2)
    tmp &= np.less(y0, th, out=tmp2)
    rest = np.flatnonzero(tmp)
    if not len(rest):
        return None
    return rest + lo, x0[rest].copy(), y0[rest].copy(), x1[rest].copy(), y1[rest].copy(), zc[rest].copy()


def _spread(a: np.ndarray, axis: int, buf: np.ndarray) -> np.ndarray:
    """``buf = min(a, a shifted by one pixel along axis)`` (extends each run by one pixel right/down)."""
    if axis == 1:
        buf[:, 0] = a[:, 0]
        np.minimum(a[:, 1:], a[:, :-1], out=buf[:, 1:])
    else:
        buf[0] = a[0]
        np.minimum(a[1:], a[:-1], out=buf[1:])
    return buf


def _register_fast(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                   footprint: Footprint, threads: int = 1, side: int = 3) -> np.ndarray:
    """Dense float32 corners, then a z-buffer by rectangle-size class.

    Each pixel's z is scattered (one ``np.minimum.at``) to its rectangle's top-left corner in the plane of its
    (height, width) class; planes are spread by separable one-pixel min shifts (wider classes first, merged as
    they go) and merged. Rectangles larger than ``side`` (degenerate geometry) are filled one by one. Exact:
    equals the reference fill.
    """
    intr = depth.intrinsics
    n = intr.height * intr.width
    z = depth.data.reshape(-1)
    if int(z.max(initial=0)) == 0xFFFF:  # the uint16 sentinel would collide: generic fill
        _, zz, x0, y0, x1, y1 = register_corners(depth, target, ext, semantics=semantics, footprint=footprint)
        return _fill_numpy(zz, x0, y0, x1, y1, target)
    tw, th = target.width, target.height
    pad = side - 1
    wp, hp = tw + pad, th + pad
    trash = side * side * wp * hp
    idx = _WS.get("idx", n, np.intp)
    rect = fills_rectangle(intr, target, footprint)
    scale = float(depth.depth_scale_m)
    bounds = list(range(0, n, _CHUNK)) + [n]
    jobs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    args = (intr, scale, target, ext, semantics, rect, side, idx)
    if threads > 1 and len(jobs) > 1:
        rests = list(_pool(threads).map(lambda ab: _chunk(z, ab[0], ab[1], *args), jobs))
    else:
        rests = [_chunk(z, a, b, *args) for a, b in jobs]
    planes = _WS.get("planes", trash + 1, np.uint16)
    planes.fill(0xFFFF)
    np.minimum.at(planes, idx, z)
    planes = planes[:trash].reshape(side, side, hp, wp)
    present = planes.reshape(side, side, -1).min(axis=2) != 0xFFFF
    rows = []
    nbuf = 0

    def buffer() -> np.ndarray:
        nonlocal nbuf
        nbuf += 1
        return _WS.get(f"spread{nbuf}", (hp, wp), np.uint16)

    for h in range(side):
        m = None
        for w in range(side - 1, -1, -1):
            if m is not None:
                m = _spread(m, 1, buffer())
            if present[h, w]:
                m = planes[h, w] if m is None else np.minimum(m, planes[h, w], out=m)
        rows.append(m)
    m = None
    for h in range(side - 1, -1, -1):
        if m is not None:
            m = _spread(m, 0, buffer())
        if rows[h] is not None:
            m = rows[h] if m is None else np.minimum(m, rows[h], out=m)
    result = np.full((th, tw), 0xFFFF, np.uint16) if m is None else m[pad:, pad:].copy()
    for rest in rests:
        if rest is None:
            continue
        _, x0, y0, x1, y1, zr = rest
        lim = np.zeros(len(zr), bool)
        for a in (x0, y0, x1, y1):
            lim |= (a == _INT_LIMITS[0]) | (a == _INT_LIMITS[1])
        cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
        cx1, cy1 = np.minimum(x1, tw - 1), np.minimum(y1, th - 1)
        for i in np.flatnonzero((cx1 >= cx0) & (cy1 >= cy0) & ~lim):
            view = result[cy0[i]:cy1[i] + 1, cx0[i]:cx1[i] + 1]
            np.minimum(view, zr[i], out=view)
    result[result == 0xFFFF] = 0
    return result


def _register_torch(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                    footprint: Footprint, device: str | None = None) -> np.ndarray:
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

    def corner(offset: float):
        rx, ry = corner_rays(intr, offset, semantics)
        rx = torch.from_numpy(np.array(rx)).to(dev).reshape(-1)[index]
        ry = torch.from_numpy(np.array(ry)).to(dev).reshape(-1)[index]
        d = z.to(torch.float32) * scale
        px, py = d * rx, d * ry
        comp = [px * r[k, 0] + (py * r[k, 1] + (d * r[k, 2] + t[k])) for k in range(3)]
        x, y = comp[0] / comp[2], comp[1] / comp[2]
        if _distorts_target(target, semantics):
            xn, yn = _distort_f32(x.cpu().numpy(), y.cpu().numpy(), target, semantics)
            x, y = torch.from_numpy(xn).to(dev), torch.from_numpy(yn).to(dev)
        u = x * float(np.float32(target.fx)) + float(np.float32(target.cx)) + 0.5
        v = y * float(np.float32(target.fy)) + float(np.float32(target.cy)) + 0.5
        bad = ~(torch.isfinite(u) & torch.isfinite(v) & (comp[2] > 0))
        iu = torch.clamp(torch.nan_to_num(u), -2**30, 2**30).to(torch.int64)
        iv = torch.clamp(torch.nan_to_num(v), -2**30, 2**30).to(torch.int64)
        iu[bad] = -(1 << 30)
        iv[bad] = -(1 << 30)
        return iu, iv

    x0, y0 = corner(-0.5)
    x1, y1 = corner(0.5) if fills_rectangle(intr, target, footprint) else (x0, y0)
    w, h = target.width, target.height
    cx0, cy0 = x0.clamp(min=0), y0.clamp(min=0)
    rw = x1.clamp(max=w - 1) - cx0 + 1
    rh = y1.clamp(max=h - 1) - cy0 + 1
    keep = (rw > 0) & (rh > 0)
    z, cx0, cy0, rw, rh = z[keep], cx0[keep], cy0[keep], rw[keep], rh[keep]
    zbuf = torch.full((w * h,), 0x10000, dtype=torch.int32, device=dev)
    if z.numel():
        max_w, max_h = int(rw.max()), int(rh.max())
        base = cy0 * w + cx0
        for dy in range(max_h):
            for dx in range(max_w):
                m = (rw > dx) & (rh > dy)
                zbuf.scatter_reduce_(0, base[m] + dy * w + dx, z[m], reduce="amin")
    zbuf[zbuf == 0x10000] = 0
    return zbuf.to(torch.int32).cpu().numpy().astype(np.uint16).reshape(h, w)


def _gpu_available() -> bool:
    torch = sys.modules.get("torch")  # never import torch just to look for a GPU
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:
        return False


def register_depth(depth: Frame, target: Intrinsics, depth_to_target: Extrinsics,
                   target_modality: Modality = Modality.RGB, *, method: Method = "auto",
                   semantics: Semantics = "rsutil", footprint: Footprint = "rect", threads: int = 1) -> Frame:
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

    Returns:
        A depth frame ``uint16 target.height × target.width`` in raw units with ``intrinsics=target``,
        ``registered_to=target_modality`` and the timestamps, sequence and scale of ``depth``.

    Raises:
        ShapeError: ``depth`` is not a depth frame.
        ConfigError: unknown method, semantics or footprint.
    """
    _check(depth, target, semantics, footprint)
    if method == "auto":
        method = "torch" if _gpu_available() else "numpy"
    if method == "torch":
        data = _register_torch(depth, target, depth_to_target, semantics, footprint)
    elif method == "numpy":
        data = _register_fast(depth, target, depth_to_target, semantics, footprint, threads=threads)
    elif method in ("generic", "reference"):
        _, z, x0, y0, x1, y1 = register_corners(depth, target, depth_to_target, semantics=semantics,
                                                footprint=footprint)
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
              *, repeats: int = 30, warmup: int = 3, with_librealsense: bool = True, threads: int = 1) -> dict:
    """Time our registration and ``rs.align`` on the same frames, side by side, interleaved.

    Without arguments a 640x480 → 640x480 D435-like scene is used (the real recording's factory calibration,
    a slanted plane with an occluder and holes). Returns medians in ms and ``ratio = ours / rs.align``.
    """
    if depth is None:
        depth, target, depth_to_target = d435_like_scene()
    assert target is not None and depth_to_target is not None
    res: dict = {"width": depth.intrinsics.width, "height": depth.intrinsics.height, "threads": threads,
                 "target": f"{target.width}x{target.height}", "repeats": repeats}
    aligner = None
    if with_librealsense:
        aligner = _RsAligner(depth.intrinsics, target, depth_to_target, float(depth.depth_scale_m))
        res["librealsense"] = aligner.rs.__version__
    ours, theirs, agree = [], [], None
    try:
        for i in range(warmup + repeats):
            t0 = time.perf_counter_ns()
            mine = register_depth(depth, target, depth_to_target, method="numpy", threads=threads)
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
    if theirs:
        res["rs_align_ms"] = float(np.median(theirs))
        res["ratio"] = res["ours_ms"] / res["rs_align_ms"]
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
