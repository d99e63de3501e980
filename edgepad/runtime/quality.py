"""Quality gates on a located face: size, border, blur, depth validity, IR illumination, and pose/inter-eye
distance from the landmarks of the learned locator (Haar gives none: those two gates are then skipped).

Gates either *block* the frame from voting (face size, border, blur, pose: the decision is unknown with a hint
for the user) or *invalidate a modality* when its **sensor** fails (a depth frame with almost no valid pixel, an
IR frame without illumination): the modality is dropped, the model sees its fill value and the policy uses the
subset's (stricter) threshold.

Depth holes or a dark IR image *inside the face box only* while the rest of the frame is fine are not sensor
failures but presentation-attack cues (screens and glossy prints give no depth and no NIR): the modality is kept,
the model judges it, and ``invalid_depth`` is reported as information. Dropping it instead would let a screen
turn the strongest cue into "modality missing".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edgepad.errors import ConfigError
from edgepad.types import FrameSet, Modality, Reason

#: user-guidance hints (stable strings for UIs)
HINT_MOVE_CLOSER = "move_closer"
HINT_MOVE_BACK = "move_back"
HINT_CENTRE = "centre_your_face"
HINT_HOLD_STILL = "hold_still"
HINT_FACE_CAMERA = "face_the_camera"
HINT_NO_FACE = "look_at_the_camera"
#: head turned too far: turn to the subject's own left / right (landmark yaw; for an unmirrored camera)
HINT_TURN_LEFT = "turn_left"
HINT_TURN_RIGHT = "turn_right"


@dataclass(frozen=True)
class QualityConfig:
    """Gate thresholds (pixels refer to the rgb image).

    Attributes:
        min_face_px / max_face_frac: face side range (px; fraction of the image height).
        border_px: a face box closer than this to an image edge is at the border.
        min_sharpness: variance of the Laplacian of the grey rgb crop (0..255 scale) below which it is blurred.
        min_depth_valid: fraction of valid depth pixels in the central face region below which ``invalid_depth``
            is reported (information; the depth is still used).
        min_depth_frame_valid: fraction of valid pixels in the whole depth frame below which the depth sensor
            has failed (depth dropped).
        min_ir_mean / min_ir_std: whole IR frame mean / standard deviation (8-bit) below which the illuminator
            is off (IR dropped).
        min_inter_eye_px: inter-eye distance (px) below which the face is too far (``move_closer``). 22 px =
            1.5 m, the far end of access control, for a 54 mm inter-pupillary distance (5th percentile of adults)
            at fx 615 px (RealSense 640×480 colour): ``fx · ipd / z``.
        max_roll_deg: eye-line tilt above which the pose blocks (``face_the_camera``).
        max_yaw_ratio: nose-tip offset from the eyes' midpoint, over the inter-eye distance, above which the head
            is turned too far (``turn_left`` / ``turn_right``). The nose tip stands ~1/3 of the inter-eye distance
            in front of the eye plane, so the ratio is ~0.33·tan(yaw): 0.35 ≈ 45°. Frames within the model's
            ±30° training range reach 0.32 (p99) through landmark noise (docs/RUNTIME.md), so it is not lower.
        Landmark gates are skipped without landmarks (Haar).
    """

    min_face_px: int = 48
    max_face_frac: float = 0.9
    border_px: int = 2
    min_sharpness: float = 4.0
    min_depth_valid: float = 0.4
    min_depth_frame_valid: float = 0.05
    min_ir_mean: float = 8.0
    min_ir_std: float = 1.0
    min_inter_eye_px: float = 22.0
    max_roll_deg: float = 25.0
    max_yaw_ratio: float = 0.35

    def __post_init__(self) -> None:
        if not (0 < self.max_face_frac <= 1.5 and 0 <= self.min_depth_valid <= 1 and self.min_face_px > 0):
            raise ConfigError("quality: need 0 < max_face_frac, 0 <= min_depth_valid <= 1, min_face_px > 0",
                              key="quality")


@dataclass(frozen=True)
class QualityReport:
    """Outcome of the gates for one frame.

    Attributes:
        reasons: blocking and informational reasons.
        hints: user-guidance hints.
        invalid: modalities to treat as missing (``invalid_depth`` / ``no_ir_illumination``).
        metrics: the measured values (sharpness, depth_valid, ir_mean, ir_std, face_px, inter_eye_px).
    """

    reasons: tuple[Reason, ...] = ()
    hints: tuple[str, ...] = ()
    invalid: frozenset[Modality] = frozenset()
    metrics: Mapping[str, float] = field(default_factory=dict)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (float, 0..255 scale)."""
    g = np.asarray(grey, np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1]) - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def depth_valid_sample(depth: np.ndarray) -> float:
    """Fraction of valid (non-zero) pixels of a depth image, on a 4-px lattice (the frame-level sensor check)."""
    return float((depth[::4, ::4] > 0).mean())


def check_quality(frameset: FrameSet, box: tuple[int, int, int, int], crops: Mapping[Modality, np.ndarray],
                  config: QualityConfig | None = None, *, depth_valid_fraction: float | None = None,
                  landmarks: np.ndarray | None = None,
                  depth_frame_valid_fraction: float | None = None) -> QualityReport:
    """Run the gates.

    Args:
        frameset: the frames (rgb image size is used).
        box: face box ``(x, y, w, h)`` in rgb pixels.
        crops: raw crops from :func:`edgepad.preprocess.face_crops`.
        depth_valid_fraction: valid-depth fraction in the central face region (from ``crop_face``); computed
            from the depth crop's central window when None.
        landmarks: ``5×2`` landmarks or None.
        depth_frame_valid_fraction: valid fraction of the whole depth frame (the sensor check); computed from
            ``frameset``'s depth on a 4-px lattice when None. The pipeline passes it, measured on the raw depth
            frame, when it registers only the face window (the rest of the registered frame is then 0).
    """
    cfg = config or QualityConfig()
    reasons: list[Reason] = []
    hints: list[str] = []
    invalid: set[Modality] = set()
    metrics: dict[str, float] = {}
    rgb = frameset.get(Modality.RGB)
    x, y, w, h = box
    side = min(w, h)
    metrics["face_px"] = float(side)
    if rgb is not None:
        ih, iw = rgb.data.shape[:2]
        if side < cfg.min_face_px:
            reasons.append(Reason.FACE_TOO_SMALL)
            hints.append(HINT_MOVE_CLOSER)
        elif max(w, h) > cfg.max_face_frac * ih:
            reasons.append(Reason.FACE_TOO_LARGE)
            hints.append(HINT_MOVE_BACK)
        b = cfg.border_px
        if x < b or y < b or x + w > iw - b or y + h > ih - b:
            reasons.append(Reason.FACE_AT_BORDER)
            hints.append(HINT_CENTRE)
    crop = crops.get(Modality.RGB)
    if crop is not None:
        grey = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        s = sharpness(grey)
        metrics["sharpness"] = s
        if s < cfg.min_sharpness:
            reasons.append(Reason.BLUR)
            hints.append(HINT_HOLD_STILL)
    if Modality.DEPTH in crops:
        frac = depth_valid_fraction
        if frac is None:
            d = crops[Modality.DEPTH]
            hh, ww = d.shape
            c = d[hh // 4: hh - hh // 4, ww // 4: ww - ww // 4]
            frac = float((c > 0).mean()) if c.size else 0.0
        metrics["depth_valid"] = float(frac)
        depth = frameset.get(Modality.DEPTH)
        if depth_frame_valid_fraction is not None:
            frame_frac = float(depth_frame_valid_fraction)
        else:
            frame_frac = depth_valid_sample(depth.data) if depth is not None else float(frac)
        metrics["depth_frame_valid"] = frame_frac
        if frame_frac < cfg.min_depth_frame_valid:
            reasons.append(Reason.INVALID_DEPTH)
            invalid.add(Modality.DEPTH)
        elif frac < cfg.min_depth_valid:
            reasons.append(Reason.INVALID_DEPTH)  # information: the model sees the holes
    if Modality.IR in crops:
        ir = crops[Modality.IR]
        hh, ww = ir.shape
        c = ir[hh // 4: hh - hh // 4, ww // 4: ww - ww // 4].astype(np.float32)
        metrics["ir_mean"], metrics["ir_std"] = float(c.mean()), float(c.std())
        irf = frameset.get(Modality.IR)
        sample = irf.data[::4, ::4].astype(np.float32) if irf is not None else c
        if irf is not None and irf.data.dtype == np.uint16:
            sample = sample / 257.0
        metrics["ir_frame_mean"], metrics["ir_frame_std"] = float(sample.mean()), float(sample.std())
        if metrics["ir_frame_mean"] < cfg.min_ir_mean or metrics["ir_frame_std"] < cfg.min_ir_std:
            reasons.append(Reason.NO_IR_ILLUMINATION)
            invalid.add(Modality.IR)
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        if lm.shape[0] >= 3 and np.all(np.isfinite(lm)):
            eye_r, eye_l, nose = lm[0], lm[1], lm[2]
            d = float(np.hypot(*(eye_l - eye_r)))
            metrics["inter_eye_px"] = d
            if d < cfg.min_inter_eye_px:
                if Reason.FACE_TOO_SMALL not in reasons:
                    reasons.append(Reason.FACE_TOO_SMALL)
                    hints.append(HINT_MOVE_CLOSER)
            roll = abs(math.degrees(math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])))
            roll = min(roll, 180.0 - roll)
            mid = (eye_l + eye_r) / 2.0
            yaw_ratio = abs(float(nose[0] - mid[0])) / max(d, 1e-6)
            metrics["roll_deg"], metrics["yaw_ratio"] = roll, yaw_ratio
            if roll > cfg.max_roll_deg or yaw_ratio > cfg.max_yaw_ratio:
                reasons.append(Reason.FACE_POSE)
                if yaw_ratio > cfg.max_yaw_ratio:
                    # landmark 0 is the image-left eye (the subject's right eye, unmirrored camera): a nose right
                    # of the eyes' midpoint in the image = head turned to the subject's left -> turn right
                    hints.append(HINT_TURN_RIGHT if nose[0] > mid[0] else HINT_TURN_LEFT)
                else:
                    hints.append(HINT_FACE_CAMERA)
    return QualityReport(tuple(dict.fromkeys(reasons)), tuple(dict.fromkeys(hints)), frozenset(invalid), metrics)
