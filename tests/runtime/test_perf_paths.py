"""The fast paths of the runtime give the same outputs as the plain implementations (no timing is asserted).

- ``preprocess._bilinear`` (padded gathers) == ``_bilinear_reference`` (masked), for float64 and float32 coordinates;
- the IR crop's float32 sampling moves crops by at most one grey level, rarely, and scores by < 1e-3, against the
  float64 sampling it replaced; its compiled sampling (``native.CropSampler.box``) equals it bit for bit; the rgb
  crop's compact resampling matrices equal dense ones (the compiled crops: ``tests/drivers/test_crop_kernels.py``);
- ``register_depth(..., window=...)`` == the full-frame registration inside the window, 0 outside;
- the pipeline's per-face-window registration gives the same crops, feeds and scores as full-frame registration;
- the Haar locator's region re-detection stays fail-closed (a frame without a face gives no box).
"""
from __future__ import annotations

import numpy as np
import pytest

import edgepad.preprocess as P
from edgepad.drivers.registration import d435_like_scene, register_depth
from edgepad.types import FrameSet, Modality


@pytest.fixture(scope="module")
def synth_sets():
    """Raw (unregistered) synthetic frame sets at 320×240, several presentations, and their rig."""
    from edgepad.drivers.capture import open_capture
    cap = open_capture("synthetic://default?seed=4&width=320&height=240&presentation_frames=3", register=False)
    with cap:
        sets = [cap.read(10.0) for _ in range(8)]
    return sets[::2], cap.rig


def _register_full(fs: FrameSet, rig) -> FrameSet:
    d = fs.frames[Modality.DEPTH]
    frames = dict(fs.frames)
    frames[Modality.DEPTH] = register_depth(d, rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH,
                                                                                             Modality.RGB))
    return FrameSet(frames, fs.timestamp_ns, fs.skew_ns, fs.missing)


def test_bilinear_fast_path_equals_masked_reference():
    rng = np.random.default_rng(0)
    for dtype, coords in ((np.uint8, np.float64), (np.float32, np.float64), (np.uint8, np.float32)):
        img = (rng.random((37, 53)) * 255).astype(dtype)
        mx = rng.uniform(-6, 60, (41, 43)).astype(coords)
        my = rng.uniform(-6, 44, (41, 43)).astype(coords)
        mx[::7, ::5] = np.round(mx[::7, ::5])  # integer coordinates (weights exactly 0/1)
        with np.errstate(over="ignore"):  # ±1e300 becomes ±inf in float32
            mx[0, :4] = (np.nan, np.inf, -np.inf, 1e300)
            my[1, :3] = (np.nan, -1e300, 52.0)
        fast = P._bilinear(img, mx, my)
        with np.errstate(invalid="ignore"):  # the reference casts huge coordinates
            ref = P._bilinear_reference(img, mx, my)
        assert fast.dtype == ref.dtype == np.float32
        np.testing.assert_array_equal(fast, ref)
        assert fast[0, :4].tolist() == [0.0, 0.0, 0.0, 0.0]


def _random_crops(sets, rig, rng, per_set, width, xs, ys):
    """``(registered frame set, (x, y, w, h) box, size_px)`` cases: ``per_set`` random boxes per frame set."""
    cases = []
    for fs in sets:
        fs = _register_full(fs, rig)
        for _ in range(per_set):
            w = int(rng.integers(*width))
            box = (int(rng.integers(*xs)), int(rng.integers(*ys)), w, int(w * rng.uniform(0.8, 1.3)))
            cases.append((fs, box, int(rng.choice([32, 112]))))
    return cases


def test_face_crops_equal_the_reference_implementation(synth_sets, monkeypatch):
    sets, rig = synth_sets
    rng = np.random.default_rng(1)
    cases = [(fs, box, s, float(rng.choice([0.0, 0.25, 0.6])))
             for fs, box, s in _random_crops(sets, rig, rng, 4, (20, 160), (-30, 300), (-30, 220))]
    fast = [P.crop_face(fs, box, rig, size_px=s, margin=m) for fs, box, s, m in cases]
    monkeypatch.setattr(P, "_bilinear", P._bilinear_reference)
    for (fs, box, s, m), got in zip(cases, fast):
        ref = P.crop_face(fs, box, rig, size_px=s, margin=m)
        assert set(got.crops) == set(ref.crops) == {Modality.RGB, Modality.DEPTH, Modality.IR}
        for mod in ref.crops:
            np.testing.assert_array_equal(got.crops[mod], ref.crops[mod], err_msg=f"{mod} {box}")
        assert (got.face_depth_m, got.valid_depth_fraction) == (ref.face_depth_m, ref.valid_depth_fraction)


def _ir_crop_float64(img, src_intr, dst_intr, ext, x0, y0, side, size_px, depth_m):
    """The IR crop as computed before float32 sampling: float64 coordinates and weights, numpy block mean."""
    mx, my, k = P._projected_map(src_intr, dst_intr, ext, x0, y0, side, size_px, depth_m)
    vals = P._bilinear_reference(img, mx, my).reshape(size_px, k, size_px, k).mean(axis=(1, 3))
    return np.clip(np.rint(vals), 0, 255).astype(np.uint8)


def _with_float64_ir(monkeypatch):
    def ref(img, src_intr, dst_intr, ext, x0, y0, side, size_px, depth_m, grid=17, roll=None, sample=None):
        assert roll is None and grid == 17
        return _ir_crop_float64(img, src_intr, dst_intr, ext, x0, y0, side, size_px, depth_m)
    monkeypatch.setattr(P, "_crop_projected", ref)


def test_ir_float32_sampling_moves_crops_by_at_most_one_level(synth_sets, monkeypatch):
    """Re-validation of the float32 IR sampling (docs/PERFORMANCE.md §0d): against the float64 sampling it
    replaced, an IR crop pixel moves by at most 1 grey level (a rounding tie), in < 0.1 % of the pixels; the rgb and
    depth crops are unchanged."""
    sets, rig = synth_sets
    cases = _random_crops(sets, rig, np.random.default_rng(5), 6, (30, 160), (-20, 280), (-20, 200))
    new = [P.crop_face(fs, box, rig, size_px=s) for fs, box, s in cases]
    _with_float64_ir(monkeypatch)
    moved = total = 0
    for (fs, box, s), got in zip(cases, new):
        ref = P.crop_face(fs, box, rig, size_px=s)
        for m in (Modality.RGB, Modality.DEPTH):
            np.testing.assert_array_equal(got.crops[m], ref.crops[m])
        d = np.abs(got.crops[Modality.IR].astype(int) - ref.crops[Modality.IR].astype(int))
        assert d.max() <= 1, box
        moved += int(d.sum())
        total += d.size
    assert total > 100_000 and moved / total < 1e-3, (moved, total)


def test_ir_float32_sampling_keeps_scores_and_verdicts(synth_sets, tiny_model, monkeypatch):
    """Scores of a model on pipeline feeds with float32 vs float64 IR sampling differ by < 1e-3."""
    from edgepad.runtime.face import FixedBoxLocator
    sets, rig = synth_sets
    boxes = [(120, 80, 70, 80), (40, 60, 110, 120), (200, 30, 60, 70)]
    runs = []
    for float64 in (False, True):
        if float64:
            _with_float64_ir(monkeypatch)
        pipe = _tiny_pipeline(tiny_model, rig)
        pipe.open()
        try:
            out = []
            for fs in sets:
                for box in boxes:
                    pipe.locator = FixedBoxLocator(box)
                    d = pipe.process(fs, now_ns=fs.timestamp_ns)
                    out.append((d.score, d.reasons))
        finally:
            pipe.close()
        runs.append(out)
    scored = [(a[0], b[0]) for a, b in zip(*runs) if a[0] is not None or b[0] is not None]
    assert len(scored) >= 6 and all(a is not None and b is not None for a, b in scored)
    assert max(abs(a - b) for a, b in scored) < 1e-3
    assert [a[1] for a in runs[0]] == [b[1] for b in runs[1]]


def test_compact_resample_matrix_equals_the_dense_matrix():
    """``_resample_matrix`` returns only the source indices with weight: expanded, it is the dense bilinear +
    box-average matrix, including windows that leave the image."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        n_src, size = int(rng.integers(20, 120)), int(rng.choice([8, 16, 32]))
        side = float(rng.uniform(4, 3.5 * n_src))
        start = float(rng.uniform(-side, n_src + 2))
        lo, m = P._resample_matrix(start, side, n_src, size)
        dense = np.zeros((size, n_src), np.float64)
        dense[:, lo:lo + m.shape[1]] = m
        k = P._supersample(side, size)
        ref = np.zeros((size, n_src))
        for i in range(size):
            for j in range(k):
                p = start + (i * k + j + 0.5) * side / (size * k)
                i0 = int(np.floor(p))
                for idx, wgt in ((i0, 1 - (p - i0)), (i0 + 1, p - i0)):
                    if 0 <= idx < n_src:
                        ref[i, idx] += wgt / k
        np.testing.assert_allclose(dense, ref, atol=1e-6)
        if m.shape[1]:
            assert m[:, 0].any() and m[:, -1].any()
        else:
            assert not ref.any()


def test_compiled_ir_sampler_equals_the_numpy_path_bit_for_bit():
    """``native.CropSampler.box`` (what ``CropSampler.lattice`` samples with) == ``preprocess._sample_box`` on random
    images and maps: inside, across the border, far outside, NaN/inf/huge coordinates, integer and half-pixel
    coordinates, k = 1..3."""
    from edgepad.drivers.registration.native import crop_sampler
    sampler = crop_sampler()
    if sampler is None:
        pytest.skip("no C compiler here: the numpy path runs")
    sample = sampler.box
    rng = np.random.default_rng(5)
    for t in range(200):
        h, w = int(rng.integers(3, 90)), int(rng.integers(3, 90))
        img = rng.integers(0, 256, (h, w)).astype(np.uint8)
        k = int(rng.integers(1, 4))
        n = k * int(rng.integers(3, 30))
        mx = rng.uniform(-12, w + 12, (n, n)).astype(np.float32)
        my = rng.uniform(-12, h + 12, (n, n)).astype(np.float32)
        if t % 3 == 0:
            mx, my = np.round(mx * 2) / 2, np.round(my * 2) / 2
        mx[0, 0], my[1, 1], mx[2, 2], my[2, 2], mx[-1, -1] = np.nan, np.inf, 3e38, -3e38, -1e30
        np.testing.assert_array_equal(sample(img, mx, my, k), P._sample_box(img, mx, my, k), err_msg=str(t))
    # many unaveraged samples (k = 1): a sum in another float32 order flips a rounding tie somewhere in these 2.1 M
    for t in range(8):
        img = rng.integers(0, 256, (120, 160)).astype(np.uint8)
        mx = rng.uniform(-3, 163, (512, 512)).astype(np.float32)
        my = rng.uniform(-3, 123, (512, 512)).astype(np.float32)
        np.testing.assert_array_equal(sample(img, mx, my, 1), P._sample_box(img, mx, my, 1), err_msg=f"dense {t}")
    with pytest.raises(RuntimeError):
        sample(img.astype(np.float32), mx, my, k)


def _window_cases(synth_sets):
    sets, rig = synth_sets
    cases = [(fs.frames[Modality.DEPTH], rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH, Modality.RGB))
             for fs in sets[:2]]
    cases.append(d435_like_scene(320, 240, seed=2))
    return cases


@pytest.mark.parametrize("arithmetic", ["fast", "exact"])
def test_window_registration_equals_full_frame_inside_the_window(synth_sets, arithmetic):
    rng = np.random.default_rng(2)
    for depth, target, ext in _window_cases(synth_sets):
        for footprint in ("rect", "sse"):
            full = register_depth(depth, target, ext, arithmetic=arithmetic, footprint=footprint).data
            assert full.any()
            wins = [(0, 0, target.width, target.height), (-20, -20, 15, 12), (300, 200, 400, 300), (50, 60, 50, 90)]
            for _ in range(5):
                x0, y0 = (int(v) for v in rng.integers(-30, 300, 2))
                wins.append((x0, y0, x0 + int(rng.integers(1, 200)), y0 + int(rng.integers(1, 200))))
            for win in wins:
                got = register_depth(depth, target, ext, arithmetic=arithmetic, footprint=footprint, window=win)
                assert got.registered_to is Modality.RGB and got.data.shape == full.shape
                x0, y0 = max(0, win[0]), max(0, win[1])
                x1, y1 = min(target.width, win[2]), min(target.height, win[3])
                inside = np.zeros(full.shape, bool)
                if x1 > x0 and y1 > y0:
                    inside[y0:y1, x0:x1] = True
                np.testing.assert_array_equal(got.data[inside], full[inside], err_msg=f"{win} {footprint}")
                assert not got.data[~inside].any()


def test_window_registration_keeps_near_and_degenerate_depth_exact():
    depth, target, ext = d435_like_scene(160, 120, seed=3)
    z = depth.data.copy()
    z[40:60, 50:70] = 60       # 6 cm: nearer than every precomputed culling bucket -> all pixels processed
    z[0:3, :] = 65535          # far
    d = type(depth)(depth.modality, z, depth.timestamp_ns, depth.device_timestamp_ns, depth.sequence, depth.source,
                    depth.intrinsics, depth.depth_scale_m, None)
    full = register_depth(d, target, ext).data
    for win in ((30, 20, 110, 90), (0, 0, 160, 120), (150, 0, 170, 10)):
        got = register_depth(d, target, ext, window=win).data
        x0, y0, x1, y1 = win[0], win[1], min(160, win[2]), min(120, win[3])
        np.testing.assert_array_equal(got[y0:y1, x0:x1], full[y0:y1, x0:x1])


def _tiny_pipeline(tiny_model, rig, **cfg):
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
    be = load_backend(tiny_model)
    return LivenessPipeline(None, be, locator="fixed:0,0,1,1", rig=rig, config=PipelineConfig(**cfg))


def test_pipeline_window_registration_gives_the_same_feeds_and_scores(synth_sets, tiny_model, monkeypatch):
    from edgepad.runtime.face import FixedBoxLocator
    sets, rig = synth_sets
    boxes = [(120, 80, 70, 80), (-10, 100, 90, 100), (250, 5, 60, 70)]
    feeds: dict[str, list] = {"window": [], "frame": []}

    for mode in ("window", "frame"):
        scores = []
        pipe = _tiny_pipeline(tiny_model, rig, registration=mode)
        pipe.open()
        try:
            for fs in sets:
                fs_in = fs if mode == "window" else _register_full(fs, rig)
                for box in boxes:
                    pipe.locator = FixedBoxLocator(box)
                    import edgepad.preprocess as prep
                    captured = {}
                    orig = prep.normalise

                    def spy(crops, inputs, scale, _orig=orig, _c=captured, **kw):
                        _c["feed"] = _orig(crops, inputs, scale, **kw)
                        return _c["feed"]

                    monkeypatch.setattr(prep, "normalise", spy)
                    d = pipe.process(fs_in, now_ns=fs.timestamp_ns)
                    monkeypatch.setattr(prep, "normalise", orig)
                    scores.append((d.score, d.reasons, d.modalities))
                    feeds[mode].append(captured.get("feed"))
                    if mode == "window":
                        assert d.latency_ms["register"] > 0.0
        finally:
            pipe.close()
        feeds[mode + "_scores"] = scores
    assert feeds["window_scores"] == feeds["frame_scores"]
    n_fed = 0
    for a, b in zip(feeds["window"], feeds["frame"]):
        assert (a is None) == (b is None)
        if a is not None:
            n_fed += 1
            assert set(a) == set(b)
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
    assert n_fed >= 6


def test_pipeline_prepares_window_registration_at_open(synth_sets, tiny_model):
    """Every nearest-depth bucket's culling bounds are built when the pipeline opens: frames with a nearer face
    later hit the cache (before, the first such frame paid 70-150 ms on a 640×480 pair)."""
    from edgepad.drivers.registration.corners import _CULL_DEPTHS_M
    from edgepad.runtime.face import FixedBoxLocator
    from edgepad.types import replace_frame
    sets, rig = synth_sets
    pipe = _tiny_pipeline(tiny_model, rig, registration="window")
    assert pipe.registrar is None
    pipe.open()
    try:
        built = pipe.registrar.cache_info()
        # culling bounds per bucket, and the pixel tables too where the compiled kernel registers the window
        assert built["window_buckets"] == len(_CULL_DEPTHS_M) and built["frame_buckets"] in (0, len(_CULL_DEPTHS_M))
        assert built["misses"] == built["window_buckets"] + built["frame_buckets"]
        pipe.locator = FixedBoxLocator((120, 80, 70, 80))
        scale = rig.depth_scale_m
        for nearest_m in (0.15, 0.25, 0.4, 0.8):  # one frame per bucket: nearest valid depth moved there
            fs = sets[0]
            d = fs.frames[Modality.DEPTH]
            z = d.data.astype(np.float64)
            valid = z > 0
            z[valid] *= nearest_m / (z[valid].min() * scale)
            frames = dict(fs.frames)
            frames[Modality.DEPTH] = replace_frame(d, data=np.clip(z, 0, 65535).astype(np.uint16))
            out = pipe.process(FrameSet(frames, fs.timestamp_ns, fs.skew_ns, fs.missing), now_ns=fs.timestamp_ns)
            assert out.latency_ms["register"] > 0.0
        after = pipe.registrar.cache_info()
        assert after["misses"] == built["misses"] and after["hits"] >= built["hits"] + 4
    finally:
        pipe.close()


def test_pipeline_restores_blas_threads_and_leaves_the_capture_alone(synth_sets, tiny_model):
    from edgepad.blas import blas_threads, set_blas_threads
    from edgepad.drivers.registration import RegistrationMode
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
    pytest.importorskip("cv2")  # load every OpenBLAS copy (numpy's and OpenCV's) before reading thread counts
    load_backend(tiny_model)
    before = blas_threads()
    if not before:
        pytest.skip("no OpenBLAS thread control in this numpy build")

    class Cap:
        def __init__(self):
            self.mode = RegistrationMode.FRAME
            self.rig = synth_sets[1]

        def read(self, timeout_s):
            return None

    cap = Cap()
    state = dict(vars(cap))
    set_blas_threads(2)
    two = blas_threads()  # a single-threaded OpenBLAS build (OpenCV's copy, on some wheels) stays at 1
    assert 2 in two.values()
    try:
        pipe = LivenessPipeline(cap, load_backend(tiny_model), locator="fixed:0,0,10,10",
                                config=PipelineConfig(blas_threads=1))
        with pipe:
            assert set(blas_threads().values()) == {1}
            assert vars(cap) == state  # the pipeline registers face windows itself: the capture is not written
            assert pipe.registrar is not None and pipe.registrar.target_modality is Modality.RGB
        assert blas_threads() == two and vars(cap) == state
        with LivenessPipeline(cap, load_backend(tiny_model), locator="fixed:0,0,10,10",
                              config=PipelineConfig(blas_threads=None, registration="frame")):
            assert blas_threads() == two and vars(cap) == state
    finally:
        set_blas_threads(before)
    assert blas_threads() == before


def test_haar_region_redetection_is_fail_closed():
    pytest.importorskip("cv2")
    from edgepad.drivers.synthetic import SyntheticSource
    from edgepad.runtime.face import HaarFaceLocator
    from edgepad.types import make_frame
    src = SyntheticSource(seed=11, presentation_frames=30, species="bonafide")
    intr = src.rig.intrinsics[Modality.RGB]

    def fs_of(rgb, i):
        return FrameSet({Modality.RGB: make_frame("rgb", rgb, i, sequence=i, intrinsics=intr)}, i)

    faces = [src.render(i).rgb for i in range(0, 12, 3)]
    loc = HaarFaceLocator(roi_every=5)
    full = HaarFaceLocator(roi_every=1)
    first = loc.locate(fs_of(faces[0], 0))
    assert first is not None
    for i, rgb in enumerate(faces[1:], 1):
        a, b = loc.locate(fs_of(rgb, i)), full.locate(fs_of(rgb, i))
        assert (a is None) == (b is None)
        if a is not None:  # same face, found in the region: within a few working-scale pixels of the full search
            assert max(abs(u - v) for u, v in zip(a.box, b.box)) <= 0.15 * b.box[2]
    assert loc.searches["roi"] >= 2
    # the face disappears: the region finds nothing, the full search finds nothing -> no box (never the old one)
    blank = np.full_like(faces[0], 128)
    assert loc.locate(fs_of(blank, 10)) is None
    # the face moved far away (outside the old region): found by the full-frame search on this frame
    loc.locate(fs_of(faces[0], 11))
    moved = np.zeros_like(faces[0])
    h, w = moved.shape[:2]
    moved[:, : w // 2] = faces[0][:, w // 4: 3 * w // 4]
    got, ref = loc.locate(fs_of(moved, 12)), full.locate(fs_of(moved, 12))
    assert (got is None) == (ref is None)
    if ref is not None:
        assert abs(got.box[0] - ref.box[0]) <= 0.15 * ref.box[2]


@pytest.mark.parametrize("mode", ["window", "frame"])
def test_open_pipeline_registers_with_the_capture_registrar(tiny_model, mode):
    """open_pipeline builds its capture in the matching RegistrationMode; in window mode the pipeline uses the
    capture's (prepared) registrar for the face window, in frame mode the capture registers whole frames."""
    from edgepad.drivers.registration import RegistrationMode
    from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
    src = "synthetic://default?seed=4&width=320&height=240&presentation_frames=3"
    with open_pipeline(src, tiny_model, locator="truth", config=PipelineConfig(registration=mode)) as pipe:
        cap = pipe.capture
        assert pipe.registrar is cap.registrar and cap.registrar is not None
        decisions = list(pipe.decisions(max_frames=3))
        depth = pipe.last_frameset.frames[Modality.DEPTH]
    assert cap.mode is (RegistrationMode.WINDOW if mode == "window" else RegistrationMode.FRAME)
    assert depth.registered_to is (None if mode == "window" else Modality.RGB)
    assert any(d.score is not None for d in decisions)
    if mode == "window":
        assert cap.registrar.cache_info()["window_buckets"] == cap.registrar.prepare()
        assert all(d.latency_ms["register"] > 0.0 for d in decisions if d.score is not None)
