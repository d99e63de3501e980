"""Capture mode: collect simultaneous RGB / IR (/ depth) board views from any edgepad source, with guidance.

The person holding the board is told which image regions (a grid per camera) and which tilts are still missing;
blurred, moving, partial and duplicate views are rejected with a reason. The library never prints: progress is
handed to a callback (the CLI prints :func:`CoverageTracker.text` and, when a display exists, shows a window).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.sync import Synchronizer
from edgepad.errors import ConfigError, EndOfStream
from edgepad.geometry import Intrinsics
from edgepad.types import Frame, Modality

from edgepad.calibration.board import BoardSpec, Detection, detect_board, to_gray
from edgepad.calibration.solve import estimate_pose, guess_intrinsics
from edgepad.calibration.tool import View

cv2 = lazy("cv2")
log = logging.getLogger(__name__)

TILT_BINS = ("frontal", "left", "right", "up", "down")


@dataclass(frozen=True)
class CaptureConfig:
    """Acceptance rules and targets of capture mode.

    Attributes:
        views: stop after this many accepted views.
        grid: coverage grid (columns, rows) per camera.
        min_corner_fraction: a view showing less of the board than this is "partial" (ChArUco).
        min_sharpness: minimum normalised sharpness (see :func:`sharpness`) of the board region.
        still_px: a board that moved more than this between consecutive frames is "moving" (IR needs still views).
        duplicate_frac: a view whose corners are within this fraction of the image diagonal of an accepted
            view (same corners) is a "duplicate".
        tilt_deg: tilt beyond which a view counts for a left/right/up/down bin.
        pair_tolerance_ms: max time between the RGB and IR frames of one view.
        max_seconds: give up after this long (0 = no limit).
    """

    views: int = 20
    grid: tuple[int, int] = (3, 3)
    min_corner_fraction: float = 0.5
    min_sharpness: float = 0.22
    still_px: float = 1.5
    duplicate_frac: float = 0.04
    tilt_deg: float = 15.0
    pair_tolerance_ms: float = 20.0
    max_seconds: float = 0.0


def sharpness(gray: np.ndarray, det: Detection) -> float:
    """Normalised sharpness of the board region: mean |∇I| at the corners' neighbourhood edges / contrast.

    Scale-free: the steepest intensity step across an edge (grey levels per px) divided by the board's
    black-white contrast. A rendered sharp edge gives ≈ 0.5, Gaussian blur σ = 1 / 1.5 / 1.8 px ≈ 0.33 / 0.24 / 0.21.
    """
    x0, y0 = np.floor(det.image_points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(det.image_points.max(axis=0)).astype(int)
    h, w = gray.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
    roi = gray[y0:y1, x0:x1].astype(np.float32)
    if roi.size < 16:
        return 0.0
    gx = cv2.Sobel(roi, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(roi, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = np.sqrt(gx * gx + gy * gy)
    contrast = float(np.percentile(roi, 95) - np.percentile(roi, 5))
    if contrast < 1.0:
        return 0.0
    return float(np.percentile(mag, 99.5)) / contrast


def tilt_bin(det: Detection, intr: Intrinsics, tilt_deg: float) -> str:
    """``frontal``, ``left``, ``right``, ``up`` or ``down``: where the board's normal points (camera frame)."""
    pose = estimate_pose(det, intr)
    if pose is None:
        return "frontal"
    r, _ = cv2.Rodrigues(pose[0].reshape(3, 1))
    n = r[:, 2] * (-1.0 if r[2, 2] > 0 else 1.0)  # normal pointing back to the camera
    yaw = np.degrees(np.arctan2(n[0], -n[2]))
    pitch = np.degrees(np.arctan2(n[1], -n[2]))
    if max(abs(yaw), abs(pitch)) < tilt_deg:
        return "frontal"
    if abs(yaw) >= abs(pitch):
        return "right" if yaw > 0 else "left"
    return "down" if pitch > 0 else "up"


@dataclass
class CoverageTracker:
    """Which grid cells of each camera image and which tilt bins the accepted views cover."""

    grid: tuple[int, int] = (3, 3)
    cells: dict[Modality, np.ndarray] = field(default_factory=dict)
    tilts: dict[str, int] = field(default_factory=lambda: {b: 0 for b in TILT_BINS})
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    last_reason: str = ""

    def add(self, m: Modality, det: Detection) -> None:
        gx, gy = self.grid
        self.cells[m] = self.cells.get(m, np.zeros((gy, gx), int)) + det.cell_counts(self.grid)

    def missing_cells(self, m: Modality, min_corners: int = 3) -> list[str]:
        gx, gy = self.grid
        counts = self.cells.get(m, np.zeros((gy, gx), int))
        rows = ["top", "middle", "bottom"] if gy == 3 else [f"row {i}" for i in range(gy)]
        cols = ["left", "centre", "right"] if gx == 3 else [f"col {i}" for i in range(gx)]
        return [f"{rows[y]}-{cols[x]}" for y in range(gy) for x in range(gx) if counts[y, x] < min_corners]

    def missing_tilts(self) -> list[str]:
        return [b for b, n in self.tilts.items() if n == 0]

    def complete(self) -> bool:
        return not self.missing_tilts() and all(not self.missing_cells(m) for m in self.cells)

    def text(self, target: int | None = None) -> str:
        """Console summary: per-camera coverage grids, tilt bins, what is missing, rejection counts."""
        lines = [f"views accepted: {self.accepted}" + (f"/{target}" if target else "")]
        gx, gy = self.grid
        mods = sorted(self.cells, key=lambda m: m.value)
        if mods:
            lines.append("   ".join(f"{m.value + ' coverage':<{3 * gx + 2}}" for m in mods))
            for y in range(gy):
                lines.append("   ".join(
                    "".join("[#]" if self.cells[m][y, x] >= 3 else "[ ]" for x in range(gx)) + "  " for m in mods))
        lines.append("tilts: " + "  ".join(f"{b} {'ok' if n else '--'}" for b, n in self.tilts.items()))
        todo = [f"{m.value}: {', '.join(self.missing_cells(m))}" for m in mods if self.missing_cells(m)]
        if self.missing_tilts():
            todo.append("tilt the board " + ", ".join(self.missing_tilts()))
        if todo:
            lines.append("still missing: " + "; ".join(todo))
        if self.rejected:
            lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())))
        if self.last_reason:
            lines.append(f"last: {self.last_reason}")
        return "\n".join(lines)


class ViewCollector:
    """Accepts or rejects candidate views (dicts of images per modality) and tracks coverage.

    Args:
        spec: the board.
        config: acceptance rules.
        intrinsics: per-camera intrinsics for the tilt estimate (a device's factory values; a guess when absent).
    """

    def __init__(self, spec: BoardSpec, config: CaptureConfig = CaptureConfig(),
                 intrinsics: dict[Modality, Intrinsics] | None = None) -> None:
        self.spec = spec
        self.config = config
        self.intrinsics = dict(intrinsics or {})
        self.coverage = CoverageTracker(config.grid)
        self.views: list[View] = []
        self._accepted_dets: list[dict[Modality, Detection]] = []
        self._previous: dict[Modality, Detection] = {}

    def _reject(self, reason: str) -> str:
        key = reason.split(": ", 1)[-1].split(" (")[0].strip()  # the whole reason, without its figures
        self.coverage.rejected[key] = self.coverage.rejected.get(key, 0) + 1
        self.coverage.last_reason = "rejected: " + reason
        return reason

    def offer(self, images: dict[Modality, np.ndarray], depth: np.ndarray | None = None) -> str | None:
        """Consider one simultaneous set of images; returns None when accepted, else the rejection reason."""
        cfg = self.config
        found: dict[Modality, tuple[np.ndarray, Detection | None, Detection | None]] = {}
        for m, img in images.items():  # detect in every camera first so "moving" always compares consecutive frames
            gray = to_gray(img)
            det = detect_board(gray, self.spec)
            found[m] = (gray, det, self._previous.get(m))
            if det is not None:
                self._previous[m] = det
            else:
                self._previous.pop(m, None)
        dets: dict[Modality, Detection] = {}
        for m, (gray, det, prev) in found.items():
            if det is None:
                return self._reject(f"{m.value}: no board")
            if self.spec.kind == "charuco" and det.count < cfg.min_corner_fraction * self.spec.n_corners:
                return self._reject(f"{m.value}: partial ({det.count}/{self.spec.n_corners} corners)")
            if prev is not None:
                common = np.intersect1d(prev.ids, det.ids)
                if len(common) >= 4:
                    move = np.median(np.linalg.norm(prev.subset(common).image_points
                                                    - det.subset(common).image_points, axis=1))
                    if move > cfg.still_px:
                        return self._reject(f"{m.value}: moving ({move:.1f} px between frames; hold still)")
            s = sharpness(gray, det)
            if s < cfg.min_sharpness:
                return self._reject(f"{m.value}: blurred (sharpness {s:.3f} < {cfg.min_sharpness})")
            dets[m] = det
        for old in self._accepted_dets:
            if self._is_duplicate(old, dets):
                return self._reject("duplicate (this pose is already captured; move or tilt the board)")
        ref = Modality.RGB if Modality.RGB in dets else next(iter(dets))
        det = dets[ref]
        intr = self.intrinsics.get(ref) or guess_intrinsics(*det.image_size)
        self.coverage.tilts[tilt_bin(det, intr, cfg.tilt_deg)] += 1
        for m, d in dets.items():
            self.coverage.add(m, d)
        self._accepted_dets.append(dets)
        self.coverage.accepted += 1
        name = f"{len(self.views):04d}"
        self.views.append(View(name, images.get(Modality.RGB), images.get(Modality.IR), depth))
        self.coverage.last_reason = f"accepted view {name}"
        return None

    def _is_duplicate(self, old: dict[Modality, Detection], new: dict[Modality, Detection]) -> bool:
        return all(m in old and old[m].same_view(d, self.config.duplicate_frac) for m, d in new.items())

    @property
    def done(self) -> bool:
        return len(self.views) >= self.config.views


def _image_of(frame: Frame) -> np.ndarray:
    return np.asarray(frame.data)


def capture_views(sources: Sequence, spec: BoardSpec, config: CaptureConfig = CaptureConfig(), *,
                  on_update: Callable[[ViewCollector, dict[Modality, np.ndarray] | None], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> ViewCollector:
    """Read frames from opened ``sources`` until ``config.views`` views are accepted (or the stream ends).

    RGB and IR frames are paired with :class:`edgepad.drivers.sync.Synchronizer` (tolerance
    ``config.pair_tolerance_ms``); a depth frame is attached when the sources provide one.

    Args:
        sources: opened frame sources (``read(timeout_s)`` tri-state) that together provide rgb and/or ir.
        spec: the board.
        config: acceptance rules.
        on_update: called after every candidate with the collector and the candidate's images (None on timeout).
        should_stop: polled between frames; True ends the capture early.

    Returns:
        The collector (``.views``, ``.coverage``).
    """
    mods: set[Modality] = set()
    intr: dict[Modality, Intrinsics] = {}
    for s in sources:
        mods |= set(s.modalities)
        try:
            intr.update(s.intrinsics())
        except Exception:  # a source without a rig before its first frame: guess later
            pass
    required = [m for m in (Modality.RGB, Modality.IR) if m in mods]
    if not required:
        raise ConfigError("capture needs a source with rgb and/or ir frames", key="source")
    optional = [Modality.DEPTH] if Modality.DEPTH in mods and Modality.IR in required else []
    sync = Synchronizer(required, int(config.pair_tolerance_ms * 1e6), max_pending=4, optional=optional)
    collector = ViewCollector(spec, config, intr)
    t0 = time.monotonic()
    live = list(sources)
    while live and not collector.done:
        if should_stop is not None and should_stop():
            break
        if config.max_seconds and time.monotonic() - t0 > config.max_seconds:
            log.warning("capture stopped after %.0f s with %d views", config.max_seconds, len(collector.views))
            break
        for s in list(live):
            try:
                frame = s.read(timeout_s=0.2)
            except EndOfStream:
                live.remove(s)
                continue
            if frame is None:
                if on_update is not None:
                    on_update(collector, None)
                continue
            if frame.modality not in required and frame.modality not in optional:
                continue
            fs = sync.push(frame)
            if fs is None:
                continue
            images = {m: _image_of(fs[m]) for m in required}
            depth_frame = fs.get(Modality.DEPTH)
            collector.offer(images, _image_of(depth_frame) if depth_frame is not None else None)
            if on_update is not None:
                on_update(collector, images)
            if collector.done:
                break
    return collector
