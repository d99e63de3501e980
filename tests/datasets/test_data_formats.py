"""Loaders on tiny generated datasets in the real releases' layouts and quirks (issue 17)."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.data.datasets import (CASIA_UNLISTED, CasiaSurfDataset, CefaDataset, DepthEncodingError,
                                   SynthBenchDataset, WMCADataset, casia_surf_attack, conform_depth,
                                   detect_depth_encoding)
from edgepad.data.sources import build_dataset, data_config
from edgepad.data.transforms import normalise_sample, resize_to_inputs
from edgepad.errors import ConfigError, DatasetError
from edgepad.preprocess import DEPTH_HOLE_VALUE, default_input_specs, normalise

from tests.helpers.data_formats import make_casia_surf, make_cefa, make_wmca, write_img

h5py = pytest.importorskip("h5py")
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def casia(tmp_path_factory):
    return make_casia_surf(tmp_path_factory.mktemp("casia"))


# ------------------------------------------------------------------------------------------- depth encoding
def test_detect_depth_encoding_rules():
    mm = np.array([[0, 480], [510, 530]], np.uint16)
    assert detect_depth_encoding(mm, "x") == "mm16"
    assert detect_depth_encoding(mm.astype(np.uint8), "x") == "uint8_normalised"
    assert detect_depth_encoding(np.full((2, 2), 600, np.uint16), "x", file_type=".png") == "mm16"
    assert detect_depth_encoding(np.full((2, 2), 90, np.uint8), "x", file_type=".jpg") == "uint8_normalised"
    for amb in (np.full((2, 2), 200, np.uint16), np.zeros((2, 2), np.uint16), np.full((2, 2), 9.0)):
        with pytest.raises(DepthEncodingError, match="depth_encoding: mm16") as e:
            detect_depth_encoding(amb, "src")
        assert "uint8_normalised" in str(e.value) and isinstance(e.value, DatasetError)
    # declarations resolve the ambiguous case, and are checked against the data
    assert detect_depth_encoding(np.full((2, 2), 200, np.uint16), "x", declared="uint8_normalised") == \
        "uint8_normalised"
    assert detect_depth_encoding(np.full((2, 2), 200, np.uint16), "x", metadata="mm16") == "mm16"
    with pytest.raises(DepthEncodingError, match="8-bit"):
        detect_depth_encoding(np.full((2, 2), 90, np.uint8), "x", declared="mm16")
    with pytest.raises(DepthEncodingError, match="> 255"):
        detect_depth_encoding(mm, "x", declared="uint8_normalised")
    with pytest.raises(DepthEncodingError, match="unknown"):
        detect_depth_encoding(mm, "x", declared="metres")
    assert conform_depth(np.full((2, 2), 7, np.uint16), "uint8_normalised", "x").dtype == np.uint8
    with pytest.raises(DepthEncodingError):
        conform_depth(np.full((2, 2), 7, np.uint8), "mm16", "x")


def test_ambiguous_16bit_png_depth_is_refused_until_declared(tmp_path):
    base = "Training/real_part/CLKJ_AS0001/real.rssdk"
    write_img(tmp_path / base / "color/1.png", np.zeros((6, 6, 3), np.uint8))
    write_img(tmp_path / base / "depth/1.png", np.full((6, 6), 120, np.uint16))    # 16-bit file, 0..255 values
    write_img(tmp_path / base / "ir/1.png", np.zeros((6, 6), np.uint8))
    (tmp_path / "l.txt").write_text(f"{base}/color/1.png {base}/depth/1.png {base}/ir/1.png 1\n")
    with pytest.raises(DepthEncodingError, match="depth_encoding"):
        CasiaSurfDataset(tmp_path, "l.txt")
    ds = CasiaSurfDataset(tmp_path, "l.txt", depth_encoding="uint8_normalised")
    s = ds[0]
    assert s.depth_encoding == "uint8_normalised" and s.modalities["depth"].dtype == np.uint8
    s = CasiaSurfDataset(tmp_path, "l.txt", depth_encoding="mm16")[0]
    assert s.depth_encoding == "mm16" and s.modalities["depth"].dtype == np.uint16
    assert int(s.modalities["depth"][0, 0]) == 120


# ----------------------------------------------------------------------------------------------- CASIA-SURF
def test_casia_surf_attack_codes_follow_the_paper():
    assert casia_surf_attack("04_en_b") == ("print_cut_eyes_nose", "CASIA-SURF attack 4: curved print, "
                                                                   "eyes+nose cut out")
    assert casia_surf_attack("01_e_f")[0] == "print_cut_eyes"
    assert casia_surf_attack("06_enm_b")[0] == "print_cut_eyes_nose_mouth"
    assert casia_surf_attack("5")[1].startswith("CASIA-SURF attack 5: flat print")
    with pytest.raises(DatasetError, match="contradict|letters"):
        casia_surf_attack("04_e_b")                          # attack 4 cuts eyes and nose
    with pytest.raises(DatasetError, match="unknown"):
        casia_surf_attack("xx")


def test_casia_surf_train_tree(casia):
    ds = CasiaSurfDataset(casia, "train_list.txt")
    assert len(ds) == 10 and ds.depth_encoding == "uint8_normalised"
    vids = {r.video_id for r in ds.records}
    assert len(vids) == 5 and "Training/fake_part/CLKJ_AS0001/04_en_b.rssdk" in vids
    assert {r.frame_idx for r in ds.records} == {31, 41}
    species = {r.video_id.split("/")[-1]: r.pai for r in ds.records}
    assert species == {"real.rssdk": "bonafide", "04_en_b.rssdk": "print_cut_eyes_nose",
                       "01_e_f.rssdk": "print_cut_eyes", "06_enm_b.rssdk": "print_cut_eyes_nose_mouth"}
    assert ds.records[2].subject == "CLKJ_AS0001"
    s = ds[0]
    # 8-bit JPEG depth stays what it is: uint8, declared normalised, not millimetres
    assert s.depth_encoding == "uint8_normalised" and s.modalities["depth"].dtype == np.uint8
    jpg = cv2.imread(str(casia / ds.records[0].paths["depth"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(s.modalities["depth"], jpg)
    with pytest.raises(DepthEncodingError, match="8-bit"):
        CasiaSurfDataset(casia, "train_list.txt", depth_encoding="mm16")


def test_casia_surf_flat_names_need_video_ids(casia, tmp_path):
    with pytest.raises(DatasetError, match="flat anonymised name"):
        CasiaSurfDataset(casia, "val_private_list.txt", split="dev")
    ds = CasiaSurfDataset(casia, "val_private_list.txt", split="dev", flat_videos="folder")
    assert [(r.video_id, r.frame_idx) for r in ds.records[:4]] == [("Val/0000", 0), ("Val/0000", 1),
                                                                    ("Val/0001", 0), ("Val/0001", 1)]
    assert len(set(ds.video_ids)) == 4
    assert {r.pai for r in ds.records if not r.is_bonafide} == {CASIA_UNLISTED}   # the list has no attack type
    assert ds.depth_encoding == "uint8_normalised"
    # a video map from metadata: ids, frame indices and (optionally) species
    vm = tmp_path / "val_videos.txt"
    keys = [ln.split()[0].rsplit("-", 1)[0] for ln in (casia / "val_private_list.txt").read_text().splitlines()]
    vm.write_text("".join(f"{k} vid{i // 4} {i % 4}{' print_cut_eyes' if (i // 2) % 2 else ''}\n"
                          for i, k in enumerate(keys)))
    with pytest.raises(DatasetError, match="both bona fide and attack"):
        CasiaSurfDataset(casia, "val_private_list.txt", video_map=vm)
    vm.write_text("".join(f"{k} vid{i // 2} {i % 2}{' print_cut_eyes' if (i // 2) % 2 else ''}\n"
                          for i, k in enumerate(keys)))
    ds = CasiaSurfDataset(casia, "val_private_list.txt", video_map=vm)
    assert ds.video_ids[:3] == ["vid0", "vid0", "vid1"] and ds.records[3].frame_idx == 1
    assert {r.pai for r in ds.records if not r.is_bonafide} == {"print_cut_eyes"}
    vm.write_text(f"{keys[0]} vid0 0\n")
    with pytest.raises(DatasetError, match="not in the video map"):
        CasiaSurfDataset(casia, "val_private_list.txt", video_map=vm)
    with pytest.raises(DatasetError, match="no label"):
        CasiaSurfDataset(casia, "test_public_list.txt", flat_videos="folder")
    test = CasiaSurfDataset(casia, "test_private_list.txt", split="eval", flat_videos="folder")
    assert test.video_ids[0] == "Testing/0000" and test.records[0].frame_idx == 0


# ----------------------------------------------------------------------------------------------------- WMCA
@pytest.mark.parametrize("bits", [16, 8])
def test_wmca_cdit_8_and_16_bit_with_missing_frames(tmp_path, bits, caplog):
    w = make_wmca(tmp_path, bits=bits)
    ds = WMCADataset(w["cdit_root"], w["rgb_root"], "grandtest", w["protocol_dir"], "train", thermal=True)
    first = [r.frame_idx for r in ds.records if r.video_id.startswith("face-station/17.01.18/000_")]
    assert first == [1]                     # RGB frame 0 missing, CDIT frame 2 has no array
    assert len(ds) == 1 + 5 * 3
    s = ds[0]
    with h5py.File(ds.records[0].paths["cdit"], "r") as h:
        c = h[ds.records[0].frame_key]["array"][()]
    assert np.array_equal(s.modalities["depth"], c[1]) and np.array_equal(s.modalities["ir"], c[2])
    if bits == 16:
        assert ds.depth_encoding == "mm16" and s.modalities["depth"].dtype == np.uint16
    else:
        assert ds.depth_encoding == "uint8_normalised" and s.modalities["depth"].dtype == np.uint8
    assert {r.pai for r in ds.records} == {"bonafide", "prints", "rigidmask"} and s.subject == "000"
    ev = WMCADataset(w["cdit_root"], w["rgb_root"], "grandtest", w["protocol_dir"], "eval")
    assert len(set(ev.video_ids)) == 6 and "missing on disk" in caplog.text


def test_wmca_16_bit_intensities_are_scaled_not_clipped(tmp_path, caplog):
    w = make_wmca(tmp_path, bits=16, missing=False)
    f = sorted(w["cdit_root"].rglob("*.hdf5"))[0]
    with h5py.File(f, "r+") as h:
        a = h["Frame_0/array"][()]
        a[2] = 40000                                          # a full-range 16-bit IR frame
        del h["Frame_0/array"]
        h["Frame_0"].create_dataset("array", data=a)
    ds = WMCADataset(w["cdit_root"], w["rgb_root"], "grandtest", w["protocol_dir"], "train")
    i = next(k for k, r in enumerate(ds.records) if r.paths["cdit"] == str(f) and r.frame_idx == 0)
    assert int(ds[i].modalities["ir"].max()) == 40000 >> 8 and ">> 8" in caplog.text


def test_wmca_16_bit_holding_8_bit_range_is_ambiguous(tmp_path):
    w = make_wmca(tmp_path, bits=8, missing=False)
    for f in w["cdit_root"].rglob("*.hdf5"):                # re-store the 8-bit values as uint16
        with h5py.File(f, "r+") as h:
            for k in list(h.keys()):
                a = h[k]["array"][()]
                del h[k]["array"]
                h[k].create_dataset("array", data=a.astype(np.uint16))
    args = (w["cdit_root"], w["rgb_root"], "grandtest", w["protocol_dir"], "dev")
    with pytest.raises(DepthEncodingError, match="depth_encoding: uint8_normalised"):
        WMCADataset(*args)
    assert WMCADataset(*args, depth_encoding="uint8_normalised")[0].modalities["depth"].dtype == np.uint8
    for f in w["cdit_root"].rglob("*.hdf5"):                # metadata attribute resolves it too
        with h5py.File(f, "r+") as h:
            h.attrs["depth_encoding"] = "uint8_normalised"
    assert WMCADataset(*args).depth_encoding == "uint8_normalised"


# ----------------------------------------------------------------------------------------------------- CeFA
def test_cefa_tree(tmp_path):
    root = make_cefa(tmp_path)
    ds = CefaDataset(root, "4@1_test_res.txt", split="eval")
    assert len(ds) == 12 and len(set(ds.video_ids)) == 6 and ds.depth_encoding == "uint8_normalised"
    assert {r.pai for r in ds.records} == {"bonafide", "cloth", "screen"}
    assert {r.group for r in ds.records} == {"AF", "CA"} and ds.records[1].frame_idx == 2
    s = ds[0]
    assert s.modalities["depth"].dtype == np.uint8 and s.modalities["rgb"].shape == (20, 20, 3)


# ------------------------------------------------------------------------------------- config and normalise
def test_data_section_builds_every_kind(tmp_path, casia):
    w = make_wmca(tmp_path / "w")
    cfg = data_config({"model": {"name": "x"}, "data": {"kind": "wmca", "protocol": "grandtest",
                                                        **{k: str(v) for k, v in w.items()}}})
    assert len(build_dataset(cfg, cfg.dev_split)) == 18
    cfg = data_config({"kind": "casia_surf", "root": str(casia), "train_list": "train_list.txt",
                       "dev_list": "val_private_list.txt", "eval_list": "test_private_list.txt",
                       "flat_videos": "folder"})
    assert build_dataset(cfg, "eval").video_ids[0] == "Testing/0000"
    assert build_dataset(cfg, "train").depth_encoding == "uint8_normalised"
    cfg = data_config({"kind": "cefa", "root": str(make_cefa(tmp_path / "f")), "train_list": "4@1_train.txt",
                       "dev_list": "4@1_dev_res.txt"})
    with pytest.raises(ConfigError, match="eval_list"):
        build_dataset(cfg, "eval")
    assert data_config({"kind": "synthetic", "root": "x"}).kind == "synthbench"
    with pytest.raises(ConfigError):
        data_config({"kind": "wmca", "depth_encoding": "metres"})
    with pytest.raises(ConfigError):
        data_config({"kind": "wmca", "no_such_field": 1})


def test_normalise_sample_by_encoding():
    specs = default_input_specs(8)
    rng = np.random.default_rng(0)
    crops = {"rgb": rng.integers(0, 255, (8, 8, 3)).astype(np.uint8),
             "depth": rng.integers(450, 650, (8, 8)).astype(np.uint16), "ir": rng.integers(0, 255, (8, 8)).astype(np.uint8)}
    ref = normalise(crops, specs, 0.001)
    got = normalise_sample(crops, specs, 0.001, depth_encoding="mm16")
    assert all(np.array_equal(ref[k], got[k]) for k in ref)
    d8 = rng.integers(1, 255, (8, 8)).astype(np.uint8)
    d8[0, 0] = 0
    got = normalise_sample({**crops, "depth": d8}, specs, 0.001, depth_encoding="uint8_normalised")
    sp = specs["depth"]
    want = (d8 / 255.0 - sp.mean[0]) / sp.std[0]
    want[0, 0] = DEPTH_HOLE_VALUE
    assert np.allclose(got["depth"][0, 0], want, atol=1e-6)
    assert np.array_equal(got["rgb"], ref["rgb"])
    # MAD is scale-free: the same relief at twice the grey-level scale normalises identically
    mad = {k: type(v)(**{**v.__dict__, "depth_norm": "mad"}) if k == "depth" else v for k, v in specs.items()}
    half = (rng.integers(10, 100, (8, 8))).astype(np.uint8)
    a = normalise_sample({"depth": half}, mad, 0.001, depth_encoding="uint8_normalised")["depth"]
    b = normalise_sample({"depth": (half * 2).astype(np.uint8)}, mad, 0.001, depth_encoding="uint8_normalised")
    assert np.allclose(a, b["depth"], atol=1e-6)
    with pytest.raises(Exception):
        normalise_sample({"depth": d8}, specs, 0.001, depth_encoding="metres")


def test_resize_to_inputs_uses_nearest_for_depth():
    specs = default_input_specs(8)
    d = np.arange(256, dtype=np.uint16).reshape(16, 16) + 500
    out = resize_to_inputs({"depth": d, "rgb": np.zeros((5, 5, 3), np.uint8)}, specs)
    assert out["depth"].shape == (8, 8) and set(out["depth"].ravel()) <= set(d.ravel())
    assert out["rgb"].shape == (8, 8, 3)


def test_synthbench_meta_declares_encoding(tmp_path):
    from tests.helpers.datasets import make_synthbench
    root = make_synthbench(tmp_path / "b", videos_per_class=1, frames=1, size=8)
    assert SynthBenchDataset(root, "grandtest", "train").depth_encoding == "mm16"
    with pytest.raises(DepthEncodingError):
        SynthBenchDataset(root, "grandtest", "train", depth_encoding="uint8_normalised")
