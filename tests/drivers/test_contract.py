"""One contract for every source: synthetic, replay, RealSense playback and UVC (scripted stub).

Discovery by URI, intrinsics and depth scale, per-stream timestamps, clean end of stream, timeouts, restart,
and the shared path after capture (Capture → FrameSet).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgepad.drivers.capture import Capture
from edgepad.drivers.registry import open_source
from edgepad.drivers.replay import record
from edgepad.drivers.sync import Synchronizer
from edgepad.errors import EndOfStream, SourceError
from edgepad.types import Modality

SYN = "synthetic://default?seed=5&width=48&height=36&frames=3"


def _synthetic(tmp_path):
    return open_source(SYN)


def _replay(tmp_path):
    record(SYN, tmp_path / "rec", frames=3)
    return open_source(f"replay://{tmp_path / 'rec'}")


def _realsense_bag(tmp_path):
    pytest.importorskip("pyrealsense2")
    pytest.importorskip("rosbags")
    from .fakes import plane_depth, small_rig
    from .rsbag import write_realsense_bag
    rig = small_rig(32, 24)
    di, ci = rig.intrinsics[Modality.DEPTH], rig.intrinsics[Modality.RGB]
    path = write_realsense_bag(tmp_path / "c.bag", di, ci, rig.extrinsics("depth", "rgb"),
                               [plane_depth(di, 600 + k) for k in range(4)],
                               [np.full((24, 32, 3), k, np.uint8) for k in range(4)])
    return open_source(str(path), modalities="rgb,depth")


def _uvc(tmp_path):
    from .test_replay_uvc import StubCapture
    imgs = [np.full((12, 16), k, np.uint8) for k in range(3)]
    return open_source("uvc:///dev/video9", width=16, height=12,
                       capture_factory=lambda dev: StubCapture(list(imgs) + [None] * 5), stall_s=0.05,
                       max_reconnects=0)


SOURCES = {"synthetic": _synthetic, "replay": _replay, "realsense-playback": _realsense_bag, "uvc": _uvc}


def _drain(src, limit=40):
    frames, end = [], None
    for _ in range(limit):
        try:
            f = src.read(1.0)
        except (EndOfStream, SourceError) as exc:
            end = exc
            break
        if f is not None:
            frames.append(f)
    return frames, end


@pytest.mark.parametrize("kind", list(SOURCES))
def test_source_contract(kind, tmp_path):
    src = SOURCES[kind](tmp_path)
    with pytest.raises(SourceError):
        src.read(0.1)  # not open
    src.open()
    src.open()  # idempotent
    intr = src.intrinsics()
    assert set(intr) == set(src.modalities)
    t0 = time.monotonic()
    first = src.read(0.0)
    assert time.monotonic() - t0 < 1.0  # a zero timeout never blocks
    frames, end = _drain(src)
    if first is not None:
        frames.insert(0, first)
    assert frames, "no frames"
    last = {}
    for f in frames:
        assert f.modality in src.modalities
        assert (f.data.shape[1], f.data.shape[0]) == (intr[f.modality].width, intr[f.modality].height)
        assert not f.data.flags.writeable
        if f.modality is Modality.DEPTH:
            assert f.depth_scale_m and f.depth_scale_m > 0 and f.data.dtype == np.uint16
        assert f.timestamp_ns > last.get(f.modality, -(2**62))
        last[f.modality] = f.timestamp_ns
    if kind == "uvc":
        assert isinstance(end, SourceError)  # the stub stops delivering: a stall, reported with its reason
    else:
        assert isinstance(end, EndOfStream)
        with pytest.raises(EndOfStream):
            src.read(0.1)
    src.close()
    src.close()  # idempotent
    # restart: the same first frame again
    with src:
        again = None
        for _ in range(10):
            again = src.read(1.0)
            if again is not None:
                break
    assert again is not None and again.modality is frames[0].modality
    np.testing.assert_array_equal(again.data, frames[0].data)


@pytest.mark.parametrize("kind", ["synthetic", "replay", "realsense-playback"])
def test_same_path_after_capture(kind, tmp_path):
    src = SOURCES[kind](tmp_path)
    required = sorted(src.modalities, key=[Modality.RGB, Modality.DEPTH, Modality.IR].index)
    with Capture([src], None, Synchronizer.for_fps(required, 30)) as cap:
        sets = list(cap)
    assert sets
    for fs in sets:
        assert fs.modalities == set(required)
        if Modality.DEPTH in fs:
            assert fs[Modality.DEPTH].registered_to is Modality.RGB
