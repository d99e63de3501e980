"""Presentation events through the service: producer -> hub -> ``/v1/events`` (SSE), ``/v1/status`` and the audit
log; one ``decided`` per presentation, in order, with the same auth and stream slots as the decision stream."""
from __future__ import annotations

import http.client
import json
import threading

import numpy as np
import pytest

from edgepad.errors import EdgePadError, SourceError
from edgepad.runtime.face import FaceDetection
from edgepad.runtime.presentation import DECIDED, ENDED, STARTED, PresentationEvent, PresentationTracker
from edgepad.runtime.service import (DecisionHub, LivenessService, PipelineProducer, ProducerThread,
                                     ServiceConfig)
from edgepad.types import Decision, Modality, Reason, Verdict

TOKEN = "s3cret-token-0123456789abcdef"
FACE_A = np.array([[65, 50], [90, 50], [78, 62], [68, 75], [88, 75]], float)
# (box, verdict) per frame: person A (unknown, live, live), then B steps in at once elsewhere (spoof, spoof),
# then C (unknown, live, spoof): back-to-back presentations, no frame without a face
SCRIPT = [((50, 30, 56, 60), Verdict.UNKNOWN), ((51, 30, 56, 60), Verdict.LIVE), ((51, 31, 56, 60), Verdict.LIVE),
          ((200, 30, 56, 60), Verdict.SPOOF), ((201, 30, 56, 60), Verdict.SPOOF),
          ((400, 30, 56, 60), Verdict.UNKNOWN), ((400, 31, 56, 60), Verdict.LIVE), ((401, 31, 56, 60), Verdict.SPOOF)]


class _EventPipeline:
    """Stands in for LivenessPipeline: the real presentation tracker over scripted faces, events via on_event."""

    def __init__(self, script=SCRIPT, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.script, self.fail, self.gate = script, fail, gate
        self.presentations = PresentationTracker()
        self._cbs: list = []
        self.last_frameset = self.rig = None
        self.closed = False

    def on_event(self, cb) -> None:
        self._cbs.append(cb)

    def _emit(self, events) -> None:
        for ev in events:
            for cb in self._cbs:
                cb(ev)

    def end_presentation(self, cause: str = "stream_end"):
        ev = self.presentations.finish(cause)
        self._emit(ev)
        return ev

    def open(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def decisions(self):
        if self.gate is not None:
            self.gate.wait(5)
        for i, (box, verdict) in enumerate(self.script):
            ts = 1_000_000 * (i + 1)
            _, events = self.presentations.observe(FaceDetection(box, 1.0, FACE_A), ts)
            d = Decision(verdict, 0.9 if verdict is Verdict.LIVE else 0.1, 0.5, evidence={Modality.RGB: 0.7},
                         reasons=(Reason.OK,), timestamp_ns=ts, face_box=box)
            events += self.presentations.decided(d)
            self._emit(events)
            yield d
        if self.fail:
            raise SourceError("unplugged", uri="fake://cam")
        self.end_presentation()


def _sse(text: str) -> list[tuple[str, dict, str]]:
    """(event name, payload, id) of every SSE block with data."""
    out = []
    for blk in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in blk.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields.get("event", "message"), json.loads(fields["data"]), fields.get("id", "")))
    return out


def _get(svc: LivenessService, path: str, token: str | None = TOKEN, headers: dict | None = None):
    host, port = svc.address
    c = http.client.HTTPConnection(host, port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request("GET", path, headers=h)
    return c, c.getresponse()


@pytest.fixture
def served():
    hub = DecisionHub()
    svc = LivenessService(hub, ServiceConfig(port=0, token=TOKEN, sse_keepalive_s=0.3, max_sse_clients=1))
    with svc:
        yield svc, hub


def test_events_stream_one_decided_per_presentation_in_order(served):
    svc, hub = served
    gate = threading.Event()
    audit_events: list[tuple[str, dict]] = []

    class _Audit:
        def submit(self, *a) -> bool:
            return True

        def submit_event(self, kind, detail=None, timeout_s=2.0) -> bool:
            audit_events.append((kind, dict(detail or {})))
            return True
    producer = PipelineProducer(lambda: _EventPipeline(gate=gate), preview_fps=0, restart_s=None)
    thread = ProducerThread(hub, producer, audit=_Audit(), model_sha256="ab" * 32).start()
    c, r = _get(svc, "/v1/events")                     # the stream's start is fixed once its headers arrive
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    gate.set()
    text = r.read().decode()                           # ends with the producer ("end" event)
    c.close()
    thread.join(5)
    got = _sse(text)
    assert got[-1][0] == "end" and got[-1][1] == {"error": None}
    events = got[:-1]
    assert [(name, p["presentation"]) for name, p, _ in events] == [
        (STARTED, 1), (DECIDED, 1), (ENDED, 1), (STARTED, 2), (DECIDED, 2), (ENDED, 2),
        (STARTED, 3), (DECIDED, 3), (ENDED, 3)]
    assert all(name == p["event"] for name, p, _ in events)
    assert [int(i) for _, _, i in events] == [p["seq"] for _, p, _ in events] == list(range(1, 10))
    decided = [p for name, p, _ in events if name == DECIDED]
    # the first LIVE/SPOOF of each presentation decides, with its evidence; later votes do not decide again
    assert [p["verdict"] for p in decided] == ["live", "spoof", "live"]
    assert [p["timestamp_ns"] for p in decided] == [2_000_000, 4_000_000, 7_000_000]
    assert decided[0]["decision"]["evidence"] == {"rgb": 0.7} and decided[0]["decision"]["score"] == 0.9
    ended = [p for name, p, _ in events if name == ENDED]
    assert [p["cause"] for p in ended][-1] == "stream_end" and ended[2]["spoof_decisions"] == 1
    assert all(p["decision"] is None for name, p, _ in events if name != DECIDED)
    # the audit log gets one operational event per decided presentation
    assert [(k, d["presentation"], d["verdict"]) for k, d in audit_events] == [
        ("presentation_decided", 1, "live"), ("presentation_decided", 2, "spoof"),
        ("presentation_decided", 3, "live")]
    # /v1/status shows the last few
    c, r = _get(svc, "/v1/status")
    status = json.loads(r.read())
    c.close()
    assert status["events"]["count"] == 9
    assert [(e["event"], e["presentation"]) for e in status["events"]["recent"][-3:]] == [
        (STARTED, 3), (DECIDED, 3), (ENDED, 3)]


def test_events_stream_resumes_after_last_event_id_and_shares_auth_and_slots(served):
    svc, hub = served
    for k, n in ((STARTED, 1), (DECIDED, 1), (ENDED, 1), (STARTED, 2)):
        hub.publish_event(PresentationEvent(k, n, n, Verdict.LIVE if k != STARTED else Verdict.UNKNOWN))
    # unauthenticated / wrong token: refused before any stream slot is taken
    for token, error in ((None, "unauthorized"), (TOKEN[:-1] + "X", "invalid_token")):
        c, r = _get(svc, "/v1/events", token=token)
        assert r.status == 401 and json.loads(r.read())["error"] == error
        c.close()
    assert svc.status()["sse_clients"] == 0
    c, r = _get(svc, "/v1/events", headers={"Last-Event-ID": "x1"})
    assert r.status == 400 and json.loads(r.read())["error"] == "bad_last_event_id"
    c.close()
    # a reconnecting client gets what it missed, nothing before
    c, r = _get(svc, "/v1/events", headers={"Last-Event-ID": "2"})
    assert r.status == 200
    # the one stream slot is in use: a second stream of either kind is refused
    c2, r2 = _get(svc, "/v1/decisions/stream")
    assert r2.status == 503 and json.loads(r2.read())["error"] == "too_many_streams"
    c2.close()
    hub.close("EndOfStream: replay finished")                # the producer ended: the stream ends cleanly
    got = _sse(r.read().decode())
    c.close()
    assert [(name, p["presentation"], i) for name, p, i in got[:-1]] == [(ENDED, 1, "3"), (STARTED, 2, "4")]
    assert got[-1][0] == "end" and "replay finished" in got[-1][1]["error"]
    # ?limit=N ends the stream after N events, as on the decision stream
    c, r = _get(svc, "/v1/events?limit=1", headers={"Last-Event-ID": "0"})
    assert [(name, i) for name, _, i in _sse(r.read().decode())] == [(STARTED, "1")]
    c.close()


def test_producer_numbers_presentations_across_rebuilds_and_holds_early_events():
    built: list[_EventPipeline] = []

    def factory():
        p = _EventPipeline(SCRIPT[:2], fail=not built)       # the first pipeline loses its camera mid-presentation
        built.append(p)
        return p
    producer = PipelineProducer(factory, preview_fps=0, restart_s=0.01)
    producer.prime(5.0)                                       # its first face starts a presentation: held
    hub = DecisionHub(max_events=4)
    thread = ProducerThread(hub, producer).start()
    thread.join(5)
    assert hub.closed and hub.error is None and len(built) == 2
    got = [(p.event.kind, p.event.presentation, p.event.cause) for p in hub.events_after(0)]
    # only the last 4 are kept; the first pipeline's presentation ended on the source error
    assert hub.event_count == 6 and [p.seq for p in hub.events_after(0)] == [3, 4, 5, 6]
    assert got == [(ENDED, 1, "source_error"), (STARTED, 2, "face"), (DECIDED, 2, ""), (ENDED, 2, "stream_end")]
    with pytest.raises(EdgePadError, match="PresentationEvent"):
        hub.publish_event({"event": "started"})              # type: ignore[arg-type]
