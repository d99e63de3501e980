"""preprocess: crop geometry through the rig, normalisation values, missing fill, input errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad import preprocess
from edgepad.specs import InputSpec
from edgepad.errors import ConfigError, ShapeError
from edgepad.types import Modality

from tests.helpers.scene import make_rig, plane_frameset

BOX = (50, 35, 48, 52)


def test_default_specs_shapes_and_fill():
    specs = preprocess.default_input_specs(64)
    assert set(specs) == {"rgb", "depth", "ir"}
    assert specs["rgb"].shape == (1, 3, 64, 64) and specs["ir"].shape == (1, 1, 64, 64)
    assert specs["depth"].depth_norm == "face_relative"
    assert all(s.missing_fill == 0.0 for s in specs.values())
    with pytest.raises(ConfigError):
        preprocess.default_input_specs(3)


def test_crop_window_square_and_centred():
    x0, y0, side = preprocess.crop_window((10, 20, 40, 60), margin=0.5)
    assert side == pytest.approx(90.0)
    # centre of pixels 10..49 is 29.5, of 20..79 is 49.5
    assert x0 + side / 2 == pytest.approx(29.5) and y0 + side / 2 == pytest.approx(49.5)
    with pytest.raises(ShapeError):
        preprocess.crop_window((0, 0, 0, 10))


@pytest.mark.parametrize("z_m", [0.35, 0.6])
def test_ir_crop_sees_the_same_3d_points_as_rgb_crop(z_m):
    rig = make_rig(baseline_m=0.05, yaw_deg=2.0)
    fs = plane_frameset(rig, z_m=z_m)
    res = preprocess.crop_face(fs, BOX, rig, size_px=48, margin=0.25)
    rgb, ir, depth = res.crops[Modality.RGB], res.crops[Modality.IR], res.crops[Modality.DEPTH]
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8
    assert ir.shape == (48, 48) and ir.dtype == np.uint8
    assert depth.shape == (48, 48) and depth.dtype == np.uint16
    assert res.face_depth_m == pytest.approx(z_m, abs=1e-3) and not res.nominal_depth
    diff = np.abs(ir.astype(float) - rgb[..., 0].astype(float))
    assert diff.mean() < 4.0, diff.mean()
    # the naive crop (same pixel window in the ir image, no projection) does NOT line up: the test can fail
    x0, y0, side = res.window_rgb
    naive = preprocess._crop_nearest(fs[Modality.IR].data, x0, y0, side, 48)
    assert np.abs(naive.astype(float) - rgb[..., 0].astype(float)).mean() > 20.0


def test_wrong_lifting_depth_misaligns_ir():
    rig = make_rig(baseline_m=0.05)
    fs = plane_frameset(rig, z_m=0.4)
    good = preprocess.crop_face(fs, BOX, rig, size_px=48).crops
    bad = preprocess.crop_face(fs, BOX, rig, size_px=48, face_depth_m=1.2).crops
    err_good = np.abs(good[Modality.IR].astype(float) - good[Modality.RGB][..., 0]).mean()
    err_bad = np.abs(bad[Modality.IR].astype(float) - bad[Modality.RGB][..., 0]).mean()
    assert err_bad > 3 * err_good


def test_nominal_depth_without_depth_frame():
    rig = make_rig()
    fs = plane_frameset(rig, with_depth=False)
    res = preprocess.crop_face(fs, BOX, rig, size_px=32)
    assert Modality.DEPTH not in res.crops and Modality.IR in res.crops
    assert res.nominal_depth
    assert res.face_depth_m == pytest.approx(rig.intrinsics[Modality.RGB].fx * preprocess.FACE_WIDTH_M / BOX[2])
    assert set(preprocess.face_crops(fs, BOX, rig, size_px=32)) == {Modality.RGB, Modality.IR}


def test_crop_outside_image_is_zero_and_rgb_values_exact_for_flat_image():
    rig = make_rig(distort=False)
    fs = plane_frameset(rig, with_ir=False)
    res = preprocess.crop_face(fs, (140, 100, 30, 30), rig, size_px=16, margin=0.0)
    rgb = res.crops[Modality.RGB]
    assert rgb[-1, -1].max() == 0 and rgb[0, 0].max() > 0  # bottom-right falls outside the 160×120 image
    # a constant image crops to the same constant (the resampling weights sum to one inside)
    from edgepad.types import FrameSet, make_frame
    flat = make_frame("rgb", np.full((120, 160, 3), 77, np.uint8), 0, intrinsics=rig.intrinsics[Modality.RGB])
    c = preprocess.face_crops(FrameSet({Modality.RGB: flat}, 0), (20, 20, 90, 90), rig, size_px=24, margin=0.0)
    assert np.all(c[Modality.RGB] == 77)


def test_face_crops_needs_rgb():
    rig = make_rig()
    fs = plane_frameset(rig)
    from edgepad.types import FrameSet
    with pytest.raises(ConfigError):
        preprocess.face_crops(FrameSet({Modality.IR: fs[Modality.IR]}, 0), BOX, rig)


# ---------------------------------------------------------------------------------------------- normalise
def _specs(s=8):
    return preprocess.default_input_specs(s)


def test_normalise_rgb_and_ir_values():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[0, 0] = (0, 51, 255)
    ir = np.full((8, 8), 204, np.uint8)
    out = preprocess.normalise({"rgb": rgb, Modality.IR: ir}, _specs(), 0.001)
    assert out["rgb"].shape == (1, 3, 8, 8) and out["rgb"].dtype == np.float32
    np.testing.assert_allclose(out["rgb"][0, :, 0, 0], [-1.0, -0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(out["ir"], 0.6, atol=1e-6)


def test_ir_distance_compensation_follows_the_inverse_square_law():
    """One surface (ρ fixed) seen at 0.4 and 1.2 m under a 1/r² emitter: raw IR differs 9×, compensated IR
    is the same; the distance comes from the depth crop, or from face_depth_m when depth is absent."""
    specs = {"ir": InputSpec("ir", (1, 1, 8, 8), mean=(0.0,), std=(1.0,), clip=(0.0, 255.0), distance_ref_m=0.6)}
    outs = []
    for z in (0.4, 1.2):
        ir = np.full((8, 8), round(100 * (0.6 / z) ** 2), np.uint8)  # 225 at 0.4 m, 25 at 1.2 m
        depth = np.full((8, 8), round(z * 1000), np.uint16)
        depth[0, :] = 0  # holes outside the central window do not matter
        with_depth = preprocess.normalise({"ir": ir, "depth": depth}, specs, 0.001)["ir"]
        told = preprocess.normalise({"ir": ir}, specs, 0.001, face_depth_m=z)["ir"]
        np.testing.assert_allclose(with_depth, told, atol=1e-6)
        outs.append(float(with_depth.mean()))
    np.testing.assert_allclose(outs, 100 / 255, atol=0.3 / 255)
    # without any distance the value is left alone; a non-positive reference is a config error
    raw = preprocess.normalise({"ir": np.full((8, 8), 25, np.uint8)}, specs, 0.001)["ir"]
    np.testing.assert_allclose(raw, 25 / 255, atol=1e-6)
    assert preprocess.crop_face_depth_m(np.zeros((8, 8), np.uint16), 0.001) is None
    bad = {"ir": InputSpec("ir", (1, 1, 8, 8), distance_ref_m=0.0)}
    with pytest.raises(ConfigError, match="distance_ref_m"):
        preprocess.normalise({"ir": np.zeros((8, 8), np.uint8)}, bad, 0.001, face_depth_m=0.5)


def test_normalise_depth_face_relative_values_and_holes():
    d = np.full((8, 8), 500, np.uint16)  # central window (2..5) at 0.5 m
    d[0, 0], d[0, 1], d[0, 2], d[0, 3] = 550, 700, 450, 0
    out = preprocess.normalise({"depth": d}, _specs(), 0.001)["depth"][0, 0]
    assert out[3, 3] == pytest.approx(0.0, abs=1e-6)
    assert out[0, 0] == pytest.approx(0.5, abs=1e-5)   # +5 cm of ±10 cm
    assert out[0, 1] == pytest.approx(1.0)              # clipped
    assert out[0, 2] == pytest.approx(-0.5, abs=1e-5)
    assert out[0, 3] == preprocess.DEPTH_HOLE_VALUE
    # depth scale matters: the same raw values at 0.1 mm per unit are 10× closer together
    out2 = preprocess.normalise({"depth": d}, _specs(), 0.0001)["depth"][0, 0]
    assert out2[0, 0] == pytest.approx(0.05, abs=1e-5)


def test_normalise_mad():
    spec = InputSpec("depth", (1, 1, 8, 8), mean=(0.0,), std=(1.0,), depth_norm="mad")
    d = np.full((8, 8), 500, np.uint16)
    d[2:6, 2:6] = np.array([490, 500, 510, 500] * 4, dtype=np.uint16).reshape(4, 4)
    d[0, 0] = 0
    out = preprocess.normalise({"depth": d}, {"depth": spec}, 0.001)["depth"][0, 0]
    # central window: 4×490, 8×500, 4×510 -> median 0.5 m, MAD = median(8×0, 8×10 mm) = 5 mm
    # 0.51 m -> (0.01 + 0.015) / 0.03
    assert out[2, 4] == pytest.approx(0.025 / 0.03, abs=1e-5) and out[2, 3] == pytest.approx(0.5, abs=1e-5)
    assert out[0, 0] == 0.0
    flat = np.full((8, 8), 500, np.uint16)
    flat[0, 0] = 502  # MAD 0 -> floored at 1 mm: (0.002 + 0.003) / 0.006
    out = preprocess.normalise({"depth": flat}, {"depth": spec}, 0.001)["depth"][0, 0]
    assert out[0, 0] == pytest.approx(0.005 / 0.006, abs=1e-5)


def test_missing_fill_is_exact():
    specs = dict(_specs())
    specs["ir"] = InputSpec("ir", (1, 1, 8, 8), mean=(0.5,), std=(0.5,), clip=(0.0, 255.0), missing_fill=0.25)
    out = preprocess.normalise({"rgb": np.zeros((8, 8, 3), np.uint8)}, specs, 0.001)
    assert np.all(out["depth"] == 0.0) and out["depth"].shape == (1, 1, 8, 8)
    assert np.all(out["ir"] == np.float32(0.25))
    # an all-hole depth crop is treated as absent
    out = preprocess.normalise({"depth": np.zeros((8, 8), np.uint16)}, specs, 0.001)
    assert np.all(out["depth"] == 0.0)


@pytest.mark.parametrize("crops", [
    {"rgb": np.zeros((8, 8, 3), np.float32)},
    {"rgb": np.zeros((8, 9, 3), np.uint8)},
    {"rgb": np.zeros((8, 8), np.uint8)},
    {"depth": np.zeros((8, 8), np.uint8)},
    {"ir": np.zeros((8, 8, 1), np.uint8)},
])
def test_normalise_rejects_bad_crops(crops):
    with pytest.raises(ShapeError):
        preprocess.normalise(crops, _specs(), 0.001)


def test_normalise_rejects_bad_scale_and_names():
    with pytest.raises(ConfigError):
        preprocess.normalise({"depth": np.ones((8, 8), np.uint16)}, _specs(), 0.0)
    with pytest.raises(ConfigError):
        preprocess.normalise({"rbg": np.zeros((8, 8, 3), np.uint8)}, _specs(), 0.001)


def test_crops_feed_normalise_end_to_end():
    rig = make_rig()
    fs = plane_frameset(rig)
    crops = preprocess.face_crops(fs, BOX, rig, size_px=32)
    feed = preprocess.normalise(crops, preprocess.default_input_specs(32), rig.depth_scale_m)
    assert {k: v.shape for k, v in feed.items()} == {"rgb": (1, 3, 32, 32), "depth": (1, 1, 32, 32),
                                                      "ir": (1, 1, 32, 32)}
    assert np.all(np.abs(feed["depth"]) < 1e-6)  # a fronto-parallel plane is flat relative to the face
    assert all(np.isfinite(v).all() for v in feed.values())


def test_crop_refuses_unregistered_depth():
    """Depth registration has one owner (drivers' Registrar): preprocess never registers, it refuses."""
    from edgepad.types import FrameSet, replace_frame
    rig = make_rig(baseline_m=0.05)
    fs = plane_frameset(rig, z_m=0.4)
    raw = replace_frame(fs[Modality.DEPTH], registered_to=None, intrinsics=rig.intrinsics[Modality.DEPTH])
    frames = dict(fs.frames)
    frames[Modality.DEPTH] = raw
    with pytest.raises(ShapeError, match="registered_to"):
        preprocess.crop_face(FrameSet(frames, fs.timestamp_ns), BOX, rig, size_px=32)
    import dataclasses
    ri = rig.intrinsics[Modality.RGB]
    half = dataclasses.replace(ri, width=ri.width // 2, height=ri.height // 2)
    small = replace_frame(fs[Modality.DEPTH], data=fs[Modality.DEPTH].data[::2, ::2], intrinsics=half)
    frames[Modality.DEPTH] = small
    with pytest.raises(ShapeError, match="registered to rgb"):
        preprocess.crop_face(FrameSet(frames, fs.timestamp_ns), BOX, rig, size_px=32)


def test_median_face_depth_central_half():
    depth = np.zeros((40, 60), np.uint16)
    depth[10:30, 10:50] = 1000  # the box (10, 10, 40, 20): central half = x 20..39, y 15..24
    depth[15:25, 20:30] = 500
    depth[15:20, 30:40] = 0  # a hole: a quarter of the central half
    z, frac = preprocess.median_face_depth(depth, (10, 10, 40, 20), 0.001)
    assert frac == pytest.approx(0.75)
    assert z == pytest.approx(0.5)  # 100 of 150 valid pixels at 500
    assert preprocess.median_face_depth(depth, (0, 0, 4, 4), 0.001) == (None, 0.0)
    assert preprocess.median_face_depth(depth, (10, 10, 40, 20), None)[0] is None


def test_project_box_lifts_corners_at_depth():
    from edgepad.geometry import Extrinsics, deproject, project, project_box
    rig = make_rig(baseline_m=0.05, yaw_deg=2.0)
    src, dst = rig.intrinsics[Modality.RGB], rig.intrinsics[Modality.IR]
    ext = rig.extrinsics(Modality.RGB, Modality.IR)
    box = (50, 35, 48, 52)
    got = project_box(box, 0.4, src, dst, ext)
    corners = np.array([[50, 35], [98, 35], [50, 87], [98, 87]], np.float64)
    px = project(ext.apply(deproject(corners, 0.4, src)), dst)
    x0, y0 = np.floor(px.min(axis=0)).astype(int)
    x1, y1 = np.ceil(px.max(axis=0)).astype(int)
    assert got == (x0, y0, x1 - x0, y1 - y0)
    assert got != box and got[0] != box[0]  # the baseline shifts it
    assert project_box(box, 0.4, src, src, Extrinsics.identity()) == box
    behind = Extrinsics.from_rt(np.diag([1.0, 1.0, 1.0]), (0.0, 0.0, -1.0))  # the plane lies behind dst
    assert project_box(box, 0.4, src, dst, behind) is None


# ------------------------------------------------------------------------------------- eye-aligned crops
def _rolled_scene(roll_deg: float, z_m: float = 0.5):
    """A textured plane rolled by ``roll_deg`` about the point seen at BOX's centre, seen by rgb (+ registered
    depth carrying the same texture) and ir; returns (rig, frameset, landmarks (5, 2) rgb px)."""
    from edgepad.geometry import pixel_rays
    from edgepad.types import FrameSet, make_frame
    rig = make_rig(baseline_m=0.05, distort=False)
    ri = rig.intrinsics[Modality.RGB]
    x0, y0, side = preprocess.crop_window(BOX)
    cu, cv = x0 + side / 2, y0 + side / 2
    px, py = (cu - ri.cx) * z_m / ri.fx, (cv - ri.cy) * z_m / ri.fy  # pivot on the plane
    a = np.radians(roll_deg)

    def tex(x, y):  # texture rotated by +a about the pivot (asymmetric: a roll shows)
        dx, dy = x - px, y - py
        u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
        return 128.0 + 90.0 * np.sin(2 * np.pi * u / 0.05 + 0.3) * np.cos(2 * np.pi * v / 0.07) + 200 * u

    def depth_tex(x, y):  # smooth (nearest-neighbour depth crops) and not rotation-symmetric
        dx, dy = x - px, y - py
        u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
        return 500.0 + 1500.0 * u + 8000.0 * v * v

    def render(cam, tex=tex):
        intr, ext = rig.intrinsics[cam], rig.to_reference[cam]
        rx, ry = pixel_rays(intr)
        rr = np.stack([rx, ry, np.ones_like(rx)], axis=-1) @ ext.r.T
        s = (z_m - ext.t[2]) / rr[..., 2]
        p = rr * s[..., None] + ext.t
        return np.rint(tex(p[..., 0], p[..., 1]))

    g, i = (np.clip(render(c), 0, 255).astype(np.uint8) for c in (Modality.RGB, Modality.IR))
    d = render(Modality.RGB, depth_tex).astype(np.uint16)
    frames = {Modality.RGB: make_frame("rgb", np.dstack([g, g, g]), 1, intrinsics=ri),
              Modality.DEPTH: make_frame("depth", d, 1, intrinsics=ri,
                                         depth_scale_m=0.001, registered_to=Modality.RGB),
              Modality.IR: make_frame("ir", i, 1, intrinsics=rig.intrinsics[Modality.IR])}
    e = 12.0  # half inter-eye distance (px); eyes above the centre, rotated with the face
    c, s_ = np.cos(a), np.sin(a)
    pts = [(-e, -8), (e, -8), (0, 4), (-9, 16), (9, 16)]
    lm = np.array([[cu + c * x - s_ * y, cv + s_ * x + c * y] for x, y in pts])
    return rig, FrameSet(frames, 1, 0), lm


@pytest.mark.parametrize("roll_deg", [17.0, -25.0])
def test_eye_aligned_crops_undo_a_known_roll_in_every_modality(roll_deg):
    rig, upright, lm0 = _rolled_scene(0.0)
    _, rolled, lm = _rolled_scene(roll_deg)
    assert preprocess.eye_roll(lm) == pytest.approx(np.radians(roll_deg))
    assert preprocess.eye_roll(lm[[1, 0, 2, 4, 3]]) == pytest.approx(np.radians(roll_deg))  # eye order free
    ref = preprocess.crop_face(upright, BOX, rig, size_px=48, face_depth_m=0.5).crops
    got = preprocess.crop_face(rolled, BOX, rig, size_px=48, face_depth_m=0.5, align="eyes", landmarks=lm).crops
    plain = preprocess.crop_face(rolled, BOX, rig, size_px=48, face_depth_m=0.5).crops
    inner = np.s_[8:40, 8:40]  # the rotated window's corners reach outside the unrotated one's content
    for m in (Modality.RGB, Modality.DEPTH, Modality.IR):
        a, b, p = (np.asarray(x[m], float)[inner] for x in (got, ref, plain))
        err, err_plain = np.abs(a - b).mean(), np.abs(p - b).mean()
        assert err < (4.0 if m is Modality.DEPTH else 2.0), (m, err)
        assert err_plain > 4 * err, (m, err, err_plain)  # without alignment the crops differ: the test can fail
    # rgb and ir of the aligned crops see the same points (the rotation is applied before the projection)
    assert np.abs(got[Modality.IR].astype(float) - got[Modality.RGB][..., 0])[inner].mean() < 4.0


def test_align_none_is_byte_identical_and_eyes_needs_landmarks():
    rig, fs, lm = _rolled_scene(10.0)
    base = preprocess.crop_face(fs, BOX, rig, size_px=48)
    none = preprocess.crop_face(fs, BOX, rig, size_px=48, align="none", landmarks=lm)
    for m in base.crops:
        assert base.crops[m].dtype == none.crops[m].dtype and base.crops[m].tobytes() == none.crops[m].tobytes()
    with pytest.raises(ConfigError) as e:
        preprocess.crop_face(fs, BOX, rig, size_px=48, align="eyes")
    assert e.value.key == "landmarks"
    with pytest.raises(ConfigError):
        preprocess.crop_face(fs, BOX, rig, size_px=48, align="nose", landmarks=lm)
    with pytest.raises(ShapeError):
        preprocess.crop_face(fs, BOX, rig, size_px=48, align="eyes", landmarks=np.zeros((5, 2)))


def test_align_spec_and_data_paths_refuse_eyes_without_landmarks():
    specs = preprocess.default_input_specs(16)
    assert preprocess.crop_align(specs) == "none"
    eyes = {k: InputSpec(**{**v.__dict__, "align": "eyes"}) for k, v in specs.items()}
    assert preprocess.crop_align(eyes) == "eyes"
    with pytest.raises(ConfigError):
        InputSpec("rgb", (1, 3, 8, 8), align="roll")
    with pytest.raises(ConfigError):
        preprocess.crop_align({"rgb": eyes["rgb"], "ir": specs["ir"]})
    preprocess.require_crop_align(specs, "none", "training data")
    with pytest.raises(ConfigError, match="no face landmarks") as e:
        preprocess.require_crop_align(eyes, "none", "training data")
    assert e.value.key == "align"
    from edgepad.data.transforms import PADDataset
    with pytest.raises(ConfigError):
        PADDataset([], eyes)
    assert len(PADDataset([], specs)) == 0


def test_training_config_align_reaches_every_input_spec():
    from dataclasses import replace

    from edgepad.training.build import input_specs
    from edgepad.training.config import InputConfig, TrainConfig
    cfg = TrainConfig()
    assert {s.align for s in input_specs(cfg).values()} == {"none"}
    eyes = input_specs(replace(cfg, inputs=InputConfig(align="eyes")))
    assert {s.align for s in eyes.values()} == {"eyes"} and preprocess.crop_align(eyes) == "eyes"
    with pytest.raises(ConfigError):
        input_specs(replace(cfg, inputs=InputConfig(align="x")))
