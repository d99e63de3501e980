"""Solvers: intrinsics per camera (pinhole + Brown-Conrady) and stereo extrinsics with intrinsics fixed.

Conventions follow :mod:`edgepad.geometry`: ``p_dst = R @ p_src + t`` in metres, distortion ``k1 k2 p1 p2 k3``
(OpenCV order, ``brown_conrady`` in RealSense terms).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import CalibrationError
from edgepad.geometry import Extrinsics, Intrinsics

from edgepad.calibration.board import Detection

cv2 = lazy("cv2")
log = logging.getLogger(__name__)

#: views whose tilt is below this count as fronto-parallel (degenerate for the focal length)
FRONTO_PARALLEL_DEG = 10.0
#: stereo pairs whose implied camera-to-camera rotation differs by more than this from the consensus disagree
PAIR_ROTATION_TOL_DEG = 10.0


@dataclass(frozen=True)
class IntrinsicsResult:
    """One camera's calibration.

    Attributes:
        intrinsics: the solved camera (``brown_conrady``).
        rms_px: overall RMS reprojection error (px) over the views used.
        names: view names used in the final solve, in order.
        per_view_px: RMS reprojection error per used view (px), aligned with ``names``.
        rvecs, tvecs: board pose per used view (Rodrigues, metres) in this camera.
        tilt_deg: board tilt per used view (angle between board normal and optical axis, degrees).
        outliers: views flagged as outliers (name -> rms px), dropped or not per ``dropped``.
        dropped: whether the outliers were removed before the final solve.
        std: standard deviation of each parameter estimated by the solver (``cv2.calibrateCameraExtended``'s
            ``stdDeviationsIntrinsics``): keys ``fx fy cx cy`` (px) and ``k1 k2 p1 p2 k3``; empty when unknown.
    """

    intrinsics: Intrinsics
    rms_px: float
    names: tuple[str, ...]
    per_view_px: np.ndarray
    rvecs: tuple[np.ndarray, ...]
    tvecs: tuple[np.ndarray, ...]
    tilt_deg: np.ndarray
    outliers: dict[str, float] = field(default_factory=dict)
    dropped: bool = False
    std: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StereoResult:
    """Extrinsics of camera ``other`` into camera ``ref`` (``p_ref = R p_other + t``).

    Attributes:
        extrinsics: other -> ref.
        rms_px: RMS reprojection error over both cameras (px).
        names: view pairs used.
        per_view_px: ``(N, 2)`` RMS per pair: column 0 = ``other`` camera, column 1 = ``ref`` camera.
        common_corners: corners seen in both views, per pair.
        outliers: pairs flagged (name -> rms px).
        ref_intrinsics, other_intrinsics: the intrinsics after the solve (jointly refined when
            ``refined``, else the inputs).
        refined: whether the intrinsics were refined jointly with the extrinsics.
        holdout_px: held-back transfer RMS (px, :func:`transfer_errors`) of the two modes, ``{"fixed": .., "refined": ..}``, when the
            choice was made on held-back pairs (``refine_intrinsics=None``); empty otherwise.
        epipolar_px: RMS distance (px) of every common corner to its epipolar line, both directions, all pairs.
        per_pair_epipolar_px: the same per pair, aligned with ``names``.
        flipped: pairs whose ``other`` view was renumbered (turned 180 deg) to agree with the other pairs.
        inconsistent: pairs left out because their implied relative rotation disagrees (name -> reason).
    """

    extrinsics: Extrinsics
    rms_px: float
    names: tuple[str, ...]
    per_view_px: np.ndarray
    common_corners: tuple[int, ...]
    outliers: dict[str, float] = field(default_factory=dict)
    ref_intrinsics: Intrinsics | None = None
    other_intrinsics: Intrinsics | None = None
    refined: bool = False
    holdout_px: dict[str, float] = field(default_factory=dict)
    epipolar_px: float = float("nan")
    per_pair_epipolar_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flipped: tuple[str, ...] = ()
    inconsistent: dict[str, str] = field(default_factory=dict)


def _cv_points(det: Detection) -> tuple[np.ndarray, np.ndarray]:
    return (det.object_points.astype(np.float32).reshape(-1, 1, 3),
            det.image_points.astype(np.float32).reshape(-1, 1, 2))


def board_tilt_deg(rvec: np.ndarray) -> float:
    """Angle (deg) between the board normal and the camera's optical axis for a board pose ``rvec``."""
    r, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return float(np.degrees(np.arccos(np.clip(abs(r[2, 2]), 0.0, 1.0))))


def estimate_pose(det: Detection, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray] | None:
    """Board pose (rvec, tvec in metres) in a camera; None when PnP fails."""
    obj, img = _cv_points(det)
    ok, rvec, tvec = cv2.solvePnP(obj, img, intr.k, intr.dist5, flags=cv2.SOLVEPNP_ITERATIVE)
    return (rvec.reshape(3), tvec.reshape(3)) if ok else None


def guess_intrinsics(width: int, height: int, hfov_deg: float = 65.0) -> Intrinsics:
    """A rough pinhole camera for guidance before calibration (tilt bins, duplicates)."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return Intrinsics(width, height, f, f, (width - 1) / 2, (height - 1) / 2)


def _check_views(dets: Sequence[Detection], names: Sequence[str], min_views: int, camera: str) -> tuple[int, int]:
    if len(dets) != len(names):
        raise CalibrationError(f"{camera}: {len(dets)} detections but {len(names)} names")
    if len(dets) < min_views:
        raise CalibrationError(f"{camera}: too few board views ({len(dets)}); at least {min_views} are needed, "
                               f"10-20 recommended, with the board tilted and covering the whole image",
                               views=len(dets))
    sizes = {d.image_size for d in dets}
    if len(sizes) != 1:
        detail = ", ".join(f"{n}: {d.image_size[0]}x{d.image_size[1]}" for n, d in zip(names, dets))
        raise CalibrationError(f"{camera}: views have mismatched image sizes ({detail}); use one resolution per "
                               f"camera", views=len(dets))
    for n, d in zip(names, dets):
        if d.count < 6:
            raise CalibrationError(f"{camera}: view {n} has only {d.count} corners (need >= 6)", views=len(dets))
    return next(iter(sizes))


def calibrate_intrinsics(detections: Sequence[Detection], names: Sequence[str] | None = None, *,
                         fix_k3: bool = False, zero_tangent: bool = False, min_views: int = 4,
                         outlier_factor: float = 3.0, outlier_min_px: float = 0.5, drop_outliers: bool = False,
                         camera: str = "camera") -> IntrinsicsResult:
    """Pinhole + Brown-Conrady intrinsics from board detections of one camera.

    Args:
        detections: one per view (all the same image size).
        names: view names (default ``view_000``...).
        fix_k3: keep k3 = 0 (advisable with few views or a narrow lens).
        zero_tangent: keep p1 = p2 = 0.
        min_views: fewer views raise CalibrationError.
        outlier_factor, outlier_min_px: a view is an outlier when its RMS exceeds both
            ``outlier_factor`` × the median view RMS and the median + ``outlier_min_px``.
        drop_outliers: re-solve without the outlier views (if at least ``min_views`` remain).
        camera: name used in messages.

    Raises:
        CalibrationError: too few views, mismatched sizes, all views fronto-parallel, or a failed solve.
    """
    names = tuple(names) if names is not None else tuple(f"view_{i:03d}" for i in range(len(detections)))
    width, height = _check_views(detections, names, min_views, camera)
    guess = guess_intrinsics(width, height)
    tilts = []
    for d in detections:
        pose = estimate_pose(d, guess)
        tilts.append(board_tilt_deg(pose[0]) if pose is not None else 0.0)
    if max(tilts) < FRONTO_PARALLEL_DEG:
        raise CalibrationError(f"{camera}: degenerate view set: every board view is nearly fronto-parallel (max tilt "
                               f"{max(tilts):.1f} deg); the focal length cannot be observed. Add views with the "
                               f"board tilted 20-45 deg left/right/up/down", views=len(detections))
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    if zero_tangent:
        flags |= cv2.CALIB_ZERO_TANGENT_DIST

    def solve(idx: Sequence[int]):
        obj = [_cv_points(detections[i])[0] for i in idx]
        img = [_cv_points(detections[i])[1] for i in idx]
        try:
            rms, k, dist, rvecs, tvecs, std_int, _, per_view = cv2.calibrateCameraExtended(
                obj, img, (width, height), None, None, flags=flags,
                criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10))
        except cv2.error as exc:
            raise CalibrationError(f"{camera}: OpenCV could not solve the intrinsics ({exc.err}); check the board "
                                   f"file and add tilted views", views=len(idx)) from exc
        return (float(rms), k, np.asarray(dist).reshape(-1), rvecs, tvecs, np.asarray(per_view).reshape(-1),
                np.asarray(std_int, dtype=np.float64).reshape(-1))

    idx = list(range(len(detections)))
    rms, k, dist, rvecs, tvecs, per_view, std_int = solve(idx)
    med = float(np.median(per_view))
    outliers = {names[i]: float(e) for i, e in zip(idx, per_view)
                if e > outlier_factor * med and e > med + outlier_min_px}
    dropped = False
    if outliers and drop_outliers:
        keep = [i for i in idx if names[i] not in outliers]
        if len(keep) >= min_views:
            idx = keep
            rms, k, dist, rvecs, tvecs, per_view, std_int = solve(idx)
            dropped = True
        else:
            log.warning("%s: %d outlier views not dropped: only %d views would remain", camera, len(outliers),
                        len(keep))
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(dist)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise CalibrationError(f"{camera}: the solve diverged (non-finite parameters)", rms_px=rms, views=len(idx))
    dist5 = np.zeros(5)
    dist5[:min(5, dist.size)] = dist[:5]
    intr = Intrinsics(width, height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                      "brown_conrady", tuple(float(v) for v in dist5))
    tilt = np.array([board_tilt_deg(r) for r in rvecs])
    std = {n: float(v) for n, v in zip(("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3"), std_int)
           if np.isfinite(v)}
    return IntrinsicsResult(intr, rms, tuple(names[i] for i in idx), per_view,
                            tuple(np.asarray(r).reshape(3) for r in rvecs),
                            tuple(np.asarray(t).reshape(3) for t in tvecs), tilt, outliers, dropped, std)


def relative_rotation(ref: Detection, other: Detection, ref_intr: Intrinsics,
                      other_intr: Intrinsics) -> np.ndarray | None:
    """Rotation ``other -> ref`` implied by one pair (board pose by PnP in each camera), ``(3, 3)``; None if PnP fails."""
    pa, pb = estimate_pose(ref, ref_intr), estimate_pose(other, other_intr)
    if pa is None or pb is None:
        return None
    ra, _ = cv2.Rodrigues(pa[0].reshape(3, 1))
    rb, _ = cv2.Rodrigues(pb[0].reshape(3, 1))
    return ra @ rb.T


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a @ b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def check_pair_numbering(pairs: Sequence[tuple[str, Detection, Detection]], ref_intr: Intrinsics,
                         other_intr: Intrinsics, flip: Callable[[Detection], Detection] | None = None,
                         tolerance_deg: float = PAIR_ROTATION_TOL_DEG
                         ) -> tuple[list[tuple[str, Detection, Detection]], tuple[str, ...], dict[str, str]]:
    """Make the corner numbering of stereo pairs consistent.

    Every pair implies a rotation between the cameras (:func:`relative_rotation`); on a rigid rig they agree. The
    consensus is the pair with most others within ``tolerance_deg``. A pair that disagrees is re-checked with its
    ``other`` view renumbered by ``flip`` (a chessboard turned 180 deg in its plane: the detectors may number a
    symmetric grid either way); it is kept flipped when that agrees, else left out.

    Returns:
        (pairs to use, names flipped, names left out -> reason).
    """
    rots = [relative_rotation(a, b, ref_intr, other_intr) for _, a, b in pairs]
    ok = [i for i, r in enumerate(rots) if r is not None]
    if len(ok) < 2:
        return list(pairs), (), {}
    support = [sum(_angle_deg(rots[i], rots[j]) < tolerance_deg for j in ok) for i in ok]
    consensus = rots[ok[int(np.argmax(support))]]
    out, flipped, dropped = [], [], {}
    for (n, a, b), r in zip(pairs, rots):
        if r is None:
            dropped[n] = "pose not found"
            continue
        err = _angle_deg(r, consensus)
        if err < tolerance_deg:
            out.append((n, a, b))
            continue
        if flip is not None:
            b2 = flip(b)
            r2 = relative_rotation(a, b2, ref_intr, other_intr)
            if r2 is not None and _angle_deg(r2, consensus) < tolerance_deg:
                out.append((n, a, b2))
                flipped.append(n)
                continue
        dropped[n] = f"implied rotation between the cameras is {err:.1f} deg from the other pairs'"
    return out, tuple(flipped), dropped


def epipolar_errors(pairs: Sequence[tuple[str, Detection, Detection]], ref_intr: Intrinsics,
                    other_intr: Intrinsics, other_to_ref: Extrinsics) -> np.ndarray:
    """RMS distance (px) of each pair's corners to their epipolar lines, both images, ``(N,)``.

    Corners are undistorted to normalised coordinates; with ``E = [t]x R`` the distance of ``x_ref`` to the line
    ``E x_other`` (and of ``x_other`` to ``E^T x_ref``) is scaled to px by that camera's focal length.
    """
    r, t = other_to_ref.r, other_to_ref.t
    e = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ r
    out = []
    for _, a, b in pairs:
        xa = cv2.undistortPoints(a.image_points.reshape(-1, 1, 2), ref_intr.k, ref_intr.dist5).reshape(-1, 2)
        xb = cv2.undistortPoints(b.image_points.reshape(-1, 1, 2), other_intr.k, other_intr.dist5).reshape(-1, 2)
        ha = np.concatenate([xa, np.ones((len(xa), 1))], axis=1)
        hb = np.concatenate([xb, np.ones((len(xb), 1))], axis=1)
        la, lb = hb @ e.T, ha @ e  # lines in ref (E x_other) and in other (E^T x_ref)
        num = np.abs(np.sum(ha * la, axis=1))
        da = num / np.maximum(np.hypot(la[:, 0], la[:, 1]), 1e-12) * 0.5 * (ref_intr.fx + ref_intr.fy)
        db = num / np.maximum(np.hypot(lb[:, 0], lb[:, 1]), 1e-12) * 0.5 * (other_intr.fx + other_intr.fy)
        out.append(float(np.sqrt(np.mean(np.concatenate([da, db]) ** 2))))
    return np.asarray(out)


def transfer_errors(pairs: Sequence[tuple[str, Detection, Detection]], ref_intr: Intrinsics,
                    other_intr: Intrinsics, other_to_ref: Extrinsics) -> np.ndarray:
    """RMS transfer error (px) per pair, ``(N,)``: the board pose found by PnP in one camera, carried through the
    rig into the other camera and projected there, against the corners detected there (both directions).

    Unlike the epipolar error it sees the baseline's length (a wrong translation moves the projected board).
    """
    out = []
    ref_to_other = other_to_ref.inverse()
    for _, a, b in pairs:
        errs = []
        for src, dst, s_intr, d_intr, move in ((a, b, ref_intr, other_intr, ref_to_other),
                                                (b, a, other_intr, ref_intr, other_to_ref)):
            pose = estimate_pose(src, s_intr)
            if pose is None:
                errs.append(np.full(src.count, np.inf))
                continue
            r, _ = cv2.Rodrigues(pose[0].reshape(3, 1))
            pts = move.apply(src.object_points @ r.T + pose[1])
            proj, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), d_intr.k, d_intr.dist5)
            errs.append(np.linalg.norm(proj.reshape(-1, 2) - dst.image_points, axis=1))
        out.append(float(np.sqrt(np.mean(np.concatenate(errs) ** 2))))
    return np.asarray(out)


def calibrate_stereo(ref: Sequence[Detection], other: Sequence[Detection], ref_intr: Intrinsics,
                     other_intr: Intrinsics, names: Sequence[str] | None = None, *, min_pairs: int = 3,
                     min_common: int = 6, outlier_factor: float = 3.0, outlier_min_px: float = 0.5,
                     drop_outliers: bool = False, refine_intrinsics: bool | None = None, fix_k3: bool = False,
                     zero_tangent: bool = False, flip: Callable[[Detection], Detection] | None = None,
                     holdout_gain: float = 0.02) -> StereoResult:
    """Extrinsics ``other -> ref`` from simultaneous views.

    Only corner ids seen in both views of a pair are used (ChArUco views are often partial). Pairs are first made
    consistent (:func:`check_pair_numbering`).

    Args:
        ref, other: detections per pair (same length; None entries are not allowed here).
        ref_intr, other_intr: calibrated intrinsics of each camera.
        names: pair names.
        min_pairs: fewer usable pairs raise CalibrationError.
        min_common: a pair needs at least this many common corners to be used.
        outlier_factor, outlier_min_px, drop_outliers: as in :func:`calibrate_intrinsics`.
        refine_intrinsics: True refines both cameras' intrinsics jointly with the extrinsics (starting from the
            inputs); False keeps them fixed (``CALIB_FIX_INTRINSIC``); None (default) decides on held-back pairs:
            each mode is solved on one half of the pairs and scored by the transfer error
            (:func:`transfer_errors`) of the other half (and vice versa); refinement is used only when it lowers that error by more than ``holdout_gain`` (2 %)
            and at least 6 pairs exist.
        fix_k3, zero_tangent: as in :func:`calibrate_intrinsics` (used when refining).
        flip: renumbering used to repair a pair (chessboards: ``board.rotate_detection_180``); None = no repair.

    Raises:
        CalibrationError: too few usable pairs, mismatched sizes, a diverged solve.
    """
    names = tuple(names) if names is not None else tuple(f"pair_{i:03d}" for i in range(len(ref)))
    if not (len(ref) == len(other) == len(names)):
        raise CalibrationError("stereo: ref, other and names must have the same length")
    pairs = []
    for n, a, b in zip(names, ref, other):
        if a.image_size != (ref_intr.width, ref_intr.height) or b.image_size != (other_intr.width, other_intr.height):
            raise CalibrationError(f"stereo: view {n} has image sizes {a.image_size}/{b.image_size} but the cameras "
                                   f"were calibrated at {ref_intr.width}x{ref_intr.height}/"
                                   f"{other_intr.width}x{other_intr.height}")
        common = np.intersect1d(a.ids, b.ids)
        if len(common) >= min_common:
            pairs.append((n, a.subset(common), b.subset(common)))
    pairs, flipped, inconsistent = check_pair_numbering(pairs, ref_intr, other_intr, flip)
    if flipped:
        log.warning("stereo: renumbered the other view of %d pair(s) to agree with the rest: %s", len(flipped),
                    ", ".join(flipped))
    if len(pairs) < min_pairs:
        raise CalibrationError(f"stereo: only {len(pairs)} view pairs show >= {min_common} common corners in both "
                               f"cameras and agree on the rig; at least {min_pairs} are needed (hold the board where "
                               f"both cameras see it)" + (f"; left out: {', '.join(inconsistent)}" if inconsistent
                                                          else ""), views=len(pairs))

    def solve(sel, refine: bool):
        flags = (cv2.CALIB_USE_INTRINSIC_GUESS | (cv2.CALIB_FIX_K3 if fix_k3 else 0)
                 | (cv2.CALIB_ZERO_TANGENT_DIST if zero_tangent else 0)) if refine else cv2.CALIB_FIX_INTRINSIC
        obj = [_cv_points(b)[0] for _, _, b in sel]
        img_other = [_cv_points(b)[1] for _, _, b in sel]
        img_ref = [_cv_points(a)[1] for _, a, _ in sel]
        try:
            out = cv2.stereoCalibrateExtended(
                obj, img_other, img_ref, other_intr.k.copy(), other_intr.dist5.copy(), ref_intr.k.copy(),
                ref_intr.dist5.copy(), (ref_intr.width, ref_intr.height), np.eye(3), np.zeros((3, 1)), flags=flags,
                criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-12))
        except cv2.error as exc:
            raise CalibrationError(f"stereo: OpenCV could not solve the extrinsics ({exc.err})",
                                   views=len(sel)) from exc
        rms, r, t, per_view = out[0], out[5], out[6], out[-1]
        ko, do, kr, dr = out[1], out[2], out[3], out[4]
        return (float(rms), np.asarray(r), np.asarray(t).reshape(3), np.asarray(per_view).reshape(-1, 2),
                _intr_from_cv(ref_intr, kr, dr), _intr_from_cv(other_intr, ko, do))

    holdout: dict[str, float] = {}
    refine = bool(refine_intrinsics)
    if refine_intrinsics is None:
        refine = False
        if len(pairs) >= 6:
            halves = (pairs[0::2], pairs[1::2])
            for mode in (False, True):
                errs = []
                for train, test in (halves, halves[::-1]):
                    try:
                        _, r_, t_, _, ri, oi = solve(train, mode)
                    except CalibrationError:
                        errs = [np.inf]
                        break
                    errs.append(transfer_errors(test, ri, oi, Extrinsics.from_rt(r_, t_)))
                holdout["refined" if mode else "fixed"] = float(np.sqrt(np.mean(np.concatenate(
                    [np.atleast_1d(e) for e in errs]) ** 2)))
            refine = holdout["refined"] < (1.0 - holdout_gain) * holdout["fixed"]
    rms, r, t, per_view, new_ref, new_other = solve(pairs, refine)
    worst = per_view.max(axis=1)
    med = float(np.median(worst))
    outliers = {p[0]: float(e) for p, e in zip(pairs, worst) if e > outlier_factor * med and e > med + outlier_min_px}
    if outliers and drop_outliers:
        keep = [p for p in pairs if p[0] not in outliers]
        if len(keep) >= min_pairs:
            pairs = keep
            rms, r, t, per_view, new_ref, new_other = solve(pairs, refine)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
        raise CalibrationError("stereo: the solve diverged (non-finite extrinsics)", rms_px=rms)
    ext = Extrinsics.from_rt(r, t)
    epi = epipolar_errors(pairs, new_ref, new_other, ext)
    return StereoResult(ext, rms, tuple(p[0] for p in pairs), per_view, tuple(p[1].count for p in pairs), outliers,
                        new_ref, new_other, refine, holdout, float(np.sqrt(np.mean(epi ** 2))), epi, flipped,
                        inconsistent)


def _intr_from_cv(like: Intrinsics, k: np.ndarray, dist: np.ndarray) -> Intrinsics:
    d = np.zeros(5)
    flat = np.asarray(dist, dtype=np.float64).reshape(-1)
    d[:min(5, flat.size)] = flat[:5]
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(d)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise CalibrationError("stereo: the joint refinement diverged (non-finite intrinsics); retry with "
                               "refine_intrinsics=False or more views")
    return Intrinsics(like.width, like.height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                      "brown_conrady", tuple(float(v) for v in d))


def reprojection_errors(det: Detection, intr: Intrinsics, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """Per-corner reprojection error (px) of one view."""
    proj, _ = cv2.projectPoints(det.object_points.reshape(-1, 1, 3), np.asarray(rvec, float).reshape(3, 1),
                                np.asarray(tvec, float).reshape(3, 1), intr.k, intr.dist5)
    return np.linalg.norm(proj.reshape(-1, 2) - det.image_points, axis=1)
