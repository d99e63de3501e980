"""Capture: sources → Synchronizer → depth registration (the capture's :class:`Registrar`) → :class:`FrameSet`.

The same code path serves every source (synthetic, replay, RealSense, UVC): after ``read`` of the sources,
nothing depends on where frames came from.
"""
from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from edgepad.drivers.registration import Registrar, RegistrationMode
from edgepad.drivers.registry import open_source
from edgepad.drivers.sync import Synchronizer
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.geometry import Rig, load_rig
from edgepad.types import Frame, FrameSet, Modality

log = logging.getLogger(__name__)

#: per-source read timeout while polling several live sources (s)
_POLL_S = 0.005


class Capture:
    """Synced (and registered) frame sets from one or more sources.

    Args:
        sources: frame sources (opened by :meth:`open` if not open yet).
        rig: camera model; ``None`` = the single source's own ``rig`` (resolved at :meth:`open`).
        sync: the synchronizer (its required/optional modalities decide what a set holds), or a function of the
            opened sources that returns one (built at :meth:`open`, when the sources know their streams and
            rates: a recording's are only known once it is opened).
        register: a :class:`RegistrationMode`: ``FRAME`` registers depth to the ``register_to`` camera of the rig
            (when the rig has it); ``WINDOW`` passes depth on unregistered (with the rig's depth-camera model) for
            the consumer to register a face window with :attr:`registrar`; ``OFF`` passes raw depth. A bool is
            accepted too (True = FRAME, False = OFF).
        register_to: target camera of the registration (default rgb).
        registration: keyword options of the :class:`Registrar` (``method``, ``semantics``, ``footprint``,
            ``arithmetic``, ``threads``).

    Attributes:
        mode: the :class:`RegistrationMode`.
        registrar: the depth → ``register_to`` :class:`Registrar` of the rig, built at :meth:`open` (None when the
            mode is OFF or the rig lacks the camera pair); in WINDOW mode its culling bounds are prepared then.
        timing_ms: wall time of the last set's stages: ``capture`` (waiting for sources), ``sync``, ``register``.

    ``read`` returns a FrameSet, ``None`` on timeout, and raises :class:`EndOfStream` once every source has ended
    and no more sets can be formed (or :class:`SourceError` when a source fails).
    """

    def __init__(self, sources: Sequence, rig: Rig | None, sync: Synchronizer | Callable[[list], Synchronizer],
                 register: RegistrationMode | str | bool = RegistrationMode.FRAME, *,
                 register_to: Modality | str = Modality.RGB, registration: dict | None = None) -> None:
        if not sources:
            raise ConfigError("Capture needs at least one source", key="sources")
        self.sources = list(sources)
        self.rig = rig
        self.sync: Synchronizer = sync if isinstance(sync, Synchronizer) else None  # type: ignore[assignment]
        self._make_sync = None if isinstance(sync, Synchronizer) else sync
        self.mode = RegistrationMode.parse(register)
        self.registrar: Registrar | None = None
        self._registrar_rig: Rig | None = None
        self.register_to = Modality.parse(register_to)
        self.registration = dict(registration or {})
        self.uri = "+".join(s.uri for s in self.sources)
        self.is_open = False
        self.timing_ms: dict[str, float] = {}
        self._heads: list[Frame | None] = []
        self._ended: list[bool] = []
        self._ready: collections.deque[FrameSet] = collections.deque()

    # ------------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Capture":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.is_open:
            return
        opened = []
        try:
            for s in self.sources:
                if not getattr(s, "is_open", False):
                    s.open()
                opened.append(s)
            if self._make_sync is not None:
                self.sync = self._make_sync(opened)
        except BaseException:
            for s in opened:
                s.close()
            raise
        if self.rig is None:
            rigs = [s.rig for s in self.sources if getattr(s, "rig", None) is not None]
            if len(self.sources) == 1 and rigs:
                self.rig = rigs[0]
            elif self.mode is not RegistrationMode.OFF and self._wants_registration():
                for s in opened:
                    s.close()
                what = "several sources need" if len(self.sources) > 1 else f"{self.uri} has no camera model; it needs"
                raise ConfigError(f"{what} a rig file (edgepad calibrate) to register depth; pass "
                                  "rig=PATH or register=RegistrationMode.OFF", key="rig")
        try:
            self.registrar, self._registrar_rig = self._make_registrar(), self.rig
        except BaseException:
            for s in opened:
                s.close()
            raise
        self._heads = [None] * len(self.sources)
        self._ended = [False] * len(self.sources)
        self._ready.clear()
        self.is_open = True

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        for s in self.sources:
            try:
                s.close()
            except Exception as exc:  # keep closing the others
                log.warning("%s: error on close: %s", s.uri, exc)

    def _make_registrar(self) -> Registrar | None:
        """The rig's depth → ``register_to`` registrar (None when OFF or without that camera pair)."""
        rig = self.rig
        if self.mode is RegistrationMode.OFF or rig is None or not rig.depth_scale_m:
            return None
        if self.register_to not in rig.intrinsics or Modality.DEPTH not in rig.intrinsics:
            return None
        reg = Registrar.from_rig(rig, self.register_to, **self.registration)
        if self.mode is RegistrationMode.WINDOW:
            reg.prepare()
        return reg

    def _wants_registration(self) -> bool:
        mods = set(self.sync.modalities)
        return Modality.DEPTH in mods

    # ------------------------------------------------------------------------------------------- reading
    def read(self, timeout_s: float = 1.0) -> FrameSet | None:
        """Next synced (registered) FrameSet; None after ``timeout_s`` without one."""
        if not self.is_open:
            raise SourceError("capture is not open; call open() or use it as a context manager", self.uri)
        t_start = time.perf_counter_ns()
        deadline = time.monotonic() + max(0.0, timeout_s)
        sync_ns = 0
        while True:
            if not self._ready and all(self._ended) and not any(h is not None for h in self._heads):
                self._ready.extend(self.sync.flush())
                if not self._ready:
                    raise EndOfStream(self.uri)
            if self._ready:
                return self._finish(self._ready.popleft(), t_start, sync_ns)
            frame = self._next_frame(deadline)
            if frame is None:
                if time.monotonic() >= deadline and not all(self._ended):
                    return None
                continue
            t0 = time.perf_counter_ns()
            self._ready.extend(self.sync.push_all(frame))
            sync_ns += time.perf_counter_ns() - t0

    def _next_frame(self, deadline: float) -> Frame | None:
        """The oldest head frame across sources (one-frame look-ahead per source keeps offline runs ordered)."""
        many = len(self.sources) > 1
        for i, s in enumerate(self.sources):
            if self._heads[i] is not None or self._ended[i]:
                continue
            remaining = max(0.0, deadline - time.monotonic())
            try:
                self._heads[i] = s.read(min(remaining, _POLL_S) if many else remaining)
            except EndOfStream:
                self._ended[i] = True
                for m in s.modalities:
                    if m in self.sync.modalities:
                        self._ready.extend(self.sync.end(m))
        live = [(h.timestamp_ns, i) for i, h in enumerate(self._heads) if h is not None]
        if not live:
            return None
        _, i = min(live)
        frame, self._heads[i] = self._heads[i], None
        return frame

    def _finish(self, fs: FrameSet, t_start: int, sync_ns: int) -> FrameSet:
        t0 = time.perf_counter_ns()
        fs = self._register(fs)
        t1 = time.perf_counter_ns()
        self.timing_ms = {"capture": max(0.0, (t0 - t_start - sync_ns) / 1e6), "sync": sync_ns / 1e6,
                          "register": (t1 - t0) / 1e6}
        return fs

    def _register(self, fs: FrameSet) -> FrameSet:
        depth = fs.frames.get(Modality.DEPTH)
        if self._registrar_rig is not self.rig:  # the rig was replaced after open (open_capture(rig=PATH))
            self.registrar, self._registrar_rig = self._make_registrar(), self.rig
        if self.registrar is None or depth is None or depth.registered_to is not None:
            return fs
        if self.mode is RegistrationMode.WINDOW:
            out = depth_in_rig(depth, self.rig)  # the consumer registers a window with self.registrar
        else:
            out = self.registrar.frame(depth_in_rig(depth, self.rig))
        if out is depth:
            return fs
        frames = dict(fs.frames)
        frames[Modality.DEPTH] = out
        return FrameSet(frames, fs.timestamp_ns, fs.skew_ns, fs.missing)

    def __iter__(self):
        """Iterate FrameSets until the end of stream (timeouts are skipped)."""
        while True:
            try:
                fs = self.read()
            except EndOfStream:
                return
            if fs is not None:
                yield fs


def depth_in_rig(depth: Frame, rig: Rig) -> Frame:
    """The unregistered depth frame with the rig's depth-camera intrinsics (the rig file wins over device values).

    Raises:
        ConfigError: the rig's depth camera has another size than the frames (a rig of another stream mode).
    """
    dintr = rig.intrinsics[Modality.DEPTH]
    if (dintr.width, dintr.height) != (depth.data.shape[1], depth.data.shape[0]):
        raise ConfigError(f"rig depth camera is {dintr.width}x{dintr.height} but depth frames are "
                          f"{depth.data.shape[1]}x{depth.data.shape[0]}: use the rig of this stream "
                          f"configuration", key="rig")
    if dintr == depth.intrinsics:
        return depth
    return Frame(depth.modality, depth.data, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence,
                 depth.source, dintr, depth.depth_scale_m, None)


def _source_fps(source) -> float | None:
    fps = getattr(source, "fps", None)
    if isinstance(fps, (int, float)) and fps > 0:
        return float(fps)
    return None


def open_capture(uri: str | Sequence[str], rig: Rig | str | Path | None = None, fps: float | None = None,
                 register: RegistrationMode | str | bool = RegistrationMode.FRAME, *,
                 required: Sequence[Modality | str] | None = None,
                 optional: Sequence[Modality | str] = (), max_pending: int = 4,
                 sync_tolerance_ms: float | None = None, **registration) -> Capture:
    """Build a :class:`Capture` from source URIs (not opened; use it as a context manager).

    Args:
        uri: one URI or several (e.g. a RealSense and a UVC IR camera).
        rig: a Rig, a rig file path, or None for the single source's own rig.
        fps: stream rate for the sync tolerance (half a period of the slowest); default: the sources' ``fps``
            attribute, else 30.
        register: the :class:`RegistrationMode` of the capture (True = FRAME, False = OFF).
        required: modalities every set must hold (default: all of the sources' modalities once opened, rgb
            first; a recording opened without ``modalities`` has the streams it recorded).
        optional: modalities added when available.
        max_pending: sync queue bound per modality.
        sync_tolerance_ms: max |Δt| between the frames of a set (ms); default half the slowest stream's period.

    The synchronizer is built when the capture opens: a recording's rate (``fps``) and streams are known then.
        **registration: options of the capture's :class:`Registrar` (method, semantics, footprint, arithmetic).
    """
    uris = [uri] if isinstance(uri, str) else list(uri)
    sources = [open_source(u) for u in uris]
    if isinstance(rig, (str, Path)):
        rig = load_rig(rig)
    if sync_tolerance_ms is not None and not sync_tolerance_ms > 0:
        raise ConfigError(f"sync_tolerance_ms must be > 0, got {sync_tolerance_ms}", key="sync_tolerance_ms")
    opt = [Modality.parse(m) for m in optional]
    wanted = None if required is None else [Modality.parse(m) for m in required]

    def make_sync(opened: list) -> Synchronizer:
        req = wanted
        if req is None:
            mods: list[Modality] = []
            for s in opened:
                mods.extend(m for m in s.modalities if m not in mods)
            order = [Modality.RGB, Modality.DEPTH, Modality.IR]
            req = sorted((m for m in mods if m not in opt), key=order.index)
        if sync_tolerance_ms is not None:
            return Synchronizer(req, int(round(sync_tolerance_ms * 1e6)), optional=opt, max_pending=max_pending)
        rates = [r for r in (_source_fps(s) for s in opened) if r]
        rate = float(fps) if fps else (min(rates) if rates else 30.0)
        return Synchronizer.for_fps(req, rate, optional=opt, max_pending=max_pending)

    return Capture(sources, rig, make_sync, register=register, registration=registration or None)
