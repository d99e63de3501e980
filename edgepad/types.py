"""Core value types that travel through the pipeline: modalities, frames, frame sets, decisions.

Timestamps are host monotonic nanoseconds (``_ns``); latencies are milliseconds (``_ms``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from edgepad.config import suggest
from edgepad.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from edgepad.geometry import Intrinsics


class Modality(str, enum.Enum):
    """A sensor modality, always addressed by name (never by channel position)."""

    RGB = "rgb"
    DEPTH = "depth"
    IR = "ir"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "Modality | str") -> "Modality":
        """``"rgb"`` / ``Modality.RGB`` -> ``Modality.RGB``; raises ConfigError with suggestions."""
        if isinstance(value, Modality):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = [m.value for m in cls]
            raise ConfigError(f"unknown modality {value!r}; known: {names}", key="modality",
                              suggestions=suggest(str(value), names)) from None


def parse_modalities(values: "object") -> tuple[Modality, ...]:
    """Parse ``"rgb,depth"`` or an iterable of names into a tuple of unique modalities, in order."""
    if isinstance(values, str):
        values = [v for v in values.replace("+", ",").split(",") if v.strip()]
    elif not isinstance(values, Iterable):
        raise ConfigError(f"modalities must be names like 'rgb,depth' or a list of them, got {values!r}",
                          key="modality")
    out: list[Modality] = []
    for v in values:  # type: ignore[union-attr]
        m = Modality.parse(v.strip() if isinstance(v, str) else v)
        if m not in out:
            out.append(m)
    return tuple(out)


_FRAME_DTYPES = {Modality.RGB: (np.uint8,), Modality.DEPTH: (np.uint16,), Modality.IR: (np.uint8, np.uint16)}


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One image from one stream; owns its pixels (read-only).

    Attributes:
        modality: which stream.
        data: rgb ``uint8 H×W×3`` (RGB order), depth ``uint16 H×W`` raw units (0 = invalid),
            ir ``uint8|uint16 H×W``.
        timestamp_ns: host monotonic time of exposure (ns).
        device_timestamp_ns: raw device clock (ns) when the sensor has one.
        sequence: frame counter of the stream.
        source: URI of the source.
        intrinsics: camera model of ``data`` (after registration: the target camera's).
        depth_scale_m: metres per depth unit (depth only).
        registered_to: the modality whose camera this depth frame was registered to.
    """

    modality: Modality
    data: np.ndarray
    timestamp_ns: int
    device_timestamp_ns: int | None
    sequence: int
    source: str
    intrinsics: "Intrinsics"
    depth_scale_m: float | None = None
    registered_to: Modality | None = None

    def __post_init__(self) -> None:
        d = self.data
        if not isinstance(d, np.ndarray):
            raise ShapeError(f"{self.modality}.data", "numpy array", type(d).__name__)
        ok_dtype = d.dtype.type in _FRAME_DTYPES[self.modality]
        ok_shape = (d.ndim == 3 and d.shape[2] == 3) if self.modality is Modality.RGB else d.ndim == 2
        if not (ok_dtype and ok_shape):
            raise ShapeError(f"{self.modality}.data", _expected_layout(self.modality), f"{d.dtype} {d.shape}")
        if (d.shape[1], d.shape[0]) != (self.intrinsics.width, self.intrinsics.height):
            raise ShapeError(f"{self.modality}.data", (self.intrinsics.height, self.intrinsics.width), d.shape[:2])
        if self.modality is Modality.DEPTH and (self.depth_scale_m is None or not self.depth_scale_m > 0):
            raise ShapeError("depth_scale_m", "> 0 for depth frames", self.depth_scale_m)
        if d.flags.writeable:
            d.flags.writeable = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


def _expected_layout(m: Modality) -> str:
    return {Modality.RGB: "uint8 H×W×3", Modality.DEPTH: "uint16 H×W", Modality.IR: "uint8|uint16 H×W"}[m]


def make_frame(modality: Modality | str, data: np.ndarray, timestamp_ns: int, *, intrinsics: "Intrinsics",
               sequence: int = 0, source: str = "", device_timestamp_ns: int | None = None,
               depth_scale_m: float | None = None, registered_to: Modality | None = None) -> Frame:
    """Build a :class:`Frame` that owns a contiguous read-only copy of ``data``."""
    arr = np.array(data, copy=True, order="C")
    return Frame(Modality.parse(modality), arr, int(timestamp_ns), device_timestamp_ns, int(sequence), source,
                 intrinsics, depth_scale_m, registered_to)


def replace_frame(frame: Frame, **changes: object) -> Frame:
    """A copy of ``frame`` with fields replaced; pixels are copied (the result owns them, read-only)."""
    kw = dict(modality=frame.modality, data=frame.data, timestamp_ns=frame.timestamp_ns,
              intrinsics=frame.intrinsics, sequence=frame.sequence, source=frame.source,
              device_timestamp_ns=frame.device_timestamp_ns, depth_scale_m=frame.depth_scale_m,
              registered_to=frame.registered_to)
    kw.update(changes)
    return make_frame(kw.pop("modality"), kw.pop("data"), kw.pop("timestamp_ns"), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one instant, keyed by modality.

    Attributes:
        frames: the frames present.
        timestamp_ns: the set's time (the reference stream's timestamp).
        skew_ns: max minus min timestamp over the frames.
        missing: optional modalities that had no frame in tolerance.
    """

    frames: Mapping[Modality, Frame]
    timestamp_ns: int
    skew_ns: int = 0
    missing: frozenset[Modality] = frozenset()

    def __getitem__(self, m: Modality | str) -> Frame:
        return self.frames[Modality.parse(m)]

    def __contains__(self, m: object) -> bool:
        try:
            return Modality.parse(m) in self.frames  # type: ignore[arg-type]
        except Exception:
            return False

    def get(self, m: Modality | str) -> Frame | None:
        return self.frames.get(Modality.parse(m))

    @property
    def modalities(self) -> frozenset[Modality]:
        return frozenset(self.frames)


class Verdict(str, enum.Enum):
    """Three-way liveness verdict; ``UNKNOWN`` is the fail-closed answer."""

    LIVE = "live"
    SPOOF = "spoof"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Machine-readable reasons attached to a Decision (a closed set)."""

    OK = "ok"
    NO_FRAMES = "no_frames"
    NO_FACE = "no_face"
    STALE = "stale"
    MISSING_RGB = "missing_rgb"
    MISSING_DEPTH = "missing_depth"
    MISSING_IR = "missing_ir"
    INVALID_DEPTH = "invalid_depth"
    INVALID_IR = "invalid_ir"
    NOMINAL_DEPTH = "nominal_depth"
    NO_THRESHOLD_FOR_SUBSET = "no_threshold_for_subset"
    DEGRADED = "degraded"
    VOTE_PENDING = "vote_pending"
    LIVE_VOTES = "live_votes"
    SPOOF_VOTES = "spoof_votes"
    LOCKOUT = "lockout"
    FACE_TOO_SMALL = "face_too_small"
    FACE_TOO_LARGE = "face_too_large"
    FACE_AT_BORDER = "face_at_border"
    FACE_POSE = "face_pose"
    BLUR = "blur"
    NO_IR_ILLUMINATION = "no_ir_illumination"
    SENSOR_INTEGRITY = "sensor_integrity"
    ERROR_CAPTURE = "error_capture"
    ERROR_SYNC = "error_sync"
    ERROR_REGISTER = "error_register"
    ERROR_LOCATE = "error_locate"
    ERROR_PREPROCESS = "error_preprocess"
    ERROR_INFER = "error_infer"
    ERROR_POLICY = "error_policy"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def missing(cls, m: Modality) -> "Reason":
        return cls(f"missing_{Modality.parse(m).value}")


#: pipeline stage names, in order, used as keys of ``Decision.latency_ms``
STAGES = ("capture", "sync", "register", "locate", "preprocess", "infer", "policy", "total")


@dataclass(frozen=True, slots=True)
class Decision:
    """A liveness decision for one frame set.

    Attributes:
        verdict: live / spoof / unknown (unknown whenever evidence is missing, stale or failed).
        score: fused P(live) of this frame in [0, 1], or None when no score was computed.
        threshold: the manifest threshold in force (live needs votes with score >= threshold).
        evidence: per-modality head scores P(live), when the model has them.
        reasons: why (closed set, see :class:`Reason`).
        timestamp_ns: timestamp of the frame set decided on (host monotonic ns).
        latency_ms: per-stage latency (keys from :data:`STAGES`) in ms.
        modalities: modalities actually used for the score.
        face_box: face box ``(x, y, w, h)`` in rgb pixels, when one was found.
        hints: user-guidance hints (e.g. ``"move_closer"``).
    """

    verdict: Verdict
    score: float | None
    threshold: float
    evidence: Mapping[Modality, float] = field(default_factory=dict)
    reasons: tuple[Reason, ...] = ()
    timestamp_ns: int = 0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    modalities: frozenset[Modality] = frozenset()
    face_box: tuple[int, int, int, int] | None = None
    hints: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        return self.verdict is Verdict.LIVE

    def to_dict(self) -> dict:
        """JSON-ready dict (enums as strings)."""
        return {
            "verdict": self.verdict.value,
            "score": self.score,
            "threshold": self.threshold,
            "evidence": {str(k): float(v) for k, v in self.evidence.items()},
            "reasons": [r.value for r in self.reasons],
            "timestamp_ns": self.timestamp_ns,
            "latency_ms": {k: round(float(v), 3) for k, v in self.latency_ms.items()},
            "modalities": sorted(m.value for m in self.modalities),
            "face_box": list(self.face_box) if self.face_box else None,
            "hints": list(self.hints),
        }
