"""Preview images for the installer's live view, and the face regions the audit log stores.

* :func:`face_boxes`: the rgb face box in every camera of a frame set (lifted through the rig when a camera is
  not registered to rgb).
* :func:`render_preview` / :func:`encode_image`: 8-bit BGR display images with the verdict-coloured box, and
  their JPEG/PNG bytes (``cv2``, extra ``vision``, imported on first use).
* :func:`face_crops_for_audit`: face regions with a margin, for an audit log that stores images.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import EdgePadError, ShapeError
from edgepad.geometry import project_box
from edgepad.preprocess import median_face_depth
from edgepad.types import Modality, Verdict

log = logging.getLogger(__name__)
cv2 = lazy("cv2")


def face_boxes(fs: Any, box_rgb: tuple[int, int, int, int] | None, rig: Any) -> dict:
    """The rgb face box in every frame of a frame set; missing = not drawn.

    As is on rgb and on depth registered to rgb; lifted to the median face depth (central half of the box, m)
    and projected through the rig into an unregistered depth or IR camera.

    Args:
        fs: a :class:`~edgepad.types.FrameSet`.
        box_rgb: face box ``(x, y, w, h)`` in rgb pixels, or None.
        rig: the :class:`~edgepad.geometry.Rig` (None = no projection).

    Returns:
        ``{Modality: (x, y, w, h)}`` in each camera's pixels.
    """
    if not box_rgb:
        return {}
    box = tuple(int(v) for v in box_rgb)
    out: dict[Modality, tuple[int, int, int, int]] = {Modality.RGB: box}
    depth = fs.frames.get(Modality.DEPTH)
    depth_m = None
    if depth is not None and getattr(depth, "registered_to", None) is Modality.RGB:
        out[Modality.DEPTH] = box
        try:
            depth_m, _ = median_face_depth(depth.data, box, float(depth.depth_scale_m or 0.001))
        except ShapeError:       # an empty box: nothing to lift
            depth_m = None
    rgb = fs.frames.get(Modality.RGB)
    if rig is None or rgb is None or depth_m is None:
        return out
    for m in (Modality.IR, Modality.DEPTH):
        if m in out or m not in fs.frames:
            continue
        try:
            projected = project_box(box, depth_m, rgb.intrinsics, fs.frames[m].intrinsics,
                                    rig.extrinsics(Modality.RGB, m))
        except Exception:  # noqa: BLE001 - a preview box is cosmetic; never fail a decision for it
            log.debug("could not project the face box into %s", m, exc_info=True)
            continue
        if projected is not None:
            out[m] = projected
    return out


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


def render_preview(modality: Modality, image: np.ndarray, box: tuple[int, int, int, int] | None,
                   verdict: Verdict = Verdict.UNKNOWN) -> np.ndarray:
    """8-bit BGR image for display: rgb as is, ir scaled to 8 bit, depth colour-mapped (0 = invalid = black).

    Args:
        modality: which stream ``image`` is.
        image: rgb ``uint8 H×W×3`` (RGB order), ir ``uint8|uint16 H×W``, depth ``uint16 H×W``.
        box: face box ``(x, y, w, h)`` in this image's pixels, drawn in the verdict's colour.

    Returns:
        ``uint8 H×W×3`` BGR (OpenCV order).
    """
    a = np.asarray(image)
    if modality is Modality.RGB:
        out = cv2.cvtColor(np.ascontiguousarray(a, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    elif modality is Modality.DEPTH:
        valid = a > 0
        out = np.zeros(a.shape + (3,), np.uint8)
        if valid.any():
            lo, hi = np.percentile(a[valid], (2, 98))
            span = max(float(hi - lo), 1.0)
            g = np.clip((a.astype(np.float32) - float(lo)) * (255.0 / span), 0, 255).astype(np.uint8)
            colour = cv2.applyColorMap(255 - g, cv2.COLORMAP_TURBO)   # near = warm
            out[valid] = colour[valid]
    else:
        if a.dtype != np.uint8:
            hi = float(np.percentile(a, 99.5)) if a.size else 0.0
            a = np.clip(a.astype(np.float32) * (255.0 / max(hi, 1.0)), 0, 255).astype(np.uint8)
        out = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_GRAY2BGR)
    if box is not None:
        x, y, w, h = (int(v) for v in box)
        t = max(2, round(max(out.shape[:2]) / 240))
        p0, p1 = (x, y), (x + w - 1, y + h - 1)
        cv2.rectangle(out, p0, p1, (0, 0, 0), t + 2)       # dark halo: visible on any colour map
        cv2.rectangle(out, p0, p1, _BOX_BGR.get(verdict, _BOX_BGR[Verdict.UNKNOWN]), t)
    return out


def encode_image(bgr: np.ndarray, fmt: str, jpeg_quality: int = 80) -> bytes:
    """Encode a BGR image as ``"jpg"`` or ``"png"`` bytes."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if fmt == "jpg" else []
    ok, buf = cv2.imencode("." + fmt, bgr, params)
    if not ok:
        raise EdgePadError(f"could not encode a preview as {fmt}")
    return buf.tobytes()

