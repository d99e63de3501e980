"""Capture mode: a scripted source shows good, blurred, partial, duplicate and moving views."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgepad.calibration.capture import CaptureConfig, ViewCollector, capture_views, sharpness  # noqa: E402
from edgepad.calibration.board import detect_board, to_gray  # noqa: E402
from edgepad.calibration.synthetic import board_centred_pose  # noqa: E402
from edgepad.drivers.base import BaseSource  # noqa: E402
from edgepad.errors import EndOfStream  # noqa: E402
from edgepad.types import Modality, make_frame  # noqa: E402

from tests.helpers.calib_scene import IR, IR_TO_RGB, RGB, SPEC  # noqa: E402


class ScriptedBoardSource(BaseSource):
    """Emits (rgb, ir) frame pairs of board poses, 33 ms apart: each shot is (pose, blur sigma, frames held)."""

    def __init__(self, rig, shots):
        super().__init__("scripted://board", ["rgb", "ir"])
        self.shots = shots  # list of (pose, blur_sigma)
        self.synth = rig
        self.queue = []

    def _open_impl(self):
        rng = np.random.default_rng(0)
        frames = [(pose, blur) for pose, blur, hold in self.shots for _ in range(hold)]
        for i, (pose, blur) in enumerate(frames):
            rgb = self.synth.rgb_cam.render(pose, rng)
            ir = self.synth.ir_cam.render(pose.then(IR_TO_RGB.inverse()), rng)
            if blur:
                rgb, ir = cv2.GaussianBlur(rgb, (0, 0), blur), cv2.GaussianBlur(ir, (0, 0), blur)
            t = 1_000_000_000 + i * 33_000_000
            self.queue.append(make_frame("rgb", np.repeat(rgb[..., None], 3, axis=2), t, intrinsics=RGB, sequence=i))
            self.queue.append(make_frame("ir", ir, t + 1_000_000, intrinsics=IR, sequence=i))

    def _close_impl(self):
        self.queue.clear()

    def _read_impl(self, timeout_s):
        if not self.queue:
            raise EndOfStream(self.uri)
        return self.queue.pop(0)


def test_sharpness_drops_with_blur(synth_rig):
    img = to_gray(synth_rig.views[1].rgb)
    det = detect_board(img, SPEC)
    s = [sharpness(cv2.GaussianBlur(img, (0, 0), b) if b else img, det) for b in (0, 1.5, 3.0)]
    assert s[0] > s[1] > s[2]


def test_capture_rejects_bad_views_and_tracks_coverage(synth_rig):
    p = lambda rx, ry, x, y, z=0.6: board_centred_pose(SPEC, rx, ry, 0, (x, y, z))  # noqa: E731
    shots = [
        # the first frame of each new pose is "moving" (the board just moved); the second is judged on its merits
        (p(0, 0, 0, 0), 0, 2),            # accepted (frontal)
        (p(0, 0, 0.002, 0), 0, 3),        # duplicate of the first (moved 2 mm)
        (p(30, 0, -0.05, 0.03), 0, 2),    # accepted (tilt)
        (p(30, 0, -0.05, 0.03), 1.8, 2),  # blurred (still detected, sharpness ≈ 0.21)
        (p(0, 30, 0.05, -0.03), 0, 2),    # accepted
        (p(0, 30, 0.30, 0.0), 0, 2),      # mostly out of view: partial or no board
        (p(-30, 0, 0.06, 0.05), 0, 2),    # accepted
        (p(-30, 0, 0.10, 0.05), 0, 1),    # moved 40 mm since the previous frame: moving
    ]
    src = ScriptedBoardSource(synth_rig, shots)
    updates = []
    with src:
        col = capture_views([src], SPEC, CaptureConfig(views=10),
                            on_update=lambda c, imgs: updates.append(c.coverage.last_reason))
    assert len(col.views) == 4, "\n".join(updates)
    assert all(v.rgb is not None and v.ir is not None for v in col.views)
    reasons = " | ".join(updates)
    for word in ("duplicate", "blurred", "moving"):
        assert word in reasons, reasons
    assert "partial" in reasons or "no board" in reasons
    text = col.coverage.text(10)
    assert "rgb coverage" in text and "ir coverage" in text and "still missing" in text
    assert col.coverage.tilts["frontal"] >= 1 and sum(col.coverage.tilts.values()) == 4


def test_collector_completes_coverage(synth_rig):
    col = ViewCollector(SPEC, CaptureConfig(views=30, still_px=1e9))
    for v in synth_rig.views:
        col.offer({Modality.RGB: v.rgb, Modality.IR: v.ir})
    assert len(col.views) >= 10
    assert not col.coverage.missing_tilts()
