"""Threshold placement rules (metrics.place_threshold): off the extreme dev score, dev decisions kept."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgepad import metrics as M
from edgepad.errors import ConfigError, MetricError


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _separated(seed: int = 0):
    rng = np.random.default_rng(seed)
    bona = _sigmoid(rng.uniform(4.0, 9.0, 40))          # logits 4..9
    att = _sigmoid(rng.uniform(-9.0, -2.0, 80))         # logits -9..-2
    s = np.concatenate([bona, att])
    bf = np.r_[np.ones(40, bool), np.zeros(80, bool)]
    sp = [""] * 40 + ["print"] * 40 + ["replay"] * 40
    return s, bf, sp


@pytest.mark.parametrize("criterion", ["eer", "bpcer20", "apcer100", "min-hter"])
def test_separated_dev_goes_to_the_middle_of_the_gap(criterion):
    s, bf, sp = _separated()
    lo, hi = s[~bf].max(), s[bf].min()
    edge = M.place_threshold(s, bf, sp, criterion, "edge")
    assert edge.threshold == M.fit_threshold(s, bf, sp, criterion) and edge.placed == "criterion"
    if criterion == "eer":           # the problem: EER puts τ on the lowest bona fide dev score
        assert edge.threshold == hi
    gap = M.place_threshold(s, bf, sp, criterion, "gap")
    assert gap.placed == "separation" and gap.interval == (lo, hi)
    assert gap.threshold == pytest.approx((lo + hi) / 2)
    lg = M.place_threshold(s, bf, sp, criterion, "gap_logit")
    z = (math.log(lo / (1 - lo)) + math.log(hi / (1 - hi))) / 2
    assert lg.threshold == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    for fit in (gap, lg):            # strictly inside the gap: 0 dev errors, a margin to both classes
        assert lo < fit.threshold < hi
        m = M.pad_metrics(s, bf, sp, fit.threshold)
        assert m["apcer"] == 0 and m["bpcer"] == 0
    # a uniform shift of the bona fide logits by -1 (less than half the logit gap) costs nothing with gap_logit
    shifted = np.where(bf, _sigmoid(np.log(s / (1 - s)) - 1.0), s)
    assert M.pad_metrics(shifted, bf, sp, lg.threshold)["bpcer"] == 0
    if criterion == "eer":
        assert M.pad_metrics(shifted, bf, sp, edge.threshold)["bpcer"] >= 0.1   # ~1/5 of U(4, 9) is below 5


def test_overlapping_dev_keeps_the_criterions_decisions():
    rng = np.random.default_rng(3)
    bona = _sigmoid(rng.normal(2.0, 1.5, 200))
    att = _sigmoid(rng.normal(-2.0, 1.5, 300))
    s = np.concatenate([bona, att])
    bf = np.r_[np.ones(200, bool), np.zeros(300, bool)]
    sp = [""] * 200 + ["a"] * 150 + ["b"] * 150
    for crit in ("eer", "bpcer20", "apcer20"):
        edge = M.place_threshold(s, bf, sp, crit, "edge")
        for rule in ("gap", "gap_logit"):
            fit = M.place_threshold(s, bf, sp, crit, rule)
            assert fit.placed == "interval" and fit.criterion_threshold == edge.threshold
            lo, hi = fit.interval
            assert lo < fit.threshold <= hi and hi == edge.threshold
            assert not np.any((s > lo) & (s < hi))            # no dev score strictly inside: same decisions
            assert fit.threshold not in set(s.tolist())        # not on a dev score
            a, b = M.pad_metrics(s, bf, sp, fit.threshold), M.pad_metrics(s, bf, sp, edge.threshold)
            assert (a["apcer"], a["bpcer"]) == (b["apcer"], b["bpcer"])


def test_no_interval_keeps_tau_and_bad_inputs_raise():
    s = np.array([.9, .9, .9, .9, .1, .1, .1, .9])        # an attack tied with every bona fide
    bf = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    fit = M.place_threshold(s, bf, None, "bpcer20", "gap_logit")    # τ above every score: nothing to move
    assert fit.placed == "criterion" and fit.threshold == M.fit_threshold(s, bf, None, "bpcer20") > 0.9
    with pytest.raises(ConfigError):
        M.place_threshold(s, bf, None, "eer", "middle")
    raw = np.array([5.0, 6.0, 7.0, -3.0, -2.0, -1.0])
    rb = np.array([1, 1, 1, 0, 0, 0], bool)
    assert M.place_threshold(raw, rb, None, "eer", "gap").threshold == 2.0
    with pytest.raises(MetricError):
        M.place_threshold(raw, rb, None, "eer", "gap_logit")


def test_saturated_scores_stay_inside_the_gap():
    s = np.array([1.0, 1.0, 0.99999999, 1e-9, 0.0, 0.3])
    bf = np.array([1, 1, 1, 0, 0, 0], bool)
    fit = M.place_threshold(s, bf, None, "eer", "gap_logit")
    assert fit.placed == "separation" and 0.3 < fit.threshold < 0.99999999
    assert M.pad_metrics(s, bf, None, fit.threshold)["acer"] == 0
