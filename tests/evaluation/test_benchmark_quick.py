"""`edgepad benchmark --quick` end to end on a tiny generated benchmark (tiny models, one epoch), then the results
cache / resume behaviour of a second run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("h5py")
pytest.importorskip("yaml")

from edgepad import benchmark as B  # noqa: E402
from edgepad._optional import available  # noqa: E402

MATRIX = """
criterion: bpcer20
level: video
seeds: [0, 1]
balance: true
data: {videos_per_species: 9, frames_per_video: 9, size_px: 112, seed: 4}
train:
  inputs: {size_px: 112}
  epochs: 9
  batch_size: 4
  threads: 1
  log_every: 1000
  amp: false
models:
  rgb:    {model: {name: flexmodal, modalities: [rgb], fusion: concat, kwargs: {modality_dropout: 0.0}}}
  concat: {model: {name: flexmodal, modalities: [rgb, depth, ir], fusion: concat, kwargs: {modality_dropout: 0.0}}}
  drop:   {model: {name: flexmodal, modalities: [rgb, depth, ir], fusion: concat, kwargs: {modality_dropout: 0.5}}}
experiments:
  - {name: single, table: models, models: [rgb, drop], protocols: [grandtest], per_species: true, target_acer: 0.01}
  - {name: loo, table: protocols, models: [concat], protocols: ["LOO_*"]}
  - {name: missing, table: subsets, models: [drop], protocols: [grandtest], subsets: [P1, P2, P3, P4]}
quick:
  data: {videos_per_species: 2, frames_per_video: 1, size_px: 24, width: 160, height: 120, subjects_per_fold: 3,
         cross_domain: false, species: [bonafide, print_flat, replay]}
  train: {epochs: 1, batch_size: 4, inputs: {size_px: 24}}
  model_kwargs: {backbone_kwargs: {width: 4}}
  seeds: [0]
"""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from edgepad.cli import main
    tmp = tmp_path_factory.mktemp("bench")
    matrix = tmp / "matrix.yaml"
    matrix.write_text(MATRIX, encoding="utf-8")
    doc = tmp / "RESULTS.md"
    doc.write_text("# Results\n\nAnalysis written by hand.\n", encoding="utf-8")
    out = tmp / "out"
    rc = main(["benchmark", str(matrix), "--out", str(out), "--quick", "--doc", str(doc)])
    assert rc == 0
    return tmp, matrix, out, doc


def test_quick_run_generates_trains_evaluates_and_writes_tables(first_run):
    tmp, matrix, out, doc = first_run
    data_dirs = list(out.glob("data-*"))
    assert len(data_dirs) == 1 and (data_dirs[0] / "meta.json").is_file()
    meta = json.loads((data_dirs[0] / "meta.json").read_text())
    assert meta["config"]["size_px"] == 24 and meta["config"]["species"] == ["bonafide", "print_flat", "replay"]
    res = json.loads((out / "results.json").read_text())
    recs = res["records"]
    if available("matplotlib"):                                  # the comparison chart beside RESULTS.md (matplotlib only)
        assert (out / "acer_by_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rgb + drop on grandtest, concat on LOO_print_flat and LOO_replay, drop P1-P4 on grandtest
    assert sorted((r["preset"], r["protocol"]) for r in recs) == [
        ("concat", "LOO_print_flat"), ("concat", "LOO_replay"), ("drop", "grandtest"), ("drop", "grandtest"),
        ("rgb", "grandtest")]
    for r in recs:
        assert "error" not in r
        for name, d in r["subsets"].items():
            assert "error" not in d, (r["preset"], r["protocol"], name, d)
            assert 0.0 <= d["acer"] <= 1.0 and d["criterion"] == "bpcer20" and d["level"] == "video"
    # LOO: eval holds only the unseen species
    loo = [r for r in recs if r["protocol"] == "LOO_replay"][0]
    assert list(loo["subsets"]["full"]["apcer_per_species"]) == ["replay"]
    # missing-modality: four sub-protocols, each with the P4-dev threshold result
    miss = [r for r in recs if r["preset"] == "drop" and r["subsets_requested"]][0]
    assert set(miss["subsets"]) == {"P1", "P2", "P3", "P4"} and set(miss["p4_threshold"]) == {"P1", "P2", "P3", "P4"}
    tau4 = miss["subsets"]["P4"]["threshold"]
    assert all(v["threshold"] == pytest.approx(tau4) for v in miss["p4_threshold"].values())
    # one training run per (preset, training rows, seed): drop on grandtest is trained once for two evaluations
    assert len({r["run"] for r in recs}) == 4
    md = (out / "RESULTS.md").read_text()
    for needle in ("Data config hash", "Git revision", "Seeds: [0]", "bpcer20", "Training budget",
                   "| P1 (rgb) |", "LOO mean ± std over 2 protocols", "Target ACER ≤ 1.0 % on grandtest",
                   "--quick"):
        assert needle in md, needle
    text = doc.read_text()
    assert "Analysis written by hand." in text and B.BEGIN_MARK in text and "| P1 (rgb) |" in text


def test_second_run_is_served_from_the_results_cache(first_run):
    tmp, matrix, out, doc = first_run
    before = json.loads((out / "results.json").read_text())["records"]
    res = B.run_benchmark(matrix, out, quick=True)
    assert res.evaluated == 0 and res.trained == 0 and res.cached_evals == len(before)
    assert [r["subsets"] for r in res.records] == [r["subsets"] for r in before]


def test_interrupted_run_resumes_and_reevaluates_only_what_is_missing(first_run):
    tmp, matrix, out, doc = first_run
    before = {(r["preset"], r["protocol"], tuple(r["subsets_requested"])): r
              for r in json.loads((out / "results.json").read_text())["records"]}
    # lose the LOO_replay result and the "done" marker of its training run (a crash after the last checkpoint)
    victim = [p for p in (out / "results").glob("concat-LOO_replay-*.json")]
    assert len(victim) == 1
    run = json.loads(victim[0].read_text())["run"]
    victim[0].unlink()
    (out / "runs" / run / "done.json").unlink()
    assert (out / "runs" / run / "last.pt").is_file()
    res = B.run_benchmark(matrix, out, quick=True)
    assert res.evaluated == 1 and res.trained == 1 and res.cached_evals == len(before) - 1
    again = [r for r in res.records if r["protocol"] == "LOO_replay"][0]
    assert again["run"] == run
    assert again["subsets"]["full"]["acer"] == pytest.approx(before[("concat", "LOO_replay", ())]["subsets"]["full"]["acer"])
    assert (out / "runs" / run / "done.json").is_file()


def test_report_only_trains_nothing_and_reports_missing_seeds_as_not_measured(first_run):
    tmp, matrix, out, doc = first_run
    runs_before = sorted(p.name for p in (out / "runs").iterdir())
    res = B.run_benchmark(matrix, out, quick=True, seeds=[0, 1], report_only=True)
    assert res.trained == 0 and res.evaluated == 0
    assert {r["seed"] for r in res.records} == {0}
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before
    assert "over seeds [0, 1]" in res.markdown and "| 1 |" in res.markdown    # the seeds column counts 1
