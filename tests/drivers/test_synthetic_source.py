"""SyntheticSource and the synthesis renderer: determinism, rig, geometry, PAI cues, timestamps, Haar detection."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepad.drivers.registry import open_source
from edgepad.drivers.synthetic import SyntheticSource
from edgepad.errors import ConfigError, EndOfStream
from edgepad.geometry import deproject, project
from edgepad.synthesis import (ATTACK_SPECIES, SPECIES, RenderCache, default_rig, render_frames,
                               sample_presentation)
from edgepad.types import Modality

RIG_SMALL = default_rig(320, 240)
CACHE_SMALL = RenderCache(RIG_SMALL, 0, max_presentations=4)


def _render(species: str, *, distance: float = 0.5, yaw: float = 0.0, pitch: float = 0.0, index: int = 0,
            rig=RIG_SMALL, cache=CACHE_SMALL, frame: int = 0, subject: int = 1):
    p = sample_presentation(index, species, subject, seed=11, domain="demo")
    p = dataclasses.replace(p, distance_m=distance, yaw_deg=yaw, pitch_deg=pitch, roll_deg=0.0, offset_m=(0, 0),
                            lighting={**p.lighting, "sway": 0.0, "nir_ambient": 1.0, "emitter": 1.0})
    return p, render_frames(p, rig, frame=frame, seed=5, cache=cache)


def _valid_points_ir(r, mask):
    """Deproject the valid depth pixels under ``mask`` (IR camera) to metres."""
    intr = RIG_SMALL.intrinsics[Modality.DEPTH]
    v, u = np.nonzero(mask & (r.depth > 0))
    z = r.depth[v, u].astype(np.float64) / 1000.0
    return deproject(np.stack([u, v], -1).astype(np.float64), z, intr)


def _centre_mask(mask, frac=0.5):
    v, u = np.nonzero(mask)
    cu, cv = u.mean(), v.mean()
    hw, hh = (u.max() - u.min()) * frac / 2, (v.max() - v.min()) * frac / 2
    vv, uu = np.mgrid[: mask.shape[0], : mask.shape[1]]
    return mask & (np.abs(uu - cu) < hw) & (np.abs(vv - cv) < hh)


# ------------------------------------------------------------------------------------------------- rig
def test_rig_is_calibrated_with_distortion_baseline_and_rotation():
    rig = SyntheticSource().rig
    rgb, ir, dep = (rig.intrinsics[m] for m in (Modality.RGB, Modality.IR, Modality.DEPTH))
    assert (rgb.width, rgb.height) == (640, 480) and 600 < rgb.fx < 630
    assert rgb.has_distortion and rgb.distortion == "brown_conrady"
    assert 390 <= ir.fx <= 430 and ir == dep
    e = rig.extrinsics(Modality.IR, Modality.RGB)
    assert 0.012 < np.linalg.norm(e.t) < 0.018
    assert 0.05 < e.angle_deg <= 1.0
    assert rig.to_reference[Modality.DEPTH] == rig.to_reference[Modality.IR]
    assert rig.depth_scale_m == 0.001


# ------------------------------------------------------------------------------------------------- determinism
def _first_frames(seed, n=5, **kw):
    with SyntheticSource(seed=seed, width=160, height=120, frames=2, presentation_frames=1, jitter_ms=2.0,
                         **kw) as src:
        return [src.read(1.0) for _ in range(n)]


def test_same_seed_same_frames_and_timestamps_other_seed_differs():
    a, b, c = _first_frames(3), _first_frames(3), _first_frames(4)
    for fa, fb in zip(a, b):
        assert fa.modality == fb.modality and fa.timestamp_ns == fb.timestamp_ns and fa.sequence == fb.sequence
        assert np.array_equal(fa.data, fb.data)
    by_key = {(f.modality, f.sequence): f for f in c}
    pairs = [(f, by_key[(f.modality, f.sequence)]) for f in a if (f.modality, f.sequence) in by_key]
    assert len(pairs) >= 3
    assert all(not np.array_equal(fa.data, fc.data) for fa, fc in pairs)


def test_frames_have_the_documented_layout():
    with SyntheticSource(seed=1, width=160, height=120, frames=1) as src:
        frames = {f.modality: f for f in (src.read(1.0) for _ in range(3))}
        rig = src.rig
    assert set(frames) == {Modality.RGB, Modality.DEPTH, Modality.IR}
    assert frames[Modality.RGB].data.shape == (120, 160, 3) and frames[Modality.RGB].data.dtype == np.uint8
    d = frames[Modality.DEPTH]
    assert d.data.dtype == np.uint16 and d.depth_scale_m == 0.001 and d.registered_to is None
    assert d.intrinsics == rig.intrinsics[Modality.DEPTH]
    assert frames[Modality.IR].data.dtype == np.uint8 and not frames[Modality.IR].data.flags.writeable


# ------------------------------------------------------------------------------------------------- geometry
def test_depth_pixel_deprojected_through_the_rig_lands_on_the_face_in_rgb():
    p, r = _render("bonafide", distance=0.45, yaw=12.0)
    pts_ir = _valid_points_ir(r, _centre_mask(r.face_mask_ir, 0.6))
    assert len(pts_ir) > 500
    pts_rgb = RIG_SMALL.extrinsics(Modality.IR, Modality.RGB).apply(pts_ir)
    uv = np.round(project(pts_rgb, RIG_SMALL.intrinsics[Modality.RGB])).astype(int)
    inside = r.face_mask_rgb[np.clip(uv[:, 1], 0, 239), np.clip(uv[:, 0], 0, 319)]
    assert inside.mean() > 0.97
    # ignoring the rig (identity extrinsics, IR intrinsics) misplaces the points: the test can fail
    uv_wrong = np.round(project(pts_ir, RIG_SMALL.intrinsics[Modality.IR])).astype(int)
    x, y, w, h = r.truth.face_box_rgb
    cx_true = (uv[:, 0].mean(), uv[:, 1].mean())
    cx_wrong = (uv_wrong[:, 0].mean(), uv_wrong[:, 1].mean())
    assert np.hypot(cx_true[0] - cx_wrong[0], cx_true[1] - cx_wrong[1]) > 3
    assert x <= cx_true[0] <= x + w and y <= cx_true[1] <= y + h


def _plane_rms(pts):
    c = pts.mean(axis=0)
    _, s, _ = np.linalg.svd(pts - c, full_matrices=False)
    return s[-1] / np.sqrt(len(pts))


def test_flat_print_is_planar_and_the_face_has_several_cm_of_relief():
    _, flat = _render("print_flat", distance=0.6, yaw=15.0)
    pts = _valid_points_ir(flat, _centre_mask(flat.face_mask_ir, 0.8))
    sigma = 0.0042 * 0.6 ** 2
    assert _plane_rms(pts) < 2.0 * sigma + 0.0006  # noise + 1 mm quantisation
    _, face = _render("bonafide", distance=0.6, yaw=15.0)
    pts = _valid_points_ir(face, _centre_mask(face.face_mask_ir, 0.8))
    assert _plane_rms(pts) > 0.008
    z = pts[:, 2]
    assert np.percentile(z, 98) - np.percentile(z, 2) > 0.03


def test_bent_print_has_single_curvature_below_face_relief():
    _, bent = _render("print_bent", distance=0.6)
    pts = _valid_points_ir(bent, _centre_mask(bent.face_mask_ir, 0.8))
    # a cylinder about the vertical axis: z is (nearly) a function of x only
    x, y, z = pts.T
    coef = np.polyfit(x, z, 2)
    resid = z - np.polyval(coef, x)
    assert np.sqrt(np.mean(resid ** 2)) < 0.002 and coef[0] > 0.5  # curved away from the camera at the sides


# ------------------------------------------------------------------------------------------------- cues
def _nir_face(r, frac=0.5):
    m = _centre_mask(r.face_mask_ir, frac)
    return float(np.median(r.ir[m]))


def test_nir_cues_per_species():
    base = _nir_face(_render("bonafide", distance=0.5)[1])
    assert 25 < base < 230
    assert _nir_face(_render("replay", distance=0.5)[1]) < 0.25 * base  # screens emit ~no NIR
    assert _nir_face(_render("flexiblemask", distance=0.5)[1]) > 1.15 * base  # silicone ρ ≠ skin
    assert _nir_face(_render("rigidmask", distance=0.5)[1]) < 0.8 * base  # painted plastic
    glossy = _nir_face(_render("print_glossy", distance=0.5)[1])
    assert 0.6 * base < glossy < 1.5 * base  # glossy print mimics skin in NIR (caught by depth only)
    # 1/r² falloff: the same face twice as far is ≈ 4× darker
    far = _nir_face(_render("bonafide", distance=1.0)[1])
    assert 2.5 < base / far < 5.5


def test_replay_has_depth_holes_on_the_screen_and_dye_print_fades_in_nir():
    _, rep = _render("replay", distance=0.5)
    m = _centre_mask(rep.face_mask_ir, 0.6)
    assert (rep.depth[m] == 0).mean() > 0.3
    _, face = _render("bonafide", distance=0.5)
    m = _centre_mask(face.face_mask_ir, 0.6)
    assert (face.depth[m] == 0).mean() < 0.2
    # RGB of the replay shows the screen's moiré, NIR does not show the face
    assert rep.rgb[rep.face_mask_rgb].std() > 5


def test_every_species_renders_and_masks_cover_pixels():
    for i, sp in enumerate(SPECIES):
        _, r = _render(sp, distance=0.7, index=i)
        assert r.face_mask_rgb.sum() > 500 and r.face_mask_ir.sum() > 300, sp
        assert r.truth.species == sp and r.truth.is_bonafide == (sp == "bonafide")
        assert (r.truth.family is None) == (sp == "bonafide")
        assert r.truth.face_box_rgb is not None


# ------------------------------------------------------------------------------------------------- timestamps
def test_timestamps_monotonic_with_jitter_drops_and_clock_offset():
    src = open_source("synthetic://default?seed=2&fps=30&frames=40&jitter_ms=3&drop_prob=0.1&clock_offset_ms=7",
                      width=160, height=120, presentation_frames=20)
    last: dict = {}
    seqs: dict = {m: [] for m in Modality}
    periods = []
    with src:
        with pytest.raises(EndOfStream):
            while True:
                f = src.read(1.0)
                assert f is not None
                if f.modality in last:
                    assert f.timestamp_ns > last[f.modality].timestamp_ns
                    if f.sequence == last[f.modality].sequence + 1 and f.modality is Modality.RGB:
                        periods.append(f.timestamp_ns - last[f.modality].timestamp_ns)
                assert f.timestamp_ns - f.device_timestamp_ns == 7_000_000
                last[f.modality] = f
                seqs[f.modality].append(f.sequence)
    for m, s in seqs.items():
        assert s == sorted(s) and len(set(s)) == len(s)
        assert 25 <= len(s) < 40  # some dropped, sequence numbers skipped
    periods = np.array(periods)
    assert abs(np.median(periods) - 33_333_333) < 3e6 and periods.std() > 1e6  # jittered


def test_options_are_validated():
    with pytest.raises(ConfigError) as e:
        open_source("synthetic://default?sed=3")
    assert "seed" in str(e.value)
    with pytest.raises(ConfigError):
        SyntheticSource(species="print_flatt")
    with pytest.raises(ConfigError):
        SyntheticSource(width=100, height=100)
    with pytest.raises(ConfigError):
        SyntheticSource("nonsense")
    assert SyntheticSource("replay").species == ("replay",)
    assert SyntheticSource(species="bonafide,replay").species == ("bonafide", "replay")


def test_truth_cycles_species_and_matches_the_rendered_frame():
    src = SyntheticSource(seed=4, width=160, height=120, presentation_frames=3, species="bonafide,print_flat,replay")
    assert [src.truth(k).species for k in range(0, 9, 3)] == ["bonafide", "print_flat", "replay"]
    assert src.truth(4).frame == 1 and src.truth(4).index == 1
    r = src.render(4)
    assert r.truth == src.truth(4)
    assert src.truth(4).face_box_rgb != src.truth(5).face_box_rgb or src.truth(4).yaw_deg != src.truth(5).yaw_deg


# ------------------------------------------------------------------------------------------------- Haar
HAAR_PARAMS = dict(scaleFactor=1.1, minNeighbors=3, minSize=(40, 40))  # documented in docs/SYNTHETIC.md


def _iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.mark.parametrize("species", [("bonafide",), ("print_flat", "print_glossy", "replay", "papermask",
                                                      "rigidmask", "flexiblemask")])
def test_opencv_haar_cascade_finds_the_synthetic_faces(species):
    cv2 = pytest.importorskip("cv2")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    src = SyntheticSource(seed=21, presentation_frames=1, species=",".join(species), shuffle=True)
    hits = []
    for k in range(12):
        t = src.truth(k)
        assert 0.35 <= t.distance_m <= 0.91
        r = src.render(k)
        grey = cv2.cvtColor(r.rgb, cv2.COLOR_RGB2GRAY)
        det = cascade.detectMultiScale(grey, **HAAR_PARAMS)
        hits.append(any(_iou(tuple(d), t.face_box_rgb) > 0.3 for d in det) if t.face_box_rgb else False)
    assert np.mean(hits) >= 0.7, hits


def test_attack_species_list_is_complete():
    assert set(ATTACK_SPECIES) == {"print_flat", "print_bent", "print_glossy", "replay", "papermask", "rigidmask",
                                   "flexiblemask"}
