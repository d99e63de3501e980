"""LivenessPipeline on a real tiny ONNX model: verdicts, fail-closed paths, degradation, errors, threads."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgepad.errors import EndOfStream, SourceError
from edgepad.runtime.face import FaceDetection, FixedBoxLocator
from edgepad.drivers.base import DropOldestQueue
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
from edgepad.runtime.policy import PolicyConfig
from edgepad.types import STAGES, FrameSet, Modality, Reason, Verdict

from tests.helpers.scene import make_rig, plane_frameset

BOX = (50, 30, 56, 60)
PERIOD = 33_333_333
RIG = make_rig()


class FakeBackend:
    """The real backend's manifest with a scripted ``infer`` (a fake of our own backend contract)."""

    def __init__(self, manifest, infer):
        self.manifest, self.infer = manifest, infer

    def activate(self):
        pass

    def deactivate(self):
        pass


def frames(n, offset=60.0, start=0, **kw):
    return [plane_frameset(RIG, t_ns=(start + i + 1) * PERIOD, seq=start + i, offset=offset, noise_seed=start + i, **kw)
            for i in range(n)]


def pipe(backend, capture=None, locator=None, **policy):
    cfg = PipelineConfig(policy=PolicyConfig(**policy))
    return LivenessPipeline(capture, backend, locator=locator or FixedBoxLocator(BOX), rig=RIG, config=cfg)


def decide(p, fss, delay_ms=5):
    return [p.process(fs, now_ns=fs.timestamp_ns + delay_ms * 1_000_000) for fs in fss]


def test_bright_faces_are_live_dark_are_spoof(backend):
    p = pipe(backend)
    ds = decide(p, frames(4, offset=60))
    assert [d.verdict for d in ds] == [Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.LIVE, Verdict.LIVE]
    d = ds[-1]
    assert d.score > 0.9 and d.threshold == 0.5 and d.face_box == BOX
    assert set(d.evidence) == set(Modality) and d.evidence[Modality.RGB] > 0.5
    assert tuple(d.latency_ms) == STAGES and all(v >= 0 for v in d.latency_ms.values())
    assert d.latency_ms["total"] >= d.latency_ms["infer"]
    p.policy.reset()
    ds = decide(p, frames(4, offset=-60, start=10))
    assert ds[-1].verdict is Verdict.SPOOF and ds[-1].score < 0.1


def test_no_face_is_unknown_and_resets_votes(backend):
    class Flaky:
        def __init__(self):
            self.n = 0

        def locate(self, fs):
            self.n += 1
            return None if self.n == 3 else FaceDetection(BOX)

    p = pipe(backend, locator=Flaky())
    ds = decide(p, frames(5))
    assert ds[2].verdict is Verdict.UNKNOWN and Reason.NO_FACE in ds[2].reasons and "look_at_the_camera" in ds[2].hints
    assert ds[2].score is None
    # the votes restarted after the lost face: two frames are not enough for k = 3
    assert ds[3].verdict is Verdict.UNKNOWN and ds[4].verdict is Verdict.UNKNOWN


def test_stale_frames_never_live(backend):
    p = pipe(backend)
    ds = decide(p, frames(5), delay_ms=500)
    assert all(d.verdict is Verdict.UNKNOWN and Reason.STALE in d.reasons for d in ds)


def test_missing_ir_degrades_to_the_subset_threshold(backend):
    p = pipe(backend)
    ds = decide(p, frames(3, offset=12, with_ir=False))
    d = ds[-1]
    assert d.modalities == {Modality.RGB, Modality.DEPTH} and d.threshold == 0.65
    assert Reason.DEGRADED in d.reasons and Reason.MISSING_IR in d.reasons
    assert Modality.IR not in d.evidence
    # the same frames with IR pass the full-set threshold: degradation really is stricter here
    full = decide(pipe(backend), frames(3, offset=12))[-1]
    assert full.verdict is Verdict.LIVE
    assert 0.5 <= d.score < 0.65 and d.verdict is Verdict.SPOOF


def test_zero_depth_is_invalid_and_rgb_only_has_no_threshold(backend):
    p = pipe(backend)
    ds = decide(p, frames(3, depth_value=0))
    d = ds[-1]
    assert Reason.INVALID_DEPTH in d.reasons and d.modalities == {Modality.RGB, Modality.IR}
    assert d.threshold == 0.6 and d.verdict is Verdict.LIVE
    ds = decide(pipe(backend), frames(3, depth_value=0, with_ir=False))
    assert all(d.verdict is Verdict.UNKNOWN and Reason.NO_THRESHOLD_FOR_SUBSET in d.reasons for d in ds)


def test_dark_ir_is_dropped_as_unlit(backend):
    fss = []
    for fs in frames(3):
        ir = fs[Modality.IR]
        from edgepad.types import replace_frame as frame_with
        frs = dict(fs.frames)
        frs[Modality.IR] = frame_with(ir, data=np.zeros_like(ir.data))
        fss.append(FrameSet(frs, fs.timestamp_ns))
    d = decide(pipe(backend), fss)[-1]
    assert Reason.NO_IR_ILLUMINATION in d.reasons and Modality.IR not in d.modalities


def test_stage_errors_become_unknown(backend):
    class Boom:
        def locate(self, fs):
            raise RuntimeError("detector crashed")

    d = decide(pipe(backend, locator=Boom()), frames(1))[0]
    assert d.verdict is Verdict.UNKNOWN and d.reasons[0] is Reason.ERROR_LOCATE

    p = pipe(FakeBackend(backend.manifest, lambda feed: {"score": np.array([np.nan], np.float32)}))
    ds = decide(p, frames(4))
    assert all(d.verdict is Verdict.UNKNOWN and Reason.ERROR_INFER in d.reasons for d in ds)
    assert p.stats.errors["infer"] == 4
    # a box far outside the image: crops are black, the face is at the border -> never live
    ds = decide(pipe(backend, locator=FixedBoxLocator((500, 500, 60, 60))), frames(4))
    assert all(d.verdict is not Verdict.LIVE for d in ds)


def test_sensor_integrity_repeated_and_frozen(backend):
    fss = frames(3)
    p = pipe(backend, k=1, n=1)
    d = decide(p, fss)[-1]
    assert d.verdict is Verdict.LIVE
    again = decide(p, [fss[-1]])[0]  # the same frame set twice: repeated timestamp and sequence
    assert again.verdict is Verdict.UNKNOWN and Reason.SENSOR_INTEGRITY in again.reasons
    # frozen pixels with fresh counters and timestamps (an injected still image)
    p = pipe(backend, k=1, n=1)
    still = plane_frameset(RIG, t_ns=PERIOD, seq=0, offset=60)
    ds = []
    for i in range(4):
        fs = FrameSet({m: _restamp(f, (i + 1) * PERIOD, i) for m, f in still.frames.items()}, (i + 1) * PERIOD)
        ds.append(decide(p, [fs])[0])
    assert ds[0].verdict is Verdict.LIVE  # a real sensor never repeats a frame: flagged from the first repeat
    assert all(d.verdict is Verdict.UNKNOWN and Reason.SENSOR_INTEGRITY in d.reasons for d in ds[1:])
    assert p.sensors.stats.frozen["rgb"] >= 1


def _restamp(f, t, seq):
    from edgepad.types import replace_frame as frame_with
    return frame_with(f, timestamp_ns=t, sequence=seq)


def test_lockout_through_the_pipeline(backend):
    p = pipe(backend, k=1, n=1, lockout_after=1)
    d = decide(p, frames(1, offset=-60))[0]
    assert d.verdict is Verdict.SPOOF
    d = decide(p, frames(1, offset=60, start=5))[0]
    assert d.verdict is Verdict.UNKNOWN and Reason.LOCKOUT in d.reasons
    p.reset_lockout()
    assert decide(p, frames(1, offset=60, start=9))[0].verdict is Verdict.LIVE


class ScriptedLocator:
    """Face (True) or no face (False) per call, from a script."""

    def __init__(self, script):
        self.script = list(script)

    def locate(self, fs):
        return FaceDetection(BOX) if self.script.pop(0) else None


def test_lockout_counts_spoof_presentations_not_frames(backend):
    # three back-to-back spoof presentations, separated by gap_frames (3) frames without a face: lockout
    script = [True, True, False, False, False] * 3 + [True]
    p = pipe(backend, locator=ScriptedLocator(script), k=1, n=1, lockout_after=3)
    ds = decide(p, frames(len(script), offset=-60))
    assert [d.verdict for d in ds[:2]] == [Verdict.SPOOF, Verdict.SPOOF]
    assert not any(Reason.LOCKOUT in d.reasons for d in ds[:10])
    assert p.policy.spoof_attempts == 3 and p.policy.locked
    assert Reason.LOCKOUT in ds[-1].reasons and ds[-1].verdict is Verdict.UNKNOWN
    # one spoof presentation with many no-face frames (each gap shorter than gap_frames) is one attempt
    script = [True, False, False] * 8
    p = pipe(backend, locator=ScriptedLocator(script), k=1, n=1, lockout_after=3)
    ds = decide(p, frames(len(script), offset=-60))
    assert sum(d.verdict is Verdict.SPOOF for d in ds) == 8
    assert p.policy.spoof_attempts == 1 and not p.policy.locked
    assert not any(Reason.LOCKOUT in d.reasons for d in ds)


def test_eye_aligned_model_gets_the_detector_landmarks(backend, monkeypatch):
    from dataclasses import replace as dc_replace

    from edgepad import preprocess
    seen = []
    real = preprocess.crop_face

    def spy(*a, **kw):
        seen.append((kw.get("align"), kw.get("landmarks")))
        return real(*a, **kw)

    monkeypatch.setattr(preprocess, "crop_face", spy)
    # the shipped-style manifest (align "none"): crops as before, no alignment asked for
    decide(pipe(backend), frames(1))
    assert seen[-1][0] == "none"
    m = backend.manifest.replace(inputs={k: dc_replace(v, align="eyes") for k, v in backend.manifest.inputs.items()})
    fake = FakeBackend(m, lambda feed: {"score": np.array([0.99], np.float32)})
    x, y, w, h = BOX
    lm = np.array([[x + 15, y + 20], [x + 41, y + 26], [x + 28, y + 35], [x + 18, y + 45], [x + 38, y + 49]], float)

    class WithLandmarks:
        def locate(self, fs):
            return FaceDetection(BOX, landmarks=lm)

    d = decide(pipe(fake, locator=WithLandmarks()), frames(1))[0]
    assert seen[-1][0] == "eyes" and seen[-1][1] is lm and Reason.ERROR_PREPROCESS not in d.reasons
    # a locator without landmarks cannot serve an eye-aligned model: fail closed (error_preprocess), never live
    ds = decide(pipe(fake, k=1, n=1), frames(3))
    assert all(d.verdict is Verdict.UNKNOWN and Reason.ERROR_PREPROCESS in d.reasons for d in ds)


# ------------------------------------------------------------------------------------------- with a capture
class ScriptedCapture:
    """Plays a script of FrameSets, None (timeout) and exceptions."""

    def __init__(self, script, delay_s=0.0):
        self.script = list(script)
        self.rig = RIG
        self.opened = self.closed = False
        self.delay_s = delay_s

    def open(self):
        self.opened = True

    def close(self):
        self.closed = True

    def read(self, timeout_s=1.0):
        if self.delay_s:
            time.sleep(self.delay_s)
        if not self.script:
            raise EndOfStream("test://scripted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def test_run_iterates_until_end_of_stream_with_timeouts(backend):
    script = frames(3) + [None] + frames(2, start=3)
    cap = ScriptedCapture(script)
    seen = []
    with pipe(backend, capture=cap) as p:
        p.on_decision(seen.append)
        out = list(p.decisions())
        assert cap.opened
    assert cap.closed
    assert len(out) == 6 and len(seen) == 6
    assert out[3].verdict is Verdict.UNKNOWN and out[3].reasons == (Reason.NO_FRAMES,)
    assert p.stats.framesets == 5 and p.stats.timeouts == 1
    # a timeout does not break the vote: the stream is still live after it
    assert out[2].verdict is Verdict.LIVE and out[-1].verdict is Verdict.LIVE


def test_unplug_mid_stream_raises_after_unknown(backend):
    cap = ScriptedCapture(frames(4) + [SourceError("unplugged", "test://cam")] + frames(2, start=4))
    seen = []
    p = pipe(backend, capture=cap)
    p.on_decision(seen.append)
    with pytest.raises(SourceError):
        with p:
            p.run()
    assert seen[3].verdict is Verdict.LIVE
    assert seen[-1].verdict is Verdict.UNKNOWN and seen[-1].reasons == (Reason.ERROR_CAPTURE,)
    assert cap.closed


def test_step_returns_none_on_timeout_and_raises_end(backend):
    cap = ScriptedCapture([None] + frames(1))
    with pipe(backend, capture=cap) as p:
        assert p.step(0.01) is None
        assert p.step(0.01).verdict is Verdict.UNKNOWN
        with pytest.raises(EndOfStream):
            p.step(0.01)


def test_callback_errors_do_not_stop_the_runtime(backend):
    cap = ScriptedCapture(frames(3))
    p = pipe(backend, capture=cap)

    def bad(d):
        raise ValueError("integrator bug")

    p.on_decision(bad)
    with p:
        assert p.run().framesets == 3


def test_threaded_pipeline_drops_old_frames_and_ends_cleanly(backend):
    def slow_infer(feed):
        time.sleep(0.03)
        return backend.infer(feed)

    cap = ScriptedCapture(frames(30), delay_s=0.002)
    cfg = PipelineConfig(threaded=True, queue_size=2, clock="source", policy=PolicyConfig(max_age_ms=10_000))
    p = LivenessPipeline(cap, FakeBackend(backend.manifest, slow_infer), locator=FixedBoxLocator(BOX), rig=RIG, config=cfg)
    names = []
    p.on_decision(lambda d: names.append(threading.current_thread().name))
    with p:
        out = list(p.decisions(timeout_s=5.0))
    assert p.stats.dropped["frames"] > 0
    assert 0 < len(out) < 30 and len(out) + p.stats.dropped["frames"] + p.stats.dropped["scored"] == 30
    assert out[-1].verdict is Verdict.LIVE
    assert set(names) == {"edgepad-decide"}
    assert all(a.timestamp_ns < b.timestamp_ns for a, b in zip(out, out[1:]))


def test_threaded_pipeline_propagates_source_error(backend):
    cap = ScriptedCapture(frames(2) + [SourceError("gone", "test://cam")])
    cfg = PipelineConfig(threaded=True, clock="source")
    p = LivenessPipeline(cap, backend, locator=FixedBoxLocator(BOX), rig=RIG, config=cfg)
    with pytest.raises(SourceError):
        with p:
            for _ in p.decisions(timeout_s=5.0):
                pass
    assert p.last.reasons == (Reason.ERROR_CAPTURE,)


def test_drop_oldest_queue():
    q = DropOldestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and q.get(0) == 3 and q.get(0) == 4 and q.get(0.01) is None
