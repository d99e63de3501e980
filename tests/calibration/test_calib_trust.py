"""Calibration an installer can trust: one corner numbering, consistent stereo pairs, a go/no-go verdict with a
non-zero exit, compare tolerances, printable boards, the single RealSense conversion, real photos."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgepad.calibration import tool  # noqa: E402
from edgepad.calibration.board import (PAPER_MM, BoardSpec, canonical_chessboard_order, detect_board,  # noqa: E402
                                       fit_to_paper, rotate_detection_180, save_board, write_board)
from edgepad.calibration.solve import calibrate_stereo  # noqa: E402
from edgepad.calibration.synthetic import (RGB_LOOK, BoardCamera, board_centred_pose,  # noqa: E402
                                           default_poses)
from edgepad.calibration.tool import (CalibrationRejected, CompareTolerance, SolveOptions, View,  # noqa: E402
                                      calibrate_rig, compare_rigs, exceeded, require_go)
from edgepad.errors import ConfigError  # noqa: E402
from edgepad.geometry import Rig, load_rig, save_rig  # noqa: E402
from edgepad.types import Modality  # noqa: E402

from tests.helpers.calib_scene import IR, IR_LOOK_TEST, IR_TO_RGB, RGB  # noqa: E402

CHESS = BoardSpec(kind="chessboard", squares_x=10, squares_y=7, square_m=0.03)


@pytest.fixture(scope="module")
def chess_rig():
    """14 chessboard views rendered into the RGB and IR cameras of the shared synthetic rig (known truth)."""
    rgb_cam, ir_cam = BoardCamera(CHESS, RGB, RGB_LOOK), BoardCamera(CHESS, IR, IR_LOOK_TEST)
    rng = np.random.default_rng(5)
    views = []
    for i, p in enumerate(default_poses(CHESS, 14, 0.5, seed=3)):
        pose = board_centred_pose(CHESS, *p)
        views.append(View(f"{i:04d}", np.repeat(rgb_cam.render(pose, rng)[..., None], 3, axis=2),
                          ir_cam.render(pose.then(IR_TO_RGB.inverse()), rng)))
    return views


def _raw(gray, sb: bool) -> np.ndarray:
    if sb:
        ok, c = cv2.findChessboardCornersSB(gray, CHESS.inner_corners, flags=cv2.CALIB_CB_EXHAUSTIVE)
    else:
        ok, c = cv2.findChessboardCorners(gray, CHESS.inner_corners)
    assert ok
    return c.reshape(-1, 2).astype(np.float64)


@pytest.mark.parametrize("rz", [0.0, 180.0, 170.0, 12.0])
def test_one_numbering_for_both_orders_and_both_detectors(rz):
    cam = BoardCamera(CHESS, RGB, RGB_LOOK)
    img = cam.render(board_centred_pose(CHESS, 15, -10, rz, (0.01, 0.0, 0.6)))
    sb, classic = _raw(img, True), _raw(img, False)
    flipped_input = sb[::-1]  # the same grid handed over the other way round
    a, b, c = (canonical_chessboard_order(x, CHESS.inner_corners) for x in (sb, classic, flipped_input))
    assert np.median(np.linalg.norm(a - b, axis=1)) < 1.0  # SB and classic agree once renumbered
    assert np.allclose(a, c)
    g = a.reshape(6, 9, 2)
    assert g[:, -1, 0].mean() > g[:, 0, 0].mean()  # rows run left-to-right in the image
    assert g[-1, :, 1].mean() > g[0, :, 1].mean()  # seen from the front: rows go down
    det = detect_board(img, CHESS)
    assert np.median(np.linalg.norm(det.image_points - a, axis=1)) < 1.0


def test_stereo_chessboard_known_truth_repairs_a_flipped_pair(chess_rig, monkeypatch):
    """One IR view numbered the other way round (as mixed SB/classic detections do) is found, renumbered, reported."""
    real = tool.detect_board
    target = chess_rig[3].ir

    def detect(img, spec, **kw):
        det = real(img, spec, **kw)
        return rotate_detection_180(det, spec) if det is not None and img is target else det
    monkeypatch.setattr(tool, "detect_board", detect)
    run = calibrate_rig(chess_rig, CHESS, SolveOptions(fix_k3=True, zero_tangent=True, depth_from_ir=False))
    assert run.stereo.flipped == ("0003",) and "0003" in run.stereo.names
    assert "180" in run.rejected["0003"]
    for m, truth in ((Modality.RGB, RGB), (Modality.IR, IR)):
        got = run.rig.intrinsics[m]
        assert abs(got.fx / truth.fx - 1) < 0.01 and abs(got.fy / truth.fy - 1) < 0.01, (m, got)
    assert run.stereo.rms_px < 1.0 and run.stereo.epipolar_px < 1.0
    ext = run.rig.to_reference[Modality.IR]
    assert ext.then(IR_TO_RGB.inverse()).angle_deg < 0.2
    assert np.linalg.norm(ext.t - IR_TO_RGB.t) < 0.002
    assert run.verdict.go and run.rig.provenance["verdict"] == "go"
    assert set(run.stereo.holdout_px) == {"fixed", "refined"}
    assert require_go(run) is run
    # without the repair the same pair disagrees with the rest and is left out, never solved on
    rgb = [run.detections[Modality.RGB][n] for n in run.stereo.names]
    ir = [run.detections[Modality.IR][n] for n in run.stereo.names]
    ir[run.stereo.names.index("0003")] = rotate_detection_180(ir[run.stereo.names.index("0003")], CHESS)
    st = calibrate_stereo(rgb, ir, run.mono[Modality.RGB].intrinsics, run.mono[Modality.IR].intrinsics,
                          run.stereo.names, refine_intrinsics=False)
    assert "0003" in st.inconsistent and "0003" not in st.names and st.rms_px < 1.0


def test_stereo_with_mixed_detectors_needs_no_repair(chess_rig, monkeypatch):
    """RGB found by findChessboardCornersSB, IR only by the classic fallback (opposite raw orders): after the
    canonical numbering every pair agrees, nothing is renumbered or left out, and the rig is right."""
    import edgepad.calibration.board as board_mod
    real_cv2, real_detect = board_mod.cv2, tool.detect_board
    state = {"ir": False, "classic": 0}

    class NoSBForIR:
        def __getattr__(self, name):
            return getattr(real_cv2, name)

        def findChessboardCornersSB(self, *a, **k):
            if state["ir"]:
                state["classic"] += 1
                return False, None
            return real_cv2.findChessboardCornersSB(*a, **k)

    def detect(img, spec, **kw):
        state["ir"] = img.ndim == 2
        return real_detect(img, spec, **kw)
    monkeypatch.setattr(board_mod, "cv2", NoSBForIR())
    monkeypatch.setattr(tool, "detect_board", detect)
    run = calibrate_rig(chess_rig[:10], CHESS, SolveOptions(fix_k3=True, zero_tangent=True, depth_from_ir=False))
    assert state["classic"] >= 10
    assert run.stereo.flipped == () and run.stereo.inconsistent == {} and len(run.stereo.names) == 10
    assert run.stereo.rms_px < 1.0 and run.verdict.go
    assert run.rig.to_reference[Modality.IR].then(IR_TO_RGB.inverse()).angle_deg < 0.3


def test_mismatched_set_is_no_go_with_nonzero_exit(synth_rig, tmp_path):
    """3 of 10 IR images paired with the wrong RGB image: the command writes the rig with a no-go verdict and
    exits 3; with nearly every pair wrong nothing is solved (exit 1)."""
    from edgepad.cli import main
    for sub in ("rgb", "ir"):
        (tmp_path / sub).mkdir()
    views = synth_rig.views[:10]
    partner = {2: 5, 5: 8, 8: 2}  # IR of another moment
    for i, v in enumerate(views):
        w = views[partner.get(i, i)]
        cv2.imwrite(str(tmp_path / "rgb" / f"rgb_{v.name}.png"), cv2.cvtColor(v.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "ir" / f"ir_{v.name}.png"), w.ir)
    save_board(synth_rig.spec, tmp_path / "board.yaml")
    code = main(["calibrate", "offline", "--rgb", str(tmp_path / "rgb"), "--ir", str(tmp_path / "ir"), "--board",
                 str(tmp_path / "board.yaml"), "--out", str(tmp_path / "rig.json"), "--report",
                 str(tmp_path / "report"), "--fix-k3", "--zero-tangent"])
    assert code == 3
    rig = load_rig(tmp_path / "rig.json")
    assert rig.provenance["verdict"] == "no-go"
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["verdict"]["go"] is False
    assert "NO-GO" in (tmp_path / "report" / "index.html").read_text()
    assert {"0002", "0005", "0008"} <= set(summary["stereo"]["left_out"])
    for i, v in enumerate(views):
        cv2.imwrite(str(tmp_path / "ir" / f"ir_{v.name}.png"), views[(i + 3) % 10].ir)
    assert main(["calibrate", "offline", "--rgb", str(tmp_path / "rgb"), "--ir", str(tmp_path / "ir"), "--board",
                 str(tmp_path / "board.yaml"), "--out", str(tmp_path / "rig2.json")]) == 1
    assert not (tmp_path / "rig2.json").exists()


def test_verdict_rejects_implausible_focal_and_raises_typed(synth_run):
    bad_prior = Rig(Modality.RGB, {m: type(i)(i.width, i.height, i.fx * 1.2, i.fy * 1.2, i.cx, i.cy)
                                   for m, i in synth_run.rig.intrinsics.items()}, synth_run.rig.to_reference,
                    synth_run.rig.depth_scale_m)
    v = tool.assess(synth_run, prior=bad_prior)
    assert not v.go and {"rgb.fx_vs_prior_pct", "ir.fx_vs_prior_pct"} <= {c.name for c in v.failed}
    assert tool.assess(synth_run, prior=synth_run.rig).go
    synth_run_bad = type(synth_run)(**{**synth_run.__dict__, "verdict": v})
    with pytest.raises(CalibrationRejected, match="fx_vs_prior_pct") as exc:
        require_go(synth_run_bad)
    assert exc.value.verdict is v
    strict = tool.assess(synth_run, tool.VerdictLimits(max_rms_px=0.01))
    assert [c.name for c in strict.failed] == ["rgb.rms_px", "ir.rms_px"]


def test_compare_flags_differences_beyond_tolerance(synth_run, tmp_path):
    from edgepad.cli import main
    rig = synth_run.rig
    rgb = rig.intrinsics[Modality.RGB]
    moved = Rig(rig.reference, {**rig.intrinsics, Modality.RGB: type(rgb)(
        rgb.width, rgb.height, rgb.fx * 1.03, rgb.fy, rgb.cx, rgb.cy, rgb.distortion, rgb.coeffs)}, rig.to_reference,
        rig.depth_scale_m)
    assert exceeded(compare_rigs(rig, moved)) == ["rgb.fx_pct: 3.000 beyond 1"]
    assert exceeded(compare_rigs(rig, moved), CompareTolerance(focal_pct=5)) == []
    save_rig(rig, tmp_path / "a.json")
    save_rig(moved, tmp_path / "b.json")
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert main(["calibrate", "compare", a, b]) == 0
    assert main(["calibrate", "compare", a, b, "--fail-over"]) == 3
    assert main(["calibrate", "compare", a, b, "--fail-over", "--focal-pct", "5"]) == 0
    assert main(["calibrate", "compare", a, a, "--fail-over"]) == 0


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_boards_fit_the_paper(paper, tmp_path):
    from edgepad.cli import main
    pw, ph = PAPER_MM[paper]
    for spec in (BoardSpec(), CHESS, BoardSpec(kind="chessboard", squares_x=12, squares_y=9)):
        fit = fit_to_paper(spec, paper)
        w, h = (v * 1000 + 20 for v in fit.size_m)  # + quiet zone
        assert min(max(w, h) - max(pw, ph), min(w, h) - min(pw, ph)) < -30  # margins on every side
        assert fit.square_m >= 0.015 and abs(fit.marker_m / fit.square_m - spec.marker_m / spec.square_m) < 1e-3
        bigger = type(spec)(**{**spec.__dict__, "square_m": fit.square_m + 0.001,
                               "marker_m": (fit.square_m + 0.001) * spec.marker_m / spec.square_m})
        with pytest.raises(ConfigError):
            write_board(bigger, tmp_path / "x.pdf", paper=paper)
    out = tmp_path / f"board_{paper}.png"
    assert main(["calibrate", "board", "--paper", paper, "--dpi", "100", "--out", str(out)]) == 0
    img = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    px_mm = 100 / 25.4
    assert sorted(img.shape) == sorted((round(pw * px_mm), round(ph * px_mm)))
    pdf = tmp_path / f"board_{paper}.pdf"
    assert main(["calibrate", "board", "--paper", paper, "--out", str(pdf)]) == 0
    square_mm = fit_to_paper(BoardSpec(), paper).square_m * 1000
    body = pdf.read_bytes()
    assert f"square {square_mm:g} mm".encode() in body
    media = body.split(b"/MediaBox [0 0 ")[1].split(b"]")[0].split()
    assert sorted(float(v) * 25.4 / 72 for v in media) == pytest.approx(sorted((pw, ph)), abs=0.1)


def test_rs_intrinsics_unknown_model_is_typed_or_documented():
    from edgepad.drivers.realsense import rs_intrinsics_to_ours

    def ri(model, coeffs):
        return SimpleNamespace(model=model, coeffs=coeffs, width=640, height=480, fx=600.0, fy=601.0, ppx=320.0,
                               ppy=240.0)
    with pytest.raises(ConfigError, match="ftheta"):
        rs_intrinsics_to_ours(ri("distortion.ftheta", [0.3, 0, 0, 0, 0]))
    assert rs_intrinsics_to_ours(ri("distortion.kannala_brandt4", [0.0] * 5)).distortion == "none"
    got = rs_intrinsics_to_ours(ri("distortion.inverse_brown_conrady", [0.1, -0.2, 0.0, 0.0, 0.05]))
    assert got.distortion == "inverse_brown_conrady" and got.coeffs == (0.1, -0.2, 0.0, 0.0, 0.05)
    assert not hasattr(tool, "_rs_intrinsics")


def test_real_charuco_photos_are_no_go_for_four_views(shared_data):
    """The 4 real ChArUco views solve close to OpenCV's own result but are too few to trust: the verdict says why."""
    views = [View(f"{i}", tool.read_image(shared_data / "charuco" / f"img_0{i}.jpg", Modality.RGB)) for i in range(4)]
    run = calibrate_rig(views, BoardSpec())
    rgb = run.rig.intrinsics[Modality.RGB]
    assert abs(rgb.fx / 459.8 - 1) < 0.02 and abs(rgb.fy / 464.2 - 1) < 0.02  # OpenCV 4.12 on these views
    assert not run.verdict.go
    failed = {c.name for c in run.verdict.failed}
    assert {"rgb.std_fx_pct", "rgb.coverage"} <= failed
    assert run.mono[Modality.RGB].std["fx"] > 0.01 * rgb.fx


def _classic(files) -> tuple[float, float]:
    """OpenCV's classic pipeline (findChessboardCorners + cornerSubPix + calibrateCamera) on one camera's files."""
    obj = np.zeros((54, 3), np.float32)
    obj[:, :2] = np.mgrid[0:9, 0:6].T.reshape(-1, 2)
    objs, imgs = [], []
    for f in files:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        ok, c = cv2.findChessboardCorners(g, (9, 6), flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if ok:
            objs.append(obj)
            imgs.append(cv2.cornerSubPix(g, c, (11, 11), (-1, -1), (3, 30, 0.01)))
    _, k, _, _, _ = cv2.calibrateCamera(objs, imgs, g.shape[::-1], None, None)
    return float(k[0, 0]), float(k[1, 1])


@pytest.mark.skipif(not os.environ.get("EDGEPAD_STEREO_SAMPLES"), reason="EDGEPAD_STEREO_SAMPLES not set")
def test_real_stereo_chessboard_photos(tmp_path):
    """Real 9x6 stereo chessboard photos (left*.jpg / right*.jpg in $EDGEPAD_STEREO_SAMPLES, see
    docs/CALIBRATION.md): intrinsics within 2 % of OpenCV's classic pipeline, stereo rms < 1 px, verdict go."""
    from edgepad.cli import main
    src = Path(os.environ["EDGEPAD_STEREO_SAMPLES"])
    left, right = sorted(src.rglob("left*.jpg")), sorted(src.rglob("right*.jpg"))
    keys = sorted({f.stem[4:] for f in left} & {f.stem[5:] for f in right})
    assert len(keys) >= 6
    for sub, prefix in (("L", "left"), ("R", "right")):
        (tmp_path / sub).mkdir()
        for k in keys:
            (tmp_path / sub / f"{prefix}{k}.jpg").symlink_to(next(f for f in src.rglob(f"{prefix}{k}.jpg")))
    save_board(BoardSpec(kind="chessboard", squares_x=10, squares_y=7, square_m=0.025), tmp_path / "board.yaml")
    code = main(["calibrate", "offline", "--rgb", str(tmp_path / "L"), "--ir", str(tmp_path / "R"), "--board",
                 str(tmp_path / "board.yaml"), "--no-depth", "--out", str(tmp_path / "rig.json")])
    assert code == 0
    rig = load_rig(tmp_path / "rig.json")
    for m, sub in ((Modality.RGB, "L"), (Modality.IR, "R")):
        fx, fy = _classic(sorted((tmp_path / sub).iterdir()))
        got = rig.intrinsics[m]
        assert abs(got.fx / fx - 1) < 0.02 and abs(got.fy / fy - 1) < 0.02, (m, got.fx, fx)
    assert float(rig.provenance["rms_px.stereo"]) < 1.0 and rig.provenance["verdict"] == "go"
