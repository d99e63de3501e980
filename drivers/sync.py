"""Frame sync: approximate-time matching of per-modality streams into :class:`FrameSet`s.

Pure logic (no threads, no clocks): feed frames with :meth:`Synchronizer.push` in arrival order; it returns a
FrameSet when one is decided. Rules:

* The **reference** is the first required modality; a set's ``timestamp_ns`` is its frame's timestamp.
* Each other required modality contributes its pending frame nearest to the reference frame, if
  ``|dt| < tolerance_ns`` (strict, as librealsense's syncer). A match is emitted only once it is **certain**: a
  newer frame of that stream is already pending, the stream is known to have ended, the stream's estimated period
  rules out a closer successor, or frames of other streams show that ``max_wait_ns`` has passed.
* A reference frame with no partner possible in a required stream is dropped (counted).
* Optional modalities join a set when a pending frame is within tolerance at decision time; otherwise they are
  listed in ``FrameSet.missing``.
* A frame is never used twice; after a set, older frames of every stream are dropped, so output timestamps are
  strictly increasing per stream and per set. Frames arriving older than what was already emitted are dropped
  as ``late``.
* Queues hold at most ``max_pending`` frames per modality (oldest dropped and counted as ``overflow``).

Statistics are exact: for every modality ``pushed == used + dropped + pending`` at all times.

Across devices (RealSense + a UVC IR camera) map each device clock to host time first, e.g. with
:class:`ClockOffsetEstimator`, or pass constant ``offsets_ns`` (added to a modality's timestamps for matching).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Collection, Mapping

from edgepad.errors import ConfigError
from edgepad.types import Frame, FrameSet, Modality

#: timestamps kept per modality for :meth:`Synchronizer.diagnose`
_SEEN = 256


@dataclasses.dataclass
class SyncStats:
    """Exact counters of a :class:`Synchronizer`.

    Attributes:
        matched: frame sets emitted.
        pushed: frames received per modality.
        used: frames that went into a set, per modality.
        dropped: frames discarded without use per modality (unmatched, late, overflow, flushed).
        overflow: of ``dropped``, those evicted because the queue was full.
        late: of ``dropped``, those older than a frame already emitted for that stream.
        max_skew_ns, mean_skew_ns: over emitted sets (max minus min timestamp within the set).
        missing: sets emitted without an optional modality, per modality.
        max_device_skew_ns: over emitted sets whose frames all carry a ``device_timestamp_ns``: max minus min
            device time within the set (differs from ``max_skew_ns`` when a source groups frames by something
            else than their own capture time, e.g. RealSense playback with ``timestamps=frameset``).
    """

    matched: int = 0
    pushed: dict = dataclasses.field(default_factory=dict)
    used: dict = dataclasses.field(default_factory=dict)
    dropped: dict = dataclasses.field(default_factory=dict)
    overflow: dict = dataclasses.field(default_factory=dict)
    late: dict = dataclasses.field(default_factory=dict)
    missing: dict = dataclasses.field(default_factory=dict)
    max_skew_ns: int = 0
    sum_skew_ns: int = 0
    max_device_skew_ns: int = 0

    @property
    def mean_skew_ns(self) -> float:
        return self.sum_skew_ns / self.matched if self.matched else 0.0

    def to_dict(self) -> dict:
        def names(d: Mapping) -> dict:
            return {str(k): v for k, v in d.items()}
        return {"matched": self.matched, "pushed": names(self.pushed), "used": names(self.used),
                "dropped": names(self.dropped), "overflow": names(self.overflow), "late": names(self.late),
                "missing": names(self.missing), "max_skew_ns": self.max_skew_ns, "mean_skew_ns": self.mean_skew_ns,
                "max_device_skew_ns": self.max_device_skew_ns}


class Synchronizer:
    """Approximate-time synchronizer (see the module docstring for the rules).

    Args:
        required: modalities every set must contain; the first is the reference.
        tolerance_ns: max |Δt| (exclusive) between the reference frame and a partner.
        max_pending: queue bound per modality.
        optional: modalities added when available.
        max_wait_ns: how far (in stream time) the newest frame may run ahead of an undecided reference frame
            before it is decided with the best partner at hand (default ``2 * tolerance_ns``).
        offsets_ns: per-modality clock offset added to timestamps before matching (cross-device sync).

    Example:
        >>> sync = Synchronizer.for_fps(["rgb", "depth"], 30.0)
        >>> # for f in frames: fs = sync.push(f); if fs: ...
    """

    def __init__(self, required: Collection[Modality | str], tolerance_ns: int, max_pending: int = 4,
                 optional: Collection[Modality | str] = (), *, max_wait_ns: int | None = None,
                 offsets_ns: Mapping[Modality | str, int] | None = None) -> None:
        req = [Modality.parse(m) for m in required]
        opt = [Modality.parse(m) for m in optional if Modality.parse(m) not in req]
        if not req:
            raise ConfigError("Synchronizer needs at least one required modality", key="required")
        if len(set(req)) != len(req):
            raise ConfigError(f"duplicate required modalities: {req}", key="required")
        if not int(tolerance_ns) > 0:
            raise ConfigError(f"tolerance_ns must be > 0, got {tolerance_ns}", key="tolerance_ns")
        if int(max_pending) < 1:
            raise ConfigError(f"max_pending must be >= 1, got {max_pending}", key="max_pending")
        self.required = tuple(req)
        self.optional = tuple(opt)
        self.reference = req[0]
        self.tolerance_ns = int(tolerance_ns)
        self.max_pending = int(max_pending)
        self.max_wait_ns = int(max_wait_ns) if max_wait_ns is not None else 2 * self.tolerance_ns
        self.offsets_ns = {Modality.parse(k): int(v) for k, v in (offsets_ns or {}).items()}
        self.modalities = self.required + self.optional
        self._pending: dict[Modality, collections.deque[tuple[int, Frame]]] = {
            m: collections.deque() for m in self.modalities}
        self._last_used: dict[Modality, int | None] = {m: None for m in self.modalities}
        self._last_seen: dict[Modality, int | None] = {m: None for m in self.modalities}
        self._period: dict[Modality, int | None] = {m: None for m in self.modalities}
        self._ended: set[Modality] = set()
        self._newest: int | None = None
        self._backlog: collections.deque[FrameSet] = collections.deque()
        self._seen: dict[Modality, collections.deque[int]] = {
            m: collections.deque(maxlen=_SEEN) for m in self.modalities}
        z = {m: 0 for m in self.modalities}
        self.stats = SyncStats(pushed=dict(z), used=dict(z), dropped=dict(z), overflow=dict(z), late=dict(z),
                               missing={m: 0 for m in self.optional})

    @classmethod
    def for_fps(cls, required: Collection[Modality | str], fps: float | Mapping[Modality | str, float],
                optional: Collection[Modality | str] = (), **kwargs) -> "Synchronizer":
        """Tolerance = half the period of the slowest stream (``fps`` is one rate or a rate per modality)."""
        rates = list(fps.values()) if isinstance(fps, Mapping) else [fps]
        if not rates or min(rates) <= 0:
            raise ConfigError(f"fps must be > 0, got {fps}", key="fps")
        return cls(required, int(round(1e9 / min(rates) / 2)), optional=optional, **kwargs)

    # ------------------------------------------------------------------------------------------- state
    def pending(self, m: Modality | str | None = None) -> int:
        """Frames waiting (for one modality, or in total)."""
        if m is None:
            return sum(len(q) for q in self._pending.values())
        return len(self._pending[Modality.parse(m)])

    def end(self, m: Modality | str) -> list[FrameSet]:
        """Declare that stream ``m`` has ended; returns the sets this decides."""
        self._ended.add(Modality.parse(m))
        return self._drain()

    def flush(self) -> list[FrameSet]:
        """End all streams: emit what can still be decided, then drop everything pending (counted)."""
        self._ended.update(self.modalities)
        out = self._drain()
        for m, q in self._pending.items():
            self.stats.dropped[m] += len(q)
            q.clear()
        return out

    # ------------------------------------------------------------------------------------------- push
    def push(self, frame: Frame) -> FrameSet | None:
        """Add one frame; returns the oldest newly decided FrameSet, or None.

        When one frame decides several sets (rare: after a stall), the later ones are returned by the next
        ``push``/``poll`` calls; use :meth:`push_all` to get all of them at once.
        """
        sets = self.push_all(frame)
        if not sets:
            return None
        self._backlog.extend(sets[1:])
        return sets[0]

    def poll(self) -> FrameSet | None:
        """A set decided earlier but not yet returned by :meth:`push`, or None."""
        return self._backlog.popleft() if self._backlog else None

    def push_all(self, frame: Frame) -> list[FrameSet]:
        """Add one frame; returns every FrameSet it decides (oldest first)."""
        out = list(self._backlog)
        self._backlog.clear()
        m = frame.modality
        if m not in self._pending:
            return out  # a stream nobody asked for: ignored, not counted
        st = self.stats
        st.pushed[m] += 1
        ts = frame.timestamp_ns + self.offsets_ns.get(m, 0)
        last = self._last_used[m]
        q = self._pending[m]
        if (last is not None and ts <= last) or (q and ts <= q[-1][0]):
            st.dropped[m] += 1
            st.late[m] += 1
            return out
        prev = self._last_seen[m]
        if prev is not None:
            dt = ts - prev
            p = self._period[m]
            self._period[m] = dt if p is None else min(p, dt) if dt > p // 2 else p
        self._last_seen[m] = ts
        self._seen[m].append(ts)
        self._newest = ts if self._newest is None else max(self._newest, ts)
        if len(q) >= self.max_pending:
            q.popleft()
            st.dropped[m] += 1
            st.overflow[m] += 1
        q.append((ts, frame))
        out.extend(self._drain())
        return out

    # ------------------------------------------------------------------------------------------- matching
    def _best(self, m: Modality, t: int) -> tuple[int, Frame] | None:
        best = None
        for item in self._pending[m]:
            d = abs(item[0] - t)
            if d < self.tolerance_ns and (best is None or d < abs(best[0] - t)):
                best = item
        return best

    def _certain(self, m: Modality, t: int, cand: tuple[int, Frame] | None, timed_out: bool) -> bool:
        """Whether no future frame of ``m`` can match reference time ``t`` better than ``cand``."""
        q = self._pending[m]
        if m in self._ended or timed_out:
            return True
        if q and q[-1][0] >= t:
            return True  # future frames are newer than a pending frame at or after t: farther away
        if cand is None:
            horizon = t + self.tolerance_ns
        else:
            horizon = t + (t - cand[0])
        last = self._last_seen[m]
        period = self._period[m]
        if last is not None and period is not None and last + period // 2 >= horizon:
            return True  # the successor cannot arrive before the horizon
        return False

    def _drain(self) -> list[FrameSet]:
        out: list[FrameSet] = []
        ref_q = self._pending[self.reference]
        while ref_q:
            t, ref = ref_q[0]
            timed_out = self._newest is not None and self._newest - t > self.tolerance_ns + self.max_wait_ns
            partners: dict[Modality, tuple[int, Frame]] = {}
            decided = True
            impossible = False
            for m in self.required[1:]:
                cand = self._best(m, t)
                if not self._certain(m, t, cand, timed_out):
                    decided = False
                    break
                if cand is None:
                    impossible = True
                    break
                partners[m] = cand
            if not decided:
                break
            ref_q.popleft()
            if impossible:
                self.stats.dropped[self.reference] += 1
                continue
            chosen = {self.reference: (t, ref), **partners}
            for m in self.optional:
                cand = self._best(m, t)
                if cand is not None:
                    chosen[m] = cand
            out.append(self._emit(chosen))
        return out

    def _emit(self, chosen: dict[Modality, tuple[int, Frame]]) -> FrameSet:
        st = self.stats
        for m, (ts, _) in chosen.items():
            q = self._pending[m]
            while q and q[0][0] <= ts:
                item = q.popleft()
                if item[0] != ts:
                    st.dropped[m] += 1
            st.used[m] += 1
            self._last_used[m] = ts
        t_ref = chosen[self.reference][0]
        for m in self.optional:  # optional frames too old for any later reference frame
            if m not in chosen:
                q = self._pending[m]
                while q and q[0][0] <= t_ref - self.tolerance_ns:
                    q.popleft()
                    st.dropped[m] += 1
        times = [ts for ts, _ in chosen.values()]
        skew = max(times) - min(times)
        st.matched += 1
        st.max_skew_ns = max(st.max_skew_ns, skew)
        st.sum_skew_ns += skew
        dev = [f.device_timestamp_ns for _, f in chosen.values()]
        if len(dev) > 1 and all(t is not None for t in dev):
            st.max_device_skew_ns = max(st.max_device_skew_ns, max(dev) - min(dev))
        missing = frozenset(m for m in self.optional if m not in chosen)
        for m in missing:
            st.missing[m] += 1
        return FrameSet({m: f for m, (_, f) in chosen.items()}, chosen[self.reference][1].timestamp_ns, skew,
                        missing)

    # ------------------------------------------------------------------------------------------- diagnosis
    def observed_offsets_ns(self) -> dict[Modality, int]:
        """Observed offset of each other required/optional stream from the reference: for the recent frames
        (up to 256 per stream) the signed ``t_m - t_ref`` of the closest pair (ns, after ``offsets_ns``).
        Streams without frames are left out."""
        ref = list(self._seen[self.reference])
        out: dict[Modality, int] = {}
        if not ref:
            return out
        for m in self.modalities[1:]:
            best = None
            for t in self._seen[m]:
                for r in ref:
                    if best is None or abs(t - r) < abs(best):
                        best = t - r
            if best is not None:
                out[m] = best
        return out

    def diagnose(self, min_ratio: float = 0.5) -> str | None:
        """Why few sets were formed, or None when at least ``min_ratio`` of the reference frames were matched.

        Names the streams that delivered nothing, the observed offsets (:meth:`observed_offsets_ns`) against the
        tolerance, and what to change (``sync_tolerance_ms``, the recording's frame timing).
        """
        st = self.stats
        ref_n = st.pushed[self.reference]
        if ref_n and st.matched >= min_ratio * ref_n:
            return None
        tol_ms = self.tolerance_ns / 1e6
        counts = ", ".join(f"{m.value} {st.pushed[m]}" for m in self.modalities)
        lines = [f"sync matched {st.matched} frame set(s) from {counts} frame(s) "
                 f"(tolerance {tol_ms:.1f} ms, reference {self.reference.value})"]
        silent = [m.value for m in self.required if st.pushed[m] == 0]
        if silent:
            lines.append(f"no frames at all from required stream(s) {', '.join(silent)}: the source does not "
                         f"deliver them (pick the streams it has, e.g. ?modalities=...)")
        far = []
        for m, off in self.observed_offsets_ns().items():
            lines.append(f"closest {m.value} frame to a {self.reference.value} frame: {off / 1e6:+.1f} ms")
            if abs(off) >= self.tolerance_ns and m in self.required:
                far.append(abs(off))
        if far:
            need = max(far) / 1e6
            lines.append(f"the streams are {need:.1f} ms apart, more than the {tol_ms:.1f} ms tolerance: they "
                         f"were not captured together (check the recording's frame timing: rates, drops, start "
                         f"offsets), or allow it with sync_tolerance_ms={int(need) + 1} "
                         f"(edgepad run --sync-tolerance-ms {int(need) + 1})")
        return "\n".join(lines)


class ClockOffsetEstimator:
    """Maps a device clock to host time from (device, host-arrival) pairs.

    Transport delay is positive and varies, so ``host - device`` is an upper envelope of the true offset; the
    estimate is its minimum over a sliding window, which also follows slow drift. Used for cross-device sync
    when a camera stamps frames with its own clock.

    Args:
        window: number of recent samples kept.
    """

    def __init__(self, window: int = 64) -> None:
        if window < 1:
            raise ConfigError("window must be >= 1", key="window")
        self.window = window
        self._samples: collections.deque[int] = collections.deque(maxlen=window)

    def update(self, device_ns: int, host_ns: int) -> int:
        """Add a sample; returns the current offset estimate (ns, host = device + offset)."""
        self._samples.append(int(host_ns) - int(device_ns))
        return self.offset_ns

    @property
    def offset_ns(self) -> int:
        if not self._samples:
            raise ConfigError("no samples yet: call update() first", key="clock")
        return min(self._samples)

    def to_host(self, device_ns: int) -> int:
        """Device timestamp → host monotonic ns."""
        return int(device_ns) + self.offset_ns
