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

from edgepad._optional import require
from edgepad.errors import CalibrationError, ConfigError
from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.types import Modality

from edgepad.calibration.board import (BoardSpec, Detection, check_board_consistency, detect_board,
                                       explain_no_board)
from edgepad.calibration.solve import IntrinsicsResult, StereoResult, calibrate_intrinsics, calibrate_stereo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
_MODALITY_TOKEN = re.compile(r"^(rgb|color|colour|ir|nir|infrared|ir1|ir2|depth)[_\-.]?|[_\-.]?(rgb|color|colour|"
                             r"ir|nir|infrared|ir1|ir2|depth)$", re.IGNORECASE)


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
        refine_intrinsics: refine both cameras jointly with the extrinsics (see ``calibrate_stereo``).
        depth_from_ir: add a depth camera identical to the IR camera (RealSense: depth lives in the left-IR frame).
        depth_scale_m: metres per raw depth unit for the depth entry.
    """

    fix_k3: bool = False
    zero_tangent: bool = False
    min_views: int = 4
    drop_outliers: bool = False
    outlier_factor: float = 3.0
    refine_intrinsics: bool = True
    depth_from_ir: bool = True
    depth_scale_m: float = 0.001


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
    """

    rig: Rig
    spec: BoardSpec
    options: SolveOptions
    views: list[View]
    detections: dict[Modality, dict[str, Detection | None]]
    mono: dict[Modality, IntrinsicsResult]
    stereo: StereoResult | None
    rejected: dict[str, str] = field(default_factory=dict)


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


def calibrate_rig(views: Sequence[View], spec: BoardSpec, options: SolveOptions = SolveOptions(),
                  provenance: Mapping[str, str] | None = None) -> CalibrationRun:
    """Solve a rig from board views.

    RGB is the reference camera. With IR images, the IR camera's intrinsics and the IR → RGB extrinsics are
    solved; with ``options.depth_from_ir`` the rig also gets a depth camera equal to the IR camera (a RealSense
    depth frame is defined in the left-IR frame).

    Raises:
        CalibrationError: no board, too few views, degenerate views, mismatched image sizes, failed solve.
        ConfigError: the board file contradicts the images.
    """
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
                                  fix_k3=options.fix_k3, zero_tangent=options.zero_tangent)
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
    prov.update(provenance or {})
    rig = Rig(Modality.RGB, intrinsics, to_ref,
              options.depth_scale_m if Modality.DEPTH in intrinsics else None, prov)
    return CalibrationRun(rig, spec, options, list(views), detections, mono, stereo, rejected)


# ----------------------------------------------------------------------------------------------- RealSense
def _rs_intrinsics(rs, i) -> Intrinsics:
    names = {rs.distortion.brown_conrady: "brown_conrady",
             rs.distortion.inverse_brown_conrady: "inverse_brown_conrady",
             rs.distortion.modified_brown_conrady: "modified_brown_conrady",
             rs.distortion.none: "none"}
    model = names.get(i.model)
    coeffs = tuple(float(c) for c in list(i.coeffs)[:5])
    if model is None:
        if any(coeffs):
            raise CalibrationError(f"RealSense distortion model {i.model} is not supported by the rig format")
        model = "none"
    return Intrinsics(int(i.width), int(i.height), float(i.fx), float(i.fy), float(i.ppx), float(i.ppy), model,
                      coeffs)


def _rs_extrinsics(e) -> Extrinsics:
    r = np.asarray(e.rotation, dtype=np.float64).reshape(3, 3, order="F")  # librealsense: column-major
    return Extrinsics.from_rt(r, np.asarray(e.translation, dtype=np.float64))


def import_realsense(source: str | Path, timeout_ms: int = 5000) -> Rig:
    """The factory calibration of a RealSense device (live serial number, or a ``.bag``/``.db3`` recording).

    The rig has rgb (reference), depth and ir entries; depth and ir are the left-IR camera (when the recording
    has no infrared stream, the depth stream's intrinsics are used for ir).
    """
    rs = require("pyrealsense2", extra="realsense")
    src = str(source)
    is_file = Path(src).suffix.lower() in (".bag", ".db3")
    if is_file and not Path(src).is_file():
        raise ConfigError(f"no such recording: {src}", key="source")
    pipe, cfg = rs.pipeline(), rs.config()
    if is_file:
        cfg.enable_device_from_file(src, repeat_playback=False)
        cfg.enable_all_streams()
    else:
        cfg.enable_device(src)
        cfg.enable_stream(rs.stream.depth)
        cfg.enable_stream(rs.stream.color)
        cfg.enable_stream(rs.stream.infrared, 1)
    try:
        profile = pipe.start(cfg)
    except RuntimeError as exc:
        raise CalibrationError(f"cannot open RealSense {src}: {exc}") from exc
    try:
        dev = profile.get_device()
        if is_file:
            dev.as_playback().set_real_time(False)
        streams = {}
        for sp in profile.get_streams():
            vsp = sp.as_video_stream_profile()
            key = (sp.stream_type(), sp.stream_index())
            streams[key] = vsp
        depth_sp = next((v for (t, _), v in streams.items() if t == rs.stream.depth), None)
        color_sp = next((v for (t, _), v in streams.items() if t == rs.stream.color), None)
        ir_sp = streams.get((rs.stream.infrared, 1)) or next(
            (v for (t, _), v in streams.items() if t == rs.stream.infrared), None)
        if depth_sp is None or color_sp is None:
            raise CalibrationError(f"{src}: needs depth and colour streams to import a rig (found "
                                   f"{[str(t) for t, _ in streams]})")
        depth_sensor = next((s for s in dev.query_sensors() if s.is_depth_sensor()), None)
        scale = float(depth_sensor.as_depth_sensor().get_depth_scale()) if depth_sensor is not None else 0.001
        d_intr = _rs_intrinsics(rs, depth_sp.get_intrinsics())
        intrinsics = {Modality.RGB: _rs_intrinsics(rs, color_sp.get_intrinsics()), Modality.DEPTH: d_intr,
                      Modality.IR: _rs_intrinsics(rs, ir_sp.get_intrinsics()) if ir_sp is not None else d_intr}
        d2c = _rs_extrinsics(depth_sp.get_extrinsics_to(color_sp))
        i2c = _rs_extrinsics(ir_sp.get_extrinsics_to(color_sp)) if ir_sp is not None else d2c
        info = {}
        for key, attr in (("serial", rs.camera_info.serial_number), ("name", rs.camera_info.name),
                          ("firmware", rs.camera_info.firmware_version)):
            if dev.supports(attr):
                info[key] = dev.get_info(attr)
    finally:
        pipe.stop()
    prov = {"tool": "edgepad calibrate import-realsense", "source": Path(src).name if is_file else src,
            "calibration": "RealSense factory", **info}
    return Rig(Modality.RGB, intrinsics, {Modality.RGB: Extrinsics.identity(), Modality.DEPTH: d2c,
                                          Modality.IR: i2c}, scale, prov)


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
