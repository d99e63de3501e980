"""Boards: the board file, rendering at true scale (PNG/PDF), detection on rendered and real ChArUco photos."""
from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgepad.calibration.board import (BoardSpec, check_board_consistency, detect_board, load_board,  # noqa: E402
                                       render_board, save_board, write_board)
from edgepad.calibration.solve import calibrate_intrinsics  # noqa: E402
from edgepad.calibration.tool import View, calibrate_rig  # noqa: E402
from edgepad.errors import CalibrationError, ConfigError  # noqa: E402


def test_board_file_round_trip_and_typo(tmp_path):
    spec = BoardSpec(kind="charuco", squares_x=6, squares_y=8, square_m=0.03, marker_m=0.022,
                     dictionary="DICT_5X5_250", legacy_pattern=True)
    save_board(spec, tmp_path / "b.yaml")
    assert load_board(tmp_path / "b.yaml") == spec
    (tmp_path / "bad.yaml").write_text("kind: charuco\nsquare_mm: 40\n")
    with pytest.raises(ConfigError, match="square_m"):
        load_board(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="metres"):
        BoardSpec(square_m=40.0)
    with pytest.raises(ConfigError, match="marker_m"):
        BoardSpec(square_m=0.04, marker_m=0.05)


@pytest.mark.parametrize("spec", [BoardSpec(), BoardSpec(kind="chessboard", squares_x=9, squares_y=6, square_m=0.025),
                                  BoardSpec(squares_x=6, squares_y=6, legacy_pattern=True)])
def test_rendered_board_is_detected_exactly(spec):
    ppm = 2000.0
    img = cv2.GaussianBlur(render_board(spec, ppm, margin_m=0.02), (0, 0), 1.0)
    det = detect_board(img, spec)
    assert det is not None and det.count == spec.n_corners
    assert det.ids.shape == (spec.n_corners,)  # flattened ids
    truth = (det.object_points[:, :2] + 0.02) * ppm - 0.5
    err = np.abs(det.image_points - truth)
    if spec.kind == "chessboard":  # a chessboard may be found in either reading direction
        err = np.minimum(err, np.abs(det.image_points[::-1] - truth))
    assert err.max() < 0.05


def test_png_is_true_scale(tmp_path):
    spec = BoardSpec()
    path = write_board(spec, tmp_path / "board.png", dpi=200)
    data = path.read_bytes()
    i = data.index(b"pHYs")
    ppm_x, ppm_y, unit = struct.unpack(">IIB", data[i + 4:i + 13])
    assert unit == 1 and ppm_x == ppm_y == round(200 / 0.0254)
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    w_m = spec.size_m[0] + 0.02
    assert abs(img.shape[1] / ppm_x - w_m) < 2 / ppm_x
    assert detect_board(img, spec).count == spec.n_corners


def test_pdf_places_board_at_true_size(tmp_path):
    spec = BoardSpec(kind="charuco", squares_x=5, squares_y=7, square_m=0.03, marker_m=0.02)
    path = write_board(spec, tmp_path / "board.pdf", dpi=150)
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\n(\d+)", data).group(1))
    assert data[startxref:startxref + 4] == b"xref"
    # every xref offset points at its object
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", data)]
    for k, off in enumerate(offsets, start=1):
        assert data[off:].startswith(f"{k} 0 obj".encode())
    w_pt, _, _, _, x0, _ = (float(v) for v in re.search(rb"q ([\d.]+) 0 0 ([\d.]+) ([\d.]+) ([\d.]+) cm /Im0",
                                                         data).groups() + (0, 0))
    assert abs(w_pt - (spec.size_m[0] + 0.02) / 0.0254 * 72) < 0.01
    width_px = int(re.search(rb"/Width (\d+)", data).group(1))
    assert abs(width_px - (spec.size_m[0] + 0.02) * 150 / 0.0254) <= 1


def test_real_charuco_photos_match_gold_marker_corners(shared_data):
    folder = shared_data / "charuco"
    gold = json.loads((folder / "gold_marker_corners.json").read_text())
    spec = BoardSpec(kind="charuco", squares_x=5, squares_y=7, square_m=0.04, marker_m=0.02,
                     dictionary="DICT_6X6_250")
    for name, n in (("choriginal.jpg", 17), ("chocclusion_original.jpg", 13)):
        ref = gold[name]["marker_corners_xy_clockwise"]
        assert len(ref) == n
        det = detect_board(cv2.imread(str(folder / name)), spec)
        assert det is not None and det.marker_ids.ndim == 1 and det.ids.ndim == 1
        assert sorted(det.marker_ids.tolist()) == sorted(int(k) for k in ref)
        for mid, corners in ref.items():
            found = det.marker_corners[list(det.marker_ids).index(int(mid))].reshape(-1)
            assert np.abs(found - np.asarray(corners, float)).max() <= gold[name]["tolerance_px"]
        check_board_consistency(det, spec)  # the right board file passes


def _reference_intrinsics(path):
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    k = fs.getNode("camera_matrix").mat()
    fs.release()
    return k


def test_real_photos_intrinsics_within_tolerance_of_reference(shared_data):
    folder = shared_data / "charuco"
    spec = BoardSpec(kind="charuco", squares_x=5, squares_y=7, square_m=0.04, marker_m=0.02,
                     dictionary="DICT_6X6_250")
    dets = [detect_board(cv2.imread(str(folder / f"img_0{i}.jpg")), spec) for i in range(4)]
    res = calibrate_intrinsics(dets, min_views=4)
    k = _reference_intrinsics(folder / "tutorial_camera_charuco.yml")
    i = res.intrinsics
    assert abs(i.fx / k[0, 0] - 1) < 0.02 and abs(i.fy / k[1, 1] - 1) < 0.02
    assert abs(i.cx - k[0, 2]) < 3 and abs(i.cy - k[1, 2]) < 3
    assert res.rms_px < 0.5
    assert len(res.per_view_px) == 4 and (res.tilt_deg > 10).any()


def test_board_file_contradicting_images_is_a_config_error(shared_data):
    img = cv2.imread(str(shared_data / "charuco" / "choriginal.jpg"))
    views = [View(f"{i}", cv2.cvtColor(img, cv2.COLOR_BGR2RGB)) for i in range(4)]
    wrong_dict = BoardSpec(kind="charuco", squares_x=5, squares_y=7, square_m=0.04, marker_m=0.02,
                           dictionary="DICT_4X4_50")
    with pytest.raises(ConfigError, match="DICT_6X6"):
        calibrate_rig(views, wrong_dict)
    too_small = BoardSpec(kind="charuco", squares_x=3, squares_y=3, square_m=0.04, marker_m=0.02,
                          dictionary="DICT_6X6_250")
    with pytest.raises(ConfigError, match="squares"):
        calibrate_rig(views, too_small)
    wrong_ratio = BoardSpec(kind="charuco", squares_x=5, squares_y=7, square_m=0.04, marker_m=0.035,
                            dictionary="DICT_6X6_250")
    with pytest.raises(ConfigError, match="marker/square ratio"):
        calibrate_rig(views, wrong_ratio)


def test_no_board_is_a_calibration_error():
    views = [View(f"{i}", np.full((120, 160, 3), 128, np.uint8)) for i in range(4)]
    with pytest.raises(CalibrationError, match="no board found"):
        calibrate_rig(views, BoardSpec())
