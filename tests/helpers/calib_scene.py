"""A synthetic stereo rig for calibration tests: a ChArUco board rendered into an RGB and an IR camera with known
K, distortion and IR→RGB extrinsics (IR grey, low-contrast, noisy, blurred)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("cv2")

from edgepad.calibration.board import BoardSpec  # noqa: E402
from edgepad.calibration.synthetic import (RGB_LOOK, BoardCamera, Look, board_centred_pose,  # noqa: E402
                                           default_poses, pose_matrix)
from edgepad.calibration.tool import View  # noqa: E402
from edgepad.geometry import Extrinsics, Intrinsics  # noqa: E402

SPEC = BoardSpec(kind="charuco", squares_x=7, squares_y=5, square_m=0.05, marker_m=0.03, dictionary="DICT_4X4_50")
RGB = Intrinsics(640, 480, 600.0, 602.0, 322.0, 238.0, "brown_conrady", (0.08, -0.15, 0.0, 0.0, 0.0))
IR = Intrinsics(640, 480, 470.0, 470.0, 318.0, 243.0, "brown_conrady", (-0.05, 0.06, 0.0, 0.0, 0.0))
IR_TO_RGB = pose_matrix(0.6, -0.8, 0.3, (0.035, -0.002, 0.001))
IR_LOOK_TEST = Look(black=70.0, white=150.0, background=95.0, noise_sigma=3.0, blur_sigma=1.0)


@dataclass
class SynthRig:
    spec: BoardSpec
    rgb: Intrinsics
    ir: Intrinsics
    ir_to_rgb: Extrinsics
    views: list
    poses: list
    rgb_cam: BoardCamera
    ir_cam: BoardCamera


def render_views(n: int, seed: int = 2) -> SynthRig:
    rgb_cam = BoardCamera(SPEC, RGB, RGB_LOOK)
    ir_cam = BoardCamera(SPEC, IR, IR_LOOK_TEST)
    rng = np.random.default_rng(seed)
    views, poses = [], []
    rgb_to_ir = IR_TO_RGB.inverse()
    for i, p in enumerate(default_poses(SPEC, n, 0.6, seed=seed)):
        pose = board_centred_pose(SPEC, *p)
        views.append(View(f"{i:04d}", np.repeat(rgb_cam.render(pose, rng)[..., None], 3, axis=2),
                          ir_cam.render(pose.then(rgb_to_ir), rng)))
        poses.append(pose)
    return SynthRig(SPEC, RGB, IR, IR_TO_RGB, views, poses, rgb_cam, ir_cam)
