"""Robustness: unplug, end of stream, drops, stalls, out-of-order timestamps, bad depth, corrupt files, soak.

Each case ends in a typed error or an UNKNOWN decision — never LIVE without fresh evidence, never a crash.
"""
from __future__ import annotations

import gc
import json
import os
import time

import numpy as np
import pytest

from edgepad.drivers.base import BaseSource
from edgepad.drivers.capture import Capture
from edgepad.types import replace_frame as frame_with
from edgepad.drivers.sync import Synchronizer
from edgepad.drivers.synthetic import SyntheticSource
from edgepad.errors import ConfigError, EdgePadError, IntegrityError, ManifestError, ShapeError, SourceError
from edgepad.runtime.face import FixedBoxLocator, TruthLocator
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
from edgepad.types import FrameSet, Modality, Reason, Verdict, make_frame

from tests.helpers.scene import make_rig, plane_frameset

ALL = [Modality.RGB, Modality.DEPTH, Modality.IR]


class Faulty(BaseSource):
    """Wraps a source; after ``fail_after`` frames raises ``error`` (unplug), or stalls (returns None)."""

    def __init__(self, inner, fail_after=None, error=None, stall_after=None, stall_reads=0):
        super().__init__(inner.uri, inner.modalities)
        self.inner, self.fail_after, self.error = inner, fail_after, error
        self.stall_after, self.stall_reads, self.n = stall_after, stall_reads, 0
        self.rig = inner.rig
        self.fps = getattr(inner, "fps", None)

    def truth(self, seq):
        return self.inner.truth(seq)

    def _open_impl(self):
        self.inner.open()

    def _close_impl(self):
        self.inner.close()

    def _read_impl(self, timeout_s):
        if self.fail_after is not None and self.n >= self.fail_after:
            raise self.error
        if self.stall_after is not None and self.n >= self.stall_after and self.stall_reads > 0:
            self.stall_reads -= 1
            time.sleep(timeout_s)  # a stalled camera: nothing arrives within the timeout
            return None
        self.n += 1
        return self.inner.read(timeout_s)


def synth(frames=40, **kw):
    return SyntheticSource(seed=3, frames=frames, width=160, height=120, presentation_frames=10, **kw)


def pipeline(source, backend, **cfg):
    cap = Capture([source], None, Synchronizer.for_fps(ALL, 30.0))
    cfg.setdefault("clock", "source")
    return LivenessPipeline(cap, backend, locator=TruthLocator(source), config=PipelineConfig(**cfg))


def test_synthetic_stream_runs_to_end_of_stream(backend):
    p = pipeline(synth(40), backend)
    with p:
        stats = p.run()
    assert stats.framesets == 40 and sum(stats.decisions.values()) == 40
    assert stats.errors == {}
    assert p.sensors.stats.non_monotonic == {} and p.sensors.stats.frozen == {}


def test_unplug_mid_stream_is_a_typed_error_and_unknown(backend):
    src = Faulty(synth(0), fail_after=3 * 12, error=SourceError("camera unplugged", "synthetic://default"))
    p = pipeline(src, backend)
    seen = []
    p.on_decision(seen.append)
    with pytest.raises(SourceError, match="unplugged"):
        with p:
            p.run()
    assert seen and seen[-1].verdict is Verdict.UNKNOWN and Reason.ERROR_CAPTURE in seen[-1].reasons
    assert not src.is_open  # closed on the way out


def test_drops_are_counted_and_never_crash(backend):
    p = pipeline(synth(60, drop_prob=0.25), backend)
    with p:
        stats = p.run()
    assert 0 < stats.framesets < 60
    assert sum(p.sensors.stats.drops.values()) > 0


def test_stall_gives_unknown_no_frames_then_recovers(backend):
    src = Faulty(synth(30), stall_after=9, stall_reads=3)
    p = pipeline(src, backend, read_timeout_s=0.01)
    with p:
        out = list(p.decisions())
    stalled = [d for d in out if Reason.NO_FRAMES in d.reasons]
    assert stalled and all(d.verdict is Verdict.UNKNOWN for d in stalled)
    assert p.stats.framesets == 30


def test_out_of_order_timestamps_are_unknown(backend):
    rig = make_rig()
    p = LivenessPipeline(None, backend, locator=FixedBoxLocator((50, 30, 56, 60)), rig=rig,
                         config=PipelineConfig(clock="source"))
    period = 33_333_333
    ts = [1, 2, 3, 2, 4]  # the fourth set goes back in time
    out = []
    for i, k in enumerate(ts):
        fs = plane_frameset(rig, t_ns=k * period, seq=i, offset=60, noise_seed=i)
        out.append(p.process(fs, now_ns=k * period + 1_000_000))
    assert out[2].verdict is Verdict.LIVE
    assert out[3].verdict is Verdict.UNKNOWN and Reason.SENSOR_INTEGRITY in out[3].reasons
    assert p.sensors.stats.non_monotonic["rgb"] == 1


def test_nan_inf_depth_is_rejected_as_a_typed_error():
    rig = make_rig()
    intr = rig.intrinsics[Modality.RGB]
    for bad in (np.full((120, 160), np.nan, np.float32), np.full((120, 160), np.inf, np.float32)):
        with pytest.raises(ShapeError):
            make_frame("depth", bad, 0, intrinsics=intr, depth_scale_m=0.001)
    with pytest.raises(ShapeError):
        make_frame("depth", np.zeros((120, 160), np.uint16), 0, intrinsics=intr, depth_scale_m=float("nan"))


def test_saturated_and_zero_depth_never_crash(backend):
    rig = make_rig()
    p = LivenessPipeline(None, backend, locator=FixedBoxLocator((50, 30, 56, 60)), rig=rig,
                         config=PipelineConfig(clock="source"))
    for i, value in enumerate([0, 65535, 0, 65535]):
        fs = plane_frameset(rig, t_ns=(i + 1) * 10**8, seq=i, noise_seed=i, depth_value=value)
        d = p.process(fs, now_ns=(i + 1) * 10**8)
        assert d.score is not None and np.isfinite(d.score)
        if value == 0:
            assert Modality.DEPTH not in d.modalities


def test_corrupt_rig_and_manifest_and_artifact(tmp_path, tiny_model, backend):
    from edgepad.engines.backend import load_backend
    from edgepad.geometry import load_rig
    from edgepad.runtime.pipeline import open_pipeline
    bad_rig = tmp_path / "rig.json"
    bad_rig.write_text('{"reference": "rgb", "cameras": {"rgb": {"intrinsics": {"width": -1}}}}')
    with pytest.raises(ConfigError):
        load_rig(bad_rig)
    with pytest.raises(EdgePadError):
        open_pipeline(synth(5), backend, rig=bad_rig)
    (tmp_path / "trunc.json").write_text('{"reference": "rgb", "cam')
    with pytest.raises(EdgePadError):
        load_rig(tmp_path / "trunc.json")
    # manifest: unreadable JSON, then a valid one whose artifact bytes were altered
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_model.read_bytes())
    side = tmp_path / "m.onnx.json"
    side.write_text("{not json")
    with pytest.raises(ManifestError):
        load_backend(model)
    man = json.loads((tiny_model.parent / (tiny_model.name + ".json")).read_text())
    side.write_text(json.dumps(man))
    load_backend(model)  # intact copy loads
    model.write_bytes(tiny_model.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError):
        load_backend(model)
    man["threshold"] = "high"
    side.write_text(json.dumps(man))
    with pytest.raises(ManifestError):
        load_backend(model, verify=False)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _soak(backend, n_frames: int, record=None, presentation_frames: int = 45, warm: int = 2000):
    src = SyntheticSource(seed=5, frames=n_frames, width=160, height=120, presentation_frames=presentation_frames)
    p = pipeline(src, backend)
    warm = min(warm, n_frames // 3)
    rss0 = None
    live_without_face = 0
    with p:
        for i, d in enumerate(p.decisions()):
            if i == warm:
                gc.collect()
                rss0 = _rss_mb()
            if d.verdict is Verdict.LIVE and (d.face_box is None or d.score is None):
                live_without_face += 1
    gc.collect()
    growth = _rss_mb() - rss0
    if record is not None:
        record("rss_growth_mb", round(growth, 2))
        record("frames", n_frames)
    print(f"soak {n_frames} frames: RSS growth after warm-up {growth:.1f} MB; {p.stats.to_dict()}")
    assert live_without_face == 0
    assert p.stats.framesets == n_frames
    return growth


def test_soak_short(backend, record_property):
    # one long presentation: the synthetic renderer's per-presentation caches stay warm, so growth is the runtime's
    growth = _soak(backend, 400, record_property, presentation_frames=10_000, warm=100)
    assert growth < 5.0


@pytest.mark.slow
def test_soak_100k_frames_bounded_memory(backend, record_property):
    growth = _soak(backend, 100_000, record_property)
    assert growth < 50.0
