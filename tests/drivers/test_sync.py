"""Synchronizer: table-driven expected sequences (librealsense syncer style), invariants under jitter, drops,
late and out-of-order frames, clock offsets; and the same input through librealsense's own rs.syncer."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.drivers.sync import ClockOffsetEstimator, Synchronizer
from edgepad.errors import ConfigError
from edgepad.types import Modality

from tests.helpers.sources import MS, frame

D, C, I = Modality.DEPTH, Modality.RGB, Modality.IR
P30 = 1000 / 30


def run(sync, events):
    """events: (modality, t_ms, seq); returns [(seq per modality), ...] of emitted sets, with flush at the end."""
    out = []
    for m, t, seq in events:
        out += sync.push_all(frame(m, t, seq))
    out += sync.flush()
    return [tuple(fs[m].sequence for m in (C, D) if m in fs) for fs in out], out


def stream(m, fps, n, *, offset_ms=0.0, drop=(), start=0):
    return [(m, offset_ms + k * 1000 / fps, k) for k in range(start, start + n) if k not in drop]


def merged(*streams):
    return sorted((e for s in streams for e in s), key=lambda e: (e[1], e[0].value))


def check_invariants(sync, sets, tol_ns):
    st = sync.stats
    seen = set()
    last = {}
    for fs in sets:
        assert fs.skew_ns < tol_ns
        for m, f in fs.frames.items():
            key = (m, f.sequence)
            assert key not in seen, "frame used twice"
            seen.add(key)
            assert m not in last or f.timestamp_ns > last[m], "output not monotonic"
            last[m] = f.timestamp_ns
    for m in sync.modalities:
        assert st.pushed[m] == st.used[m] + st.dropped[m] + sync.pending(m)
        assert st.overflow[m] <= st.dropped[m] and st.late[m] <= st.dropped[m]
    assert st.matched == len(sets)
    if sets:
        assert st.max_skew_ns == max(fs.skew_ns for fs in sets)
        assert st.mean_skew_ns == pytest.approx(np.mean([fs.skew_ns for fs in sets]))


# ------------------------------------------------------------------------- table-driven (librealsense test-ts-*)
CASES = {
    "same fps": (30, merged(stream(C, 30, 5), stream(D, 30, 5)), [(k, k) for k in range(5)]),
    "colour +5 ms": (30, merged(stream(C, 30, 5, offset_ms=5), stream(D, 30, 5)), [(k, k) for k in range(5)]),
    # +20 ms is beyond half a period (16.7 ms): colour k pairs with depth k+1
    "colour +20 ms": (30, merged(stream(C, 30, 5, offset_ms=20), stream(D, 30, 6)), [(k, k + 1) for k in range(5)]),
    "colour drops": (30, merged(stream(C, 30, 6, drop=(2, 3)), stream(D, 30, 6)), [(0, 0), (1, 1), (4, 4), (5, 5)]),
    "depth drops": (30, merged(stream(C, 30, 6), stream(D, 30, 6, drop=(1,))), [(0, 0), (2, 2), (3, 3), (4, 4),
                                                                                  (5, 5)]),
    # colour 15 fps, depth 30 fps: tolerance = half the slower period; every colour frame finds its depth frame
    "different fps": ({C: 15, D: 30}, merged(stream(C, 15, 4), stream(D, 30, 8)), [(k, 2 * k) for k in range(4)]),
    # end of stream: the last colour frame still pairs with the last depth frame once the streams end
    "end of stream": (30, merged(stream(C, 30, 3, offset_ms=3), stream(D, 30, 3)), [(0, 0), (1, 1), (2, 2)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_expected_sequences(name):
    fps, events, expected = CASES[name]
    sync = Synchronizer.for_fps([C, D], fps)
    got, sets = run(sync, events)
    assert got == expected
    check_invariants(sync, sets, sync.tolerance_ns)
    n_c = sum(1 for e in events if e[0] is C)
    assert sync.stats.dropped[C] == n_c - len(expected)


def test_emits_promptly_and_waits_only_when_needed():
    sync = Synchronizer.for_fps([C, D], 30)
    assert sync.push(frame(D, 0, 0)) is None
    fs = sync.push(frame(C, 2, 0))  # depth 0 is older than colour 0 and no closer one can come after depth 33
    # undecided only if a depth frame between 2 and 4 ms could still arrive: the period is unknown yet
    assert fs is None or fs[D].sequence == 0
    sync.push(frame(D, P30, 1))
    assert sync.stats.matched == 1
    assert sync.poll() is None


def test_optional_modality_and_missing():
    sync = Synchronizer.for_fps([C, D], 30, optional=[I])
    events = merged(stream(C, 30, 4), stream(D, 30, 4), stream(I, 30, 4, drop=(1, 2)))
    sets = []
    for m, t, s in events:
        sets += sync.push_all(frame(m, t, s))
    sets += sync.flush()
    assert [fs.missing for fs in sets] == [frozenset(), {I}, {I}, frozenset()]
    assert sync.stats.missing[I] == 2
    check_invariants(sync, sets, sync.tolerance_ns)


@pytest.mark.parametrize("seed", range(6))
def test_invariants_with_jitter_drops_late_and_reordering(seed):
    rng = np.random.default_rng(seed)
    events = []
    for m, off in ((C, 0.0), (D, 3.0), (I, 4.0)):
        for k in range(60):
            if rng.random() < 0.1:
                continue  # dropped by the camera
            t = off + k * P30 + rng.normal(0, 2.0)
            arrival = t + abs(rng.normal(3, 4)) + (25 if rng.random() < 0.05 else 0)  # late deliveries
            events.append((arrival, m, t, k))
    events.sort()
    sync = Synchronizer.for_fps([C, D, I], 30, max_pending=3)
    sets = []
    peak = 0
    for _, m, t, k in events:
        sets += sync.push_all(frame(m, t, k))
        peak = max(peak, max(sync.pending(x) for x in sync.modalities))
    sets += sync.flush()
    assert peak <= 3
    check_invariants(sync, sets, sync.tolerance_ns)
    assert len(sets) >= 25  # most instants with all three frames present are matched
    assert sum(sync.stats.late.values()) >= 0 and sync.pending() == 0


def test_overflow_is_bounded_and_counted():
    sync = Synchronizer.for_fps([C, D], 30, max_pending=2)
    for k in range(10):  # depth never arrives
        sync.push(frame(C, k * P30, k))
    assert sync.pending(C) <= 2 and sync.stats.overflow[C] >= 7
    assert sync.stats.matched == 0


def test_late_frame_dropped_and_counted():
    sync = Synchronizer.for_fps([C, D], 30)
    for m, t, k in merged(stream(C, 30, 3), stream(D, 30, 3)):
        sync.push(frame(m, t, k))
    before = sync.stats.matched
    assert sync.push(frame(C, 0.5, 99)) is None  # older than what was emitted
    assert sync.stats.late[C] == 1 and sync.stats.matched == before


def test_cross_device_clock_offset_estimation():
    """RealSense depth on its own clock (offset 1000 s, 50 ppm drift) and a UVC IR camera on host time: map the
    device clock to host with the estimator, then sync."""
    rng = np.random.default_rng(3)
    est = ClockOffsetEstimator(window=32)
    sync = Synchronizer.for_fps([I, D], 30)
    sets, errors = [], []
    for k in range(90):
        host_true = 5_000 + k * P30  # ms, exposure instant in host time
        dev = (host_true - 1_000_000.0) * (1 + 50e-6)  # device clock
        arrival = host_true + 8 + abs(rng.normal(0, 2))  # USB + processing delay
        offset = est.update(int(dev * MS), int(arrival * MS))
        mapped_ms = (dev * MS + offset) / MS
        errors.append(mapped_ms - host_true)
        sets += sync.push_all(frame(D, mapped_ms, k))
        sets += sync.push_all(frame(I, host_true + rng.normal(0, 1), k))
    sets += sync.flush()
    assert max(abs(e) for e in errors[10:]) < 12  # bounded by the minimum transport delay (+ drift)
    check_invariants(sync, sets, sync.tolerance_ns)
    assert len(sets) >= 85
    assert all(fs[I].sequence == fs[D].sequence for fs in sets)


def test_constant_offsets_ns():
    """Depth stamped by a clock 500 ms ahead (frames arrive at the same host instants as colour)."""
    sync = Synchronizer.for_fps([C, D], 30, offsets_ns={D: -500 * MS})
    sets = []
    events = [(m, t, k) for m, t, k in merged(stream(C, 30, 4), stream(D, 30, 4, offset_ms=1))]
    for m, t, k in events:
        sets += sync.push_all(frame(m, t + (500 if m is D else 0), k))
    sets += sync.flush()
    assert [(fs[C].sequence, fs[D].sequence) for fs in sets] == [(k, k) for k in range(4)]


def test_bad_configuration():
    with pytest.raises(ConfigError):
        Synchronizer([], 10)
    with pytest.raises(ConfigError):
        Synchronizer([C], 0)
    with pytest.raises(ConfigError):
        Synchronizer.for_fps([C], 0)
    with pytest.raises(ConfigError):
        Synchronizer([C, C], 10)


# ------------------------------------------------------------------------- against librealsense's rs.syncer
def _rs_syncer_pairs(events, fps=30):
    """Feed (modality, t_ms, seq) through a software device into rs.syncer; return paired (colour, depth) seqs."""
    rs = pytest.importorskip("pyrealsense2")
    dev = rs.software_device()
    sensors, profiles = {}, {}
    for m, name, st, fmt, bpp in ((D, "Stereo Module", rs.stream.depth, rs.format.z16, 2),
                                  (C, "RGB Camera", rs.stream.color, rs.format.rgb8, 3)):
        s = dev.add_sensor(name)
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height = st, 0, len(sensors), 8, 6
        vs.fps, vs.bpp, vs.fmt = fps, bpp, fmt
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = 8, 6, 8.0, 8.0, 4.0, 3.0
        vs.intrinsics = intr
        profiles[m] = (s.add_video_stream(vs, True).as_video_stream_profile(), bpp)
        s.set_metadata(rs.frame_metadata_value.actual_fps, int(fps * 1000))
        sensors[m] = s
    sync = rs.syncer(100)
    for m, s in sensors.items():
        s.open(profiles[m][0])
        s.start(sync)
    pairs = []

    def drain():
        while True:
            ok, fs = sync.try_wait_for_frames(50)
            if not ok:
                return
            if fs.size() == 2:
                pairs.append((fs.get_color_frame().get_frame_number(), fs.get_depth_frame().get_frame_number()))
    for m, t, k in events:
        prof, bpp = profiles[m]
        f = rs.software_video_frame()
        px = np.zeros((6, 8, 3) if m is C else (6, 8), np.uint8 if m is C else np.uint16)
        f.pixels, f.bpp, f.stride = px, bpp, 8 * bpp
        f.timestamp, f.domain, f.frame_number, f.profile = t, rs.timestamp_domain.hardware_clock, k, prof
        sensors[m].on_video_frame(f)
        drain()
    drain()
    for s in sensors.values():
        s.stop()
        s.close()
    return pairs


@pytest.mark.realsense
@pytest.mark.parametrize("name", ["same fps", "colour +5 ms", "colour +20 ms", "colour drops", "depth drops"])
def test_matches_librealsense_syncer(name):
    """Our pairs equal rs.syncer's on identical software-device input (librealsense does not emit the very
    first set, a documented quirk; pairs it does emit must be ours too)."""
    fps, events, _ = CASES[name]
    theirs = _rs_syncer_pairs(events)
    ours, _ = run(Synchronizer.for_fps([C, D], fps), events)
    assert len(theirs) >= len(ours) - 2
    assert set(theirs) <= set(ours), (theirs, ours)


def test_diagnose_reports_offsets_tolerance_and_a_fix():
    """The real D435 clip (.db3) at 6 fps: one colour frame, depth 101.6 and 268.2 ms later. Nothing matches within
    half a period (83.3 ms), and diagnose() says by how much and what would pair them."""
    events = [(C, 360713.523, 162), (D, 360815.089, 169), (D, 360981.765, 170)]
    sync = Synchronizer.for_fps([C, D], 6.0)
    _, sets = run(sync, events)
    assert sets == [] and sync.stats.matched == 0
    assert sync.observed_offsets_ns() == {D: round(360815.089 * MS) - round(360713.523 * MS)}
    text = sync.diagnose()
    assert "matched 0 frame set(s) from rgb 1, depth 2" in text and "tolerance 83.3 ms" in text
    assert "closest depth frame to a rgb frame: +101.6 ms" in text
    assert "101.6 ms apart" in text and "sync_tolerance_ms=102" in text
    again = Synchronizer([C, D], 102 * MS)  # the suggested tolerance pairs them
    seqs, _ = run(again, events)
    assert seqs == [(162, 169)] and again.diagnose() is None


def test_diagnose_names_a_silent_stream_and_stays_quiet_when_matching():
    sync = Synchronizer.for_fps([C, D, I], 30.0)
    run(sync, merged(stream(C, 30, 4), stream(D, 30, 4, offset_ms=1)))
    text = sync.diagnose()
    assert "no frames at all from required stream(s) ir" in text
    ok = Synchronizer.for_fps([C, D], 30.0)
    run(ok, merged(stream(C, 30, 6), stream(D, 30, 6, offset_ms=2)))
    assert ok.stats.matched == 6 and ok.diagnose() is None
    assert ok.observed_offsets_ns() == {D: 2 * MS}


def test_device_skew_is_reported_separately():
    """A source that groups frames (RealSense playback, timestamps=frameset) gives them one matching time; the
    real capture offset stays visible in device time."""
    sync = Synchronizer([C, D], 5 * MS)
    a, b = frame(C, 100, 1), frame(D, 100, 1)
    b = type(b)(b.modality, b.data, b.timestamp_ns, b.timestamp_ns + 268 * MS, b.sequence, b.source, b.intrinsics,
                b.depth_scale_m, None)
    a = type(a)(a.modality, a.data, a.timestamp_ns, a.timestamp_ns, a.sequence, a.source, a.intrinsics, None, None)
    sets = sync.push_all(a) + sync.push_all(b) + sync.flush()
    assert len(sets) == 1 and sync.stats.max_skew_ns == 0 and sync.stats.max_device_skew_ns == 268 * MS
