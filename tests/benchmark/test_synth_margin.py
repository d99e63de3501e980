"""The crop margin of the synthetic benchmark generator: ``edgepad synth --margin``, its validation, the data hash
and what a wider margin does to the stored crops."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.benchmark.dataset import SynthDatasetConfig, plan_videos, render_video
from edgepad.benchmark.matrix import data_hash, meta_hash
from edgepad.errors import ConfigError

pytest.importorskip("h5py")

TINY = dict(videos_per_species=1, frames_per_video=1, seed=3, size_px=32, subjects_per_fold=2, width=160,
            height=120, cross_domain=False, species=("bonafide", "flexiblemask"))


@pytest.mark.parametrize("margin", [-0.1, 4.5, float("nan"), "0.6"])
def test_bad_margin_is_a_config_error(margin):
    with pytest.raises(ConfigError) as e:
        SynthDatasetConfig(margin=margin)
    assert e.value.key == "margin"


def test_margin_enters_the_data_hash():
    base = {k: v for k, v in TINY.items() if k != "species"}
    assert data_hash({**base, "margin": 0.6}) != data_hash(base)
    assert data_hash({**base, "margin": 0.25}) == data_hash(base)   # the default is the old data


def test_wider_margin_shrinks_the_face_in_the_crop():
    """Same presentation, same box: at margin 0.6 the person (depth within 0.15 m of its nearest point) covers
    clearly fewer crop pixels than at margin 0.25 — (1.25 / 1.6)² ≈ 0.61 of them for a flat face, 0.71 here where
    more of the neck enters the wider crop; an ignored margin gives 1."""
    narrow = SynthDatasetConfig(**TINY)
    wide = SynthDatasetConfig(**{**TINY, "margin": 0.6})
    spec = next(s for s in plan_videos(narrow) if s.species == "bonafide")

    def face_fraction(cfg: SynthDatasetConfig) -> float:
        frames, _ = render_video(spec, cfg)
        depth = frames[0][3].astype(np.float64)
        near = depth[depth > 0].min()
        return float(np.mean((depth > 0) & (depth < near + 150.0)))

    f_narrow, f_wide = face_fraction(narrow), face_fraction(wide)
    assert 0.45 < f_wide / f_narrow < 0.8, (f_narrow, f_wide)


def test_cli_margin_is_recorded_and_hashed(tmp_path):
    from edgepad.cli import main
    rc = main(["synth", "--out", str(tmp_path), "--videos-per-species", "1", "--frames-per-video", "1",
               "--size", "24", "--width", "160", "--subjects-per-fold", "2", "--no-cross-domain",
               "--species", "bonafide,replay", "--margin", "0.6", "--seed", "3"])
    assert rc == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config"]["margin"] == 0.6
    data = {"videos_per_species": 1, "frames_per_video": 1, "size_px": 24, "width": 160, "height": 120,
            "subjects_per_fold": 2, "cross_domain": False, "species": ["bonafide", "replay"], "seed": 3}
    assert meta_hash(meta) == data_hash({**data, "margin": 0.6})
    assert meta_hash(meta) != data_hash(data)


@pytest.mark.parametrize("value", ["-0.5", "nan"])
def test_cli_refuses_a_bad_margin(tmp_path, value):
    from edgepad.cli import main
    assert main(["synth", "--out", str(tmp_path / "x"), "--margin", value]) == 2
    assert not (tmp_path / "x").exists()


def test_cli_margin_above_4_is_a_config_error(tmp_path):
    from edgepad.cli import main
    assert main(["synth", "--out", str(tmp_path / "x"), "--margin", "5"]) == 1
    assert not (tmp_path / "x" / "meta.json").exists()


def test_wide_study_differs_from_x_physics_only_in_the_crop_margin():
    """configs/benchmark/x_physics_wide.yaml: the data of x_physics.yaml at margin 0.6, the same training defaults,
    and s8_wide_cmfl_e60 = s7_cmfl_e60 (docs/RESULTS.md, "Session 8")."""
    from pathlib import Path

    from edgepad.benchmark.matrix import load_matrix
    root = Path(__file__).resolve().parents[2] / "configs" / "benchmark"
    wide, base = load_matrix(root / "x_physics_wide.yaml"), load_matrix(root / "x_physics.yaml")
    assert wide.data == {**base.data, "margin": 0.6}
    assert data_hash(wide.data) != data_hash(base.data)
    assert wide.train == base.train
    assert wide.models["s8_wide_cmfl_e60"] == base.models["s7_cmfl_e60"]
    for key in ("criterion", "threshold_rule", "level", "balance"):
        assert getattr(wide, key) == getattr(base, key), key
    (exp,) = [e for e in wide.experiments if e.name == "s8_wide"]
    assert exp.models == ("s8_wide_cmfl_e60",)
    assert list(exp.protocols) == ["X_physics", "grandtest"] and exp.per_species
