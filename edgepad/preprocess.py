"""The one preprocessing of edgepad: face crops per modality and their normalisation (training AND runtime).

Two steps, both numpy-only and deterministic:

1. :func:`face_crops` cuts a square around a face box found in the rgb image, per modality, in raw units:
   rgb ``uint8 S×S×3`` and depth ``uint16 S×S`` (depth must be registered to rgb, e.g. by the capture's or the
   runtime's ``edgepad.drivers.registration.Registrar``) are cut with the same pixel window;
   ir ``uint8 S×S`` is resampled so that each crop pixel sees the same 3-D point as the rgb crop pixel: the rgb
   window is lifted onto the fronto-parallel plane at the median face depth and projected into the IR camera
   through the rig (baseline, rotation and lens distortion included).
2. :func:`normalise` maps raw crops to float32 ``1×C×S×S`` model inputs as described by each
   :class:`~edgepad.engines.manifest.InputSpec`; an absent modality becomes a tensor filled with
   ``InputSpec.missing_fill`` (written after normalisation, so it is exactly constant).

The default edge preprocessing (:func:`default_input_specs`) at 112 px:

- rgb: ``x / 255``, then ``(x − 0.5) / 0.5``  → [−1, 1];
- ir: ``x / 255``, then ``(x − 0.5) / 0.5``  → [−1, 1];
- depth (``depth_norm="face_relative"``): metres relative to the median valid depth of the crop's central
  region (the central S/2 × S/2 window), clipped to ``clip = (−0.1, 0.1)`` m, mapped to [0, 1] then to [−1, 1]
  (positive = farther than the face centre); holes (raw 0) are set to :data:`DEPTH_HOLE_VALUE` (+1, "far");
- a missing modality: ``missing_fill = 0.0`` over the whole tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import numpy as np

from edgepad.errors import ConfigError, ShapeError
from edgepad.geometry import Extrinsics, Intrinsics, Rig, reproject
from edgepad.specs import DEFAULT_MARGIN, InputSpec
from edgepad.types import FrameSet, Modality

#: normalised value written at depth holes (raw 0) by the face-relative and absolute depth normalisations
DEPTH_HOLE_VALUE = 1.0
#: assumed physical face width (m) used to guess the face depth from the box size when depth is unusable
FACE_WIDTH_M = 0.15
#: largest supersampling factor per axis when shrinking a crop (anti-aliasing)
MAX_SUPERSAMPLE = 3
#: depth normalisations understood by :func:`normalise`
DEPTH_NORMS = ("face_relative", "absolute", "mad", "none")

Box = tuple[int, int, int, int]


class Sampler(Protocol):
    """Compiled drop-ins for :func:`crop_face`'s two resamplings (``crop_face(..., sample=)``; the runtime passes
    ``edgepad.drivers.registration.native.CropSampler``). Each must equal the numpy reference named, up to the float
    summation order: a value may move by one grey level at a rounding tie (the tests bound how often)."""

    def lattice(self, img: np.ndarray, lat: np.ndarray, g0: np.ndarray, fr: np.ndarray, k: int) -> np.ndarray:
        """IR crop: uint8 ``H×W`` image, float64 ``(G, G, 2)`` lattice, int32 / float64 ``N`` interpolation index
        and fraction (:func:`_projected_lattice`), ``N = S·k`` → uint8 ``S×S``; the reference is
        :func:`_sample_box` on :func:`_lattice_map`'s maps cast to float32."""

    def resample(self, img: np.ndarray, x0: float, y0: float, side: float, size_px: int, k: int) -> np.ndarray:
        """rgb crop: uint8 ``H×W×C`` (or ``H×W``), window ``(x0, y0, side)`` px, ``k`` sub-samples per output pixel
        and axis → uint8 ``S×S×C``; the reference is :func:`_resample_separable` of :func:`_resample_matrix`."""

    def reproject(self, uv: np.ndarray, depth_m: float, src: Intrinsics, dst: Intrinsics,
                  src_to_dst: Extrinsics) -> np.ndarray:
        """The IR crop's lattice (:func:`_projected_lattice`, when ``lattice`` samples it): float64 src pixels
        ``(..., 2)`` on the plane ``z_src = depth_m`` (m) → dst pixels ``(..., 2)``, NaN behind dst; the reference is
        :func:`edgepad.geometry.reproject` (the float64 results may differ in the last bits)."""


class InputKernel(Protocol):
    """A compiled drop-in for :func:`normalise`'s per-pixel arithmetic (``normalise(..., kernel=)``; the runtime
    passes ``edgepad.drivers.registration.native.InputArithmetic``): the same float32 operations in the same order,
    so the inputs are equal to numpy's bit for bit (tests compare them)."""

    def image(self, crop: np.ndarray, gain: float | None, lo: float, span: float, mean: np.ndarray,
              std: np.ndarray, out: np.ndarray) -> None:
        """uint8 ``S×S×C`` / ``S×S`` → float32 ``out`` ``C×S×S``: ``(clip01((v·gain − lo) / span) − mean_c) / std_c``."""

    def depth(self, crop: np.ndarray, scale: float, ref: float | None, lo: float, span: float, mean: float,
              std: float, hole: float, out: np.ndarray) -> None:
        """uint16 ``S×S`` → float32 ``out`` ``S×S``: ``(clip01((v·scale − ref − lo) / span) − mean) / std``, ``hole``
        where ``v == 0``."""


# ------------------------------------------------------------------------------------------------ specs
def default_input_specs(size_px: int = 112) -> dict:
    """The default preprocessing of the edge models, one :class:`InputSpec` per modality name.

    Args:
        size_px: crop side S (px); inputs are ``1×C×S×S`` float32.

    Returns:
        ``{"rgb": InputSpec, "depth": InputSpec, "ir": InputSpec}``.
    """
    if not isinstance(size_px, int) or size_px < 8:
        raise ConfigError(f"crop size must be an integer >= 8 px, got {size_px!r}", key="size_px")
    s = size_px
    return {
        "rgb": InputSpec("rgb", (1, 3, s, s), "float32", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         clip=(0.0, 255.0), missing_fill=0.0, depth_norm="none"),
        "depth": InputSpec("depth", (1, 1, s, s), "float32", mean=(0.5,), std=(0.5,), clip=(-0.1, 0.1),
                           missing_fill=0.0, depth_norm="face_relative"),
        "ir": InputSpec("ir", (1, 1, s, s), "float32", mean=(0.5,), std=(0.5,), clip=(0.0, 255.0),
                        missing_fill=0.0, depth_norm="none"),
    }


# ------------------------------------------------------------------------------------------------ crops
@dataclass(frozen=True)
class CropResult:
    """Crops of one face plus how they were made.

    Attributes:
        crops: raw-unit crops by modality (see :func:`face_crops`).
        window_rgb: the square crop window ``(x0, y0, side)`` in rgb pixels (pixel-centre convention: the
            window spans ``[x0, x0 + side]`` in continuous coordinates where pixel i covers ``[i−½, i+½]``).
        face_depth_m: depth used to lift the window into the IR camera (m).
        nominal_depth: True when ``face_depth_m`` was guessed from the box size (no valid depth in the face).
        valid_depth_fraction: fraction of valid depth pixels in the central face region (0 without depth).
    """

    crops: dict[Modality, np.ndarray]
    window_rgb: tuple[float, float, float]
    face_depth_m: float
    nominal_depth: bool
    valid_depth_fraction: float


def crop_window(box_rgb: Box, margin: float = 0.25) -> tuple[float, float, float]:
    """Square crop window around a face box.

    Args:
        box_rgb: ``(x, y, w, h)`` in rgb pixels (covers pixels x..x+w−1, y..y+h−1).
        margin: relative enlargement: the side is ``max(w, h) · (1 + margin)``.

    Returns:
        ``(x0, y0, side)`` in continuous pixel coordinates (pixel i covers ``[i − ½, i + ½]``).
    """
    x, y, w, h = _check_box(box_rgb)
    if not (isinstance(margin, (int, float)) and 0.0 <= margin <= 4.0):
        raise ConfigError(f"crop margin must be in [0, 4], got {margin!r}", key="margin")
    side = max(w, h) * (1.0 + float(margin))
    cx = x - 0.5 + w / 2.0
    cy = y - 0.5 + h / 2.0
    return (cx - side / 2.0, cy - side / 2.0, side)


def face_crops(frameset: FrameSet, box_rgb: Box, rig: Rig, size_px: int = 112,
               margin: float = 0.25) -> dict[Modality, np.ndarray]:
    """Raw-unit square crops of a face, per modality present in ``frameset``.

    Args:
        frameset: synced frames; depth must be registered to rgb (``registered_to == rgb``, rgb-sized).
        box_rgb: face box ``(x, y, w, h)`` in rgb pixels.
        rig: camera rig (rgb intrinsics and the rgb → ir extrinsics are used).
        size_px: crop side S (px).
        margin: the window side is ``max(w, h) · (1 + margin)`` around the box centre.

    Returns:
        ``{rgb: uint8 S×S×3, depth: uint16 S×S, ir: uint8 S×S}`` for the modalities present; pixels outside
        an image are 0. A uint16 IR image is scaled to uint8 (``x / 257``).

    Raises:
        ShapeError: bad box or frame layout, or depth not registered to rgb. ConfigError: rgb absent, or rig
            without the needed cameras.
    """
    return crop_face(frameset, box_rgb, rig, size_px=size_px, margin=margin).crops


def crop_align(inputs: Mapping) -> str:
    """The crop alignment (``"none"`` | ``"eyes"``) of a model's input specs (``InputSpec.align``; all must agree).

    Raises:
        ConfigError: the specs disagree (one crop geometry serves every modality).
    """
    return _agreed(inputs, "align", "none")


def _agreed(inputs: Mapping, field: str, default):
    """The one value of a crop-geometry ``field`` across a model's input specs (``default`` for specs without it,
    or no specs).

    Raises:
        ConfigError: ``key=field``, the specs disagree (one crop window serves every modality).
    """
    values = {getattr(spec, field, default) for spec in inputs.values()} or {default}
    if len(values) != 1:
        raise ConfigError(f"input specs disagree on {field} ({sorted(values)}): one crop window serves every "
                          f"modality", key=field)
    return values.pop()


def require_crop_align(inputs: Mapping, have: str, where: str) -> None:
    """Raise unless crops cut with alignment ``have`` suit specs ``inputs`` (training/evaluation data paths).

    Stored datasets hold axis-aligned crops and no landmarks (``have="none"``): a model with ``align="eyes"``
    cannot be trained or evaluated on them, and is refused rather than silently fed unaligned crops.

    Raises:
        ConfigError: ``key="align"``, the alignments differ.
    """
    want = crop_align(inputs)
    if want != have:
        raise ConfigError(f"{where}: the model's inputs use align={want!r} but the crops are align={have!r}"
                          + (" (the dataset has no face landmarks to align the stored crops by; re-cut the crops "
                             "with preprocess.crop_face(..., align='eyes', landmarks=...) or use align='none')"
                             if want == "eyes" else ""), key="align")


def crop_margin(inputs: Mapping) -> float:
    """The crop margin of a model's input specs (``InputSpec.margin``; all must agree; none: 0.25).

    Raises:
        ConfigError: ``key="margin"``, the specs disagree (one crop window serves every modality).
    """
    return float(_agreed(inputs, "margin", DEFAULT_MARGIN))


def require_crop_margin(inputs: Mapping, have: float, where: str) -> None:
    """Raise unless crops cut with margin ``have`` suit specs ``inputs`` (training/evaluation data paths).

    A model is trained, evaluated and run on crops of one margin: data cut at another margin is refused rather
    than silently fed to it (the face fills another share of the crop).

    Raises:
        ConfigError: ``key="margin"``, the margins differ.
    """
    want = crop_margin(inputs)
    if not math.isclose(want, float(have), rel_tol=0.0, abs_tol=1e-9):
        raise ConfigError(f"{where}: the model's inputs use crop margin {want:g} but the crops were cut with margin "
                          f"{float(have):g} (window side max(w, h)·(1 + margin)); set the model's margin to the "
                          f"data's (training config inputs.margin) or cut the crops at {want:g}", key="margin")


def eye_roll(landmarks: object) -> float:
    """Roll of the eye line (rad, in (−π/2, π/2]) from 5 landmarks ((5, 2) px; rows 0 and 1 are the eyes).

    ``atan2(dy, dx)`` of the vector from the image-left eye to the image-right eye (whichever order rows 0/1
    use, so a crop is never turned upside down); positive = the image-right eye is lower (clockwise on screen).

    Raises:
        ShapeError: not a finite (>= 2, 2) array or the two eyes coincide.
    """
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise ShapeError("landmarks", "(5, 2) px", landmarks) from None
    if lm.ndim != 2 or lm.shape[0] < 2 or lm.shape[1] != 2 or not np.isfinite(lm[:2]).all():
        raise ShapeError("landmarks", "(5, 2) finite px (left eye, right eye, nose, mouth corners)", lm.shape)
    dx, dy = lm[1] - lm[0]
    if dx < 0 or (dx == 0 and dy < 0):
        dx, dy = -dx, -dy
    if math.hypot(dx, dy) < 1e-6:
        raise ShapeError("landmarks", "two distinct eye points", lm[:2].tolist())
    return math.atan2(dy, dx)


def crop_face(frameset: FrameSet, box_rgb: Box, rig: Rig, size_px: int = 112, margin: float = 0.25, *,
              face_depth_m: float | None = None, align: str = "none", landmarks: object = None,
              sample: Sampler | None = None) -> CropResult:
    """:func:`face_crops` plus the geometry used (face depth, window, whether the depth was nominal).

    Args:
        face_depth_m: override the lifting depth (m); by default the median valid registered depth of the
            central half of the box, or the box-size guess ``fx · FACE_WIDTH_M / w`` when there is none.
        align: ``"none"`` (axis-aligned window; the default, unchanged crops) or ``"eyes"``: the window is
            rotated about its centre by :func:`eye_roll` of ``landmarks`` so the eye line is horizontal in the rgb
            crop; depth (registered to rgb) is sampled at the same rotated points and the rotated window is lifted
            and projected into the IR camera, so all three crops stay pixel-aligned (``InputSpec.align``).
        landmarks: (5, 2) rgb px (:attr:`~edgepad.runtime.face.FaceDetection.landmarks`); required for "eyes".
        sample: compiled drop-ins (:class:`Sampler`) for the axis-aligned rgb crop of a uint8 image and the IR
            crop of a uint8 image (the runtime passes ``edgepad.drivers.registration.native.CropSampler``); crops
            may differ from numpy's by one grey level at rounding ties (docs/PERFORMANCE.md §0j). None: numpy, the
            reference (training). Eye-aligned rgb, uint16 IR and a non-finite IR lattice always run numpy.

    Raises:
        ConfigError: unknown ``align``, or ``align="eyes"`` without landmarks (``key="landmarks"``).
    """
    if not isinstance(size_px, int) or size_px < 8:
        raise ConfigError(f"crop size must be an integer >= 8 px, got {size_px!r}", key="size_px")
    if align not in ("none", "eyes"):
        raise ConfigError(f"align must be 'none' or 'eyes', got {align!r}", key="align")
    roll = 0.0
    if align == "eyes":
        if landmarks is None:
            raise ConfigError("align='eyes' needs the face's 5 landmarks (left eye, right eye, ...): the detector "
                              "or the dataset gave none; use align='none' or a source with landmarks",
                              key="landmarks")
        roll = eye_roll(landmarks)
    rgb = frameset.get(Modality.RGB)
    if rgb is None:
        raise ConfigError("face_crops needs an rgb frame: the face box is defined in rgb pixels", key="rgb")
    x0, y0, side = crop_window(box_rgb, margin)
    rgb_intr = rgb.intrinsics
    out: dict[Modality, np.ndarray] = {}
    if align == "eyes":
        out[Modality.RGB] = _crop_rotated(rgb.data, x0, y0, side, size_px, roll)
    elif sample is not None:  # an rgb Frame is uint8 H×W×3 of its intrinsics' size (edgepad.types.Frame checks it)
        out[Modality.RGB] = sample.resample(rgb.data, x0, y0, side, size_px, _supersample(side, size_px))
    else:
        ay = _resample_matrix(y0, side, rgb_intr.height, size_px)
        ax = _resample_matrix(x0, side, rgb_intr.width, size_px)
        out[Modality.RGB] = _resample_separable(rgb.data, ay, ax)

    valid_fraction = 0.0
    measured = None
    depth = frameset.get(Modality.DEPTH)
    if depth is not None:
        _require_registered(depth, rgb_intr)
        out[Modality.DEPTH] = (_crop_nearest_rotated(depth.data, x0, y0, side, size_px, roll) if align == "eyes"
                               else _crop_nearest(depth.data, x0, y0, side, size_px))
        measured, valid_fraction = median_face_depth(depth.data, box_rgb, depth.depth_scale_m)
    nominal = False
    if face_depth_m is None:
        if measured is None:
            face_depth_m = rgb_intr.fx * FACE_WIDTH_M / max(1, box_rgb[2])
            nominal = True
        else:
            face_depth_m = measured
    elif not (math.isfinite(face_depth_m) and face_depth_m > 0):
        raise ConfigError(f"face_depth_m must be a positive finite number, got {face_depth_m!r}", key="face_depth_m")

    ir = frameset.get(Modality.IR)
    if ir is not None:
        if Modality.IR not in rig.to_reference or Modality.RGB not in rig.to_reference:
            raise ConfigError("the rig has no rgb/ir camera pair: cannot project the face into the IR camera",
                              key="rig")
        img = ir.data
        if img.dtype == np.uint16:
            img = (img.astype(np.float32) / 257.0)
        out[Modality.IR] = _crop_projected(img, rgb_intr, ir.intrinsics, rig.extrinsics(Modality.RGB, Modality.IR),
                                           x0, y0, side, size_px, float(face_depth_m),
                                           roll=roll if align == "eyes" else None, sample=sample)
    return CropResult(out, (x0, y0, side), float(face_depth_m), nominal, valid_fraction)


def _check_box(box: object) -> Box:
    try:
        x, y, w, h = (int(round(float(v))) for v in box)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ShapeError("box_rgb", "(x, y, w, h)", box) from None
    if w <= 0 or h <= 0:
        raise ShapeError("box_rgb", "w > 0 and h > 0", (x, y, w, h))
    return x, y, w, h


def _require_registered(depth, rgb_intr) -> None:
    """Raise ShapeError unless ``depth`` is registered to rgb with the rgb image's size."""
    if depth.registered_to is not Modality.RGB:
        raise ShapeError("depth.registered_to (register depth to rgb first: drivers' Registrar)", "rgb",
                         depth.registered_to)
    if depth.data.shape != (rgb_intr.height, rgb_intr.width):
        raise ShapeError("depth (registered to rgb)", (rgb_intr.height, rgb_intr.width), depth.data.shape)


def median_face_depth(depth: np.ndarray, box: Box, scale_m: float | None) -> tuple[float | None, float]:
    """Median valid depth (m) of the central half of a face box, and the valid fraction there.

    Args:
        depth: raw depth ``uint16 H×W`` registered to the box's camera (0 = hole).
        box: ``(x, y, w, h)`` pixels; the central half is ``[x + w//4, x + w - w//4)`` × likewise in y.
        scale_m: metres per raw unit.

    Returns:
        ``(depth_m, valid_fraction)``; depth_m is None without valid pixels or scale.
    """
    x, y, w, h = _check_box(box)
    hgt, wid = depth.shape
    xa, xb = max(0, x + w // 4), min(wid, x + w - w // 4)
    ya, yb = max(0, y + h // 4), min(hgt, y + h - h // 4)
    if xb <= xa or yb <= ya:
        return None, 0.0
    region = depth[ya:yb, xa:xb]
    valid = region[region > 0]
    frac = valid.size / region.size
    if valid.size == 0 or not scale_m:
        return None, frac
    return float(np.median(valid)) * float(scale_m), frac


def _supersample(side: float, size_px: int) -> int:
    return int(min(MAX_SUPERSAMPLE, max(1, math.ceil(side / size_px - 1e-9))))


def _resample_matrix(start: float, side: float, n_src: int, size_px: int) -> tuple[int, np.ndarray]:
    """Bilinear interpolation + box average of k sub-samples along one axis; 0 outside the image.

    Returns:
        ``(lo, m)``: ``m`` is float32 ``size_px × w``, the weights of source indices ``lo .. lo + w − 1`` (the
        first to the last index with a non-zero weight; ``w = 0`` when the window misses the image).
    """
    k = _supersample(side, size_px)
    # sub-sample centres in continuous coordinates; pixel i covers [i-1/2, i+1/2]
    pos = start + (np.arange(size_px * k, dtype=np.float64) + 0.5) * (side / (size_px * k))
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    lo, hi = max(0, int(i0[0])), min(n_src, int(i0[-1]) + 2)   # pos increases: the indices any weight can reach
    if hi <= lo:
        return 0, np.zeros((size_px, 0), dtype=np.float32)
    m = np.zeros((size_px * k, hi - lo), dtype=np.float32)
    rows = np.arange(size_px * k)
    for idx, wgt in ((i0, 1.0 - f), (i0 + 1, f)):  # one entry per row and pass: plain indexed add, no add.at
        ok = (idx >= lo) & (idx < hi)
        m[rows[ok], idx[ok] - lo] += wgt[ok].astype(np.float32)
    m = m.reshape(size_px, k, hi - lo).mean(axis=1)
    nz = np.flatnonzero(m.any(axis=0))
    if nz.size == 0:
        return 0, m[:, :0]
    return lo + int(nz[0]), m[:, nz[0]:nz[-1] + 1]


def _resample_separable(img: np.ndarray, ay: tuple[int, np.ndarray], ax: tuple[int, np.ndarray]) -> np.ndarray:
    """``a_y @ img @ a_x.T`` per channel over the source rows/columns the ``(lo, matrix)`` pairs of
    :func:`_resample_matrix` cover; rounded to uint8."""
    (r0, a_y), (c0, a_x) = ay, ax
    size = (a_y.shape[0], a_x.shape[0]) + img.shape[2:]
    if a_y.shape[1] == 0 or a_x.shape[1] == 0:
        return np.zeros(size, dtype=np.uint8)
    roi = img[r0:r0 + a_y.shape[1], c0:c0 + a_x.shape[1]].astype(np.float32)
    if roi.ndim == 3:
        h, w, c = roi.shape
        t = (a_y @ roi.reshape(h, w * c)).reshape(-1, w, c)          # S × w × c
        s = t.shape[0]
        # one (S·c × w) @ (w × S) product instead of S small ones: 3.6× faster for a 300-px window; float
        # summation order differs, so 2 of 7.5 M uint8 values moved by one level (the crops already differed at
        # that level between BLAS thread counts, docs/PERFORMANCE.md)
        t2 = np.ascontiguousarray(t.transpose(0, 2, 1)).reshape(s * c, w)
        out = (t2 @ a_x.T).reshape(s, c, -1).transpose(0, 2, 1)      # S × S × c
    else:
        out = a_y @ roi @ a_x.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _crop_nearest(img: np.ndarray, x0: float, y0: float, side: float, size_px: int) -> np.ndarray:
    """Nearest-neighbour crop (depth: never interpolates across holes); 0 outside the image."""
    pos = (np.arange(size_px, dtype=np.float64) + 0.5) * (side / size_px)
    xs = np.floor(x0 + pos + 0.5).astype(np.int64)
    ys = np.floor(y0 + pos + 0.5).astype(np.int64)
    h, w = img.shape[:2]
    okx = (xs >= 0) & (xs < w)
    oky = (ys >= 0) & (ys < h)
    if okx.all() and oky.all():     # window inside: two 1-D gathers (3× faster than the 2-D one, same values)
        return img.take(ys, axis=0).take(xs, axis=1)
    out = np.zeros((size_px, size_px) + img.shape[2:], dtype=img.dtype)
    out[np.ix_(oky, okx)] = img[np.ix_(ys[oky], xs[okx])]
    return out


def _rotate_about(uu: np.ndarray, vv: np.ndarray, cx: float, cy: float, roll: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate pixel coordinates by ``roll`` (rad, image axes: x right, y down) about ``(cx, cy)``."""
    c, s = math.cos(roll), math.sin(roll)
    du, dv = uu - cx, vv - cy
    return cx + c * du - s * dv, cy + s * du + c * dv


def _crop_rotated(img: np.ndarray, x0: float, y0: float, side: float, size_px: int, roll: float) -> np.ndarray:
    """Bilinear + k×k box-averaged crop of the window rotated by ``roll`` about its centre; 0 outside; uint8."""
    k = _supersample(side, size_px)
    n = size_px * k
    pos = (np.arange(n, dtype=np.float64) + 0.5) * (side / n)
    uu, vv = np.meshgrid(x0 + pos, y0 + pos)
    mx, my = _rotate_about(uu, vv, x0 + side / 2.0, y0 + side / 2.0, roll)
    chans = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    res = []
    for ch in chans:
        v = _bilinear(np.ascontiguousarray(ch) if ch.dtype == np.uint8 else np.asarray(ch, np.float32), mx, my)
        res.append(_box_mean_u8(v, k))
    return res[0] if img.ndim == 2 else np.stack(res, axis=-1)


def _crop_nearest_rotated(img: np.ndarray, x0: float, y0: float, side: float, size_px: int,
                          roll: float) -> np.ndarray:
    """Nearest-neighbour crop of the rotated window (depth: never interpolates across holes); 0 outside."""
    pos = (np.arange(size_px, dtype=np.float64) + 0.5) * (side / size_px)
    uu, vv = np.meshgrid(x0 + pos, y0 + pos)
    mx, my = _rotate_about(uu, vv, x0 + side / 2.0, y0 + side / 2.0, roll)
    xs = np.floor(mx + 0.5).astype(np.int64)
    ys = np.floor(my + 0.5).astype(np.int64)
    h, w = img.shape[:2]
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    out = np.zeros((size_px, size_px) + img.shape[2:], dtype=img.dtype)
    out[ok] = img[ys[ok], xs[ok]]
    return out


def _crop_projected(img: np.ndarray, src_intr, dst_intr, src_to_dst, x0: float, y0: float, side: float,
                    size_px: int, depth_m: float, grid: int = 17, roll: float | None = None,
                    sample: Sampler | None = None) -> np.ndarray:
    """Resample ``img`` (camera dst) at the points seen by the src window on the plane ``z_src = depth_m``.

    Bilinear samples on the ``(S·k)²`` map of :func:`_projected_map`, taken with float32 coordinates and weights
    (3× less work than float64; the crops move by at most 1 grey level at rounding ties, docs/PERFORMANCE.md
    §0d), then the mean of each ``k × k`` block, rounded to uint8 ``S × S`` (:func:`_sample_box`). With ``sample``,
    a uint8 image and a finite lattice, ``sample.lattice`` does all of it from the ``grid × grid`` lattice, which
    ``sample.reproject`` computes (§0j).
    """
    compiled = sample if sample is not None and img.dtype == np.uint8 else None
    lat, g0, fr, k = _projected_lattice(src_intr, dst_intr, src_to_dst, x0, y0, side, size_px, depth_m, grid, roll,
                                        sample=compiled)
    if compiled is not None and np.isfinite(lat).all():
        return sample.lattice(img, lat, g0, fr, k)
    mx, my = _lattice_map(lat, g0, fr)
    mx, my = mx.astype(np.float32), my.astype(np.float32)
    return _sample_box(img if img.dtype == np.uint8 else np.asarray(img, dtype=np.float32), mx, my, k)


def _sample_box(img: np.ndarray, mx: np.ndarray, my: np.ndarray, k: int) -> np.ndarray:
    """Bilinear samples (:func:`_bilinear`) at float32 ``N×N`` coordinates, then the mean of each ``k × k`` block
    rounded to uint8 ``(N/k)×(N/k)`` (:func:`_box_mean_u8`): the reference of a ``sample`` drop-in."""
    return _box_mean_u8(_bilinear(img, mx, my), k)


def _projected_map(src_intr, dst_intr, src_to_dst, x0: float, y0: float, side: float, size_px: int,
                   depth_m: float, grid: int = 17, roll: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """float64 dst-pixel coordinates ``(mx, my)``, each ``(S·k) × (S·k)``, of the src window's sub-samples lifted to
    ``z_src = depth_m``, and the supersampling ``k``. The map is exact on a ``grid × grid`` lattice and bilinearly
    interpolated between (the map is smooth). ``roll`` (rad): the src window is rotated about its centre first.
    """
    lat, g0, fr, k = _projected_lattice(src_intr, dst_intr, src_to_dst, x0, y0, side, size_px, depth_m, grid, roll)
    return (*_lattice_map(lat, g0, fr), k)


def _projected_lattice(src_intr, dst_intr, src_to_dst, x0: float, y0: float, side: float, size_px: int,
                       depth_m: float, grid: int = 17, roll: float | None = None,
                       sample: Sampler | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ``grid × grid`` lattice of :func:`_projected_map`: ``(lat, g0, fr, k)``, ``lat`` float64 ``(grid, grid,
    2)`` dst pixels (x, y) of the lattice points (NaN behind dst), and per sub-sample index ``0 .. S·k − 1`` (same on
    both axes) the lattice cell ``g0`` (int32) and the fraction ``fr`` (float64) within it. With ``sample``, the
    lattice points are projected by ``sample.reproject`` instead of :func:`edgepad.geometry.reproject`."""
    k = _supersample(side * dst_intr.fx / max(src_intr.fx, 1e-9), size_px)
    n = size_px * k
    # control lattice in src pixel coordinates, spanning the sub-sample centres
    first, last = 0.5 * side / n, side - 0.5 * side / n
    t = np.linspace(first, last, grid)
    uu, vv = np.meshgrid(x0 + t, y0 + t)
    if roll is not None:
        uu, vv = _rotate_about(uu, vv, x0 + side / 2.0, y0 + side / 2.0, roll)
    uv = np.stack([uu, vv], axis=-1)
    lat = (reproject if sample is None else sample.reproject)(uv, depth_m, src_intr, dst_intr, src_to_dst)
    s = (np.arange(n, dtype=np.float64) + 0.5) * side / n
    g = (s - first) / (last - first) * (grid - 1)
    g0 = np.clip(np.floor(g).astype(np.int64), 0, grid - 2)
    return np.ascontiguousarray(lat, dtype=np.float64), g0.astype(np.int32), g - g0, k


def _lattice_map(lat: np.ndarray, g0: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``N×N`` maps ``(mx, my)`` from a :func:`_projected_lattice` lattice: ``up @ lat[..., c] @ up.T`` with
    ``up`` the ``N × grid`` linear interpolation matrix (rows: ``1 − fr`` at ``g0``, ``fr`` at ``g0 + 1``)."""
    n, grid = len(g0), lat.shape[0]
    up = np.zeros((n, grid))
    up[np.arange(n), g0] += 1.0 - fr
    up[np.arange(n), g0 + 1] += fr
    return up @ lat[..., 0] @ up.T, up @ lat[..., 1] @ up.T


def _box_mean_u8(vals: np.ndarray, k: int) -> np.ndarray:
    """Mean of each ``k × k`` block of a float32 ``(S·k) × (S·k)`` array, rounded to uint8 ``S × S``."""
    acc = vals[::k, ::k].copy()
    for dy in range(k):
        for dx in range(k):
            if dy or dx:
                acc += vals[dy::k, dx::k]
    if k > 1:
        acc *= np.float32(1.0 / (k * k))
    np.rint(acc, out=acc)
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def _bilinear(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D image at pixel coordinates; 0 outside (and at NaN coordinates).

    Per sample, ``float32(v00·w00) + float32(v10·w10) + float32(v01·w01) + float32(v11·w11)`` accumulated in
    float32 in that order (products and ``w`` in the coordinates' dtype, float64 or float32); a neighbour outside
    the image contributes 0. The four neighbours are gathered from a copy of the image with a 2-px zero border
    (coordinates clamped into it), so no per-neighbour masks are needed: same values as :func:`_bilinear_reference`.
    """
    h, w = img.shape
    bad = ~(np.isfinite(mx) & np.isfinite(my))
    if bad.any():
        mx = np.where(bad, -10.0, mx)
        my = np.where(bad, -10.0, my)
    xf, yf = np.floor(mx), np.floor(my)
    fx, fy = mx - xf, my - yf
    # neighbour (0, 0) index in the padded image; anything left/above of -1 or right/below of w/h reads the border
    xi = np.clip(xf, -2, w, out=xf).astype(np.intp)
    yi = np.clip(yf, -2, h, out=yf).astype(np.intp)
    # pad only the window the samples touch (rows ya..yb, columns xa..xb of the zero-bordered image): same values
    xa, xb = int(xi.min()), int(xi.max()) + 2
    ya, yb = int(yi.min()), int(yi.max()) + 2
    pw = xb - xa
    pad = np.zeros((yb - ya, pw), dtype=img.dtype)
    sy, sx = max(ya, 0), max(xa, 0)
    ey, ex = min(yb, h), min(xb, w)
    if ey > sy and ex > sx:
        pad[sy - ya:ey - ya, sx - xa:ex - xa] = img[sy:ey, sx:ex]
    flat = pad.reshape(-1)
    idx = yi
    idx -= ya
    idx *= pw
    idx += xi
    idx -= xa
    gx, gy = 1.0 - fx, 1.0 - fy
    wgt = gx * gy
    narrow = wgt.dtype == np.float32       # products already float32: no rounding copy needed
    out = np.multiply(flat[idx], wgt, dtype=np.float32) if narrow else np.multiply(flat[idx], wgt).astype(np.float32)
    prod = np.empty_like(wgt)
    at = 0
    for off, a, b in ((1, fx, gy), (pw, gx, fy), (pw + 1, fx, fy)):
        np.multiply(a, b, out=wgt)
        idx += off - at
        at = off
        np.multiply(flat[idx], wgt, out=prod)
        out += prod if narrow else prod.astype(np.float32)  # float32(v·w), then accumulated in float32
    return out


def _bilinear_reference(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """The masked formulation of :func:`_bilinear` (kept as its oracle in the tests)."""
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape
    bad = ~(np.isfinite(mx) & np.isfinite(my))
    mx = np.where(bad, -10.0, mx)
    my = np.where(bad, -10.0, my)
    xf, yf = np.floor(mx), np.floor(my)
    fx, fy = mx - xf, my - yf
    xi, yi = xf.astype(np.int64), yf.astype(np.int64)
    out = np.zeros(mx.shape, dtype=np.float32)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx, yy = xi + dx, yi + dy
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        out += np.where(ok, img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)] * wgt, 0.0).astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------ normalise
_CROP_LAYOUT = {Modality.RGB: ("uint8 S×S×3", (np.uint8,), 3), Modality.DEPTH: ("uint16 S×S", (np.uint16,), 2),
                Modality.IR: ("uint8 S×S", (np.uint8,), 2)}


def crop_face_depth_m(depth_crop: np.ndarray, depth_scale_m: float) -> float | None:
    """Face distance (m) of a raw depth crop: median valid depth of the central S/2 × S/2 window (fallback: all
    valid pixels); None without valid depth. The reference of ``face_relative`` / ``mad`` depth and of the IR
    fall-off compensation (computed once per :func:`normalise` call for both)."""
    _check_scale(depth_scale_m)
    crop = np.asarray(depth_crop)
    centre = _central(crop)
    raw = centre[centre > 0]  # the central window's valid values (C order), else every valid value
    if not raw.size:
        raw = crop[crop > 0]
        if not raw.size:
            return None
    return float(np.median(raw.astype(np.float32) * np.float32(depth_scale_m)))


def _check_scale(depth_scale_m: float) -> None:
    if not (isinstance(depth_scale_m, (int, float)) and math.isfinite(depth_scale_m) and depth_scale_m > 0):
        raise ConfigError(f"depth_scale_m must be a positive number, got {depth_scale_m!r}", key="depth_scale_m")


def normalise(crops: Mapping, inputs: Mapping, depth_scale_m: float, *,
              face_depth_m: float | None = None, kernel: InputKernel | None = None) -> dict[str, np.ndarray]:
    """Model inputs from raw-unit crops, per :class:`InputSpec` (the same code for training and runtime).

    Per input named ``m`` (a modality name) with spec ``(mean, std, clip, missing_fill, depth_norm)``:

    - rgb / ir (``uint8``): ``x_s = clip01((x − lo) / (hi − lo))`` with ``(lo, hi) = clip or (0, 255)``;
      then ``(x_s − mean_c) / std_c`` per channel. IR with ``distance_ref_m``: first ``x · (z / distance_ref_m)²``
      (z = ``face_depth_m``, else the depth crop's :func:`crop_face_depth_m`, else uncompensated).
    - depth (``uint16`` raw units, metres = raw · ``depth_scale_m``), by ``depth_norm``:
      ``face_relative``: ``d − median(valid d in the central S/2 × S/2 window)`` (fallback: all valid pixels),
      scaled with ``clip`` (metres, default ±0.1) to [0, 1], then mean/std; holes → :data:`DEPTH_HOLE_VALUE`.
      ``absolute`` / ``none``: metres scaled with ``clip`` (default 0.2–1.5 m); holes → :data:`DEPTH_HOLE_VALUE`.
      ``mad``: CMFL MAD normalisation over the central window,
      ``clip01((d − med + 3·MAD) / (6·MAD))`` (MAD floored at 1 mm), holes → 0 before mean/std.
      A crop with no valid depth at all is treated as absent.
    - an absent modality (not in ``crops``): the whole tensor = ``missing_fill``, exactly.

    Args:
        crops: raw crops keyed by :class:`Modality` or name (as from :func:`face_crops`).
        inputs: ``{name: InputSpec}``, e.g. ``manifest.inputs`` or :func:`default_input_specs`.
        depth_scale_m: metres per raw depth unit.
        face_depth_m: face distance (m) for IR fall-off compensation when the depth crop is absent (the
            runtime's box-size estimate); ignored by inputs without ``distance_ref_m``.
        kernel: the compiled per-pixel arithmetic (:class:`InputKernel`; the runtime passes
            ``edgepad.drivers.registration.native.InputArithmetic``), equal bit for bit; None: numpy, the
            reference (training). ``mad`` depth and non-float clip bounds always run numpy.

    Returns:
        ``{name: float32 1×C×S×S}`` for every spec in ``inputs`` (C and S from ``spec.shape``).

    Raises:
        ShapeError: a crop of the wrong dtype/shape/size. ConfigError: unknown input name or depth_norm.
    """
    by_name: dict[str, np.ndarray] = {}
    for k, v in crops.items():
        by_name[Modality.parse(k).value] = v
    out: dict[str, np.ndarray] = {}
    memo: dict[str, float | None] = {}

    def depth_ref() -> float | None:
        """The depth crop's face distance (m), computed at most once per call."""
        if "z" not in memo:
            memo["z"] = crop_face_depth_m(by_name["depth"], depth_scale_m)
        return memo["z"]

    for name, spec in inputs.items():
        m = Modality.parse(name)
        shape = tuple(1 if s == -1 else int(s) for s in spec.shape)
        if len(shape) != 4 or shape[0] != 1:
            raise ShapeError(f"inputs[{name}].shape", "(1, C, S, S)", spec.shape)
        c, hh, ww = shape[1:]
        crop = by_name.get(m.value)
        if crop is None:
            out[name] = np.full(shape, float(spec.missing_fill), dtype=np.float32)
            continue
        crop = np.asarray(crop)
        layout, dtypes, ndim = _CROP_LAYOUT[m]
        if crop.dtype.type not in dtypes or crop.ndim != ndim or crop.shape[:2] != (hh, ww) or (
                ndim == 3 and crop.shape[2] != c):
            raise ShapeError(f"crop {m.value}", f"{layout} with S×S = {hh}×{ww}", f"{crop.dtype} {crop.shape}")
        if m is Modality.DEPTH:
            if kernel is not None and (spec.depth_norm or "none") != "mad":
                p = _depth_params(spec, depth_scale_m, depth_ref)
                if p is None:
                    out[name] = np.full(shape, float(spec.missing_fill), dtype=np.float32)
                    continue
                mean, std = _mean_std_of(spec, 1)
                y = np.empty(shape, dtype=np.float32)
                ref, lo, hi = p
                kernel.depth(crop, np.float32(depth_scale_m), None if ref is None else np.float32(ref),
                             np.float32(lo), np.float32(hi - lo), mean[0], std[0], DEPTH_HOLE_VALUE, y[0, 0])
                out[name] = y
                continue
            x = _depth_scaled(crop, spec, depth_scale_m, depth_ref)
            if x is None:
                out[name] = np.full(shape, float(spec.missing_fill), dtype=np.float32)
                continue
            y = np.empty(shape, dtype=np.float32)
            _mean_std(x[None], spec, 1, y[0])
            if spec.depth_norm != "mad":
                y[0, 0][crop == 0] = DEPTH_HOLE_VALUE
            out[name] = y
            continue
        else:
            lo, hi = spec.clip if spec.clip is not None else (0.0, 255.0)
            if not hi > lo:
                raise ConfigError(f"inputs[{name}].clip must have hi > lo, got {spec.clip}", key="clip")
            gain = None
            ref = getattr(spec, "distance_ref_m", None)
            if ref is not None:
                if not (isinstance(ref, (int, float)) and ref > 0):
                    raise ConfigError(f"inputs[{name}].distance_ref_m must be > 0 m, got {ref!r}",
                                      key="distance_ref_m")
                z = face_depth_m
                if z is None and "depth" in by_name:
                    z = depth_ref()
                if z is not None and math.isfinite(z) and z > 0:
                    gain = np.float32((z / float(ref)) ** 2)
            if (kernel is not None and crop.dtype == np.uint8 and type(lo) in (int, float)
                    and type(hi) in (int, float) and (crop.shape[2] if crop.ndim == 3 else 1) == c):
                mean, std = _mean_std_of(spec, c)
                y = np.empty(shape, dtype=np.float32)
                kernel.image(crop, gain, lo, hi - lo, mean, std, y[0])  # python floats: float32 as numpy's
                out[name] = y
                continue
            xs = crop.astype(np.float32)
            if gain is not None:
                np.multiply(xs, gain, out=xs)
            if type(lo) in (int, float) and type(hi) in (int, float):
                # in place, same float32 operations as the expression below (python scalars are weak)
                np.subtract(xs, lo, out=xs)
                np.divide(xs, hi - lo, out=xs)
                np.clip(xs, 0.0, 1.0, out=xs)
            else:
                xs = np.clip((xs - lo) / (hi - lo), 0.0, 1.0)
            xs = xs.transpose(2, 0, 1) if xs.ndim == 3 else xs[None]
            if xs.shape[0] != c:
                raise ShapeError(f"crop {m.value} channels", c, xs.shape[0])
            if xs.dtype != np.float32:
                out[name] = np.ascontiguousarray(_mean_std(xs, spec, c)[None], dtype=np.float32)
                continue
            y = np.empty(shape, dtype=np.float32)
            _mean_std(xs, spec, c, y[0])
            out[name] = y
    return out


def _mean_std_of(spec, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The spec's per-channel float32 mean and std, ``(c,)`` each (one value serves every channel).

    Raises:
        ShapeError: neither 1 nor ``c`` values. ConfigError: a zero std.
    """
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1)
    if mean.shape[0] not in (1, c) or std.shape[0] not in (1, c):
        raise ShapeError(f"inputs[{spec.name}].mean/std", f"1 or {c} values", (len(spec.mean), len(spec.std)))
    if np.any(std == 0):
        raise ConfigError(f"inputs[{spec.name}].std must be non-zero", key="std")
    return (np.repeat(mean, c) if len(mean) < c else mean), (np.repeat(std, c) if len(std) < c else std)


def _mean_std(x: np.ndarray, spec, c: int, out: np.ndarray | None = None) -> np.ndarray:
    """``(x − mean) / std`` per channel as float32; written into ``out`` (C×S×S float32) when given."""
    mean, std = (v.reshape(-1, 1, 1) for v in _mean_std_of(spec, c))
    if out is None or x.dtype != np.float32:
        r = ((x - mean) / std).astype(np.float32)
        if out is not None:
            out[...] = r
        return r
    np.subtract(x, mean, out=out)
    np.divide(out, std, out=out)
    return out


def _central(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a[h // 4: h - h // 4, w // 4: w - w // 4]


def _depth_params(spec, depth_scale_m: float, ref_m: Callable[[], float | None]
                  ) -> tuple[float | None, float, float] | None:
    """``(ref or None, lo, hi)`` of a ``face_relative`` / ``absolute`` / ``none`` depth spec: the face distance
    subtracted (m; None: not subtracted) and the clip band (m); None when the crop has no valid depth.

    Raises:
        ConfigError: an unknown ``depth_norm``, or a clip band with ``hi <= lo``.
    """
    _check_scale(depth_scale_m)
    norm = spec.depth_norm or "none"
    if norm not in DEPTH_NORMS:
        raise ConfigError(f"unknown depth_norm {norm!r}", key="depth_norm",
                          suggestions=[n for n in DEPTH_NORMS if n[:2] == norm[:2]])
    ref = ref_m()
    if ref is None:
        return None
    lo, hi = spec.clip if spec.clip is not None else ((-0.1, 0.1) if norm == "face_relative" else (0.2, 1.5))
    if not hi > lo:
        raise ConfigError(f"inputs[{spec.name}].clip must have hi > lo, got {spec.clip}", key="clip")
    return (ref if norm == "face_relative" else None), lo, hi


def _depth_scaled(crop: np.ndarray, spec, depth_scale_m: float,
                  ref_m: Callable[[], float | None]) -> np.ndarray | None:
    """Depth crop -> [0, 1] float32 per ``spec.depth_norm``; None when no pixel is valid. ``ref_m()`` gives the
    crop's :func:`crop_face_depth_m`."""
    if (spec.depth_norm or "none") == "mad":
        _check_scale(depth_scale_m)
        ref = ref_m()
        if ref is None:
            return None
        d = crop.astype(np.float32)
        np.multiply(d, np.float32(depth_scale_m), out=d)
        valid = crop > 0
        centre = _central(d)[_central(valid)]
        mad = float(np.median(np.abs(centre - ref))) if centre.size else float(np.median(np.abs(d[valid] - ref)))
        mad = max(mad, 0.001)
        x = np.clip((d - ref + 3.0 * mad) / (6.0 * mad), 0.0, 1.0)
        x[~valid] = 0.0
        return x.astype(np.float32)
    p = _depth_params(spec, depth_scale_m, ref_m)
    if p is None:
        return None
    ref, lo, hi = p
    d = crop.astype(np.float32)
    np.multiply(d, np.float32(depth_scale_m), out=d)
    if ref is not None:
        np.subtract(d, np.float32(ref), out=d)
    np.subtract(d, np.float32(lo), out=d)       # in place: the same float32 operations, one buffer
    np.divide(d, np.float32(hi - lo), out=d)
    return np.clip(d, 0.0, 1.0, out=d)
