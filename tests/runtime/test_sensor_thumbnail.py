"""The frozen-frame thumbnail (``runtime.sensors.thumbnail``) keeps its definition through the strided-add fast path
and through the compiled block sums the monitor uses for 8- and 16-bit images (``native.BlockSums``).

The definition, written out block by block below: block sums over ``s × s`` px with ``s = min(H, W) // 64``, the
rows / columns that do not fill a block added to the last block row / column, the bottom-right corner left out;
uint32 for integer images, float64 otherwise; None for a constant image. No timing is asserted.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.geometry import Intrinsics
from edgepad.runtime.sensors import SensorMonitor, thumbnail
from edgepad.types import Frame, FrameSet, Modality


def _thumbnail_by_blocks(a: np.ndarray) -> np.ndarray:
    """The definition, one block at a time (slow, plain)."""
    h, w = a.shape[:2]
    s = max(1, min(h, w) // 64)
    hb, wb = h // s, w // s
    dt = np.uint32 if a.dtype.kind in "bu" and a.dtype.itemsize <= 2 else np.float64
    out = np.zeros((hb, wb) + a.shape[2:], dt)
    for by in range(hb):
        y1 = h if by == hb - 1 else (by + 1) * s
        for bx in range(wb):
            x1 = w if bx == wb - 1 else (bx + 1) * s
            blk = a[by * s: y1, bx * s: x1].astype(np.float64 if dt is np.float64 else np.int64)
            total = blk.sum(axis=(0, 1))
            if by == hb - 1 and bx == wb - 1 and y1 > hb * s and x1 > wb * s:
                total = total - blk[hb * s - by * s:, wb * s - bx * s:].sum(axis=(0, 1))
            out[by, bx] = total
    return out


CASES = [((480, 640, 3), np.uint8), ((480, 640), np.uint16), ((480, 640), np.uint8), ((479, 641, 3), np.uint8),
         ((481, 849), np.uint16), ((720, 1280, 3), np.uint8), ((100, 130), np.uint16), ((60, 80, 3), np.uint8),
         ((1080, 1920, 3), np.uint8), ((200, 300), bool), ((128, 129), np.float32)]


@pytest.mark.parametrize("shape,dtype", CASES)
def test_thumbnail_equals_the_block_by_block_definition(shape, dtype):
    """Random and saturated images (the uint16 accumulation of 8-bit images must not wrap at 255 everywhere)."""
    rng = np.random.default_rng(len(shape) * 1000 + shape[0])
    if dtype is np.float32:
        imgs = [rng.random(shape).astype(dtype)]
    elif dtype is bool:
        imgs = [rng.random(shape) > 0.5]
    else:
        top = np.iinfo(dtype).max
        sat = np.full(shape, top, dtype)
        sat[0, 0] = 0
        imgs = [rng.integers(0, int(top) + 1, shape).astype(dtype), sat]
    for a in imgs:
        got, want = thumbnail(a), _thumbnail_by_blocks(a)
        assert got.dtype == want.dtype and got.shape == want.shape
        if dtype is np.float32:
            np.testing.assert_allclose(got, want, rtol=1e-9)
        else:
            assert np.array_equal(got, want)


def test_thumbnail_counts_remainder_pixels_but_not_the_corner():
    a = np.random.default_rng(1).integers(0, 200, (479, 641, 3)).astype(np.uint8)  # s = 7: 3 rows, 4 columns over
    base = thumbnail(a)
    for y, x, counted in ((478, 10, True), (10, 640, True), (478, 640, False), (0, 0, True)):
        b = a.copy()
        b[y, x, 1] += 1
        assert (not np.array_equal(thumbnail(b), base)) is counted, (y, x)
    assert thumbnail(np.full((448, 644), 7, np.uint16)) is None  # 64 × 92 full blocks: all sums equal


def _set(data: dict, i: int) -> FrameSet:
    t = (i + 1) * 33_000_000
    intr = Intrinsics(640, 480, 600.0, 600.0, 320.0, 240.0)
    return FrameSet({m: Frame(m, d, t, None, i, "test", intr, 0.001 if m is Modality.DEPTH else None)
                     for m, d in data.items()}, t, 0)


def test_frozen_stream_is_flagged_on_its_first_repeat():
    """A still image with one pixel changed per frame is frozen from the second frame on; fresh noise never is."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    depth = rng.integers(300, 3000, (480, 640)).astype(np.uint16)
    mon = SensorMonitor()
    flags = []
    for i in range(6):
        r = rgb.copy()
        r[7 * i, 11 * i, 0] ^= 1
        flags.append(mon.check(_set({Modality.RGB: r, Modality.DEPTH: depth}, i)).problems)
    assert flags[0] == ()
    assert all(set(p) == {"rgb:frozen", "depth:frozen"} for p in flags[1:])
    live = SensorMonitor()
    for i in range(6):
        noisy = {Modality.RGB: rng.integers(0, 256, (480, 640, 3)).astype(np.uint8),
                 Modality.DEPTH: rng.integers(300, 3000, (480, 640)).astype(np.uint16)}
        assert live.check(_set(noisy, i)).ok
    assert min(live.last_changed.values()) > 0.9


def _compiled():
    from edgepad.drivers.registration.native import block_sums
    k = block_sums()
    if k is None:
        pytest.skip("no C compiler: the monitor runs the numpy thumbnail")
    return k


@pytest.mark.parametrize("shape,dtype", [c for c in CASES if c[1] in (np.uint8, np.uint16)] + [((7, 9), np.uint8)])
def test_compiled_block_sums_equal_the_definition(shape, dtype):
    """Random and saturated images, remainders and 1080p (the uint16 column sums of 8-bit images must not wrap)."""
    k = _compiled()
    rng = np.random.default_rng(shape[0] + 7)
    top = int(np.iinfo(dtype).max)
    sat = np.full(shape, top, dtype)
    sat[-1, -1] = 0                      # in the corner that is left out (or in the last block): constant or not
    for a in (rng.integers(0, top + 1, shape).astype(dtype), sat, np.full(shape, 3, dtype)):
        want = _thumbnail_by_blocks(a)
        got, constant = k.sums(a, max(1, min(shape[:2]) // 64))
        assert got.dtype == np.uint32 and np.array_equal(got, want)
        assert constant is bool(want.min() == want.max())


def test_compiled_block_sums_reject_what_they_do_not_cover():
    from edgepad.errors import EdgePadInternalError
    k = _compiled()
    for a, s in ((np.zeros((8, 8), np.float32), 1), (np.zeros((8, 8, 3, 1), np.uint8), 1), (np.zeros((8, 8), np.uint8), 9),
                 (np.zeros((8, 8), np.uint8), 0)):
        with pytest.raises(EdgePadInternalError):
            k.sums(a, s)
    with pytest.raises(EdgePadInternalError):
        k.fewest_changed(np.zeros(4, np.uint16), np.zeros((2, 5), np.uint16), 1)
    with pytest.raises(EdgePadInternalError):
        k.fewest_changed(np.zeros(4, np.uint32), np.zeros((2, 4), np.uint32), 1)


def test_monitor_flags_the_same_with_compiled_and_numpy_thumbnails():
    """A stream that freezes, is altered in a few pixels, cycles through 3 images and goes blank: the compiled
    path gives the numpy path's changed fractions and flags frame by frame (uint8 rgb / IR, uint16 depth)."""
    _compiled()
    rng = np.random.default_rng(5)
    frames = []
    stills = [{Modality.RGB: rng.integers(0, 256, (480, 640, 3)).astype(np.uint8),
               Modality.DEPTH: rng.integers(300, 3000, (480, 640)).astype(np.uint16),
               Modality.IR: rng.integers(0, 256, (480, 640)).astype(np.uint8)} for _ in range(3)]
    for i in range(30):
        if i < 8:
            d = {m: rng.integers(0, 256 if v.dtype == np.uint8 else 3000, v.shape).astype(v.dtype)
                 for m, v in stills[0].items()}
        elif i < 14:
            d = {m: v.copy() for m, v in stills[0].items()}
            d[Modality.RGB][i, 3 * i, 1] ^= 4
        elif i < 24:
            d = stills[i % 3]
        else:
            d = {m: np.zeros_like(v) for m, v in stills[0].items()}
        frames.append(_set(d, i))
    fast, slow = SensorMonitor(), SensorMonitor()
    slow._native = None
    got = [(fast.check(fs).problems, dict(fast.last_changed)) for fs in frames]
    want = [(slow.check(fs).problems, dict(slow.last_changed)) for fs in frames]
    assert fast._native is not None and got == want
    assert any("rgb:frozen" in p for p, _ in got[8:14]) and all("ir:frozen" in p for p, _ in got[17:24])  # the cycle repeats from frame 17


def test_kept_thumbnails_compare_the_low_16_bits_of_each_block_sum():
    """At 640×480 every 8-bit block sum fits 16 bits: a one-level change of one pixel is one changed block. A 16-bit
    image's block that changed by exactly 65536 is the documented blind spot (both paths agree on it)."""
    rng = np.random.default_rng(9)
    for native in (False, True):
        rgb = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
        depth = rng.integers(300, 3000, (480, 640)).astype(np.uint16)
        mon = SensorMonitor()
        if not native:
            mon._native = None
        mon.check(_set({Modality.RGB: rgb, Modality.DEPTH: depth}, 0))
        r2, d2 = rgb.copy(), depth.copy()
        r2[100, 100, 2] ^= 1
        d2[:7, :7] += 1337                       # block (0, 0): sum + 65513, a real change
        d2[7:14, :7] = 0                         # block (1, 0): its 49 pixels ...
        d2[7:14, :7].flat[:49] = depth[7:14, :7].flat[:49]
        d2[7, 0] = depth[7, 0] + 65536 // 2     # ... two pixels + 32768 each: the sum moves by 65536
        d2[7, 1] = depth[7, 1] + 65536 // 2
        mon.check(_set({Modality.RGB: r2, Modality.DEPTH: d2}, 1))
        n_rgb, n_depth = 68 * 91 * 3, 68 * 91
        assert mon.last_changed["rgb"] == pytest.approx(1 / n_rgb)
        assert mon.last_changed["depth"] == pytest.approx(1 / n_depth)  # block (1, 0) is not seen


def test_compiled_comparison_counts_past_its_16_bit_lanes():
    """The kernel counts in chunks of 65535 values: a 200 000-block key against rows that differ in 0, 1, 65535,
    65536, 131071 and all values gives numpy's counts."""
    k = _compiled()
    rng = np.random.default_rng(4)
    n = 200_000
    key = rng.integers(0, 65536, n).astype(np.uint16)
    for d in (0, 1, 65535, 65536, 131071, n):
        ring = np.repeat(key[None], 3, axis=0)
        idx = rng.choice(n, d, replace=False)
        ring[1, idx] += 1
        ring[0] ^= 1                                     # every value differs
        ring[2, :] = key + 7
        assert k.fewest_changed(key, ring, 3) == d == int(np.count_nonzero(ring[1] != key))
