"""The learned face detector (edgepad.runtime.detector): numpy decode/NMS on hand-made cases, the shipped model's
provenance, and detection on the synthetic camera and on real photographs shipped inside PyPI wheels."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.runtime import detector as D

REPO = Path(__file__).resolve().parents[2]


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _sane(face) -> bool:
    """Eyes above the nose above the mouth corners, left/right in order, all inside the box grown by 10 %."""
    lm = face.landmarks
    x, y, w, h = face.box
    inside = np.all((lm[:, 0] > x - 0.1 * w) & (lm[:, 0] < x + 1.1 * w) & (lm[:, 1] > y - 0.1 * h)
                    & (lm[:, 1] < y + 1.1 * h))
    return bool(inside and lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
                and max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1]))


# ------------------------------------------------------------------------------------------ numpy helpers


def test_pyramid_scales_start_at_min_face_and_stop_at_one_window():
    s = D.pyramid_scales(480, 640, 48, factor=0.5)
    assert s == [0.25, 0.125, 0.0625, 0.03125]  # 480 * 0.03125 = 15 >= 12; 7.5 < 12 stops
    assert D.pyramid_scales(10, 10, 12) == []
    with pytest.raises(ConfigError):
        D.pyramid_scales(480, 640, 48, factor=1.2)


def test_pnet_priors_are_12px_windows_at_stride_2_of_the_level():
    pr = D.pnet_priors(2, 3, scale=0.5)
    assert pr.shape == (6, 4)
    # row-major: cell (row 0, col 2) then (row 1, col 0)
    np.testing.assert_allclose(pr[2], [8, 0, 32, 24])
    np.testing.assert_allclose(pr[3], [0, 4, 24, 28])


def test_decode_pnet_keeps_cells_over_threshold_with_their_regression():
    prob = np.zeros((1, 2, 3, 4), np.float32)
    prob[0, 1, 1, 2] = 0.9
    prob[0, 1, 2, 0] = 0.5  # below threshold
    reg = np.zeros((1, 4, 3, 4), np.float32)
    reg[0, :, 1, 2] = [0.1, -0.2, 0.3, 0.4]
    out = D.decode_pnet(prob, reg, scale=1.0, threshold=0.6)
    assert out.shape == (1, 9)
    np.testing.assert_allclose(out[0], [4, 2, 16, 14, 0.9, 0.1, -0.2, 0.3, 0.4], rtol=1e-6)
    assert D.decode_pnet(prob, reg, 1.0, 0.95).shape == (0, 9)


def test_nms_union_drops_the_overlapping_lower_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.1])
    keep = D.nms(boxes, scores, iou=0.5)
    assert keep.tolist() == [1, 2]  # 0 overlaps 1 (IoU 9/11), 3 overlaps 1
    assert D.nms(boxes, scores, iou=0.96).tolist() == [1, 0, 2, 3]  # largest overlap: 0 vs 3, IoU 0.952
    assert D.nms(boxes, scores, iou=0.95).tolist() == [1, 0, 2]
    assert D.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_min_mode_drops_a_box_nested_in_a_larger_one():
    boxes = np.array([[0, 0, 100, 100], [40, 40, 60, 60]], float)
    scores = np.array([0.9, 0.95])
    assert D.nms(boxes, scores, 0.7, mode="union").tolist() == [1, 0]  # IoU 0.04
    assert D.nms(boxes, scores, 0.7, mode="min").tolist() == [1]  # contained: overlap/smaller = 1
    with pytest.raises(ConfigError):
        D.nms(boxes, scores, 0.5, mode="max")


def test_nms_ties_keep_the_lower_index():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    assert D.nms(boxes, np.array([0.5, 0.5]), 0.3).tolist() == [0]


def test_regression_square_and_landmarks():
    boxes = np.array([[10, 20, 30, 60]], np.float32)  # w 20, h 40
    np.testing.assert_allclose(D.apply_regression(boxes, np.array([[0.1, -0.25, 0.5, 0.0]])), [[12, 10, 40, 60]])
    np.testing.assert_allclose(D.square(boxes), [[0, 20, 40, 60]])
    lm = np.array([[0.25, 0.75, 0.5, 0.3, 0.7, 0.3, 0.3, 0.5, 0.8, 0.8]], np.float32)
    pts = D.decode_landmarks(boxes, lm)
    assert pts.shape == (1, 5, 2)
    np.testing.assert_allclose(pts[0, 0], [15, 32])
    np.testing.assert_allclose(pts[0, 4], [24, 52])


def test_crop_batch_pads_outside_the_image_with_zero():
    pytest.importorskip("cv2")
    img = np.full((20, 20, 3), 200, np.uint8)
    img[:10, :10] = 50
    crops = D.crop_batch(img, np.array([[0, 0, 10, 10], [-10, -10, 10, 10], [30, 30, 40, 40]], float), 10)
    assert crops.shape == (3, 10, 10, 3)
    assert np.all(crops[0] == 50)
    assert np.all(crops[1][:5, :5] == 0) and np.all(crops[1][5:, 5:] == 50)
    assert np.all(crops[2] == 0)


def test_normalise_is_nchw_in_minus_one_to_one():
    x = D.normalise(np.array([[[[0, 255, 128]]]], np.uint8))
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), [-0.99609375, 0.99609375, 0.00390625])
    img = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    ref = np.moveaxis((img.astype(np.float32) - D.PIXEL_MEAN) * D.PIXEL_SCALE, -1, 1)
    assert np.array_equal(D.normalise(img), ref) and D.normalise(img).flags.c_contiguous


def test_crop_batch_resizes_into_its_output_as_cv2_resize_does():
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[20.4, 10.6, 70.5, 59.5], [30, 20, 40, 30]], np.float32)
    crops = D.crop_batch(img, boxes, 24)
    assert np.array_equal(crops[0], cv2.resize(img[11:60, 20:70], (24, 24), interpolation=cv2.INTER_AREA))
    assert np.array_equal(crops[1], cv2.resize(img[20:30, 30:40], (24, 24), interpolation=cv2.INTER_LINEAR))


# -------------------------------------------------------------------------------------- shipped model files


def _load_script():
    spec = importlib.util.spec_from_file_location("convert_face_detector", REPO / "scripts" /
                                                  "convert_face_detector.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_model_matches_its_recorded_sha256_and_upstream():
    meta = D.load_manifest()
    assert meta["detector"] == "mtcnn"
    script = _load_script()
    for stage, fname in D.STAGE_FILES.items():
        rec = meta["files"][stage]
        assert rec["file"] == fname
        data = (D.default_model_dir() / fname).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["sha256"]
        assert rec["upstream_sha256"] == script.UPSTREAM_SHA256[stage]
    prov = (REPO / "edgepad" / "assets" / "DETECTOR_PROVENANCE.md").read_text()
    for stage in D.STAGE_FILES:
        assert meta["files"][stage]["sha256"] in prov and script.UPSTREAM_SHA256[stage] in prov


def test_conversion_reproduces_the_shipped_files(tmp_path):
    """Only where the upstream weights (facenet-pytorch wheel), torch and onnx are installed."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip("facenet-pytorch (the upstream weights) not installed")
    script = _load_script()
    meta = script.convert(script.default_weights_dir(), tmp_path)
    shipped = D.load_manifest()
    for stage in D.STAGE_FILES:
        assert meta["files"][stage]["sha256"] == shipped["files"][stage]["sha256"]


# ----------------------------------------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    return D.LearnedFaceDetector()


def test_detector_rejects_bad_input_and_finds_nothing_on_blank(detector):
    with pytest.raises(ConfigError):
        detector.detect(np.zeros((48, 48), np.uint8))
    with pytest.raises(ConfigError):
        detector.detect(np.zeros((48, 48, 3), np.float32))
    assert detector.detect(np.full((480, 640, 3), 120, np.uint8)) == []
    assert detector.largest(np.full((120, 160, 3), 120, np.uint8)) is None


def test_detector_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        D.LearnedFaceDetector(model_dir=tmp_path)
    with pytest.raises(ConfigError):
        D.LearnedFaceDetector(min_face_px=8)
    with pytest.raises(ConfigError):
        D.LearnedFaceDetector(score_threshold=1.5)


@pytest.mark.parametrize("species,distance,yaw", [("bonafide", 0.35, 0.0), ("bonafide", 0.8, 15.0),
                                                  ("bonafide", 1.4, -10.0), ("print_flat", 0.6, 0.0),
                                                  ("replay", 1.0, 5.0), ("rigidmask", 0.5, -15.0)])
def test_detector_finds_the_synthetic_face(detector, species, distance, yaw):
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    p = sample_presentation(3, species, 4, seed=11, domain="nominal")
    p = dataclasses.replace(p, distance_m=distance, yaw_deg=yaw, offset_m=(0.0, 0.0))
    r = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1))
    truth = r.truth.face_box_rgb
    rgb = r.rgb.copy()
    rgb.flags.writeable = False  # as a Frame's pixels
    faces = detector.detect(rgb)
    assert faces, (species, distance)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    best = detector.largest(r.rgb)
    assert _iou(best.box, truth) >= 0.5, (best.box, truth)
    assert best.landmarks.shape == (5, 2) and best.landmarks.dtype == np.float32
    assert 0.0 <= best.score <= 1.0 and _sane(best)
    x, y, w, h = best.box_int()
    assert w >= 1 and h >= 1


def _package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (its wheel ships the photograph)")
    p = Path(spec.origin).parent.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"{p} is not in this {package} build")
    return p


# face region (x0, y0, x1, y1) that each photo's face centre must fall in, read off the photographs
PHOTOS = [("skimage", ("data", "astronaut.png"), (180, 60, 270, 180)),
          ("skimage", ("data", "camera.png"), (190, 110, 265, 205)),
          ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg"), (170, 110, 350, 340))]


@pytest.mark.parametrize("package,parts,region", PHOTOS, ids=[p[1][-1] for p in PHOTOS])
def test_detector_on_real_photographs(detector, package, parts, region):
    import cv2
    path = _package_file(package, *parts)
    rgb = np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])
    faces = detector.detect(rgb)
    assert len(faces) == 1, [f.box for f in faces]
    f = faces[0]
    cx, cy = f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2
    assert region[0] <= cx <= region[2] and region[1] <= cy <= region[3], f.box
    assert f.score > 0.9 and _sane(f)
    assert 0.25 < f.inter_eye_px / f.box[2] < 0.7


def test_detector_recall_on_lfw_crops(detector):
    """scikit-image's 100 LFW face crops (25x25, shown 4x upscaled) and its 100 non-face crops."""
    import cv2
    crops = (np.load(_package_file("skimage", "data", "lfw_subset.npy")) * 255).clip(0, 255).astype(np.uint8)
    found = sane = false = 0
    for i, c in enumerate(crops):
        g = cv2.copyMakeBorder(cv2.resize(c, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC), 50, 50, 50, 50,
                               cv2.BORDER_REPLICATE)
        faces = detector.detect(np.repeat(g[:, :, None], 3, axis=2))
        if i < 100:
            hit = [f for f in faces if _iou(f.box, (50, 50, 100, 100)) >= 0.5]
            found += bool(hit)
            sane += bool(hit) and _sane(hit[0])
        else:
            false += bool(faces)
    assert found >= 95 and sane >= found - 2, (found, sane)
    assert false <= 2


def test_map_box_to_the_crop_convention():
    assert D.map_box((10, 20, 40, 40), (0, 0, 1, 1)) == (10, 20, 40, 40)
    # shift down by 0.25 side, shrink the width to half
    assert D.map_box((10, 20, 40, 40), (0, 0.25, 0.5, 1.0)) == (20, 30, 20, 40)
    # the longer side sets the scale
    assert D.map_box((0, 0, 20, 40), (0, 0, 1, 1)) == (-10, 0, 40, 40)


def test_mapped_box_matches_the_synthetic_truth_better(detector):
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    cache = RenderCache(rig, 0, max_presentations=1)
    raw, mapped = [], []
    for i in range(4):
        p = sample_presentation(i, "bonafide", i, seed=7, domain="nominal")
        r = render_frames(p, rig, seed=5, cache=cache)
        f = detector.largest(r.rgb)
        assert f is not None
        raw.append(_iou(f.box, r.truth.face_box_rgb))
        mapped.append(_iou(D.map_box(f.box), r.truth.face_box_rgb))
    assert np.median(mapped) > np.median(raw) and np.median(mapped) > 0.8, (raw, mapped)


def test_region_search_reports_full_image_coordinates(detector):
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    p = sample_presentation(1, "bonafide", 2, seed=11, domain="nominal")
    r = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1))
    full = detector.largest(r.rgb)
    x, y, w, h = full.box
    region = (int(x - w), int(y - h), int(x + 2 * w), int(y + 2 * h))
    part = detector.largest(r.rgb, region)
    assert part is not None and _iou(part.box, full.box) > 0.8
    assert np.abs(part.landmarks - full.landmarks).max() < 0.15 * w
    # a region away from the face finds nothing; a region too small to hold one window is refused quietly
    assert detector.detect(r.rgb, (0, 0, 60, 60)) == []
    assert detector.detect(r.rgb, (10, 10, 15, 15)) == []


def test_pyramid_parts_split_levels_by_pixel_cost():
    scales = D.pyramid_scales(480, 640, 48)
    assert D.pyramid_parts(scales, 1) == [list(range(len(scales)))]
    two = D.pyramid_parts(scales, 2)
    assert two == [[0], [1, 2, 3, 4, 5, 6]]  # level 0 holds about half of the pyramid's pixels
    many = D.pyramid_parts(scales, 20)
    assert sorted(i for g in many for i in g) == list(range(len(scales))) and all(many)
    assert D.pyramid_parts([], 2) == [[]]
    with pytest.raises(ConfigError):
        D.pyramid_parts(scales, 0)


def test_levels_and_seeds_search_parts_of_the_pyramid_or_only_the_last_box(detector):
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    p = dataclasses.replace(sample_presentation(1, "bonafide", 2, seed=11, domain="nominal"), distance_m=0.7)
    r = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1))
    full = detector.largest(r.rgb)
    n = len(detector.scales(*r.rgb.shape[:2]))
    assert full.box == detector.largest(r.rgb, levels=range(n)).box
    # a ~150 px face: not on the finest level (48-68 px windows), found on the coarser ones
    assert detector.largest(r.rgb, levels=[0]) is None
    assert _iou(detector.largest(r.rgb, levels=range(1, n)).box, full.box) > 0.9
    # no P-Net at all: O-Net alone refits a box shifted by 8 % of the face to the face
    x, y, w, h = full.box
    seeded = detector.largest(r.rgb, levels=[], seeds=np.array([[x + 0.08 * w, y - 0.08 * h, w, h]]))
    assert seeded is not None and _iou(seeded.box, full.box) > 0.8 and _sane(seeded)
    # a seed on the background holds no face
    assert detector.largest(r.rgb, levels=[], seeds=np.array([[0, 0, w, h]], np.float32)) is None
    assert detector.largest(r.rgb, levels=[]) is None


def test_pnet_windows_on_a_seeded_face_are_left_to_the_seed(detector, monkeypatch):
    """A full search beside the track: P-Net windows overlapping the seed (IoU >= SEED_IOU) are dropped before
    R-Net, so R-Net sees fewer crops, and the face found is the same as without the seed."""
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    p = dataclasses.replace(sample_presentation(1, "bonafide", 2, seed=11, domain="nominal"), distance_m=0.7)
    rgb = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1)).rgb
    n = len(detector.scales(*rgb.shape[:2]))
    seen = []
    stage = type(detector)._stage

    def counting(self, name, img, boxes, size, thr):
        if name == "rnet":
            seen.append(len(boxes))
        return stage(self, name, img, boxes, size, thr)

    monkeypatch.setattr(type(detector), "_stage", counting)
    alone = detector.largest(rgb, levels=range(n))
    seed = np.array([alone.box], np.float32)
    with_seed = detector.largest(rgb, levels=range(n), seeds=seed)
    pnet_only, seeded = seen
    assert seeded < pnet_only + 1          # without the rule R-Net would get every P-Net window plus the seed
    assert _iou(with_seed.box, alone.box) > 0.9 and _sane(with_seed)
    sq = D.square(np.array([[*alone.box[:2], alone.box[0] + alone.box[2], alone.box[1] + alone.box[3]]],
                           np.float32))[0]
    boxes = detector._stage_pnet(rgb, None, list(range(n)))
    assert (D.box_iou_one(sq, np.asarray(boxes, np.float32)) >= D.SEED_IOU).any()  # there were windows to drop


# ------------------------------------------------------------------------------------ the tracked pass (O-Net)


class _CountingSession:
    """An ONNX Runtime session wrapped to count its runs; ``reject`` sets the face probability of the next that
    many runs to 0 (O-Net turning the crop down)."""

    def __init__(self, sess, log, name):
        self.sess, self.log, self.name, self.reject = sess, log, name, 0

    def run(self, names, feeds):
        self.log.append(self.name)
        outs = self.sess.run(names, feeds)
        if self.reject:
            self.reject -= 1
            outs[0] = np.zeros_like(outs[0])
        return outs


@pytest.fixture()
def counting(detector, monkeypatch):
    log = []
    wrapped = {k: _CountingSession(s, log, k) for k, s in detector._sess.items()}
    monkeypatch.setattr(detector, "_sess", wrapped)
    return log, wrapped


def _render(distance=0.7, offset=(0.0, 0.0)):
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    p = dataclasses.replace(sample_presentation(1, "bonafide", 2, seed=11, domain="nominal"), distance_m=distance,
                            offset_m=offset)
    return render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1))


def _frameset(rgb, i):
    from edgepad.synthesis import default_rig
    from edgepad.types import FrameSet, Modality, make_frame
    intr = default_rig().intrinsics[Modality.RGB]
    return FrameSet({Modality.RGB: make_frame("rgb", rgb, i, sequence=i, intrinsics=intr)}, i)


def test_a_tracked_frame_runs_onet_alone_on_the_last_box(detector, counting):
    from edgepad.runtime.face import LearnedFaceLocator
    log, _ = counting
    r = _render()
    loc = LearnedFaceLocator(detector=detector, detect_every=100, verify_every=1)
    first = loc.locate(_frameset(r.rgb, 0))
    assert first is not None and log.count("pnet") >= 1 and log[-2:] == ["rnet", "onet"]
    del log[:]
    for i in range(1, 4):
        d = loc.locate(_frameset(r.rgb, i))
        assert d is not None and d.landmarks.shape == (5, 2)
        assert _iou(d.box, r.truth.face_box_rgb) > 0.7
    assert log == ["onet"] * 3  # no P-Net, no R-Net: one 48² crop per tracked frame
    # the default schedule: O-Net on every second tracked frame, the landmarks' flow on the others (no network)
    loc = LearnedFaceLocator(detector=detector, detect_every=100)
    assert loc.locate(_frameset(r.rgb, 0)) is not None
    del log[:]
    for i in range(1, 5):
        d = loc.locate(_frameset(r.rgb, i))
        assert d is not None and _iou(d.box, r.truth.face_box_rgb) > 0.7
    assert log == ["onet"] * 2 and loc.searches["flow"] == 2


def test_a_seed_onet_rejects_goes_through_rnet_and_onet(detector, counting):
    log, sess = counting
    r = _render()
    full = detector.largest(r.rgb)
    del log[:]
    sess["onet"].reject = 1  # O-Net turns the seed down: R-Net recentres it, O-Net accepts the refit box
    again = detector.largest(r.rgb, levels=[], seeds=np.array([full.box], np.float32))
    assert log == ["onet", "rnet", "onet"]
    assert again is not None and _iou(again.box, full.box) > 0.8 and _sane(again)
    # a face that moved by 30 % of its side: O-Net alone or with R-Net's help still finds it on this frame
    x, y, w, h = full.box
    moved = detector.largest(r.rgb, levels=[], seeds=np.array([[x + 0.3 * w, y + 0.1 * h, w, h]], np.float32))
    assert moved is not None and _iou(moved.box, full.box) > 0.8


def test_the_tracked_box_follows_the_face_on_this_frame_and_a_face_that_left_is_lost(detector):
    from edgepad.runtime.face import LearnedFaceLocator
    loc = LearnedFaceLocator(detector=detector, detect_every=100)
    here, there = _render(0.7, (0.0, 0.0)), _render(0.7, (0.04, 0.02))
    a = loc.locate(_frameset(here.rgb, 0))
    b = loc.locate(_frameset(there.rgb, 1))  # tracked: the box is the moved face's, refit on this frame
    assert a is not None and b is not None and loc.searches["track"] == 1
    assert _iou(b.box, there.truth.face_box_rgb) > 0.7 and _iou(b.box, there.truth.face_box_rgb) > _iou(
        b.box, here.truth.face_box_rgb)
    far = _render(0.7, (0.25, 0.0))  # the face jumped out of the tracked box: found by the search or not at all
    c = loc.locate(_frameset(far.rgb, 2))
    assert c is None or _iou(c.box, far.truth.face_box_rgb) > 0.5
    blank = np.full_like(here.rgb, 128)
    assert loc.locate(_frameset(blank, 3)) is None  # gone: no face on the very frame it left
    assert loc._last is None


def test_a_face_that_jumps_on_a_fine_search_frame_is_found_on_that_frame(detector):
    """Tracked face lost on a frame whose spread search ran a finer part ([1]) beside it: the coarse part runs too,
    so a face in the access range that jumped (a new person, as at a presentation change) is not missed."""
    from edgepad.runtime.face import LearnedFaceLocator
    loc = LearnedFaceLocator(detector=detector, detect_every=2, search_parts=3)
    here, there = _render(0.7, (0.0, 0.0)), _render(0.7, (0.25, 0.0))
    for i in range(3):  # from scratch (coarse part), tracked, tracked + the coarse part of the spread search
        assert loc.locate(_frameset(here.rgb, i)) is not None
    parts = loc.searches["part"]
    d = loc.locate(_frameset(there.rgb, 3))  # spread part [1] beside the track; the face is elsewhere
    assert d is not None and _iou(d.box, there.truth.face_box_rgb) > 0.5
    assert loc.searches["part"] == parts + 2  # part [1], then the coarse part on the same frame


def test_the_compiled_area_resize_leaves_every_detection_unchanged(detector, monkeypatch):
    """crop_batch's compiled INTER_AREA (docs/PERFORMANCE.md §0m) against cv2.resize: the same boxes, landmarks and
    scores bit for bit on full searches (R-Net 24² and O-Net 48² crops) and on tracked frames (seeds: O-Net alone,
    or R-Net + O-Net for a seed that moved)."""
    area = D._area_resize()
    if area is None:
        pytest.skip("compiled kernel unavailable")
    answered = []

    class Counting:
        def resize(self, img, size, out=None):
            r = area.resize(img, size, out)
            answered.append(r is not None)
            return r

    frames = [_render(d, off).rgb for d, off in ((0.45, (0.0, 0.0)), (0.8, (0.03, -0.02)), (1.3, (-0.05, 0.01)))]

    def run():
        found = []
        for rgb in frames:
            faces = detector.detect(rgb)
            found.append(faces)
            assert faces
            x, y, w, h = faces[0].box
            for seed in ((x, y, w, h), (x + 0.3 * w, y + 0.1 * h, w, h), (x - 0.1 * w, y, 1.2 * w, 1.2 * h)):
                found.append(detector.detect(rgb, levels=[], seeds=np.array([seed], np.float32)))
        return found

    monkeypatch.setattr(D, "_AREA", {"fn": Counting()})
    compiled = run()
    monkeypatch.setattr(D, "COMPILED_AREA", False)
    plain = run()
    assert sum(answered) >= 20  # the compiled resize made most crops
    assert len(compiled) == len(plain)
    for a, b in zip(compiled, plain):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            assert fa.box == fb.box and fa.score == fb.score and np.array_equal(fa.landmarks, fb.landmarks)


def test_every_seed_o_net_rejects_goes_to_r_net_whatever_its_place(detector, counting):
    """Two seeds, the face's and an empty patch's, in either order: the rejected one (and only it) goes through
    R-Net and O-Net; the face comes out the same either way."""
    log, _ = counting
    r = _render()
    face = detector.largest(r.rgb)
    x, y, w, h = face.box
    empty = (5.0, 5.0, w, h)  # the grey top-left corner of the rendered frame
    found = []
    for seeds in ([face.box, empty], [empty, face.box]):
        del log[:]
        faces = detector.detect(r.rgb, levels=[], seeds=np.array(seeds, np.float32))
        assert log == ["onet", "rnet", "onet"] or log == ["onet", "rnet"]  # R-Net may drop the empty patch
        found.append(faces)
    del log[:]
    alone = detector.detect(r.rgb, levels=[], seeds=np.array([face.box], np.float32))
    assert log == ["onet"]
    for faces in found:  # (batches of 2 and 1: equal up to the runtime's batching)
        assert faces and np.allclose(faces[0].box, alone[0].box, atol=1e-3)
        assert abs(faces[0].score - alone[0].score) < 1e-5
    # with P-Net on: O-Net keeps R-Net's window on the face but not the empty seed before it → R-Net for the seed
    del log[:]
    levels = list(range(len(detector.scales(*r.rgb.shape[:2]))))
    faces = detector.detect(r.rgb, levels=levels, seeds=np.array([empty], np.float32))
    assert log.count("rnet") == 2 and faces and _iou(faces[0].box, face.box) > 0.9
