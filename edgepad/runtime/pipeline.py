"""LivenessPipeline: synced frame sets → face → crops → quality gates → backend → fail-closed Decision.

Data flow (docs/RUNTIME.md)::

    Capture.read()            sources → Synchronizer → [Registrar.frame]    (stages capture, sync, register)
      → SensorMonitor         counters/timestamps monotonic, frozen frames  (part of sync; on a worker thread
      → FaceLocator.locate    rgb → box                                     (locate)     beside locate)
      → Registrar.window      depth → rgb inside the crop window only       (register)
      → crop_face + gates     per-modality crops through the rig; quality   (preprocess)
      → normalise             manifest InputSpecs; dropped modality → fill  (preprocess)
      → backend.infer         {"score", "score_<m>"}                       (infer)
      → DecisionPolicy        threshold by operating point, k-of-n, stale   (policy)

Sequential use: :meth:`LivenessPipeline.step` / :meth:`~LivenessPipeline.run` / iterate
:meth:`~LivenessPipeline.decisions`; :meth:`~LivenessPipeline.process` decides on one frame set with no I/O.
Threaded use (``PipelineConfig(threaded=True)``): three threads (sync+registration = ``Capture.read``;
detection+inference; decision) joined by bounded drop-oldest queues, so a slow stage drops old frame sets
instead of building up latency; drops are counted in :attr:`LivenessPipeline.stats`.

Per-frame failures become UNKNOWN decisions with ``error_<stage>``; a timeout gives UNKNOWN ``no_frames``;
``EndOfStream`` ends iteration; a ``SourceError`` (unplugged camera) emits UNKNOWN ``error_capture`` to callbacks
and is raised.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np

from edgepad import preprocess
from edgepad.blas import keep_freed_memory, set_blas_threads
from edgepad.config import suggest
from edgepad.drivers.base import DropOldestQueue
from edgepad.drivers.capture import open_capture
from edgepad.drivers.registration import Registrar, RegistrationMode
from edgepad.drivers.registration.native import crop_sampler, input_arithmetic
from edgepad.engines.backend import load_backend
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.geometry import load_rig
from edgepad.runtime.face import FaceDetection, FaceLocator, make_locator
from edgepad.runtime.policy import DecisionPolicy, PolicyConfig
from edgepad.runtime.presentation import PresentationConfig, PresentationEvent, PresentationTracker, face_colour
from edgepad.runtime.quality import HINT_NO_FACE, QualityConfig, check_quality, depth_valid_sample
from edgepad.runtime.sensors import SensorMonitor
from edgepad.types import STAGES, Decision, FrameSet, Modality, Reason, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """Runtime settings.

    Attributes:
        margin: crop margin around the face box (window side ``max(w, h)·(1 + margin)``, see
            :func:`edgepad.preprocess.crop_window`). None (default): the model's (``InputSpec.margin`` in its
            manifest; 0.25 when the manifest has none). A value that differs from the model's is refused
            (ConfigError at pipeline construction): a model's crops are cut as in training.
        clock: how each frame set's time is checked (per frame set; docs/RELIABILITY.md):
            ``host``: against ``time.monotonic_ns``: stale when older than ``policy.max_age_ms`` or stamped
            more than that in the future (live cameras, realtime replays with ``host_clock``).
            ``source``: the stream's own clock (recordings and non-realtime synthetic sources, which cannot be
            compared with the host): decision time = the frame set's time + the time spent since it was read;
            the source clock must advance (a repeated or backwards time is stale) and may not run ahead of the
            host time elapsed between two reads by more than ``max_skew_ms`` (a jump: that frame set is stale
            and the vote restarts).
            ``auto`` (default): ``host`` for every frame set stamped less than 10 s before the host clock (or
            after it: a future stamp is stale, never taken for a source clock), ``source`` for frame sets more
            than 10 s behind until one is not; once a frame set was on the host clock the stream stays on it (a
            later frame set far from the host clock is stale, never re-read as a source clock). A recording
            whose clock runs ahead of the host's needs ``source`` explicitly.
        max_skew_ms: the largest forward step of a source clock beyond the host time elapsed between two reads
            (ms; > the longest frame interval, drops included, of a non-realtime playback).
        face_jump: limit of the box-centre move between consecutive face frames, in box widths, in the change
            score that starts a new presentation (:mod:`edgepad.runtime.presentation`).
        read_timeout_s: capture read timeout used by :meth:`LivenessPipeline.run` / iteration.
        threaded: run capture, inference and decision in their own threads.
        queue_size: capacity of each inter-stage queue in threaded mode (oldest item dropped when full).
        integrity: run the sensor-integrity checks.
        registration: how unregistered depth that reaches the pipeline is registered to rgb (with the capture's
            :class:`~edgepad.drivers.registration.Registrar`, else one built from the rig): ``window`` (default):
            only inside the face's crop window, after face location (values there are identical to a full-frame
            registration); ``frame``: the whole frame. :func:`open_pipeline` builds its capture in the matching
            :class:`~edgepad.drivers.registration.RegistrationMode` (WINDOW / FRAME); depth that arrives
            registered (a capture in FRAME mode) is used as is.
        blas_threads: BLAS threads of the process while the pipeline is open (restored at close; None = leave
            as is). The crops' small matrix products are slower with threads that compete with the inference
            threads for the same cores (measured 10x on the shared 2-core development VM).
        overlap: run the frame set's work that needs no face box on a worker thread while the face is located
            (identical results; the wait for it counts in ``sync``): the sensor checks and, for window
            registration, the depth frame's nearest-depth bucket
            (:meth:`~edgepad.drivers.registration.Registrar.bucket`), its valid fraction, and the registration
            of the last frame's window grown by ``guess_margin`` — used when this frame's window lies inside it
            (the values inside any window equal the whole frame's; the rest is cleared), else the window is
            registered after locate as without overlap. False: all in line, on the calling thread.
        guess_margin: growth of the guessed registration window on each side, as a fraction of its side (the
            face's move between two frames it absorbs; ≥ 0).
        policy / quality / presentation: see :class:`PolicyConfig`, :class:`QualityConfig` and
            :class:`~edgepad.runtime.presentation.PresentationConfig` (when a face's presentation ends).
    """

    margin: float | None = None
    clock: Literal["auto", "host", "source"] = "auto"
    max_skew_ms: float = 250.0
    face_jump: float = 0.2
    read_timeout_s: float = 1.0
    threaded: bool = False
    queue_size: int = 2
    integrity: bool = True
    registration: Literal["window", "frame"] = "window"
    blas_threads: int | None = 1
    overlap: bool = True
    guess_margin: float = 0.1
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    presentation: PresentationConfig = field(default_factory=PresentationConfig)

    @property
    def capture_mode(self) -> RegistrationMode:
        """The capture's registration mode that matches ``registration`` (WINDOW or FRAME)."""
        return RegistrationMode.WINDOW if self.registration == "window" else RegistrationMode.FRAME

    def __post_init__(self) -> None:
        m = self.margin
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m)
                              or not 0.0 <= m <= 4.0):
            raise ConfigError(f"margin must be None (the model's) or a finite number in [0, 4], got {m!r}",
                              key="margin")
        if self.clock not in ("auto", "host", "source"):
            raise ConfigError(f"clock must be auto, host or source, got {self.clock!r}", key="clock")
        if not (isinstance(self.queue_size, int) and self.queue_size >= 1):
            raise ConfigError(f"queue_size must be an integer >= 1, got {self.queue_size!r}", key="queue_size")
        if self.registration not in ("window", "frame"):
            raise ConfigError(f"registration must be window or frame, got {self.registration!r}",
                              key="registration")
        if self.blas_threads is not None and not (isinstance(self.blas_threads, int) and self.blas_threads >= 1):
            raise ConfigError(f"blas_threads must be None or an integer >= 1, got {self.blas_threads!r}",
                              key="blas_threads")
        if not (isinstance(self.max_skew_ms, (int, float)) and math.isfinite(self.max_skew_ms)
                and self.max_skew_ms > 0):
            raise ConfigError(f"max_skew_ms must be a positive number of ms, got {self.max_skew_ms!r}",
                              key="max_skew_ms")
        if not (isinstance(self.guess_margin, (int, float)) and 0.0 <= self.guess_margin <= 1.0):
            raise ConfigError(f"guess_margin must be in [0, 1], got {self.guess_margin!r}", key="guess_margin")
        if not (self.read_timeout_s > 0 and self.face_jump > 0):
            raise ConfigError("read_timeout_s and face_jump must be > 0", key="read_timeout_s")


@dataclass
class PipelineStats:
    """Counters of a pipeline run."""

    framesets: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    timeouts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=lambda: {"frames": 0, "scored": 0, "decisions": 0})

    def to_dict(self) -> dict:
        return {"framesets": self.framesets, "decisions": dict(self.decisions), "timeouts": self.timeouts,
                "errors": dict(self.errors), "dropped": dict(self.dropped)}


@dataclass
class _Scan:
    """What the window registration of one frame set needs before its face is known
    (:meth:`LivenessPipeline._scan`): the raw depth frame's nearest-depth bucket and valid fraction, and its
    registration inside a guessed window ``(x0, y0, x1, y1)`` (clipped; None: none)."""

    bucket: tuple[float, float] | None
    depth_valid: float
    guess: tuple[int, int, int, int] | None = None
    guessed: Any = None


class _Stop:
    """Terminal queue item carrying the exception that ended the stream (None = stopped)."""

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc


@dataclass
class _Scored:
    frameset: FrameSet | None
    ready_perf_ns: int
    latency_ms: dict[str, float]
    score: float | None = None
    evidence: dict[Modality, float] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    used: frozenset[Modality] | None = None
    detection: FaceDetection | None = None
    face: bool = True
    face_depth_m: float | None = None
    colour: tuple[float, float, float] | None = None
    quality: Mapping[str, float] = field(default_factory=dict)
    read_ms: float = 0.0
    clock_ok: bool = True


class LivenessPipeline:
    """Capture → face → crops → backend → policy, with per-stage timing on every decision.

    Args:
        capture: object with ``read(timeout_s) -> FrameSet | None`` (a drivers ``Capture``); optional
            ``open``/``close``, ``rig``. None for :meth:`process`-only use.
        backend: an inference backend (``edgepad.engines.backend.load_backend``); activated by :meth:`open`.
        locator: a :class:`FaceLocator` or spec (``"learned"``, ``"haar"``, ``"fixed:x,y,w,h"``); default learned.
        rig: camera rig; default ``capture.rig``.
        config: :class:`PipelineConfig`.
        policy: a ready :class:`DecisionPolicy` (default: built from ``backend.manifest`` and ``config.policy``).

    Example:
        >>> with open_pipeline("synthetic://default", "edgepad/assets/default.onnx") as pipe:  # doctest: +SKIP
        ...     for d in pipe.decisions(max_frames=100):
        ...         print(d.verdict, d.score, d.reasons)
    """

    def __init__(self, capture: Any, backend: Any, *, locator: FaceLocator | str | None = None, rig: Any = None,
                 config: PipelineConfig | None = None, policy: DecisionPolicy | None = None) -> None:
        self.config = config or PipelineConfig()
        self.capture = capture
        self.backend = backend
        self.manifest = backend.manifest
        self.rig = rig if rig is not None else getattr(capture, "rig", None)
        self.locator = make_locator(locator)
        self.policy = policy or DecisionPolicy(self.manifest, self.config.policy)
        self.size_px = _crop_size(self.manifest)
        self.align = preprocess.crop_align(self.manifest.inputs)  # "eyes": crops rotated by the landmarks' roll
        #: the crop margin: the model's (InputSpec.margin), cut exactly as in training
        self.margin = preprocess.crop_margin(self.manifest.inputs)
        if self.config.margin is not None and not math.isclose(self.config.margin, self.margin, rel_tol=0.0,
                                                               abs_tol=1e-9):
            raise ConfigError(f"PipelineConfig.margin={self.config.margin:g} but the model was trained on crops of "
                              f"margin {self.margin:g} (its manifest's InputSpec.margin): leave margin None to "
                              f"use the model's", key="margin")
        self.sensors = SensorMonitor() if self.config.integrity else None
        self.stats = PipelineStats()
        self._callbacks: list[Callable[[Decision], None]] = []
        self.presentations = PresentationTracker(self.config.presentation, max_jump=self.config.face_jump)
        self._event_callbacks: list[Callable[[PresentationEvent], None]] = []
        self._events: collections.deque[PresentationEvent] = collections.deque(maxlen=1024)
        self.clock = FrameClock(self.config.clock, self.config.max_skew_ms)
        self._opened = False
        self._owns_backend = False
        self._threads: list[threading.Thread] = []
        self._stop_evt = threading.Event()
        self._q_frames: DropOldestQueue | None = None
        self._q_scored: DropOldestQueue | None = None
        self._q_out: DropOldestQueue | None = None
        self._error_log_at: dict[str, float] = {}
        self.last: Decision | None = None
        self.last_frameset: FrameSet | None = None
        self._seq_by_ts: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.registrar: Registrar | None = None
        self._blas_prev: dict[str, int] | None = None
        #: the compiled rgb / IR crops (preprocess's numpy path up to rounding ties), set at open; None = numpy
        self._crop_sample: preprocess.Sampler | None = None
        #: the compiled arithmetic of the model inputs (equal to numpy's bit for bit), set at open; None = numpy
        self._inputs_kernel: preprocess.InputKernel | None = None
        self._worker: Any = None  # the thread of the checks beside locate (overlap), started on first use
        self._last_window: tuple[int, int, int, int] | None = None  # the last registration window (clipped)
        #: registration windows taken from the guess beside locate ("hit") or registered after locate ("miss")
        self.window_guess = {"hit": 0, "miss": 0}
        self._worker_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "LivenessPipeline":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the capture and activate the backend (idempotent); threaded mode starts its threads.

        A backend that was already active stays active at :meth:`close` (its owner deactivates it).
        """
        if self._opened:
            return
        if hasattr(self.capture, "open"):
            self.capture.open()
        if self.rig is None and self.capture is not None:
            self.rig = getattr(self.capture, "rig", None)
        self._owns_backend = not getattr(self.backend, "is_active", False)
        self.backend.activate()
        self.registrar = self._find_registrar()
        self._crop_sample = crop_sampler()  # compiled on first use, else None (numpy; logged once)
        self._inputs_kernel = input_arithmetic()  # the same library; None: numpy
        if self.config.blas_threads is not None:
            self._blas_prev = set_blas_threads(self.config.blas_threads)
        keep_freed_memory()  # per-frame numpy temporaries from the heap, not fresh mmap pages (docs/PERFORMANCE.md)
        self._opened = True
        if self.config.threaded and self.capture is not None:
            self._start_threads()

    def _find_registrar(self) -> Registrar | None:
        """The capture's depth → rgb registrar when it serves this pipeline's rig, else one built from the rig
        (its face-window culling bounds prepared now in window mode, not on the first frame of a nearer face: a
        one-off stall of 70-150 ms on a 640×480 pair otherwise); None without a depth/rgb pair in the rig."""
        reg = getattr(self.capture, "registrar", None)
        if (isinstance(reg, Registrar) and reg.target_modality is Modality.RGB
                and getattr(self.capture, "rig", None) is self.rig):
            return reg
        rig = self.rig
        intr = getattr(rig, "intrinsics", None) or {}
        if Modality.DEPTH not in intr or Modality.RGB not in intr or not getattr(rig, "depth_scale_m", None):
            return None
        opts = getattr(self.capture, "registration", None)
        reg = Registrar.from_rig(rig, Modality.RGB, **(opts if isinstance(opts, Mapping) else {}))
        if self.config.registration == "window":
            reg.prepare()
        return reg

    def close(self) -> None:
        """Stop threads, deactivate the backend and close the capture (idempotent)."""
        self._stop_threads()
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)
        if self._opened:
            self._opened = False
            if self._blas_prev:
                set_blas_threads(self._blas_prev)
                self._blas_prev = None
            try:
                if self._owns_backend:
                    self.backend.deactivate()
            finally:
                if hasattr(self.capture, "close"):
                    self.capture.close()

    def on_decision(self, callback: Callable[[Decision], None]) -> None:
        """Call ``callback(decision)`` for every decision (from the decision thread in threaded mode)."""
        self._callbacks.append(callback)

    def sequence_of(self, decision: Decision) -> int | None:
        """The rgb frame counter of the frame set a recent decision was made on (None if unknown)."""
        return self._seq_by_ts.get(decision.timestamp_ns)

    def reset_lockout(self) -> None:
        """Integrator action: leave the spoof lockout."""
        self.policy.reset_lockout()

    # ------------------------------------------------------------------ one frame set
    def process(self, frameset: FrameSet, now_ns: int | None = None, *, capture_ms: float = 0.0) -> Decision:
        """Decide on one frame set (no I/O).

        Args:
            frameset: synced frames (depth registered to rgb, or registered here with :attr:`registrar`).
            now_ns: decision time on the clock of :attr:`PipelineConfig.clock`; default: now.
            capture_ms: time spent reading this frame set (reported as the ``capture`` stage).
        """
        t_ready = time.perf_counter_ns()
        ok = self.clock.observe(frameset.timestamp_ns, t_ready) if now_ns is None else True
        item = self._score(frameset, t_ready, {"capture": float(capture_ms)})
        item.clock_ok = ok
        return self._decide(item, now_ns)

    def _score(self, fs: FrameSet, t_ready: int, lat: dict[str, float]) -> _Scored:
        """Everything up to and including inference (thread-safe with respect to the policy)."""
        item = _Scored(fs, t_ready, lat, read_ms=float(sum(lat.values())))
        self.stats.framesets += 1
        t = time.perf_counter_ns()
        scan = sensors = None
        if self.config.overlap:  # beside locate, registration and crops; each wait counts in sync
            worker = self._start_worker()
            if self._registers_window(fs):  # first: the registration after locate waits for it
                scan = worker.submit(self._scan, fs, self._last_window)
            if self.sensors is not None:
                sensors = worker.submit(self._sensor_check, fs)
        elif self.sensors is not None:
            sensors = self._sensor_check(fs)
        lat["sync"] = lat.get("sync", 0.0) + _ms(t)

        def checked() -> None:
            """The sensor checks' outcome, first among the reasons (as when they ran first, in line)."""
            nonlocal sensors
            if sensors is None:
                return
            t = time.perf_counter_ns()
            integrity, error = sensors if isinstance(sensors, tuple) else sensors.result()
            sensors = None
            lat["sync"] += _ms(t)
            if error is not None:  # a per-frame failure becomes a decision
                self._error("sync", error)
                item.reasons.insert(0, Reason.ERROR_SYNC)
            elif not integrity.ok:
                item.reasons.insert(0, Reason.SENSOR_INTEGRITY)

        try:
            return self._score_face(fs, item, lat, scan, checked)
        finally:
            checked()

    def _score_face(self, fs: FrameSet, item: _Scored, lat: dict[str, float], scan: Any,
                    checked: Callable[[], None]) -> _Scored:
        """:meth:`_score` from face location on; ``scan``: the future of :meth:`_scan` (or None), ``checked()``
        collects the sensor checks (called before inference, where both cores go to the network)."""
        lat.setdefault("register", 0.0)
        item.used = frozenset(fs.frames) & self.policy.modalities  # the crops narrow it once a face is found
        if Modality.RGB not in fs.frames:
            item.face = False
            item.reasons.append(Reason.MISSING_RGB)
            return item
        t = time.perf_counter_ns()
        try:
            det = self.locator.locate(fs)
        except Exception as exc:  # noqa: BLE001
            self._error("locate", exc)
            item.reasons.append(Reason.ERROR_LOCATE)
            lat["locate"] = _ms(t)
            return item
        lat["locate"] = _ms(t)
        if det is None:
            item.face = False
            item.hints.append(HINT_NO_FACE)
            return item
        item.detection = det
        item.colour = face_colour(fs.frames[Modality.RGB].data, det.box) if fs.frames[Modality.RGB].data.ndim == 3 \
            else None
        t = time.perf_counter_ns()
        try:
            if self.rig is None:
                raise ConfigError("the pipeline has no rig: pass rig= or use a capture that has one", key="rig")
            t_reg = time.perf_counter_ns()
            if scan is not None:  # the scan's wait counts in register
                scan = scan.result()
            fs_reg, frame_valid = self._register(fs, det.box, scan)
            reg_ns = time.perf_counter_ns() - t_reg
            lat["register"] = lat.get("register", 0.0) + reg_ns / 1e6
            t += reg_ns  # the registration is reported as its own stage, not as preprocess
            res = preprocess.crop_face(fs_reg, det.box, self.rig, size_px=self.size_px, margin=self.margin,
                                       align=self.align, landmarks=det.landmarks, sample=self._crop_sample)
            q = check_quality(fs_reg, det.box, res.crops, self.config.quality,
                              depth_valid_fraction=res.valid_depth_fraction if Modality.DEPTH in fs.frames else None,
                              landmarks=det.landmarks, depth_frame_valid_fraction=frame_valid)
            item.reasons.extend(q.reasons)
            item.hints.extend(q.hints)
            item.quality = q.metrics
            if res.nominal_depth and Modality.IR in res.crops:
                item.reasons.append(Reason.NOMINAL_DEPTH)
            crops = {m: c for m, c in res.crops.items() if m not in q.invalid and m in self.policy.modalities}
            item.used = frozenset(crops)
            depth = fs_reg.get(Modality.DEPTH)
            scale = depth.depth_scale_m if depth is not None else (getattr(self.rig, "depth_scale_m", None) or 0.001)
            # the face distance for IR fall-off compensation: from the depth crop when it is used (as in
            # training), else the measured/box-size estimate of crop_face
            z = None if Modality.DEPTH in crops else res.face_depth_m
            item.face_depth_m = None if res.nominal_depth else float(res.face_depth_m)
            feed = preprocess.normalise(crops, self.manifest.inputs, scale, face_depth_m=z, kernel=self._inputs_kernel)
            bad = [k for k, v in feed.items() if not np.isfinite(v).all()]
            if bad:  # never score garbage (e.g. crops through a corrupt rig): error_preprocess, no vote
                raise ValueError(f"non-finite model input {bad}")
        except Exception as exc:  # noqa: BLE001
            self._error("preprocess", exc)
            item.reasons.append(Reason.ERROR_PREPROCESS)
            lat["preprocess"] = _ms(t)
            return item
        lat["preprocess"] = _ms(t)
        checked()
        t = time.perf_counter_ns()
        try:
            out = self.backend.infer(feed)
            score = float(np.asarray(out[self.manifest.score_output]).reshape(-1)[0])
            for m in item.used:
                key = f"score_{m.value}"
                if key in out:
                    item.evidence[m] = float(np.asarray(out[key]).reshape(-1)[0])
            if not math.isfinite(score):
                raise ValueError(f"non-finite score {score}")
            item.score = score
        except Exception as exc:  # noqa: BLE001
            self._error("infer", exc)
            item.reasons.append(Reason.ERROR_INFER)
        lat["infer"] = _ms(t)
        return item

    def _start_worker(self) -> Any:
        with self._worker_lock:
            if self._worker is None:
                import concurrent.futures
                self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="edgepad-checks",
                                                                     initializer=_lower_priority)
            return self._worker

    def _registers_window(self, fs: FrameSet) -> bool:
        """Whether :meth:`_register` registers this frame set's depth inside the face window."""
        depth = fs.frames.get(Modality.DEPTH)
        return (self.config.registration == "window" and depth is not None and self.registrar is not None
                and depth.registered_to is None and Modality.RGB in fs.frames)

    def _sensor_check(self, fs: FrameSet) -> tuple[Any, BaseException | None]:
        """``(IntegrityResult, None)`` of :attr:`sensors` on ``fs``, or ``(None, the failure)``."""
        try:
            return self.sensors.check(fs), None
        except Exception as exc:  # noqa: BLE001 - reported by _score as error_sync
            return None, exc

    def _scan(self, fs: FrameSet, last: tuple[int, int, int, int] | None) -> _Scan | None:
        """The window registration's work that needs no face box (on the worker thread): the raw depth frame's
        nearest-depth bucket and valid fraction, and its registration inside ``last`` (the last frame's window)
        grown by ``guess_margin``. None on a failure: :meth:`_register` then computes them itself and raises
        there (``error_preprocess``)."""
        depth, reg = fs.frames[Modality.DEPTH], self.registrar
        try:
            out = _Scan(reg.bucket(depth), depth_valid_sample(depth.data))
            if last is not None:
                g = math.ceil(self.config.guess_margin * max(last[2] - last[0], last[3] - last[1]))
                out.guess = _clipped((last[0] - g, last[1] - g, last[2] + g, last[3] + g), reg.target_intrinsics)
                out.guessed = reg.window(depth, out.guess, out.bucket)
            return out
        except Exception:  # noqa: BLE001
            return None

    def _register(self, fs: FrameSet, box: tuple[int, int, int, int], scan: _Scan | None = None
                  ) -> tuple[FrameSet, float | None]:
        """Register unregistered depth to rgb with :attr:`registrar`: inside the face's crop window only (window
        mode; identical values there) or the whole frame. ``scan``: this frame set's :meth:`_scan` (computed
        beside locate): its bucket and valid fraction are used, and its guessed window when that holds this
        frame's window; else everything is computed here.

        Returns the frame set with registered depth and, in window mode, the valid fraction of the raw depth frame
        (the frame-level sensor check); ``(fs, None)`` when nothing is to be registered here.
        """
        depth, reg = fs.frames.get(Modality.DEPTH), self.registrar
        if depth is None or reg is None or depth.registered_to is not None or Modality.RGB not in fs.frames:
            return fs, None
        frame_valid = None
        if self.config.registration == "window":
            x0, y0, side = preprocess.crop_window(box, self.margin)
            # the crop window (nearest-neighbour depth samples) and the box's central half (face depth), 2 px spare
            win = (int(math.floor(x0)) - 2, int(math.floor(y0)) - 2, int(math.ceil(x0 + side)) + 3,
                   int(math.ceil(y0 + side)) + 3)
            win = self._last_window = _clipped(win, reg.target_intrinsics)
            g = scan.guess if scan is not None else None
            if g is not None and g[0] <= win[0] and g[1] <= win[1] and win[2] <= g[2] and win[3] <= g[3]:
                # identical to reg.window(depth, win): the guess's values inside win, 0 around them
                a = np.zeros_like(scan.guessed.data)
                a[win[1]:win[3], win[0]:win[2]] = scan.guessed.data[win[1]:win[3], win[0]:win[2]]
                out, frame_valid = replace(scan.guessed, data=a), scan.depth_valid
                self.window_guess["hit"] += 1
            elif scan is not None:
                out, frame_valid = reg.window(depth, win, scan.bucket), scan.depth_valid
                self.window_guess["miss"] += g is not None
            else:
                out, frame_valid = reg.window(depth, win), depth_valid_sample(depth.data)
        else:
            out = reg.frame(depth)
        frames = dict(fs.frames)
        frames[Modality.DEPTH] = out
        return FrameSet(frames, fs.timestamp_ns, fs.skew_ns, fs.missing), frame_valid

    def _decide(self, item: _Scored, now_ns: int | None) -> Decision:
        t = time.perf_counter_ns()
        fs = item.frameset
        self.last_frameset = fs
        rgb = fs.frames.get(Modality.RGB)
        if rgb is not None:
            self._seq_by_ts[fs.timestamp_ns] = rgb.sequence
            while len(self._seq_by_ts) > 512:
                self._seq_by_ts.popitem(last=False)
        new, events = self.presentations.observe(item.detection, fs.timestamp_ns, item.face_depth_m, item.colour)
        if new:
            self.policy.reset()  # a new attempt: no vote of one presentation reaches the next (lockout count kept)
        elif not item.face:
            self.policy.clear_votes()  # same presentation, same attempt: the votes restart
        if now_ns is None:
            now_ns = self.clock.now(fs.timestamp_ns, item.ready_perf_ns)
        if not item.clock_ok:  # a clock that stood still, went back or jumped: no vote, the votes restart
            self.policy.clear_votes()
            item.reasons.append(Reason.STALE)
        try:
            d = self.policy.update(item.score, evidence=item.evidence, timestamp_ns=fs.timestamp_ns, now_ns=now_ns,
                                   reasons=item.reasons, modalities=item.used, face=item.face,
                                   face_box=item.detection.box if item.detection else None, hints=item.hints)
        except Exception as exc:  # noqa: BLE001
            self._error("policy", exc)
            d = Decision(Verdict.UNKNOWN, None, self.policy.threshold, reasons=(Reason.ERROR_POLICY,),
                         timestamp_ns=fs.timestamp_ns)
        lat = dict(item.latency_ms)
        lat["policy"] = _ms(t)
        lat["total"] = (time.perf_counter_ns() - item.ready_perf_ns) / 1e6 + item.read_ms
        lat = {k: float(lat.get(k, 0.0)) for k in STAGES}
        d = _with(d, latency_ms=lat)
        events += self.presentations.decided(d)
        d = self._emit(d)
        self._emit_events(events)
        return d

    def _emit(self, d: Decision) -> Decision:
        self.stats.decisions[d.verdict.value] += 1
        self.last = d
        for cb in list(self._callbacks):
            try:
                cb(d)
            except Exception:  # noqa: BLE001 - an integrator callback must not stop the runtime
                log.exception("decision callback failed")
        return d

    def on_event(self, callback: Callable[[PresentationEvent], None]) -> None:
        """Call ``callback(event)`` for every :class:`PresentationEvent` (started / decided / ended), right after
        the decision that caused it (from the decision thread in threaded mode)."""
        self._event_callbacks.append(callback)

    def events(self) -> list[PresentationEvent]:
        """The presentation events since the last call (oldest first; at most the last 1024 are kept)."""
        out = []
        while True:
            try:
                out.append(self._events.popleft())
            except IndexError:
                return out

    def end_presentation(self, cause: str = "stream_end") -> list[PresentationEvent]:
        """End the current presentation now (emits and returns its ``ended`` event); the next face starts one."""
        self.policy.reset()
        events = self.presentations.finish(cause)
        self._emit_events(events)
        return events

    def _emit_events(self, events: list[PresentationEvent]) -> None:
        for ev in events:
            self._events.append(ev)
            for cb in list(self._event_callbacks):
                try:
                    cb(ev)
                except Exception:  # noqa: BLE001 - an integrator callback must not stop the runtime
                    log.exception("presentation event callback failed")

    def _no_frames(self) -> Decision:
        self.stats.timeouts += 1
        now = time.monotonic_ns()
        d = Decision(Verdict.UNKNOWN, None, self.policy.threshold, reasons=(Reason.NO_FRAMES,), timestamp_ns=now,
                     latency_ms={k: 0.0 for k in STAGES})
        return self._emit(d)

    def _capture_error(self, exc: BaseException) -> Decision:
        self._error("capture", exc)
        self.end_presentation("capture_error")
        d = Decision(Verdict.UNKNOWN, None, self.policy.threshold, reasons=(Reason.ERROR_CAPTURE,),
                     timestamp_ns=time.monotonic_ns(), latency_ms={k: 0.0 for k in STAGES})
        return self._emit(d)

    # ------------------------------------------------------------------ sequential I/O
    def step(self, timeout_s: float | None = None) -> Decision | None:
        """Read one frame set and decide; None on a capture timeout.

        Raises:
            EndOfStream: the source ended. SourceError: the source failed (after an ``error_capture`` decision).
        """
        if self.capture is None:
            raise ConfigError("this pipeline has no capture; use process(frameset)", key="capture")
        if not self._opened:
            self.open()
        if self.config.threaded:
            raise ConfigError("step() is for sequential pipelines; iterate decisions() in threaded mode",
                              key="threaded")
        timeout_s = self.config.read_timeout_s if timeout_s is None else timeout_s
        t = time.perf_counter_ns()
        try:
            fs = self.capture.read(timeout_s)
        except EndOfStream:
            raise
        except SourceError as exc:
            self._capture_error(exc)
            raise
        capture_ms = _ms(t)
        if fs is None:
            return None
        t_ready = time.perf_counter_ns()
        ok = self.clock.observe(fs.timestamp_ns, t_ready)
        item = self._score(fs, t_ready, self._read_timing(capture_ms))
        item.clock_ok = ok
        return self._decide(item, None)

    def decisions(self, max_frames: int | None = None, timeout_s: float | None = None) -> Iterator[Decision]:
        """Iterate decisions until ``max_frames`` frame sets were decided or the stream ends.

        A capture timeout yields an UNKNOWN ``no_frames`` decision (fail closed) and iteration continues.

        Raises:
            SourceError: the source failed (an ``error_capture`` decision is emitted first).
        """
        if not self._opened:
            self.open()
        n = 0
        while max_frames is None or n < max_frames:
            if self.config.threaded:
                item = self._q_out.get(timeout_s or self.config.read_timeout_s)  # type: ignore[union-attr]
                if item is None:
                    yield self._no_frames()
                    continue
                if isinstance(item, _Stop):
                    if isinstance(item.exc, SourceError):
                        raise item.exc
                    if isinstance(item.exc, EndOfStream):
                        self.end_presentation()
                    return
                n += 1
                yield item
                continue
            try:
                d = self.step(timeout_s)
            except EndOfStream:
                self.end_presentation()
                return
            if d is None:
                yield self._no_frames()
                continue
            n += 1
            yield d

    def __iter__(self) -> Iterator[Decision]:
        return self.decisions()

    def run(self, max_frames: int | None = None) -> PipelineStats:
        """Run until ``max_frames`` frame sets are decided or the stream ends; callbacks see every decision."""
        for _ in self.decisions(max_frames):
            pass
        return self.stats

    # ------------------------------------------------------------------ threads
    def _start_threads(self) -> None:
        qs = self.config.queue_size
        self._q_frames, self._q_scored, self._q_out = DropOldestQueue(qs), DropOldestQueue(qs), DropOldestQueue(
            max(qs, 64))
        self._stop_evt.clear()
        for name, fn in (("capture", self._capture_loop), ("infer", self._infer_loop), ("decide", self._decide_loop)):
            th = threading.Thread(target=fn, name=f"edgepad-{name}", daemon=True)
            th.start()
            self._threads.append(th)

    def _stop_threads(self) -> None:
        if not self._threads:
            return
        self._stop_evt.set()
        for q in (self._q_frames, self._q_scored, self._q_out):
            if q is not None:
                q.put(_Stop(None), force=True)
        for th in self._threads:
            th.join(timeout=5.0)
        self._threads = []
        self._sync_drops()

    def _sync_drops(self) -> None:
        if self._q_frames is not None:
            self.stats.dropped["frames"] = self._q_frames.dropped
            self.stats.dropped["scored"] = self._q_scored.dropped  # type: ignore[union-attr]
            self.stats.dropped["decisions"] = self._q_out.dropped  # type: ignore[union-attr]

    def _capture_loop(self) -> None:
        q = self._q_frames
        while not self._stop_evt.is_set():
            t = time.perf_counter_ns()
            try:
                fs = self.capture.read(self.config.read_timeout_s)
            except (EndOfStream, SourceError) as exc:
                q.put(_Stop(exc), force=True)
                return
            except Exception as exc:  # noqa: BLE001
                q.put(_Stop(SourceError(f"capture failed: {type(exc).__name__}: {exc}")), force=True)
                return
            if fs is None:
                continue
            t_ready = time.perf_counter_ns()
            ok = self.clock.observe(fs.timestamp_ns, t_ready)  # every frame set read, also those dropped later
            q.put((fs, t_ready, self._read_timing(_ms(t)), ok))
            self._sync_drops()

    def _infer_loop(self) -> None:
        while True:
            item = self._q_frames.get(0.1)
            if item is None:
                if self._stop_evt.is_set():
                    return
                continue
            if isinstance(item, _Stop):
                self._q_scored.put(item, force=True)
                return
            fs, t_ready, lat, ok = item
            scored = self._score(fs, t_ready, lat)
            scored.clock_ok = ok
            self._q_scored.put(scored)
            self._sync_drops()

    def _decide_loop(self) -> None:
        while True:
            item = self._q_scored.get(0.1)
            if item is None:
                if self._stop_evt.is_set():
                    return
                continue
            if isinstance(item, _Stop):
                if isinstance(item.exc, SourceError):
                    self._capture_error(item.exc)  # in order, after the frame sets already read
                self._q_out.put(item, force=True)
                return
            self._q_out.put(self._decide(item, None))
            self._sync_drops()

    # ------------------------------------------------------------------ helpers
    def _read_timing(self, read_ms: float) -> dict[str, float]:
        """Stage times of one capture read: the capture's own split when it reports one, else all 'capture'."""
        t = _capture_timing(self.capture)
        if not t:
            return {"capture": read_ms, "sync": 0.0, "register": 0.0}
        t.setdefault("capture", max(0.0, read_ms - t.get("sync", 0.0) - t.get("register", 0.0)))
        return t


    def _error(self, stage: str, exc: BaseException) -> None:
        self.stats.errors[stage] = self.stats.errors.get(stage, 0) + 1
        now = time.monotonic()
        if now - self._error_log_at.get(stage, 0.0) > 5.0:  # rate-limited
            self._error_log_at[stage] = now
            log.warning("stage %s failed: %s: %s", stage, type(exc).__name__, exc)


#: ``clock="auto"``: a frame set stamped less than this before ``time.monotonic_ns`` (or after it) is on the host
#: clock (ns)
AUTO_HOST_WINDOW_NS = 10_000_000_000


class FrameClock:
    """The decision time of each frame set and whether its timestamp can be trusted (see
    :attr:`PipelineConfig.clock`); checked on every frame set, never decided once for the stream.

    Args:
        mode: ``host``, ``source`` or ``auto``.
        max_skew_ms: the largest forward step of a source clock beyond the host time elapsed between two reads.
    """

    def __init__(self, mode: str, max_skew_ms: float) -> None:
        self.mode = mode
        self.max_skew_ns = int(max_skew_ms * 1e6)
        #: the clock in force: ``host`` or ``source`` (None before the first frame set in auto mode)
        self.active: str | None = None if mode == "auto" else mode
        #: frame sets whose source time stood still, went back or jumped
        self.breaks = 0
        self._prev: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def observe(self, timestamp_ns: int, read_perf_ns: int) -> bool:
        """Check the time of every frame set read (at ``read_perf_ns``, ``time.perf_counter_ns``), in read order;
        False when it cannot be trusted: a source time that stood still, went back or jumped ahead of the host
        time elapsed since the previous read by more than ``max_skew_ms``. On the host clock the policy's
        two-sided age check (:meth:`now`) does the work."""
        with self._lock:
            if self.mode == "auto" and self.active != "host":
                # within 10 s of the host clock, or ahead of it: the host clock (a future stamp is never taken for
                # a source clock); more than 10 s behind: a recording's or a non-realtime source's own clock
                active = "host" if time.monotonic_ns() - timestamp_ns < AUTO_HOST_WINDOW_NS else "source"
                if active != self.active:
                    log.info("pipeline clock: %s", active)
                self.active = active
            if self.active == "host":
                return True
            trusted = True
            if self._prev is not None:
                d_src = timestamp_ns - self._prev[0]
                d_host = read_perf_ns - self._prev[1]
                if d_src <= 0 or d_src - d_host > self.max_skew_ns:
                    trusted = False
                    self.breaks += 1
                    log.warning("source clock stepped %+.1f ms in %.1f ms of host time: frame set not trusted",
                                d_src / 1e6, d_host / 1e6)
            if self._prev is None or timestamp_ns > self._prev[0]:
                self._prev = (int(timestamp_ns), int(read_perf_ns))
            return trusted

    def now(self, timestamp_ns: int, read_perf_ns: int) -> int:
        """The decision time (ns) of a frame set read at ``read_perf_ns`` on the clock in force: the host
        monotonic clock, or the frame set's source time plus the time spent since it was read."""
        if self.active == "host":
            return time.monotonic_ns()
        return timestamp_ns + (time.perf_counter_ns() - read_perf_ns)


def _clipped(win: tuple[int, int, int, int], intr: Any) -> tuple[int, int, int, int]:
    """A window ``(x0, y0, x1, y1)`` (px, end-exclusive) clipped to an image of ``intr``'s size (as
    ``Registrar.window`` clips it)."""
    return max(0, win[0]), max(0, win[1]), min(intr.width, win[2]), min(intr.height, win[3])


#: how much lower the worker beside locate runs than the pipeline's thread (nice steps)
WORKER_NICE = 5


def _lower_priority() -> None:
    """Run the calling thread at ``nice`` +WORKER_NICE (Linux: per thread), so the worker beside locate takes spare
    cores and never slows the thread it works for; elsewhere, or where it is refused, it keeps its priority."""
    import os
    try:  # PRIO_PROCESS with a thread id (or 0, the calling thread) sets one thread's nice value on Linux
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        pass


def _crop_size(manifest: Any) -> int:
    sizes = {int(spec.shape[-1]) for spec in manifest.inputs.values()} | {
        int(spec.shape[-2]) for spec in manifest.inputs.values()}
    if len(sizes) != 1 or min(sizes) < 8:
        raise ConfigError(f"model inputs must share one square crop size, got {sorted(sizes)}", key="inputs")
    return sizes.pop()


def _capture_timing(capture: Any) -> dict[str, float]:
    """Per-stage timing the capture reports for its last read (``capture``/``sync``/``register`` in ms)."""
    t = getattr(capture, "timing_ms", None)
    if not isinstance(t, Mapping):
        return {}
    return {k: float(v) for k, v in t.items() if k in ("capture", "sync", "register")}


def _ms(t0_ns: int) -> float:
    return (time.perf_counter_ns() - t0_ns) / 1e6


def _with(d: Decision, **changes: Any) -> Decision:
    return replace(d, **changes)


# ---------------------------------------------------------------------------------------------- integrator API
def open_pipeline(source: Any, model: Path | str | Any, *, rig: Any = None,
                  locator: FaceLocator | str | None = "learned",
                  config: PipelineConfig | None = None, backend: str = "auto", fps: float | None = None,
                  threads: int | None = None, **policy: Any) -> LivenessPipeline:
    """Build a pipeline from a source URI (or a capture) and a model artifact (or a backend).

    Args:
        source: URI(s) for ``edgepad.drivers.capture.open_capture`` (built in the registration mode of
            ``config.registration``) or an object with ``read(timeout_s)``.
        model: ``.onnx``/``.engine``/``.pt`` with its sidecar manifest, or a ready backend.
        rig: rig file or Rig (default: the source's own).
        locator: ``"learned"`` (default, MTCNN), ``"haar"``, ``"truth"`` (synthetic sources), ``"fixed:x,y,w,h"``
            or a FaceLocator.
        config: :class:`PipelineConfig`; ``policy`` keywords (``k=3``, ``operating_point="bpcer20"`` …) override
            its policy settings.
        backend: backend kind for ``load_backend``; threads: ONNX Runtime intra-op threads.

    Returns:
        an unopened :class:`LivenessPipeline` (use it as a context manager).
    """
    cfg = config or PipelineConfig()
    if policy:
        known = set(PolicyConfig.__dataclass_fields__)
        bad = [k for k in policy if k not in known]
        if bad:
            raise ConfigError(f"unknown pipeline option `{bad[0]}`", key=bad[0], suggestions=suggest(bad[0], known))
        cfg = replace(cfg, policy=replace(cfg.policy, **policy))
    if hasattr(model, "infer") and hasattr(model, "manifest"):
        be = model
    else:
        opts = {"threads": threads} if threads else {}
        be = load_backend(model, backend, **opts)
    if hasattr(source, "read"):
        cap = source
    else:
        cap = open_capture(source, rig=rig, fps=fps, register=cfg.capture_mode)
    if isinstance(rig, (str, Path)):
        rig = load_rig(rig)
    loc: Any = locator
    if locator == "truth":
        loc = make_locator("truth", _truth_source(cap))
    return LivenessPipeline(cap, be, locator=loc, rig=rig, config=cfg)


def _truth_source(cap: Any) -> Any:
    """The first source under a capture that has ``truth(sequence)``."""
    for src in getattr(cap, "sources", ()) or ():
        if callable(getattr(src, "truth", None)):
            return src
    if callable(getattr(cap, "truth", None)):
        return cap
    raise ConfigError("locator 'truth' needs a synthetic:// source (ground-truth boxes)", key="locator")
