"""The reference rectangle fill (an explicit per-pixel loop: clear, slow) and the generic vectorised fill that the
fast, window and torch paths use for rectangles outside their common sizes."""
from __future__ import annotations

import numpy as np

from edgepad.drivers.registration.corners import _INT_LIMITS
from edgepad.geometry import Intrinsics


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

