"""Live-view measurements and preview images (preview.py): boxes through the rig with unregistered depth,
face distance, depth fill, IR level, stream rates and drops, reason hints, auto-levelled IR, overlay."""
from __future__ import annotations

import types

import numpy as np
import pytest

from edgepad.geometry import project_box
from edgepad.runtime.service.preview import (REASON_HINTS, StreamMeter, auto_level, installer_view, reason_hint,
                                             render_published)
from edgepad.types import FrameSet, Modality, Reason, Verdict, make_frame
from tests.helpers.scene import H, W, make_rig, plane_frameset


def window_frameset(rig, z_m=0.5, seq=0, t_ns=1_000_000, ir_seq=None, hole=False):
    """plane_frameset with the depth in the depth (= IR) camera, NOT registered to rgb (window registration)."""
    fs = plane_frameset(rig, z_m=z_m, t_ns=t_ns, seq=seq)
    d = np.full((H, W), round(z_m / 0.001), np.uint16)
    if hole:
        d[:, : W // 2] = 0
    frames = dict(fs.frames)
    frames[Modality.DEPTH] = make_frame("depth", d, t_ns, intrinsics=rig.intrinsics[Modality.DEPTH], sequence=seq,
                                        source="test://plane", depth_scale_m=0.001)
    ir = fs.frames[Modality.IR]
    frames[Modality.IR] = make_frame("ir", ir.data, t_ns, intrinsics=ir.intrinsics,
                                     sequence=seq if ir_seq is None else ir_seq, source="test://plane")
    return FrameSet(frames, t_ns)


def test_every_reason_has_a_plain_language_hint():
    assert set(REASON_HINTS) == set(Reason)
    assert all(len(h) > 15 and "_" not in h for h in REASON_HINTS.values())
    assert "emitter" in reason_hint("no_ir_illumination") and reason_hint("not_a_reason") == "not_a_reason"


def test_window_registration_boxes_in_every_camera_at_the_measured_depth():
    rig = make_rig(baseline_m=0.05, yaw_deg=1.0, distort=False)
    box = (50, 40, 40, 44)
    fs = window_frameset(rig, z_m=0.8)
    meter = StreamMeter()
    meter.update(fs)
    boxes, view = installer_view(fs, box, rig, meter)
    assert set(boxes) == {Modality.RGB, Modality.DEPTH, Modality.IR}
    rgb_k, ir_k = rig.intrinsics[Modality.RGB], rig.intrinsics[Modality.IR]
    # the box-size guess (fx·0.15/40 = 0.56 m) is replaced by the depth measured in the depth window: 0.8 m
    assert view["face_distance_m"] == pytest.approx(0.8, abs=0.01) and view["distance_measured"]
    want = project_box(box, 0.8, rgb_k, ir_k, rig.extrinsics(Modality.RGB, Modality.IR))
    assert np.abs(np.subtract(boxes[Modality.IR], want)).max() <= 1 and boxes[Modality.DEPTH] == boxes[Modality.IR]
    assert view["depth_fill"] == 1.0 and view["depth_range_m"] == [0.55, 1.3]
    assert view["boxes"]["ir"] == list(boxes[Modality.IR])
    h = np.asarray(view["rgb_to_ir"])                           # plane homography = the projected box corners
    c = h @ np.array([box[0], box[1], 1.0])
    assert np.allclose(c[:2] / c[2], want[:2], atol=1.0)
    assert 0.2 < view["ir"]["level"] < 0.8 and view["ir"]["exposure"] == "ok"
    # half the face window is a hole: fill about a half; without depth: the guess, marked as not measured
    _, v2 = installer_view(window_frameset(rig, z_m=0.8, hole=True), (40, 40, 100, 44), rig)
    x, _, w, _ = v2["boxes"]["depth"]
    assert x < W // 2 < x + w and v2["depth_fill"] == pytest.approx((x + w - W // 2) / w, abs=0.02)
    no_depth = FrameSet({m: f for m, f in fs.frames.items() if m is not Modality.DEPTH}, fs.timestamp_ns)
    b3, v3 = installer_view(no_depth, box, rig)
    assert Modality.IR in b3 and not v3["distance_measured"]
    assert v3["face_distance_m"] == pytest.approx(150.0 * 0.15 / 40, abs=0.01)         # fx · 0.15 m / w


def test_stream_meter_rates_and_drops_from_device_counters():
    rig = make_rig(baseline_m=0.05, yaw_deg=0.0, distort=False)
    meter = StreamMeter(window=10)
    for i in range(12):                                  # 25 fps; IR skips every 4th counter
        fs = window_frameset(rig, seq=i, t_ns=1_000_000 + i * 40_000_000, ir_seq=i + i // 4)
        meter.update(fs)
        meter.update(fs)                                 # the same frames again are not counted
    d = meter.to_dict()
    assert d["rgb"] == {"fps": 25.0, "drops": 0} and d["ir"]["drops"] == 2 and d["ir"]["fps"] == 25.0
    for i in range(3):                                   # the camera restarts: counters from 0, 10 fps
        meter.update(window_frameset(rig, seq=i, t_ns=2_000_000_000 + i * 100_000_000))
    d = meter.to_dict()
    assert d["rgb"]["fps"] == 10.0 and d["ir"]["drops"] == 2


def test_previews_auto_level_ir_and_overlay_rgb_edges_through_the_rig():
    cv2 = pytest.importorskip("cv2")
    dim = np.zeros((60, 80), np.uint8)
    dim[20:40, 30:50] = 40                               # a dim square on black
    lv = auto_level(dim)
    assert lv[30, 40] == 255 and lv[0, 0] == 0
    rig = make_rig(baseline_m=0.05, yaw_deg=0.0, distort=False)
    fs = window_frameset(rig, z_m=0.6)
    boxes, view = installer_view(fs, (50, 40, 40, 44), rig)
    p = types.SimpleNamespace(frames={m: f.data for m, f in fs.frames.items()}, boxes=boxes, view=view,
                              frames_verdict=Verdict.LIVE)
    for m in Modality:
        img = render_published(p, m)
        green = np.all(np.abs(img.astype(int) - (80, 200, 40)) <= 2, axis=2)
        assert img.shape == (H, W, 3) and green.sum() > 40, m            # the verdict-coloured box is drawn
    ov = render_published(p, Modality.IR, overlay=True)
    magenta = np.all(ov == (255, 0, 255), axis=2)
    assert magenta.sum() > 50
    # the warped rgb edges land on the IR image's own edges (the rig is right): most within 2 px
    ir_edges = cv2.Canny(cv2.GaussianBlur(auto_level(fs.frames[Modality.IR].data), (5, 5), 0), 40, 120)
    near = cv2.dilate(ir_edges, np.ones((5, 5), np.uint8)) > 0
    assert near[magenta].mean() > 0.6
    assert render_published(p, Modality.RGB, overlay=True) is None
