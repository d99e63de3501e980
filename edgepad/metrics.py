"""ISO/IEC 30107-3 presentation-attack-detection metrics and threshold fitting (numpy only).

Conventions (``docs/EVALUATION.md``): scores are "higher = more bona fide"; a sample is accepted as bona fide iff
``score >= threshold`` (ties count against attacks and for bona fide); ``NaN`` marks a non-response
(failure to acquire), which the PAD-subsystem rates exclude and :func:`pad_metrics` reports separately.

Rates:

* ``APCER_p(τ) = #{a in A_p : a >= τ} / #A_p`` per PAI species p; ``APCER = max_p APCER_p`` (never the mean);
* ``APCER_pooled(τ) = #{a in A : a >= τ} / #A`` (legacy); ``BPCER(τ) = #{b in B : b < τ} / #B``;
* ``ACER = (APCER + BPCER) / 2``; ``HTER = (APCER_pooled + BPCER) / 2``.

Thresholds are fitted on dev with a named criterion (:func:`fit_threshold`: ``bpcerN`` = the APCER-constrained
threshold ``τ_A(1/N)``, ``apcerN`` = the BPCER-constrained ``τ_B(1/N)``, ``eer``, ``min-hter``) and applied
unchanged to eval. Every rate carries ``k/n`` and a two-sided Clopper–Pearson interval (:func:`clopper_pearson`).

Example:
    >>> import numpy as np
    >>> s = np.array([.9, .8, .7, .6, .2, .1, .3, .65, .05, .1, .2, .4])
    >>> bf = np.array([True] * 5 + [False] * 7)
    >>> sp = [""] * 5 + ["print"] * 3 + ["replay"] * 4
    >>> m = pad_metrics(s, bf, sp, 0.5)
    >>> round(m["acer"], 4), m["bpcer"], m["apcer_worst_species"]
    (0.2667, 0.2, 'print')
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from edgepad.config import suggest
from edgepad.errors import ConfigError, MetricError, ShapeError

log = logging.getLogger(__name__)

BONAFIDE = "bonafide"
#: N values bob's ``pad metrics`` lists for ``bpcerN`` / ``apcerN`` (edgepad accepts any integer N >= 1).
STANDARD_N = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: Minimum dev scores per class and species for fitting a threshold (bob raises below 2 as well).
MIN_FIT_COUNT = 2
#: Below this many dev scores per class/species :func:`fit_threshold` logs a warning.
WARN_FIT_COUNT = 20

_CRITERION_RE = re.compile(r"^(bpcer|apcer)(\d+)$")


# ----------------------------------------------------------------------------------------------- criteria
@dataclass(frozen=True)
class Criterion:
    """A named threshold criterion.

    Attributes:
        name: canonical name (``"bpcer20"``, ``"apcer100"``, ``"eer"``, ``"min-hter"``).
        kind: ``"bpcer"`` (APCER-constrained: BPCER reported at APCER <= 1/N), ``"apcer"`` (BPCER-constrained),
            ``"eer"`` or ``"min-hter"``.
        n: N of ``bpcerN``/``apcerN``; None otherwise.
    """

    name: str
    kind: str
    n: int | None = None

    @property
    def target(self) -> float | None:
        """The constrained error rate ``1/N`` (None for eer / min-hter)."""
        return None if self.n is None else 1.0 / self.n


def parse_criterion(name: str | Criterion) -> Criterion:
    """Parse ``"bpcer20"``, ``"APCER100"``, ``"eer"``, ``"min-hter"`` (also ``min_hter``).

    Raises:
        ConfigError: unknown criterion (with suggestions).
    """
    if isinstance(name, Criterion):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key in ("eer", "min-hter"):
        return Criterion(key, key)
    m = _CRITERION_RE.match(key)
    if m and int(m.group(2)) >= 1:
        return Criterion(f"{m.group(1)}{int(m.group(2))}", m.group(1), int(m.group(2)))
    known = ["eer", "min-hter"] + [f"{k}{n}" for k in ("bpcer", "apcer") for n in STANDARD_N]
    raise ConfigError(f"unknown threshold criterion {name!r}; use bpcerN (APCER <= 1/N on dev), apcerN "
                      f"(BPCER <= 1/N on dev), eer or min-hter", key="criterion",
                      suggestions=suggest(key, known))


# ----------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class SplitScores:
    """Scores of one fold split by class, with non-responses (NaN) counted apart.

    Attributes:
        bonafide: valid bona fide scores, float64 (n_B,).
        attacks: species -> valid attack scores, float64 (n_p,); species sorted by name.
        fta_bonafide: number of bona fide non-responses; ``fta_attacks``: species -> number of non-responses.
    """

    bonafide: np.ndarray
    attacks: Mapping[str, np.ndarray]
    fta_bonafide: int
    fta_attacks: Mapping[str, int]

    @property
    def pooled_attacks(self) -> np.ndarray:
        return np.concatenate([self.attacks[p] for p in self.attacks]) if self.attacks else np.zeros(0)


def split_scores(scores: Sequence[float] | np.ndarray, is_bonafide: Sequence[bool] | np.ndarray,
                 species: Sequence[str] | np.ndarray | None = None,
                 pais: Iterable[str] | None = None) -> SplitScores:
    """Split a flat score list into bona fide and per-species attack scores.

    Args:
        scores: (N,) scores, higher = more bona fide; NaN = non-response.
        is_bonafide: (N,) booleans.
        species: (N,) PAI species names for attacks (ignored for bona fide); None = one species ``"attack"``.
        pais: the species that must be present; each must have at least one sample (default: those present).

    Raises:
        ShapeError: lengths differ.
        MetricError: an attack without a species name, or a species in ``pais`` with no sample.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    bf = np.asarray(is_bonafide).reshape(-1)
    if bf.dtype != np.bool_:
        if bf.dtype.kind not in "iub" or not np.isin(bf, (0, 1)).all():
            raise MetricError("is_bonafide must hold booleans (True = bona fide)")
        bf = bf.astype(bool)
    if bf.shape != s.shape:
        raise ShapeError("is_bonafide", s.shape, bf.shape)
    if species is None:
        sp = np.where(bf, "", "attack").astype(object)
    else:
        sp = np.asarray(species, dtype=object).reshape(-1)
        if sp.shape != s.shape:
            raise ShapeError("species", s.shape, sp.shape)
    valid = ~np.isnan(s)
    b_all = s[bf]
    attacks: dict[str, np.ndarray] = {}
    fta_attacks: dict[str, int] = {}
    att_species = sp[~bf]
    bad = [x for x in att_species if not isinstance(x, str) or not x or x == BONAFIDE]
    if bad:
        raise MetricError(f"{len(bad)} attack sample(s) have no PAI species name (got {bad[0]!r}); name the species "
                          f"(attack_type column) or pass species=None to pool all attacks as 'attack'")
    names = sorted(set(att_species.tolist()))
    if pais is not None:
        wanted = sorted(set(pais))
        missing = [p for p in wanted if p not in names]
        if missing:
            raise MetricError(f"PAI species {missing} have no sample in this fold; an empty species is an error "
                              f"(docs/EVALUATION.md, Conventions): remove it from the protocol's species list")
        extra = [p for p in names if p not in wanted]
        if extra:
            raise MetricError(f"species {extra} are present but not in the expected species list {wanted}")
    att_mask = ~bf
    for p in names:
        m = att_mask & (sp == p)
        attacks[p] = s[m & valid]
        fta_attacks[p] = int((m & ~valid).sum())
    return SplitScores(bonafide=b_all[~np.isnan(b_all)], attacks=attacks,
                       fta_bonafide=int(np.isnan(b_all).sum()), fta_attacks=fta_attacks)


def _require(split: SplitScores, minimum: int, what: str) -> None:
    if split.bonafide.size < minimum:
        raise MetricError(f"{what}: {split.bonafide.size} valid bona fide score(s); at least {minimum} needed "
                          f"(a class with no samples is an error, docs/EVALUATION.md)")
    if not split.attacks:
        raise MetricError(f"{what}: no attack samples; at least one PAI species is needed")
    for p, a in split.attacks.items():
        if a.size < minimum:
            raise MetricError(f"{what}: species {p!r} has {a.size} valid score(s) "
                              f"({split.fta_attacks.get(p, 0)} non-responses); at least {minimum} needed")


# ----------------------------------------------------------------------------------------------- rates
def apcer_rate(attacks: np.ndarray, threshold: float) -> tuple[int, int]:
    """``(k, n)``: attacks with ``score >= threshold`` (accepted = error) out of n valid attack scores."""
    a = np.asarray(attacks, dtype=np.float64)
    return int((a >= threshold).sum()), int(a.size)


def bpcer_rate(bonafide: np.ndarray, threshold: float) -> tuple[int, int]:
    """``(k, n)``: bona fide with ``score < threshold`` (rejected = error) out of n valid bona fide scores."""
    b = np.asarray(bonafide, dtype=np.float64)
    return int((b < threshold).sum()), int(b.size)


def _rate(k: int, n: int, alpha: float) -> dict:
    lo, hi = clopper_pearson(k, n, alpha)
    return {"k": int(k), "n": int(n), "value": k / n, "ci": [lo, hi]}


# ----------------------------------------------------------------------------------------------- Clopper–Pearson
def _log_binom_pmf(n: int, p: float) -> np.ndarray:
    """log P(Bin(n, p) = i) for i = 0..n (0 < p < 1)."""
    i = np.arange(n + 1, dtype=np.float64)
    # log C(n, i) by cumulative sums of log((n - i + 1) / i); exact to float rounding
    steps = np.log(np.arange(n, 0, -1, dtype=np.float64)) - np.log(np.arange(1, n + 1, dtype=np.float64))
    log_c = np.concatenate([[0.0], np.cumsum(steps)])
    return log_c + i * math.log(p) + (n - i) * math.log1p(-p)


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) >= k)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp = _log_binom_pmf(n, p)[k:]
    mx = lp.max()
    return float(min(1.0, math.exp(mx) * np.exp(lp - mx).sum()))


def _solve_increasing(f, target: float) -> float:
    """x in [0, 1] with f(x) = target for an increasing f, by bisection (to ~1e-15)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided exact (Clopper–Pearson) confidence interval of a binomial proportion k/n.

    ``lower = BetaInv(α/2; k, n-k+1)`` (0 if k = 0), ``upper = BetaInv(1-α/2; k+1, n-k)`` (1 if k = n), computed
    from the identity ``I_x(k, n-k+1) = P(Bin(n, x) >= k)`` without scipy.

    Args:
        k: errors, 0 <= k <= n.
        n: trials, n >= 1.
        alpha: 1 - confidence level.

    Raises:
        MetricError: n < 1 or k outside [0, n].

    Example:
        >>> [round(v, 4) for v in clopper_pearson(0, 20)]
        [0.0, 0.1684]
    """
    k, n = int(k), int(n)
    if n < 1:
        raise MetricError("Clopper-Pearson interval of an empty set (n = 0) is undefined")
    if not 0 <= k <= n:
        raise MetricError(f"k = {k} errors out of n = {n} trials is impossible")
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
    half = alpha / 2.0
    if k == 0:
        lower = 0.0
    else:  # P(Bin(n, x) >= k) increases with x; lower bound where it equals alpha/2
        lower = _solve_increasing(lambda x: _binom_sf(k, n, x), half)
    if k == n:
        upper = 1.0
    elif k == 0:
        upper = 1.0 - half ** (1.0 / n)
    else:  # upper: P(Bin(n, x) <= k) = alpha/2, i.e. P(Bin(n, x) >= k+1) = 1 - alpha/2
        upper = _solve_increasing(lambda x: _binom_sf(k + 1, n, x), 1.0 - half)
    return float(lower), float(upper)


# ----------------------------------------------------------------------------------------------- thresholds
def apcer_threshold(attacks: np.ndarray, x: float) -> float:
    """τ_p(x) for one species: the lowest threshold reached by walking tied groups downwards with APCER_p <= x.

    Start at ``nextafter(max A_p, +inf)`` (APCER_p = 0); a group value v becomes τ while
    ``#{a >= v} / #A_p <= x``; stop at the first group that violates it (bob ``far_threshold``).
    Invariant: ``APCER_p(τ) <= x``.
    """
    a = np.sort(np.asarray(attacks, dtype=np.float64))[::-1]
    if a.size == 0:
        raise MetricError("APCER-constrained threshold of an empty species")
    vals, first = np.unique(-a, return_index=True)      # descending values, first index of each group
    vals = -vals
    cum = np.append(first[1:], a.size)                   # #{a >= v} for each group value v
    ok = cum / a.size <= x
    tau = float(np.nextafter(a[0], np.inf))
    if ok[0]:
        last = int(np.argmin(ok)) - 1 if not ok.all() else ok.size - 1
        tau = float(vals[last])
    return tau


def apcer_constrained_threshold(attacks: Mapping[str, np.ndarray], x: float) -> float:
    """τ_A(x) = max over species of :func:`apcer_threshold` (bob ``apcer_threshold``); APCER_p <= x for all p."""
    if not attacks:
        raise MetricError("no attack species to fit an APCER-constrained threshold on")
    return max(apcer_threshold(a, x) for a in attacks.values())


def bpcer_constrained_threshold(bonafide: np.ndarray, x: float) -> float:
    """τ_B(x): walk tied groups of bona fide scores upwards; v becomes τ while (last index of v)/#B <= x.

    The last index (0-based) counts every bona fide tied at v as if rejected, so the rule is conservative with
    ties. When even the lowest group fails the rule (several bona fide tie at the minimum and x is small),
    τ = min B, which rejects nothing; bob's ``frr_threshold`` returns a value just above min B there and so
    rejects the tied scores (dev BPCER > x). Invariant: ``BPCER_dev(τ) <= x``.
    """
    b = np.sort(np.asarray(bonafide, dtype=np.float64))
    if b.size == 0:
        raise MetricError("BPCER-constrained threshold without bona fide scores")
    vals, first = np.unique(b, return_index=True)
    last_idx = np.append(first[1:], b.size) - 1
    ok = last_idx / b.size <= x
    tau = float(b[0])
    if ok[0]:
        last = int(np.argmin(ok)) - 1 if not ok.all() else ok.size - 1
        tau = float(vals[last])
    return tau


def error_curve(bonafide: np.ndarray, attacks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled APCER and BPCER at every candidate threshold (distinct scores of both classes, then +inf).

    Returns:
        ``(thresholds, apcer_pooled, bpcer)``, each (T,), thresholds ascending.
    """
    b = np.sort(np.asarray(bonafide, dtype=np.float64))
    a = np.sort(np.asarray(attacks, dtype=np.float64))
    thr = np.append(np.unique(np.concatenate([a, b])), np.inf)
    apcer = (a.size - np.searchsorted(a, thr, side="left")) / a.size   # #{a >= τ}
    bpcer = np.searchsorted(b, thr, side="left") / b.size               # #{b < τ}
    return thr, apcer, bpcer


def eer_threshold(bonafide: np.ndarray, attacks: np.ndarray) -> tuple[float, float]:
    """EER on pooled attacks: ``(eer, τ*)``, τ* = argmin |APCER_pooled - BPCER| over the candidate thresholds.

    Ties between equally good thresholds go to the **lowest** threshold; EER = (APCER_pooled + BPCER)/2 there.
    """
    thr, apcer, bpcer = error_curve(bonafide, attacks)
    d = np.abs(apcer - bpcer)
    i = int(np.flatnonzero(d == d.min())[0])
    return float((apcer[i] + bpcer[i]) / 2), float(thr[i])


def min_hter_threshold(bonafide: np.ndarray, attacks: np.ndarray) -> tuple[float, float]:
    """``(min HTER, τ)`` minimising (APCER_pooled + BPCER)/2; ties go to the lowest threshold."""
    thr, apcer, bpcer = error_curve(bonafide, attacks)
    h = (apcer + bpcer) / 2
    i = int(np.flatnonzero(h == h.min())[0])
    return float(h[i]), float(thr[i])


def fit_threshold(scores: Sequence[float] | np.ndarray, is_bonafide: Sequence[bool] | np.ndarray,
                  species: Sequence[str] | np.ndarray | None, criterion: str | Criterion, *,
                  min_count: int = MIN_FIT_COUNT, warn_below: int = WARN_FIT_COUNT) -> float:
    """Fit a decision threshold on dev scores with a named criterion (docs/EVALUATION.md, Threshold criteria).

    Args:
        scores: (N,) dev scores (higher = bona fide; NaN = non-response, ignored).
        is_bonafide: (N,) booleans.
        species: (N,) species names of attacks (None = all attacks one species).
        criterion: ``bpcerN`` (τ_A(1/N): worst-species APCER <= 1/N), ``apcerN`` (τ_B(1/N): BPCER <= 1/N),
            ``eer`` or ``min-hter`` (pooled attacks).
        min_count: fewer valid scores than this in a class or species raises.
        warn_below: fewer than this logs a warning (the operating point is then coarse).

    Returns:
        τ; apply as ``bona fide iff score >= τ``. May be ``nextafter(max, +inf)`` or ``+inf``.

    Raises:
        MetricError: too few scores in a class or species.
        ConfigError: unknown criterion.

    Example:
        >>> fit_threshold([.9, .8, .7, .6, .2, .1, .3, .65], [1, 1, 1, 1, 1, 0, 0, 0], None, "apcer5")
        0.6
    """
    crit = parse_criterion(criterion)
    split = split_scores(scores, is_bonafide, species)
    _require(split, min_count, f"fitting a {crit.name} threshold")
    small = [p for p, a in split.attacks.items() if a.size < warn_below]
    if split.bonafide.size < warn_below or small:
        log.warning("fitting %s on few dev scores (bona fide %d, species %s): the operating point is coarse",
                    crit.name, split.bonafide.size, {p: split.attacks[p].size for p in split.attacks})
    if crit.kind == "bpcer":
        return apcer_constrained_threshold(split.attacks, crit.target)
    if crit.kind == "apcer":
        return bpcer_constrained_threshold(split.bonafide, crit.target)
    if crit.kind == "eer":
        return eer_threshold(split.bonafide, split.pooled_attacks)[1]
    return min_hter_threshold(split.bonafide, split.pooled_attacks)[1]


# ----------------------------------------------------------------------------------------------- placement
#: threshold placement rules (:func:`place_threshold`)
THRESHOLD_RULES = ("edge", "gap", "gap_logit")
#: the one default rule: export (manifest ``training.threshold_rule``), ``edgepad evaluate`` / ``metrics`` and
#: ``edgepad benchmark`` all place τ with it unless told otherwise (tests/evaluation/test_threshold_rule_default.py)
DEFAULT_THRESHOLD_RULE = "gap_logit"
#: score clip for the logit-space midpoint (float32 σ saturates near 1 − 6e-8)
_LOGIT_EPS = 1e-7


@dataclass(frozen=True)
class ThresholdFit:
    """A dev threshold and how it was placed.

    Attributes:
        threshold: τ (bona fide iff ``score >= τ``).
        criterion: the criterion name (``bpcer20``, ``eer``, ...).
        rule: the placement rule asked for (``edge`` | ``gap`` | ``gap_logit``).
        placed: what was done: ``criterion`` (τ of the criterion as is), ``separation`` (dev separates
            completely: τ in the gap between the highest attack and the lowest bona fide score) or ``interval``
            (τ moved inside the interval of thresholds giving the criterion's dev decisions).
        interval: ``(lo, hi)`` the dev scores τ was placed between (None for ``criterion``).
        criterion_threshold: τ of the criterion before placement.
    """

    threshold: float
    criterion: str
    rule: str
    placed: str
    interval: tuple[float, float] | None
    criterion_threshold: float

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "criterion": self.criterion, "rule": self.rule, "placed": self.placed,
                "interval": None if self.interval is None else list(self.interval),
                "criterion_threshold": self.criterion_threshold}


def _midpoint(lo: float, hi: float, rule: str) -> float:
    """Midpoint of ``(lo, hi]``: in score space (``gap``) or in logit space (``gap_logit``, scores in [0, 1])."""
    mid = 0.5 * (lo + hi)
    if rule == "gap_logit":
        if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
            raise MetricError(f"threshold rule gap_logit needs scores in [0, 1] (probabilities); got dev scores "
                              f"{lo:g}, {hi:g}: use rule gap or edge (--threshold-rule gap)")
        a, b = (min(max(x, _LOGIT_EPS), 1.0 - _LOGIT_EPS) for x in (lo, hi))
        z = 0.5 * (math.log(a / (1.0 - a)) + math.log(b / (1.0 - b)))
        mid = 1.0 / (1.0 + math.exp(-z))
    if not lo < mid <= hi:      # clipping or float spacing: fall back to the score midpoint, then to hi
        mid = 0.5 * (lo + hi)
        if not lo < mid <= hi:
            mid = hi
    return float(mid)


def place_threshold(scores: Sequence[float] | np.ndarray, is_bonafide: Sequence[bool] | np.ndarray,
                    species: Sequence[str] | np.ndarray | None, criterion: str | Criterion,
                    rule: str = DEFAULT_THRESHOLD_RULE, **fit_kw) -> ThresholdFit:
    """Fit a dev threshold with ``criterion`` (:func:`fit_threshold`) and place it by ``rule`` (docs/MODELS.md,
    "Operating points").

    A criterion's τ sits **on** a dev score (EER on a completely separated dev set: the lowest bona fide score),
    so any shift of the scores on other data turns straight into BPCER or APCER. The rules:

    * ``edge``: τ of the criterion unchanged (legacy).
    * ``gap`` / ``gap_logit``: when dev separates completely (max attack < min bona fide), τ = the midpoint of
      that gap — every criterion is met there with 0 dev errors; otherwise τ = the midpoint of the interval
      ``(lo, hi]`` of thresholds that give the criterion's own dev decisions (``lo`` = highest dev score below
      the criterion's τ, ``hi`` = lowest dev score at or above it), so the dev error rates are those of the
      criterion. ``gap`` takes the midpoint in score space, ``gap_logit`` in logit space (σ scores: the middle of
      0.02 and 0.9999 is σ((−3.9 + 9.2)/2) ≈ 0.93, not 0.51).

    When τ is above every dev score or at/below the lowest one, there is no interval and τ stays.

    Raises:
        ConfigError: unknown rule or criterion. MetricError: too few scores; ``gap_logit`` with scores outside
            [0, 1].

    Example:
        >>> place_threshold([.9, .95, .99, .1, .2, .3], [1, 1, 1, 0, 0, 0], None, "eer", "gap").threshold
        0.6
    """
    if rule not in THRESHOLD_RULES:
        raise ConfigError(f"unknown threshold rule {rule!r}; known: {list(THRESHOLD_RULES)}", key="threshold_rule",
                          suggestions=suggest(str(rule), THRESHOLD_RULES))
    crit = parse_criterion(criterion)
    tau = float(fit_threshold(scores, is_bonafide, species, crit, **fit_kw))
    if rule == "edge":
        return ThresholdFit(tau, crit.name, rule, "criterion", None, tau)
    split = split_scores(scores, is_bonafide, species)
    att = split.pooled_attacks
    if att.size and split.bonafide.size and att.max() < split.bonafide.min():
        lo, hi = float(att.max()), float(split.bonafide.min())
        return ThresholdFit(_midpoint(lo, hi, rule), crit.name, rule, "separation", (lo, hi), tau)
    allv = np.concatenate([split.bonafide, att])
    below, above = allv[allv < tau], allv[allv >= tau]
    if below.size == 0 or above.size == 0:
        return ThresholdFit(tau, crit.name, rule, "criterion", None, tau)
    lo, hi = float(below.max()), float(above.min())
    return ThresholdFit(_midpoint(lo, hi, rule), crit.name, rule, "interval", (lo, hi), tau)


# ----------------------------------------------------------------------------------------------- metrics
def pad_metrics(scores: Sequence[float] | np.ndarray, is_bonafide: Sequence[bool] | np.ndarray,
                species: Sequence[str] | np.ndarray | None, threshold: float, *,
                pais: Iterable[str] | None = None, alpha: float = 0.05) -> dict:
    """ISO/IEC 30107-3 error rates at a fixed threshold (fitted elsewhere, e.g. on dev).

    Args:
        scores: (N,) scores (NaN = non-response: excluded from the rates, counted in ``fta``).
        is_bonafide: (N,) booleans.
        species: (N,) species of attacks (None = one species ``"attack"``).
        threshold: τ; bona fide iff ``score >= τ``.
        pais: species that must be present (an absent one raises).
        alpha: 1 - confidence level of the Clopper–Pearson intervals.

    Returns:
        JSON-ready dict: ``threshold``; ``species`` (sorted); ``apcer_per_species`` {p: rate}; ``apcer``
        (max over species) and ``apcer_worst_species``; ``apcer_pooled``; ``bpcer``; ``acer``; ``hter``;
        ``rates`` {"apcer_pooled": rate, "bpcer": rate}; ``fta`` {"bonafide": rate, "species": {p: rate},
        "overall": rate} (k = non-responses of n presentations); ``system`` {"bpcer", "apcer_per_species",
        "apcer"} with FTA folded in (docs/EVALUATION.md, Conventions). A rate is ``{"k", "n", "value", "ci": [lo, hi]}``.

    Raises:
        MetricError: a class or species without valid scores.
    """
    tau = float(threshold)
    if math.isnan(tau):
        raise MetricError("threshold is NaN")
    split = split_scores(scores, is_bonafide, species, pais)
    _require(split, 1, "computing PAD metrics")
    per = {p: _rate(*apcer_rate(a, tau), alpha) for p, a in split.attacks.items()}
    # deterministic worst: highest value, ties -> the alphabetically first species among the maxima
    top = max(r["value"] for r in per.values())
    worst = sorted(p for p, r in per.items() if r["value"] == top)[0]
    pooled = _rate(*apcer_rate(split.pooled_attacks, tau), alpha)
    bp = _rate(*bpcer_rate(split.bonafide, tau), alpha)
    apcer = per[worst]["value"]
    n_b = split.bonafide.size + split.fta_bonafide
    fta_b = _rate(split.fta_bonafide, n_b, alpha)
    fta_p = {p: _rate(split.fta_attacks[p], split.attacks[p].size + split.fta_attacks[p], alpha) for p in per}
    n_all = n_b + sum(r["n"] for r in fta_p.values())
    fta_all = _rate(split.fta_bonafide + sum(split.fta_attacks.values()), n_all, alpha)
    sys_b = fta_b["value"] + (1 - fta_b["value"]) * bp["value"]
    sys_p = {p: (1 - fta_p[p]["value"]) * per[p]["value"] for p in per}
    return {
        "threshold": tau,
        "species": list(per),
        "apcer_per_species": per,
        "apcer": apcer,
        "apcer_worst_species": worst,
        "apcer_pooled": pooled["value"],
        "bpcer": bp["value"],
        "acer": (apcer + bp["value"]) / 2,
        "hter": (pooled["value"] + bp["value"]) / 2,
        "rates": {"apcer_pooled": pooled, "bpcer": bp},
        "fta": {"bonafide": fta_b, "species": fta_p, "overall": fta_all},
        "system": {"bpcer": sys_b, "apcer_per_species": sys_p, "apcer": max(sys_p.values())},
    }


def tpr_at_fpr(scores: Sequence[float] | np.ndarray, is_bonafide: Sequence[bool] | np.ndarray,
               fpr: float) -> tuple[float, float]:
    """Legacy ``TPR@FPR = x`` on one score set: ``(1 - BPCER, τ)`` at τ = τ_A(x) over pooled attacks.

    Used by Flex-Modal and the CASIA-SURF challenge tables (attacks pooled, τ from the same set). Not an ISO metric.
    """
    split = split_scores(scores, is_bonafide, None)
    _require(split, 1, "TPR@FPR")
    tau = apcer_threshold(split.pooled_attacks, fpr)
    k, n = bpcer_rate(split.bonafide, tau)
    return 1.0 - k / n, tau


def operating_point(dev: tuple, eval_: tuple, criterion: str | Criterion, *,
                    pais: Iterable[str] | None = None, alpha: float = 0.05) -> dict:
    """Fit τ on ``dev`` with ``criterion`` and report :func:`pad_metrics` on ``eval_`` at that τ.

    Args:
        dev, eval_: ``(scores, is_bonafide, species)`` triples.
        criterion: e.g. ``"bpcer20"``: the returned ``metrics["bpcer"]`` is then BPCER20 (eval BPCER at the dev
            threshold where every species' APCER <= 5 %).

    Returns:
        ``{"criterion", "threshold", "dev": pad_metrics(dev), "eval": pad_metrics(eval)}``.
    """
    crit = parse_criterion(criterion)
    tau = fit_threshold(*dev, crit)
    return {"criterion": crit.name, "threshold": tau,
            "dev": pad_metrics(*dev, tau, alpha=alpha),
            "eval": pad_metrics(*eval_, tau, pais=pais, alpha=alpha)}


# ----------------------------------------------------------------------------------------------- aggregation
def aggregate_by_key(keys: Sequence[str], scores: Sequence[float] | np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-video aggregation: mean of the valid (non-NaN) frame scores per key; all-NaN -> NaN (FTA).

    Args:
        keys: (N,) video ids per frame.
        scores: (N,) frame scores.

    Returns:
        ``(unique keys in first-seen order, (K,) float64 video scores)``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(keys) != s.size:
        raise ShapeError("keys", (s.size,), (len(keys),))
    order: dict[str, int] = {}
    idx = np.empty(s.size, dtype=np.int64)
    for i, k in enumerate(keys):
        idx[i] = order.setdefault(k, len(order))
    valid = ~np.isnan(s)
    sums = np.bincount(idx[valid], weights=s[valid], minlength=len(order))
    counts = np.bincount(idx[valid], minlength=len(order))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return list(order), out


def summarize_protocols(results: Mapping[str, Mapping[str, float]],
                        keys: Sequence[str] = ("acer", "bpcer20")) -> dict:
    """Mean ± **population** standard deviation (ddof = 0) of metrics over several protocols (e.g. LOO_*).

    Args:
        results: protocol -> {metric: value}.
        keys: metrics to summarise.

    Returns:
        ``{metric: {"mean", "std", "n", "protocols"}}``.

    Raises:
        MetricError: no protocols, or a protocol without a requested metric.
    """
    if not results:
        raise MetricError("no protocol results to summarise")
    out = {}
    for key in keys:
        missing = [p for p, r in results.items() if key not in r or r[key] is None]
        if missing:
            raise MetricError(f"metric {key!r} missing for protocols {missing}")
        v = np.array([float(results[p][key]) for p in results])
        out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "n": int(v.size),
                    "protocols": list(results)}
    return out


# ----------------------------------------------------------------------------------------------- curves
def roc_curve(bonafide: np.ndarray, attacks: np.ndarray) -> dict[str, np.ndarray]:
    """ROC/DET points over all candidate thresholds: ``{"threshold", "apcer", "bpcer"}`` (pooled attacks)."""
    thr, apcer, bpcer = error_curve(bonafide, attacks)
    lo = np.nextafter(thr[0], -np.inf)  # the threshold below every score: APCER 1, BPCER 0
    return {"threshold": np.concatenate([[lo], thr]), "apcer": np.concatenate([[1.0], apcer]),
            "bpcer": np.concatenate([[0.0], bpcer])}


def probit(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Inverse standard-normal CDF (for DET axes), by bisection on ``math.erfc``; p clipped to [1e-9, 1-1e-9]."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    lo = np.full(p.shape, -7.0)
    hi = np.full(p.shape, 7.0)
    cdf = np.frompyfunc(lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0)), 1, 1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = cdf(mid).astype(np.float64) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)
