"""Sensor-integrity checks on the stream of frame sets (the runtime side of the sensor checks in docs/RUNTIME.md).

Per modality the monitor checks that

- timestamps strictly increase (a repeated or backwards timestamp is a violation),
- frame counters (``Frame.sequence``) strictly increase; gaps are counted as drops (not a violation),
- frames are not frozen: the same non-constant pixels (a hash of a sparse sample) for ``frozen_after`` frame sets
  in a row means a stuck sensor or an injected still image — real sensors always carry noise,
- modalities that the source reports are present: a reported stream absent for ``absent_after`` frame sets in
  a row is reported (the decision then degrades or fails closed through the policy).

A violation makes the current decision unknown (``sensor_integrity``); it never blocks later frame sets that are
clean again, except a frozen stream, which stays flagged until its pixels change.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Collection

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
        frozen_after: identical frames in a row that count as frozen (>= 2).
        absent_after: frame sets in a row without a reported modality before it is reported absent.
    """

    def __init__(self, expected: Collection[Modality] | None = None, frozen_after: int = 3,
                 absent_after: int = 5) -> None:
        self.expected = frozenset(expected) if expected is not None else None
        self.frozen_after = max(2, int(frozen_after))
        self.absent_after = max(1, int(absent_after))
        self.reset()

    def reset(self) -> None:
        self.stats = SensorStats()
        self._last_ts: dict[Modality, int] = {}
        self._last_seq: dict[Modality, int] = {}
        self._last_hash: dict[Modality, int] = {}
        self._same: dict[Modality, int] = {}
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
            h = _frame_hash(f.data)
            if h is None:  # a blank (constant) image carries no content: validity gates handle it
                self._same[m] = 0
                self._last_hash.pop(m, None)
            elif self._last_hash.get(m) == h:
                self._same[m] = self._same.get(m, 1) + 1
            else:
                self._same[m] = 1
            if h is not None:
                self._last_hash[m] = h
            if self._same[m] >= self.frozen_after:
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


def _frame_hash(data) -> int | None:
    """crc32 of a sparse pixel sample (every 7th row and column) plus the shape; None for a constant image."""
    sample = data[::7, ::7]
    if sample.size == 0 or sample.min() == sample.max():
        return None
    return zlib.crc32(sample.tobytes(), zlib.crc32(repr(data.shape).encode()))
