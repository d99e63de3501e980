"""edgepad.geometry projection/distortion against pyrealsense2's rsutil and OpenCV, for every model."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad._optional import lazy
from edgepad.drivers.registration import to_rs_intrinsics
from edgepad.geometry import Intrinsics, deproject, distort, pixel_rays, project, undistort

rs = lazy("pyrealsense2", "realsense")  # the `realsense` marker skips where it is absent

COEFFS = (0.12, -0.25, 0.004, -0.003, 0.08)
MODELS = ["none", "brown_conrady", "modified_brown_conrady", "inverse_brown_conrady"]


def _points(rng, n=150):
    p = np.c_[rng.uniform(-0.4, 0.4, (n, 2)), rng.uniform(0.4, 2.5, n)]
    p[:, :2] *= p[:, 2:3]
    return p


@pytest.mark.realsense
@pytest.mark.parametrize("model", MODELS)
def test_project_and_deproject_match_rsutil(model):
    rng = np.random.default_rng(MODELS.index(model))
    intr = Intrinsics(640, 480, 600.5, 601.2, 321.3, 239.7, model, COEFFS)
    ri = to_rs_intrinsics(rs, intr)
    pts = _points(rng)
    theirs = np.array([rs.rs2_project_point_to_pixel(ri, [float(v) for v in p]) for p in pts])
    np.testing.assert_allclose(project(pts, intr), theirs, atol=2e-4)  # float32 in librealsense
    px = rng.uniform(0, 640, (150, 2))
    z = rng.uniform(0.3, 3.0, 150)
    theirs = np.array([rs.rs2_deproject_pixel_to_point(ri, [float(a), float(b)], float(d))
                       for (a, b), d in zip(px, z)])
    np.testing.assert_allclose(deproject(px, z, intr), theirs, atol=2e-6)


def test_brown_conrady_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    intr = Intrinsics(640, 480, 600.5, 601.2, 321.3, 239.7, "brown_conrady", COEFFS)
    pts = _points(rng)
    cv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), intr.k, intr.dist5)
    np.testing.assert_allclose(project(pts, intr), cv[:, 0], atol=1e-6)
    px = rng.uniform(40, 600, (150, 2))
    und = cv2.undistortPoints(px.reshape(-1, 1, 2), intr.k, intr.dist5).reshape(-1, 2)
    np.testing.assert_allclose(deproject(px, 1.0, intr)[:, :2], und, atol=2e-6)


@pytest.mark.parametrize("model", ["brown_conrady", "inverse_brown_conrady"])
def test_undistort_inverts_distort(model):
    """Deprojection inverts projection (the iterative inverse converges for moderate distortion)."""
    rng = np.random.default_rng(3)
    intr = Intrinsics(640, 480, 600.0, 600.0, 320.0, 240.0, model, COEFFS)
    x, y = rng.uniform(-0.4, 0.4, 200), rng.uniform(-0.3, 0.3, 200)
    dx, dy = distort(x, y, intr)  # inverse: the forward (modified) form; deprojection inverts it
    ux, uy = undistort(dx, dy, intr)
    np.testing.assert_allclose(ux, x, atol=1e-5)
    np.testing.assert_allclose(uy, y, atol=1e-5)


def test_modified_has_no_inverse_and_none_is_identity():
    x, y = np.array([0.1, -0.2]), np.array([0.05, 0.3])
    mod = Intrinsics(64, 48, 50, 50, 32, 24, "modified_brown_conrady", COEFFS)
    assert undistort(x, y, mod) == (x, y)  # RealSense cannot deproject a forward-distorted image
    none = Intrinsics(64, 48, 50, 50, 32, 24, "none", COEFFS)
    assert distort(x, y, none) == (x, y) and undistort(x, y, none) == (x, y)
    rx, ry = pixel_rays(none)
    assert rx.shape == (48, 64) and rx[0, 32] == 0.0 and ry[24, 0] == 0.0
