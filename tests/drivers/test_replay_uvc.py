"""Recorder + ReplaySource + `edgepad record`, and the UVC source with a scripted capture stub."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.drivers.registry import open_source
from edgepad.drivers.replay import Recorder, ReplaySource, record, replay_all
from edgepad.drivers.uvc import UvcSource
from edgepad.errors import ConfigError, SourceError
from edgepad.geometry import save_rig
from edgepad.types import Modality

from tests.helpers.sources import MS, StubCapture, frame, small_rig

D, C, I = Modality.DEPTH, Modality.RGB, Modality.IR
SYN = "synthetic://default?seed=4&width=48&height=36&frames=3"


def test_record_and_replay_synthetic_bit_exact(tmp_path):
    summary = record(SYN, tmp_path / "s", frames=3)
    assert summary["frames"] == {"ir": 3, "depth": 3, "rgb": 3} or sorted(summary["frames"].values()) == [3, 3, 3]
    original = list(replay_all(open_source(SYN)))
    replayed = list(replay_all(open_source(f"replay://{tmp_path / 's'}")))
    assert len(original) == len(replayed) == 9
    for a, b in zip(original, replayed):
        assert a.modality is b.modality and a.timestamp_ns == b.timestamp_ns and a.sequence == b.sequence
        assert a.intrinsics == b.intrinsics and a.depth_scale_m == b.depth_scale_m
        np.testing.assert_array_equal(a.data, b.data)
    src = open_source(f"replay://{tmp_path / 's'}")
    with src:
        assert src.rig == open_source(SYN).rig or src.rig.to_dict() == _rig_of(SYN).to_dict()
    doc = json.loads((tmp_path / "s" / "session.json").read_text())
    assert doc["complete"] and doc["frames"] == 9 and doc["format"] == "edgepad-session"


def _rig_of(uri):
    s = open_source(uri)
    with s:
        return s.rig


def test_replay_realtime_paces_and_fast_mode_does_not(tmp_path):
    with Recorder(tmp_path / "r", fps=20) as rec:
        for k in range(4):
            rec.write(frame(I, 1000 + k * 50, k))
    fast = ReplaySource(tmp_path / "r")
    t0 = time.monotonic()
    assert len(list(replay_all(fast))) == 4
    fast_s = time.monotonic() - t0
    slow = ReplaySource(tmp_path / "r", realtime=True)
    t0 = time.monotonic()
    frames = list(replay_all(slow))
    assert [f.timestamp_ns for f in frames] == [(1000 + k * 50) * MS for k in range(4)]
    assert time.monotonic() - t0 >= 0.14 > fast_s  # three 50 ms gaps kept (generous: no upper bound)
    src = ReplaySource(tmp_path / "r", realtime=True)
    with src:
        src.read(1.0)
        assert src.read(0.0) is None  # not due yet: a timeout, not a block


def test_replay_on_the_host_clock(tmp_path):
    """host_clock: frames are stamped with the host monotonic time they are due (spacing kept, / speed)."""
    with Recorder(tmp_path / "r", fps=20) as rec:
        for k in range(4):
            rec.write(frame(I, 1000 + k * 50, k))
    with pytest.raises(ConfigError, match="realtime"):
        ReplaySource(tmp_path / "r", host_clock=True)
    src = open_source(f"replay://{tmp_path / 'r'}?realtime=true&host_clock=true&speed=2")
    got = []
    with src:
        for _ in range(4):
            f = src.read(1.0)
            got.append((f.timestamp_ns, time.monotonic_ns(), f.device_timestamp_ns))
    for ts, now, _ in got:
        assert 0 <= now - ts < 20 * MS  # due time, read just after it (generous bound)
    assert [b[0] - a[0] for a, b in zip(got, got[1:])] == [25 * MS] * 3  # 50 ms recorded, played at 2x
    assert all(abs(ts - 1000 * MS) > 10**9 for ts, _, _ in got)  # not the recorded stamps


def test_replay_options_errors_and_cut_short_recording(tmp_path):
    with Recorder(tmp_path / "r", rig=small_rig()) as rec:
        rec.write(frame(C, 0, 0))
        rec.write(frame(D, 1, 0))
        rec.write(frame(C, 33, 1))
    only = ReplaySource(tmp_path / "r", modalities="depth")
    assert [f.modality for f in replay_all(only)] == [D]
    with pytest.raises(ConfigError, match="no \\['ir'\\] stream"):
        ReplaySource(tmp_path / "r", modalities="ir")
    with pytest.raises(SourceError, match="session.json"):
        ReplaySource(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="not empty"):
        Recorder(tmp_path / "r")
    looped = ReplaySource(tmp_path / "r", loop=True)
    with looped:
        ts = [looped.read(1).timestamp_ns for _ in range(7)]
    assert ts == sorted(ts) and len(set(ts)) == 7
    # a crash mid-line: replay up to the last complete line
    with open(tmp_path / "r" / "index.jsonl", "a") as fh:
        fh.write('{"modality": "rgb", "fi')
    assert len(list(replay_all(ReplaySource(tmp_path / "r")))) == 3
    (tmp_path / "r" / "rgb" / "000001.npy").unlink()
    src = ReplaySource(tmp_path / "r")
    with src, pytest.raises(SourceError, match="cannot read"):
        for _ in range(5):
            src.read(1)


def test_record_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["record", SYN, "--out", str(out), "--frames", "2"]) == 0
    assert "replay://" in capsys.readouterr().out
    assert sum(1 for _ in open(out / "index.jsonl")) == 6
    assert main(["record", SYN, "--out", str(out), "--frames", "2"]) == 1  # not empty, no --overwrite
    assert main(["record", SYN, "--out", str(out), "--seconds", "0.05", "--overwrite"]) == 0
    frames = list(replay_all(ReplaySource(out)))
    span = max(f.timestamp_ns for f in frames) - min(f.timestamp_ns for f in frames)
    assert span <= 0.05e9 and len(frames) >= 3


# ------------------------------------------------------------------------------------------------- UVC
def _read_n(src, n, timeout=2.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        f = src.read(0.2)
        if f is not None:
            out.append(f)
    return out


def test_uvc_grey_y16_rgb_and_rig_entry(tmp_path):
    rig = small_rig(16, 12)
    save_rig(rig, tmp_path / "rig.json")
    imgs = [np.full((12, 16), k, np.uint8) for k in range(3)]
    src = UvcSource("/dev/video7", rig=tmp_path / "rig.json", width=16, height=12,
                    capture_factory=lambda dev: StubCapture(imgs))
    with src:
        frames = _read_n(src, 3)
        assert src.rig.intrinsics[I] == rig.intrinsics[I]
    assert [f.sequence for f in frames] == [1, 2, 3] and all(f.modality is I for f in frames)
    assert [int(f.data[0, 0]) for f in frames] == [0, 1, 2]
    ts = [f.timestamp_ns for f in frames]
    assert ts == sorted(ts) and abs(ts[0] - time.monotonic_ns()) < 60e9  # host monotonic clock
    y16 = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300
    src = UvcSource("2", fourcc="Y16", width=16, height=12,
                    capture_factory=lambda dev: StubCapture([y16.view(np.uint8).reshape(12, 32)]))
    with src:
        (f,) = _read_n(src, 1)
        assert "nominal" in src.rig.provenance["source"]
    np.testing.assert_array_equal(f.data, y16)
    bgr = np.zeros((12, 16, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR
    src = UvcSource("3", modality="rgb", fourcc="MJPG", width=16, height=12,
                    capture_factory=lambda dev: StubCapture([bgr]))
    with src:
        (f,) = _read_n(src, 1)
    assert f.data[0, 0].tolist() == [0, 0, 200]


def test_uvc_errors_and_stall_reconnect():
    with pytest.raises(ConfigError):
        UvcSource("1", fourcc="H264")
    with pytest.raises(ConfigError):
        UvcSource("1", modality="depth")
    with pytest.raises(SourceError, match="gives 16x12"):
        UvcSource("1", width=640, height=480, capture_factory=lambda d: StubCapture([])).open()
    opened = []

    def factory(dev):
        opened.append(dev)
        return StubCapture([np.zeros((12, 16), np.uint8)] + [None] * 1000)
    src = UvcSource("5", width=16, height=12, stall_s=0.05, max_reconnects=2, capture_factory=factory)
    with src:
        assert len(_read_n(src, 1)) == 1
        with pytest.raises(SourceError, match="gave up after 2"):
            for _ in range(200):
                src.read(0.05)
    assert len(opened) == 3 and src.reconnects == 2


def test_uvc_replay_twin(tmp_path):
    """Record the UVC source, replay it: same frames, same timestamps."""
    imgs = [np.full((12, 16), 10 * k, np.uint8) for k in range(4)]
    src = UvcSource("9", width=16, height=12, capture_factory=lambda d: StubCapture(imgs))
    with src, Recorder(tmp_path / "u", src.rig, source=src.uri) as rec:
        live = _read_n(src, 4)
        for f in live:
            rec.write(f)
    replayed = list(replay_all(ReplaySource(tmp_path / "u")))
    assert [f.timestamp_ns for f in replayed] == [f.timestamp_ns for f in live]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(live, replayed))
