"""The torch path (``method="torch"``): the fast path's float32 arithmetic with a ``scatter_reduce`` (amin)
z-buffer, on CUDA when present, else on the CPU. torch is never imported just to look for a GPU."""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.registration.corners import (Arithmetic, Footprint, Semantics, _distort_f32, _distorts_target,
                                                  _finish_distorted, _folded, corner_rays, fills_rectangle,
                                                  folded_coefficients)
from edgepad.drivers.registration.reference import _fill_into
from edgepad.geometry import Extrinsics, Intrinsics
from edgepad.types import Frame

torch = lazy("torch")


def _gpu_available() -> bool:
    """Whether torch is already imported and sees a CUDA device."""
    loaded = sys.modules.get("torch")  # never import torch just to look for a GPU
    try:
        return bool(loaded is not None and loaded.cuda.is_available())
    except Exception:
        return False


def _device_constants(intr: Intrinsics, target: Intrinsics, ext: Extrinsics, semantics: Semantics, offset: float,
                      folded: bool, device: str) -> tuple:
    """The per-pixel constants of one corner as tensors on ``device`` (a registrar uploads them once per pair)."""
    if folded:
        arrays = folded_coefficients(intr, offset, semantics, ext, target)[:3]
    else:
        arrays = tuple(a.reshape(-1) for a in corner_rays(intr, offset, semantics))
    return tuple(torch.from_numpy(np.array(a)).to(device) for a in arrays)


def _register_torch(depth: Frame, target: Intrinsics, ext: Extrinsics, semantics: Semantics,
                    footprint: Footprint, device: str | None = None, arithmetic: Arithmetic = "exact",
                    constants: Callable[[float, bool, str], tuple] | None = None) -> np.ndarray:
    """The fast path in torch (CUDA when available); same float32 operation order as the numpy path.

    ``constants(offset, folded, device)`` gives the cached device tensors of one corner (default: uploaded now).
    """
    if constants is None:
        def constants(offset: float, folded: bool, dev: str) -> tuple:
            return _device_constants(intr, target, ext, semantics, offset, folded, dev)
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
        consts = [c[index] for c in constants(offset, folded, str(dev))]
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

