"""``calibrate_rig``: board views (folders or a live capture) → intrinsics, extrinsics → a :class:`Rig`.

Also: reading view folders (RGB and IR paired by file name), importing a RealSense device's factory calibration
into the rig format and comparing two rigs.
"""
from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.realsense import read_factory_rig
from edgepad.errors import CalibrationError, ConfigError
from edgepad.geometry import Extrinsics, Rig
from edgepad.types import Modality

from edgepad.calibration.board import (BoardSpec, Detection, check_board_consistency, detect_board,
                                       explain_no_board, rotate_detection_180)
from edgepad.calibration.solve import IntrinsicsResult, StereoResult, calibrate_intrinsics, calibrate_stereo

cv2 = lazy("cv2")
log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
_MODALITY_TOKEN = re.compile(r"^(rgb|color|colour|ir|nir|infrared|ir1|ir2|depth|left|right)[_\-.]?|[_\-.]?(rgb|color|colour|"
                             r"ir|nir|infrared|ir1|ir2|depth|left|right)$", re.IGNORECASE)


@dataclass
class View:
    """One moment of the board seen by the cameras.

    Attributes:
        name: pairing key (file stem without a modality token, or a capture counter).
        rgb: ``H×W×3`` uint8 RGB, or None.
        ir: ``H×W`` uint8/uint16 grey, or None.
        depth: ``H×W`` uint16 raw depth in the IR camera (RealSense), or None.
    """

    name: str
    rgb: np.ndarray | None = None
    ir: np.ndarray | None = None
    depth: np.ndarray | None = None

    def image(self, m: Modality) -> np.ndarray | None:
        return self.rgb if m is Modality.RGB else self.ir if m is Modality.IR else None


@dataclass(frozen=True)
class SolveOptions:
    """Options of :func:`calibrate_rig` (also the ``edgepad calibrate`` flags).

    Attributes:
        fix_k3: keep k3 = 0.
        zero_tangent: keep p1 = p2 = 0.
        min_views: fewer usable views per camera is an error.
        drop_outliers: re-solve without views flagged as outliers.
        outlier_factor: a view is an outlier above this multiple of the median view RMS (and median + 0.5 px).
        refine_intrinsics: True refines both cameras jointly with the extrinsics, False keeps them fixed, None
            (default) refines only when that lowers the transfer error of held-back pairs (``calibrate_stereo``).
        depth_from_ir: add a depth camera identical to the IR camera (RealSense: depth lives in the left-IR frame).
        depth_scale_m: metres per raw depth unit for the depth entry.
        limits: go/no-go thresholds (:class:`VerdictLimits`).
        prior: a rig whose focal lengths are expected (e.g. the factory calibration), or None (broad prior).
    """

    fix_k3: bool = False
    zero_tangent: bool = False
    min_views: int = 4
    drop_outliers: bool = False
    outlier_factor: float = 3.0
    refine_intrinsics: bool | None = None
    depth_from_ir: bool = True
    depth_scale_m: float = 0.001
    limits: "VerdictLimits" = field(default_factory=lambda: VerdictLimits())
    prior: Rig | None = None

    def __post_init__(self) -> None:
        if self.min_views < 3:
            raise ConfigError(f"min_views must be >= 3, got {self.min_views}", key="min_views")


@dataclass
class CalibrationRun:
    """Everything a calibration produced (the rig plus what the report shows).

    Attributes:
        rig: the solved rig (reference rgb).
        spec: the board.
        options: the options used.
        views: the input views (images kept for the report).
        detections: modality -> view name -> Detection or None.
        mono: modality -> single-camera result.
        stereo: IR -> RGB result, or None for an RGB-only run.
        rejected: view name -> reason (e.g. "ir: no board").
        verdict: the go/no-go assessment (:func:`assess`).
    """

    rig: Rig
    spec: BoardSpec
    options: SolveOptions
    views: list[View]
    detections: dict[Modality, dict[str, Detection | None]]
    mono: dict[Modality, IntrinsicsResult]
    stereo: StereoResult | None
    rejected: dict[str, str] = field(default_factory=dict)
    verdict: "Verdict | None" = None


# ----------------------------------------------------------------------------------------------- folders
def pairing_key(path: Path) -> str:
    """File stem without a leading/trailing modality token: ``rgb_0003.png`` and ``ir-0003.png`` → ``0003``."""
    stem = path.stem
    key = _MODALITY_TOKEN.sub("", stem)
    return key or stem


def _list_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of images", key=str(folder))
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out: dict[str, Path] = {}
    for p in files:
        k = pairing_key(p)
        if k in out:
            raise ConfigError(f"{folder}: {out[k].name} and {p.name} have the same pairing key {k!r}; rename one",
                              key=str(p))
        out[k] = p
    if not out:
        raise CalibrationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}", views=0)
    return out


def read_image(path: Path, modality: Modality) -> np.ndarray:
    """RGB uint8 ``H×W×3`` for rgb, grey ``H×W`` (8/16 bit) for ir, uint16 ``H×W`` for depth."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CalibrationError(f"cannot read image {path}")
    if modality is Modality.RGB:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        return img if img.dtype == np.uint8 else (img / 257).astype(np.uint8)
    if modality is Modality.IR:
        return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    if img.dtype != np.uint16 or img.ndim != 2:
        raise CalibrationError(f"{path}: depth images must be 16-bit single-channel PNGs, got {img.dtype} "
                               f"{img.shape}")
    return img


def load_folder_views(rgb_dir: Path | str, ir_dir: Path | str | None = None,
                      depth_dir: Path | str | None = None) -> list[View]:
    """Views from folders; RGB and IR (and depth) images are paired by :func:`pairing_key`.

    Files without a partner are skipped with a warning when an IR folder is given.
    """
    rgb = _list_images(Path(rgb_dir))
    ir = _list_images(Path(ir_dir)) if ir_dir is not None else None
    depth = _list_images(Path(depth_dir)) if depth_dir is not None else {}
    keys = sorted(rgb) if ir is None else sorted(set(rgb) & set(ir))
    if ir is not None:
        unpaired = sorted(set(rgb) ^ set(ir))
        if unpaired:
            log.warning("%d images have no partner in the other folder and are skipped: %s", len(unpaired),
                        ", ".join(unpaired[:8]))
        if not keys:
            raise CalibrationError(f"no RGB/IR image pairs: file names in {rgb_dir} and {ir_dir} share no pairing "
                                   f"key (e.g. rgb_0001.png ↔ ir_0001.png)", views=0)
    views = []
    for k in keys:
        views.append(View(k, read_image(rgb[k], Modality.RGB),
                          read_image(ir[k], Modality.IR) if ir is not None else None,
                          read_image(depth[k], Modality.DEPTH) if k in depth else None))
    return views


def save_views(views: Sequence[View], folder: Path | str) -> Path:
    """Write views as ``rgb/<name>.png``, ``ir/<name>.png`` and ``depth/<name>.png`` (re-usable offline)."""
    folder = Path(folder)
    for v in views:
        for sub, img in (("rgb", v.rgb), ("ir", v.ir), ("depth", v.depth)):
            if img is None:
                continue
            (folder / sub).mkdir(parents=True, exist_ok=True)
            out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if sub == "rgb" else img
            cv2.imwrite(str(folder / sub / f"{v.name}.png"), out)
    return folder


# ----------------------------------------------------------------------------------------------- solve
def detect_views(views: Sequence[View], spec: BoardSpec, modality: Modality) -> dict[str, Detection | None]:
    """Detections of one camera over all views that have its image (None = board not found)."""
    out: dict[str, Detection | None] = {}
    for v in views:
        img = v.image(modality)
        if img is not None:
            out[v.name] = detect_board(img, spec)
    return out


def _check_found(views: Sequence[View], dets: Mapping[str, Detection | None], spec: BoardSpec,
                 modality: Modality) -> None:
    found = [d for d in dets.values() if d is not None]
    if not found:
        first = next(v.image(modality) for v in views if v.image(modality) is not None)
        hint = explain_no_board(first, spec)
        if hint:
            raise ConfigError(f"board file contradicts the {modality.value} images: {hint}", key="board")
        raise CalibrationError(f"no board found in any of the {len(dets)} {modality.value} images: check the board "
                               f"file (kind {spec.kind}, {spec.squares_x}x{spec.squares_y} squares"
                               + (f", {spec.dictionary}" if spec.kind == "charuco" else "")
                               + "), lighting (IR: emitter off, IR illuminator on) and focus", views=0)
    ratios = []
    for d in found:
        try:
            check_board_consistency(d, spec)
            ratios.append(True)
        except ConfigError:
            ratios.append(False)
    if ratios and sum(ratios) < len(ratios) / 2:
        check_board_consistency(next(d for d, ok in zip(found, ratios) if not ok), spec)


def calibrate_rig(views: Sequence[View], spec: BoardSpec, options: SolveOptions | None = None,
                  provenance: Mapping[str, str] | None = None) -> CalibrationRun:
    """Solve a rig from board views.

    RGB is the reference camera. With IR images, the IR camera's intrinsics and the IR → RGB extrinsics are
    solved; with ``options.depth_from_ir`` the rig also gets a depth camera equal to the IR camera (a RealSense
    depth frame is defined in the left-IR frame).

    Raises:
        CalibrationError: no board, too few views, degenerate views, mismatched image sizes, failed solve.
        ConfigError: the board file contradicts the images.
    """
    options = options if options is not None else SolveOptions()
    if not views:
        raise CalibrationError("no views to calibrate from", views=0)
    if any(v.rgb is None for v in views):
        raise CalibrationError("every view needs an RGB image (the rig's reference camera)")
    has_ir = any(v.ir is not None for v in views)
    modalities = [Modality.RGB] + ([Modality.IR] if has_ir else [])
    detections: dict[Modality, dict[str, Detection | None]] = {}
    rejected: dict[str, str] = {}
    mono: dict[Modality, IntrinsicsResult] = {}
    for m in modalities:
        dets = detect_views(views, spec, m)
        _check_found(views, dets, spec, m)
        detections[m] = dets
        for name, d in dets.items():
            if d is None:
                rejected[name] = (rejected.get(name, "") + f" {m.value}: no board").strip()
        usable = {n: d for n, d in dets.items() if d is not None}
        mono[m] = calibrate_intrinsics(list(usable.values()), list(usable), fix_k3=options.fix_k3,
                                       zero_tangent=options.zero_tangent, min_views=options.min_views,
                                       outlier_factor=options.outlier_factor, drop_outliers=options.drop_outliers,
                                       camera=m.value)
    for m, res in mono.items():
        for name in res.outliers:
            rejected.setdefault(name, f"{m.value}: outlier ({res.outliers[name]:.2f} px)"
                                + (" dropped" if res.dropped else " kept"))
    stereo = None
    rgb_intr = mono[Modality.RGB].intrinsics
    intrinsics = {Modality.RGB: rgb_intr}
    to_ref = {Modality.RGB: Extrinsics.identity()}
    if has_ir:
        ir_res = mono[Modality.IR]
        names = [n for n in mono[Modality.RGB].names if n in ir_res.names]
        stereo = calibrate_stereo([detections[Modality.RGB][n] for n in names],
                                  [detections[Modality.IR][n] for n in names], rgb_intr, ir_res.intrinsics, names,
                                  min_pairs=min(3, options.min_views), outlier_factor=options.outlier_factor,
                                  drop_outliers=options.drop_outliers, refine_intrinsics=options.refine_intrinsics,
                                  fix_k3=options.fix_k3, zero_tangent=options.zero_tangent,
                                  flip=(lambda d: rotate_detection_180(d, spec)) if spec.kind == "chessboard" else None)
        for n in stereo.flipped:
            detections[Modality.IR][n] = rotate_detection_180(detections[Modality.IR][n], spec)
            rejected.setdefault(n, "ir: corner numbering turned 180 deg to agree with the other pairs")
        for n, why in stereo.inconsistent.items():
            rejected.setdefault(n, f"pair left out: {why}")
        intrinsics = {Modality.RGB: stereo.ref_intrinsics or rgb_intr, Modality.IR: stereo.other_intrinsics
                      or ir_res.intrinsics}
        to_ref[Modality.IR] = stereo.extrinsics
        if options.depth_from_ir:
            intrinsics[Modality.DEPTH] = intrinsics[Modality.IR]
            to_ref[Modality.DEPTH] = stereo.extrinsics
    prov = {
        "tool": "edgepad calibrate",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "board": f"{spec.kind} {spec.squares_x}x{spec.squares_y} square {spec.square_m} m"
                 + (f" marker {spec.marker_m} m {spec.dictionary}" if spec.kind == "charuco" else ""),
        "views": str(len(views)),
    }
    for m, res in mono.items():
        prov[f"rms_px.{m.value}"] = f"{res.rms_px:.4f}"
        prov[f"views_used.{m.value}"] = str(len(res.names))
    if stereo is not None:
        prov["rms_px.stereo"] = f"{stereo.rms_px:.4f}"
        prov["pairs_used"] = str(len(stereo.names))
        if options.depth_from_ir:
            prov["depth"] = "depth camera = IR camera (RealSense left-IR frame)"
        prov["epipolar_px.stereo"] = f"{stereo.epipolar_px:.4f}"
        prov["intrinsics_refined_in_stereo"] = str(stereo.refined).lower()
    prov.update(provenance or {})
    run = CalibrationRun(Rig(Modality.RGB, intrinsics, to_ref,
                             options.depth_scale_m if Modality.DEPTH in intrinsics else None, prov),
                         spec, options, list(views), detections, mono, stereo, rejected)
    run.verdict = assess(run, options.limits, options.prior)
    prov.update(run.verdict.provenance())
    run.rig = Rig(run.rig.reference, run.rig.intrinsics, run.rig.to_reference, run.rig.depth_scale_m, prov)
    return run


# ----------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class VerdictLimits:
    """Go/no-go thresholds of :func:`assess` (see docs/CALIBRATION.md).

    Attributes:
        max_rms_px: per-camera reprojection RMS (px).
        max_stereo_rms_px: stereo reprojection RMS (px).
        max_epipolar_px: RMS distance of corners to their epipolar lines (px).
        max_focal_std_pct: solver standard deviation of fx and fy, % of the value.
        max_pp_std_px: solver standard deviation of cx and cy (px).
        min_coverage: fraction of the cells of a 3x3 grid over each image holding >= 3 corners.
        hfov_deg: broad physical prior on the horizontal field of view (no prior rig).
        max_prior_focal_pct: focal length vs the prior rig's (%).
        max_aspect_pct: |fx / fy - 1| (%).
        max_abs_k1: |k1| (a pinhole + Brown-Conrady lens beyond this is a failed solve, not a lens).
        max_refine_shift_pct: how far the joint stereo refinement may move a focal length from the mono solve (%).
        max_duplicate_fraction: share of views that repeat an earlier view.
        max_inconsistent_fraction: share of stereo pairs left out for disagreeing numbering/rotation.
    """

    max_rms_px: float = 1.0
    max_stereo_rms_px: float = 1.0
    max_epipolar_px: float = 1.0
    max_focal_std_pct: float = 1.0
    max_pp_std_px: float = 5.0
    min_coverage: float = 0.5
    hfov_deg: tuple[float, float] = (30.0, 120.0)
    max_prior_focal_pct: float = 5.0
    max_aspect_pct: float = 3.0
    max_abs_k1: float = 1.0
    max_refine_shift_pct: float = 3.0
    max_duplicate_fraction: float = 0.25
    max_inconsistent_fraction: float = 0.25


@dataclass(frozen=True)
class Check:
    """One verdict line: ``name`` measured ``value`` against ``limit``; ``ok`` False with ``fatal`` = no-go."""

    name: str
    value: float
    limit: str
    ok: bool
    detail: str = ""
    fatal: bool = True

    def text(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.fatal else "warn")
        return f"[{mark}] {self.name}: {self.value:.4g} (limit {self.limit})" + (f" {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Verdict:
    """Go/no-go of a calibration run: every check, and whether any fatal one failed."""

    checks: tuple[Check, ...]

    @property
    def go(self) -> bool:
        return all(c.ok or not c.fatal for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok and c.fatal)

    def text(self) -> str:
        head = "verdict: GO" if self.go else f"verdict: NO-GO ({', '.join(c.name for c in self.failed)})"
        return "\n".join([head] + ["  " + c.text() for c in self.checks])

    def provenance(self) -> dict[str, str]:
        out = {"verdict": "go" if self.go else "no-go"}
        for c in self.checks:
            out[f"check.{c.name}"] = f"{c.value:.4g} limit {c.limit} {'ok' if c.ok else 'fail' if c.fatal else 'warn'}"
        return out

    def to_dict(self) -> dict:
        return {"go": self.go, "checks": [{"name": c.name, "value": c.value, "limit": c.limit, "ok": c.ok,
                                           "fatal": c.fatal, "detail": c.detail} for c in self.checks]}


class CalibrationRejected(CalibrationError):
    """A calibration ran but its verdict is no-go; ``verdict`` says why (the command exits non-zero)."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__("calibration rejected: " + ", ".join(c.text() for c in verdict.failed))


def require_go(run: CalibrationRun) -> CalibrationRun:
    """``run`` when its verdict is go; raises :class:`CalibrationRejected` otherwise."""
    if run.verdict is not None and not run.verdict.go:
        raise CalibrationRejected(run.verdict)
    return run


def coverage_fraction(dets: Sequence[Detection], grid: tuple[int, int] = (3, 3), min_corners: int = 3) -> float:
    """Fraction of the cells of a ``grid`` over the image that hold at least ``min_corners`` detected corners."""
    found = [d for d in dets if d is not None]
    if not found:
        return 0.0
    return float(np.mean(sum(d.cell_counts(grid) for d in found) >= min_corners))


def duplicate_views(dets: Mapping[str, Detection | None], frac: float = 0.01) -> list[str]:
    """Views whose corners lie within ``frac`` of the image diagonal (mean) of an earlier view's same corners."""
    seen: list[Detection] = []
    dups = []
    for name, d in dets.items():
        if d is None:
            continue
        if any(o.same_view(d, frac) for o in seen):
            dups.append(name)
        else:
            seen.append(d)
    return dups


def assess(run: CalibrationRun, limits: VerdictLimits | None = None, prior: Rig | None = None) -> Verdict:
    """Go/no-go of a calibration run.

    Checks per camera: reprojection RMS, solver standard deviations of fx, fy, cx, cy, image coverage, focal
    length against ``prior`` (same camera, scaled to the image size) or the broad field-of-view prior, fx/fy
    aspect, |k1|, duplicate views; for a stereo run: stereo RMS, epipolar error, how far joint refinement moved
    the focal lengths, and pairs left out for inconsistent numbering.
    """
    lim = limits or VerdictLimits()
    checks: list[Check] = []
    for m, res in run.mono.items():
        cam = m.value
        intr = run.rig.intrinsics.get(m, res.intrinsics)
        checks.append(Check(f"{cam}.rms_px", res.rms_px, f"<= {lim.max_rms_px}", res.rms_px <= lim.max_rms_px))
        for k in ("fx", "fy"):
            if k in res.std:
                v = 100.0 * res.std[k] / getattr(res.intrinsics, k)
                checks.append(Check(f"{cam}.std_{k}_pct", v, f"<= {lim.max_focal_std_pct}",
                                    v <= lim.max_focal_std_pct))
        for k in ("cx", "cy"):
            if k in res.std:
                checks.append(Check(f"{cam}.std_{k}_px", res.std[k], f"<= {lim.max_pp_std_px}",
                                    res.std[k] <= lim.max_pp_std_px))
        cov = coverage_fraction([run.detections[m].get(n) for n in res.names])
        checks.append(Check(f"{cam}.coverage", cov, f">= {lim.min_coverage}", cov >= lim.min_coverage,
                            "(3x3 cells with >= 3 corners; add views near the uncovered edges)"))
        p_intr = prior.intrinsics.get(m) if prior is not None else None
        if p_intr is not None:
            if (p_intr.width, p_intr.height) != (intr.width, intr.height):
                p_intr = p_intr.scaled(intr.width / p_intr.width, intr.height / p_intr.height)
            dev = 100.0 * (intr.fx / p_intr.fx - 1.0)
            checks.append(Check(f"{cam}.fx_vs_prior_pct", dev, f"|.| <= {lim.max_prior_focal_pct}",
                                abs(dev) <= lim.max_prior_focal_pct, f"(prior fx {p_intr.fx:.1f})"))
        else:
            hfov = float(np.degrees(2 * np.arctan(0.5 * intr.width / intr.fx)))
            lo, hi = lim.hfov_deg
            checks.append(Check(f"{cam}.hfov_deg", hfov, f"{lo:g}..{hi:g}", lo <= hfov <= hi,
                                f"(fx {intr.fx:.1f} px at width {intr.width})"))
        aspect = 100.0 * abs(intr.fx / intr.fy - 1.0)
        checks.append(Check(f"{cam}.aspect_pct", aspect, f"<= {lim.max_aspect_pct}", aspect <= lim.max_aspect_pct))
        k1 = abs(intr.coeffs[0]) if intr.coeffs else 0.0
        checks.append(Check(f"{cam}.abs_k1", k1, f"<= {lim.max_abs_k1}", k1 <= lim.max_abs_k1))
        dups = duplicate_views(run.detections[m])
        frac = len(dups) / max(1, sum(d is not None for d in run.detections[m].values()))
        checks.append(Check(f"{cam}.duplicate_views", frac, f"<= {lim.max_duplicate_fraction}",
                            not dups,
                            f"({', '.join(dups[:6])})" if dups else "", fatal=frac > lim.max_duplicate_fraction))
    st = run.stereo
    if st is not None:
        checks.append(Check("stereo.rms_px", st.rms_px, f"<= {lim.max_stereo_rms_px}",
                            st.rms_px <= lim.max_stereo_rms_px))
        checks.append(Check("stereo.epipolar_px", st.epipolar_px, f"<= {lim.max_epipolar_px}",
                            st.epipolar_px <= lim.max_epipolar_px))
        for m, new in ((Modality.RGB, st.ref_intrinsics), (Modality.IR, st.other_intrinsics)):
            if new is not None and m in run.mono:
                shift = 100.0 * abs(new.fx / run.mono[m].intrinsics.fx - 1.0)
                checks.append(Check(f"stereo.{m.value}_fx_shift_pct", shift, f"<= {lim.max_refine_shift_pct}",
                                    shift <= lim.max_refine_shift_pct, "(joint refinement vs single-camera solve)"))
        total = len(st.names) + len(st.inconsistent)
        frac = len(st.inconsistent) / max(1, total)
        detail = (f"(left out: {', '.join(st.inconsistent)})" if st.inconsistent else "") + \
            (f" (renumbered 180 deg: {', '.join(st.flipped)})" if st.flipped else "")
        checks.append(Check("stereo.inconsistent_pairs", frac, f"<= {lim.max_inconsistent_fraction}",
                            frac <= lim.max_inconsistent_fraction and not st.inconsistent, detail.strip(),
                            fatal=frac > lim.max_inconsistent_fraction))
    return Verdict(tuple(checks))


# ----------------------------------------------------------------------------------------------- RealSense
def import_realsense(source: str | Path) -> Rig:
    """The factory calibration of a RealSense device (serial number or ``.bag``/``.db3``) as a rig.

    One reader for the device/recording calibration: :func:`edgepad.drivers.realsense.read_factory_rig`.
    """
    rig = read_factory_rig(str(source))
    return Rig(rig.reference, rig.intrinsics, rig.to_reference, rig.depth_scale_m,
               {"tool": "edgepad calibrate import-realsense", **rig.provenance})


# ----------------------------------------------------------------------------------------------- compare
def compare_rigs(a: Rig, b: Rig) -> dict[str, dict[str, float]]:
    """Differences ``b − a`` per camera present in both rigs.

    Returns:
        ``{modality: {"fx_pct", "fy_pct", "cx_px", "cy_px", "rotation_deg", "translation_mm", "size_match"}}``;
        intrinsics of different image sizes are compared after scaling ``b`` to ``a``'s size. Rotation and
        translation compare the camera → reference extrinsics (after re-expressing both in ``a``'s reference).
    """
    out: dict[str, dict[str, float]] = {}
    for m in sorted(set(a.intrinsics) & set(b.intrinsics), key=lambda x: x.value):
        ia, ib = a.intrinsics[m], b.intrinsics[m]
        size_match = (ia.width, ia.height) == (ib.width, ib.height)
        if not size_match:
            ib = ib.scaled(ia.width / ib.width, ia.height / ib.height)
        row = {"fx_pct": 100.0 * (ib.fx - ia.fx) / ia.fx, "fy_pct": 100.0 * (ib.fy - ia.fy) / ia.fy,
               "cx_px": ib.cx - ia.cx, "cy_px": ib.cy - ia.cy, "size_match": float(size_match)}
        if a.reference in b.intrinsics:
            ea = a.extrinsics(m, a.reference)
            eb = b.extrinsics(m, a.reference)
            row["rotation_deg"] = ea.then(eb.inverse()).angle_deg
            row["translation_mm"] = float(np.linalg.norm(eb.t - ea.t) * 1000.0)
        out[m.value] = row
    if not out:
        raise ConfigError("the two rigs share no camera", key="cameras")
    return out


def format_comparison(cmp: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width table of :func:`compare_rigs` output."""
    lines = [f"{'camera':<7}{'fx %':>9}{'fy %':>9}{'cx px':>9}{'cy px':>9}{'rot deg':>10}{'t mm':>9}"]
    for m, r in cmp.items():
        lines.append(f"{m:<7}{r['fx_pct']:>9.3f}{r['fy_pct']:>9.3f}{r['cx_px']:>9.2f}{r['cy_px']:>9.2f}"
                     f"{r.get('rotation_deg', float('nan')):>10.3f}{r.get('translation_mm', float('nan')):>9.2f}"
                     + ("" if r["size_match"] else "  (sizes differ: scaled)"))
    return "\n".join(lines)



@dataclass(frozen=True)
class CompareTolerance:
    """Largest acceptable differences between two rigs (``calibrate compare --fail-over``).

    Attributes:
        focal_pct: |fx %| and |fy %|.
        principal_px: |cx| and |cy| (px).
        rotation_deg: camera -> reference rotation difference (deg).
        translation_mm: camera -> reference translation difference (mm).
    """

    focal_pct: float = 1.0
    principal_px: float = 5.0
    rotation_deg: float = 0.5
    translation_mm: float = 2.0


def exceeded(cmp: Mapping[str, Mapping[str, float]], tol: CompareTolerance = CompareTolerance()) -> list[str]:
    """The differences of :func:`compare_rigs` output beyond ``tol``, as ``"camera.field: value > limit"``."""
    limits = {"fx_pct": tol.focal_pct, "fy_pct": tol.focal_pct, "cx_px": tol.principal_px,
              "cy_px": tol.principal_px, "rotation_deg": tol.rotation_deg, "translation_mm": tol.translation_mm}
    out = []
    for cam, row in cmp.items():
        for k, lim in limits.items():
            v = row.get(k)
            if v is not None and np.isfinite(v) and abs(v) > lim:
                out.append(f"{cam}.{k}: {v:.3f} beyond {lim:g}")
    return out
