"""The visual calibration report: PNG pages and an HTML page (drawn with OpenCV; no matplotlib).

Pages: ``corners.png`` (detected corners per view, coloured by reprojection error), ``coverage.png`` (where the
corners fell in each camera image, per-view tilt), ``errors.png`` (per-view RMS bars, outliers in red) and
``overlay.png`` (IR and depth registered into the RGB camera through the rig: edges must line up).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.registration import register_depth
from edgepad.geometry import Extrinsics, Intrinsics, Rig, pixel_rays, project, rig_summary
from edgepad.types import Modality, make_frame

from edgepad.calibration.board import to_gray
from edgepad.calibration.solve import estimate_pose, reprojection_errors
from edgepad.calibration.tool import CalibrationRun

cv2 = lazy("cv2")
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_RED, _GREEN, _YELLOW, _WHITE, _GREY = (220, 40, 40), (40, 200, 60), (230, 200, 30), (255, 255, 255), (150, 150, 150)


def _rgb(img: np.ndarray | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    if img is None:
        h, w = shape or (240, 320)
        return np.zeros((h, w, 3), np.uint8)
    if img.ndim == 2:
        if img.dtype != np.uint8:
            img = to_gray(img)
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return np.array(img[..., :3], dtype=np.uint8, copy=True)  # callers draw on it: never alias the view


def _fit(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _title(img: np.ndarray, text: str, scale: float = 0.5) -> np.ndarray:
    bar = np.full((22, img.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, text, (4, 16), _FONT, scale, _WHITE, 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def _grid(tiles: list[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    if not tiles:
        return np.full((60, 300, 3), 255, np.uint8)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


def _save(path: Path, img: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------------------------- pages
def corners_page(run: CalibrationRun, tile_px: int = 320) -> np.ndarray:
    """Every view per camera with its corners: green < 0.5 px, yellow < 1 px, red ≥ 1 px reprojection error."""
    tiles = []
    for v in run.views:
        for m in run.detections:
            img = _rgb(v.image(m))
            det = run.detections[m].get(v.name)
            res = run.mono[m]
            intr = run.rig.intrinsics.get(m, res.intrinsics)
            label = f"{v.name} {m.value}"
            if det is None:
                label += ": no board"
            else:
                pose = estimate_pose(det, intr)
                err = reprojection_errors(det, intr, *pose) if pose is not None else np.zeros(det.count)
                for p, e in zip(det.image_points, err):
                    col = _GREEN if e < 0.5 else _YELLOW if e < 1.0 else _RED
                    cv2.circle(img, (int(round(p[0])), int(round(p[1]))), max(2, img.shape[1] // 160), col, -1,
                               cv2.LINE_AA)
                label += f": {det.count} corners, rms {np.sqrt(np.mean(err ** 2)):.2f} px"
                if v.name in run.rejected:
                    label += " *"
            tiles.append(_title(_fit(img, tile_px), label, 0.4))
    return _grid(tiles, cols=2 * max(1, len(run.detections)) if len(run.detections) > 1 else 4)


def coverage_page(run: CalibrationRun, width_px: int = 480, grid: tuple[int, int] = (3, 3)) -> np.ndarray:
    """Per camera: all detected corners over the image frame, grid cells shaded by corner count, tilt list."""
    tiles = []
    for m, dets in run.detections.items():
        intr = run.rig.intrinsics.get(m, run.mono[m].intrinsics)
        w, h = intr.width, intr.height
        scale = width_px / w
        canvas = np.full((round(h * scale), width_px, 3), 245, np.uint8)
        pts = np.concatenate([d.image_points for d in dets.values() if d is not None] or [np.zeros((0, 2))])
        gx, gy = grid
        counts = np.zeros((gy, gx), int)
        if len(pts):
            cx = np.clip((pts[:, 0] / w * gx).astype(int), 0, gx - 1)
            cy = np.clip((pts[:, 1] / h * gy).astype(int), 0, gy - 1)
            np.add.at(counts, (cy, cx), 1)
        for y in range(gy):
            for x in range(gx):
                x0, y0 = round(x * width_px / gx), round(y * canvas.shape[0] / gy)
                x1, y1 = round((x + 1) * width_px / gx), round((y + 1) * canvas.shape[0] / gy)
                shade = (255, 210, 210) if counts[y, x] < 3 else (215, 245, 215)
                cv2.rectangle(canvas, (x0, y0), (x1, y1), shade, -1)
                cv2.rectangle(canvas, (x0, y0), (x1, y1), _GREY, 1)
                cv2.putText(canvas, str(counts[y, x]), (x0 + 4, y0 + 16), _FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
        for p in pts:
            cv2.circle(canvas, (int(p[0] * scale), int(p[1] * scale)), 2, (40, 80, 220), -1)
        tilts = ", ".join(f"{t:.0f}" for t in run.mono[m].tilt_deg)
        tile = _title(canvas, f"{m.value}: {len(pts)} corners in {sum(d is not None for d in dets.values())} views")
        foot = np.full((22, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(foot, f"tilt deg: {tilts}"[:90], (4, 15), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, foot]))
    return _grid(tiles, cols=len(tiles))


def errors_page(run: CalibrationRun, width_px: int = 640, bar_h: int = 18) -> np.ndarray:
    """Horizontal bars of the per-view RMS (px) per camera and per stereo pair; outliers red, median line."""
    series = [(f"{m.value} (rms {r.rms_px:.3f} px)", list(r.names), np.asarray(r.per_view_px), r.outliers)
              for m, r in run.mono.items()]
    if run.stereo is not None:
        series.append((f"stereo ir->rgb (rms {run.stereo.rms_px:.3f} px)", list(run.stereo.names),
                       run.stereo.per_view_px.max(axis=1), run.stereo.outliers))
    tiles = []
    for title, names, errs, outliers in series:
        vmax = max(float(errs.max()) if len(errs) else 1.0, 0.1) * 1.1
        label_w = 90
        canvas = np.full((bar_h * len(names) + 30, width_px, 3), 255, np.uint8)
        span = width_px - label_w - 60
        for i, (n, e) in enumerate(zip(names, errs)):
            y = 4 + i * bar_h
            col = _RED if n in outliers else (70, 130, 200)
            cv2.rectangle(canvas, (label_w, y), (label_w + int(span * e / vmax), y + bar_h - 4), col, -1)
            cv2.putText(canvas, n[:12], (4, y + bar_h - 6), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{e:.3f}", (label_w + int(span * e / vmax) + 4, y + bar_h - 6), _FONT, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
        if len(errs):
            xm = label_w + int(span * float(np.median(errs)) / vmax)
            cv2.line(canvas, (xm, 0), (xm, canvas.shape[0] - 24), (0, 0, 0), 1)
        cv2.putText(canvas, f"px (full bar = {vmax:.2f}); line = median; red = outlier", (label_w,
                    canvas.shape[0] - 8), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        tiles.append(_title(canvas, title))
    return _grid(tiles, cols=1)


def board_plane_depth(run: CalibrationRun, view_name: str, camera: Modality = Modality.IR) -> np.ndarray | None:
    """Depth image (raw units of the rig's depth scale) of the board plane seen by ``camera`` in one view.

    Used for the overlay when no depth frame was captured: the board pose comes from PnP in that camera.
    """
    det = run.detections.get(camera, {}).get(view_name)
    if det is None:
        return None
    intr = run.rig.intrinsics[camera]
    pose = estimate_pose(det, intr)
    if pose is None:
        return None
    r, _ = cv2.Rodrigues(pose[0].reshape(3, 1))
    n, p0 = r[:, 2], pose[1]
    rx, ry = pixel_rays(intr)
    den = n[0] * rx + n[1] * ry + n[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.abs(den) > 1e-9, float(n @ p0) / den, 0.0)
    # keep the board's extent (plus one square) so the edges of the depth patch are visible in the overlay
    w_m, h_m = run.spec.size_m
    pts = np.stack([rx * z, ry * z, z], axis=-1) - p0
    local = pts @ r
    sq = run.spec.square_m
    inside = (local[..., 0] > -sq) & (local[..., 0] < w_m + sq) & (local[..., 1] > -sq) & (local[..., 1] < h_m + sq)
    scale = run.rig.depth_scale_m or 0.001
    return np.where(inside & (z > 0), np.clip(np.rint(z / scale), 0, 65535), 0).astype(np.uint16)


def ir_to_rgb(rig: Rig, ir: np.ndarray, depth_in_rgb_m: np.ndarray) -> np.ndarray:
    """Resample the IR image into the RGB camera using a depth map registered to RGB (0 = unknown → black)."""
    rgb_i = rig.intrinsics[Modality.RGB]
    rx, ry = pixel_rays(rgb_i)
    z = depth_in_rgb_m
    pts = np.stack([rx * z, ry * z, z], axis=-1)
    pir = rig.extrinsics(Modality.RGB, Modality.IR).apply(pts)
    uv = project(pir, rig.intrinsics[Modality.IR]).astype(np.float32)
    uv[z <= 0] = -10
    gray = ir if ir.dtype == np.uint8 else _rgb(ir)[..., 0]
    return cv2.remap(gray, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def overlay_page(run: CalibrationRun, view_name: str | None = None, width_px: int = 480) -> tuple[np.ndarray, str]:
    """RGB | IR registered to RGB | checkerboard blend | depth registered to RGB (edges over RGB).

    Depth comes from the view's captured depth frame (RealSense, in the IR camera) or, when none was captured,
    from the board plane seen by the IR camera; it is registered into the RGB camera with
    :func:`edgepad.drivers.registration.register_depth` through the rig, exactly as at run time.

    Returns:
        The page and the view name used.
    """
    rig = run.rig
    if Modality.IR not in rig.intrinsics or run.stereo is None:
        img = _title(_fit(_rgb(run.views[0].rgb), width_px), "RGB only: no IR camera in this calibration")
        return img, run.views[0].name
    names = [n for n in run.stereo.names if n in {v.name for v in run.views}]
    if view_name is None:
        with_depth = [v.name for v in run.views if v.depth is not None and v.name in names]
        pool = with_depth or names
        tilt = dict(zip(run.mono[Modality.RGB].names, run.mono[Modality.RGB].tilt_deg))
        view_name = min(pool, key=lambda n: tilt.get(n, 90.0))
    view = next(v for v in run.views if v.name == view_name)
    depth_cam = Modality.DEPTH if Modality.DEPTH in rig.intrinsics else Modality.IR
    raw = view.depth if view.depth is not None else board_plane_depth(run, view_name, Modality.IR)
    source = "captured depth" if view.depth is not None else "board-plane depth (no depth captured)"
    scale = rig.depth_scale_m or 0.001
    d_intr = rig.intrinsics[depth_cam]
    if raw is None or raw.shape != (d_intr.height, d_intr.width):
        raw = np.zeros((d_intr.height, d_intr.width), np.uint16)
    dframe = make_frame(Modality.DEPTH, raw, 0, intrinsics=d_intr, depth_scale_m=scale)
    reg = register_depth(dframe, rig.intrinsics[Modality.RGB], rig.extrinsics(depth_cam, Modality.RGB))
    z_rgb = reg.data.astype(np.float64) * scale
    rgb = _rgb(view.rgb)
    ir_reg = ir_to_rgb(rig, view.ir, z_rgb)
    ir3 = cv2.cvtColor(ir_reg, cv2.COLOR_GRAY2RGB)
    h, w = rgb.shape[:2]
    cell = max(8, w // 16)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // cell + xx // cell) % 2 == 0)[..., None]
    blend = np.where(checker, rgb, ir3).astype(np.uint8)
    valid = reg.data > 0
    d = reg.data.astype(np.float32)
    if valid.any():
        lo, hi = np.percentile(d[valid], 2), np.percentile(d[valid], 98)
        norm = np.clip((d - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    else:
        norm = np.zeros_like(reg.data, np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(norm, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    depth_ov = np.where(valid[..., None], (0.5 * rgb + 0.5 * colour).astype(np.uint8), rgb)
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 60, 160) > 0
    depth_ov[edges] = _WHITE
    ir_edges = ir3.copy()
    ir_edges[edges] = _RED
    tiles = [_title(_fit(rgb, width_px), f"RGB view {view_name}"),
             _title(_fit(ir_edges, width_px), "IR registered to RGB (red = RGB edges)"),
             _title(_fit(blend, width_px), "checker blend RGB / registered IR"),
             _title(_fit(depth_ov, width_px), f"depth registered to RGB ({source})")]
    return _grid(tiles, cols=2), view_name


# ----------------------------------------------------------------------------------------------- report
def _intr_row(m: Modality, i: Intrinsics, e: Extrinsics) -> str:
    return (f"<tr><td>{m.value}</td><td>{i.width}x{i.height}</td><td>{i.fx:.2f}</td><td>{i.fy:.2f}</td>"
            f"<td>{i.cx:.2f}</td><td>{i.cy:.2f}</td><td>{', '.join(f'{c:.4g}' for c in i.coeffs)}</td>"
            f"<td>{np.linalg.norm(e.t) * 1000:.2f}</td><td>{e.angle_deg:.3f}</td></tr>")


def write_report(run: CalibrationRun, out_dir: Path | str, rig_path: Path | str | None = None) -> Path:
    """Write the PNG pages, ``summary.json`` and ``index.html`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save(out / "corners.png", corners_page(run))
    _save(out / "coverage.png", coverage_page(run))
    _save(out / "errors.png", errors_page(run))
    overlay, view_name = overlay_page(run)
    _save(out / "overlay.png", overlay)
    summary = {
        "rig": run.rig.to_dict(),
        "rms_px": {m.value: r.rms_px for m, r in run.mono.items()},
        "per_view_px": {m.value: dict(zip(r.names, map(float, r.per_view_px))) for m, r in run.mono.items()},
        "outliers": {m.value: r.outliers for m, r in run.mono.items()},
        "stereo": None if run.stereo is None else {
            "rms_px": run.stereo.rms_px, "pairs": list(run.stereo.names),
            "per_pair_px": {n: list(map(float, e)) for n, e in zip(run.stereo.names, run.stereo.per_view_px)},
            "outliers": run.stereo.outliers, "epipolar_px": run.stereo.epipolar_px,
            "per_pair_epipolar_px": dict(zip(run.stereo.names, map(float, run.stereo.per_pair_epipolar_px))),
            "intrinsics_refined": run.stereo.refined, "holdout_px": run.stereo.holdout_px,
            "renumbered_180": list(run.stereo.flipped), "left_out": run.stereo.inconsistent},
        "rejected": run.rejected,
        "overlay_view": view_name,
        "options": {k: getattr(run.options, k) for k in run.options.__dataclass_fields__
                    if k not in ("limits", "prior")},
        "prior": None if run.options.prior is None else run.options.prior.to_dict(),
        "verdict": None if run.verdict is None else run.verdict.to_dict(),
        "board": run.spec.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    rows = "".join(_intr_row(m, i, run.rig.to_reference[m]) for m, i in run.rig.intrinsics.items())
    rms = "".join(f"<li>{m.value}: {r.rms_px:.3f} px over {len(r.names)} views"
                  + (f"; outliers {', '.join(r.outliers)}" + (" (dropped)" if r.dropped else " (kept)")
                     if r.outliers else "") + "</li>" for m, r in run.mono.items())
    if run.stereo is not None:
        rms += f"<li>stereo IR→RGB: {run.stereo.rms_px:.3f} px over {len(run.stereo.names)} pairs</li>"
    rejected = "".join(f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in run.rejected.items()) or "<li>none</li>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgepad calibration report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} img{{max-width:100%;border:1px solid #ccc}}
table{{border-collapse:collapse}} td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}</style></head>
<body><h1>edgepad calibration report</h1>
<p>Board: {html.escape(run.rig.provenance.get('board', ''))}. Rig file: {html.escape(str(rig_path or ''))}.</p>
<h2>Verdict: {'GO' if run.verdict is None or run.verdict.go else 'NO-GO'}</h2>
<pre>{html.escape(run.verdict.text() if run.verdict is not None else '')}</pre>
<h2>Cameras</h2>
<table><tr><th>camera</th><th>size</th><th>fx</th><th>fy</th><th>cx</th><th>cy</th><th>k1 k2 p1 p2 k3</th>
<th>|t| to rgb (mm)</th><th>rotation to rgb (deg)</th></tr>{rows}</table>
<pre>{html.escape(rig_summary(run.rig))}</pre>
<h2>Reprojection error</h2><ul>{rms}</ul>
<h2>Overlay: do RGB, IR and depth line up?</h2>
<p>View {html.escape(view_name)}. The IR image and the depth map are mapped into the RGB camera through the rig
(depth with <code>register_depth</code>, as the runtime does). In the checker blend, board edges must continue
across the cells; in the depth overlay the coloured patch must cover the board exactly.</p>
<img src="overlay.png" alt="overlay">
<h2>Per-view errors</h2><img src="errors.png" alt="per-view errors">
<h2>Coverage</h2><p>Cells with fewer than 3 corners (red) are not covered: add views with the board there.</p>
<img src="coverage.png" alt="coverage">
<h2>Detected corners</h2><p>Green &lt; 0.5 px, yellow &lt; 1 px, red ≥ 1 px reprojection error; * = flagged.</p>
<img src="corners.png" alt="corners">
<h2>Rejected or flagged views</h2><ul>{rejected}</ul>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
