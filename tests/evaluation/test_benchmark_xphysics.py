"""The X_physics study of configs/benchmark/matrix.yaml end to end on a tiny generated set (quick mode): dr / x_phys
are generated, the nominal ∪ dr preset trains on both training sets, τ is placed on dev by the matrix's rule."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("h5py")
pytest.importorskip("yaml")

from edgepad import benchmark as B  # noqa: E402
from edgepad.benchmark.runs import protocol_rows  # noqa: E402

MATRIX = Path(__file__).resolve().parents[2] / "configs" / "benchmark" / "matrix.yaml"


def test_x_physics_study_runs_end_to_end(tmp_path):
    cfg = B.load_matrix(MATRIX)
    assert cfg.data.get("randomised") is True and cfg.threshold_rule == "gap_logit"
    # the real study and presets on a tiny set: 2 species, 2 videos per species and fold, 96x72 renders,
    # 16 px crops, width-4 trunks, one epoch
    tiny = dataclasses.replace(cfg.quick, data={**cfg.quick.data, "videos_per_species": 2,
                                                "cross_videos_per_species": 2, "size_px": 16, "width": 96, "height": 72,
                                                "species": ["bonafide", "flexiblemask"]},
                               train={**cfg.quick.train, "batch_size": 2, "inputs": {"size_px": 16}}, experiments=None)
    cfg = B.apply_quick(dataclasses.replace(cfg, quick=tiny, data_workers=1))
    res = B.run_benchmark(cfg, tmp_path / "out", experiments=["x_physics", "x_physics_mixed"])
    recs = res.records
    assert sorted({(r["preset"], r["protocol"]) for r in recs}) == [
        ("default_edge_ircomp", "DR_grandtest"), ("default_edge_ircomp", "X_physics"),
        ("default_edge_ircomp", "X_physics_nominal"), ("default_edge_ircomp", "grandtest"),
        ("default_edge_ircomp_mixed", "DR_grandtest"), ("default_edge_ircomp_mixed", "X_physics")]
    for r in recs:
        assert "error" not in r and r["threshold_rule"] == "gap_logit"
        d = r["subsets"]["full"]
        assert "error" not in d and d["threshold_rule"] == "gap_logit" and 0.0 <= d["acer"] <= 1.0
        assert {"apcer", "bpcer", "apcer_eer", "bpcer_eer"} <= set(d)
    # X_physics evaluates on x_phys videos only; X_physics_nominal is trained on the grandtest rows
    root = res.data_root
    ev = [row for row in protocol_rows(root, "X_physics") if row[-1] == "eval"]
    assert ev and all("x_phys" in row[0] for row in ev)
    by = {(r["preset"], r["protocol"]): r for r in recs}
    assert by[("default_edge_ircomp", "X_physics_nominal")]["run"] == by[("default_edge_ircomp", "grandtest")]["run"]
    assert by[("default_edge_ircomp", "X_physics")]["run"] == by[("default_edge_ircomp", "DR_grandtest")]["run"]
    # nominal ∪ dr: its own run, trained on more rows than dr alone
    mixed, plain = by[("default_edge_ircomp_mixed", "X_physics")], by[("default_edge_ircomp", "X_physics")]
    assert mixed["run"] != plain["run"]
    n_dr = sum(1 for row in protocol_rows(root, "X_physics") if row[-1] == "train")
    n_nom = sum(1 for row in protocol_rows(root, "grandtest") if row[-1] == "train")
    assert mixed["train"]["train_samples"] > plain["train"]["train_samples"]
    union = next((tmp_path / "out").glob("protocols-*with-grandtest*")) / "PROTOCOL-X_physics.csv"
    k = cfg.balance
    assert union.is_file() and (k or len([r for r in union.read_text().splitlines() if r.endswith("train")])
                                == n_dr + n_nom)
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    for needle in ("**X_physics**", "**X_physics_nominal**", "placed by rule `gap_logit`", "BPCER (τ EER dev)"):
        assert needle in md, needle
    assert json.loads((tmp_path / "out" / "results.json").read_text())["context"]["threshold_rule"] == "gap_logit"


def test_train_on_scores_one_model_with_one_dev_tau_on_several_eval_sets(tmp_path):
    cfg = B.load_matrix(MATRIX)
    tiny = dataclasses.replace(cfg.quick, data={**cfg.quick.data, "videos_per_species": 2,
                                                "cross_videos_per_species": 2, "size_px": 16, "width": 96, "height": 72,
                                                "species": ["bonafide", "flexiblemask"]},
                               train={**cfg.quick.train, "batch_size": 2, "inputs": {"size_px": 16}}, experiments=None)
    one = {"train_on": "X_physics", "train_with": ["grandtest"], **cfg.models["default_edge_ircomp"]}
    exp = B.Experiment(name="one", title="one model", models=("one",), protocols=("X_physics", "grandtest"))
    cfg = dataclasses.replace(cfg, quick=tiny, data_workers=1, models={"one": one}, experiments=(exp,))
    res = B.run_benchmark(B.apply_quick(cfg), tmp_path / "out")
    by = {r["protocol"]: r for r in res.records}
    xp, gt = by["X_physics"], by["grandtest"]
    assert xp["run"] == gt["run"]                                   # one trained model
    assert xp["dev_protocol"] == gt["dev_protocol"] == "X_physics"  # τ from the dr dev for both eval sets
    assert gt["subsets"]["full"]["threshold"] == xp["subsets"]["full"]["threshold"]
    assert gt["train"]["protocol_trained_on"] == "X_physics"
    # the grandtest eval fold (nominal videos) was scored, not X_physics's
    n_gt = sum(1 for row in protocol_rows(res.data_root, "grandtest") if row[-1] == "eval" and row[1] == "0")
    assert gt["subsets"]["full"]["bpcer_k_n"][1] == n_gt
