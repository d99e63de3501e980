from __future__ import annotations

import numpy as np
import pytest

from edgepad.errors import ConfigError, ShapeError
from edgepad.geometry import (Extrinsics, Intrinsics, Rig, deproject, load_rig, pixel_rays, project, save_rig)
from edgepad.types import Decision, FrameSet, Modality, Reason, Verdict, make_frame, parse_modalities

INTR = Intrinsics(64, 48, 50.0, 51.0, 31.5, 23.5)


def _rot(deg_z: float) -> np.ndarray:
    a = np.radians(deg_z)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_modality_parse_and_subsets():
    assert Modality.parse("RGB") is Modality.RGB
    assert parse_modalities("rgb+depth,rgb") == (Modality.RGB, Modality.DEPTH)
    with pytest.raises(ConfigError) as ei:
        Modality.parse("dpeth")
    assert "depth" in ei.value.suggestions
    for bad in (1, None, 2.5):  # e.g. `"modalities": 1` in a replay session.json (found by the long fuzz run)
        with pytest.raises(ConfigError, match="modalities must be names"):
            parse_modalities(bad)
    assert parse_modalities({"ir": 0, "rgb": 1}) == (Modality.IR, Modality.RGB)  # a mapping: its keys, in order


def test_frame_owns_read_only_data_and_checks_layout():
    src = np.zeros((48, 64, 3), np.uint8)
    f = make_frame("rgb", src, 10, intrinsics=INTR)
    src[0, 0, 0] = 9
    assert f.data[0, 0, 0] == 0          # a copy, not a view
    with pytest.raises(ValueError):
        f.data[0, 0, 0] = 1              # read-only
    with pytest.raises(ShapeError):
        make_frame("rgb", np.zeros((48, 64), np.uint8), 0, intrinsics=INTR)
    with pytest.raises(ShapeError):
        make_frame("depth", np.zeros((48, 64), np.float32), 0, intrinsics=INTR, depth_scale_m=0.001)
    with pytest.raises(ShapeError):
        make_frame("depth", np.zeros((48, 64), np.uint16), 0, intrinsics=INTR)   # no depth scale
    with pytest.raises(ShapeError):
        make_frame("ir", np.zeros((40, 64), np.uint8), 0, intrinsics=INTR)       # size ≠ intrinsics


def test_frameset_access_by_name():
    f = make_frame("ir", np.zeros((48, 64), np.uint8), 5, intrinsics=INTR)
    fs = FrameSet({Modality.IR: f}, 5, 0, frozenset({Modality.DEPTH}))
    assert fs["ir"] is f and "ir" in fs and "depth" not in fs and fs.get("rgb") is None
    with pytest.raises(KeyError):
        fs["rgb"]


def test_decision_to_dict_is_json_ready():
    d = Decision(Verdict.UNKNOWN, None, 0.5, {Modality.DEPTH: 0.25}, (Reason.NO_FACE,), 7, {"total": 1.23456})
    out = d.to_dict()
    assert out == {"verdict": "unknown", "score": None, "threshold": 0.5, "evidence": {"depth": 0.25},
                   "reasons": ["no_face"], "timestamp_ns": 7, "latency_ms": {"total": 1.235}, "modalities": [],
                   "face_box": None, "hints": []}
    assert Reason.missing("ir") is Reason.MISSING_IR


def test_extrinsics_compose_and_invert():
    a = Extrinsics.from_rt(_rot(10), [0.01, 0.02, 0.03])
    b = Extrinsics.from_rt(_rot(-4), [-0.05, 0, 0.1])
    p = np.array([[0.1, -0.2, 1.0], [0.3, 0.1, 0.5]])
    np.testing.assert_allclose(a.then(b).apply(p), b.apply(a.apply(p)), atol=1e-12)
    np.testing.assert_allclose(a.inverse().apply(a.apply(p)), p, atol=1e-12)
    assert abs(a.angle_deg - 10) < 1e-9
    with pytest.raises(ConfigError):
        Extrinsics(rotation=(1, 0, 0, 0, 1, 0, 0, 0, 2))


@pytest.mark.parametrize("model", ["brown_conrady", "modified_brown_conrady"])
def test_projection_matches_opencv_for_brown_conrady(model):
    cv2 = pytest.importorskip("cv2")
    intr = Intrinsics(640, 480, 600, 605, 320.5, 239.5, model, (0.08, -0.15, 0.001, -0.002, 0.03))
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-0.3, 0.3, 50), rng.uniform(-0.2, 0.2, 50), rng.uniform(0.4, 1.5, 50)])
    ours = project(pts, intr)
    ref = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), intr.k, intr.dist5)[0].reshape(-1, 2)
    tol = 1e-6 if model == "brown_conrady" else 0.5   # the modified model applies tangential terms differently
    np.testing.assert_allclose(ours, ref, atol=tol)


def test_deproject_inverts_project_and_rays():
    intr = Intrinsics(64, 48, 50, 50, 32, 24, "brown_conrady", (0.05, -0.01, 0.0005, 0.0003, 0.0))
    pts = np.array([[0.05, -0.03, 0.8], [-0.1, 0.06, 1.2]])
    back = deproject(project(pts, intr), pts[:, 2], intr)
    np.testing.assert_allclose(back, pts, atol=1e-7)
    rx, ry = pixel_rays(INTR)
    assert rx.shape == (48, 64) and abs(rx[0, 0] - (0 - 31.5) / 50) < 1e-12


def _rig() -> Rig:
    ir = Intrinsics(64, 48, 40, 40, 32, 24)
    ext = Extrinsics.from_rt(_rot(0.8), [0.015, 0.0, 0.0])
    return Rig(Modality.RGB, {Modality.RGB: INTR, Modality.DEPTH: ir, Modality.IR: ir},
               {Modality.DEPTH: ext, Modality.IR: ext}, 0.001, {"serial": "123"})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_rig_round_trip(tmp_path, suffix):
    rig = _rig()
    path = tmp_path / f"rig{suffix}"
    save_rig(rig, path)
    back = load_rig(path)
    assert back.intrinsics == rig.intrinsics and back.depth_scale_m == 0.001
    p = np.array([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(back.extrinsics("depth", "rgb").apply(p), rig.to_reference[Modality.DEPTH].apply(p))
    np.testing.assert_allclose(back.extrinsics("rgb", "ir").apply(back.extrinsics("ir", "rgb").apply(p)), p,
                               atol=1e-12)


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.update(cameras={}), "cameras"),
    (lambda d: d.pop("depth_scale_m"), "depth_scale_m"),
    (lambda d: d["cameras"]["rgb"]["intrinsics"].update(fx=-1), "fx"),
    (lambda d: d["cameras"]["ir"].update(intrinsic={}), "cameras.ir.intrinsic"),
    (lambda d: d.update(referense="rgb"), "referense"),
])
def test_corrupt_rig_raises_config_error(tmp_path, mutate, key):
    d = _rig().to_dict()
    mutate(d)
    with pytest.raises(ConfigError) as ei:
        Rig.from_dict(d)
    assert key in (ei.value.key or "")
