"""Learned face detector with five landmarks: MTCNN (P-Net -> R-Net -> O-Net) through ONNX Runtime.

The three networks ship in ``edgepad/assets`` (``mtcnn_{pnet,rnet,onet}.onnx``, 2 MB together, MIT; their
provenance, sha256 and licence are in ``edgepad/assets/face_detector.json`` and ``DETECTOR_PROVENANCE.md``;
``scripts/convert_face_detector.py`` rebuilds them from the upstream weights). Nothing is downloaded.

The stages (Zhang et al., IEEE SPL 2016):

1. **P-Net** runs fully convolutionally on an image pyramid (scales ``12 / min_face_px × factor^k``); each
   output cell is a 12×12 prior window at stride 2 of its pyramid level (:func:`pnet_priors`); cells with a face
   probability >= ``thresholds[0]`` are decoded (:func:`decode_pnet`), suppressed per level (IoU 0.5) and
   across levels (IoU 0.7), refined by their regression (:func:`apply_regression`) and made square
   (:func:`square`).
2. **R-Net** scores 24×24 crops of those windows (batch = candidates), refines and re-squares them.
3. **O-Net** scores 48×48 crops, gives the final box regression and the five landmarks; a last NMS uses the
   intersection over the *smaller* box (``mode="min"``), which drops a small box nested in a larger one.

For tracking, :meth:`LearnedFaceDetector.detect` also takes ``levels`` (P-Net on some pyramid levels only: a
full search spread over frames, :func:`pyramid_parts`) and ``seeds`` (known boxes that go straight to O-Net,
e.g. the last face's: no P-Net, no R-Net; R-Net + O-Net for a seed that O-Net rejects).

Decoding and NMS are vectorised numpy (:func:`nms`, :func:`decode_pnet`, :func:`decode_landmarks`), one image at
a time (batch of one for P-Net; R-Net and O-Net batch the candidate crops of that image).

Landmark order (image coordinates, unmirrored camera): image-left eye, image-right eye, nose tip, image-left
mouth corner, image-right mouth corner - i.e. the subject's right eye first, as
:class:`edgepad.runtime.face.FaceDetection` documents.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import ConfigError

ort = lazy("onnxruntime")
cv2 = lazy("cv2")
log = logging.getLogger(__name__)

#: pixel normalisation of all three networks: (rgb - MEAN) * SCALE
PIXEL_MEAN, PIXEL_SCALE = 127.5, 0.0078125
#: P-Net prior window side and stride in pyramid-level pixels
PNET_CELL, PNET_STRIDE = 12, 2
#: P-Net windows overlapping a tracking seed at least this much (IoU) are left to the seed (:meth:`detect`)
SEED_IOU = 0.5
#: MTCNN box -> face-box convention of edgepad's crops (the box around the face outline, brow to chin, as the
#: synthetic camera's ground truth): centre shift (dx, dy) and size (sw, sh) relative to max(w, h) of the MTCNN
#: box, as :data:`edgepad.runtime.face.HAAR_TO_FACE_BOX` for Haar. Medians over 399 detections on 400 synthetic
#: frames (all species, 0.3-1.5 m; scripts/face_detector_figures.py); median IoU with the truth 0.81 raw, 0.89
#: mapped.
MTCNN_TO_FACE_BOX = (0.005, 0.068, 0.771, 0.891)
STAGE_FILES = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}
MANIFEST = "face_detector.json"


@dataclass(frozen=True)
class DetectedFace:
    """One face found by :class:`LearnedFaceDetector`.

    Attributes:
        box: ``(x, y, w, h)`` in input-image pixels (float; MTCNN's tight face box, eyebrows to chin).
        landmarks: float32 ``(5, 2)`` ``(x, y)`` pixels: image-left eye, image-right eye, nose tip, image-left
            mouth corner, image-right mouth corner.
        score: O-Net face probability in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    def box_int(self) -> tuple[int, int, int, int]:
        """The box rounded to whole pixels (w, h >= 1)."""
        x, y, w, h = self.box
        x0, y0 = int(round(x)), int(round(y))
        return x0, y0, max(1, int(round(x + w)) - x0), max(1, int(round(y + h)) - y0)

    @property
    def inter_eye_px(self) -> float:
        return float(np.hypot(*(self.landmarks[1] - self.landmarks[0])))


def map_box(box: Sequence[float], adjust: Sequence[float] = MTCNN_TO_FACE_BOX) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` -> the crop convention by ``adjust = (dx, dy, sw, sh)`` (relative to the box's longer
    side), rounded to whole pixels; ``(0, 0, 1, 1)`` on a square box keeps it."""
    x, y, w, h = (float(v) for v in box)
    dx, dy, sw, sh = adjust
    side = max(w, h)
    cx, cy = x + w / 2 + dx * side, y + h / 2 + dy * side
    bw, bh = sw * side, sh * side
    return (int(round(cx - bw / 2)), int(round(cy - bh / 2)), max(1, int(round(bw))), max(1, int(round(bh))))


# ----------------------------------------------------------------------------------------------- numpy helpers


def pyramid_scales(height: int, width: int, min_face_px: float, factor: float = 0.709,
                   cell: int = PNET_CELL) -> list[float]:
    """Scales of the P-Net pyramid: a face of ``min_face_px`` maps onto one ``cell`` window at the first scale,
    each next scale is ``factor`` × the previous, down to the last whose shorter side still holds one window."""
    if not (min_face_px > 0 and 0.0 < factor < 1.0):
        raise ConfigError("pyramid needs min_face_px > 0 and 0 < factor < 1", key="min_face_px")
    s = cell / float(min_face_px)
    out = []
    short = min(height, width)
    while short * s >= cell:
        out.append(s)
        s *= factor
    return out


def pyramid_parts(scales: Sequence[float], parts: int) -> list[list[int]]:
    """Split pyramid level indices into ``parts`` consecutive groups of about equal P-Net cost (∝ scale², the
    level's pixels), so that a full search can be spread over ``parts`` frames; fewer groups when there are fewer
    levels. ``parts`` >= 1."""
    if parts < 1:
        raise ConfigError(f"pyramid parts must be >= 1, got {parts}", key="search_parts")
    cost = np.asarray(scales, np.float64) ** 2
    if not len(cost):
        return [[]]
    edges = np.searchsorted(np.cumsum(cost) / cost.sum(), np.arange(1, parts) / parts, side="left")
    groups = np.split(np.arange(len(cost)), np.unique(np.clip(edges + 1, 1, len(cost) - 1)))
    return [g.tolist() for g in groups if len(g)]


def pnet_priors(out_h: int, out_w: int, scale: float, stride: int = PNET_STRIDE,
                cell: int = PNET_CELL) -> np.ndarray:
    """Prior window of every P-Net output cell, ``(out_h * out_w, 4)`` ``x1, y1, x2, y2`` in input-image pixels
    (row-major over the output map)."""
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    x1 = xs.ravel() * stride / scale
    y1 = ys.ravel() * stride / scale
    side = cell / scale
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32)


def decode_pnet(prob: np.ndarray, reg: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """Candidate windows of one P-Net output.

    Args:
        prob: ``(1, 2, H', W')`` softmax (channel 1 = face) or ``(H', W')`` face probability.
        reg: ``(1, 4, H', W')`` regression (dx1, dy1, dx2, dy2 in window sides).
        scale: the pyramid scale the output belongs to.
        threshold: minimum face probability.

    Returns:
        ``(N, 9)`` float32: ``x1, y1, x2, y2, score, dx1, dy1, dx2, dy2`` (boxes in input pixels, unrefined).
    """
    p = prob[0, 1] if prob.ndim == 4 else prob
    r = reg[0] if reg.ndim == 4 else reg
    h, w = p.shape
    keep = np.flatnonzero(p.ravel() >= threshold)
    if keep.size == 0:
        return np.zeros((0, 9), np.float32)
    priors = pnet_priors(h, w, scale)[keep]
    return np.concatenate([priors, p.ravel()[keep, None], r.reshape(4, -1)[:, keep].T], axis=1).astype(np.float32)


def box_iou_one(box: np.ndarray, boxes: np.ndarray, mode: str = "union") -> np.ndarray:
    """Overlap of one ``x1, y1, x2, y2`` box with many: intersection over union (``mode="union"``) or over the
    smaller area (``mode="min"``)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    a = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    b = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    den = np.minimum(a, b) if mode == "min" else a + b - inter
    return np.where(den > 0, inter / np.maximum(den, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2``.
        scores: ``(N,)``.
        iou: a box whose overlap with a kept, higher-scoring box exceeds this is dropped.
        mode: ``"union"`` (IoU) or ``"min"`` (intersection over the smaller box).

    Returns:
        indices of the kept boxes, highest score first (ties keep the lower index first).
    """
    if mode not in ("union", "min"):
        raise ConfigError(f"nms mode must be 'union' or 'min', got {mode!r}", key="mode")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 1:  # the tracked face: nothing to suppress
        return np.zeros(1, np.int64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ov = box_iou_one(boxes[i], boxes[order[1:]], mode)
        order = order[1:][ov <= iou]
    return np.asarray(keep, dtype=np.int64)


def apply_regression(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Refine ``x1, y1, x2, y2`` boxes by offsets in box sides: ``x1 + dx1 * w`` etc."""
    boxes = np.asarray(boxes, np.float32)
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes[:, :4] + reg[:, :4] * np.concatenate([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow ``x1, y1, x2, y2`` boxes to squares of side max(w, h) around the same centre."""
    boxes = np.asarray(boxes, np.float32)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def decode_landmarks(boxes: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """O-Net landmarks ``(N, 10)`` (five x then five y, in box sides) -> ``(N, 5, 2)`` pixels of ``boxes``."""
    boxes = np.asarray(boxes, np.float32)
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    xs = boxes[:, 0:1] + lm[:, 0:5] * w
    ys = boxes[:, 1:2] + lm[:, 5:10] * h
    return np.stack([xs, ys], axis=2).astype(np.float32)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` RGB -> float32 ``(N, 3, H, W)`` input of the networks,
    ``(v - PIXEL_MEAN) * PIXEL_SCALE``, written into one output buffer (no float temporaries)."""
    n, h, w, _ = rgb.shape
    out = np.empty((n, 3, h, w), np.float32)
    np.subtract(rgb.transpose(0, 3, 1, 2), np.float32(PIXEL_MEAN), out=out)
    out *= np.float32(PIXEL_SCALE)
    return out


#: crop_batch's downscales by the compiled INTER_AREA resize (identical to cv2's, ~2.5× faster on a 184² → 48² crop;
#: docs/PERFORMANCE.md §0m) where the registration kernel is available and matched cv2 here; False: cv2 always
COMPILED_AREA = True
#: ... for patches of at least this many pixels (below, cv2's call costs less than the compiled one's Python wrapper)
AREA_MIN_PX = 1600
_AREA: dict = {}


def _area_matches_cv2(area) -> bool:
    """Whether the compiled resize equals this process's ``cv2.resize(INTER_AREA)`` on 24 fixed random crops (this
    OpenCV build, this CPU: an OpenCV built with fused multiply-adds, e.g. on ARM, rounds some sums otherwise)."""
    rng = np.random.default_rng(20)
    img = rng.integers(0, 256, (420, 420, 3), np.uint8)
    img[100:300, 100:300] = np.linspace(0, 255, 200, dtype=np.uint8)[:, None, None]  # smooth ramps: rounding ties
    for i in range(24):
        size = (12, 24, 48)[i % 3]
        hh, ww = (int(v) for v in rng.integers(size + 1, 400, 2))
        y, x = (int(v) for v in rng.integers(0, 420 - max(hh, ww) + 1, 2))
        patch = img[y:y + hh, x:x + ww]
        got = area.resize(patch, size)
        if got is not None and not np.array_equal(got, cv2.resize(patch, (size, size),
                                                                  interpolation=cv2.INTER_AREA)):
            return False
    return True


def _area_resize():
    """The compiled INTER_AREA resize (:class:`edgepad.drivers.registration.native.AreaResize`) once it has
    matched cv2 (:func:`_area_matches_cv2`, on first use; logged where not), else None (cv2 resizes)."""
    if not COMPILED_AREA:
        return None
    if "fn" not in _AREA:
        from edgepad.drivers.registration.native import area_resize
        area = area_resize()
        if area is not None and not _area_matches_cv2(area):
            log.warning("face detector: the compiled area resize differs from this OpenCV's, using cv2.resize")
            area = None
        _AREA["fn"] = area
    return _AREA["fn"]


def crop_batch(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of ``(N, 4)`` ``x1, y1, x2, y2`` boxes (px) of a uint8 ``H×W×3`` image resized to ``size``², zero
    (grey after normalisation: 0 -> -1) outside the image, each resized straight into the output; uint8
    ``(N, size, size, 3)``. Downscales are INTER_AREA (by the compiled copy of cv2's where :func:`_area_resize`
    has one: the same values), others INTER_LINEAR."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    area = _area_resize()
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(np.int64).tolist()):
        bw, bh = max(x2 - x1, 1), max(y2 - y1, 1)
        sx0, sy0, sx1, sy1 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        patch = rgb[sy0:sy1, sx0:sx1]
        if (sx0, sy0, sx1, sy1) != (x1, y1, x2, y2):
            full = np.zeros((bh, bw, 3), np.uint8)
            full[sy0 - y1:sy1 - y1, sx0 - x1:sx1 - x1] = patch
            patch = full
        if bw <= size:
            cv2.resize(patch, (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
        elif area is None or bw * bh < AREA_MIN_PX or area.resize(patch, size, out[i]) is None:
            # (None: not OpenCV's weighted area path)
            cv2.resize(patch, (size, size), dst=out[i], interpolation=cv2.INTER_AREA)
    return out


def shrink(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average ``img`` down to ``width`` × ``height``: exact halvings first (cheap 2×2 means), then one
    area resize for the remaining factor (an arbitrary-ratio area resize of a full frame costs ~1 ms)."""
    while img.shape[1] >= 2 * width and img.shape[0] >= 2 * height and img.shape[1] % 2 == 0 \
            and img.shape[0] % 2 == 0:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------------- the detector


def default_model_dir() -> Path:
    """Folder of the shipped MTCNN ONNX files (``edgepad/assets``)."""
    from edgepad.assets import ASSETS
    return ASSETS


def load_manifest(model_dir: Path | str | None = None) -> dict:
    """The provenance sidecar ``face_detector.json`` of a model folder (default: the shipped one)."""
    path = Path(model_dir or default_model_dir()) / MANIFEST
    return json.loads(path.read_text())


class LearnedFaceDetector:
    """MTCNN face detector with five landmarks on ONNX Runtime (CPU by default).

    Args:
        model_dir: folder with ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx`` (default: shipped).
        score_threshold: minimum final (O-Net) face probability.
        nms_iou: overlap above which the final NMS (intersection over the smaller box) drops a box.
        min_face_px: smallest face side searched, in input pixels (sets the first pyramid scale; smaller = slower).
        max_face_px: largest face side searched (0 = up to the image's shorter side); skips coarse pyramid levels.
        pyramid_factor: ratio of consecutive pyramid scales.
        stage_thresholds: P-Net and R-Net probability thresholds.
        max_candidates: at most this many windows (highest scores) go from P-Net to R-Net and from R-Net to O-Net.
        threads: ONNX Runtime intra-op threads.
        providers: ONNX Runtime execution providers (default CPU).

    Raises:
        ConfigError: a model file is missing or a parameter is out of range.
        MissingDependencyError: onnxruntime or cv2 is not installed (on first use of either).
    """

    def __init__(self, model_dir: Path | str | None = None, score_threshold: float = 0.7, nms_iou: float = 0.7,
                 min_face_px: float = 48.0, max_face_px: float = 0.0, pyramid_factor: float = 0.709,
                 stage_thresholds: tuple[float, float] = (0.6, 0.2), max_candidates: int = 256,
                 threads: int = 1, providers: Sequence[str] | None = None) -> None:
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        for f in STAGE_FILES.values():
            if not (self.model_dir / f).is_file():
                raise ConfigError(f"face detector model file {self.model_dir / f} not found", key="model_dir")
        if not (0.0 <= score_threshold <= 1.0 and 0.0 < nms_iou <= 1.0 and min_face_px >= PNET_CELL
                and max_candidates >= 1 and threads >= 1 and len(stage_thresholds) == 2
                and all(0.0 <= t <= 1.0 for t in stage_thresholds)
                and (max_face_px == 0 or max_face_px >= min_face_px)):
            raise ConfigError("face detector needs thresholds in [0, 1], 0 < nms_iou <= 1, min_face_px >= 12, "
                              "max_face_px 0 or >= min_face_px, max_candidates >= 1, threads >= 1",
                              key="score_threshold")
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self.min_face_px, self.max_face_px = float(min_face_px), float(max_face_px)
        self.pyramid_factor = float(pyramid_factor)
        self.stage_thresholds = tuple(float(t) for t in stage_thresholds)
        self.max_candidates = int(max_candidates)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle intra-op workers must not spin: they would steal the cores of the rest of the pipeline
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        prov = list(providers) if providers else ["CPUExecutionProvider"]
        self._sess = {k: ort.InferenceSession(str(self.model_dir / f), sess_options=so, providers=prov)
                      for k, f in STAGE_FILES.items()}

    def scales(self, height: int, width: int, face_px: tuple[float, float] | None = None) -> list[float]:
        """P-Net pyramid scales for an image of ``height`` × ``width`` and face sides ``face_px = (min, max)`` px
        (default ``(min_face_px, max_face_px)``; max 0 = no limit)."""
        lo, hi = face_px if face_px is not None else (self.min_face_px, self.max_face_px)
        return [s for s in pyramid_scales(height, width, max(float(lo), PNET_CELL), self.pyramid_factor)
                if not (hi and PNET_CELL / s > hi * 1.5)]

    # stage 1
    def _stage_pnet(self, rgb: np.ndarray, face_px: tuple[float, float] | None = None,
                    levels: Sequence[int] | None = None) -> np.ndarray:
        h, w = rgb.shape[:2]
        sess = self._sess["pnet"]
        found = []
        level = rgb
        scales = self.scales(h, w, face_px)
        run = set(range(len(scales)) if levels is None else levels)
        for i, s in enumerate(scales[: max(run, default=-1) + 1]):
            # each level is shrunk from the previous one (a full-image resize per level costs ~1 ms each)
            lw, lh = int(math.ceil(w * s)), int(math.ceil(h * s))
            level = shrink(level, lw, lh)
            if i not in run:
                continue
            prob, reg = sess.run(None, {"image": normalise(level[None])})
            cand = decode_pnet(prob, reg, s, self.stage_thresholds[0])
            if len(cand):
                cand = cand[nms(cand[:, :4], cand[:, 4], 0.5)]
                found.append(cand)
        if not found:
            return np.zeros((0, 4), np.float32)
        cand = np.concatenate(found)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)][: self.max_candidates]
        return square(apply_regression(cand[:, :4], cand[:, 5:9]))

    def _stage(self, name: str, image: np.ndarray, boxes: np.ndarray, size: int, threshold: float):
        """R-Net (``size`` 24) or O-Net (48) on the crops of ``(N, 4)`` boxes: the kept indices (probability >=
        ``threshold``), their probabilities and the network's other outputs, kept rows only."""
        outs = self._sess[name].run(None, {"crops": normalise(crop_batch(image, boxes, size))})
        p = outs[0][:, 1]
        keep = np.flatnonzero(p >= threshold)
        return keep, p[keep], [o[keep] for o in outs[1:]]

    def _rnet(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net on candidate windows ``(N, 4)``: the kept ones, suppressed (IoU 0.7), at most ``max_candidates``,
        refined by R-Net's regression and made square, ``(M, 4)``, for O-Net."""
        if not len(boxes):
            return np.zeros((0, 4), np.float32)
        keep, p, (reg,) = self._stage("rnet", image, boxes, 24, self.stage_thresholds[1])
        order = nms(boxes[keep], p, 0.7)[: self.max_candidates]
        return square(apply_regression(boxes[keep][order], reg[order]))

    def _onet(self, image: np.ndarray, boxes: np.ndarray):
        """O-Net on square boxes ``(N, 4)``: kept indices, probabilities, refined ``x1, y1, x2, y2`` boxes and
        ``(K, 5, 2)`` landmarks (px)."""
        if not len(boxes):
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 4), np.float32), \
                np.zeros((0, 5, 2), np.float32)
        keep, p, (reg, lm) = self._stage("onet", image, boxes, 48, self.score_threshold)
        return keep, p, apply_regression(boxes[keep], reg), decode_landmarks(boxes[keep], lm)

    def detect(self, rgb: np.ndarray, region: tuple[int, int, int, int] | None = None,
               face_px: tuple[float, float] | None = None, levels: Sequence[int] | None = None,
               seeds: np.ndarray | None = None) -> list[DetectedFace]:
        """Faces in one RGB image, highest score first.

        Args:
            rgb: uint8 ``H×W×3`` RGB (a BGR image must be converted first).
            region: optional ``(x0, y0, x1, y1)`` window to search (e.g. around the last face when tracking);
                boxes and landmarks are still in full-image pixels.
            face_px: optional ``(min, max)`` face side searched in px (max 0 = no limit), instead of
                ``min_face_px`` / ``max_face_px`` (tracking searches only sizes near the last face's).
            levels: optional indices into :meth:`scales` — run P-Net on these pyramid levels only (a full search
                spread over several frames, :func:`pyramid_parts`); ``[]`` = no P-Net.
            seeds: optional ``(N, 4)`` ``x, y, w, h`` boxes (full-image px), made square, that go straight to
                O-Net (tracking: the last face's box; O-Net's regression fits it to this frame). A seed O-Net
                rejects goes through R-Net and O-Net (R-Net's regression recentres a face that moved further).

        Raises:
            ConfigError: not a uint8 H×W×3 array.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ConfigError(f"detect() needs a uint8 HxWx3 RGB image, got "
                              f"{getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}", key="rgb")
        if region is not None:
            h, w = rgb.shape[:2]
            x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
            x1, y1 = min(w, int(region[2])), min(h, int(region[3]))
            if x1 - x0 < PNET_CELL or y1 - y0 < PNET_CELL:
                return []
            off = np.array([x0, y0], np.float32)
            local = None if seeds is None else np.asarray(seeds, np.float32) - np.array([x0, y0, 0, 0], np.float32)
            return [DetectedFace((f.box[0] + x0, f.box[1] + y0, f.box[2], f.box[3]), f.landmarks + off, f.score)
                    for f in self.detect(rgb[y0:y1, x0:x1], face_px=face_px, levels=levels, seeds=local)]
        rgb = np.ascontiguousarray(rgb)
        sq = np.zeros((0, 4), np.float32)
        if seeds is not None and len(seeds):
            sd = np.asarray(seeds, np.float32).reshape(-1, 4)
            sq = square(np.concatenate([sd[:, :2], sd[:, :2] + sd[:, 2:]], axis=1))
        if levels is not None and not len(levels):
            batch = sq  # tracking: no P-Net, so no R-Net survivors to join the seeds
        else:
            cand = self._stage_pnet(rgb, face_px, levels)
            for b in sq:  # P-Net windows on a seeded face add nothing but R-/O-Net work: the seed stands for them
                if len(cand):
                    cand = cand[box_iou_one(b, cand) < SEED_IOU]
            # seeds and R-Net's survivors in one O-Net batch, seeds first
            batch = np.concatenate([sq, self._rnet(rgb, cand)])
        keep, p, boxes, points = self._onet(rgb, batch)
        n = len(sq)  # keep is ascending: every seed kept <=> keep[n - 1] == n - 1
        if n and not (len(keep) >= n and keep[n - 1] == n - 1):
            # seeds O-Net rejected: the face may have moved further than O-Net's regression reaches
            lost = np.ones(n, bool)
            lost[keep[keep < n]] = False
            _, p2, boxes2, points2 = self._onet(rgb, self._rnet(rgb, sq[lost]))
            p, boxes, points = np.concatenate([p, p2]), np.concatenate([boxes, boxes2]), \
                np.concatenate([points, points2])
        if not len(boxes):
            return []
        keep = nms(boxes, p, self.nms_iou, mode="min")
        return [DetectedFace((float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])), points[i],
                             float(p[i])) for i, b in zip(keep, boxes[keep])]

    def largest(self, rgb: np.ndarray, region: tuple[int, int, int, int] | None = None,
                face_px: tuple[float, float] | None = None, levels: Sequence[int] | None = None,
                seeds: np.ndarray | None = None) -> DetectedFace | None:
        """The detection with the largest box area (the face to decide on), or None; arguments as :meth:`detect`."""
        faces = self.detect(rgb, region, face_px, levels, seeds)
        return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None
