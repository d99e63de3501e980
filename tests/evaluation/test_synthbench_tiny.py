"""The synthetic benchmark generator at tiny scale: layout, CSV format and polarity, protocols, subject-disjoint
folds, determinism, and the CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edgepad.benchmark.dataset import SynthDatasetConfig, attack_type, generate, plan_videos, render_video

h5py = pytest.importorskip("h5py")

CFG = SynthDatasetConfig(videos_per_species=2, frames_per_video=2, frame_stride=3, seed=5, size_px=32,
                         subjects_per_fold=3, width=160, height=120, cross_videos_per_species=1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthbench")
    generate(root, CFG)
    return root


def _rows(root: Path, name: str) -> list[list[str]]:
    with (root / "protocols" / f"PROTOCOL-{name}.csv").open(newline="") as f:
        return [r for r in csv.reader(f)]


def test_layout_and_arrays(bench):
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["generator_version"] and meta["seed"] == 5 and meta["size_px"] == 32
    assert meta["generator"] == "edgepad.benchmark.dataset"
    assert meta["config"]["videos_per_species"] == 2 and meta["depth_scale_m"] == 0.001
    assert len(meta["videos"]) == len(plan_videos(CFG)) == 8 * 2 * 3 + 3 * 8
    for vid, vm in list(meta["videos"].items())[::7]:
        with h5py.File(bench / "videos" / f"{vid}.hdf5", "r") as h:
            keys = sorted(h.keys())
            assert keys == ["Frame_0", "Frame_1"]
            a = h["Frame_0"]["array"][()]
        assert a.shape == (5, 32, 32) and a.dtype == np.uint16
        assert a[[0, 1, 2, 4]].max() <= 255 and a[:3].std() > 2
        if vm["species"] == "bonafide":  # registered depth in mm around the face distance
            d = a[3][a[3] > 0]
            assert d.size > 200 and abs(np.median(d) / 1000.0 - vm["distance_m"]) < 0.1


def test_protocol_csv_format_and_polarity(bench):
    names = {p.name for p in (bench / "protocols").iterdir()}
    expected = {"grandtest", "UNKNOWN_2D", "UNKNOWN_3D", "X_sensor", "X_illuminant", "X_range"} | {
        f"LOO_{s}" for s in ("print_flat", "print_bent", "print_glossy", "replay", "papermask", "rigidmask",
                             "flexiblemask")}
    assert names == {f"PROTOCOL-{n}.csv" for n in expected}
    for name in expected:
        rows = _rows(bench, name)
        assert rows
        for path, label, at, fold in rows:
            assert path.startswith("videos/") and not path.endswith(".hdf5")
            assert (bench / f"{path}.hdf5").is_file()
            assert label == ("0" if at == "bonafide" else "1")
            assert at == "bonafide" or at.split("/")[:2] in (["attack", "2D"], ["attack", "3D"])
            assert fold in ("train", "dev", "eval")
    assert attack_type("replay") == "attack/2D/replay" and attack_type("rigidmask") == "attack/3D/rigidmask"


def test_protocol_contents(bench):
    meta = json.loads((bench / "meta.json").read_text())["videos"]
    vid = lambda p: p.split("/", 1)[1]  # noqa: E731
    grand = _rows(bench, "grandtest")
    assert {r[2].rsplit("/", 1)[-1] for r in grand if r[3] == "eval"} == set(CFG.species)
    loo = _rows(bench, "LOO_replay")
    assert all("replay" not in r[2] for r in loo if r[3] != "eval")
    assert {r[2] for r in loo if r[3] == "eval"} == {"bonafide", "attack/2D/replay"}
    u2 = _rows(bench, "UNKNOWN_2D")
    assert all("/2D/" not in r[2] for r in u2 if r[3] != "eval")
    assert all("/3D/" not in r[2] for r in u2 if r[3] == "eval") and any("/2D/" in r[2] for r in u2)
    for name, dom in (("X_sensor", "x_sensor"), ("X_illuminant", "x_illuminant"), ("X_range", "x_range_eval")):
        rows = _rows(bench, name)
        assert all(meta[vid(r[0])]["domain"] == dom for r in rows if r[3] == "eval")
        assert all(meta[vid(r[0])]["domain"] == "nominal" for r in rows if r[3] != "eval")
    assert all(meta[vid(r[0])]["distance_m"] <= 0.8 for r in _rows(bench, "X_range") if r[3] != "eval")
    assert all(meta[vid(r[0])]["distance_m"] >= 0.79 for r in _rows(bench, "X_range") if r[3] == "eval")


def test_folds_are_subject_disjoint(bench):
    meta = json.loads((bench / "meta.json").read_text())["videos"]
    people: dict[str, set] = {"train": set(), "dev": set(), "eval": set()}
    for v in meta.values():
        people[v["fold"]].add(v["subject"])
        if v["victim"] is not None:
            people[v["fold"]].add(v["victim"])
    assert not (people["train"] & people["dev"]) and not (people["train"] & people["eval"])
    assert not (people["dev"] & people["eval"])
    assert all(v["group"] in ("light", "medium", "dark") for v in meta.values())


def test_generation_is_deterministic(bench):
    specs = plan_videos(CFG)
    assert [s.video_id for s in specs] == [s.video_id for s in plan_videos(CFG)]
    for spec in (specs[0], specs[13]):
        frames, _ = render_video(spec, CFG)
        with h5py.File(bench / "videos" / f"{spec.video_id}.hdf5", "r") as h:
            for i, arr in enumerate(frames):
                assert np.array_equal(arr, h[f"Frame_{i}"]["array"][()])
    first, _ = render_video(specs[0], CFG)
    other, _ = render_video(specs[0], SynthDatasetConfig(**{**CFG.__dict__, "seed": 6}))
    assert not np.array_equal(other[0], first[0])


def test_cli_writes_a_benchmark(tmp_path):
    from edgepad.cli import main
    rc = main(["synth", "--out", str(tmp_path), "--videos-per-species", "1", "--frames-per-video", "1",
               "--size", "24", "--width", "160", "--subjects-per-fold", "2", "--no-cross-domain",
               "--species", "bonafide,replay"])
    assert rc == 0
    rows = _rows(tmp_path, "grandtest")
    assert len(rows) == 6 and {r[3] for r in rows} == {"train", "dev", "eval"}
    assert not (tmp_path / "protocols" / "PROTOCOL-X_sensor.csv").exists()
