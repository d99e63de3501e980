"""The compiled face crops (``native.CropSampler``, ``_kernel.c``) against ``edgepad.preprocess``'s numpy reference.

- ``lattice`` (IR crop from the projection lattice) equals numpy bit for bit where the arithmetic is the same: the
  lattice interpolated by the explicit two-pass formula of the C code, then ``_sample_box``;
- ``lattice`` and ``resample`` (rgb crop) against the numpy crops (BLAS products): at most 1 grey level, in at most
  ``MOVED_BOUND`` of the values (a rounding tie going the other way), on random images, windows (across and beyond
  the border, huge and tiny), intrinsics with lens distortion and rigs; exactly equal where every product and sum
  is exact (dyadic weights);
- ``reproject`` (the IR crop's lattice) equals ``geometry.reproject`` bit for bit once numpy's matrix product in
  ``Extrinsics.apply`` is written as the C code's elementwise sum, and within ``REPROJECT_REL`` of it as it is, NaN
  at the same points (behind the IR camera), for every lens model; a NaN lattice still crops through numpy;
- through ``crop_face``: axis-aligned and eye-aligned, uint8 and uint16 IR;
- without the kernel (``EDGEPAD_NATIVE=0``) the runtime crops through numpy; bad arguments raise typed errors.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import edgepad.preprocess as P
from edgepad.drivers.registration import native as reg_native
from edgepad.errors import EdgePadInternalError, ShapeError
from edgepad.geometry import DISTORTION_MODELS, Extrinsics, Intrinsics, deproject, project, reproject
from edgepad.types import Modality

#: largest fraction of crop values a compiled crop may move (by 1 level) against numpy; measured ≤ 7e-5 (§0j)
MOVED_BOUND = 5e-4
#: largest |Δ| / max(1 px, |pixel|) of the compiled lattice against ``geometry.reproject`` (the rotation summed in
#: another order than numpy's matrix product); measured ≤ 3.7e-13 on the rigs of ``_random_rig``, ≤ 9e-12 with
#: large rotations and strong distortion far outside the image (docs/PERFORMANCE.md §0j)
REPROJECT_REL = 1e-12
REPROJECT_REL_WILD = 5e-11
#: ``{test: (values moved, values compared)}`` of the last run (docs/PERFORMANCE.md §0j quotes them)
MEASURED: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module")
def sampler():
    s = reg_native.crop_sampler()
    if s is None:
        pytest.skip("no C compiler here: the numpy path runs (tested below)")
    return s


def _explicit_map(lat: np.ndarray, g0: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The C code's float64 interpolation, elementwise: rows first ((1 − fr)·lat[g0] + fr·lat[g0 + 1]), then columns."""
    a, b = (1.0 - fr)[:, None, None], fr[:, None, None]
    t = a * lat[g0] + b * lat[g0 + 1]                                     # N × G × 2
    m = t[:, g0] * (1.0 - fr)[None, :, None] + t[:, g0 + 1] * fr[None, :, None]
    return m[..., 0].astype(np.float32), m[..., 1].astype(np.float32)


def _random_lattice(rng, grid: int, h: int, w: int) -> np.ndarray:
    """A smooth (affine + bend) lattice over and around an ``h × w`` image, or a random one."""
    if rng.random() < 0.2:
        return rng.uniform(-20, max(h, w) + 20, (grid, grid, 2))
    t = np.linspace(0, 1, grid)
    u, v = np.meshgrid(t, t)
    x = rng.uniform(-30, w) + u * rng.uniform(5, 2 * w) + v * rng.uniform(-10, 10) + rng.uniform(-5, 5) * u * v
    y = rng.uniform(-30, h) + v * rng.uniform(5, 2 * h) + u * rng.uniform(-10, 10) + rng.uniform(-5, 5) * u * u
    return np.stack([x, y], axis=-1)


def _interp_index(rng, n: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(n) + rng.uniform(0.0, 1.0)) / n * (grid - 1)
    g0 = np.clip(np.floor(g), 0, grid - 2).astype(np.int32)
    return g0, g - g0


def test_lattice_equals_the_explicit_map_then_sample_box_bit_for_bit(sampler):
    rng = np.random.default_rng(11)
    for t in range(150):
        h, w = int(rng.integers(3, 120)), int(rng.integers(3, 160))
        img = rng.integers(0, 256, (h, w)).astype(np.uint8)
        grid, k = int(rng.integers(2, 20)), int(rng.integers(1, 4))
        n = k * int(rng.integers(2, 40))
        lat = _random_lattice(rng, grid, h, w)
        if t % 4 == 0:
            lat = np.round(lat * 2) / 2                              # half-pixel coordinates: exact ties
        g0, fr = _interp_index(rng, n, grid)
        mx, my = _explicit_map(lat, g0, fr)
        np.testing.assert_array_equal(sampler.lattice(img, lat, g0, fr, k), P._sample_box(img, mx, my, k),
                                      err_msg=str(t))


def test_lattice_within_one_level_of_the_numpy_map_products(sampler):
    """Against numpy's map (``up @ lat @ up.T`` by BLAS, float32) + ``_sample_box``: the reference of ``crop_face``."""
    rng = np.random.default_rng(12)
    moved = total = 0
    for t in range(150):
        h, w = int(rng.integers(8, 200)), int(rng.integers(8, 260))
        img = rng.integers(0, 256, (h, w)).astype(np.uint8)
        grid, k = 17, int(rng.integers(1, 4))
        n = k * int(rng.integers(8, 60))
        lat = _random_lattice(rng, grid, h, w)
        g0, fr = _interp_index(rng, n, grid)
        mx, my = P._lattice_map(lat, g0, fr)
        d = np.abs(sampler.lattice(img, lat, g0, fr, k).astype(int)
                   - P._sample_box(img, mx.astype(np.float32), my.astype(np.float32), k).astype(int))
        assert d.max() <= 1, t
        moved, total = moved + int((d > 0).sum()), total + d.size
    MEASURED["lattice"] = (moved, total)
    assert moved <= MOVED_BOUND * total, (moved, total)


def _numpy_rgb(img: np.ndarray, x0: float, y0: float, side: float, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return P._resample_separable(img, P._resample_matrix(y0, side, h, s), P._resample_matrix(x0, side, w, s))


def test_resample_within_one_level_of_the_numpy_rgb_crop(sampler):
    """Random images (1 and 3 channels), windows inside, across and beyond the border, tiny (k = 1) to huge (k = 3
    with more than one source pixel per sub-sample)."""
    rng = np.random.default_rng(13)
    moved = total = 0
    for t in range(300):
        h, w = int(rng.integers(4, 240)), int(rng.integers(4, 320))
        img = rng.integers(0, 256, (h, w, 3) if t % 5 else (h, w)).astype(np.uint8)
        if t % 7 == 0:                                               # smooth image: many near-ties
            img = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None] if img.ndim == 3 else
                                  np.arange(w, dtype=np.uint8)[None, :], img.shape).copy()
        s = int(rng.choice([8, 16, 32, 64, 112]))
        side = float(rng.uniform(2, 4.5 * max(h, w)))
        x0, y0 = float(rng.uniform(-side, w)), float(rng.uniform(-side, h))
        got = sampler.resample(img, x0, y0, side, s, P._supersample(side, s))
        ref = _numpy_rgb(img, x0, y0, side, s)
        assert got.shape == ref.shape and got.dtype == np.uint8
        d = np.abs(got.astype(int) - ref.astype(int))
        assert d.max() <= 1, (t, h, w, x0, y0, side, s)
        moved, total = moved + int((d > 0).sum()), total + d.size
    MEASURED["resample"] = (moved, total)
    assert moved <= MOVED_BOUND * total, (moved, total)
    # a window that misses the image: all 0; far-off and gigantic windows (no overflow in the taps)
    assert not sampler.resample(img, -1e4, 5.0, 50.0, 16, 1).any()
    assert not sampler.resample(img, 1e300, -1e300, 1e300, 16, 3).any()
    for x0, y0, side in ((-1e6, -1e6, 4e6), (-3e12, 2.0, 6e12), (0.5, 0.5, 1e-3)):
        d = np.abs(sampler.resample(img, x0, y0, side, 16, P._supersample(side, 16)).astype(int)
                   - _numpy_rgb(img, x0, y0, side, 16).astype(int))
        assert d.max() <= 1, (x0, y0, side)


def test_resample_equals_numpy_where_every_product_and_sum_is_exact(sampler):
    """Dyadic weights (half-pixel windows, side = S or 2·S): products and sums are exact in float32 whatever their
    order, so the crops are identical; this pins the tap positions and weights."""
    rng = np.random.default_rng(14)
    for t in range(120):
        h, w = int(rng.integers(4, 100)), int(rng.integers(4, 120))
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        s = int(rng.choice([8, 16, 24]))
        side = float(s * int(rng.choice([1, 2])))
        x0, y0 = (float(v) / 2 for v in rng.integers(-2 * s, 2 * w, 2))
        got = sampler.resample(img, x0, y0, side, s, P._supersample(side, s))
        np.testing.assert_array_equal(got, _numpy_rgb(img, x0, y0, side, s), err_msg=str((t, x0, y0, side)))


def _random_rig(rng) -> tuple[Intrinsics, Intrinsics, Extrinsics]:
    """rgb and IR intrinsics (random size, focal, principal point, Brown-Conrady distortion) and a small rotation +
    baseline between them."""
    def intr() -> Intrinsics:
        w, h = int(rng.choice([320, 640, 848])), int(rng.choice([240, 480]))
        f = float(rng.uniform(0.6, 1.4) * w)
        model = str(rng.choice(["none", "brown_conrady", "inverse_brown_conrady", "modified_brown_conrady"]))
        coeffs = tuple(float(c) for c in rng.uniform(-0.03, 0.03, 5)) if model != "none" else ()
        return Intrinsics(w, h, f, f * float(rng.uniform(0.98, 1.02)), w / 2 + float(rng.uniform(-20, 20)),
                          h / 2 + float(rng.uniform(-20, 20)), model, coeffs)
    a = float(rng.uniform(-0.03, 0.03))
    rot = (math.cos(a), 0.0, math.sin(a), 0.0, 1.0, 0.0, -math.sin(a), 0.0, math.cos(a))
    ext = Extrinsics(rot, (float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.01, 0.01)), 0.0))
    return intr(), intr(), ext


def test_ir_crop_within_one_level_on_random_intrinsics_and_windows(sampler):
    """``_crop_projected`` with ``sample`` vs numpy on random rigs, windows across the border, depths, rolls."""
    rng = np.random.default_rng(15)
    moved = total = finite = 0
    for t in range(120):
        src, dst, ext = _random_rig(rng)
        img = rng.integers(0, 256, (dst.height, dst.width)).astype(np.uint8)
        side = float(rng.uniform(10, 400))
        x0 = float(rng.uniform(-side / 2, src.width - side / 2))
        y0 = float(rng.uniform(-side / 2, src.height - side / 2))
        s, z = int(rng.choice([32, 64, 112])), float(rng.uniform(0.25, 2.0))
        roll = None if t % 3 else float(rng.uniform(-0.6, 0.6))
        args = (img, src, dst, ext, x0, y0, side, s, z)
        got = P._crop_projected(*args, roll=roll, sample=sampler)
        ref = P._crop_projected(*args, roll=roll)
        lat = P._projected_lattice(*args[1:], roll=roll)[0]
        finite += bool(np.isfinite(lat).all())
        d = np.abs(got.astype(int) - ref.astype(int))
        assert d.max() <= 1, t
        moved, total = moved + int((d > 0).sum()), total + d.size
    MEASURED["ir_crop"] = (moved, total)
    assert finite >= 100                                             # the lattice path ran (else numpy's)
    assert moved <= MOVED_BOUND * total, (moved, total)


def _rotation(rng, max_angle: float) -> np.ndarray:
    """A rotation by up to ``max_angle`` rad about a random axis (Rodrigues)."""
    ax = rng.normal(size=3)
    ax /= np.linalg.norm(ax)
    a = float(rng.uniform(-max_angle, max_angle))
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def _wild_rig(rng, src_model: str, dst_model: str) -> tuple[Intrinsics, Intrinsics, Extrinsics]:
    """Cameras with strong distortion (|coeff| ≤ 0.1, or all 0 under a model name) and rotations up to 2 rad:
    lattices far outside the image and behind the dst camera."""
    def intr(model: str) -> Intrinsics:
        w, h = int(rng.choice([320, 640])), int(rng.choice([240, 480]))
        f = float(rng.uniform(0.5, 1.4) * w)
        coeffs = (() if model == "none" else (0.0,) * 5 if rng.random() < 0.1
                  else tuple(float(c) for c in rng.uniform(-0.1, 0.1, 5)))
        return Intrinsics(w, h, f, f * float(rng.uniform(0.98, 1.02)), w / 2 + float(rng.uniform(-30, 30)),
                          h / 2 + float(rng.uniform(-30, 30)), model, coeffs)
    return intr(src_model), intr(dst_model), Extrinsics.from_rt(_rotation(rng, 2.0), rng.uniform(-0.1, 0.1, 3))


def _reproject_elementwise(uv, depth_m, src, dst, ext):
    """``geometry.reproject`` with ``Extrinsics.apply``'s matrix product written as the C code's sum,
    ``((X·r0 + Y·r1) + Z·r2) + t``."""
    p, r, t = deproject(uv, depth_m, src), ext.r, ext.t
    q = np.stack([p[..., 0] * r[i, 0] + p[..., 1] * r[i, 1] + p[..., 2] * r[i, 2] + t[i] for i in range(3)], -1)
    return project(q, dst)


def _rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |Δ| / max(1, |ref|) over the finite values, after checking the NaNs are at the same places."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    f = np.isfinite(ref)
    return float((np.abs(got[f] - ref[f]) / np.maximum(1.0, np.abs(ref[f]))).max()) if f.any() else 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflows on the wildest lattices, as the C code
def test_reproject_equals_numpy_for_every_lens_model_incl_points_behind_the_camera(sampler):
    """Every (src, dst) pair of lens models, lattices over and far beyond the image, large rotations: bit for bit
    with the rotation summed elementwise (every other operation is geometry's, in its order), within
    ``REPROJECT_REL_WILD`` of ``geometry.reproject`` itself; NaN exactly where numpy has NaN."""
    rng = np.random.default_rng(17)
    behind = worst = 0.0
    for t in range(400):
        src, dst, ext = _wild_rig(rng, DISTORTION_MODELS[t % 4], DISTORTION_MODELS[(t // 4) % 4])
        side = float(rng.uniform(5, 900))
        x0, y0 = float(rng.uniform(-side, src.width)), float(rng.uniform(-side, src.height))
        tt = np.linspace(0.0, side, int(rng.integers(2, 20)))
        uv = np.stack(np.meshgrid(x0 + tt, y0 + tt), axis=-1)
        depth = float(rng.uniform(0.1, 3.0))
        got = sampler.reproject(uv, depth, src, dst, ext)
        assert got.shape == uv.shape and got.dtype == np.float64
        np.testing.assert_array_equal(got, _reproject_elementwise(uv, depth, src, dst, ext), err_msg=str(t))
        worst = max(worst, _rel_error(got, reproject(uv, depth, src, dst, ext)))
        behind += bool(np.isnan(got).any())
    MEASURED["reproject_wild_rel"] = (worst, REPROJECT_REL_WILD)
    assert behind >= 40                                              # points behind dst were exercised
    assert worst <= REPROJECT_REL_WILD


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's undistort overflows far outside some lenses
def test_compiled_lattice_within_a_tiny_bound_of_numpy_on_random_rigs_and_windows(sampler):
    """``_projected_lattice`` with ``sample`` (``sample.reproject``) vs numpy (``geometry.reproject``) on the rigs of
    the crop tests, windows across the border, depths, rolls: same ``g0``, ``fr``, ``k``; the lattice within
    ``REPROJECT_REL`` (a few ulps of the pixel)."""
    rng = np.random.default_rng(18)
    worst = 0.0
    for t in range(300):
        src, dst, ext = _random_rig(rng)
        side = float(rng.uniform(10, 400))
        x0 = float(rng.uniform(-side / 2, src.width - side / 2))
        y0 = float(rng.uniform(-side / 2, src.height - side / 2))
        args = (src, dst, ext, x0, y0, side, int(rng.choice([32, 64, 112])), float(rng.uniform(0.25, 2.0)))
        roll = None if t % 3 else float(rng.uniform(-0.6, 0.6))
        lat, g0, fr, k = P._projected_lattice(*args, roll=roll, sample=sampler)
        ref = P._projected_lattice(*args, roll=roll)
        np.testing.assert_array_equal(g0, ref[1])
        np.testing.assert_array_equal(fr, ref[2])
        assert k == ref[3]
        worst = max(worst, _rel_error(lat, ref[0]))
    MEASURED["reproject_rel"] = (worst, REPROJECT_REL)
    assert worst <= REPROJECT_REL


def test_a_lattice_behind_the_ir_camera_crops_through_numpy(sampler):
    """Points of the window behind the IR camera: the compiled lattice has NaN where numpy has, and the crop is
    numpy's (``_crop_projected`` falls back) — identical."""
    src = Intrinsics(640, 480, 600.0, 600.0, 320.0, 240.0, "brown_conrady", (0.02, -0.01, 0.001, 0.0, 0.0))
    dst = Intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0, "inverse_brown_conrady", (0.01, 0.0, 0.0, 0.001, 0.0))
    a = 1.4                                                          # 80°: the left of the window is behind dst
    ext = Extrinsics((math.cos(a), 0.0, math.sin(a), 0.0, 1.0, 0.0, -math.sin(a), 0.0, math.cos(a)), (0.05, 0, 0))
    img = np.random.default_rng(19).integers(0, 256, (480, 640)).astype(np.uint8)
    args = (src, dst, ext, -200.0, 100.0, 700.0, 64, 0.6)
    lat = P._projected_lattice(*args, sample=sampler)[0]
    ref = P._projected_lattice(*args)[0]
    assert np.isnan(lat).any() and not np.isnan(lat).all()
    assert _rel_error(lat, ref) <= REPROJECT_REL
    np.testing.assert_array_equal(P._crop_projected(img, *args, sample=sampler), P._crop_projected(img, *args))


@pytest.fixture(scope="module")
def synth():
    """Registered synthetic frame sets at 320×240 and their rig."""
    from edgepad.drivers.capture import open_capture
    cap = open_capture("synthetic://default?seed=4&width=320&height=240&presentation_frames=3")
    with cap:
        sets = [cap.read(10.0) for _ in range(6)]
    return sets[::2], cap.rig


def _ir16(fs):
    ir = fs.frames[Modality.IR]
    data = ir.data.astype(np.uint16) * 257 + np.uint16(100)
    frames = dict(fs.frames)
    frames[Modality.IR] = type(ir)(**{**{f: getattr(ir, f) for f in ir.__dataclass_fields__}, "data": data})
    return type(fs)(**{**{f: getattr(fs, f) for f in fs.__dataclass_fields__}, "frames": frames})


def test_crop_face_with_the_compiled_crops(sampler, synth):
    """Through ``crop_face``: axis-aligned rgb and IR within 1 level (rarely), depth identical; eye-aligned rgb runs
    numpy (identical), its IR the lattice; uint16 IR runs numpy (identical)."""
    sets, rig = synth
    rng = np.random.default_rng(16)
    moved = {Modality.RGB: 0, Modality.IR: 0}
    total = dict.fromkeys(moved, 0)
    for fs in sets:
        for i in range(12):
            bw = int(rng.integers(10, 260))
            box = (int(rng.integers(-80, 320)), int(rng.integers(-80, 240)), bw, int(bw * rng.uniform(0.8, 1.3)))
            s, margin = int(rng.choice([32, 112])), float(rng.choice([0.0, 0.25, 0.6]))
            lm = np.array([[box[0] + 5, box[1] + 8], [box[0] + 25, box[1] + 14], [0, 0], [0, 0], [0, 0]], float)
            for align, f in (("none", fs), ("eyes", fs), ("none", _ir16(fs))):
                kw = dict(size_px=s, margin=margin, align=align, landmarks=lm)
                got, ref = P.crop_face(f, box, rig, sample=sampler, **kw), P.crop_face(f, box, rig, **kw)
                assert got.face_depth_m == ref.face_depth_m and got.window_rgb == ref.window_rgb
                np.testing.assert_array_equal(got.crops[Modality.DEPTH], ref.crops[Modality.DEPTH])
                if align == "eyes":
                    np.testing.assert_array_equal(got.crops[Modality.RGB], ref.crops[Modality.RGB])
                if f is not fs:
                    np.testing.assert_array_equal(got.crops[Modality.IR], ref.crops[Modality.IR])
                for m in moved:
                    d = np.abs(got.crops[m].astype(int) - ref.crops[m].astype(int))
                    assert d.max() <= 1, (m, box, align)
                    moved[m], total[m] = moved[m] + int((d > 0).sum()), total[m] + d.size
    for m in moved:
        MEASURED[f"crop_face_{m.value}"] = (moved[m], total[m])
        assert moved[m] <= MOVED_BOUND * total[m], (m, moved[m], total[m])


def test_compiled_crop_arguments_outside_the_contract_raise(sampler):
    img = np.zeros((20, 30), np.uint8)
    lat = np.zeros((5, 5, 2))
    g0, fr = np.zeros(8, np.int32), np.zeros(8)
    bad = [lambda: sampler.lattice(img.astype(np.float32), lat, g0, fr, 2),
           lambda: sampler.lattice(img, lat[..., :1], g0, fr, 2),
           lambda: sampler.lattice(img, lat, g0, fr, 3),                           # k does not divide N
           lambda: sampler.lattice(img, lat, g0 + 4, fr, 2),                       # cell beyond the lattice
           lambda: sampler.lattice(img, np.full((5, 5, 2), np.nan), g0, fr, 2),
           lambda: sampler.resample(img.astype(np.uint16), 0.0, 0.0, 10.0, 8, 1),
           lambda: sampler.resample(img, 0.0, float("nan"), 10.0, 8, 1),
           lambda: sampler.resample(img, 0.0, 0.0, 0.0, 8, 1),
           lambda: sampler.resample(img, 0.0, 0.0, 10.0, 8, 0),
           lambda: sampler.reproject(np.zeros((4, 3)), 1.0, *_random_rig(np.random.default_rng(0))),
           lambda: sampler.reproject(np.zeros((4, 2)), float("nan"), *_random_rig(np.random.default_rng(0)))]
    for call in bad:
        with pytest.raises(EdgePadInternalError):
            call()


def test_crop_face_bad_box_is_a_shape_error_with_the_sampler(sampler, synth):
    sets, rig = synth
    with pytest.raises(ShapeError):
        P.crop_face(sets[0], (10, 10, 0, 20), rig, sample=sampler)
    with pytest.raises(ShapeError):
        P.crop_face(sets[0], ("a", 1, 2, 3), rig, sample=sampler)


def test_without_the_kernel_the_pipeline_crops_through_numpy(monkeypatch, tmp_path):
    """``EDGEPAD_NATIVE=0``: no sampler, the pipeline passes ``sample=None`` and its crops are numpy's."""
    from edgepad.assets import default_model_path
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import open_pipeline
    monkeypatch.setattr(reg_native, "_STATE", {})
    monkeypatch.setenv("EDGEPAD_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEPAD_NATIVE", "0")
    assert reg_native.crop_sampler() is None
    seen = []
    crop = P.crop_face

    def spy(fs, box, rig, **kw):
        seen.append(kw.get("sample"))
        res = crop(fs, box, rig, **kw)
        ref = crop(fs, box, rig, **{**kw, "sample": None})
        for m in ref.crops:
            np.testing.assert_array_equal(res.crops[m], ref.crops[m])
        return res

    monkeypatch.setattr(P, "crop_face", spy)
    with open_pipeline("synthetic://default?width=320&height=240&presentation_frames=2",
                       load_backend(default_model_path(), "auto", threads=1), locator="haar") as p:
        scores = [p.process(p.capture.read(10.0)).score for _ in range(4)]
    assert seen and all(s is None for s in seen)
    assert any(s is not None for s in scores)
