"""Presentations: one face in front of the terminal, from when it appears to when it leaves or is replaced.

:class:`PresentationTracker` follows the located face frame by frame and says when a presentation starts and
ends. A presentation ends when no face was located for ``gap_frames`` consecutive frames (``gap``), or when the face
of this frame is not the previous face frame's. That is judged on four changes between consecutive face
frames (and the face's colour), each divided by its limit:

- the box centre's move in box widths / ``max_jump`` (``box_jump``; the pipeline passes
  ``PipelineConfig.face_jump``);
- ``|ln(side ratio)|`` / ``ln(max_scale_change)`` (``scale_jump``);
- the measured face depth's change / ``max_depth_jump_m`` (``depth_jump``; only between two frames with a
  measured depth: screens and glossy prints have none);
- the relative change of a scale-free landmark ratio / ``max_geometry_change`` (``identity``): inter-eye
  distance over box side, eye-to-mouth over inter-eye distance (both hold still while one person sways, and
  differ between two people, or a person and a photo, at different pose, distance or proportions);
- the colour of the face's centre (mean rgb of the central half of the box): its chromaticity's move /
  ``max_chroma_change`` or ``|ln(brightness ratio)|`` / ``ln(max_brightness_change)`` (``appearance``: skin
  tone, make-up, print inks and the light on the face change between people, not within one presentation).

A new presentation starts when the root sum of squares of the four exceeds 1 (one change at its limit alone
does it; several smaller ones together do too); the cause named is the largest term. Figures (consecutive-frame
changes within and across the back-to-back presentations of the synthetic camera): docs/RUNTIME.md.

Whatever ends a presentation on a face frame also starts the next one on that frame, so back-to-back
presentations (one person steps away as the next steps in, no frame without a face) are separated. The
pipeline resets the decision policy on every new presentation, so no vote of one person reaches the next.

:class:`PresentationEvent` is what an integrator acts on (docs/RUNTIME.md §"presentation events"):
``started``, then at most one ``decided`` (the first LIVE or SPOOF decision of the presentation, with that
decision's score and evidence), then ``ended``. Open the door on ``decided`` with ``verdict == LIVE``: once per
live presentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepad.errors import ConfigError
from edgepad.types import Decision, Verdict

#: event kinds
STARTED, DECIDED, ENDED = "started", "decided", "ended"


@dataclass(frozen=True)
class PresentationConfig:
    """When one presentation ends and the next begins.

    Attributes:
        gap_frames: consecutive frames without a face that end a presentation (>= 1).
        max_scale_change: limit of the box-side ratio between consecutive face frames (> 1).
        max_depth_jump_m: limit of the measured face-depth change between consecutive face frames (m).
        max_geometry_change: limit of the relative change of a landmark ratio between consecutive face frames.
        max_chroma_change: limit of the move of the face centre's chromaticity ``(r, g) / (r + g + b)``.
        max_brightness_change: limit of the face centre's brightness ratio (> 1).
    """

    gap_frames: int = 3
    max_scale_change: float = 1.25
    max_depth_jump_m: float = 0.05
    max_geometry_change: float = 0.25
    max_chroma_change: float = 0.01
    max_brightness_change: float = 1.12

    def __post_init__(self) -> None:
        if not (isinstance(self.gap_frames, int) and self.gap_frames >= 1
                and self.max_scale_change > 1 and self.max_depth_jump_m > 0 and self.max_geometry_change > 0
                and self.max_chroma_change > 0 and self.max_brightness_change > 1):
            raise ConfigError("presentations need gap_frames >= 1, max_scale_change > 1, "
                              "max_depth_jump_m > 0, max_geometry_change > 0, max_chroma_change > 0, "
                              "max_brightness_change > 1",
                              key="presentation")


@dataclass(frozen=True)
class PresentationEvent:
    """A presentation started, was decided, or ended.

    Attributes:
        kind: ``started`` / ``decided`` / ``ended``.
        presentation: presentation number (1, 2, … per pipeline).
        timestamp_ns: timestamp of the frame set that caused the event (the last face frame for ``ended``).
        verdict: ``decided``: LIVE or SPOOF; ``ended``: the decided verdict, UNKNOWN if never decided;
            ``started``: UNKNOWN.
        decision: ``decided``: the decision that decided (score, threshold, evidence, reasons); else None.
        frames: frame sets seen in the presentation so far (with or without a face).
        cause: why it started or ended (``face``, ``gap``, ``box_jump``, ``scale_jump``, ``depth_jump``,
            ``identity``, ``stream_end``); empty for ``decided``.
        live_decisions / spoof_decisions: LIVE / SPOOF frame decisions in the presentation so far.
    """

    kind: str
    presentation: int
    timestamp_ns: int
    verdict: Verdict = Verdict.UNKNOWN
    decision: Decision | None = None
    frames: int = 0
    cause: str = ""
    live_decisions: int = 0
    spoof_decisions: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict (the deciding decision inlined)."""
        return {"event": self.kind, "presentation": self.presentation, "timestamp_ns": self.timestamp_ns,
                "verdict": self.verdict.value, "frames": self.frames, "cause": self.cause,
                "live_decisions": self.live_decisions, "spoof_decisions": self.spoof_decisions,
                "decision": None if self.decision is None else self.decision.to_dict()}


@dataclass
class _Current:
    number: int
    started_ns: int
    last_ns: int
    frames: int = 0
    gap: int = 0
    verdict: Verdict = Verdict.UNKNOWN
    counts: dict[Verdict, int] = field(default_factory=lambda: {Verdict.LIVE: 0, Verdict.SPOOF: 0})


def landmark_geometry(landmarks: np.ndarray | None, box: tuple[int, int, int, int]) -> tuple[float, float] | None:
    """Scale-free face geometry: (inter-eye distance / box side, eye-mid to mouth-mid distance / inter-eye
    distance); None without five finite landmarks."""
    if landmarks is None:
        return None
    lm = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if lm.shape[0] < 5 or not np.all(np.isfinite(lm)):
        return None
    eye = float(np.hypot(*(lm[1] - lm[0])))
    if eye <= 1e-6:
        return None
    mouth = float(np.hypot(*((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2)))
    return eye / max(box[2], box[3], 1), mouth / eye


def face_colour(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float, float] | None:
    """Mean rgb (0-255) of the central half of ``box`` in an ``H×W×3`` image, on a 2-px lattice; None when empty."""
    x, y, w, h = (int(v) for v in box)
    patch = rgb[max(0, y + h // 4):max(0, y + 3 * h // 4):2, max(0, x + w // 4):max(0, x + 3 * w // 4):2]
    if patch.size == 0 or patch.ndim != 3:
        return None
    m = patch.reshape(-1, patch.shape[-1]).astype(np.float32).mean(axis=0)
    return float(m[0]), float(m[1]), float(m[2])


def _colour_change(c: tuple[float, float, float], last: tuple[float, float, float],
                   cfg: PresentationConfig) -> float:
    """Colour term of the change score: the larger of the chromaticity move and the brightness ratio, each over
    its limit."""
    s, ls = max(sum(c), 1e-6), max(sum(last), 1e-6)
    chroma = math.hypot(c[0] / s - last[0] / ls, c[1] / s - last[1] / ls) / cfg.max_chroma_change
    bright = abs(math.log(max(s, 1.0) / max(ls, 1.0))) / math.log(cfg.max_brightness_change)
    return max(chroma, bright)


class PresentationTracker:
    """Splits the per-frame stream into presentations and produces :class:`PresentationEvent` s.

    Use: per frame set, :meth:`observe` (before the policy decides; True = a new presentation starts here, reset
    the policy), then :meth:`decided` with the frame's decision; :meth:`finish` at the end of the stream.
    Each returns the events it produced (also appended to :attr:`pending`).

    Args:
        config: :class:`PresentationConfig`.
        max_jump: limit of the box-centre move between consecutive face frames, in box widths.
    """

    def __init__(self, config: PresentationConfig | None = None, max_jump: float = 0.2) -> None:
        if not max_jump > 0:
            raise ConfigError(f"max_jump must be > 0 box widths, got {max_jump!r}", key="face_jump")
        self.config = config or PresentationConfig()
        self.max_jump = float(max_jump)
        self.current: _Current | None = None
        self.count = 0
        self._last: tuple[Any, ...] | None = None  # box, depth, landmark geometry, colour of the last face

    def change(self, box: tuple[int, int, int, int], depth_m: float | None, geom: tuple[float, float] | None,
               colour: tuple[float, float, float] | None = None) -> tuple[float, str]:
        """Change score of this face against the previous face frame (> 1 = a new presentation) and its
        largest term's cause; ``(0.0, "")`` without a previous face."""
        if self._last is None:
            return 0.0, ""
        cfg = self.config
        lbox, ldepth, lgeom, lcolour = self._last
        lside, side = max(lbox[2], lbox[3], 1), max(box[2], box[3], 1)
        terms = {
            "box_jump": math.hypot(box[0] + box[2] / 2 - lbox[0] - lbox[2] / 2,
                                   box[1] + box[3] / 2 - lbox[1] - lbox[3] / 2) / max(lbox[2], 1) / self.max_jump,
            "scale_jump": abs(math.log(side / lside)) / math.log(cfg.max_scale_change),
            "depth_jump": 0.0 if depth_m is None or ldepth is None else abs(depth_m - ldepth) / cfg.max_depth_jump_m,
            "identity": 0.0 if geom is None or lgeom is None else max(
                abs(a - b) / max(abs(b), 1e-6) for a, b in zip(geom, lgeom)) / cfg.max_geometry_change,
            "appearance": 0.0 if colour is None or lcolour is None else _colour_change(colour, lcolour, cfg),
        }
        cause = max(terms, key=terms.__getitem__)
        return math.sqrt(sum(v * v for v in terms.values())), cause

    def _start(self, ts: int, cause: str, events: list[PresentationEvent]) -> None:
        self.count += 1
        self.current = _Current(self.count, ts, ts)
        events.append(PresentationEvent(STARTED, self.count, ts, cause=cause))

    def _end(self, cause: str, events: list[PresentationEvent]) -> None:
        cur = self.current
        if cur is None:
            return
        events.append(PresentationEvent(ENDED, cur.number, cur.last_ns, cur.verdict, None, cur.frames, cause,
                                        cur.counts[Verdict.LIVE], cur.counts[Verdict.SPOOF]))
        self.current = None
        self._last = None

    def observe(self, detection: Any, timestamp_ns: int, depth_m: float | None = None,
                colour: tuple[float, float, float] | None = None) -> tuple[bool, list[PresentationEvent]]:
        """Account for one frame set's located face (``detection`` with ``box`` and ``landmarks``, or None).

        Args:
            detection: the frame's face (:class:`~edgepad.runtime.face.FaceDetection`) or None (no face).
            timestamp_ns: the frame set's timestamp.
            depth_m: measured face depth (m), or None when not measured.
            colour: mean rgb (0-255) of the central half of the face box (:func:`face_colour`), or None.

        Returns:
            (True when a new presentation starts on this frame, the events produced).
        """
        events: list[PresentationEvent] = []
        cur = self.current
        if detection is None:
            if cur is not None:
                cur.frames += 1
                cur.gap += 1
                if cur.gap >= self.config.gap_frames:
                    self._end("gap", events)
            return False, events
        box = tuple(int(v) for v in detection.box)
        geom = landmark_geometry(getattr(detection, "landmarks", None), box)  # type: ignore[arg-type]
        new = False
        if cur is None:
            self._start(timestamp_ns, "face", events)
            new = True
        else:
            score, cause = self.change(box, depth_m, geom, colour)  # type: ignore[arg-type]
            if score > 1.0:
                self._end(cause, events)
                self._start(timestamp_ns, cause, events)
                new = True
        cur = self.current
        cur.frames += 1  # type: ignore[union-attr]
        cur.gap = 0  # type: ignore[union-attr]
        cur.last_ns = timestamp_ns  # type: ignore[union-attr]
        self._last = (box, depth_m, geom, colour)  # type: ignore[assignment]
        return new, events

    def decided(self, decision: Decision) -> list[PresentationEvent]:
        """Account for the frame's decision; returns ``[decided]`` on the presentation's first LIVE or SPOOF."""
        cur = self.current
        if cur is None or decision.verdict is Verdict.UNKNOWN:
            return []
        cur.counts[decision.verdict] += 1
        if cur.verdict is not Verdict.UNKNOWN:
            return []
        cur.verdict = decision.verdict
        return [PresentationEvent(DECIDED, cur.number, decision.timestamp_ns, decision.verdict, decision, cur.frames,
                                  "", cur.counts[Verdict.LIVE], cur.counts[Verdict.SPOOF])]

    def finish(self, cause: str = "stream_end") -> list[PresentationEvent]:
        """End the current presentation (end of stream, capture failure)."""
        events: list[PresentationEvent] = []
        self._end(cause, events)
        return events
