"""The fast CPU path (``method="numpy"``): cached per-pixel constants, chunked in-place float32 corners and a
z-buffer by rectangle-size class (``np.minimum.at`` + separable min spreads). Output equals the reference fill."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np

from edgepad.drivers.registration.corners import (_F32, _WS, Arithmetic, Footprint, Semantics,
                                                  _corner_bounds, _cull_range, _distort_inplace, _distorts_target,
                                                  _folded, _to_pixels_f32, corner_rays,
                                                  fills_rectangle, folded_coefficients)
from edgepad.drivers.registration.reference import _fill_into
from edgepad.geometry import Extrinsics, Intrinsics
from edgepad.types import Frame

_POOL: dict = {}
#: pixels per chunk of the fast path: its float32 scratch buffers stay cache-resident
_CHUNK = 32768


def _pool(threads: int):
    """A shared thread pool for the chunked fast path (numpy releases the GIL in its loops)."""
    ex = _POOL.get(threads)
    if ex is None:
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
    if valid is not None:
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
    if zpos is not None:
        zpos &= np.greater(zz, 0, out=ws.get("zgt", n, np.bool_))
    iu = ws.get(f"iu{tag}", n, np.int32)
    iv = ws.get(f"iv{tag}", n, np.int32)
    if _distorts_target(target, semantics):  # as _finish_distorted, in place
        u = np.multiply(d, au[lo:hi], out=ws.get("u", n, _F32))
        u += tu
        u /= zz
        v = np.multiply(d, av[lo:hi], out=ws.get("v", n, _F32))
        v += tv
        v /= zz
        _distort_inplace(u, v, target, semantics)
        for a, f, c, out in ((u, target.fx, target.cx, iu), (v, target.fy, target.cy, iv)):
            a *= _F32(f)
            a += _F32(c + 0.5)
            out[...] = a  # |a| >= 2**31 or NaN gives INT32_MIN: dropped with the rare rectangles, as the reference
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

    def __init__(self, subset, folded: bool, corner0, corner1, z_slope: float) -> None:
        self.subset, self.folded, self.corner0, self.corner1 = subset, folded, corner0, corner1
        self.z_slope = z_slope  # min over kept pixels and corners of dz'/dz (the rotated ray's z)

    def in_front(self, scale: float, tz: float) -> bool:
        """Whether every corner of a depth ≥ 1 raw unit lies in front of the target camera (``z' > 0`` with a
        margin far above float32 rounding), so the per-pixel test can be skipped."""
        return self.z_slope > 0.01 and tz >= -0.5 * self.z_slope * scale




def _pixel_data(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, rect: bool,
                folded: bool, cull: tuple[float, float] | None) -> _PixelData:
    """Per-pixel constants of one pair (a ``Registrar`` caches them per nearest-depth bucket); with
    ``cull = (dmin_m, dmax_m)`` only pixels whose corners can land within 2 px of the target for some depth in that
    range are kept (projection is monotonic in depth between the two ends, so the end points bound it). Culled
    pixels cannot write any target pixel: the output is unchanged."""
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
    z_slope = math.inf
    for off in offsets:
        rx, ry = corner_rays(intr, off, semantics)
        a2 = ext.r[2, 0] * pick(rx).astype(np.float64) + ext.r[2, 1] * pick(ry).astype(np.float64) + ext.r[2, 2]
        z_slope = min(z_slope, float(a2.min()) if a2.size else math.inf)
        if folded:
            au, av, az, tu, tv, tz = folded_coefficients(intr, off, semantics, ext, target)
            corners.append((pick(au), pick(av), pick(az), tu, tv, tz))
        else:
            rx, ry = corner_rays(intr, off, semantics)
            corners.append((pick(rx), pick(ry)))
    return _PixelData(subset, folded, corners[0], corners[1] if rect else None, z_slope)



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


class _Squares:
    """Geometry of the single-plane z-buffer of the full-frame path: a rectangle with sides ``s0 .. s0 + k - 1``
    is the union of ``(w - s0 + 1) × (h - s0 + 1)`` squares of side ``s0``, whose top-left cells are stored at
    ``+off`` in one plane (row length ``we``) that is then spread to side ``s0``; ``we + 2`` trash cells follow it."""

    def __init__(self, target: Intrinsics, sizes: tuple[int, int]) -> None:
        self.s0, s1 = sizes
        self.k = s1 - self.s0 + 1
        if self.k > 2:
            raise ValueError("at most two rectangle sides per axis")  # internal invariant (_sizes)
        self.off = s1 - 1  # a class-sized rectangle further left/up misses the image
        self.wb = target.width + self.off  # top-left cells at or beyond wb/hb miss the image too
        self.hb = target.height + self.off
        self.we = self.wb + self.k - 1  # room for the squares right of / below a top-left cell
        self.he = self.hb + self.k - 1
        self.trash = self.we * self.he
        self.size = self.trash + self.we + 2  # trash cells: a dropped pixel's squares stay among them


def _chunk(z, lo: int, hi: int, pix: "_PixelData", scale: float, target: Intrinsics, ext: Extrinsics,
           semantics: Semantics, lay: _Squares, idx_out: np.ndarray, z1_out: np.ndarray) -> tuple | None:
    """Corners and plane cells of depth pixels ``lo:hi``: ``idx_out[j]`` holds the top-left cell of square ``j``
    of each rectangle (j = 0 and, with two sizes, right, below, below-right; a rectangle of side ``s0`` repeats
    its own cell; trash for dropped pixels); ``z1_out = z - 1`` wrapping, so a hole (0) becomes 0xFFFF, the empty
    value of the min z-buffer.

    Returns the pixels whose rectangle has another size as ``(pixel, x0, y0, x1, y1, z - 1)``, or None.
    """
    ws = _WS
    zc = z[lo:hi]
    n = hi - lo
    z1 = np.subtract(zc, np.uint16(1), out=z1_out[lo:hi])
    d = np.multiply(zc, _F32(scale), out=ws.get("d", n, _F32), dtype=_F32)
    zpos = None
    if not pix.in_front(scale, float(ext.t[2])):
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
    if zpos is not None and not zpos.all():  # corners behind the target camera (or off int32): dropped
        np.logical_not(zpos, out=zpos)
        np.copyto(z1, np.uint16(0xFFFF), where=zpos)
    k, s0 = lay.k, lay.s0
    i32 = np.int32
    sx = np.add(x0, lay.off, out=ws.get("sx", n, i32))
    sy = np.add(y0, lay.off, out=ws.get("sy", n, i32))
    # int32 ops only (fast, SIMD); negative values seen as uint32 are huge, so one compare tests both ends
    drop = np.greater_equal(sx.view(np.uint32), lay.wb, out=ws.get("drop", n, np.bool_))
    tmpb = ws.get("tmpb", n, np.bool_)
    drop |= np.greater_equal(sy.view(np.uint32), lay.hb, out=tmpb)  # class-sized and off the plane: misses
    bad = None
    if k > 1 or x1 is not x0:
        rw = np.subtract(x1, x0, out=ws.get("rw", n, i32))
        rw -= s0 - 1
        rh = np.subtract(y1, y0, out=ws.get("rh", n, i32))
        rh -= s0 - 1
        either = np.bitwise_or(rw, rh, out=ws.get("either", n, i32))  # k is 1 or 2: >= k iff a side is off-class
        bad = np.greater_equal(either.view(np.uint32), k, out=ws.get("bad", n, np.bool_))
        drop |= bad
    cell = np.multiply(sy, lay.we, out=idx_out[0, lo:hi])
    cell += sx
    to_trash = np.subtract(lay.trash, cell, out=ws.get("trash", n, i32))  # cell = trash where dropped, branch-free
    to_trash *= drop  # (int32 wraps: exact also for overflowed cells)
    cell += to_trash
    if k > 1:  # the other squares of a wider/taller rectangle; the others write their own cell again (harmless)
        rw &= 1  # kept pixels have 0 or 1 already; dropped ones land within the trash cells after `trash`
        rh &= 1
        np.add(cell, rw, out=idx_out[1, lo:hi])  # right
        below = np.multiply(rh, lay.we, out=idx_out[2, lo:hi])
        below += cell
        np.add(below, rw, out=idx_out[3, lo:hi])
    if bad is None or not bad.any():
        return None
    rest = np.flatnonzero(bad)
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


def _min_squares(idx: np.ndarray, z1: np.ndarray, lay: _Squares, th: int, tw: int) -> np.ndarray:
    """The z-buffer (uint16 ``z - 1``, 0xFFFF = empty; ``th × tw`` view) of class-sized rectangles: ``z1`` is
    min-scattered to the top-left cell of each rectangle's squares (the rows of ``idx``; trash for the others),
    then the plane is spread to side ``s0`` by one-pixel min shifts along each axis."""
    flat = _WS.get("squares", lay.size, np.uint16)
    flat[:lay.trash].fill(0xFFFF)
    for cells in idx:
        np.minimum.at(flat, cells, z1)
    m = flat[:lay.trash].reshape(lay.he, lay.we)
    bufs = [_WS.get(f"squares-spread{i}", (lay.he, lay.we), np.uint16) for i in range(2)]
    cur = 0
    for axis in (1, 0):
        for _ in range(lay.s0 - 1):
            m = _spread(m, axis, bufs[cur])
            cur ^= 1
    return m[lay.off:lay.off + th, lay.off:lay.off + tw]


def _register_fast(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                   footprint: Footprint, threads: int = 1, arithmetic: Arithmetic = "exact",
                   pixels: Callable[[tuple[float, float] | None], _PixelData] | None = None) -> np.ndarray:
    """Dense float32 corners (cached rays, chunked), then a z-buffer by rectangle-size class.

    Each pixel's ``z - 1`` (holes wrap to 0xFFFF, the empty value) is scattered with one ``np.minimum.at`` to
    its rectangle's top-left corner in the plane of its (height, width) class, for the two most common sides;
    planes are spread by separable one-pixel min shifts (wider classes first, merged as they go) and merged.
    Other rectangles take the generic fill. Exact: equals the reference fill. ``pixels(cull)`` gives the cached
    :class:`_PixelData` of a nearest-depth bucket (default: built for this call).
    """
    intr = depth.intrinsics
    z = depth.data.reshape(-1)
    folded = _folded(target, semantics, arithmetic)
    tw, th = target.width, target.height
    rect = fills_rectangle(intr, target, footprint)
    lay = _Squares(target, _sizes(intr, target) if rect else (1, 1))
    scale = float(depth.depth_scale_m)
    cull = _cull_range(z, scale)
    pix = (pixels(cull) if pixels is not None
           else _pixel_data(intr, target, ext, semantics, rect, folded, cull))
    if pix.subset is not None:
        z = np.take(z, pix.subset, out=_WS.get("zsub", len(pix.subset), np.uint16))
    n = z.size
    idx = _WS.get("idx", (lay.k * lay.k, n), np.int32)
    z1 = _WS.get("z1", n, np.uint16)
    bounds = list(range(0, n, _CHUNK)) + [n]
    jobs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    args = (pix, scale, target, ext, semantics, lay, idx, z1)
    if threads > 1 and len(jobs) > 1:
        rests = list(_pool(threads).map(lambda ab: _chunk(z, ab[0], ab[1], *args), jobs))
    else:
        rests = [_chunk(z, a, b, *args) for a, b in jobs]
    crop = _min_squares(idx, z1, lay, th, tw)
    rests = [r for r in rests if r is not None]
    if rests:
        crop = np.ascontiguousarray(crop)  # _fill_into scatters into the flat buffer
        for rest in rests:
            _fill_into(crop, rest[5], *rest[1:5])
    return np.add(crop, np.uint16(1), dtype=np.uint16)  # z - 1 + 1 = z; empty 0xFFFF wraps to 0 (hole)

