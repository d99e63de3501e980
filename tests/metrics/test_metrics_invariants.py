"""Threshold invariants on random score sets with heavy ties, against brute-force definitions."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.metrics import (apcer_constrained_threshold, bpcer_constrained_threshold, eer_threshold,
                             fit_threshold, min_hter_threshold, pad_metrics)


def random_case(rng, ties: bool):
    n_b = int(rng.integers(2, 40))
    species = {f"p{i}": int(rng.integers(2, 30)) for i in range(int(rng.integers(1, 4)))}
    draw = (lambda n, mu: rng.integers(0, 12, n) / 10 + mu) if ties else (lambda n, mu: rng.normal(mu, 1, n))
    b = draw(n_b, 0.4 if ties else 1.0)
    attacks = {p: draw(n, 0.0) for p, n in species.items()}
    scores = np.concatenate([b, *attacks.values()])
    bf = np.concatenate([np.ones(n_b, bool), *[np.zeros(len(a), bool) for a in attacks.values()]])
    sp = [""] * n_b + [p for p, a in attacks.items() for _ in a]
    return b, attacks, scores, bf, sp


def brute_apcer_threshold(attacks, x):
    """max over species of the smallest own candidate (a score of the species or nextafter(max)) with
    APCER_p <= x: the definition of τ_A by brute force, without a group walk."""
    taus = []
    for a in attacks.values():
        cands = np.append(np.unique(a), np.nextafter(a.max(), np.inf))
        taus.append(min(t for t in cands if (a >= t).mean() <= x))
    return max(taus)


@pytest.mark.parametrize("seed", range(40))
def test_apcer_constrained_invariant(seed):
    rng = np.random.default_rng(seed)
    b, attacks, scores, bf, sp = random_case(rng, ties=seed % 2 == 0)
    for x in (0.0, 0.01, 0.05, 0.1, 1 / 3, 0.5):
        tau = apcer_constrained_threshold(attacks, x)
        for p, a in attacks.items():
            assert (a >= tau).mean() <= x + 1e-15, (p, x)
        # the threshold is as low as the rule allows: one step lower violates x for some species
        assert tau == brute_apcer_threshold(attacks, x)
        m = pad_metrics(scores, bf, sp, tau)
        assert m["apcer"] <= x + 1e-15


@pytest.mark.parametrize("seed", range(40))
def test_bpcer_constrained_invariant(seed):
    rng = np.random.default_rng(1000 + seed)
    b, attacks, scores, bf, sp = random_case(rng, ties=seed % 2 == 0)
    for x in (0.0, 0.01, 0.05, 0.1, 0.2, 0.5):
        tau = bpcer_constrained_threshold(b, x)
        assert (b < tau).mean() <= x + 1e-15
        assert tau in b
        # conservative walk: every bona fide group at or below τ passes (last index)/n <= x,
        # except τ = min(b), which always rejects nothing
        if tau != b.min():
            assert (np.flatnonzero(np.sort(b) == tau).max()) / b.size <= x
    for n in (1, 2, 5, 10, 20, 100):
        assert fit_threshold(scores, bf, sp, f"apcer{n}") == bpcer_constrained_threshold(b, 1 / n)
        assert fit_threshold(scores, bf, sp, f"bpcer{n}") == apcer_constrained_threshold(attacks, 1 / n)


def test_lowest_bonafide_ties_keep_invariant():
    b = np.array([0.1, 0.1, 0.1, 0.5, 0.9])
    tau = bpcer_constrained_threshold(b, 0.01)
    assert tau == 0.1 and (b < tau).mean() == 0.0


@pytest.mark.parametrize("seed", range(30))
def test_eer_and_min_hter_are_optimal_over_all_thresholds(seed):
    rng = np.random.default_rng(2000 + seed)
    b, attacks, *_ = random_case(rng, ties=seed % 2 == 0)
    a = np.concatenate(list(attacks.values()))
    grid = np.concatenate([np.unique(np.concatenate([a, b])), [np.inf, -np.inf]])
    grid = np.concatenate([grid, (grid[:-2][1:] + grid[:-2][:-1]) / 2])   # midpoints as bob uses
    ap = np.array([(a >= t).mean() for t in grid])
    bp = np.array([(b < t).mean() for t in grid])
    eer, t_eer = eer_threshold(b, a)
    d_best = np.abs(ap - bp).min()
    assert abs((a >= t_eer).mean() - (b < t_eer).mean()) == pytest.approx(d_best, abs=1e-12)
    assert eer == pytest.approx(((a >= t_eer).mean() + (b < t_eer).mean()) / 2)
    # tie rule: no lower candidate (distinct score) reaches the same |APCER - BPCER|
    cands = np.unique(np.concatenate([a, b]))
    lower = cands[cands < t_eer]
    assert all(abs((a >= t).mean() - (b < t).mean()) > d_best + 1e-12 for t in lower)
    h, t_h = min_hter_threshold(b, a)
    assert h == pytest.approx(((ap + bp) / 2).min(), abs=1e-12)
