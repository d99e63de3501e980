"""Face locators: where the face is in the rgb image (the crops of every modality follow from the box).

One protocol, :class:`FaceLocator` (``locate(frameset) -> FaceDetection | None``), and four locators:

- :class:`LearnedFaceLocator`: the shipped MTCNN detector (:mod:`edgepad.runtime.detector`, five landmarks),
  detecting on a schedule and tracking in between; the embedded default (``"learned"``).
- :class:`HaarFaceLocator`: OpenCV's Haar cascade shipped in the opencv 4.x wheels (``"haar"``; offline, no
  landmarks). OpenCV builds without ``cv2.CascadeClassifier`` (5.x) or without the cascade file
  raise :class:`MissingDependencyError` / :class:`ConfigError` naming the fix.
- :class:`FixedBoxLocator`: a fixed box (fixed terminals with a face guide, tests).
- :class:`TruthLocator`: the ground-truth box of a synthetic source (tests, demos of the decision stage alone).

Nothing here downloads weights.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgepad._optional import lazy
from edgepad.config import suggest
from edgepad.errors import ConfigError, MissingDependencyError
from edgepad.runtime.detector import MTCNN_TO_FACE_BOX, LearnedFaceDetector, map_box, pyramid_parts
from edgepad.types import FrameSet, Modality

log = logging.getLogger(__name__)
cv2 = lazy("cv2")

Box = tuple[int, int, int, int]


def track_region(last: tuple[int, int, int, int], scale: float, shape: tuple[int, ...]
                 ) -> tuple[float, tuple[int, int, int, int]]:
    """The search window around the last face box ``(x, y, w, h)``: a square ``scale`` × its larger side, centred
    on it and clipped to the image ``shape`` (H, W, ...). Returns ``(side px, (x0, y0, x1, y1))``."""
    lx, ly, lw, lh = last
    side = max(lw, lh)
    half = side * scale / 2.0
    cx, cy = lx + lw / 2.0, ly + lh / 2.0
    return side, (max(0, int(cx - half)), max(0, int(cy - half)), min(shape[1], int(math.ceil(cx + half))),
                  min(shape[0], int(math.ceil(cy + half))))


@dataclass(frozen=True)
class FaceDetection:
    """A face in the rgb image.

    Attributes:
        box: ``(x, y, w, h)`` in rgb pixels.
        score: detector confidence (locator-specific scale; 1.0 for fixed/truth boxes).
        landmarks: ``5×2`` (right eye, left eye, nose tip, right and left mouth corners) in rgb pixels, or None
            when the locator gives none (Haar gives none: pose and inter-eye gates are then skipped; the learned
            locator gives them).
    """

    box: Box
    score: float = 1.0
    landmarks: np.ndarray | None = None

    @property
    def inter_eye_px(self) -> float | None:
        if self.landmarks is None:
            return None
        return float(np.hypot(*(self.landmarks[1] - self.landmarks[0])))


@runtime_checkable
class FaceLocator(Protocol):
    """Finds the face to decide on (the largest one) in a frame set's rgb frame."""

    def locate(self, frameset: FrameSet) -> FaceDetection | None: ...


class FixedBoxLocator:
    """Always returns the same box (a terminal with a face guide, or tests).

    Args:
        box: ``(x, y, w, h)`` in rgb pixels.
    """

    def __init__(self, box: Box) -> None:
        if len(tuple(box)) != 4 or int(box[2]) <= 0 or int(box[3]) <= 0:
            raise ConfigError(f"fixed face box must be (x, y, w, h) with w, h > 0, got {box!r}", key="box")
        self.box = tuple(int(v) for v in box)

    def locate(self, frameset: FrameSet) -> FaceDetection | None:
        return FaceDetection(self.box)  # type: ignore[arg-type]


class TruthLocator:
    """Ground-truth boxes from a source with ``truth(sequence)`` (``SyntheticSource``), keyed by the rgb sequence.

    Args:
        source: object with ``truth(sequence) -> Presentation`` whose ``face_box_rgb`` is a box or None.
    """

    def __init__(self, source: Any) -> None:
        if not callable(getattr(source, "truth", None)):
            raise ConfigError("the truth locator needs a source with truth(sequence) (synthetic://)", key="locator")
        self.source = source

    def locate(self, frameset: FrameSet) -> FaceDetection | None:
        rgb = frameset.get(Modality.RGB)
        if rgb is None:
            return None
        box = getattr(self.source.truth(rgb.sequence), "face_box_rgb", None)
        return None if box is None else FaceDetection(tuple(int(v) for v in box))  # type: ignore[arg-type]


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> Path:
    """Path of a cascade shipped with the installed OpenCV wheel.

    Raises:
        MissingDependencyError: no cv2, or a cv2 without Haar support (OpenCV 5.x).
        ConfigError: the cascade file is absent from this OpenCV build.
    """
    if not hasattr(cv2, "CascadeClassifier"):
        raise MissingDependencyError("cv2", "vision", "this OpenCV build has no CascadeClassifier (OpenCV 5.x "
                                     "dropped Haar cascades): install opencv-python-headless<5 or pass a locator")
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / name if folder else None
    if path is None or not path.is_file():
        raise ConfigError(f"OpenCV's Haar cascade {name} is not in this OpenCV build ({folder}); pass "
                          "cascade_path= or another locator", key="cascade_path")
    return path


#: Haar box -> face-box convention of edgepad's crops (the box around the face outline, brow to chin, as the
#: synthetic benchmark's ground truth): centre shift (dx, dy) and size (sw, sh), all relative to the Haar box side.
#: Medians over 351 detections on 400 synthetic frames (seeds 11, 12; IQR 0.03 / 0.04 / 0.08 / 0.09), see
#: docs/RUNTIME.md. Haar boxes are square and sit higher (they include the forehead).
HAAR_TO_FACE_BOX = (0.0, 0.13, 0.81, 0.95)


class LearnedFaceLocator:
    """The learned MTCNN detector with five landmarks (the embedded default): tracks the face through O-Net and
    spreads every full search over several frames, so that no frame pays for a whole P-Net pyramid.

    Per frame, while a face is tracked, the last face's box (made square) goes straight to O-Net, whose regression
    refits it to the new frame and which gives the landmarks as in a full detection (one 48² crop, no P-Net, no
    R-Net). If O-Net rejects it (the face moved further than O-Net's regression reaches, or left), the box goes
    through R-Net and O-Net as in a full detection (one 24² and one 48² crop). Every
    ``detect_every`` frames a full search runs beside the tracking, one part of the pyramid per frame
    (``search_parts`` parts of about equal cost, :func:`~edgepad.runtime.detector.pyramid_parts`), so a second,
    larger face is picked up. When the tracked box holds no face, or no face is tracked, the frame runs the next
    part of the pyramid on the whole frame, coarse levels (near faces) first (the coarse part also runs on a frame
    whose spread search ran a finer part beside a track that was lost, so a face that jumped is found on that
    frame): a face of any searched size is found within ``search_parts`` frames (3 parts at 640×480: levels 2–6,
    1, 0; on the synthetic camera the first finds faces out to 1.5 m, i.e. the whole access range, the second to
    ~2.2 m, the third beyond). P-Net windows that
    overlap a tracked face (IoU ≥ 0.5) are left to its seed, so a search beside the track refits one box, not
    several of the same face. Every box and landmark comes from the current frame's pixels, and a frame whose
    searches find nothing has no face.

    **O-Net on a schedule** (``verify_every`` = V > 1): between O-Net runs, at most V − 1 frames in a row follow the
    face by the landmarks' optical flow instead (pyramidal Lucas-Kanade, :meth:`_flow`, ≈ 0.2 ms against
    ≈ 0.8–1.0 ms for the O-Net pass): the five landmarks of the last frame are found again in this frame's pixels, checked forward and
    backward (every point back within ``flow_fb_px``), by their patches' mean absolute difference
    (≤ ``flow_err``, grey levels), and as one rigid move (each within ``flow_spread_px`` of the median move, the
    move at most :data:`FLOW_MOVE` of the face side). The box moves with the median move (its size kept); the
    score is the last O-Net score.
    Any failed check, a spread search due, or V − 1 flow frames in a row send the frame to O-Net as above. V = 1:
    O-Net on every frame.

    Args:
        detect_every: a spread full search starts every N tracked frames.
        search_parts: frames one full search is spread over (1 = the whole pyramid on one frame).
        box_adjust: ``(dx, dy, sw, sh)`` mapping MTCNN's tight box onto the crop convention
            (:data:`~edgepad.runtime.detector.MTCNN_TO_FACE_BOX`).
        verify_every: O-Net at least every V frames of a tracked face; the frames between follow the landmarks'
            flow (1 = O-Net on every frame).
        flow_fb_px, flow_err, flow_spread_px: the flow's checks (forward-backward error, px; patch mean absolute
            difference, grey levels; largest deviation from the median move, px).
        detector: a ready :class:`LearnedFaceDetector`; else one is built from ``detector_kw``
            (``min_face_px``, ``score_threshold``, ``threads`` …).

    Raises:
        ConfigError: a parameter out of range or a missing model file.
        MissingDependencyError: onnxruntime is not installed (when the detector is built).
    """

    def __init__(self, detect_every: int = 10, search_parts: int = 3,
                 box_adjust: tuple[float, float, float, float] = MTCNN_TO_FACE_BOX,
                 detector: LearnedFaceDetector | None = None, verify_every: int = 2, flow_fb_px: float = 0.5,
                 flow_err: float = 8.0, flow_spread_px: float = 2.0, **detector_kw: Any) -> None:
        if not (isinstance(detect_every, int) and detect_every >= 1 and isinstance(search_parts, int)
                and search_parts >= 1):
            raise ConfigError("learned locator needs detect_every >= 1 and search_parts >= 1", key="detect_every")
        if not (isinstance(verify_every, int) and verify_every >= 1 and flow_fb_px > 0 and flow_err > 0
                and flow_spread_px > 0):
            raise ConfigError("learned locator needs verify_every >= 1 and flow_fb_px, flow_err, flow_spread_px > 0",
                              key="verify_every")
        self.verify_every = verify_every
        self.flow_fb_px, self.flow_err, self.flow_spread_px = float(flow_fb_px), float(flow_err), float(flow_spread_px)
        if len(box_adjust) != 4 or not (box_adjust[2] > 0 and box_adjust[3] > 0):
            raise ConfigError(f"box_adjust must be (dx, dy, sw, sh) with sw, sh > 0, got {box_adjust!r}",
                              key="box_adjust")
        self.detector = detector if detector is not None else LearnedFaceDetector(**detector_kw)
        self.detect_every, self.search_parts = detect_every, search_parts
        self.box_adjust = tuple(float(v) for v in box_adjust)
        self._parts: dict[tuple[int, int], list[list[int]]] = {}  # image (H, W) -> pyramid parts
        self.reset()
        self.searches = {"track": 0, "part": 0, "flow": 0, "flow_failed": 0}

    def reset(self) -> None:
        """Forget the tracked face (the next frames run the full search, part by part)."""
        self._last: tuple[float, float, float, float] | None = None  # last raw MTCNN box (px)
        self._since = 0  # tracked frames since the last spread full search began
        self._part = 0  # next pyramid part
        self._prev: tuple | None = None  # the last face for the flow: (grey image, landmarks (5, 2), score)
        self._flowed = 0  # flow frames since the last O-Net run

    def _parts_of(self, shape: tuple[int, ...]) -> list[list[int]]:
        """The pyramid parts of an image of this shape, coarse levels (large, near faces: the usual case at a door,
        and the cheap levels) first."""
        key = (int(shape[0]), int(shape[1]))
        if key not in self._parts:
            self._parts[key] = pyramid_parts(self.detector.scales(*key), self.search_parts)[::-1]
        return self._parts[key]

    def _next_part(self, shape: tuple[int, ...]) -> list[int]:
        parts = self._parts_of(shape)
        levels = parts[self._part % len(parts)]
        self._part = (self._part + 1) % len(parts)
        self.searches["part"] += 1
        return levels

    def locate(self, frameset: FrameSet) -> FaceDetection | None:
        rgb = frameset.get(Modality.RGB)
        if rgb is None:
            return None
        img = rgb.data  # uint8 H×W×3: an rgb Frame is never grey (edgepad.types.Frame checks it)
        f = None
        if self._last is not None:
            self.searches["track"] += 1
            self._since += 1
            levels: list[int] = []
            if self._since >= self.detect_every or self._part:  # the spread full search is due or under way
                levels = self._next_part(img.shape)
                self._since = 0
            elif self._flowed < self.verify_every - 1 and self._prev is not None:
                moved = self._flow(img)
                if moved is not None:
                    return moved
            self._flowed = 0
            f = self.detector.largest(img, levels=levels, seeds=np.array([self._last], np.float32))
            if f is None and levels:  # lost on a frame of the spread search
                self._last = None
                if levels == self._parts_of(img.shape)[0]:
                    return None  # the coarse part ran beside the track and found nothing either
                self._part = 0  # a finer part ran: the coarse part (the access range) runs below on this frame
        if f is None:  # nothing tracked, or the tracked box lost the face: the next part of the full search
            f = self.detector.largest(img, levels=self._next_part(img.shape))
            if f is not None:  # tracking (re)starts; the next spread full search begins with its first part
                self._since = self._part = 0
        if f is None:
            self._last = self._prev = None
            return None
        self._last = tuple(float(v) for v in f.box)  # type: ignore[assignment]
        self._prev = None
        if self.verify_every > 1:  # the reference of the flow: the face's region in grey, its landmarks, score
            lm = np.asarray(f.landmarks, np.float64)
            g = FLOW_WIN[0] + FLOW_MOVE * max(f.box[2], f.box[3])
            region = (max(0, int(lm[:, 0].min() - g)), max(0, int(lm[:, 1].min() - g)),
                      min(img.shape[1], int(math.ceil(lm[:, 0].max() + g))),
                      min(img.shape[0], int(math.ceil(lm[:, 1].max() + g))))
            self._prev = (region, cv2.cvtColor(img[region[1]:region[3], region[0]:region[2]], cv2.COLOR_RGB2GRAY),
                          np.asarray(f.landmarks, np.float32), float(f.score))
        return FaceDetection(map_box(f.box, self.box_adjust), float(f.score), np.array(f.landmarks, copy=True))

    def _flow(self, img: np.ndarray) -> FaceDetection | None:
        """The last face followed into ``img`` (uint8 H×W×3) by its landmarks' optical flow inside the reference
        region (the landmarks' bounding box at the last O-Net run, grown by the flow window and the largest move
        followed, :data:`FLOW_MOVE` of the face side), or None when a check fails (the caller runs O-Net). On
        success the tracked box, landmarks and reference image move on."""
        region, a, pts, score = self._prev  # type: ignore[misc]
        x0, y0, x1, y1 = region
        b = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        x, y, w, h = self._last  # type: ignore[misc]
        off = np.array([x0, y0], np.float32)
        p0 = (pts - off).reshape(-1, 1, 2)
        ok = False
        if a.shape == b.shape and min(a.shape) > 2 * FLOW_WIN[0]:
            p1, st1, err = cv2.calcOpticalFlowPyrLK(a, b, p0, None, winSize=FLOW_WIN, maxLevel=FLOW_LEVELS,
                                                    criteria=FLOW_CRITERIA)
            if p1 is not None and st1.all() and np.all(err <= self.flow_err):
                back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, winSize=FLOW_WIN, maxLevel=FLOW_LEVELS,
                                                        criteria=FLOW_CRITERIA)
                move = (p1 - p0).reshape(-1, 2)
                med = np.median(move, axis=0)
                ok = bool(st2.all() and np.all(np.hypot(*(back - p0).reshape(-1, 2).T) <= self.flow_fb_px)
                          and np.all(np.hypot(*(move - med).T) <= self.flow_spread_px)
                          and float(np.hypot(*med)) <= FLOW_MOVE * max(w, h))
        if not ok:
            self.searches["flow_failed"] += 1
            return None
        self.searches["flow"] += 1
        self._flowed += 1
        box = (x + float(med[0]), y + float(med[1]), w, h)
        lm = (p1.reshape(-1, 2) + off).astype(np.float32)
        self._last = box  # type: ignore[assignment]
        self._prev = (region, b, lm, score)
        return FaceDetection(map_box(box, self.box_adjust), score, lm.copy())


class HaarFaceLocator:
    """OpenCV Haar-cascade face detector on the rgb frame (``"haar"``; no landmarks).

    The image is converted to grey and shrunk so that its width is at most ``work_width_px`` before detection
    (Haar cost grows with pixels); the largest detection wins.

    **Re-detection in a region of interest** (``roi_every > 1``): after a detection, the next frames are searched
    only in a square of ``roi_scale`` × the last Haar box around it, at the scales 1/``roi_size_range`` ..
    ``roi_size_range`` × its size, on the same working scale (so the box mapping stays calibrated); every
    ``roi_every``-th frame, and whenever the region finds nothing, the whole frame is searched. Every box still
    comes from a detection on the current frame's pixels (no box is carried over from an earlier frame): a face
    that left the region is either found by the full search or reported as no face. A second, larger face entering
    elsewhere is picked up at the next full search (at most ``roi_every − 1`` frames later).

    Args:
        cascade_path: cascade XML; default = ``haarcascade_frontalface_default.xml`` from the OpenCV wheel.
        scale_factor, min_neighbors: ``detectMultiScale`` parameters.
        min_face_px: smallest face side in full-resolution pixels.
        work_width_px: detection image width (0 = full resolution).
        box_adjust: ``(dx, dy, sw, sh)`` mapping Haar's box onto the crop convention (see
            :data:`HAAR_TO_FACE_BOX`); ``(0, 0, 1, 1)`` keeps Haar's box.
        roi_every: full-frame search every N frames, region search in between (1 = always full frame).
        roi_scale: side of the search region relative to the last Haar box side.
        roi_size_range: size range of the region search, relative to the last Haar box (> 1).

    Raises:
        MissingDependencyError / ConfigError: see :func:`haar_cascade_path`.
    """

    def __init__(self, cascade_path: Path | str | None = None, scale_factor: float = 1.15, min_neighbors: int = 4,
                 min_face_px: int = 40, work_width_px: int = 320,
                 box_adjust: tuple[float, float, float, float] = HAAR_TO_FACE_BOX, roi_every: int = 5,
                 roi_scale: float = 2.0, roi_size_range: float = 1.4) -> None:
        path = Path(cascade_path) if cascade_path else haar_cascade_path()
        if not hasattr(cv2, "CascadeClassifier"):
            raise MissingDependencyError("cv2", "vision", "this OpenCV build has no CascadeClassifier")
        if not path.is_file():
            raise ConfigError(f"Haar cascade file not found: {path}", key="cascade_path")
        self._clf = cv2.CascadeClassifier(str(path))
        if self._clf.empty():
            raise ConfigError(f"OpenCV could not load the Haar cascade {path}", key="cascade_path")
        if not (scale_factor > 1.0 and min_neighbors >= 0 and min_face_px > 0 and work_width_px >= 0):
            raise ConfigError("Haar locator needs scale_factor > 1, min_neighbors >= 0, min_face_px > 0",
                              key="scale_factor")
        self.path = path
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_face_px = int(min_face_px)
        self.work_width_px = int(work_width_px)
        if len(box_adjust) != 4 or not (box_adjust[2] > 0 and box_adjust[3] > 0):
            raise ConfigError(f"box_adjust must be (dx, dy, sw, sh) with sw, sh > 0, got {box_adjust!r}",
                              key="box_adjust")
        self.box_adjust = tuple(float(v) for v in box_adjust)
        if not (isinstance(roi_every, int) and roi_every >= 1 and roi_scale >= 1.0 and roi_size_range > 1.0):
            raise ConfigError("Haar locator needs roi_every >= 1, roi_scale >= 1 and roi_size_range > 1",
                              key="roi_every")
        self.roi_every, self.roi_scale, self.roi_size_range = roi_every, float(roi_scale), float(roi_size_range)
        self._last: tuple[float, float, float, float] | None = None  # last raw Haar box (full-resolution px)
        self._since_full = 0
        self.searches = {"full": 0, "roi": 0}

    def reset(self) -> None:
        """Forget the last face (the next frame is searched in full)."""
        self._last = None

    def _detect(self, rgb: np.ndarray, region: tuple[int, int, int, int] | None, sizes: tuple[float, float] | None,
                ) -> tuple[tuple[float, float, float, float], float] | None:
        """Largest Haar box (full-resolution px) in ``region`` (x0, y0, x1, y1) of the rgb image, or None."""
        h, w = rgb.shape[:2]
        s = self.work_width_px / w if self.work_width_px and w > self.work_width_px else 1.0
        ox = oy = 0
        if region is not None:
            # region aligned to the working-scale grid, so its pixels are those of the full-frame working image
            step = 1.0 / s
            gx0, gy0 = int(region[0] * s), int(region[1] * s)
            gx1, gy1 = int(math.ceil(region[2] * s)), int(math.ceil(region[3] * s))
            ox, oy = int(round(gx0 * step)), int(round(gy0 * step))
            rgb = rgb[oy:min(h, int(round(gy1 * step))), ox:min(w, int(round(gx1 * step)))]
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        gh, gw = grey.shape
        if s != 1.0:
            grey = cv2.resize(grey, (max(1, round(gw * s)), max(1, round(gh * s))), interpolation=cv2.INTER_AREA)
        min_px = max(12, int(math.floor(self.min_face_px * s)))
        kw = {}
        if sizes is not None:
            min_px = max(min_px, int(math.floor(sizes[0] * s)))
            kw["maxSize"] = (int(math.ceil(sizes[1] * s)),) * 2
        if min(grey.shape) < min_px:
            return None
        rects, _, weights = self._clf.detectMultiScale3(grey, scaleFactor=self.scale_factor,
                                                       minNeighbors=self.min_neighbors, minSize=(min_px, min_px),
                                                       outputRejectLevels=True, **kw)
        if len(rects) == 0:
            return None
        i = int(np.argmax([r[2] * r[3] for r in rects]))
        x, y, bw, bh = (float(v) / s for v in rects[i])
        score = float(np.ravel(weights)[i]) if len(weights) else 1.0
        return (x + ox, y + oy, bw, bh), score

    def locate(self, frameset: FrameSet) -> FaceDetection | None:
        rgb = frameset.get(Modality.RGB)
        if rgb is None:
            return None
        img = rgb.data
        found = None
        if self._last is not None and self._since_full < self.roi_every - 1:
            side, region = track_region(self._last, self.roi_scale, img.shape)
            self.searches["roi"] += 1
            found = self._detect(img, region, (side / self.roi_size_range, side * self.roi_size_range))
            if found is not None:
                self._since_full += 1
        if found is None:
            self.searches["full"] += 1
            self._since_full = 0
            found = self._detect(img, None, None)
        if found is None:
            self._last = None
            return None
        (x, y, bw, bh), score = found
        self._last = (x, y, bw, bh)
        return FaceDetection(map_box((x, y, bw, bh), self.box_adjust), score)


#: the embedded default locator spec
DEFAULT_LOCATOR = "learned"


#: the largest move the flow follows between two frames, as a fraction of the face side; its Lucas-Kanade window
#: (px), pyramid levels above the image, and stop criteria
FLOW_MOVE = 0.1
FLOW_WIN = (15, 15)
FLOW_LEVELS = 1
FLOW_CRITERIA = (3, 20, 0.03)  # cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20 iterations, 0.03 px


def make_locator(spec: str | FaceLocator | None = DEFAULT_LOCATOR, source: Any = None) -> FaceLocator:
    """Locator from a short spec: ``"learned"`` (default), ``"haar"``, ``"truth"`` (needs ``source``),
    ``"fixed:x,y,w,h"``, or an object.

    Raises:
        ConfigError: unknown spec (with suggestions).
    """
    if spec is None or spec == "learned":
        return LearnedFaceLocator()
    if spec == "haar":
        return HaarFaceLocator()
    if not isinstance(spec, str):
        if not callable(getattr(spec, "locate", None)):
            raise ConfigError(f"a face locator needs locate(frameset); got {type(spec).__name__}", key="locator")
        return spec
    if spec == "truth":
        return TruthLocator(source)
    if spec.startswith("fixed:"):
        try:
            vals = tuple(int(v) for v in spec[6:].split(","))
        except ValueError:
            raise ConfigError(f"fixed locator needs fixed:x,y,w,h, got {spec!r}", key="locator") from None
        return FixedBoxLocator(vals)  # type: ignore[arg-type]
    raise ConfigError(f"unknown face locator {spec!r}; use learned, haar, truth or fixed:x,y,w,h", key="locator",
                      suggestions=suggest(spec, ["learned", "haar", "truth", "fixed"]))
