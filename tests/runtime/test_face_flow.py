"""The learned locator's O-Net schedule (``verify_every``): the frames between O-Net runs follow the landmarks'
optical flow, and every check that fails sends the frame back to O-Net."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.runtime.face import LearnedFaceLocator
from edgepad.types import FrameSet, Modality, replace_frame


@pytest.fixture(scope="module")
def framesets():
    from edgepad.drivers.capture import open_capture
    with open_capture("synthetic://default") as cap:
        return [cap.read(2.0) for _ in range(40)]


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _with_rgb(fs, data):
    frames = dict(fs.frames)
    frames[Modality.RGB] = replace_frame(frames[Modality.RGB], data=data)
    return FrameSet(frames, fs.timestamp_ns)


def _locate(loc, fss):
    out, flowed = [], []
    for fs in fss:
        n = loc.searches["flow"]
        out.append(loc.locate(fs))
        flowed.append(loc.searches["flow"] > n)
    return out, flowed


@pytest.mark.parametrize("verify_every", [2, 3])
def test_flow_frames_follow_the_face_and_onet_runs_on_schedule(framesets, verify_every):
    every, _ = _locate(LearnedFaceLocator(verify_every=1), framesets)
    loc = LearnedFaceLocator(verify_every=verify_every)
    sched, flowed = _locate(loc, framesets)
    assert loc.searches["flow"] >= 8
    run = 0
    for a, b, f in zip(every, sched, flowed):
        assert (a is None) == (b is None)
        if a is not None:
            assert _iou(a.box, b.box) > 0.75
            assert b.landmarks.shape == (5, 2) and np.isfinite(b.landmarks).all()
        run = run + 1 if f else 0
        assert run <= verify_every - 1  # never more flow frames in a row than the schedule allows


def test_every_frame_runs_onet_with_verify_every_1(framesets):
    loc = LearnedFaceLocator(verify_every=1)
    _locate(loc, framesets[:10])
    assert loc.searches["flow"] == 0 and loc.searches["flow_failed"] == 0


def test_a_jump_or_a_blank_frame_goes_back_to_onet(framesets):
    loc = LearnedFaceLocator(verify_every=4)
    base = framesets[:6]
    faces, _ = _locate(loc, base)
    assert faces[-1] is not None
    rgb = framesets[6].frames[Modality.RGB].data
    moved = _with_rgb(framesets[6], np.roll(rgb, 60, axis=1))  # the face jumps 60 px: the flow cannot follow
    failed = loc.searches["flow_failed"]
    d = loc.locate(moved)
    ref = LearnedFaceLocator(verify_every=1)
    _locate(ref, base)
    want = ref.locate(moved)
    assert loc.searches["flow_failed"] == failed + 1
    assert d is not None and want is not None and _iou(d.box, want.box) > 0.9
    assert abs(d.box[0] - faces[-1].box[0]) > 10  # not the old place (O-Net refits part-way, as without flow)
    blank = _with_rgb(framesets[7], np.full_like(rgb, 128))
    assert loc.locate(blank) is None  # no texture, no flow; O-Net finds no face
    # and found again by the full search, spread over search_parts frames
    assert any(loc.locate(fs) is not None for fs in framesets[8:8 + loc.search_parts])


@pytest.mark.parametrize("kw", [{"verify_every": 0}, {"verify_every": 1.5}, {"flow_fb_px": 0},
                                {"flow_err": -1.0}, {"flow_spread_px": 0}])
def test_flow_settings_are_checked(kw):
    with pytest.raises(ConfigError):
        LearnedFaceLocator(**kw)
