"""The fail-closed decision policy: manifest threshold by operating point, k-of-n vote, staleness, degradation, lockout.

A frame's score becomes a *vote* only if it is fresh (``|decision time − frame time| ≤ max_age_ms``: a frame
stamped in the future is as untrustworthy as an old one), a face was found, no blocking
reason (quality gate, sensor integrity, stage error) is attached, every required modality is present, and a
threshold is calibrated in the manifest for the modality subset actually used. A vote is *live* when
``score >= threshold`` of that subset. Over the votes of the last ``n`` frames within ``window_ms``:

- LIVE when at least ``k`` votes are live **and** the current frame is a live vote (never live without fresh
  evidence);
- SPOOF once LIVE can no longer be reached (``live + (n − votes) < k``);
- UNKNOWN otherwise (``vote_pending``), and always when the current frame is not a vote (with its reasons).

Lockout: after ``lockout_after`` consecutive spoof *attempts* every decision is UNKNOWN with ``lockout`` until
:meth:`DecisionPolicy.reset_lockout` (or ``lockout_s`` seconds when that is > 0). An attempt is one presentation:
the span between two :meth:`DecisionPolicy.reset` calls (the pipeline calls it when the presentation tracker starts
a new presentation, :mod:`edgepad.runtime.presentation`); it counts once if any of its decisions was SPOOF. Frames
without a face, or a clock fault, only forget the votes (:meth:`DecisionPolicy.clear_votes`): they do not end the
attempt, so one spoof presentation with many lost-face frames is one attempt. A live attempt clears the count.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Collection, Mapping, Sequence

from edgepad.config import suggest
from edgepad.errors import ConfigError
from edgepad.types import Decision, Modality, Reason, Verdict, parse_modalities

log = logging.getLogger(__name__)

#: reasons that prevent a frame from voting (anything else is informational)
BLOCKING = frozenset({
    Reason.NO_FRAMES, Reason.NO_FACE, Reason.STALE, Reason.MISSING_RGB, Reason.NO_THRESHOLD_FOR_SUBSET,
    Reason.FACE_TOO_SMALL, Reason.FACE_TOO_LARGE, Reason.FACE_AT_BORDER, Reason.FACE_POSE, Reason.BLUR,
    Reason.SENSOR_INTEGRITY, Reason.LOCKOUT, Reason.ERROR_CAPTURE, Reason.ERROR_SYNC, Reason.ERROR_REGISTER,
    Reason.ERROR_LOCATE, Reason.ERROR_PREPROCESS, Reason.ERROR_INFER, Reason.ERROR_POLICY,
})


@dataclass(frozen=True)
class PolicyConfig:
    """Decision-policy settings (all times in ms of frame time).

    Attributes:
        operating_point: manifest criterion to use (e.g. ``"bpcer20"``); None = the manifest's default.
        k, n: LIVE needs ``k`` live votes among the last ``n`` frames.
        window_ms: votes older than this (relative to the current frame) are forgotten.
        max_age_ms: a frame older than this when decided on, or stamped more than this after the decision time
            (a clock error), is stale (no vote).
        required: modalities that must be present; None = rgb only when ``degrade`` else all model modalities.
        degrade: continue without optional modalities, with the subset's calibrated threshold (else unknown).
        lockout_after: consecutive spoof attempts before lockout (0 = never).
        lockout_s: lockout duration (0 = until ``reset_lockout()``).
    """

    operating_point: str | None = None
    k: int = 3
    n: int = 5
    window_ms: float = 1000.0
    max_age_ms: float = 150.0
    required: tuple[str, ...] | None = None
    degrade: bool = True
    lockout_after: int = 0
    lockout_s: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.k, int) and 1 <= self.k <= self.n <= 1000):
            raise ConfigError(f"policy needs integers 1 <= k <= n <= 1000, got k={self.k} n={self.n}", key="k")
        for key in ("window_ms", "max_age_ms"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ConfigError(f"policy {key} must be a positive number of ms, got {v!r}", key=key)
        if not (isinstance(self.lockout_after, int) and self.lockout_after >= 0):
            raise ConfigError(f"lockout_after must be an integer >= 0, got {self.lockout_after!r}", key="lockout_after")
        if not (isinstance(self.lockout_s, (int, float)) and self.lockout_s >= 0):
            raise ConfigError(f"lockout_s must be >= 0, got {self.lockout_s!r}", key="lockout_s")
        if self.required is not None:
            object.__setattr__(self, "required", tuple(m.value for m in parse_modalities(self.required)))


@dataclass(frozen=True)
class _Vote:
    timestamp_ns: int
    live: bool


class DecisionPolicy:
    """Turns per-frame scores into fail-closed three-way decisions (thread-safe).

    Args:
        manifest: the model's manifest: thresholds come from it only (``threshold_for(subset, criterion)``).
        config: :class:`PolicyConfig`; keyword overrides (``k=…``) are applied on top.

    Raises:
        ConfigError: the operating point has no threshold for the full modality set.
    """

    def __init__(self, manifest, config: PolicyConfig | None = None, **overrides: object) -> None:
        cfg = config or PolicyConfig()
        if overrides:
            known = set(PolicyConfig.__dataclass_fields__)
            for key in overrides:
                if key not in known:
                    raise ConfigError(f"unknown policy setting `{key}`", key=key, suggestions=suggest(key, known))
            cfg = replace(cfg, **overrides)
        self.config = cfg
        self.manifest = manifest
        self.criterion = cfg.operating_point or manifest.threshold_criterion
        self.modalities = frozenset(manifest.modalities)
        full = manifest.threshold_for(self.modalities, self.criterion)
        if full is None:
            crits = sorted(set(manifest.operating_points) | {manifest.threshold_criterion})
            raise ConfigError(f"the manifest has no threshold for operating point {self.criterion!r} on "
                              f"{'+'.join(sorted(m.value for m in self.modalities))}; available: {crits}",
                              key="operating_point", suggestions=suggest(self.criterion, crits))
        self.threshold = float(full)
        if cfg.required is not None:
            self.required = frozenset(parse_modalities(cfg.required))
        elif cfg.degrade:
            self.required = frozenset({Modality.RGB}) & self.modalities or self.modalities
        else:
            self.required = self.modalities
        self._lock = threading.RLock()
        self._votes: collections.deque[_Vote] = collections.deque(maxlen=cfg.n)
        self._attempt_spoof = False
        self._attempt_live = False
        self._spoof_attempts = 0
        self._locked_since_ns: int | None = None
        self.last: Decision | None = None

    # ------------------------------------------------------------------ state
    @property
    def locked(self) -> bool:
        return self._locked_since_ns is not None

    @property
    def spoof_attempts(self) -> int:
        """Consecutive spoof attempts counted towards the lockout."""
        return self._spoof_attempts

    def reset(self) -> None:
        """New presentation: forget the votes and end the current attempt (the spoof-attempt count is kept)."""
        with self._lock:
            self._end_attempt()
            self._votes.clear()

    def clear_votes(self) -> None:
        """Forget the votes only, within the same attempt (a lost-face frame, a clock fault)."""
        with self._lock:
            self._votes.clear()

    def reset_lockout(self) -> None:
        """Integrator action: leave lockout and clear the spoof-attempt count."""
        with self._lock:
            self._locked_since_ns = None
            self._spoof_attempts = 0
            self._attempt_spoof = self._attempt_live = False
            self._votes.clear()
            log.info("lockout reset by the integrator")

    def threshold_for(self, used: Collection[Modality]) -> float | None:
        """Threshold in force for a modality subset (None = not calibrated)."""
        return self.manifest.threshold_for(used, self.criterion)

    def security_level(self, used: Collection[Modality]) -> str:
        """``"full"`` when every model modality is used, else ``"reduced:<subset>"``."""
        if frozenset(used) >= self.modalities:
            return "full"
        return "reduced:" + "+".join(m.value for m in Modality if m in used)

    # ------------------------------------------------------------------ decide
    def update(self, score: float | None, *, evidence: Mapping[Modality, float] | None = None, timestamp_ns: int,
               now_ns: int, reasons: Sequence[Reason] = (), modalities: Collection[Modality] | None = None,
               face: bool = True, latency_ms: Mapping[str, float] | None = None,
               face_box: tuple[int, int, int, int] | None = None, hints: Sequence[str] = ()) -> Decision:
        """Decide on one frame set.

        Args:
            score: fused P(live) of this frame, or None when none was computed.
            evidence: per-modality P(live) (model heads).
            timestamp_ns: the frame set's time; now_ns: the decision time (same clock).
            reasons: reasons gathered upstream (blocking ones prevent a vote).
            modalities: modalities actually used for ``score`` (None = all model modalities).
            face: whether a face was found (False adds ``no_face`` and clears the votes; the attempt goes on
                until :meth:`reset`).
        """
        with self._lock:
            rs: list[Reason] = list(dict.fromkeys(reasons))
            used = frozenset(self.modalities if modalities is None else modalities) & self.modalities
            thr = self.threshold
            if self._locked_since_ns is not None and self.config.lockout_s > 0 and (
                    now_ns - self._locked_since_ns) >= self.config.lockout_s * 1e9:
                self._locked_since_ns = None
                self._spoof_attempts = 0
            if not face:
                _add(rs, Reason.NO_FACE)
                self._votes.clear()
            for m in Modality:
                if m in self.modalities and m not in used:
                    _add(rs, Reason.missing(m))
            required_missing = bool(self.required - used)
            if used != self.modalities and not required_missing:
                sub = self.threshold_for(used) if used else None
                if sub is None:
                    _add(rs, Reason.NO_THRESHOLD_FOR_SUBSET)
                else:
                    thr = float(sub)
                    _add(rs, Reason.DEGRADED)
            if abs(now_ns - timestamp_ns) > self.config.max_age_ms * 1e6:  # old, or stamped in the future
                _add(rs, Reason.STALE)
            if score is None or not math.isfinite(score):
                if score is not None:
                    _add(rs, Reason.ERROR_INFER)
                    score = None
            votes_now = score is not None and not required_missing and not any(r in BLOCKING for r in rs)
            live_vote = False
            if votes_now:
                live_vote = score >= thr
                self._votes.append(_Vote(int(timestamp_ns), live_vote))
            window_ns = self.config.window_ms * 1e6
            while self._votes and timestamp_ns - self._votes[0].timestamp_ns > window_ns:
                self._votes.popleft()
            n_live = sum(v.live for v in self._votes)
            remaining = self.config.n - len(self._votes)
            verdict = Verdict.UNKNOWN
            if self._locked_since_ns is not None:
                _add(rs, Reason.LOCKOUT)
            elif votes_now:
                if n_live >= self.config.k and live_vote:
                    verdict = Verdict.LIVE
                    _add(rs, Reason.LIVE_VOTES)
                elif n_live + remaining < self.config.k:
                    verdict = Verdict.SPOOF
                    _add(rs, Reason.SPOOF_VOTES)
                else:
                    _add(rs, Reason.VOTE_PENDING)
            if verdict is Verdict.SPOOF and not self._attempt_spoof:
                self._attempt_spoof = True
                self._spoof_attempts += 1
            elif verdict is Verdict.LIVE:
                self._attempt_live = True
                self._spoof_attempts = 0
            if not rs:
                rs.append(Reason.OK)
            elif verdict is not Verdict.UNKNOWN and Reason.DEGRADED not in rs:
                rs.insert(0, Reason.OK)
            decision = Decision(verdict=verdict, score=None if score is None else float(score), threshold=thr,
                                evidence=dict(evidence or {}), reasons=tuple(rs), timestamp_ns=int(timestamp_ns),
                                latency_ms=dict(latency_ms or {}), modalities=used, face_box=face_box,
                                hints=tuple(hints))
            self.last = decision
            if (self.config.lockout_after and self._locked_since_ns is None
                    and self._spoof_attempts >= self.config.lockout_after):
                self._votes.clear()
                self._locked_since_ns = int(now_ns)
                log.warning("lockout after %d consecutive spoof attempts", self._spoof_attempts)
            return decision

    def _end_attempt(self) -> None:
        self._attempt_spoof = self._attempt_live = False


def _add(rs: list[Reason], r: Reason) -> None:
    if r not in rs:
        rs.append(r)
