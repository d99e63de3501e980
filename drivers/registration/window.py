"""Face-window registration: only the depth pixels whose corners can land in a target window are projected
(per-column/per-row culling bounds for each nearest-depth bucket); values inside the window are identical to the
full-frame registration, 0 elsewhere."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgepad.drivers.registration.corners import (Arithmetic, Footprint, Semantics, _corner_bounds, _cull_range,
                                                  _distorts_target, _drop_bad, _folded, _project_corner,
                                                  _project_corner_folded, corner_rays, fills_rectangle,
                                                  folded_coefficients)
from edgepad.drivers.registration.fast import _Layout, _min_planes, _Size, _sizes
from edgepad.drivers.registration.reference import _fill_into
from edgepad.errors import ShapeError
from edgepad.geometry import Extrinsics, Intrinsics
from edgepad.types import Frame

Window = tuple[int, int, int, int]


class _WindowBounds:
    """Per-column / per-row bounds of where a depth pixel's corners can land in the target (cached per camera pair
    and nearest-depth bucket by a :class:`~edgepad.drivers.registration.Registrar`), for :func:`_register_window`."""

    def __init__(self, col_lo_u, col_hi_u, row_lo_v, row_hi_v, unsure, margin: float) -> None:
        self.col_lo_u, self.col_hi_u, self.row_lo_v, self.row_hi_v = col_lo_u, col_hi_u, row_lo_v, row_hi_v
        self.unsure, self.margin = unsure, margin


def _window_bounds(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, rect: bool,
                   cull: tuple[float, float]) -> _WindowBounds:
    """The out-of-view culling bounds of :func:`edgepad.drivers.registration.fast._pixel_data` (same argument:
    projection is monotonic in depth between the ends of ``cull``; a distorting target is sampled at 8 depths with
    an 8 px margin and points beyond the monotonic part of its radial map are "unsure", i.e. always processed),
    reduced per depth column (u) and per depth row (v). A depth pixel can only write target pixels within
    ``margin`` of its column's u range and its row's v range."""
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


def _clip_window(window: object, target: Intrinsics) -> Window:
    try:
        x0, y0, x1, y1 = (int(v) for v in window)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError("window", "(x0, y0, x1, y1) target pixels, end-exclusive", window) from None
    return max(0, x0), max(0, y0), min(target.width, x1), min(target.height, y1)


#: ``bucket`` argument of the window paths: the bucket is not given, scan the frame for it
SCAN = "scan"


def _window_sources(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics, rect: bool,
                    window: Window, bounds: Callable[[tuple[float, float]], _WindowBounds] | None,
                    bucket: tuple[float, float] | None | str = SCAN
                    ) -> tuple[tuple[float, float] | None, int, int, int, int, np.ndarray | None]:
    """``(cull, r0, r1, c0, c1, extra)``: the frame's nearest-depth bucket (:func:`_cull_range`, or ``bucket``
    when the caller scanned this frame for it already) and the depth pixels that can write into ``window``: the
    block ``rows r0:r1 × cols c0:c1`` plus ``extra`` (flat indices of "unsure" pixels with depth outside that
    block; None = none to add)."""
    wx0, wy0, wx1, wy1 = window
    intr, data = depth.intrinsics, depth.data
    cull = _cull_range(data.reshape(-1), float(depth.depth_scale_m)) if bucket == SCAN else bucket
    if cull is None:  # something nearer than 0.1 m: no precomputed bounds, take every pixel
        return None, 0, intr.height, 0, intr.width, None
    b = bounds(cull) if bounds is not None else _window_bounds(intr, target, ext, semantics, rect, cull)
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
    return cull, r0, r1, c0, c1, extra


def _register_window(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics, footprint: Footprint,
                     arithmetic: Arithmetic, window: Window,
                     bounds: Callable[[tuple[float, float]], _WindowBounds] | None = None,
                     bucket: tuple[float, float] | None | str = SCAN) -> np.ndarray:
    """Registration of the target pixels inside ``window`` only (``(x0, y0, x1, y1)``, end-exclusive, clipped);
    0 elsewhere.

    Only depth pixels whose corners can land within the window (:func:`_window_bounds`, plus the "unsure" ones)
    are projected, with the corner arithmetic of :func:`register_corners`, and their rectangles are min-filled
    into a window-sized z-buffer (the generic fill). Inside the window the result is identical to the full-frame
    registration: a depth pixel left out cannot write any pixel of the window. ``bounds(cull)`` gives the cached
    :class:`_WindowBounds` of a nearest-depth bucket (default: built for this call); ``bucket``: this frame's
    bucket when already known (:meth:`~edgepad.drivers.registration.Registrar.bucket`), else it is scanned for.
    """
    wx0, wy0, wx1, wy1 = window
    out = np.zeros((target.height, target.width), np.uint16)
    if wx1 <= wx0 or wy1 <= wy0:
        return out
    intr = depth.intrinsics
    data = depth.data
    scale = float(depth.depth_scale_m)
    rect = fills_rectangle(intr, target, footprint)
    _, r0, r1, c0, c1, extra = _window_sources(depth, target, ext, semantics, rect, window, bounds, bucket)
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

