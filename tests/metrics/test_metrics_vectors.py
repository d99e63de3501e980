"""Worked vectors V1/V2 and Clopper–Pearson values of EVALUATION.md §3, and the error rules of §2.2."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgepad.errors import ConfigError, MetricError, ShapeError
from edgepad.metrics import (apcer_constrained_threshold, bpcer_constrained_threshold, clopper_pearson,
                             eer_threshold, fit_threshold, min_hter_threshold, pad_metrics, parse_criterion,
                             summarize_protocols, tpr_at_fpr, aggregate_by_key)

B = [0.9, 0.8, 0.7, 0.6, 0.2]
PRINT = [0.1, 0.3, 0.65]
REPLAY = [0.05, 0.1, 0.2, 0.4]


def v1(extra_species: dict | None = None):
    scores = B + PRINT + REPLAY
    bf = [True] * len(B) + [False] * (len(PRINT) + len(REPLAY))
    sp = [""] * len(B) + ["print"] * len(PRINT) + ["replay"] * len(REPLAY)
    return np.array(scores), np.array(bf), sp


def apcer_of(m, p):
    return m["apcer_per_species"][p]["value"]


def test_v1_at_half():
    m = pad_metrics(*v1(), 0.5)
    assert apcer_of(m, "print") == pytest.approx(1 / 3)
    assert apcer_of(m, "replay") == 0.0
    assert m["apcer"] == pytest.approx(1 / 3) and m["apcer_worst_species"] == "print"
    assert m["bpcer"] == pytest.approx(0.2)
    assert m["acer"] == pytest.approx(4 / 15)
    assert m["apcer_pooled"] == pytest.approx(1 / 7)
    assert m["hter"] == pytest.approx(6 / 35)
    assert m["apcer_per_species"]["print"]["k"] == 1 and m["apcer_per_species"]["print"]["n"] == 3
    assert m["rates"]["bpcer"]["k"] == 1 and m["rates"]["bpcer"]["n"] == 5
    assert m["species"] == ["print", "replay"]


def test_v1_tie_with_attack_counts_against_attack():
    m = pad_metrics(*v1(), 0.65)
    assert apcer_of(m, "print") == pytest.approx(1 / 3)   # the 0.65 attack is accepted
    assert m["bpcer"] == pytest.approx(0.4)


def test_v1_tie_with_bonafide_counts_for_bonafide():
    m = pad_metrics(*v1(), 0.6)
    assert m["bpcer"] == pytest.approx(0.2)                # the 0.6 bona fide is accepted
    assert m["apcer"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("criterion", ["bpcer20", "bpcer10"])
def test_v1_apcer_constrained(criterion):
    tau = fit_threshold(*v1(), criterion)
    assert tau == np.nextafter(0.65, np.inf)
    m = pad_metrics(*v1(), tau)
    assert m["apcer"] == 0.0 and m["bpcer"] == pytest.approx(0.4)


def test_v1_apcer_constrained_one_third():
    tau = apcer_constrained_threshold({"print": np.array(PRINT), "replay": np.array(REPLAY)}, 1 / 3)
    assert tau == 0.65
    assert fit_threshold(*v1(), "bpcer3") == 0.65
    m = pad_metrics(*v1(), tau)
    assert m["apcer"] == pytest.approx(1 / 3) and m["bpcer"] == pytest.approx(0.4)


def test_v1_bpcer_constrained():
    tau = bpcer_constrained_threshold(np.array(B), 0.2)
    assert tau == 0.6
    assert fit_threshold(*v1(), "apcer5") == 0.6
    m = pad_metrics(*v1(), tau)
    assert m["apcer"] == pytest.approx(1 / 3) and m["bpcer"] == pytest.approx(0.2)


def test_v1_apcer100():
    tau = fit_threshold(*v1(), "apcer100")
    assert tau == 0.2
    m = pad_metrics(*v1(), tau)
    assert apcer_of(m, "print") == pytest.approx(2 / 3)
    assert apcer_of(m, "replay") == pytest.approx(1 / 2)
    assert m["apcer"] == pytest.approx(2 / 3) and m["bpcer"] == 0.0


def test_v1_eer():
    eer, tau = eer_threshold(np.array(B), np.array(PRINT + REPLAY))
    assert eer == pytest.approx(6 / 35)
    assert tau == 0.6
    assert fit_threshold(*v1(), "eer") == 0.6
    m = pad_metrics(*v1(), 0.5)  # bob's midpoint threshold gives the same rates
    assert (m["apcer_pooled"] + m["bpcer"]) / 2 == pytest.approx(6 / 35)


def test_min_hter_v1():
    h, tau = min_hter_threshold(np.array(B), np.array(PRINT + REPLAY))
    assert h == pytest.approx(6 / 35)
    assert pad_metrics(*v1(), tau)["hter"] == pytest.approx(h)


def test_empty_species_is_an_error():
    with pytest.raises(MetricError, match="mask"):
        pad_metrics(*v1(), 0.5, pais=["print", "replay", "mask"])


def test_empty_bonafide_is_an_error():
    s, bf, sp = v1()
    with pytest.raises(MetricError, match="bona fide"):
        pad_metrics(s[~bf], bf[~bf], [x for x, b in zip(sp, bf) if not b], 0.5)
    with pytest.raises(MetricError):
        fit_threshold(s[bf], bf[bf], None, "bpcer20")


def test_fit_needs_two_scores_per_species():
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
    bf = np.array([True, True, False, False, False])
    with pytest.raises(MetricError, match="mask"):
        fit_threshold(s, bf, ["", "", "print", "print", "mask"], "bpcer20")
    assert math.isfinite(fit_threshold(s, bf, ["", "", "print", "print", "print"], "bpcer20"))


def test_v2():
    m = pad_metrics([0.5, 0.9, 0.5, 0.1], [True, True, False, False], ["", "", "x", "x"], 0.5)
    assert apcer_of(m, "x") == 0.5
    assert m["bpcer"] == 0.0


@pytest.mark.parametrize("k,n,lo,hi", [(0, 20, 0.0, 0.1684), (1, 3, 0.0084, 0.9057), (1, 5, 0.0051, 0.7164),
                                       (0, 150, 0.0, 0.0243), (0, 300, 0.0, 0.0122)])
def test_clopper_pearson_table(k, n, lo, hi):
    l, h = clopper_pearson(k, n)
    assert l == pytest.approx(lo, abs=5e-5)
    assert h == pytest.approx(hi, abs=5e-5)


def test_clopper_pearson_edges_and_scipy():
    assert clopper_pearson(5, 5)[1] == 1.0
    assert clopper_pearson(0, 7)[0] == 0.0
    with pytest.raises(MetricError):
        clopper_pearson(0, 0)
    with pytest.raises(MetricError):
        clopper_pearson(4, 3)
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(1, 10), (3, 17), (50, 120), (999, 1000), (7, 5000)]:
        l, h = clopper_pearson(k, n, 0.05)
        assert l == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1), rel=1e-9, abs=1e-12)
        assert h == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k), rel=1e-9, abs=1e-12)


def test_nan_is_non_response_not_an_error():
    s, bf, sp = v1()
    s2 = np.append(s, [np.nan, np.nan, np.nan])
    bf2 = np.append(bf, [True, False, False])
    sp2 = sp + ["", "print", "replay"]
    m = pad_metrics(s2, bf2, sp2, 0.5)
    ref = pad_metrics(s, bf, sp, 0.5)
    for key in ("apcer", "bpcer", "acer", "hter", "apcer_pooled"):
        assert m[key] == ref[key]
    assert m["fta"]["bonafide"]["k"] == 1 and m["fta"]["bonafide"]["n"] == 6
    assert m["fta"]["species"]["print"]["k"] == 1 and m["fta"]["species"]["print"]["n"] == 4
    assert m["fta"]["overall"]["k"] == 3 and m["fta"]["overall"]["n"] == 15
    # system level: BPCER_sys = FTA_B + (1 - FTA_B) BPCER; APCER_sys,p = (1 - FTA_p) APCER_p
    assert m["system"]["bpcer"] == pytest.approx(1 / 6 + (5 / 6) * 0.2)
    assert m["system"]["apcer_per_species"]["print"] == pytest.approx(0.75 * (1 / 3))
    assert fit_threshold(s2, bf2, sp2, "bpcer20") == fit_threshold(s, bf, sp, "bpcer20")


def test_criteria_parsing():
    assert parse_criterion("BPCER20").target == 0.05
    assert parse_criterion("apcer100").kind == "apcer"
    assert parse_criterion("min_hter").name == "min-hter"
    with pytest.raises(ConfigError) as exc:
        parse_criterion("bpcr20")
    assert "bpcer20" in exc.value.suggestions


def test_shapes_and_species_checks():
    with pytest.raises(ShapeError):
        pad_metrics([0.1, 0.2], [True], None, 0.5)
    with pytest.raises(MetricError, match="species"):
        pad_metrics([0.9, 0.8, 0.1], [True, True, False], ["", "", ""], 0.5)


def test_tpr_at_fpr_legacy():
    tpr, tau = tpr_at_fpr(*v1()[:2], 1 / 7)
    assert tau == 0.65 and tpr == pytest.approx(0.6)


def test_aggregation_and_loo_summary():
    keys, s = aggregate_by_key(["a", "a", "b", "c", "c"], [0.2, 0.4, np.nan, 1.0, np.nan])
    assert keys == ["a", "b", "c"]
    assert s[0] == pytest.approx(0.3) and np.isnan(s[1]) and s[2] == 1.0
    summ = summarize_protocols({"LOO_a": {"acer": 0.1, "bpcer20": 0.2}, "LOO_b": {"acer": 0.3, "bpcer20": 0.4}})
    assert summ["acer"]["mean"] == pytest.approx(0.2)
    assert summ["acer"]["std"] == pytest.approx(0.1)       # population std (ddof = 0), not 0.1414
    with pytest.raises(MetricError):
        summarize_protocols({"LOO_a": {"acer": 0.1}}, keys=("acer", "bpcer20"))
