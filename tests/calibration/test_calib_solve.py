"""Synthetic round trip, closed loop through register_depth, bad input, report and CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgepad.calibration.board import detect_board  # noqa: E402
from edgepad.calibration.solve import calibrate_intrinsics  # noqa: E402
from edgepad.calibration.synthetic import board_centred_pose, render_depth_scene  # noqa: E402
from edgepad.calibration.tool import (SolveOptions, View, calibrate_rig, compare_rigs,  # noqa: E402
                                      load_folder_views, pairing_key)
from edgepad.errors import CalibrationError  # noqa: E402
from edgepad.geometry import Rig, load_rig, pixel_rays  # noqa: E402
from edgepad.types import Modality, make_frame  # noqa: E402

from tests.helpers.calib_scene import IR_TO_RGB, SPEC, render_views  # noqa: E402


def test_synthetic_round_trip_recovers_r_and_t(synth_rig, synth_run):
    ext = synth_run.rig.to_reference[Modality.IR]
    d_rot = ext.then(IR_TO_RGB.inverse()).angle_deg
    d_t_mm = float(np.linalg.norm(ext.t - IR_TO_RGB.t) * 1000)
    assert d_rot < 0.1, d_rot
    assert d_t_mm < 1.0, d_t_mm
    rgb, ir = synth_run.rig.intrinsics[Modality.RGB], synth_run.rig.intrinsics[Modality.IR]
    assert abs(rgb.fx / synth_rig.rgb.fx - 1) < 0.005 and abs(ir.fx / synth_rig.ir.fx - 1) < 0.01
    assert abs(ir.cx - synth_rig.ir.cx) < 1.5 and abs(ir.cy - synth_rig.ir.cy) < 1.5
    # depth is the IR camera (RealSense): identical entries
    assert synth_run.rig.intrinsics[Modality.DEPTH] == ir
    assert synth_run.rig.to_reference[Modality.DEPTH] == ext
    assert synth_run.mono[Modality.RGB].rms_px < 0.2 and synth_run.stereo.rms_px < 0.3


def test_closed_loop_rig_drives_depth_registration(synth_rig, synth_run, tmp_path):
    """calibrate → rig file → register_depth of a synthetic IR-camera scene lines up with the RGB ground truth."""
    from edgepad.drivers.registration import register_depth
    from edgepad.geometry import save_rig
    save_rig(synth_run.rig, tmp_path / "rig.json")
    rig = load_rig(tmp_path / "rig.json")
    true_ir, true_rgb = synth_rig.ir, synth_rig.rgb
    # the scene lives in the IR camera frame; the RGB ground truth casts RGB rays into the same scene
    depth_ir = render_depth_scene(true_ir)
    # per RGB pixel: the surface it sees, with the depth camera's z (registration moves depth values, rs.align-style)
    truth_rgb = render_depth_scene(true_rgb, camera_from=IR_TO_RGB.inverse(), z_in_scene=True).astype(np.float64)
    frame = make_frame(Modality.DEPTH, depth_ir, 0, intrinsics=rig.intrinsics[Modality.DEPTH], depth_scale_m=0.001)
    reg = register_depth(frame, rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH, Modality.RGB))
    got = reg.data.astype(np.float64)
    both = (got > 0) & (truth_rgb > 0)
    assert both.mean() > 0.6
    err = np.abs(got - truth_rgb)[both]
    assert np.mean(err <= 3) > 0.97, np.percentile(err, [50, 90, 99])  # mm
    # the box lines up: its footprint in RGB has the true centroid (sub-pixel) and differs from the truth only by
    # the ±1 px edge band that nearest-wins rectangle filling produces
    near_t, near_g = (truth_rgb > 0) & (truth_rgb < 600), (got > 0) & (got < 600)

    def centroid(mask):
        ys, xs = np.nonzero(mask)
        return np.array([xs.mean(), ys.mean()])

    shift_good = np.linalg.norm(centroid(near_g) - centroid(near_t))
    perimeter = 4 * np.sqrt(near_t.sum())
    assert shift_good < 0.6, shift_good
    assert (near_t ^ near_g).sum() < 1.5 * perimeter
    # a rig with a baseline 10 mm off does not line up (the test can fail)
    bad = Rig(rig.reference, rig.intrinsics,
              {**rig.to_reference, Modality.DEPTH: type(IR_TO_RGB).from_rt(
                  rig.to_reference[Modality.DEPTH].r, rig.to_reference[Modality.DEPTH].t + [0.01, 0, 0])},
              rig.depth_scale_m)
    reg_bad = register_depth(frame, bad.intrinsics[Modality.RGB], bad.extrinsics(Modality.DEPTH, Modality.RGB))
    near_b = (reg_bad.data > 0) & (reg_bad.data < 600)
    assert np.linalg.norm(centroid(near_b) - centroid(near_t)) > 5.0


def test_too_few_views_and_mismatched_sizes(synth_rig):
    with pytest.raises(CalibrationError, match="too few"):
        calibrate_rig(synth_rig.views[:3], SPEC)
    small = cv2.resize(synth_rig.views[0].rgb, (320, 240))
    views = [View("odd", small)] + [View(v.name, v.rgb) for v in synth_rig.views[1:6]]
    with pytest.raises(CalibrationError, match="mismatched image sizes"):
        calibrate_rig(views, SPEC)


def test_fronto_parallel_views_are_degenerate(synth_rig):
    rng = np.random.default_rng(0)
    views = []
    for i, (x, y) in enumerate([(-0.06, -0.04), (0.06, -0.04), (0.0, 0.0), (-0.06, 0.04), (0.06, 0.04), (0, 0.03)]):
        pose = board_centred_pose(SPEC, 0, 0, 5 * i, (x, y, 0.55 + 0.02 * i))
        views.append(View(str(i), np.repeat(synth_rig.rgb_cam.render(pose, rng)[..., None], 3, axis=2)))
    with pytest.raises(CalibrationError, match="fronto-parallel"):
        calibrate_rig(views, SPEC)


def test_outlier_view_is_flagged_and_dropped(synth_rig):
    dets = [detect_board(v.rgb, SPEC) for v in synth_rig.views[:10]]
    bad = dets[4]
    shifted = type(bad)(bad.ids, bad.image_points + np.random.default_rng(1).normal(0, 3.0, bad.image_points.shape),
                        bad.object_points, bad.image_size, bad.marker_ids, bad.marker_corners)
    dets[4] = shifted
    names = [f"v{i}" for i in range(10)]
    kept = calibrate_intrinsics(dets, names, fix_k3=True)
    assert list(kept.outliers) == ["v4"] and "v4" in kept.names
    dropped = calibrate_intrinsics(dets, names, fix_k3=True, drop_outliers=True)
    assert dropped.dropped and "v4" not in dropped.names and dropped.rms_px < kept.rms_px


def test_pairing_key():
    from pathlib import Path
    assert pairing_key(Path("rgb_0003.png")) == pairing_key(Path("ir-0003.png")) == "0003"
    assert pairing_key(Path("0003_color.jpg")) == "0003"
    assert pairing_key(Path("ir.png")) == "ir"


def test_report_and_cli_offline(synth_rig, tmp_path):
    from edgepad.cli import main
    for sub in ("rgb", "ir"):
        (tmp_path / sub).mkdir()
    for v in synth_rig.views[:12]:
        cv2.imwrite(str(tmp_path / "rgb" / f"rgb_{v.name}.png"), cv2.cvtColor(v.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "ir" / f"ir_{v.name}.png"), v.ir)
    cv2.imwrite(str(tmp_path / "ir" / "ir_extra.png"), synth_rig.views[0].ir)  # unpaired: skipped
    assert len(load_folder_views(tmp_path / "rgb", tmp_path / "ir")) == 12
    from edgepad.calibration.board import save_board
    save_board(SPEC, tmp_path / "board.yaml")
    code = main(["calibrate", "offline", "--rgb", str(tmp_path / "rgb"), "--ir", str(tmp_path / "ir"),
                 "--board", str(tmp_path / "board.yaml"), "--out", str(tmp_path / "rig.json"),
                 "--report", str(tmp_path / "report"), "--fix-k3", "--zero-tangent"])
    assert code == 0
    rig = load_rig(tmp_path / "rig.json")
    assert rig.extrinsics(Modality.IR, Modality.RGB).then(IR_TO_RGB.inverse()).angle_deg < 0.2
    html = (tmp_path / "report" / "index.html").read_text()
    for page in ("overlay.png", "errors.png", "coverage.png", "corners.png"):
        assert page in html
        img = cv2.imread(str(tmp_path / "report" / page))
        assert img is not None and img.shape[0] > 50 and img.std() > 5
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert len(summary["per_view_px"]["ir"]) == 12
    # compare: a rig against itself is zero, against a shifted one shows the shift
    assert main(["calibrate", "compare", str(tmp_path / "rig.json"), str(tmp_path / "rig.json")]) == 0
    cmp = compare_rigs(rig, rig)
    assert all(abs(v) < 1e-9 for row in cmp.values() for k, v in row.items() if k != "size_match")
    # no board in any image → exit code 1 with a message (typed error through the CLI)
    for f in (tmp_path / "rgb").iterdir():
        cv2.imwrite(str(f), np.full((480, 640, 3), 90, np.uint8))
    assert main(["calibrate", "offline", "--rgb", str(tmp_path / "rgb"), "--board", str(tmp_path / "board.yaml"),
                 "--out", str(tmp_path / "rig2.json")]) == 1


def test_overlay_uses_the_rig(synth_run):
    """The overlay's IR-in-RGB image lines up with RGB when the rig is right (board-plane depth path)."""
    from edgepad.calibration.report import board_plane_depth, ir_to_rgb
    from edgepad.drivers.registration import register_depth
    rig = synth_run.rig
    name = synth_run.stereo.names[0]
    view = next(v for v in synth_run.views if v.name == name)
    raw = board_plane_depth(synth_run, name)
    frame = make_frame(Modality.DEPTH, raw, 0, intrinsics=rig.intrinsics[Modality.DEPTH], depth_scale_m=0.001)
    z = register_depth(frame, rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH, Modality.RGB)).data
    warped = ir_to_rgb(rig, view.ir, z.astype(float) * 0.001)
    det_rgb = detect_board(view.rgb, SPEC)
    det_ir = detect_board(warped, SPEC)
    assert det_ir is not None
    common = np.intersect1d(det_rgb.ids, det_ir.ids)
    d = det_rgb.subset(common).image_points - det_ir.subset(common).image_points
    assert np.median(np.linalg.norm(d, axis=1)) < 1.0
    assert pixel_rays(rig.intrinsics[Modality.RGB])[0].shape == (480, 640)


@pytest.mark.realsense
def test_import_realsense_factory_and_compare(shared_data, tmp_path):
    from edgepad.calibration.tool import import_realsense
    rig = import_realsense(shared_data / "realsense" / "single_depth_color_640x480.bag")
    rgb, depth = rig.intrinsics[Modality.RGB], rig.intrinsics[Modality.DEPTH]
    assert (round(rgb.fx, 3), round(rgb.fy, 3), round(rgb.cx, 3), round(rgb.cy, 3)) == (613.204, 613.419, 319.939,
                                                                                        239.183)
    assert (round(depth.fx, 3), round(depth.cx, 3), round(depth.cy, 3)) == (390.431, 331.388, 242.187)
    t = rig.to_reference[Modality.DEPTH].t
    assert np.allclose(t, (0.0143113, 0.000602306, 0.000610804), atol=1e-6)
    assert 0.8 < rig.to_reference[Modality.DEPTH].angle_deg < 1.0
    assert rig.intrinsics[Modality.IR] == depth and rig.depth_scale_m == pytest.approx(0.001)
    cmp = compare_rigs(rig, Rig(rig.reference, {**rig.intrinsics, Modality.RGB: type(rgb)(
        640, 480, rgb.fx * 1.01, rgb.fy, rgb.cx + 2, rgb.cy, rgb.distortion, rgb.coeffs)}, rig.to_reference,
        rig.depth_scale_m))
    assert cmp["rgb"]["fx_pct"] == pytest.approx(1.0) and cmp["rgb"]["cx_px"] == pytest.approx(2.0)
    assert cmp["depth"]["rotation_deg"] == pytest.approx(0.0, abs=1e-4)
