"""bob-format score CSVs, sidecar JSON, per-video aggregation and `edgepad metrics` from score files alone."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.errors import DatasetError
from edgepad.evaluation import ScoreSet, aggregate_videos, evaluate_files, read_scores, write_scores
from edgepad.metrics import fit_threshold, pad_metrics

V1_CSV = """claimed_id,test_label,is_bonafide,attack_type,score
001,b1,True,,0.9
002,b2,true,,0.8
003,b3,TRUE,,0.7
004,b4,True,,0.6
005,b5,True,,0.2
006,p1,False,print,0.1
006,p2,false,print,0.3
007,p3,FALSE,print,0.65
008,r1,False,replay,0.05
008,r2,False,replay,0.1
009,r3,False,replay,0.2
009,r4,False,replay,0.4
010,r5,False,replay,NaN
"""


def test_read_case_insensitive_booleans_and_nan(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(V1_CSV)
    s = read_scores(p)
    assert s.is_bonafide.sum() == 5 and len(s) == 13
    assert s.species == ["print", "replay"]
    assert math.isnan(s.score[-1])
    m = pad_metrics(*s.args, 0.5)
    assert m["acer"] == pytest.approx(4 / 15)
    assert m["fta"]["species"]["replay"]["k"] == 1


def test_round_trip_and_sidecar(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    bf = rng.random(n) < 0.4
    s = ScoreSet([f"{i % 7:03d}" for i in range(n)], [f"videos/v{i}" for i in range(n)], bf,
                 np.where(bf, "", rng.choice(["replay", "rigidmask"], n)).tolist(), rng.normal(size=n))
    s.score[3] = np.nan
    p = write_scores(tmp_path / "scores-dev.csv", s, {"level": "video", "threshold_criterion": "bpcer20"})
    back = read_scores(p)
    assert back.test_label == s.test_label and back.claimed_id == s.claimed_id
    assert back.attack_type == s.attack_type
    np.testing.assert_array_equal(back.is_bonafide, s.is_bonafide)
    np.testing.assert_array_equal(np.isnan(back.score), np.isnan(s.score))
    np.testing.assert_array_equal(back.score[~np.isnan(s.score)], s.score[~np.isnan(s.score)])  # exact floats
    assert back.meta["level"] == "video" and back.meta["n_rows"] == n
    assert p.read_text().splitlines()[0] == "claimed_id,test_label,is_bonafide,attack_type,score"
    assert json.loads((tmp_path / "scores-dev.csv.json").read_text())["threshold_criterion"] == "bpcer20"


@pytest.mark.parametrize("text,match", [
    ("claimed_id,test_label,is_bonafide,attack_type\n1,a,True,\n", "score"),
    ("claimed_id,test_label,is_bonafide,attack_type,score\n1,a,yes,,0.1\n", "is_bonafide"),
    ("claimed_id,test_label,is_bonafide,attack_type,score\n1,a,True,,abc\n", "not a number"),
    ("claimed_id,test_label,is_bonafide,attack_type,score\n1,a,True,,0.1\n1,a,False,x,0.2\n", "more than once"),
    ("claimed_id,test_label,is_bonafide,attack_type,score\n", "no score rows"),
])
def test_bad_files(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_scores(p)


def test_other_tools_csv_extra_columns_and_unnamed_attacks(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("subject_id,is_bonafide,score,test_label,extra\n"
                 "1,True,2.0,a,x\n2,True,1.0,b,x\n3,False,-1,c,x\n4,False,0.5,d,x\n")
    s = read_scores(p)
    assert s.species == ["attack"]
    assert pad_metrics(*s.args, 0.75)["apcer"] == 0.0


def test_video_aggregation():
    fr = ScoreSet(["1"] * 5, ["v1#0", "v1#1", "v2#0", "v2#1", "v3#0"], [True, True, False, False, False],
                  ["", "", "replay", "replay", "replay"], [0.2, 0.6, np.nan, 0.3, np.nan])
    v = aggregate_videos(fr)
    assert v.test_label == ["v1", "v2", "v3"]
    assert v.score[0] == pytest.approx(0.4) and v.score[1] == pytest.approx(0.3) and np.isnan(v.score[2])
    assert v.meta["level"] == "video"
    bad = ScoreSet(["1", "1"], ["v#0", "v#1"], [True, False], ["", "replay"], [0.1, 0.2])
    with pytest.raises(DatasetError):
        aggregate_videos(bad)


def _write_fold(path, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    n = 120
    bf = np.arange(n) % 3 == 0
    sp = np.where(bf, "", np.where(np.arange(n) % 3 == 1, "print_flat", "replay"))
    s = np.where(bf, rng.normal(1.5, 1, n), rng.normal(-1 + shift, 1, n)).round(1)   # ties
    s[5] = np.nan
    write_scores(path, ScoreSet([str(i % 11) for i in range(n)], [f"v{i}" for i in range(n)], bf, sp.tolist(), s),
                 {"level": "video"})


def test_metrics_from_files_fits_on_dev_only(tmp_path):
    _write_fold(tmp_path / "scores-dev.csv", 1)
    _write_fold(tmp_path / "scores-eval.csv", 2, shift=0.8)
    res = evaluate_files(tmp_path / "scores-dev.csv", tmp_path / "scores-eval.csv", tmp_path / "out",
                         criterion="bpcer20", plots=False, threshold_rule="edge")   # raw (logit-scale) scores
    dev, ev = read_scores(tmp_path / "scores-dev.csv"), read_scores(tmp_path / "scores-eval.csv")
    tau = fit_threshold(*dev.args, "bpcer20")
    assert res["threshold"] == tau and res["threshold_rule"] == "edge"
    assert tau != fit_threshold(*ev.args, "bpcer20")   # eval would give another τ: it was not used
    ref = pad_metrics(*ev.args, tau)
    assert res["eval"]["acer"] == ref["acer"] and res["eval"]["apcer"] == ref["apcer"]
    assert res["operating_points"]["bpcer20"]["eval"]["bpcer"] == ref["bpcer"]
    assert res["operating_points"]["bpcer100"]["threshold"] == fit_threshold(*dev.args, "bpcer100")
    assert res["dev"]["apcer"] <= 0.05
    md = (tmp_path / "out" / "report.md").read_text()
    assert "τ from dev (bpcer20, placed by rule edge), applied unchanged to eval" in md
    for p in ("print_flat", "replay"):
        assert p in md
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["threshold"] == tau


def test_metrics_cli(tmp_path, capsys):
    _write_fold(tmp_path / "d.csv", 3)
    _write_fold(tmp_path / "e.csv", 4)
    rc = main(["metrics", str(tmp_path / "d.csv"), str(tmp_path / "e.csv"), "--criterion", "apcer100"])
    assert rc == 1 and "--threshold-rule gap" in capsys.readouterr().err   # default gap_logit needs [0, 1] scores
    rc = main(["metrics", str(tmp_path / "d.csv"), str(tmp_path / "e.csv"), "--criterion", "apcer100",
               "--threshold-rule", "gap", "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "τ from dev (apcer100, rule gap), applied to eval" in out and "BPCER20" in out
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "APCER_p" in html
    pytest.importorskip("matplotlib")
    for f in ("roc.png", "det.png", "histograms.png"):
        assert (tmp_path / "rep" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in html
    rc = main(["metrics", str(tmp_path / "d.csv"), str(tmp_path / "e.csv"), "--criterion", "bpcr20"])
    assert rc == 1 and "bpcer20" in capsys.readouterr().err


def test_report_without_matplotlib(tmp_path, monkeypatch):
    import sys
    _write_fold(tmp_path / "d.csv", 5)
    _write_fold(tmp_path / "e.csv", 6)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    from edgepad import report
    from edgepad._optional import lazy
    monkeypatch.setattr(report, "mpl", lazy("matplotlib", "plot"))    # fresh handles: not loaded yet
    monkeypatch.setattr(report, "plt", lazy("matplotlib.pyplot", "plot"))
    res = evaluate_files(tmp_path / "d.csv", tmp_path / "e.csv", tmp_path / "r", plots=True, threshold_rule="gap")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Plots skipped" in md and "matplotlib" in md
    assert not (tmp_path / "r" / "roc.png").exists()
    assert res["eval"]["acer"] >= 0


def test_loo_summary_table():
    from edgepad.metrics import summarize_protocols
    from edgepad.report import render_loo_summary
    per = {"LOO_print_flat": {"acer": 0.02, "bpcer20": 0.10}, "LOO_replay": {"acer": 0.04, "bpcer20": 0.30},
           "LOO_rigidmask": {"acer": 0.06, "bpcer20": 0.20}}
    summ = summarize_protocols(per)
    assert summ["bpcer20"]["std"] == pytest.approx(np.std([0.1, 0.3, 0.2]))
    table = render_loo_summary(summ, per)
    assert "4.00 ± 1.63 %" in table and "LOO_replay" in table
