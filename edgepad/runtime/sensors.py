"""Sensor-integrity checks on the stream of frame sets (the runtime side of the sensor checks in docs/RUNTIME.md).

Per modality the monitor checks that

- timestamps strictly increase (a repeated or backwards timestamp is a violation),
- frame counters (``Frame.sequence``) strictly increase; gaps are counted as drops (not a violation),
- frames are not frozen or repeated: every frame is reduced to a thumbnail of block sums over the *whole* image
  (:func:`thumbnail`; every pixel counts) and compared with the thumbnails of the last ``repeat_window`` frames of
  that modality. Real sensors carry temporal noise, so nearly every block sum changes from frame to frame
  (measured on the D435 recording: docs/RELIABILITY.md); a frame whose thumbnail differs from an earlier one in
  fewer than ``min_changed`` of its blocks is a near-exact repeat: a stuck sensor, an injected still image (also
  with a few pixels altered per frame) or a replay cycling through a few images,
- modalities that the source reports are present: a reported stream absent for ``absent_after`` frame sets in
  a row is reported (the decision then degrades or fails closed through the policy).

A violation makes the current decision unknown (``sensor_integrity``); it never blocks later frame sets that are
clean again, except a frozen stream, which stays flagged until its pixels change. A constant (blank) image carries
no content and is left to the quality gates.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Collection

import numpy as np

from edgepad.errors import ConfigError
from edgepad.types import FrameSet, Modality

log = logging.getLogger(__name__)


@dataclass
class SensorStats:
    """Counters since :meth:`SensorMonitor.reset` (per modality name)."""

    frames: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    non_monotonic: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    frozen: dict[str, int] = field(default_factory=dict)
    absent: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: dict(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class IntegrityResult:
    """``ok`` is False when the frame set violates a check; ``problems`` lists ``"<modality>:<check>"``."""

    ok: bool
    problems: tuple[str, ...] = ()
    absent: frozenset[Modality] = frozenset()


class SensorMonitor:
    """Stateful integrity checks over consecutive frame sets.

    Args:
        expected: modalities the device reports (missing ones are tracked); None = learn from the first set.
        repeat_window: thumbnails kept per modality; a frame that repeats any of them is flagged (>= 1).
        min_changed: fraction of thumbnail blocks that must differ from every kept thumbnail (0..1).
        absent_after: frame sets in a row without a reported modality before it is reported absent.
    """

    def __init__(self, expected: Collection[Modality] | None = None, repeat_window: int = 16,
                 min_changed: float = 0.02, absent_after: int = 5) -> None:
        self.expected = frozenset(expected) if expected is not None else None
        self.repeat_window = max(1, int(repeat_window))
        if not (0.0 < float(min_changed) < 1.0):
            raise ConfigError(f"min_changed must be in (0, 1), got {min_changed!r}", key="min_changed")
        self.min_changed = float(min_changed)
        self.absent_after = max(1, int(absent_after))
        self._native: Any = False  # the compiled block sums, looked up on first use (None: numpy)
        self.reset()

    def reset(self) -> None:
        self.stats = SensorStats()
        self._last_ts: dict[Modality, int] = {}
        self._last_seq: dict[Modality, int] = {}
        self._thumbs: dict[Modality, _Kept] = {}
        #: per modality, the smallest changed-block fraction against the kept thumbnails for the last frame
        self.last_changed: dict[str, float] = {}
        self._absent_run: dict[Modality, int] = {}

    def check(self, frameset: FrameSet) -> IntegrityResult:
        """Update the state with one frame set and report its violations."""
        problems: list[str] = []
        if self.expected is None:
            self.expected = frozenset(frameset.frames)
        st = self.stats
        for m, f in frameset.frames.items():
            k = m.value
            st.frames[k] = st.frames.get(k, 0) + 1
            ts, seq = int(f.timestamp_ns), int(f.sequence)
            last_ts = self._last_ts.get(m)
            if last_ts is not None and ts <= last_ts:
                key = "repeated" if ts == last_ts else "non_monotonic"
                getattr(st, key)[k] = getattr(st, key).get(k, 0) + 1
                problems.append(f"{k}:{'repeated_timestamp' if ts == last_ts else 'timestamp_backwards'}")
            last_seq = self._last_seq.get(m)
            if last_seq is not None:
                if seq <= last_seq:
                    st.repeated[k] = st.repeated.get(k, 0) + 1
                    problems.append(f"{k}:sequence_not_increasing")
                elif seq > last_seq + 1:
                    st.drops[k] = st.drops.get(k, 0) + (seq - last_seq - 1)
            if last_ts is None or ts > last_ts:
                self._last_ts[m] = ts
            if last_seq is None or seq > last_seq:
                self._last_seq[m] = seq
            if self._repeats(m, f.data):
                st.frozen[k] = st.frozen.get(k, 0) + 1
                problems.append(f"{k}:frozen")
        absent = set()
        for m in self.expected or ():
            if m in frameset.frames:
                self._absent_run[m] = 0
            else:
                self._absent_run[m] = self._absent_run.get(m, 0) + 1
                if self._absent_run[m] >= self.absent_after:
                    absent.add(m)
                    st.absent[m.value] = st.absent.get(m.value, 0) + 1
        if problems:
            log.warning("sensor integrity: %s", ", ".join(problems))
        return IntegrityResult(not problems, tuple(problems), frozenset(absent))


    def _repeats(self, m: Modality, data: np.ndarray) -> bool:
        """Whether ``data`` is a near-exact repeat of one of the last ``repeat_window`` frames of ``m``."""
        th = self._thumbnail(data)
        if th is None:  # a blank (constant) image carries no content: validity gates handle it
            self._thumbs.pop(m, None)
            self.last_changed.pop(m.value, None)
            return False
        kept = self._thumbs.get(m)
        if kept is None or kept.shape != th.shape or kept.dtype != th.dtype:
            kept = self._thumbs[m] = _Kept(self.repeat_window, th)
        changed = kept.fewest_changed(th, self._native) / th.size if kept.count else 1.0
        kept.add(th)
        self.last_changed[m.value] = changed
        return changed < self.min_changed

    def _thumbnail(self, data: np.ndarray) -> np.ndarray | None:
        """:func:`thumbnail`, by the compiled block sums for 8- and 16-bit images where the kernel is available."""
        if self._native is False:  # first use: build or load the kernel (None: numpy; logged once by the driver)
            from edgepad.drivers.registration.native import block_sums
            self._native = block_sums()
        a = np.asarray(data)
        if self._native is None or a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or a.size == 0:
            return thumbnail(a)
        s = max(1, min(a.shape[:2]) // THUMB_SIDE)
        th, constant = self._native.sums(a, s)
        return None if constant else th


class _Kept:
    """The last ``window`` thumbnails of one stream in a ring, ``(window, thumbnail size)``: integer block sums by
    their low 16 bits (uint16; half the memory the per-frame comparison reads, ≈ 1 MB for rgb + depth + IR at
    640×480), float sums as float64.

    The low 16 bits are the whole sum for 8-bit images up to ``s = 8`` (a block of at most ``(2s − 1)²`` px sums to
    ≤ 65535: 640×480 and 848×480 frames); otherwise a block whose sum changed by a multiple of 65536 counts as
    unchanged, a chance of 2⁻¹⁶ per changed block — nothing against the ``min_changed`` fraction.
    """

    def __init__(self, window: int, like: np.ndarray) -> None:
        self.shape, self.dtype = like.shape, like.dtype
        self.rows = np.zeros((window, like.size), np.uint16 if like.dtype == np.uint32 else like.dtype)
        self.count = self.next = 0

    def _key(self, th: np.ndarray) -> np.ndarray:
        flat = th.reshape(-1)
        return flat.astype(np.uint16) if self.rows.dtype == np.uint16 else flat  # uint32 -> its low 16 bits

    def add(self, th: np.ndarray) -> None:
        self.rows[self.next] = self._key(th)
        self.next = (self.next + 1) % len(self.rows)
        self.count = min(self.count + 1, len(self.rows))

    def fewest_changed(self, th: np.ndarray, native) -> int:
        """The fewest blocks in which ``th`` differs from a kept thumbnail (``count`` >= 1)."""
        key = self._key(th)
        if native is not None and key.dtype == np.uint16:
            return native.fewest_changed(key, self.rows, self.count)
        return min(int(np.count_nonzero(key != self.rows[j])) for j in range(self.count))


#: thumbnail size: about this many blocks along the image's short side
THUMB_SIDE = 64


def thumbnail(data: np.ndarray) -> np.ndarray | None:
    """Block sums of the whole image: ``(H//s, W//s[, C])`` with ``s = max(1, min(H, W) // 64)`` (uint32 for
    integer images up to 16 bit; float64 otherwise).

    Every pixel counts (a change of one pixel changes its block's sum): the bottom rows and right columns that do
    not fill a block are added to the last block row / column (only the bottom-right corner, < s×s px, is left
    out). None for a constant image. Integer sums are exact, so any summation order gives the same thumbnail;
    float images may differ from another order in the last bits. Cost on 640×480×3 uint8: about 0.3 ms on one
    core of the shared development VM (docs/PERFORMANCE.md §0f); :class:`SensorMonitor` takes 8- and 16-bit
    images through the compiled block sums of ``edgepad.drivers.registration.native`` (same sums, ≈ 0.15 ms;
    §0k) where a C compiler is available.
    """
    a = np.asarray(data)
    if a.ndim < 2 or a.size == 0:
        return None
    h, w = a.shape[:2]
    dt = np.uint32 if a.dtype.kind in "bu" and a.dtype.itemsize <= 2 else np.float64
    s = max(1, min(h, w) // THUMB_SIDE)
    th = a.astype(dt) if s == 1 else _block_sums(a, s, dt)
    if th.min() == th.max():
        return None
    return th


def _block_sums(a: np.ndarray, s: int, dt: type) -> np.ndarray:
    """:func:`thumbnail`'s block sums for ``s > 1``: ``s`` strided row adds, then ``s`` strided column adds (each a
    whole-array operation; columns innermost, so a channel axis does not make the inner loops 3 long), the
    remainder rows / columns added to the last block row / column, the corner taken out again. 8-bit images
    accumulate in uint16 while a block (at most ``(2s−1)²`` px) cannot overflow it."""
    h, w = a.shape[:2]
    hb, wb = h // s, w // s
    acc = np.uint16 if a.dtype.itemsize == 1 and dt is np.uint32 and (2 * s - 1) ** 2 * 255 <= 0xFFFF else dt
    rows = a[0: hb * s: s].astype(acc)                   # (hb, W[, C]): block rows summed over their s rows
    for i in range(1, s):
        rows += a[i: hb * s: s]
    for i in range(hb * s, h):
        rows[-1] += a[i]
    cols = np.moveaxis(rows, 1, -1)                      # (hb[, C], W) view
    th = cols[..., 0: wb * s: s].copy()                  # (hb[, C], wb)
    for j in range(1, s):
        th += cols[..., j: wb * s: s]
    for j in range(wb * s, w):
        th[..., -1] += cols[..., j]
    th = np.moveaxis(th, -1, 1)                          # (hb, wb[, C]) view
    if h > hb * s and w > wb * s:                        # the corner went in with the remainder rows: out again
        th[-1, -1] -= a[hb * s:, wb * s:].sum(axis=(0, 1), dtype=acc)
    return np.ascontiguousarray(th, dtype=dt)
