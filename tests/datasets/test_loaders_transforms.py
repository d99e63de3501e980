"""Loaders on tiny datasets written at test time in the real layouts; transforms; MAD depth."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.data.datasets import (CasiaSurfDataset, CefaDataset, SynthBenchDataset, WMCADataset,
                                   modality_from_path, read_protocol_csv, select_frames)
from edgepad.data.transforms import (Cutout, PADDataset, PhotometricJitter, RandomHorizontalFlip,
                                     RandomResizedCrop, build_transform, mad_normalise_depth, resize)
from edgepad.errors import DatasetError, ShapeError

from tests.helpers.datasets import make_synthbench

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_synthbench(tmp_path_factory.mktemp("bench"), videos_per_class=2, frames=4, size=16)


def test_synthbench_loader(bench):
    ds = SynthBenchDataset(bench, "grandtest", "train")
    assert len(ds) == 4 * 2 * 4                      # species × videos × frames
    assert ds.is_bonafide.sum() == 2 * 4
    assert set(ds.species) == {"bonafide", "print_flat", "replay", "rigidmask"}
    s = ds[0]
    assert s.modalities["rgb"].shape == (16, 16, 3) and s.modalities["rgb"].dtype == np.uint8
    assert s.modalities["depth"].dtype == np.uint16 and s.modalities["ir"].dtype == np.uint8
    assert s.depth_scale_m == 0.001 and s.subject is not None and s.split == "train"
    # each tensor comes from its own channel of the stored array (METHODS pitfall 2)
    ref = ds.records[0]
    with h5py.File(ref.paths["all"], "r") as h:
        arr = h[ref.frame_key]["array"][()]
    assert np.array_equal(s.modalities["rgb"], arr[:3].transpose(1, 2, 0))
    assert np.array_equal(s.modalities["depth"], arr[3]) and np.array_equal(s.modalities["ir"], arr[4])
    two = SynthBenchDataset(bench, "grandtest", ["dev", "eval"], frames_per_video=2)
    assert len(two) == 2 * 4 * 2 * 2 and {r.split for r in two.records} == {"dev", "eval"}
    assert {r.frame_idx for r in two.records} == {0, 3}  # evenly spread: first and last


def test_select_frames_sorts_numerically():
    keys = [f"Frame_{i}" for i in (10, 2, 0, 1)]
    assert select_frames(keys, None) == ["Frame_0", "Frame_1", "Frame_2", "Frame_10"]
    assert select_frames(keys, 2) == ["Frame_0", "Frame_10"]


def test_protocol_polarity_and_columns(tmp_path):
    p = tmp_path / "PROTOCOL-x.csv"
    p.write_text("a/v1,0,bonafide,train\na/v2,1,attack/2D/prints,dev\n")
    rows = read_protocol_csv(p)
    assert [(r.is_bonafide, r.pai, r.family) for r in rows] == [(True, "bonafide", ""), (False, "prints", "2D")]
    with pytest.raises(DatasetError, match="contradicts"):
        read_protocol_csv(p, bonafide_label=1)       # wrong polarity is caught, not silently flipped
    q = tmp_path / "PROTOCOL-y.csv"
    q.write_text("train,bonafide,1,a/v1\ndev,attack/3D/papermask,0,a/v2\n")
    rows = read_protocol_csv(q, columns=("fold", "attack_type", "label", "path"), bonafide_label=1)
    assert rows[0].is_bonafide and rows[1].pai == "papermask" and rows[1].fold == "dev"
    with pytest.raises(DatasetError):
        read_protocol_csv(tmp_path / "missing.csv")


def test_wmca_layout_intersects_frames(tmp_path):
    cdit, rgbr, prot = tmp_path / "CDIT", tmp_path / "RGB", tmp_path / "protocols"
    rel = "face-station/17.01.18/002_01_003_2_81"
    for d in (cdit, rgbr):
        (d / "face-station/17.01.18").mkdir(parents=True)
    prot.mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(cdit / f"{rel}.hdf5", "w") as h:
        for i in (0, 1, 2):
            h.create_group(f"Frame_{i}").create_dataset("array", data=rng.integers(0, 255, (4, 8, 8), dtype=np.uint8) + i)
    with h5py.File(rgbr / f"{rel}.hdf5", "w") as h:
        for i in (1, 2, 3):
            h.create_group(f"Frame_{i}").create_dataset("array", data=rng.integers(0, 255, (3, 8, 8), dtype=np.uint8))
    (prot / "PROTOCOL-LOO_flexiblemask.csv").write_text(
        f"{rel},1,attack/3D/flexiblemask,eval\nface-station/x/missing_0_00,0,bonafide,eval\n")
    ds = WMCADataset(cdit, rgbr, "LOO_flexiblemask", prot, "eval", thermal=True)
    assert [r.frame_idx for r in ds.records] == [1, 2]          # intersection of the two streams
    s = ds[0]
    assert s.pai == "flexiblemask" and not s.is_bonafide and s.subject == "002"
    with h5py.File(cdit / f"{rel}.hdf5", "r") as h:
        c = h["Frame_1/array"][()]
    assert np.array_equal(s.modalities["depth"], c[1]) and np.array_equal(s.modalities["ir"], c[2])
    assert np.array_equal(s.modalities["thermal"], c[3]) and s.modalities["rgb"].shape == (8, 8, 3)


def _write_img(path, img):
    cv2 = pytest.importorskip("cv2")
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_casia_surf_modality_from_path_not_column(tmp_path):
    root = tmp_path
    real = "Training/real_part/CLKJ_AS0137/real.rssdk"
    fake = "Training/fake_part/CLKJ_AS0137/04_en_b.rssdk"
    for base, val in ((real, 10), (fake, 200)):
        _write_img(root / base / "color/31.png", np.full((6, 6, 3), (val, 0, 255), np.uint8))   # BGR on disk
        _write_img(root / base / "depth/31.png", np.full((6, 6), val + 1, np.uint8))
        _write_img(root / base / "ir/31.png", np.full((6, 6), val + 2, np.uint8))
    # second line swaps the depth and ir columns: modality must come from the path
    (root / "train_list.txt").write_text(
        f"{real}/color/31.png {real}/depth/31.png {real}/ir/31.png 1\n"
        f"{fake}/color/31.png {fake}/ir/31.png {fake}/depth/31.png 0\n")
    ds = CasiaSurfDataset(root, "train_list.txt")
    assert [r.is_bonafide for r in ds.records] == [True, False]
    assert ds.records[1].pai == "print_cut_eyes_nose" and ds.records[1].subject == "CLKJ_AS0137"
    s = ds[1]
    assert s.modalities["depth"][0, 0] == 201 and s.modalities["ir"][0, 0] == 202
    assert tuple(s.modalities["rgb"][0, 0]) == (255, 0, 200)     # BGR file -> RGB order
    assert modality_from_path("Val/0001/000001-ir.jpg") == "ir"
    (root / "bad.txt").write_text(f"{real}/a/31.png {real}/b/31.png 1\n")
    with pytest.raises(DatasetError, match="modality"):
        CasiaSurfDataset(root, "bad.txt")


def test_cefa_lists(tmp_path):
    vid = "AF/AF-120/1_120_3_1_4"
    for folder, v in (("profile", 50), ("depth", 60), ("ir", 70)):
        _write_img(tmp_path / vid / folder / "0001.png",
                   np.full((5, 5, 3) if folder == "profile" else (5, 5), v, np.uint8))
    (tmp_path / "4@1_train.txt").write_text(f"{vid}/profile/0001.png 0\n")
    ds = CefaDataset(tmp_path, "4@1_train.txt", bonafide_label=1)
    r = ds.records[0]
    assert r.pai == "screen" and not r.is_bonafide and r.group == "AF" and r.video_id == vid
    s = ds[0]
    assert s.modalities["depth"][0, 0] == 60 and s.modalities["ir"][0, 0] == 70
    (tmp_path / "wrong.txt").write_text(f"{vid}/profile/0001.png 1\n")
    with pytest.raises(DatasetError, match="contradicts"):
        CefaDataset(tmp_path, "wrong.txt")


def _crops(s=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.integers(0, 255, (s, s, 3), dtype=np.uint8),
            "depth": rng.integers(400, 700, (s, s)).astype(np.uint16),
            "ir": rng.integers(0, 255, (s, s), dtype=np.uint8)}


def test_synchronised_geometric_augmentations():
    c = _crops()
    # mark one pixel in every modality; geometric ops must move it identically
    c["rgb"][2, 3] = 255
    c["depth"][2, 3] = 9999
    c["ir"][2, 3] = 255
    f = RandomHorizontalFlip(1.0)(c, np.random.default_rng(0))
    assert f["rgb"][2, 12 - 1 - 3, 0] == 255 and f["depth"][2, 8] == 9999 and f["ir"][2, 8] == 255
    rc = RandomResizedCrop((0.5, 0.6))(c, np.random.default_rng(1))
    assert all(rc[m].shape == c[m].shape and rc[m].dtype == c[m].dtype for m in c)
    assert set(np.unique(rc["depth"])) <= set(np.unique(c["depth"]))   # nearest: no interpolated depth
    co = Cutout(5)(c, np.random.default_rng(2))
    holes = [set(zip(*np.nonzero(co[m].reshape(12, 12, -1).max(-1) == 0))) - set(zip(*np.nonzero(
        c[m].reshape(12, 12, -1).max(-1) == 0))) for m in c]
    assert holes[0] and holes[0] == holes[1] == holes[2]


def test_photometric_jitter_per_modality_not_depth():
    c = _crops()
    j = PhotometricJitter(40, (0.5, 1.5))(c, np.random.default_rng(0))
    assert np.array_equal(j["depth"], c["depth"])
    assert not np.array_equal(j["rgb"], c["rgb"]) and not np.array_equal(j["ir"], c["ir"])
    assert j["rgb"].dtype == np.uint8


def test_photometric_jitter_lookup_table_equals_the_per_pixel_formula():
    """The jitter maps the 256 levels once (a table per channel) then gathers: byte-identical to applying the same
    float32 offset/gamma maths to every pixel, as it did before; the generator draws are the same."""
    def per_pixel(img, rng, offset=40.0, gamma=(0.5, 1.5)):
        x = img.astype(np.float32)
        ch = x.shape[2] if x.ndim == 3 else 1
        off = rng.uniform(-offset, offset, size=ch).astype(np.float32)
        x = np.clip(x + (off if x.ndim == 3 else off[0]), 0.0, 255.0)
        x = 255.0 * (x / 255.0) ** float(rng.uniform(*gamma))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    rng = np.random.default_rng(4)
    jit = PhotometricJitter(40.0, (0.5, 1.5), modalities=("rgb", "ir"))
    for i in range(40):
        s = int(rng.integers(3, 70))
        c = {"rgb": rng.integers(0, 256, (s, s, 3), dtype=np.uint8), "ir": rng.integers(0, 256, (s, s), dtype=np.uint8)}
        got = jit(c, np.random.default_rng(i))
        ref_rng = np.random.default_rng(i)
        want = {}
        for m in ("rgb", "ir"):
            ref_rng.random()                      # the p draw
            want[m] = per_pixel(c[m], ref_rng)
        for m in want:
            assert got[m].dtype == np.uint8 and got[m].shape == c[m].shape
            np.testing.assert_array_equal(got[m], want[m])
    with pytest.raises(ShapeError):
        jit({"rgb": np.zeros((4, 4, 3), np.uint16)}, np.random.default_rng(0))


def test_jitter_modalities_leave_the_others_alone():
    c = _crops()
    t = build_transform(12, train=True, flip=0.0, jitter_offset=40.0, jitter_gamma=(0.5, 1.5),
                        jitter_modalities=("rgb",))
    j = t(c, np.random.default_rng(0))
    assert np.array_equal(j["ir"], c["ir"]) and np.array_equal(j["depth"], c["depth"])
    assert not np.array_equal(j["rgb"], c["rgb"])


def test_resize_matches_expectations():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.array_equal(resize(img, 2, nearest=True), img[[1, 3]][:, [1, 3]])
    up = resize(np.array([[0, 100]], np.uint8), (1, 4))
    assert up.tolist() == [[0, 25, 75, 100]]


def test_mad_normalisation_hand_values_and_guard():
    d = np.array([[0, 100, 102], [104, 106, 300]], np.uint16)
    out = mad_normalise_depth(d)
    vals = np.array([100, 102, 104, 106, 300], float)
    med = np.median(vals)
    mad = np.median(np.abs(vals - med))
    want = np.clip(255 * (d.astype(float) - med + 3 * mad) / (6 * mad), 0, 255)
    want[d == 0] = 0
    assert np.array_equal(out, np.rint(want).astype(np.uint8))
    flat = np.full((4, 4), 500, np.uint16)
    assert np.all(mad_normalise_depth(flat) == 128)        # MAD = 0 guarded (floor 1): mid-grey, no NaN
    assert np.all(mad_normalise_depth(np.zeros((3, 3), np.uint16)) == 0)


def test_pad_dataset_uses_runtime_normalise_and_is_deterministic(bench):
    from edgepad.preprocess import default_input_specs, normalise
    specs = default_input_specs(16)
    base = SynthBenchDataset(bench, "grandtest", "dev")
    plain = PADDataset(base, specs, build_transform(16, train=False))
    item = plain[3]
    s = base[3]
    ref = normalise(s.modalities, specs, s.depth_scale_m)
    for m in specs:
        assert np.array_equal(item["inputs"][m], ref[m][0])
    assert item["target"] == (1.0 if s.is_bonafide else 0.0)
    aug = PADDataset(base, specs, build_transform(16, train=True, cutout_px=5, crop_scale=(0.6, 1.0),
                                                  jitter_offset=30), seed=5)
    a, b, c = aug[(3, 1)], aug[(3, 1)], aug[(3, 2)]
    assert all(np.array_equal(a["inputs"][m], b["inputs"][m]) for m in specs)
    assert any(not np.array_equal(a["inputs"][m], c["inputs"][m]) for m in specs)
    # a modality the sample lacks is written as the spec's fill value, exactly
    from dataclasses import replace

    from edgepad.training import WithoutModalities
    specs = {**specs, "ir": replace(specs["ir"], missing_fill=0.375)}
    miss = PADDataset(WithoutModalities(base, {"ir"}), specs, None)[0]["inputs"]
    assert np.all(miss["ir"] == np.float32(0.375)) and not np.all(miss["depth"] == miss["depth"].flat[0])


def _resize_rows_first(img, size):
    """The bilinear of session 5 (rows first, weights broadcast per column): resize must equal it exactly."""
    from edgepad.data.transforms import _taps
    (oh, ow), (h, w) = size, img.shape[:2]
    y0, y1, gy, fy = _taps(h, oh)
    x0, x1, gx, fx = _taps(w, ow)
    tail = (1,) * (img.ndim - 2)
    rows = img[y0] * gy.reshape((oh, 1) + tail)
    rows += img[y1] * fy.reshape((oh, 1) + tail)
    out = rows[:, x0] * gx.reshape((ow,) + tail)
    out += rows[:, x1] * fx.reshape((ow,) + tail)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    return out.astype(img.dtype)


def test_resize_with_per_channel_column_weights_equals_the_rows_first_products():
    rng = np.random.default_rng(11)
    for i in range(300):
        dt = (np.uint8, np.uint16, np.float32)[i % 3]
        h, w = (int(v) for v in rng.integers(2, 90, 2))
        shape = ((h, w), (h, w, 3), (h, w, 4))[i % 4 % 3]
        img = (rng.integers(0, 256, shape) if dt != np.uint16 else rng.integers(0, 65536, shape)).astype(dt)
        if dt == np.float32:
            img += rng.random(shape, dtype=np.float32)
        size = (int(rng.integers(2, 120)), int(rng.integers(2, 120)))
        got = resize(img, size)
        assert got.dtype == img.dtype and got.shape == size + shape[2:]
        assert np.array_equal(got, _resize_rows_first(img, size)), (i, shape, dt, size)
