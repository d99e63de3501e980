"""RealSense source: a live camera by serial, ``.bag``/``.db3`` playback, or any ``rs.device`` at sensor level.

pyrealsense2 is imported lazily (``pip install 'edgepad[realsense]'``). A capture thread (:class:`ThreadedSource`)
copies every frame out of the SDK pool into a :class:`Frame` and bounded drop-oldest queues, so holding frames
never starves librealsense.

Timestamps: ``device_timestamp_ns`` is the SDK's frame timestamp (ms → ns) in its domain (hardware clock, global
time or system time; per modality in :attr:`RealSenseSource.timestamp_domains`). ``timestamp_ns`` is host monotonic
time for live cameras (the device clock mapped with one :class:`ClockOffsetEstimator` shared by all streams, unless the
domain is already the host's). Playback is deterministic: with ``timestamps="frameset"`` (the default) every frame
carries the timestamp of the librealsense frameset it was played back in, so the capture's synchronizer pairs the
frames librealsense paired (a clip whose colour and depth sensors ran unsynchronised, e.g. the D435 test
recording at 6 fps with colour 102-268 ms before depth, still yields its sets); with ``timestamps="device"`` each
frame carries its own recorded device time. ``device_timestamp_ns`` is always the frame's own device time, so
the real offset stays visible (``SyncStats.max_device_skew_ns``).

Faults never hang or crash the caller: ``read`` returns None on a timeout; after ``stall_s`` without frames the
pipeline is restarted (up to ``max_reconnects`` times, counted in :attr:`reconnects`), and only then a
:class:`SourceError` with the reason is raised. End of a recording raises :class:`EndOfStream`.
"""
from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.base import ThreadedSource
from edgepad.drivers.sync import ClockOffsetEstimator
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.types import Frame, Modality, make_frame, parse_modalities

log = logging.getLogger(__name__)

rs = lazy("pyrealsense2", "realsense")

_MODELS = {"none": "none", "brown_conrady": "brown_conrady", "modified_brown_conrady": "modified_brown_conrady",
           "inverse_brown_conrady": "inverse_brown_conrady"}


def rs_intrinsics_to_ours(ri: Any) -> Intrinsics:
    """``rs.intrinsics`` → :class:`Intrinsics` (the one conversion; calibration uses it too).

    Models ``none``, ``brown_conrady``, ``modified_brown_conrady`` and ``inverse_brown_conrady`` keep their name
    and their five coefficients. Any other model (``ftheta``, ``kannala_brandt4``...) whose coefficients are all
    zero is the pinhole it describes and maps to ``none``; with a non-zero coefficient it raises.

    Raises:
        ConfigError: an unsupported distortion model with non-zero coefficients (the message names the model).
    """
    name = str(ri.model).split(".")[-1]
    coeffs = tuple(float(c) for c in list(ri.coeffs)[:5])
    coeffs = coeffs + (0.0,) * (5 - len(coeffs))
    if name not in _MODELS:
        if any(coeffs):
            raise ConfigError(f"RealSense distortion model {name!r} (coefficients {list(coeffs)}) is not supported "
                              f"by edgepad: supported are {', '.join(sorted(_MODELS))}", key="distortion")
        name = "none"
    return Intrinsics(int(ri.width), int(ri.height), float(ri.fx), float(ri.fy), float(ri.ppx), float(ri.ppy),
                      _MODELS[name], coeffs)


def rs_extrinsics_to_ours(re: Any) -> Extrinsics:
    """``rs.extrinsics`` (column-major R) → :class:`Extrinsics` (row-major), values kept bit-exact."""
    r = np.asarray(re.rotation, dtype=np.float64).reshape(3, 3, order="F")
    return Extrinsics(tuple(r.reshape(-1).tolist()), tuple(float(v) for v in re.translation))


def read_factory_rig(location: str | Path) -> Rig:
    """The factory calibration of a RealSense camera (serial, ``""`` = first) or ``.bag``/``.db3`` recording.

    Read the way :class:`RealSenseSource` reads it when it opens (one reader). The rig has rgb (reference), depth
    and ir; ir is the left-IR camera, and when the device/recording has no infrared stream the depth camera (the
    same imager on a D4xx) stands in for it.

    Raises:
        SourceError: the camera/recording cannot be opened or lacks rgb or depth.
    """
    last: SourceError | None = None
    for mods in (("rgb", "depth", "ir"), ("rgb", "depth")):
        src = RealSenseSource(str(location), mods)
        try:
            src.open()
        except SourceError as exc:
            last = exc
            continue
        try:
            rig = src.rig
            info = dict(src.device_info)
        finally:
            src.close()
        intr, ext = dict(rig.intrinsics), dict(rig.to_reference)
        if Modality.IR not in intr:
            intr[Modality.IR], ext[Modality.IR] = intr[Modality.DEPTH], ext[Modality.DEPTH]
        prov = {"calibration": "RealSense factory",
                "source": Path(str(location)).name if src.is_playback else str(location), **info}
        return Rig(rig.reference, intr, ext, rig.depth_scale_m, prov)
    assert last is not None
    raise last


def _modality(rs, stream_type, index: int, ir_index: int) -> Modality | None:
    if stream_type == rs.stream.depth:
        return Modality.DEPTH
    if stream_type == rs.stream.color:
        return Modality.RGB
    if stream_type == rs.stream.infrared and index in (ir_index, 0):
        return Modality.IR
    return None


def _frame_array(rs, f) -> np.ndarray:
    """Pixels of an ``rs.video_frame`` in our layout (a view into the SDK buffer; copied by make_frame)."""
    fmt = f.profile.format()
    arr = np.asanyarray(f.get_data())
    if fmt == rs.format.bgr8:
        arr = arr[..., ::-1]
    elif fmt in (rs.format.rgba8, rs.format.bgra8):
        arr = arr[..., :3] if fmt == rs.format.rgba8 else arr[..., 2::-1]
    return arr


PLAYBACK_RETRIES = 6  # plays of a recording that delivered no frame set before EndOfStream


class RealSenseSource(ThreadedSource):
    """Frames from an Intel RealSense camera or recording.

    Args:
        location: a serial number (live), ``""`` (first camera), or a ``.bag``/``.db3`` path (playback).
        modalities: streams to capture (default: rgb, depth, ir live; every one of them a recording has).
        width, height, fps: stream configuration (live; all streams).
        ir_index: which infrared imager is the ``ir`` stream (1 = left, the depth camera).
        emitter: projector on/off (live; None = device default). Calibration views want it off.
        depth_units: metres per depth unit to set (live; None = device default, 0.001 on D4xx).
        realtime: playback at recorded speed (True) or as fast as possible without drops (False).
        loop: playback starts again at the end of the recording instead of raising EndOfStream; each lap continues
            the numbering (timestamps shifted by the first lap's span plus one period, frame numbers by the
            first lap's count per stream), as ``replay://…?loop=true`` does.
        timestamps: playback ``timestamp_ns``: ``"frameset"`` (the librealsense frameset's time, shared by the
            frames played back together) or ``"device"`` (each frame's own recorded device time).
        queue_size: per-modality queue bound (drop-oldest).
        stall_s: seconds without any frame before a reconnect is attempted (live).
        max_reconnects: reconnect attempts before giving up with a SourceError.
        device: an existing ``rs.device`` (e.g. a ``software_device``) driven at sensor level.

    Nothing touches a device before :meth:`open`, so a bad option fails before any camera is looked for.
    """

    #: options a ``realsense://`` URI (or ``x.bag?…``) may carry (checked by
    #: :func:`edgepad.drivers.registry.check_options`)
    URI_OPTIONS: ClassVar[dict[str, Any]] = {
        "modalities": str, "width": int, "height": int, "fps": float, "ir_index": int, "emitter": bool | None,
        "depth_units": float | None, "realtime": bool, "loop": bool, "timestamps": str, "queue_size": int,
        "stall_s": float, "max_reconnects": int}

    def __init__(self, location: str = "", modalities: Any = None, *, width: int = 640,
                 height: int = 480, fps: float = 30, ir_index: int = 1, emitter: bool | None = None,
                 depth_units: float | None = None, realtime: bool = False, loop: bool = False,
                 timestamps: str = "frameset",
                 queue_size: int = 4, stall_s: float = 5.0, max_reconnects: int = 3, device: Any = None) -> None:
        self._modalities_given = modalities is not None and modalities != ""
        mods = parse_modalities(modalities if self._modalities_given else ("rgb", "depth", "ir"))
        if timestamps not in ("frameset", "device"):
            raise ConfigError(f"timestamps must be 'frameset' or 'device', got {timestamps!r}", key="timestamps")
        self.timestamps = timestamps
        self.loop = bool(loop)
        path = Path(str(location)) if str(location).lower().endswith((".bag", ".db3")) else None
        uri = str(location) if path is not None else f"realsense://{location}"
        super().__init__(uri, mods, queue_size=queue_size)
        if fps <= 0 or width <= 0 or height <= 0:
            raise ConfigError("width, height and fps must be > 0", key="fps")
        if ir_index not in (1, 2):
            raise ConfigError("ir_index must be 1 (left, the depth camera) or 2", key="ir_index")
        if self.loop and path is None:
            raise ConfigError("loop is for recordings (.bag/.db3), not a live camera", key="loop")
        self.path = path
        self.serial = "" if path is not None else str(location)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.ir_index = ir_index
        self.emitter, self.depth_units = emitter, depth_units
        self.realtime = bool(realtime)
        self.stall_s, self.max_reconnects = float(stall_s), int(max_reconnects)
        self._device_in = device
        self.device_info: dict[str, str] = {}
        self.timestamp_domains: dict[Modality, str] = {}
        self.depth_scale_m: float | None = None
        self.reconnects = 0
        self.framesets = 0
        self._playback_retries = 0
        self._lap = 0
        self._lap_last: dict[Modality, list[int]] = {}  # last emitted [ts, frame number] per stream
        self._lap_ts_shift: int | None = None  # this lap's shift (ns), set by its first delivered frame
        self._lap_seq_shift: dict[Modality, int] = {}
        self.last_error: str | None = None
        self._last_key: dict[Modality, tuple[int, float]] = {}
        self._pipe = None
        self._playback = None
        self._queues_rs: list = []
        self._sensors: list = []
        self._clock = ClockOffsetEstimator()
        self._last_frame_t = 0.0
        self._unplugged = False

    # ------------------------------------------------------------------------------------------- device
    @property
    def is_playback(self) -> bool:
        return self.path is not None

    @property
    def _synchronous(self) -> bool:
        """Non-real-time playback is read on the caller's thread: the SDK waits for us, so nothing is dropped."""
        return self.is_playback and not self.realtime

    def _open_impl(self) -> None:
        if not self._synchronous:
            super()._open_impl()
            return
        self._queues = {m: collections.deque() for m in self.modalities}
        self.dropped = {m: 0 for m in self.modalities}
        self._pending_sync: collections.deque[Frame] = collections.deque()
        self._start_device()

    def _close_impl(self) -> None:
        if not self._synchronous:
            super()._close_impl()
            return
        self._stop_device()

    def _read_impl(self, timeout_s: float) -> Frame | None:
        if not self._synchronous:
            return super()._read_impl(timeout_s)
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._pending_sync:
            frames = self._grab(max(0.01, min(0.5, deadline - time.monotonic())))
            self._pending_sync.extend(sorted(frames, key=lambda f: f.timestamp_ns))
            if not self._pending_sync and time.monotonic() >= deadline:
                return None
        return self._pending_sync.popleft()

    def _start_device(self) -> None:
        self._clock = ClockOffsetEstimator()  # one device clock for all streams: one mapping, no added skew
        self._unplugged = False
        self._last_key = {}
        self.framesets = 0
        self._playback_retries = 0
        self._lap = 0
        self._lap_last = {}
        self._lap_ts_shift, self._lap_seq_shift = None, {}
        try:
            if self._device_in is not None:
                self._start_sensors(rs, self._device_in)
            else:
                self._start_pipeline(rs)
        except BaseException as exc:
            self._stop_device()  # never leave SDK threads streaming behind an error
            if isinstance(exc, RuntimeError):
                raise SourceError(f"cannot start: {exc}", self.uri) from exc
            raise
        self._last_frame_t = time.monotonic()

    def _start_pipeline(self, rs) -> None:
        cfg = rs.config()
        if self.is_playback:
            if not self.path.is_file():
                raise SourceError(f"no such recording: {self.path}", self.uri)
            cfg.enable_device_from_file(str(self.path), repeat_playback=False)
            cfg.enable_all_streams()
        else:
            found = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()
                     if d.supports(rs.camera_info.serial_number)]
            if not found or (self.serial and self.serial not in found):
                raise SourceError(f"cannot start: no RealSense camera {self.serial or ''} connected "
                                  f"(found: {found or 'none'}); check the USB 3 cable and `rs-enumerate-devices`",
                                  self.uri)
            if self.serial:
                cfg.enable_device(self.serial)
            w, h, fps = self.width, self.height, int(self.fps)
            if Modality.DEPTH in self.modalities:
                cfg.enable_stream(rs.stream.depth, w, h, rs.format.z16, fps)
            if Modality.RGB in self.modalities:
                cfg.enable_stream(rs.stream.color, w, h, rs.format.rgb8, fps)
            if Modality.IR in self.modalities:
                cfg.enable_stream(rs.stream.infrared, self.ir_index, w, h, rs.format.y8, fps)
            self._watch_unplug(rs)
        pipe = rs.pipeline()
        # Resolve first (no streaming yet): streams are checked and playback timing is set before any SDK
        # thread runs, so a refused open leaves nothing behind; start() reuses the resolved profile.
        resolved = cfg.resolve(rs.pipeline_wrapper(pipe))
        dev = resolved.get_device()
        self._read_device(rs, dev, [s for s in resolved.get_streams()])
        if self.is_playback:
            self._playback = dev.as_playback()
            self._playback.set_real_time(self.realtime)
        else:
            self._configure_options(rs, dev)
        profile = pipe.start(cfg)
        self._pipe = pipe
        if self.is_playback:
            self._playback = profile.get_device().as_playback()
            self._playback.set_real_time(self.realtime)

    def _start_sensors(self, rs, dev) -> None:
        """Sensor-level capture (software devices, or cameras without a pipeline): one frame queue per sensor."""
        self._queues_rs, self._sensors, streams = [], [], []
        for sensor in dev.query_sensors():
            profiles = [p for p in sensor.get_stream_profiles()
                        if _modality(rs, p.stream_type(), p.stream_index(), self.ir_index) in self.modalities]
            if not profiles:
                continue
            q = rs.frame_queue(max(self.queue_size, 8), keep_frames=False)
            sensor.open(profiles)
            sensor.start(q)
            self._sensors.append(sensor)
            self._queues_rs.append(q)
            streams.extend(profiles)
        if not streams:
            raise SourceError(f"the device has none of the streams {sorted(m.value for m in self.modalities)}",
                              self.uri)
        self._read_device(rs, dev, streams)

    def _configure_options(self, rs, dev) -> None:
        for sensor in dev.query_sensors():
            if self.emitter is not None and sensor.supports(rs.option.emitter_enabled):
                sensor.set_option(rs.option.emitter_enabled, 1.0 if self.emitter else 0.0)
            if self.depth_units is not None and sensor.supports(rs.option.depth_units):
                sensor.set_option(rs.option.depth_units, float(self.depth_units))

    def _watch_unplug(self, rs) -> None:
        serial = self.serial

        def changed(info) -> None:
            try:
                for d in info.get_removed_devices() if hasattr(info, "get_removed_devices") else []:
                    if not serial or d.get_info(rs.camera_info.serial_number) == serial:
                        self._unplugged = True
            except RuntimeError:
                pass
        try:
            self._ctx = rs.context()
            self._ctx.set_devices_changed_callback(changed)
        except Exception as exc:  # hot-plug notification is a convenience, not a requirement
            log.debug("no hot-plug callback: %s", exc)

    def _read_device(self, rs, dev, streams) -> None:
        """Device info, depth scale, factory intrinsics and extrinsics → ``self.rig``."""
        info = {}
        for key, field in (("name", rs.camera_info.name), ("serial", rs.camera_info.serial_number),
                           ("firmware", rs.camera_info.firmware_version),
                           ("product_line", rs.camera_info.product_line)):
            try:
                if dev.supports(field):
                    info[key] = dev.get_info(field)
            except RuntimeError:
                pass
        self.device_info = info
        if not self.serial and "serial" in info:
            self.serial = info["serial"]
        self.depth_scale_m = None
        for sensor in dev.query_sensors():
            try:
                if sensor.is_depth_sensor():
                    self.depth_scale_m = float(sensor.as_depth_sensor().get_depth_scale())
            except RuntimeError:
                pass
        by_mod: dict[Modality, Any] = {}
        for p in streams:
            m = _modality(rs, p.stream_type(), p.stream_index(), self.ir_index)
            if m is not None and m in self.modalities and m not in by_mod:
                by_mod[m] = p.as_video_stream_profile()
        missing = self.modalities - set(by_mod)
        if missing and self.is_playback and not self._modalities_given and by_mod:
            self.modalities = frozenset(by_mod)  # a recording plays the streams it has
            missing = set()
        if missing:
            have = [m.value for m in (Modality.RGB, Modality.DEPTH, Modality.IR) if m in by_mod]
            hint = (f"; open it with the streams it has: {self.uri}?modalities={','.join(have)}"
                    if have and self.is_playback else "")
            raise SourceError(f"the device/recording has no {sorted(x.value for x in missing)} stream; "
                              f"available: {sorted(x.value for x in by_mod)}{hint}", self.uri)
        if Modality.DEPTH in by_mod and not (self.depth_scale_m and self.depth_scale_m > 0):
            raise SourceError("depth stream without a depth scale (depth_units option)", self.uri)
        self.streams = {m: p for m, p in by_mod.items()}
        self.stream_fps = {m: float(p.fps()) for m, p in by_mod.items()}
        if self.is_playback and self.stream_fps:
            self.fps = min(self.stream_fps.values())
        ref = Modality.RGB if Modality.RGB in by_mod else next(iter(by_mod))
        intr = {m: rs_intrinsics_to_ours(p.get_intrinsics()) for m, p in by_mod.items()}
        ext = {}
        for m, p in by_mod.items():
            try:
                ext[m] = rs_extrinsics_to_ours(p.get_extrinsics_to(by_mod[ref]))
            except RuntimeError as exc:
                raise SourceError(f"no factory extrinsics {m}->{ref}: {exc}", self.uri) from exc
        self.rig = Rig(ref, intr, ext, self.depth_scale_m if Modality.DEPTH in intr else None,
                       {"source": "realsense factory calibration", **{k: str(v) for k, v in info.items()}})

    def _stop_device(self) -> None:
        if self._playback is not None:
            # Pause the reader before stopping: librealsense 2.59 corrupts the heap when a playback is stopped while
            # its reader is starting (glibc aborts the process: "malloc_consolidate(): invalid chunk size"); 9 of 20
            # processes of 60 start/stop cycles died, 0 of 20 when paused first (scripts/realsense_stop_stress.py).
            try:
                self._playback.pause()
            except RuntimeError:
                pass
        if self._pipe is not None:
            try:
                self._pipe.stop()
            except RuntimeError:
                pass
            self._pipe = None
        for s in self._sensors:
            for fn in (s.stop, s.close):
                try:
                    fn()
                except RuntimeError:
                    pass
        self._sensors, self._queues_rs = [], []
        self._playback = None

    # ------------------------------------------------------------------------------------------- frames
    def _grab(self, timeout_s: float) -> list[Frame]:
        if self._unplugged:
            self._reconnect(rs, "camera unplugged")
            return []
        if self._pipe is None and not self._queues_rs:
            self._reconnect(rs, self.last_error or "pipeline is down")
            return []
        raw = []
        set_ns: int | None = None
        try:
            if self._queues_rs:
                for q in self._queues_rs:
                    ok, f = q.try_wait_for_frame(int(timeout_s * 1000 / max(1, len(self._queues_rs))))
                    if ok:
                        raw.append(f)
                        while True:  # drain what is there: our queues decide what to drop (the oldest)
                            g = q.poll_for_frame()
                            if not g:
                                break
                            raw.append(g)
            else:
                ok, fs = self._pipe.try_wait_for_frames(int(timeout_s * 1000))
                if ok:
                    raw.extend(fs)
                    set_ns = int(round(fs.get_timestamp() * 1e6))
        except RuntimeError as exc:
            self._reconnect(rs, f"SDK error: {exc}")
            return []
        if not raw and self._playback is not None and self._playback.current_status() == rs.playback_status.stopped:
            # the reader may reach the end while the SDK still holds sets: drain before declaring the end
            ok, fs = self._pipe.try_wait_for_frames(200)
            if ok:
                raw.extend(fs)
                set_ns = int(round(fs.get_timestamp() * 1e6))
            elif self.framesets == 0 and self._playback_retries < PLAYBACK_RETRIES:
                # librealsense occasionally ends a non-real-time playback without delivering a set (its syncer
                # still holds the frames when the reader stops: ~1 in 25 plays of the 1-set .bag, and on a loaded
                # machine 3 in a row were seen in CI-like runs): play the file again from the start
                self._playback_retries += 1
                log.warning("%s: playback ended without frames; restarting it (%d/%d)", self.uri,
                            self._playback_retries, PLAYBACK_RETRIES)
                time.sleep(0.02 * self._playback_retries)  # let a loaded machine's reader thread get going
                self._stop_device()
                self._start_pipeline(rs)
                return []
            elif self.loop and self.framesets > 0:
                self._lap += 1  # play it again; _convert continues the numbering
                self._lap_ts_shift, self._lap_seq_shift = None, {}
                self._stop_device()
                self._last_key = {}
                self._start_pipeline(rs)
                return []
            else:
                raise EndOfStream(self.uri)
        if not raw:
            if (self._playback is None and self._device_in is None
                    and time.monotonic() - self._last_frame_t > self.stall_s):
                self._reconnect(rs, f"no frame for {self.stall_s:.1f} s (stall)")
            return []
        host_ns = time.monotonic_ns()
        self._last_frame_t = time.monotonic()
        self.framesets += 1
        out = []
        for f in raw:
            frame = self._convert(rs, f, host_ns, set_ns)
            if frame is not None:
                out.append(frame)
        return out

    def _convert(self, rs, f, host_ns: int, set_ns: int | None = None) -> Frame | None:
        p = f.profile
        m = _modality(rs, p.stream_type(), p.stream_index(), self.ir_index)
        if m is None or m not in self.modalities:
            return None
        key = (int(f.get_frame_number()), float(f.get_timestamp()))
        if self._last_key.get(m) == key:
            return None  # the SDK syncer hands the same frame out again with the next set: not a new frame
        self._last_key[m] = key
        vf = f.as_video_frame()
        data = _frame_array(rs, vf)
        dev_ns = int(round(f.get_timestamp() * 1e6))
        domain = f.get_frame_timestamp_domain()
        self.timestamp_domains[m] = str(domain).split(".")[-1]
        if self.is_playback and self.timestamps == "frameset" and set_ns is not None:
            ts = set_ns  # played back together by librealsense: one time for the set (own time in dev_ns)
        elif self.is_playback or self._device_in is not None:
            ts = dev_ns  # recorded / injected time: deterministic
        elif domain == rs.timestamp_domain.system_time:
            ts = dev_ns + (time.monotonic_ns() - time.time_ns())  # wall clock ms → host monotonic
        else:
            ts = self._clock.update(dev_ns, host_ns) + dev_ns
        intr = self.rig.intrinsics[m] if self.rig is not None else rs_intrinsics_to_ours(
            p.as_video_stream_profile().get_intrinsics())
        if (intr.width, intr.height) != (data.shape[1], data.shape[0]):
            intr = rs_intrinsics_to_ours(p.as_video_stream_profile().get_intrinsics())
        seq = int(f.get_frame_number())
        if self.loop:
            ts, dev_ns, seq = self._continue_lap(m, ts, dev_ns, seq)
        return make_frame(m, data, ts, intrinsics=intr, sequence=seq, source=self.uri,
                          device_timestamp_ns=dev_ns,
                          depth_scale_m=self.depth_scale_m if m is Modality.DEPTH else None)

    def _continue_lap(self, m: Modality, ts: int, dev_ns: int, seq: int) -> tuple[int, int, int]:
        """Looped playback: shift each later lap to start one frame period after what was emitted (ns, ns, number).

        Anchored on the lap's first delivered frame, not on the first lap's extent: librealsense's pipeline drops
        different frames on different laps (often the first set, more under load), so an extent-based shift could
        repeat a number or a time across laps.
        """
        if self._lap > 0:
            if self._lap_ts_shift is None:  # the lap's first delivered frame, any stream: one time shift per lap
                top = max((v[0] for v in self._lap_last.values()), default=None)
                self._lap_ts_shift = 0 if top is None else top + int(round(1e9 / self.fps)) - ts
            if m not in self._lap_seq_shift:
                self._lap_seq_shift[m] = self._lap_last[m][1] + 1 - seq if m in self._lap_last else 0
            ts, dev_ns, seq = ts + self._lap_ts_shift, dev_ns + self._lap_ts_shift, seq + self._lap_seq_shift[m]
        self._lap_last[m] = [ts, seq]
        return ts, dev_ns, seq

    def _reconnect(self, rs, reason: str) -> None:
        """Restart the pipeline after a fault; raise SourceError(reason) when attempts are exhausted."""
        self.last_error = reason
        if self.is_playback or self._device_in is not None or self.reconnects >= self.max_reconnects:
            raise SourceError(f"{reason}; gave up after {self.reconnects} reconnect attempt(s)", self.uri)
        self.reconnects += 1
        log.warning("%s: %s; reconnecting (attempt %d/%d)", self.uri, reason, self.reconnects, self.max_reconnects)
        self._stop_device()
        time.sleep(min(1.0, 0.1 * 2 ** self.reconnects))
        try:
            self._unplugged = False
            self._start_pipeline(rs)
            self._last_frame_t = time.monotonic()
        except (RuntimeError, SourceError) as exc:
            self.last_error = f"{reason}; reconnect failed: {exc}"
            log.warning("%s: reconnect failed: %s", self.uri, exc)
            self._last_frame_t = time.monotonic()


def list_devices() -> list[dict[str, str]]:
    """Connected RealSense cameras: name, serial, firmware (empty without a camera)."""
    out = []
    for d in rs.context().query_devices():
        info = {}
        for key, field in (("name", rs.camera_info.name), ("serial", rs.camera_info.serial_number),
                           ("firmware", rs.camera_info.firmware_version)):
            if d.supports(field):
                info[key] = d.get_info(field)
        out.append(info)
    return out
