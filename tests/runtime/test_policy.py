"""DecisionPolicy: thresholds by operating point, k-of-n vote, window, staleness, degradation, lockout."""
from __future__ import annotations

import pytest

from edgepad.engines.manifest import ModelManifest, TensorSpec
from edgepad.errors import ConfigError
from edgepad.preprocess import default_input_specs
from edgepad.runtime.policy import DecisionPolicy, PolicyConfig
from edgepad.types import Modality, Reason, Verdict

MS = 1_000_000
ALL = frozenset(Modality)


def manifest(**kw):
    ops = kw.pop("operating_points", {"bpcer20": {"rgb+ir": 0.7}, "bpcer100": {"rgb+depth+ir": 0.9}})
    return ModelManifest(model="t", modalities=("rgb", "depth", "ir"), inputs=default_input_specs(16),
                         outputs={"score": TensorSpec("score", (1,))}, threshold=0.5, threshold_criterion="bpcer20",
                         operating_points=ops, **kw)


def feed(policy, scores, t0=0, step_ms=33, **kw):
    out = []
    for i, s in enumerate(scores):
        t = t0 + i * step_ms * MS
        out.append(policy.update(s, timestamp_ns=t, now_ns=t + 5 * MS, **kw))
    return out


def test_k_of_n_live_and_spoof():
    p = DecisionPolicy(manifest(), k=3, n=5)
    ds = feed(p, [0.9, 0.9, 0.9])
    assert [d.verdict for d in ds] == [Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.LIVE]
    assert Reason.VOTE_PENDING in ds[0].reasons and Reason.LIVE_VOTES in ds[2].reasons
    assert ds[2].threshold == 0.5
    p.reset()
    ds = feed(p, [0.1, 0.1, 0.1, 0.9])
    # after 3 spoof votes of 5, 3 live votes can no longer be reached
    assert [d.verdict for d in ds] == [Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.SPOOF, Verdict.SPOOF]


def test_live_needs_the_current_vote_live():
    p = DecisionPolicy(manifest(), k=2, n=5)
    ds = feed(p, [0.9, 0.9, 0.2])
    assert ds[1].verdict is Verdict.LIVE and ds[2].verdict is not Verdict.LIVE


def test_threshold_is_inclusive_and_from_operating_point():
    p = DecisionPolicy(manifest(), k=1, n=1)
    assert feed(p, [0.5])[0].verdict is Verdict.LIVE
    assert feed(p, [0.4999])[0].verdict is Verdict.SPOOF
    strict = DecisionPolicy(manifest(), k=1, n=1, operating_point="bpcer100")
    d = feed(strict, [0.85])[0]
    assert d.verdict is Verdict.SPOOF and d.threshold == 0.9
    with pytest.raises(ConfigError, match="bpcer1000"):
        DecisionPolicy(manifest(), operating_point="bpcer1000")


def test_stale_frames_do_not_vote():
    p = DecisionPolicy(manifest(), k=1, n=1, max_age_ms=100)
    d = p.update(0.99, timestamp_ns=0, now_ns=101 * MS)
    assert d.verdict is Verdict.UNKNOWN and Reason.STALE in d.reasons
    assert p.update(0.99, timestamp_ns=200 * MS, now_ns=250 * MS).verdict is Verdict.LIVE


def test_votes_outside_the_window_are_forgotten():
    p = DecisionPolicy(manifest(), k=2, n=5, window_ms=500)
    p.update(0.9, timestamp_ns=0, now_ns=0)
    d = p.update(0.9, timestamp_ns=600 * MS, now_ns=600 * MS)
    assert d.verdict is Verdict.UNKNOWN
    assert p.update(0.9, timestamp_ns=700 * MS, now_ns=700 * MS).verdict is Verdict.LIVE


def test_no_face_blocking_reasons_and_nan_never_live():
    p = DecisionPolicy(manifest(), k=1, n=1)
    d = p.update(0.99, timestamp_ns=0, now_ns=0, face=False)
    assert d.verdict is Verdict.UNKNOWN and Reason.NO_FACE in d.reasons
    for r in (Reason.BLUR, Reason.SENSOR_INTEGRITY, Reason.ERROR_INFER, Reason.FACE_AT_BORDER):
        assert p.update(0.99, timestamp_ns=0, now_ns=0, reasons=[r]).verdict is Verdict.UNKNOWN
    d = p.update(float("nan"), timestamp_ns=0, now_ns=0)
    assert d.verdict is Verdict.UNKNOWN and d.score is None and Reason.ERROR_INFER in d.reasons
    assert p.update(None, timestamp_ns=0, now_ns=0).verdict is Verdict.UNKNOWN


def test_degraded_subset_uses_its_stricter_threshold():
    p = DecisionPolicy(manifest(), k=1, n=1)
    sub = {Modality.RGB, Modality.IR}
    d = p.update(0.65, timestamp_ns=0, now_ns=0, modalities=sub)
    assert d.verdict is Verdict.SPOOF and d.threshold == 0.7
    assert Reason.DEGRADED in d.reasons and Reason.MISSING_DEPTH in d.reasons
    assert p.security_level(sub) == "reduced:rgb+ir" and p.security_level(ALL) == "full"
    d = p.update(0.75, timestamp_ns=0, now_ns=0, modalities=sub)
    assert d.verdict is Verdict.LIVE and d.modalities == frozenset(sub)
    # rgb + depth has no calibrated threshold: unknown, whatever the score
    d = p.update(0.999, timestamp_ns=0, now_ns=0, modalities={Modality.RGB, Modality.DEPTH})
    assert d.verdict is Verdict.UNKNOWN and Reason.NO_THRESHOLD_FOR_SUBSET in d.reasons
    # rgb is required
    d = p.update(0.999, timestamp_ns=0, now_ns=0, modalities={Modality.DEPTH, Modality.IR})
    assert d.verdict is Verdict.UNKNOWN and Reason.MISSING_RGB in d.reasons


def test_no_degradation_requires_every_modality():
    p = DecisionPolicy(manifest(), k=1, n=1, degrade=False)
    d = p.update(0.99, timestamp_ns=0, now_ns=0, modalities={Modality.RGB, Modality.IR})
    assert d.verdict is Verdict.UNKNOWN and Reason.MISSING_DEPTH in d.reasons


def test_lockout_after_consecutive_spoof_attempts_and_reset():
    p = DecisionPolicy(manifest(), k=1, n=1, lockout_after=2)
    assert feed(p, [0.1])[0].verdict is Verdict.SPOOF
    p.reset()  # attempt 1 ended (face lost)
    assert feed(p, [0.1])[0].verdict is Verdict.SPOOF  # attempt 2 reaches the limit
    assert p.locked
    d = feed(p, [0.99])[0]
    assert d.verdict is Verdict.UNKNOWN and Reason.LOCKOUT in d.reasons
    p.reset()
    assert feed(p, [0.99])[0].verdict is Verdict.UNKNOWN  # reset() of votes does not lift the lockout
    p.reset_lockout()
    assert not p.locked and feed(p, [0.99])[0].verdict is Verdict.LIVE


def test_lockout_counts_presentations_not_no_face_frames():
    p = DecisionPolicy(manifest(), k=1, n=1, lockout_after=3)
    # one presentation: spoof, then many frames without a face, spoof again -> one attempt
    for i in range(6):
        feed(p, [0.1], t0=i * 100 * MS)
        p.update(None, timestamp_ns=i * 100 * MS + 50 * MS, now_ns=i * 100 * MS + 55 * MS, face=False)
    assert p.spoof_attempts == 1 and not p.locked
    d = p.update(None, timestamp_ns=700 * MS, now_ns=705 * MS, face=False)
    assert Reason.NO_FACE in d.reasons and Reason.LOCKOUT not in d.reasons
    # three back-to-back presentations (reset() = new presentation), each decided spoof -> lockout
    p.reset(); feed(p, [0.1], t0=800 * MS)
    assert p.spoof_attempts == 2 and not p.locked
    p.reset(); feed(p, [0.1, 0.1, 0.1], t0=900 * MS)
    assert p.spoof_attempts == 3 and p.locked


def test_clear_votes_keeps_the_attempt_and_restarts_votes():
    p = DecisionPolicy(manifest(), k=2, n=3, lockout_after=2)
    assert [d.verdict for d in feed(p, [0.1, 0.1])][-1] is Verdict.SPOOF
    p.clear_votes()
    assert feed(p, [0.1], t0=200 * MS)[0].verdict is Verdict.UNKNOWN  # votes restarted
    assert p.spoof_attempts == 1


def test_live_attempt_clears_spoof_count_and_timed_lockout():
    p = DecisionPolicy(manifest(), k=1, n=1, lockout_after=2, lockout_s=1.0)
    feed(p, [0.1]); p.reset()
    feed(p, [0.9]); p.reset()
    assert p.spoof_attempts == 0
    feed(p, [0.1]); p.reset()
    feed(p, [0.1], t0=100 * MS)
    assert p.locked
    d = p.update(0.9, timestamp_ns=900 * MS, now_ns=900 * MS)
    assert Reason.LOCKOUT in d.reasons
    d = p.update(0.9, timestamp_ns=1200 * MS, now_ns=1200 * MS)
    assert d.verdict is Verdict.LIVE and not p.locked


@pytest.mark.parametrize("kw", [{"k": 0}, {"k": 6, "n": 5}, {"max_age_ms": 0}, {"lockout_after": -1},
                                {"window_ms": float("inf")}])
def test_bad_config(kw):
    with pytest.raises(ConfigError):
        PolicyConfig(**kw)


def test_unknown_override_suggests():
    with pytest.raises(ConfigError, match="max_age_ms"):
        DecisionPolicy(manifest(), max_age=3)
