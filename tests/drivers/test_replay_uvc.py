"""Recorder + ReplaySource + `edgepad record`, and the UVC source with a scripted capture stub."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.drivers.registry import open_source
from edgepad.drivers.replay import Recorder, ReplaySource, record, replay_all
from edgepad.runtime.sensors import SensorMonitor
from edgepad.types import FrameSet, make_frame
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
    next((tmp_path / "r" / "rgb").glob("000001.*")).unlink()
    src = ReplaySource(tmp_path / "r")
    with src, pytest.raises(SourceError, match="cannot read"):
        for _ in range(5):
            src.read(1)


def _noisy(m, k, rng, dtype=None):
    """A frame with random pixels over the full value range (PNG must keep every bit)."""
    shape = (12, 16, 3) if m is C else (12, 16)
    dtype = dtype or (np.uint16 if m is D else np.uint8)
    data = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    return make_frame(m, data, 1_000_000 + k * 33_000_000, intrinsics=frame(m, 0, w=16, h=12).intrinsics,
                      sequence=k, source="fake://", depth_scale_m=0.001 if m is D else None,
                      device_timestamp_ns=5_000 + k * 33_000_000)


@pytest.mark.parametrize("encoding,suffix", [("png", ".png"), ("npy", ".npy")])
def test_record_encodings_replay_bit_exact(tmp_path, encoding, suffix):
    """png (default) and npy both replay bit-exactly: rgb, 16-bit depth, 8- and 16-bit IR."""
    rng = np.random.default_rng(7)
    frames = [_noisy(C, 0, rng), _noisy(D, 0, rng), _noisy(I, 0, rng, np.uint16), _noisy(C, 1, rng),
              _noisy(D, 1, rng), _noisy(I, 1, rng, np.uint8)]
    with Recorder(tmp_path / "s", encoding=encoding) as rec:
        for f in frames:
            rec.write(f)
    files = sorted(p.name for p in (tmp_path / "s").rglob("0000*"))
    assert len(files) == 6 and all(n.endswith(suffix) for n in files)
    doc = json.loads((tmp_path / "s" / "session.json").read_text())
    assert doc["version"] == 2 and doc["encoding"] == encoding
    replayed = list(replay_all(ReplaySource(tmp_path / "s")))
    assert len(replayed) == 6
    for a, b in zip(frames, replayed):
        assert a.modality is b.modality and a.sequence == b.sequence and a.timestamp_ns == b.timestamp_ns
        assert a.data.dtype == b.data.dtype
        np.testing.assert_array_equal(a.data, b.data)


def test_version_1_npy_session_still_replays(tmp_path):
    """An old (version 1, .npy only) recording replays unchanged."""
    rng = np.random.default_rng(3)
    f = _noisy(D, 5, rng)
    (tmp_path / "old" / "depth").mkdir(parents=True)
    np.save(tmp_path / "old" / "depth" / "000000.npy", f.data)
    intr = f.intrinsics
    session = {"format": "edgepad-session", "version": 1, "source": "x", "modalities": ["depth"], "fps": 30.0,
               "streams": {"depth": {"intrinsics": {"width": intr.width, "height": intr.height, "fx": intr.fx,
                                                    "fy": intr.fy, "cx": intr.cx, "cy": intr.cy,
                                                    "distortion": intr.distortion, "coeffs": list(intr.coeffs)},
                                     "depth_scale_m": 0.001}},
               "device": {}, "frames": 1, "complete": True}
    (tmp_path / "old" / "session.json").write_text(json.dumps(session))
    (tmp_path / "old" / "index.jsonl").write_text(json.dumps(
        {"modality": "depth", "file": "depth/000000.npy", "timestamp_ns": f.timestamp_ns,
         "device_timestamp_ns": None, "sequence": 5, "depth_scale_m": 0.001}) + "\n")
    (out,) = list(replay_all(ReplaySource(tmp_path / "old")))
    np.testing.assert_array_equal(out.data, f.data)
    assert out.sequence == 5


def test_loop_renumbers_frames_and_passes_sensor_integrity(tmp_path):
    """replay://…?loop=true: sequences and timestamps continue across laps, so the sensor-integrity monitor's
    numbering and clock checks see one clean stream (before: every set after the first lap was a
    `sequence_not_increasing` violation). A lap shorter than the monitor's repeat window (16 frames) is, rightly,
    a replay of identical images: the default monitor flags it (docs/RELIABILITY.md), so the numbering is checked
    here with a window of one frame."""
    rng = np.random.default_rng(1)
    with Recorder(tmp_path / "r", fps=30) as rec:
        for k in range(3):
            rec.write(_noisy(C, 10 + k, rng))
            rec.write(_noisy(D, 20 + k, rng))
    src = open_source(f"replay://{tmp_path / 'r'}?loop=true")
    mon, default = SensorMonitor(repeat_window=1), SensorMonitor()
    got, flagged = [], 0
    with src:
        for _ in range(9):  # three laps of rgb+depth pairs
            a, b = src.read(1), src.read(1)
            got.append((a.sequence, b.sequence, a.timestamp_ns, b.device_timestamp_ns))
            res = mon.check(FrameSet({a.modality: a, b.modality: b}, a.timestamp_ns))
            assert res.ok, res.problems
            flagged += not default.check(FrameSet({a.modality: a, b.modality: b}, a.timestamp_ns)).ok
    assert [g[0] for g in got] == list(range(10, 19)) and [g[1] for g in got] == list(range(20, 29))
    ts = [g[2] for g in got]
    assert all(b - a == 33_000_000 for a, b in zip(ts[:2], ts[1:3]))
    assert all(b > a for a, b in zip(ts, ts[1:])) and ts[3] - ts[2] >= 33_000_000
    dev = [g[3] for g in got]
    assert all(b > a for a, b in zip(dev, dev[1:]))  # device time continues too
    assert flagged == 6  # laps 2 and 3 repeat lap 1's images: never a vote under the default window


def test_record_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["record", SYN, "--out", str(out), "--frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert "replay://" in printed and "MB png" in printed
    assert len(list(out.rglob("*.png"))) == 6 and not list(out.rglob("*.npy"))
    assert sum(1 for _ in open(out / "index.jsonl")) == 6
    assert main(["record", SYN, "--out", str(out), "--frames", "2"]) == 1  # not empty, no --overwrite
    assert main(["record", SYN, "--out", str(out), "--seconds", "0.05", "--overwrite"]) == 0
    assert main(["record", SYN, "--out", str(out), "--frames", "2", "--format", "npy", "--overwrite"]) == 0
    assert len(list(out.rglob("*.npy"))) == 6 and not list(out.rglob("*.png"))
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


# ------------------------------------------------------------------------------------------------- edgepad run
MODEL = "edgepad/assets/default.onnx"


def _threshold(subset, criterion="eer"):
    from edgepad.engines.manifest import read_manifest
    return read_manifest(MODEL).threshold_for(subset, criterion)


def test_run_on_a_modality_subset_says_which_threshold(tmp_path, capsys):
    """A source with rgb+depth only runs on the manifest's rgb+depth threshold and says so at start."""
    record(SYN + "&modalities=rgb,depth", tmp_path / "s", frames=3)
    assert main(["run", f"replay://{tmp_path / 's'}", "--model", MODEL]) == 0
    out = capsys.readouterr()
    thr = _threshold(["rgb", "depth"])
    assert thr is not None and thr != _threshold(["rgb", "depth", "ir"])
    assert (f"running on rgb+depth: threshold {thr:.3f} @ eer for subset rgb+depth (the full model expects "
            f"rgb+depth+ir)") in out.out
    assert sum(line.startswith("#") for line in out.out.splitlines()) == 3
    assert "3 decisions" in out.err


def test_run_without_a_subset_threshold_fails_clearly(tmp_path, capsys):
    """The manifest has no threshold for the source's subset: a clear message and a non-zero exit."""
    import shutil
    record(SYN + "&modalities=rgb,depth", tmp_path / "s", frames=1)
    shutil.copy(MODEL, tmp_path / "m.onnx")
    doc = json.loads(open(MODEL + ".json").read())
    for table in doc["operating_points"].values():
        table.pop("rgb+depth", None)
    (tmp_path / "m.onnx.json").write_text(json.dumps(doc))
    assert main(["run", f"replay://{tmp_path / 's'}", "--model", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "no threshold for the subset rgb+depth at operating point eer" in err


def test_run_with_no_synced_set_exits_non_zero_with_a_diagnosis(tmp_path, capsys):
    """Sets every 100 ms recorded as 30 fps (tolerance 16.7 ms), depth 40 ms after rgb: zero sets → exit 1 and the
    offsets; the suggested --sync-tolerance-ms makes the same recording run."""
    rng = np.random.default_rng(5)
    with Recorder(tmp_path / "r", rig=small_rig(16, 12), fps=30) as rec:
        for k in range(4):
            c, d = _noisy(C, k, rng), _noisy(D, k, rng)
            t = k * 100_000_000
            rec.write(make_frame(C, c.data, t, intrinsics=c.intrinsics, sequence=k, source="fake://"))
            rec.write(make_frame(D, d.data, t + 40_000_000, intrinsics=d.intrinsics, sequence=k,
                                 source="fake://", depth_scale_m=0.001))
    assert main(["run", f"replay://{tmp_path / 'r'}", "--model", MODEL]) == 1
    err = capsys.readouterr().err
    assert "sync matched 0 frame set(s) from rgb 4, depth 4" in err and "tolerance 16.7 ms" in err
    assert "closest depth frame to a rgb frame: +40.0 ms" in err and "--sync-tolerance-ms 41" in err
    assert "no frame set was formed" in err
    assert main(["run", f"replay://{tmp_path / 'r'}", "--model", MODEL, "--sync-tolerance-ms", "41"]) == 0
    assert "4 decisions" in capsys.readouterr().err
