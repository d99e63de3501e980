"""Benchmark orchestrator logic without training: P4 threshold on P1–P3, table writer, doc update, data reuse by
config hash, run identity by training rows, protocol patterns, matrix validation."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgepad import benchmark as B
from edgepad.errors import ConfigError, DatasetError
from edgepad.evaluation import ScoreSet
from edgepad.metrics import fit_threshold, pad_metrics


def _set(bona: list[float], attacks: dict[str, list[float]]) -> ScoreSet:
    s, b, a = [], [], []
    for x in bona:
        s.append(x), b.append(True), a.append("")
    for sp, xs in attacks.items():
        for x in xs:
            s.append(x), b.append(False), a.append(sp)
    n = len(s)
    return ScoreSet([f"c{i}" for i in range(n)], [f"v{i}" for i in range(n)], np.array(b), a, np.array(s),
                    {"level": "video"})


# --------------------------------------------------------------------------- P4 threshold on P1..P3
def test_p4_threshold_applied_unchanged_to_degraded_subsets():
    # P4: well separated; P1: every score shifted down by 0.4 (the missing modalities pull scores to "attack")
    def folds(offset: float) -> dict:
        bona = np.linspace(0.6, 1.0, 30) - offset
        att = {"print": np.linspace(0.0, 0.4, 20) - offset, "replay": np.linspace(0.0, 0.3, 20) - offset}
        return _set(bona.tolist(), {k: v.tolist() for k, v in att.items()})
    dev = {"P4": folds(0.0), "P1": folds(0.4)}
    ev = {"P4": folds(0.01), "P1": folds(0.41)}
    res = B.p4_threshold_results(dev, ev, "bpcer20", rule="edge")   # scores below 0: not probabilities
    tau4 = fit_threshold(*dev["P4"].args, "bpcer20")
    tau1 = fit_threshold(*dev["P1"].args, "bpcer20")
    assert res["P1"]["tau_ref"] == pytest.approx(tau4) and res["P4"]["tau_ref"] == pytest.approx(tau4)
    # own threshold: fitted on P1's dev
    assert res["P1"]["own"]["threshold"] == pytest.approx(tau1) and tau1 < tau4
    # reference threshold: P4's dev threshold, applied unchanged to P1's eval scores
    want = pad_metrics(*ev["P1"].args, tau4)
    assert res["P1"]["ref"]["acer"] == pytest.approx(want["acer"])
    assert res["P1"]["ref"]["bpcer"] == pytest.approx(want["bpcer"])
    # the shifted subset rejects many bona fide presentations at the P4 threshold but not at its own
    assert res["P1"]["ref"]["bpcer"] > 0.3 and res["P1"]["own"]["bpcer"] < 0.1
    # on P4 both policies coincide
    assert res["P4"]["ref"]["acer"] == pytest.approx(res["P4"]["own"]["acer"])


def test_p4_threshold_needs_the_reference_subset():
    s = _set([0.9, 0.8, 0.7], {"x": [0.1, 0.2, 0.3]})
    with pytest.raises(Exception, match="P4"):
        B.p4_threshold_results({"P1": s}, {"P1": s}, "bpcer20")


# --------------------------------------------------------------------------- table writer
def _rec(preset, proto, seed, acer, sub="full", bpcer20=None, species=None):
    d = {"acer": acer, "apcer": 2 * acer, "bpcer": 0.0, "bpcer20": bpcer20 if bpcer20 is not None else acer,
         "eer_dev": 0.01, "apcer_worst_species": "replay", "apcer_per_species": species or {"replay": 2 * acer},
         "apcer_k_n": {"replay": [1, 10]}, "bpcer_k_n": [0, 10]}
    return {"preset": preset, "protocol": proto, "seed": seed, "subsets": {sub: d}, "run": f"{preset}-s{seed}"}


def _cfg(**kw) -> B.MatrixConfig:
    models = {m: {"model": {"name": "flexmodal"}} for m in ("a", "b")}
    return B.MatrixConfig(models=models, seeds=(0, 1), **kw)


def test_mean_std_is_population_std_and_cells_are_percent():
    m, s, n = B.mean_std([0.01, 0.03])
    assert (m, s, n) == (pytest.approx(0.02), pytest.approx(0.01), 2)   # ddof = 0 (sample std would be 0.0141)
    assert B.fmt_ms([0.01, 0.03]) == "2.00 ± 1.00"
    assert B.fmt_ms([0.05]) == "5.00" and B.fmt_ms([]) == "n/a"
    assert B.fmt_ms([float("nan"), 0.1]) == "10.00"


def test_md_table_shape_and_escaping():
    t = B.md_table(["a", "b"], [["1", "x|y"]])
    lines = t.strip().splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|" and lines[2] == "| 1 | x\\|y |"


def test_models_table_means_over_seeds_and_species_table():
    exp = B.Experiment(name="e", title="T", table="models", models=("a", "b"), per_species=True)
    recs = [_rec("a", "grandtest", 0, 0.01), _rec("a", "grandtest", 1, 0.03), _rec("b", "grandtest", 0, 0.10),
            _rec("b", "grandtest", 1, 0.10), _rec("b", "grandtest", 7, 0.9)]   # seed 7 is not in the matrix
    md = B.render_experiment(exp, _cfg(experiments=(exp,)), recs, ["grandtest"])
    rows: dict[str, str] = {}
    for line in md.splitlines():   # first occurrence = the main table (the species table follows)
        if line.startswith(("| a ", "| b ")):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert "| 2.00 ± 1.00 | 4.00 ± 2.00 |" in rows["a"]            # ACER, APCER over seeds 0, 1
    assert "| 10.00 ± 0.00 |" in rows["b"] and "90" not in rows["b"]
    assert "APCER per species" in md and "| replay |" in md


def test_protocols_table_loo_row_is_mean_and_population_std_over_protocols():
    exp = B.Experiment(name="l", table="protocols", models=("a",), protocols=("LOO_*",), seeds=(0,))
    recs = [_rec("a", "LOO_x", 0, 0.02), _rec("a", "LOO_y", 0, 0.04), _rec("a", "LOO_z", 0, 0.06)]
    md = B.render_experiment(exp, _cfg(experiments=(exp,)), recs, ["LOO_x", "LOO_y", "LOO_z"])
    loo = [line for line in md.splitlines() if line.startswith("| LOO mean")][0]
    std = float(np.std([2, 4, 6]))    # ddof 0 -> 1.63
    assert f"4.00 ± {std:.2f}" in loo


def test_subsets_table_shows_own_and_p4_thresholds_and_target_line():
    exp = B.Experiment(name="d", table="subsets", models=("a",), subsets=("P1", "P4"), seeds=(0,), target_acer=0.01)
    rec = _rec("a", "grandtest", 0, 0.005, sub="P4")
    rec["subsets"]["P1"] = dict(rec["subsets"]["P4"], acer=0.2)
    rec["p4_threshold"] = {"P1": {"acer": 0.35, "bpcer": 0.7}, "P4": {"acer": 0.005, "bpcer": 0.0}}
    md = B.render_experiment(exp, _cfg(experiments=(exp,)), [rec], ["grandtest"])
    p1 = [line for line in md.splitlines() if line.startswith("| P1")][0]
    assert "| 20.00 | 35.00 | 70.00 |" in p1
    assert "Target ACER ≤ 1.0 % on grandtest" in md and "met on every seed" in md and "NOT" not in md


def test_missing_results_are_reported_not_silently_zero():
    exp = B.Experiment(name="e", table="models", models=("a",), seeds=(0,))
    rec = {"preset": "a", "protocol": "grandtest", "seed": 0, "run": "r", "subsets": {"full": {"error": "no bona fide"}}}
    md = B.render_experiment(exp, _cfg(experiments=(exp,)), [rec], ["grandtest"])
    assert "| a | n/a |" in md and "Not computed" in md and "no bona fide" in md


def test_update_doc_keeps_hand_written_text(tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nHand-written analysis.\n", encoding="utf-8")
    B.update_doc(doc, "TABLE ONE\n")
    B.update_doc(doc, "TABLE TWO\n")
    text = doc.read_text(encoding="utf-8")
    assert "Hand-written analysis." in text and "TABLE TWO" in text and "TABLE ONE" not in text
    assert text.count(B.BEGIN_MARK) == 1 and text.count(B.END_MARK) == 1
    doc.write_text(text + "\nMore notes after.\n", encoding="utf-8")
    B.update_doc(doc, "TABLE THREE\n")
    text = doc.read_text(encoding="utf-8")
    assert "More notes after." in text and "TABLE THREE" in text and "TABLE TWO" not in text


# --------------------------------------------------------------------------- data reuse, run identity
DATA = {"videos_per_species": 2, "frames_per_video": 1, "size_px": 24, "width": 160, "height": 120,
        "subjects_per_fold": 3, "cross_domain": False, "species": ["bonafide", "replay"]}


def _fake_generated(root: Path, data: dict) -> None:
    from edgepad.benchmark.dataset import GENERATOR_VERSION
    cfg = B.dataset_config(data)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"generator_version": GENERATOR_VERSION, "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
            "protocols": ["grandtest"], "videos": {}}
    (root / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def test_data_folder_with_the_same_config_hash_is_reused(tmp_path):
    cfg = B.MatrixConfig(data=DATA)
    h = B.data_hash(DATA)
    _fake_generated(tmp_path / f"data-{h[:12]}", DATA)     # no videos: reuse must not regenerate
    root, h2, meta = B.ensure_data(cfg, tmp_path)
    assert h2 == h and root == tmp_path / f"data-{h[:12]}" and not (root / "videos").exists()
    assert B.data_hash(dict(DATA, seed=1)) != h and B.data_hash(dict(DATA, size_px=32)) != h


def test_explicit_data_folder_with_another_config_is_refused(tmp_path):
    _fake_generated(tmp_path / "d", dict(DATA, seed=3))
    with pytest.raises(DatasetError, match="another config"):
        B.ensure_data(B.MatrixConfig(data=DATA), tmp_path, tmp_path / "d")


def _protocols(root: Path) -> None:
    (root / "protocols").mkdir(parents=True)
    train = ["videos/a,0,bonafide,train", "videos/b,1,attack/2D/replay,train", "videos/c,0,bonafide,dev",
             "videos/d,1,attack/2D/replay,dev"]
    (root / "protocols" / "PROTOCOL-grandtest.csv").write_text(
        "\n".join(train + ["videos/e,0,bonafide,eval"]) + "\n")
    (root / "protocols" / "PROTOCOL-X_sensor.csv").write_text(
        "\n".join(train + ["videos/x,0,bonafide,eval"]) + "\n")
    (root / "protocols" / "PROTOCOL-X_range.csv").write_text(
        "\n".join(train[:3] + ["videos/x,0,bonafide,eval"]) + "\n")


def test_protocols_with_the_same_training_rows_share_a_run(tmp_path):
    _protocols(tmp_path)
    cfg = B.MatrixConfig(models={"m": {"model": {"name": "flexmodal"}}})
    k = {p: B.run_key(cfg, "m", 0, "h", B.train_rows_hash(tmp_path, p)) for p in ("grandtest", "X_sensor", "X_range")}
    assert k["grandtest"] == k["X_sensor"] != k["X_range"]
    assert B.run_key(cfg, "m", 1, "h", B.train_rows_hash(tmp_path, "grandtest")) != k["grandtest"]
    assert B.run_key(cfg, "m", 0, "other-data", B.train_rows_hash(tmp_path, "grandtest")) != k["grandtest"]
    cfg2 = B.MatrixConfig(models={"m": {"model": {"name": "flexmodal"}}}, train={"threads": 2, "epochs": 3})
    cfg3 = B.MatrixConfig(models={"m": {"model": {"name": "flexmodal"}}}, train={"threads": 1, "epochs": 3})
    rows = B.train_rows_hash(tmp_path, "grandtest")
    assert B.run_key(cfg2, "m", 0, "h", rows) == B.run_key(cfg3, "m", 0, "h", rows)   # threads: not identity


def test_protocol_patterns_and_plan_deduplicate():
    avail = ["grandtest", "LOO_replay", "LOO_print_flat", "X_sensor"]
    assert B.expand_protocols(["grandtest", "LOO_*"], avail) == ["grandtest", "LOO_print_flat", "LOO_replay"]
    with pytest.raises(ConfigError, match="matches none"):
        B.expand_protocols(["LOO_mask"], avail)
    e1 = B.Experiment(name="a", models=("m",), protocols=("grandtest",))
    e2 = B.Experiment(name="b", models=("m", "n"), protocols=("grandtest", "LOO_*"))
    cfg = B.MatrixConfig(models={"m": {}, "n": {}}, experiments=(e1, e2), seeds=(0, 1))
    jobs = B.plan(cfg, avail)
    assert len(jobs) == len(set(jobs)) == 2 * (1 + 2 * 3) - 2


def test_matrix_validation_errors():
    with pytest.raises(ConfigError, match="unknown model preset"):
        B.MatrixConfig(models={"m": {}}, experiments=(B.Experiment(name="a", models=("x",)),))
    with pytest.raises(ConfigError, match="sub-protocols"):
        B.MatrixConfig(models={"m": {}}, experiments=(B.Experiment(name="a", models=("m",), subsets=("P9",)),))
    with pytest.raises(ConfigError, match="unique"):
        B.MatrixConfig(models={"m": {}}, experiments=(B.Experiment(name="a"), B.Experiment(name="a")))


def test_shipped_matrix_loads_and_quick_overrides_apply():
    path = Path(__file__).resolve().parents[2] / "configs" / "benchmark" / "matrix.yaml"
    full = B.load_matrix(path)
    quick = B.load_matrix(path, quick=True)
    names = {e.name for e in full.experiments}
    assert {"single_vs_fusion", "fusion_kinds", "loss_unseen", "dropout_missing", "dropout_cross",
            "default_target"} <= names
    assert quick.train["epochs"] == 1 and full.train["epochs"] > 1
    assert all(p["model"]["kwargs"]["backbone_kwargs"]["width"] == 4 for p in quick.models.values())
    assert B.data_hash(quick.data) != B.data_hash(full.data)


def test_preset_inputs_reach_the_training_specs_and_the_run_key():
    from edgepad.config import from_mapping
    from edgepad.training import TrainConfig, input_specs
    cfg_m = B.MatrixConfig(models={"a": {"model": {"name": "flexmodal"}},
                                   "b": {"model": {"name": "flexmodal"},
                                         "inputs": {"depth_norm": "absolute", "clip": {"depth": [0.2, 1.5]}}}})
    m = B.train_mapping(cfg_m, "b", 0, Path("/data"), "grandtest", Path("/out"))
    specs = input_specs(from_mapping(TrainConfig, m))
    assert specs["depth"].depth_norm == "absolute" and tuple(specs["depth"].clip) == (0.2, 1.5)
    assert specs["ir"] == input_specs(TrainConfig())["ir"]
    assert B.run_key(cfg_m, "a", 0, "h", "r") != B.run_key(cfg_m, "b", 0, "h", "r")


def test_balanced_protocol_repeats_only_bona_fide_train_rows(tmp_path):
    _protocols(tmp_path)
    with (tmp_path / "protocols" / "PROTOCOL-grandtest.csv").open("a") as f:
        f.write("videos/f,1,attack/3D/rigidmask,train\nvideos/g,1,attack/3D/papermask,train\n")
    pdir, k = B.balanced_protocol(tmp_path, "grandtest", tmp_path / "bal")
    assert k == 3   # 3 attack rows / 1 bona fide row in train
    rows = [line.split(",") for line in (pdir / "PROTOCOL-grandtest.csv").read_text().splitlines()]
    assert sum(1 for r in rows if r[0] == "videos/a") == 3
    for vid in ("videos/b", "videos/c", "videos/d", "videos/e", "videos/f"):
        assert sum(1 for r in rows if r[0] == vid) == 1
    cfg = B.MatrixConfig(models={"m": {}})
    assert B.run_key(cfg, "m", 0, "h", "r") != B.run_key(dataclasses.replace(cfg, balance=True), "m", 0, "h", "r")


def test_data_hash_is_pinned():
    """Generated folders stay reusable across refactors: the hash covers the generator version and the resolved
    config fields only (pinned from before SynthDatasetConfig was renamed and moved)."""
    assert B.data_hash(DATA) == "69dfb1b6b213b822279828ebd2d41d3938f6f489c1b49dbfb2ed426f942a0338"
    assert B.data_hash({}) == "ddfc3adbbb71b053b765638347cc24ecccc2d2b0066dfe91a749b15b963837f6"
    assert isinstance(B.dataset_config(DATA), B.SynthDatasetConfig)
