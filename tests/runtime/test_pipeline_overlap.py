"""The checks beside locate (``PipelineConfig.overlap``): the same decisions as in line, the guessed registration
window identical to the window's own registration, failures on the worker reported as before."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
from edgepad.types import FrameSet, Modality, Reason, replace_frame

MODEL = Path(__file__).resolve().parents[2] / "edgepad" / "assets" / "default.onnx"
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="edgepad/assets/default.onnx not built")


def _pipeline(overlap: bool, **kw):
    return open_pipeline("synthetic://default", str(MODEL), threads=1,
                         config=PipelineConfig(overlap=overlap, **kw))


@pytest.fixture(scope="module")
def framesets():
    """30 frame sets of the synthetic camera, then: a frozen rgb frame with fresh counters (and no depth), a set without
    depth, the face moved by 80 px in rgb (the guessed window misses), a set without rgb, and 4 more sets."""
    with _pipeline(False) as p:
        sets = [p.capture.read(2.0) for _ in range(36)]
    period = sets[1].timestamp_ns - sets[0].timestamp_ns
    out = sets[:30]

    def restamp(fs, i, frames=None):
        t = sets[29].timestamp_ns + (i + 1) * period
        frames = frames if frames is not None else fs.frames
        return FrameSet({m: replace_frame(f, timestamp_ns=t, sequence=sets[29].frames[m].sequence + i + 1)
                         for m, f in frames.items()}, t)

    frozen = dict(sets[30].frames)  # and its depth all holes: a quality reason after the sensor's
    frozen[Modality.RGB] = sets[20].frames[Modality.RGB]
    frozen[Modality.DEPTH] = replace_frame(frozen[Modality.DEPTH], data=np.zeros_like(frozen[Modality.DEPTH].data))
    out.append(restamp(sets[30], 0, frozen))
    out.append(restamp(sets[31], 1, {m: f for m, f in sets[31].frames.items() if m is not Modality.DEPTH}))
    moved = dict(sets[32].frames)
    moved[Modality.RGB] = replace_frame(moved[Modality.RGB], data=np.roll(moved[Modality.RGB].data, 80, axis=1))
    out.append(restamp(sets[32], 2, moved))
    out.append(restamp(sets[33], 3, {m: f for m, f in sets[33].frames.items() if m is not Modality.RGB}))
    out += [restamp(fs, 4 + i) for i, fs in enumerate(sets[34:36])]
    return out


def _run(overlap: bool, sets, **kw):
    with _pipeline(overlap, **kw) as p:
        # the decision time fixed per frame: no verdict may hang on how long a frame took here (stale checks)
        ds = [p.process(fs, now_ns=fs.timestamp_ns + 5_000_000) for fs in sets]
        return ds, dict(p.window_guess)


def _same(a, b):
    assert a.verdict is b.verdict
    assert a.score == b.score and a.evidence == b.evidence
    assert a.reasons == b.reasons and a.hints == b.hints
    assert a.face_box == b.face_box


def test_overlap_decides_exactly_as_in_line(framesets):
    inline, none = _run(False, framesets)
    beside, guess = _run(True, framesets)
    assert none == {"hit": 0, "miss": 0}
    for a, b in zip(inline, beside):
        _same(a, b)
    assert guess["hit"] >= 25 and guess["miss"] >= 1  # the moved face fell outside the guessed window
    assert beside[30].reasons[0] is Reason.SENSOR_INTEGRITY and len(beside[30].reasons) >= 2, beside[30].reasons
    assert Reason.MISSING_RGB in beside[33].reasons
    assert sum(d.score is not None for d in beside) >= 25


def test_guessed_window_equals_the_windows_own_registration(framesets):
    fs = framesets[10]
    with _pipeline(True) as p:
        det = p.locator.locate(fs)
        direct, valid = p._register(fs, det.box)
        win = p._last_window
        depth = direct.frames[Modality.DEPTH].data
        assert depth.any() and not depth[:win[1]].any() and not depth[:, win[2]:].any()
        for shift, hit in ((3, True), (-6, True), (60, False)):
            last = (win[0] + shift, win[1] - shift, win[2] + shift, win[3] - shift)
            before = dict(p.window_guess)
            scan = p._scan(fs, last)
            assert scan is not None and scan.guess is not None
            got, got_valid = p._register(fs, det.box, scan)
            assert np.array_equal(got.frames[Modality.DEPTH].data, depth) and got_valid == valid
            assert p.window_guess["hit"] - before["hit"] == int(hit)
            assert p.window_guess["miss"] - before["miss"] == int(not hit)


def test_registrar_bucket_passed_in_equals_the_scan(framesets):
    fs = framesets[5]
    with _pipeline(False) as p:
        reg, raw = p.registrar, fs.frames[Modality.DEPTH]
        near = raw.data.copy()
        near[5, 5] = 50  # 5 cm: nearer than every bucket, no culling (bucket None)
        for depth in (raw, replace_frame(raw, data=near)):
            for win in ((200, 100, 420, 330), (0, 0, 90, 60), (600, 400, 640, 480)):
                a = reg.window(depth, win).data
                b = reg.window(depth, win, reg.bucket(depth)).data
                assert np.array_equal(a, b)
        assert reg.bucket(replace_frame(raw, data=near)) is None and reg.bucket(raw) is not None


def test_sensor_failure_on_the_worker_is_error_sync_first(framesets, monkeypatch):
    for overlap in (False, True):
        with _pipeline(overlap) as p:
            p.process(framesets[0])

            def broken(fs):
                raise RuntimeError("sensor check failed")
            monkeypatch.setattr(p.sensors, "check", broken)
            d = p.process(framesets[1])
            assert d.reasons[0] is Reason.ERROR_SYNC and d.verdict.value == "unknown"
            assert p.stats.errors.get("sync") == 1


def test_a_failing_scan_leaves_the_registration_to_after_locate(framesets, monkeypatch):
    with _pipeline(True) as p:
        want = p.process(framesets[0], now_ns=framesets[0].timestamp_ns + 5_000_000)
    with _pipeline(True) as p:
        def broken(depth):
            raise RuntimeError("scan failed")
        monkeypatch.setattr(p.registrar, "bucket", broken)
        got = p.process(framesets[0], now_ns=framesets[0].timestamp_ns + 5_000_000)
        assert p._scan(framesets[1], None) is None
    _same(want, got)


def test_close_stops_the_worker_and_reopen_starts_it(framesets):
    p = _pipeline(True)
    with p:
        p.process(framesets[0])
        worker = [t for t in threading.enumerate() if t.name.startswith("edgepad-checks")]
        assert len(worker) == 1
        if hasattr(os, "getpriority"):  # spare cores only: below the pipeline's thread
            assert os.getpriority(os.PRIO_PROCESS, worker[0].native_id) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    assert p._worker is None
    assert not any(t.name.startswith("edgepad-checks") and t.is_alive() for t in threading.enumerate())
    with p:
        assert p.process(framesets[1]).latency_ms["sync"] >= 0


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x"])
def test_guess_margin_is_checked(bad):
    with pytest.raises(ConfigError):
        PipelineConfig(guess_margin=bad)
