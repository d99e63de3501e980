"""Preview images and installer measurements for the live view, and the face regions the audit log stores.

* :func:`installer_view` / :func:`face_boxes`: the rgb face box in every camera of a frame set (lifted to the
  face depth and projected through the rig when a camera is not registered to rgb, as with window
  registration), plus what an installer checks: face distance, depth fill in the face, IR level, the rgb→IR
  plane homography for the edge overlay, and per-stream fps / drops (:class:`StreamMeter`).
* :data:`REASON_HINTS`: a plain-language hint for every :class:`~edgepad.types.Reason`.
* :func:`render_preview` / :func:`render_overlay` / :func:`encode_image`: 8-bit BGR display images (IR
  auto-levelled, depth coloured over a range around the face) and their JPEG/PNG bytes (``cv2``, extra
  ``vision``, imported on first use).
* :func:`face_crops_for_audit`: face regions with a margin, for an audit log that stores images.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Mapping

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import EdgePadError, ShapeError
from edgepad.geometry import project_box
from edgepad.preprocess import FACE_WIDTH_M, median_face_depth
from edgepad.types import Modality, Reason, Verdict

log = logging.getLogger(__name__)
cv2 = lazy("cv2")

#: what an installer should check for each reason (shown beside the reason token in the live view)
REASON_HINTS: dict[Reason, str] = {
    Reason.OK: "All checks passed.",
    Reason.NO_FRAMES: "No frames from the camera: check the USB cable, power and that no other program holds it.",
    Reason.NO_FACE: "No face found: stand in front of the reader, face the camera, check the RGB exposure.",
    Reason.STALE: "Frames arrive too late: check USB bandwidth (USB 3 port) and CPU load.",
    Reason.MISSING_RGB: "The RGB stream is missing: check the colour stream is enabled and the cable is USB 3.",
    Reason.MISSING_DEPTH: "The depth stream is missing: check the depth stream is enabled and the cable is USB 3.",
    Reason.MISSING_IR: "The IR stream is missing: check the infrared stream is enabled in the camera profile.",
    Reason.INVALID_DEPTH: "Too few depth pixels on the face: clean the lens, enable the emitter, avoid direct "
                          "sunlight, stand 0.3-1.2 m away.",
    Reason.INVALID_IR: "The IR image is unusable (black, saturated or frozen): check IR exposure and the emitter.",
    Reason.NOMINAL_DEPTH: "Face distance was guessed from the face size: the depth camera saw no face depth.",
    Reason.NO_THRESHOLD_FOR_SUBSET: "The model has no threshold for the streams available: restore the missing "
                                    "stream or recalibrate the operating point.",
    Reason.DEGRADED: "Running with fewer streams than the model expects: restore the missing stream.",
    Reason.VOTE_PENDING: "Collecting frames for a decision: hold still for a moment.",
    Reason.LIVE_VOTES: "Enough frames agreed on a live face.",
    Reason.SPOOF_VOTES: "Enough frames agreed on a presentation attack (photo, screen or mask).",
    Reason.LOCKOUT: "Locked after repeated attacks: an operator must reset the lockout.",
    Reason.FACE_TOO_SMALL: "Face too far or too small: step closer to the reader.",
    Reason.FACE_TOO_LARGE: "Face too close: step back from the reader.",
    Reason.FACE_AT_BORDER: "Face cut by the image border: centre the face, check the camera's aim.",
    Reason.FACE_POSE: "Face turned away: look straight at the camera; check the mounting height and tilt.",
    Reason.BLUR: "Image blurred: hold still, check focus, add light to shorten the exposure.",
    Reason.NO_IR_ILLUMINATION: "IR emitter off or blocked: check the projector / emitter setting and that nothing "
                               "covers it.",
    Reason.SENSOR_INTEGRITY: "The camera stream looks tampered with or replayed: check the camera's serial, "
                             "cable and firmware.",
    Reason.ERROR_CAPTURE: "Capture failed: reconnect the camera; see the service log.",
    Reason.ERROR_SYNC: "Streams could not be synchronised: check frame rates match and the USB link.",
    Reason.ERROR_REGISTER: "Depth registration failed: check the rig calibration file matches this camera.",
    Reason.ERROR_LOCATE: "The face detector failed: see the service log.",
    Reason.ERROR_PREPROCESS: "Face cropping failed: check the rig calibration; see the service log.",
    Reason.ERROR_INFER: "The model failed to run: check the model file and engine; see the service log.",
    Reason.ERROR_POLICY: "The decision policy failed: see the service log.",
}


def reason_hint(reason: Reason | str) -> str:
    """The installer's hint for a reason (its token when unknown)."""
    try:
        return REASON_HINTS[Reason(reason)]
    except ValueError:
        return str(reason)


class StreamMeter:
    """Per-stream frame rate (device timestamps, last ``window`` frames) and drops (gaps in frame counters)."""

    def __init__(self, window: int = 30) -> None:
        self._window = window
        self._times: dict[Modality, deque] = {}
        self._last: dict[Modality, int] = {}
        self.drops: dict[Modality, int] = {}

    def update(self, fs: Any) -> None:
        """Count the frames of one frame set (a frame seen again, same counter, is not counted twice; a counter
        that goes back starts the stream's rate afresh)."""
        for m, f in fs.frames.items():
            last = self._last.get(m)
            if last is not None and f.sequence == last:
                continue
            if last is not None and f.sequence < last:        # the counter restarted (a new pipeline or camera)
                self._times.pop(m, None)
                last = None
            if last is not None and f.sequence > last + 1:
                self.drops[m] = self.drops.get(m, 0) + int(f.sequence - last - 1)
            self._last[m] = int(f.sequence)
            t = f.device_timestamp_ns if f.device_timestamp_ns is not None else f.timestamp_ns
            self._times.setdefault(m, deque(maxlen=self._window)).append(int(t))

    def fps(self, m: Modality) -> float | None:
        t = self._times.get(m)
        if not t or len(t) < 2 or t[-1] <= t[0]:
            return None
        return (len(t) - 1) * 1e9 / (t[-1] - t[0])

    def to_dict(self) -> dict:
        """``{stream: {"fps": float|None, "drops": int}}``."""
        out = {}
        for m in self._times:
            fps = self.fps(m)
            out[m.value] = {"fps": None if fps is None else round(fps, 2), "drops": self.drops.get(m, 0)}
        return out


def _box(v: Any) -> tuple[int, int, int, int]:
    return tuple(int(x) for x in v)  # type: ignore[return-value]


def _project(box, depth_m, src, dst, rig, m_src, m_dst):
    try:
        return project_box(box, depth_m, src, dst, rig.extrinsics(m_src, m_dst))
    except Exception:  # noqa: BLE001 - a preview box is cosmetic; never fail a decision for it
        log.debug("could not project the face box into %s", m_dst, exc_info=True)
        return None


def _locate(fs: Any, box_rgb: Any, rig: Any) -> tuple[dict, float | None, bool]:
    """Boxes per camera, the face depth (m) and whether it was measured (False = box-size guess)."""
    if not box_rgb:
        return {}, None, False
    box = _box(box_rgb)
    out: dict[Modality, tuple[int, int, int, int]] = {Modality.RGB: box}
    depth = fs.frames.get(Modality.DEPTH)
    rgb = fs.frames.get(Modality.RGB)
    depth_m = None
    if depth is not None and getattr(depth, "registered_to", None) is Modality.RGB:
        out[Modality.DEPTH] = box
        try:
            depth_m, _ = median_face_depth(depth.data, box, float(depth.depth_scale_m or 0.001))
        except ShapeError:       # an empty box: nothing to lift
            depth_m = None
    elif depth is not None and rgb is not None and rig is not None and box[2] > 0:
        # window registration: the depth frame is in the depth camera; place the box there at the box-size
        # guess, measure the face depth in that window, and place it again at the measured depth
        guess = rgb.intrinsics.fx * FACE_WIDTH_M / box[2]
        for _ in range(2):
            p = _project(box, depth_m or guess, rgb.intrinsics, depth.intrinsics, rig, Modality.RGB, Modality.DEPTH)
            if p is None or p[2] <= 0 or p[3] <= 0:
                break
            try:
                measured, _ = median_face_depth(depth.data, p, float(depth.depth_scale_m or 0.001))
            except ShapeError:
                measured = None
            if measured is None:
                break
            depth_m = measured
    if rgb is None:
        return out, depth_m, depth_m is not None
    measured = depth_m is not None
    if depth_m is None and box[2] > 0:
        depth_m = rgb.intrinsics.fx * FACE_WIDTH_M / box[2]
    if rig is None or depth_m is None:
        return out, depth_m, measured
    for m in (Modality.IR, Modality.DEPTH):
        if m in out or m not in fs.frames:
            continue
        p = _project(box, depth_m, rgb.intrinsics, fs.frames[m].intrinsics, rig, Modality.RGB, m)
        if p is not None:
            out[m] = p
    return out, depth_m, measured


def face_boxes(fs: Any, box_rgb: tuple[int, int, int, int] | None, rig: Any) -> dict:
    """The rgb face box in every frame of a frame set; missing = not drawn.

    As is on rgb and on depth registered to rgb; lifted to the face depth (median of the central half of the
    box in the depth frame, found in the depth camera when the depth is unregistered; the box-size guess
    ``fx · 0.15 m / w`` without depth) and projected through the rig into unregistered depth and IR cameras.

    Args:
        fs: a :class:`~edgepad.types.FrameSet`.
        box_rgb: face box ``(x, y, w, h)`` in rgb pixels, or None.
        rig: the :class:`~edgepad.geometry.Rig` (None = no projection).

    Returns:
        ``{Modality: (x, y, w, h)}`` in each camera's pixels.
    """
    return _locate(fs, box_rgb, rig)[0]


def _region(a: np.ndarray, box: Any) -> np.ndarray:
    x, y, w, h = _box(box)
    return a[max(0, y):max(0, y + h), max(0, x):max(0, x + w)]


def plane_homography(rig: Any, src_intr: Any, dst_intr: Any, src: Modality, dst: Modality,
                     depth_m: float) -> np.ndarray:
    """3×3 homography mapping src pixels to dst pixels for the fronto-parallel plane ``z_src = depth_m``
    (lens distortion ignored: good enough to see whether edges line up)."""
    e = rig.extrinsics(src, dst)
    n = np.array([[0.0, 0.0, 1.0]])
    h = dst_intr.k @ (e.r + e.t.reshape(3, 1) @ n / float(depth_m)) @ np.linalg.inv(src_intr.k)
    return h / h[2, 2]


def installer_view(fs: Any, box_rgb: Any, rig: Any, meter: StreamMeter | None = None) -> tuple[dict, dict]:
    """Face boxes per camera and the live view's measurements for one frame set.

    Returns:
        ``(boxes, view)``: boxes as :func:`face_boxes`; view (JSON-ready) with ``face_distance_m`` (None =
        no face; the box-size guess when ``distance_measured`` is false), ``depth_fill`` (valid fraction of the depth
        face box), ``depth_range_m`` (colour range of the depth preview), ``depth_scale_m``, ``ir`` (``level``
        = median face/image level 0..1, ``saturated`` and ``dark`` fractions, ``exposure`` dark/ok/bright),
        ``rgb_to_ir`` (plane homography at the face depth, for the edge overlay), ``streams`` (fps, drops) and
        ``boxes`` (the boxes, by stream name).
    """
    boxes, depth_m, measured = _locate(fs, box_rgb, rig)
    view: dict[str, Any] = {"face_distance_m": round(depth_m, 3) if depth_m is not None else None,
                            "distance_measured": bool(measured), "depth_fill": None, "depth_range_m": None,
                            "depth_scale_m": None, "ir": None, "rgb_to_ir": None,
                            "streams": meter.to_dict() if meter is not None else {},
                            "boxes": {m.value: list(b) for m, b in boxes.items()}}
    depth = fs.frames.get(Modality.DEPTH)
    if depth is not None:
        scale = float(depth.depth_scale_m or 0.001)
        view["depth_scale_m"] = scale
        d = np.asarray(depth.data)
        if Modality.DEPTH in boxes:
            r = _region(d, boxes[Modality.DEPTH])
            view["depth_fill"] = round(float((r > 0).mean()), 3) if r.size else 0.0
        if measured and depth_m is not None:
            view["depth_range_m"] = [round(max(0.0, depth_m - 0.25), 3), round(depth_m + 0.5, 3)]
        elif (d > 0).any():
            lo, hi = np.percentile(d[d > 0], (2, 98))
            view["depth_range_m"] = [round(float(lo) * scale, 3), round(max(float(hi), float(lo) + 1) * scale, 3)]
    ir = fs.frames.get(Modality.IR)
    if ir is not None:
        a = np.asarray(ir.data)
        full = 65535.0 if a.dtype == np.uint16 else 255.0
        r = _region(a, boxes[Modality.IR]) if Modality.IR in boxes else a
        if not r.size:
            r = a
        level = float(np.median(r)) / full
        sat = float((r >= 0.98 * full).mean())
        dark = float((r <= 0.06 * full).mean())
        exposure = "dark" if level < 0.12 else "bright" if (level > 0.85 or sat > 0.2) else "ok"
        view["ir"] = {"level": round(level, 3), "saturated": round(sat, 3), "dark": round(dark, 3),
                      "exposure": exposure}
        rgb = fs.frames.get(Modality.RGB)
        if rig is not None and rgb is not None and depth_m is not None:
            try:
                view["rgb_to_ir"] = [[round(float(v), 8) for v in row] for row in
                                     plane_homography(rig, rgb.intrinsics, ir.intrinsics, Modality.RGB, Modality.IR,
                                                      depth_m)]
            except Exception:  # noqa: BLE001 - cosmetic
                log.debug("no rgb->ir homography", exc_info=True)
    return boxes, view


def face_crops_for_audit(fs: Any, boxes: Mapping[Modality, tuple[int, int, int, int]]) -> dict:
    """Face regions (box plus 25 % margin) of each frame, for an audit log that stores images."""
    out = {}
    for m, (x, y, w, h) in boxes.items():
        f = fs.frames.get(m)
        if f is None:
            continue
        a = np.asarray(f.data)
        mx, my = w // 4, h // 4
        crop = a[max(0, y - my):max(0, y + h + my), max(0, x - mx):max(0, x + w + mx)]
        if crop.size:
            out[m] = crop
    return out


_BOX_BGR = {Verdict.LIVE: (80, 200, 40), Verdict.SPOOF: (60, 60, 230), Verdict.UNKNOWN: (0, 190, 255)}


def auto_level(image: np.ndarray) -> np.ndarray:
    """8-bit grey of an IR image stretched between its 1st and 99.5th percentiles (a dim IR image is not black)."""
    a = np.asarray(image, dtype=np.float32)
    if not a.size:
        return np.zeros(a.shape, np.uint8)
    sample = a[::4, ::4] if a.ndim == 2 and a.shape[0] > 64 else a
    lo, hi = (float(v) for v in np.percentile(sample, (1, 99.5)))
    span = max(hi - lo, 8.0 if np.asarray(image).dtype == np.uint8 else 64.0)
    return np.clip((a - lo) * (255.0 / span), 0, 255).astype(np.uint8)


def colour_depth(depth: np.ndarray, range_raw: tuple[float, float] | None = None) -> np.ndarray:
    """BGR colouring of raw depth (near = warm, 0 = hole = black) over ``range_raw`` (default: 2-98th
    percentiles of the valid pixels)."""
    a = np.asarray(depth)
    valid = a > 0
    out = np.zeros(a.shape + (3,), np.uint8)
    if not valid.any():
        return out
    lo, hi = range_raw if range_raw is not None else np.percentile(a[valid], (2, 98))
    span = max(float(hi - lo), 1.0)
    g = np.clip((a.astype(np.float32) - float(lo)) * (255.0 / span), 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(255 - g, cv2.COLORMAP_TURBO)
    out[valid] = colour[valid]
    return out


def _draw_box(out: np.ndarray, box: Any, verdict: Verdict) -> None:
    x, y, w, h = _box(box)
    t = max(2, round(max(out.shape[:2]) / 240))
    p0, p1 = (x, y), (x + w - 1, y + h - 1)
    cv2.rectangle(out, p0, p1, (0, 0, 0), t + 2)       # dark halo: visible on any colour map
    cv2.rectangle(out, p0, p1, _BOX_BGR.get(verdict, _BOX_BGR[Verdict.UNKNOWN]), t)


def render_preview(modality: Modality, image: np.ndarray, box: tuple[int, int, int, int] | None,
                   verdict: Verdict = Verdict.UNKNOWN, *,
                   depth_range_raw: tuple[float, float] | None = None) -> np.ndarray:
    """8-bit BGR image for display: rgb as is, ir auto-levelled (:func:`auto_level`), depth coloured
    (:func:`colour_depth`, 0 = invalid = black).

    Args:
        modality: which stream ``image`` is.
        image: rgb ``uint8 H×W×3`` (RGB order), ir ``uint8|uint16 H×W``, depth ``uint16 H×W``.
        box: face box ``(x, y, w, h)`` in this image's pixels, drawn in the verdict's colour.
        depth_range_raw: depth colour range in raw units (default: percentiles).

    Returns:
        ``uint8 H×W×3`` BGR (OpenCV order).
    """
    a = np.asarray(image)
    if modality is Modality.RGB:
        out = cv2.cvtColor(np.ascontiguousarray(a, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    elif modality is Modality.DEPTH:
        out = colour_depth(a, depth_range_raw)
    else:
        out = cv2.cvtColor(auto_level(a), cv2.COLOR_GRAY2BGR)
    if box is not None:
        _draw_box(out, box, verdict)
    return out


_EDGE_BGR = (255, 0, 255)   # magenta: distinct from every box colour and from grey IR


def render_overlay(ir: np.ndarray, rgb: np.ndarray, rgb_to_ir: Any, box: Any = None,
                   verdict: Verdict = Verdict.UNKNOWN) -> np.ndarray:
    """The rig check: rgb edges (Canny) warped into the IR camera by ``rgb_to_ir`` (3×3) drawn in magenta on
    the auto-levelled IR image; edges that sit on the IR image's own edges mean the rig is right."""
    base = cv2.cvtColor(auto_level(ir), cv2.COLOR_GRAY2BGR)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 40, 120)
    h, w = base.shape[:2]
    warped = cv2.warpPerspective(edges, np.asarray(rgb_to_ir, np.float64), (w, h), flags=cv2.INTER_NEAREST)
    base[warped > 0] = _EDGE_BGR
    if box is not None:
        _draw_box(base, box, verdict)
    return base


def render_published(p: Any, modality: Modality, *, box: bool = True, overlay: bool = False) -> np.ndarray | None:
    """The preview of one stream of a published update (``Published``: frames, boxes, view), or None when
    that stream has no frame (or, for the overlay, no rgb frame or homography)."""
    img = p.frames.get(modality)
    if img is None:
        return None
    view = getattr(p, "view", None) or {}
    b = p.boxes.get(modality) if box else None
    if overlay:
        rgb, h = p.frames.get(Modality.RGB), view.get("rgb_to_ir")
        if modality is not Modality.IR or rgb is None or h is None:
            return None
        return render_overlay(img, rgb, h, b, p.frames_verdict)
    rng = None
    if modality is Modality.DEPTH and view.get("depth_range_m") and view.get("depth_scale_m"):
        s = float(view["depth_scale_m"])
        rng = (view["depth_range_m"][0] / s, view["depth_range_m"][1] / s)
    return render_preview(modality, img, b, p.frames_verdict, depth_range_raw=rng)


def encode_image(bgr: np.ndarray, fmt: str, jpeg_quality: int = 80) -> bytes:
    """Encode a BGR image as ``"jpg"`` or ``"png"`` bytes."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if fmt == "jpg" else []
    ok, buf = cv2.imencode("." + fmt, bgr, params)
    if not ok:
        raise EdgePadError(f"could not encode a preview as {fmt}")
    return buf.tobytes()

