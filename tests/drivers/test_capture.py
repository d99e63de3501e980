"""Capture: sources → Synchronizer → registration → FrameSet; end of stream; errors; open_capture."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.drivers.capture import Capture, open_capture
from edgepad.drivers.registration import Registrar, RegistrationMode, register_depth
from edgepad.drivers.sync import Synchronizer
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.geometry import save_rig
from edgepad.types import Modality, make_frame

from tests.helpers.sources import MS, ScriptedSource, plane_depth, small_rig

D, C, I = Modality.DEPTH, Modality.RGB, Modality.IR


def _rig_frames(rig, n, *, offset_ms=0.0):
    di, ci = rig.intrinsics[D], rig.intrinsics[C]
    out = []
    for k in range(n):
        t = k * 1000 / 30
        z = plane_depth(di, 600 + 10 * k, slope_x=2, occluder=(8, 6, 20, 16, 400))
        out.append(make_frame(D, z, int(t * MS), intrinsics=di, sequence=k, depth_scale_m=0.001))
        out.append(make_frame(C, np.full((ci.height, ci.width, 3), k, np.uint8), int((t + offset_ms) * MS),
                              intrinsics=ci, sequence=k))
    return out


def test_capture_syncs_registers_and_ends():
    rig = small_rig(32, 24)
    src = ScriptedSource("fake://cam", [C, D], _rig_frames(rig, 5, offset_ms=2), rig=rig, fps=30)
    with Capture([src], None, Synchronizer.for_fps([C, D], 30)) as cap:
        sets = list(cap)
        assert cap.timing_ms.keys() == {"capture", "sync", "register"}
    assert [fs[C].sequence for fs in sets] == list(range(5))
    for k, fs in enumerate(sets):
        d = fs[D]
        assert d.registered_to is C and d.data.shape == (24, 32) and d.intrinsics == rig.intrinsics[C]
        raw = src._items[2 * k]
        expect = register_depth(raw, rig.intrinsics[C], rig.extrinsics(D, C)).data
        np.testing.assert_array_equal(d.data, expect)
        assert fs.timestamp_ns == fs[C].timestamp_ns and fs.skew_ns == 2 * MS
    assert not src.is_open


def test_end_of_stream_propagates_once_all_sources_end():
    rig = small_rig(16, 12)
    a = ScriptedSource("fake://a", [C], [f for f in _rig_frames(rig, 3) if f.modality is C], fps=30)
    b = ScriptedSource("fake://b", [D], [f for f in _rig_frames(rig, 5) if f.modality is D], fps=30)
    cap = Capture([a, b], rig, Synchronizer.for_fps([C, D], 30))
    with cap:
        got = []
        with pytest.raises(EndOfStream):
            for _ in range(20):
                fs = cap.read(0.5)
                if fs is not None:
                    got.append(fs)
    assert len(got) == 3
    assert cap.sync.stats.dropped[D] == 2  # depth 3 and 4 had no colour partner


def test_register_false_and_no_rig_keep_raw_depth():
    rig = small_rig(16, 12)
    src = ScriptedSource("fake://cam", [C, D], _rig_frames(rig, 2), rig=rig)
    with Capture([src], None, Synchronizer.for_fps([C, D], 30), register=False) as cap:
        fs = cap.read(1.0)
    assert fs[D].registered_to is None and fs[D].intrinsics == rig.intrinsics[D]


def test_timeout_returns_none_and_source_error_propagates():
    src = ScriptedSource("fake://cam", [C, D], [None, None, SourceError("unplugged", "fake://cam")])
    with Capture([src], small_rig(), Synchronizer.for_fps([C, D], 30)) as cap:
        assert cap.read(0.01) is None
        assert cap.read(0.01) is None
        with pytest.raises(SourceError, match="unplugged"):
            cap.read(0.01)


def test_read_requires_open_and_several_sources_need_a_rig():
    src = ScriptedSource("fake://cam", [C], [])
    cap = Capture([src], None, Synchronizer.for_fps([C], 30))
    with pytest.raises(SourceError):
        cap.read()
    a = ScriptedSource("fake://a", [C], [], rig=small_rig())
    b = ScriptedSource("fake://b", [D], [])
    with pytest.raises(ConfigError, match="rig"):
        Capture([a, b], None, Synchronizer.for_fps([C, D], 30)).open()
    assert not a.is_open and not b.is_open


def test_rig_file_wins_and_size_mismatch_is_an_error(tmp_path):
    rig = small_rig(32, 24)
    other = small_rig(32, 24, angle_deg=-3, baseline_m=0.05)
    save_rig(other, tmp_path / "rig.json")
    src = ScriptedSource("fake://cam", [C, D], _rig_frames(rig, 1), rig=rig)
    with Capture([src], None, Synchronizer.for_fps([C, D], 30)) as cap:
        cap.rig = other  # as open_capture(rig=PATH) does
        fs = cap.read(1.0)
    raw = src._items[0]
    expect = register_depth(make_frame(D, raw.data, 0, intrinsics=other.intrinsics[D], depth_scale_m=0.001),
                            other.intrinsics[C], other.extrinsics(D, C)).data
    np.testing.assert_array_equal(fs[D].data, expect)
    small = small_rig(16, 12)
    src = ScriptedSource("fake://cam", [C, D], _rig_frames(rig, 1), rig=rig)
    with Capture([src], small, Synchronizer.for_fps([C, D], 30)) as cap:
        with pytest.raises(ConfigError, match="rig depth camera"):
            cap.read(1.0)


def test_open_capture_on_synthetic_source():
    """The synthetic camera through the same code path: synced rgb+depth+ir, depth registered to rgb."""
    with open_capture("synthetic://default?seed=2&width=64&height=48&frames=4") as cap:
        sets = list(cap)
        rig = cap.rig
    assert len(sets) == 4
    for fs in sets:
        assert fs.modalities == {C, D, I}
        assert fs[D].registered_to is C and fs[D].data.shape == (48, 64)
        assert fs.skew_ns < cap.sync.tolerance_ns
    assert rig is not None and cap.sync.stats.matched == 4
    assert (sets[0][D].data > 0).mean() > 0.2


@pytest.mark.parametrize("mode", [RegistrationMode.OFF, RegistrationMode.WINDOW, RegistrationMode.FRAME])
def test_registration_modes(mode):
    """OFF: raw depth, no registrar; WINDOW: unregistered depth (rig model) and a prepared registrar whose window
    equals the full registration there; FRAME: depth registered by the capture's registrar."""
    rig = small_rig(32, 24)
    src = ScriptedSource("fake://cam", [C, D], _rig_frames(rig, 1), rig=rig)
    with Capture([src], None, Synchronizer.for_fps([C, D], 30), register=mode) as cap:
        assert cap.mode is mode
        fs = cap.read(1.0)
        reg = cap.registrar
    raw = src._items[0]
    full = register_depth(raw, rig.intrinsics[C], rig.extrinsics(D, C)).data
    if mode is RegistrationMode.OFF:
        assert reg is None and fs[D].registered_to is None
        np.testing.assert_array_equal(fs[D].data, raw.data)
        return
    assert isinstance(reg, Registrar) and reg.target_modality is C
    if mode is RegistrationMode.WINDOW:
        assert fs[D].registered_to is None and fs[D].intrinsics == rig.intrinsics[D]
        assert reg.cache_info()["window_buckets"] == reg.prepare()  # prepared at open
        win = reg.window(fs[D], (4, 3, 20, 15))
        assert win.registered_to is C
        np.testing.assert_array_equal(win.data[3:15, 4:20], full[3:15, 4:20])
        assert not win.data[:3].any() and not win.data[:, 20:].any()
    else:
        assert fs[D].registered_to is C
        np.testing.assert_array_equal(fs[D].data, full)


def test_registration_mode_parse():
    assert RegistrationMode.parse(True) is RegistrationMode.FRAME
    assert RegistrationMode.parse(False) is RegistrationMode.OFF
    assert RegistrationMode.parse("Window") is RegistrationMode.WINDOW
    with pytest.raises(ConfigError):
        RegistrationMode.parse("sometimes")
