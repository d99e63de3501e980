"""Decision hub: the thread-safe "latest decision" store between a producer and the HTTP handlers.

* :class:`DecisionHub`: a producer publishes decisions (and optionally the frames they were made on); handlers
  read the latest one or wait for the next one. It also keeps the last presentation events (started / decided /
  ended), which readers get in order, none skipped while they are buffered.
* :class:`ProducerThread`: drives any iterable of decisions into the hub and, optionally, the audit writer; it
  subscribes to a producer's presentation events (``subscribe``) and publishes them.
* :class:`PipelineProducer`: adapts a :class:`~edgepad.runtime.pipeline.LivenessPipeline` into hub updates
  (preview frames, face boxes per camera, audit crops), forwards its presentation events and rebuilds it after a
  source failure.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from edgepad.errors import EdgePadError, EndOfStream, SourceError
from edgepad.runtime.presentation import DECIDED, PresentationEvent
from edgepad.runtime.service.preview import StreamMeter, face_boxes, face_crops_for_audit, installer_view
from edgepad.types import Decision, Modality, Reason, Verdict

log = logging.getLogger(__name__)

#: reasons of an UNKNOWN decision that say the evidence itself was unusable (old or missing frames, a failed
#: stage, a sensor fault), unlike scene reasons (no face, pose, vote pending) that a working terminal gives
UNUSABLE_REASONS = frozenset({Reason.STALE, Reason.NO_FRAMES, Reason.SENSOR_INTEGRITY, Reason.ERROR_CAPTURE,
                              Reason.ERROR_SYNC, Reason.ERROR_REGISTER, Reason.ERROR_LOCATE,
                              Reason.ERROR_PREPROCESS, Reason.ERROR_INFER, Reason.ERROR_POLICY})


def unusable_reason(d: Decision) -> str | None:
    """The first reason that makes ``d`` unusable evidence (see :data:`UNUSABLE_REASONS`), or None."""
    if d.verdict is not Verdict.UNKNOWN:
        return None
    for r in d.reasons:
        if r in UNUSABLE_REASONS:
            return Reason(r).value
    return None


@dataclass(frozen=True)
class Update:
    """What a producer may yield instead of a bare :class:`Decision`.

    Attributes:
        decision: the decision.
        frames: latest images by modality (rgb ``uint8 H×W×3`` RGB order, depth ``uint16 H×W``, ir
            ``uint8|uint16 H×W``); empty = keep showing the previous frames.
        boxes: face box ``(x, y, w, h)`` per modality in that modality's pixels; when absent, the decision's
            ``face_box`` (rgb pixels) is drawn on rgb, and on depth when the depth frame has the rgb frame's size
            (registered to rgb).
        images: face crops for the audit log (stored only when images are enabled).
        view: the live view's measurements for these frames (``preview.installer_view``).
    """

    decision: Decision
    frames: Mapping[Modality, np.ndarray] = field(default_factory=dict)
    boxes: Mapping[Modality, tuple[int, int, int, int]] = field(default_factory=dict)
    images: Mapping[Modality, Any] | None = None
    view: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """One published decision, as the hub keeps it."""

    seq: int
    decision: Decision
    published_ns: int                        # host monotonic
    frames_seq: int                          # seq of the update that carried ``frames``
    frames: Mapping[Modality, np.ndarray]
    boxes: Mapping[Modality, tuple[int, int, int, int]]
    frames_verdict: Verdict                  # verdict of the update that carried the frames (box colour)
    view: Mapping[str, Any] = field(default_factory=dict)   # live-view measurements of those frames


@dataclass(frozen=True)
class PublishedEvent:
    """One published presentation event: its hub sequence number (1, 2, …; the SSE ``id``) and host time."""

    seq: int
    event: PresentationEvent
    published_ns: int                        # host monotonic


class DecisionHub:
    """Latest-decision store with blocking waits; safe for one producer and many readers.

    Readers that fall behind skip to the newest decision (sequence numbers show the gap); nothing queues up.
    Presentation events are different: the last ``max_events`` are kept and :meth:`events_after` returns every
    one after a reader's position, so none is skipped unless it fell out of the buffer.

    Args:
        clock_ns: monotonic clock in ns (injectable for tests).
        fps_window_s: window for :meth:`fps`.
        max_events: presentation events kept for readers (and ``/v1/status``).
    """

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns, fps_window_s: float = 2.0,
                 max_events: int = 256) -> None:
        self._clock_ns = clock_ns
        self._cond = threading.Condition()
        self._latest: Published | None = None
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=4096)   # (published ns, unusable reason)
        self._window_ns = int(fps_window_s * 1e9)
        self._closed = False
        self.error: str | None = None
        self.count = 0
        self._events: deque[PublishedEvent] = deque(maxlen=max(1, int(max_events)))
        self.event_count = 0

    def publish(self, item: Decision | Update) -> int:
        """Publish a decision (or an :class:`Update`); returns its sequence number (1, 2, …)."""
        upd = item if isinstance(item, Update) else Update(item)
        if not isinstance(upd.decision, Decision):
            raise EdgePadError(f"a producer yielded {type(upd.decision).__name__}, expected Decision or Update")
        now = self._clock_ns()
        with self._cond:
            seq = self.count + 1
            prev = self._latest
            if upd.frames or prev is None:
                frames = {Modality.parse(k): v for k, v in upd.frames.items()}
                boxes = {Modality.parse(k): tuple(int(x) for x in v) for k, v in upd.boxes.items()}
                fseq, fverdict, view = seq, upd.decision.verdict, upd.view
                if upd.decision.face_box and Modality.RGB not in boxes:
                    boxes[Modality.RGB] = tuple(int(x) for x in upd.decision.face_box)
                    rgb, depth = frames.get(Modality.RGB), frames.get(Modality.DEPTH)
                    if rgb is not None and depth is not None and depth.shape[:2] == rgb.shape[:2] \
                            and Modality.DEPTH not in boxes:
                        boxes[Modality.DEPTH] = boxes[Modality.RGB]
            else:
                frames, boxes, fseq, fverdict = prev.frames, prev.boxes, prev.frames_seq, prev.frames_verdict
                view = prev.view
            self._latest = Published(seq, upd.decision, now, fseq, frames, boxes, fverdict, view)
            self.count = seq
            self._recent.append((now, unusable_reason(upd.decision)))
            self._cond.notify_all()
        return seq

    def latest(self) -> Published | None:
        with self._cond:
            return self._latest

    def publish_event(self, event: PresentationEvent) -> int:
        """Publish a presentation event; returns its sequence number (1, 2, …)."""
        if not isinstance(event, PresentationEvent):
            raise EdgePadError(f"expected a PresentationEvent, got {type(event).__name__}")
        now = self._clock_ns()
        with self._cond:
            self.event_count += 1
            self._events.append(PublishedEvent(self.event_count, event, now))
            self._cond.notify_all()
            return self.event_count

    def events_after(self, after_seq: int, timeout_s: float = 0.0) -> list[PublishedEvent]:
        """Every buffered event newer than ``after_seq``, oldest first; blocks up to ``timeout_s`` for one (empty
        on timeout or close)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed and self.event_count <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            return [e for e in self._events if e.seq > after_seq]

    def recent_events(self, n: int) -> list[PublishedEvent]:
        """The last ``n`` events, oldest first."""
        with self._cond:
            return list(self._events)[-n:] if n > 0 else []

    def wait(self, after_seq: int, timeout_s: float) -> Published | None:
        """Block until a decision newer than ``after_seq`` exists (returned) or timeout / close (None)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed and (self._latest is None or self._latest.seq <= after_seq):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._latest is not None and self._latest.seq > after_seq:
                return self._latest
            return None

    def close(self, error: str | None = None) -> None:
        """Mark the producer finished (``error`` when it failed); wakes every waiter."""
        with self._cond:
            self._closed = True
            self.error = error
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def age_ms(self) -> float | None:
        """Milliseconds since the newest decision was published; None before the first one."""
        latest = self.latest()
        return None if latest is None else (self._clock_ns() - latest.published_ns) / 1e6

    def recent(self, window_s: float) -> dict:
        """Decisions of the last ``window_s`` seconds: ``{"decisions": n, "unusable": k, "by_reason": {r: c}}``."""
        cutoff = self._clock_ns() - int(window_s * 1e9)
        with self._cond:
            items = [r for t, r in self._recent if t >= cutoff]
        by: dict[str, int] = {}
        for r in items:
            if r is not None:
                by[r] = by.get(r, 0) + 1
        return {"decisions": len(items), "unusable": sum(by.values()), "by_reason": by}

    def fps(self) -> float:
        """Decisions per second over the last ``fps_window_s`` (0 when idle)."""
        now = self._clock_ns()
        with self._cond:
            ts = [t for t, _ in self._recent if now - t <= self._window_ns]
        if len(ts) < 2 or ts[-1] == ts[0]:
            return 0.0
        return (len(ts) - 1) * 1e9 / (ts[-1] - ts[0])


class ProducerThread:
    """Runs a decision producer (any iterable of :class:`Decision` / :class:`Update`) into a hub.

    Args:
        hub: where decisions go.
        producer: e.g. a :class:`~edgepad.runtime.pipeline.LivenessPipeline` adapter, or a test generator.
        audit: an :class:`~edgepad.runtime.audit.AuditWriter` (optional); every decision is submitted to it,
            and every ``decided`` presentation event as an operational event ``presentation_decided``.
        model_sha256: recorded with audit rows.
        on_exit: called (in the thread) with the error text or None when the producer ends.
    """

    def __init__(self, hub: DecisionHub, producer: Iterable[Decision | Update], *, audit: Any = None,
                 model_sha256: str | None = None, on_exit: Callable[[str | None], None] | None = None) -> None:
        self.hub = hub
        self._producer = producer
        self._audit = audit
        self._sha = model_sha256
        self._on_exit = on_exit
        self.exception: BaseException | None = None     # what ended the producer, when it failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgepad-producer", daemon=True)
        subscribe = getattr(producer, "subscribe", None)
        if callable(subscribe):
            subscribe(self._on_event)

    def _on_event(self, event: PresentationEvent) -> None:
        """Publish a presentation event (called from the producer's thread or the pipeline's decision thread)."""
        if self._audit is not None and event.kind == DECIDED:
            d = event.decision
            self._audit.submit_event("presentation_decided", {
                "presentation": event.presentation, "verdict": event.verdict.value, "timestamp_ns": event.timestamp_ns,
                "score": None if d is None else d.score, "threshold": None if d is None else d.threshold,
                "model_sha256": self._sha})
        self.hub.publish_event(event)

    def start(self) -> "ProducerThread":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the producer to stop (checked between decisions) and wait for it."""
        self._stop.set()
        close = getattr(self._producer, "close", None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if callable(close) and not self._thread.is_alive():
            try:
                close()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.debug("producer close failed", exc_info=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        error: str | None = None
        try:
            it: Iterator = iter(self._producer)
            for item in it:
                if self._audit is not None:
                    # queued for the audit log before anyone sees it; blocks while the log's queue is full
                    # (back-pressure: docs/SERVICE.md, "Audit back-pressure")
                    upd = item if isinstance(item, Update) else Update(item)
                    if not self._audit.submit(upd.decision, upd.images, self._sha):
                        break                                  # the audit writer is closing
                self.hub.publish(item)
                if self._stop.is_set():
                    break
        except EdgePadError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.exception = exc
            log.error("decision producer stopped: %s", error)
        except Exception as exc:  # a bug in the producer must not leave the service healthy
            error = f"{type(exc).__name__}: {exc}"
            self.exception = exc
            log.exception("decision producer crashed")
        finally:
            self.hub.close(error)
            if self._on_exit is not None:
                self._on_exit(error)


class PipelineProducer:
    """Adapts :class:`~edgepad.runtime.pipeline.LivenessPipeline` into :class:`Update` items for the hub.

    Frames for the previews are attached at most ``preview_fps`` times per second (they are references to the
    read-only frame arrays, not copies). On a ``SourceError`` (camera unplugged) the pipeline is rebuilt with
    ``factory`` after ``restart_s`` seconds (None = stop); meanwhile no decisions arrive, so ``/v1/health`` turns
    unhealthy (fail closed). ``EndOfStream`` (a finished recording) ends the producer.

    Presentation events of every pipeline go to the callbacks given to :meth:`subscribe` (those emitted before
    the first subscriber, e.g. while :meth:`prime` waits, are held for it). Presentation numbers continue across
    rebuilds, and a source failure ends the open presentation (cause ``source_error``).

    Args:
        factory: builds an unopened pipeline (called again after each source failure).
        preview_fps: preview frame rate limit (0 = no previews).
        audit_images: attach face crops (rgb, registered depth, ir) for an audit log that stores images.
        restart_s: delay before rebuilding the pipeline after a source failure; None = give up.
    """

    def __init__(self, factory: Callable[[], Any], *, preview_fps: float = 10.0, audit_images: bool = False,
                 restart_s: float | None = 2.0) -> None:
        self._factory = factory
        self._preview_period_ns = int(1e9 / preview_fps) if preview_fps > 0 else None
        self._audit_images = audit_images
        self._restart_s = restart_s
        self._stop = threading.Event()
        self._primed: tuple[Any, Iterator[Any], list] | None = None
        self.pipeline: Any = None
        self.restarts = 0
        self._subscribers: list[Callable[[PresentationEvent], None]] = []
        self._held: deque[PresentationEvent] = deque(maxlen=64)
        self._events_lock = threading.Lock()
        self._numbering = 0            # presentations of the pipelines before this one

    def subscribe(self, callback: Callable[[PresentationEvent], None]) -> None:
        """Call ``callback(event)`` for every presentation event from now on (held ones first)."""
        with self._events_lock:
            self._subscribers.append(callback)
            held, self._held = list(self._held), deque(maxlen=64)
        for ev in held:
            callback(ev)

    def _forward(self, event: PresentationEvent) -> None:
        if self._numbering:
            event = dataclasses.replace(event, presentation=event.presentation + self._numbering)
        with self._events_lock:
            subs = list(self._subscribers)
            if not subs:
                self._held.append(event)
        for cb in subs:
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a subscriber must not stop the runtime
                log.exception("presentation event subscriber failed")

    def _build(self) -> Any:
        pipe = self._factory()
        on_event = getattr(pipe, "on_event", None)
        if callable(on_event):
            on_event(self._forward)
        return pipe

    def _retire(self, pipe: Any, cause: str | None) -> None:
        """End the pipeline's open presentation (``cause``; None = it ended itself) and close it."""
        try:
            end = getattr(pipe, "end_presentation", None)
            if cause is not None and callable(end):
                end(cause)
            tracker = getattr(pipe, "presentations", None)
            self._numbering += int(getattr(tracker, "count", 0) or 0)
        finally:
            pipe.close()

    def prime(self, timeout_s: float, what: str = "the source") -> None:
        """Start-up validation: build and open the first pipeline (the backend loads, checks its inputs and
        warms up) and wait for its first frame-set decision; iteration then continues from it.

        Raises:
            SourceError: the source yields no frame set within ``timeout_s`` (only ``no_frames`` decisions), or
                ends / fails before its first one.
            EdgePadError: building or opening the pipeline failed (model, rig, source URI).
        """
        pipe = self._build()
        try:
            pipe.open()
            it = iter(pipe.decisions())
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    d = next(it)
                except StopIteration:
                    raise SourceError(f"{what} ended before its first frame set") from None
                except EndOfStream:
                    raise SourceError(f"{what} ended before its first frame set") from None
                if Reason.NO_FRAMES not in d.reasons and Reason.ERROR_CAPTURE not in d.reasons:
                    break                                  # a frame set arrived (a failed read raises next)
                if time.monotonic() >= deadline:
                    raise SourceError(f"{what} yielded no frame set within {timeout_s:g} s of opening; check the "
                                      "camera connection or the recording")
        except BaseException:
            pipe.close()
            raise
        self._primed = (pipe, it, [d])

    def close(self) -> None:
        self._stop.set()

    def reset_lockout(self, body: Mapping[str, Any]) -> dict:
        """``POST /v1/lockout/reset`` handler."""
        pipe = self.pipeline
        if pipe is None:
            raise EdgePadError("the runtime is not running; nothing to reset")
        was = bool(getattr(pipe.policy, "locked", False))
        pipe.reset_lockout()
        return {"was_locked": was}

    def status(self) -> dict:
        """Live fields for ``/v1/status``: lockout state, pipeline counters, restarts."""
        pipe = self.pipeline
        if pipe is None:
            return {"runtime": {"running": False, "restarts": self.restarts}}
        pol = pipe.policy
        return {"runtime": {"running": True, "restarts": self.restarts,
                            "stats": pipe.stats.to_dict() if hasattr(pipe.stats, "to_dict") else None},
                "lockout": {"locked": bool(getattr(pol, "locked", False)),
                            "spoof_attempts": int(getattr(pol, "spoof_attempts", 0))}}

    def __iter__(self) -> Iterator[Update]:
        last_preview = 0
        while not self._stop.is_set():
            if self._primed is not None:
                pipe, it, first = self._primed
                self._primed = None
            else:
                pipe, it, first = self._build(), None, []
            meter = StreamMeter()
            self.pipeline = pipe
            retired = False
            try:
                if it is None:
                    pipe.open()
                    it = iter(pipe.decisions())
                for d in itertools.chain(first, it):
                    fs = getattr(pipe, "last_frameset", None)
                    rig = getattr(pipe, "rig", None)  # the pipeline may learn its rig when the source opens
                    frames: dict = {}
                    boxes: dict = {}
                    view: dict = {}
                    now = time.monotonic_ns()
                    if fs is not None:
                        meter.update(fs)
                    if fs is not None and self._preview_period_ns is not None and \
                            now - last_preview >= self._preview_period_ns:
                        last_preview = now
                        frames = {m: f.data for m, f in fs.frames.items()}
                        boxes, view = installer_view(fs, d.face_box, rig, meter)
                    images = None
                    if self._audit_images and fs is not None and d.face_box:   # boxes of this tick's preview, if any
                        images = face_crops_for_audit(fs, boxes if frames else face_boxes(fs, d.face_box, rig))
                    yield Update(d, frames, boxes, images, view)
                    if self._stop.is_set():
                        return
                return                                    # the pipeline ended (EndOfStream inside decisions())
            except EndOfStream:
                return
            except SourceError as exc:
                retired = True
                self._retire(pipe, "source_error")             # its presentation ends now, not after the wait
                if self._restart_s is None:
                    raise
                self.restarts += 1
                log.error("source failed (%s); rebuilding the pipeline in %.1f s", exc, self._restart_s)
                if self._stop.wait(self._restart_s):
                    return
            finally:
                if not retired:
                    self._retire(pipe, None)
