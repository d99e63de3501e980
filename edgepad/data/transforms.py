"""Augmentations synchronised across modalities, per-modality photometric and sensor jitter, MAD depth (numpy only).

Transforms act on a dict of raw-unit crops ``{"rgb": uint8 S×S×3, "depth": uint16 S×S, "ir": uint8 S×S}`` with an
explicit ``np.random.Generator`` (one per sample, seeded from (seed, epoch, index), so results do not depend on the
number of loader workers and a resumed run sees the same augmentations). Geometric decisions (flip, crop window,
cutout square) are drawn once and applied to every modality; depth is resampled nearest-neighbour (never
interpolated across holes). Normalisation is NOT done here: :func:`normalise_sample` does it after them, through
:func:`edgepad.preprocess.normalise` exactly as at run time (metric ``mm16`` depth), and the model's modality
dropout writes the fill value after it. 8-bit normalised depth (``uint8_normalised``) has no metric scale and takes
its own, declared path (:func:`normalise_sample`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from edgepad.data.datasets import MM16, UINT8_NORMALISED
from edgepad.errors import ConfigError, ShapeError
from edgepad.preprocess import DEPTH_HOLE_VALUE, normalise, require_crop_align, require_crop_margin
from edgepad.specs import DEFAULT_MARGIN

log = logging.getLogger(__name__)
_SAID: set[str] = set()

Crops = dict[str, np.ndarray]


def resize(img: np.ndarray, size_px: int | tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize ``img`` (H×W or H×W×C) to ``size_px`` (square or (h, w)); bilinear (pixel centres, edges clamped) or
    nearest.

    The output dtype equals the input dtype (bilinear values are rounded for integer dtypes). Bilinear runs in
    float64 on whole rows first (two row gathers), then on columns, with the taps of :func:`_taps` (cached per size
    pair); the column products run over columns × channels as one contiguous axis (per-channel repeated weights,
    the same products). No BLAS call, so its speed does not depend on the process's BLAS threads.
    """
    oh, ow = (size_px, size_px) if isinstance(size_px, int) else size_px
    h, w = img.shape[:2]
    if (h, w) == (oh, ow):
        return img
    if nearest:
        ys = (np.arange(oh) + 0.5) * (h / oh) - 0.5
        xs = (np.arange(ow) + 0.5) * (w / ow) - 0.5
        yi = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, h - 1)
        xi = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, w - 1)
        return img[yi][:, xi]
    y0, y1, gy, fy = _taps(h, oh)
    x0, x1 = _taps(w, ow)[:2]
    tail = img.shape[2:]
    c = int(np.prod(tail, dtype=np.int64))
    gx, fx = _column_weights(w, ow, c)
    src = img.astype(np.float64)            # exact; the products below are those of uint8 × float64
    rows = np.take(src, y0, axis=0)         # oh × w (× c)
    rows *= gy.reshape((oh,) + (1,) * (img.ndim - 1))
    part = np.take(src, y1, axis=0)
    part *= fy.reshape((oh,) + (1,) * (img.ndim - 1))
    rows += part
    out = np.take(rows, x0, axis=1).reshape(oh, ow * c)    # columns × channels as one contiguous axis
    out *= gx
    part = np.take(rows, x1, axis=1).reshape(oh, ow * c)
    part *= fx
    out += part
    out = out.reshape((oh, ow) + tail)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        np.rint(out, out=out)
        return np.clip(out, info.min, info.max, out=out).astype(img.dtype)
    return out.astype(img.dtype)


@lru_cache(maxsize=512)
def _column_weights(n_src: int, n_out: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The column taps' ``(1 − f, f)`` of :func:`_taps`, each repeated per channel (read-only, cached)."""
    out = tuple(np.repeat(a, channels) for a in _taps(n_src, n_out)[2:])
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=512)
def _taps(n_src: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre bilinear taps along one axis, edges clamped: ``(i0, i1, 1 − f, f)`` (read-only, cached)."""
    xs = (np.arange(n_out) + 0.5) * (n_src / n_out) - 0.5
    i0 = np.clip(np.floor(xs).astype(np.int64), 0, n_src - 1)
    i1 = np.minimum(i0 + 1, n_src - 1)
    f = np.clip(xs - i0, 0.0, 1.0)
    out = (i0, i1, 1.0 - f, f)
    for a in out:
        a.flags.writeable = False
    return out


def _is_depth(name: str) -> bool:
    return name == "depth"


@dataclass(frozen=True)
class Resize:
    """Resize every modality to ``size_px`` (depth nearest, others bilinear). Deterministic."""

    size_px: int

    def __call__(self, crops: Crops, rng: np.random.Generator | None = None) -> Crops:
        return {m: resize(x, self.size_px, nearest=_is_depth(m)) for m, x in crops.items()}


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Flip all modalities together with probability ``p``."""

    p: float = 0.5

    def __call__(self, crops: Crops, rng: np.random.Generator) -> Crops:
        if rng.random() >= self.p:
            return crops
        return {m: np.ascontiguousarray(x[:, ::-1]) for m, x in crops.items()}


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop one window (area fraction in ``scale``, aspect in ``ratio``) from all modalities and resize it back
    to the input size (depth nearest). The output size equals the input size."""

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    p: float = 1.0

    def __call__(self, crops: Crops, rng: np.random.Generator) -> Crops:
        if not crops or rng.random() >= self.p:
            return crops
        h, w = next(iter(crops.values())).shape[:2]
        area = rng.uniform(*self.scale) * h * w
        ar = float(np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]))))
        ch = int(round(min(h, np.sqrt(area / ar))))
        cw = int(round(min(w, np.sqrt(area * ar))))
        ch, cw = max(1, ch), max(1, cw)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        out = {}
        for m, img in crops.items():
            if img.shape[:2] != (h, w):
                raise ShapeError(f"crop {m}", (h, w), img.shape[:2])
            out[m] = resize(img[y:y + ch, x:x + cw], (h, w), nearest=_is_depth(m))
        return out


@dataclass(frozen=True)
class Cutout:
    """Zero one square (side uniform in ``1..max_side_px``) at the same place in every modality, probability p.

    Zero is "invalid" for depth, black for rgb / ir (raw units)."""

    max_side_px: int = 29
    p: float = 1.0

    def __call__(self, crops: Crops, rng: np.random.Generator) -> Crops:
        if not crops or self.max_side_px < 1 or rng.random() >= self.p:
            return crops
        h, w = next(iter(crops.values())).shape[:2]
        side = int(rng.integers(1, self.max_side_px + 1))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1 = max(0, cy - side // 2), min(h, cy - side // 2 + side)
        x0, x1 = max(0, cx - side // 2), min(w, cx - side // 2 + side)
        out = {}
        for m, img in crops.items():
            img = img.copy()
            img[y0:y1, x0:x1] = 0
            out[m] = img
        return out


@dataclass(frozen=True)
class PhotometricJitter:
    """Per modality, independently: additive offset U(−offset, offset) per channel, then gamma U(gamma).

    Applied to ``modalities`` (uint8 images, else ShapeError; depth is geometry and is never jittered).
    """

    offset: float = 40.0
    gamma: tuple[float, float] = (0.5, 1.5)
    modalities: tuple[str, ...] = ("rgb", "ir")
    p: float = 1.0

    def __call__(self, crops: Crops, rng: np.random.Generator) -> Crops:
        out = dict(crops)
        for m in self.modalities:
            if m not in crops or rng.random() >= self.p:
                continue
            img = crops[m]
            if img.dtype != np.uint8:
                raise ShapeError(f"crop {m} (photometric jitter)", "uint8", img.dtype)
            ch = img.shape[2] if img.ndim == 3 else 1
            off = rng.uniform(-self.offset, self.offset, size=ch).astype(np.float32)
            g = float(rng.uniform(*self.gamma))
            # the float32 maths on the 256 levels once (a lookup table per channel), then one gather: the same
            # values as applying it to every pixel (tests/datasets: identity against the per-pixel formula)
            lut = np.clip(np.arange(256, dtype=np.float32)[:, None] + off, 0.0, 255.0)     # 256 × ch
            lut = 255.0 * (lut / 255.0) ** g
            lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)
            lut = np.ascontiguousarray(lut.T)                                                # ch × 256
            if img.ndim == 3:
                res = np.empty_like(img)
                for c in range(ch):
                    np.take(lut[c], img[..., c], out=res[..., c])
                out[m] = res
            else:
                out[m] = np.take(lut[0], img)
        return out


def _box_blur(x: np.ndarray, r: int) -> np.ndarray:
    """Box mean of radius ``r`` (window 2r+1) along both image axes, edges replicated. float32 H×W[×C] in and out."""
    if r < 1:
        return x
    k = 2 * r + 1
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis, dtype=np.float64)
        n = x.shape[axis]
        x = ((np.take(c, np.arange(k, k + n), axis=axis) - np.take(c, np.arange(0, n), axis=axis)) / k).astype(
            np.float32)
    return x


def _depth_blocks(depth: np.ndarray, s: int) -> np.ndarray:
    """A coarser native depth resolution: the mean of the valid (> 0) pixels of each s×s block (a block with fewer
    than half its pixels valid becomes a hole, 0), nearest-neighbour up to the input size. Same dtype and shape."""
    if s < 2:
        return depth
    h, w = depth.shape
    ys, xs = np.arange(0, h, s), np.arange(0, w, s)
    valid = (depth > 0).astype(np.float64)
    total = np.add.reduceat(np.add.reduceat(depth.astype(np.float64) * valid, ys, axis=0), xs, axis=1)
    count = np.add.reduceat(np.add.reduceat(valid, ys, axis=0), xs, axis=1)
    area = np.add.reduceat(np.add.reduceat(np.ones_like(valid), ys, axis=0), xs, axis=1)
    mean = np.where(2.0 * count >= area, total / np.maximum(count, 1.0), 0.0)
    up = np.repeat(np.repeat(mean, s, axis=0), s, axis=1)[:h, :w]
    return np.rint(up).astype(depth.dtype)


@dataclass(frozen=True)
class SensorJitter:
    """Another camera, drawn once per sample: the changes a sensor makes beyond the training data's own ranges.

    Each effect acts on its modality only (raw units, before the geometric ops and normalisation); one off
    (its default) draws nothing:

    - ``ir_gain`` (lo, hi): NIR gain g, log-uniform; ``ir ← clip(rint(g·ir), 0, 255)`` (a brighter unit
      saturates).
    - ``rgb_gain`` e: per-channel gain U(1 − e, 1 + e) on linear RGB (sRGB decoded with γ 2.2): white-balance
      error.
    - ``tone`` t_max: tone curve ``x + t·x(1 − x)(2x − 1)`` on sRGB in [0, 1], t ~ U(0, t_max) (the renderer's).
    - ``blur_px`` r_max: defocus, a box mean of radius r ~ U{0..r_max} px applied twice, on rgb and ir.
    - ``noise_dn`` σ_max: read noise N(0, σ) DN per pixel, σ ~ U(0, σ_max), on rgb and ir.
    - ``depth_block`` s_max: native depth resolution, block mean over s×s, s ~ U{1..s_max} (holes stay holes).

    Raises:
        ConfigError: a value out of range (key ``augment.sensor_*``). ShapeError: rgb / ir not uint8 at call time.
    """

    ir_gain: tuple[float, float] | None = None
    rgb_gain: float = 0.0
    tone: float = 0.0
    blur_px: int = 0
    noise_dn: float = 0.0
    depth_block: int = 1

    def __post_init__(self) -> None:
        if self.ir_gain is not None and not (len(self.ir_gain) == 2 and 0 < self.ir_gain[0] <= self.ir_gain[1]):
            raise ConfigError(f"augment.sensor_ir_gain must be [lo, hi] with 0 < lo <= hi, got {self.ir_gain}",
                              key="augment.sensor_ir_gain")
        checks = (("rgb_gain", 0.0 <= self.rgb_gain < 1.0, "in [0, 1)"), ("tone", 0.0 <= self.tone <= 1.0,
                  "in [0, 1]"), ("blur_px", int(self.blur_px) == self.blur_px and self.blur_px >= 0, "an int >= 0"),
                  ("noise_dn", self.noise_dn >= 0.0, ">= 0"),
                  ("depth_block", int(self.depth_block) == self.depth_block and self.depth_block >= 1, "an int >= 1"))
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"augment.sensor_{name} must be {what}, got {getattr(self, name)!r}",
                                  key=f"augment.sensor_{name}")

    @property
    def active(self) -> bool:
        """Whether any effect is on."""
        return (self.ir_gain is not None or self.rgb_gain > 0 or self.tone > 0 or self.blur_px > 0
                or self.noise_dn > 0 or self.depth_block > 1)

    def __call__(self, crops: Crops, rng: np.random.Generator) -> Crops:
        out = dict(crops)
        for m in ("rgb", "ir"):
            if m in crops and crops[m].dtype != np.uint8:
                raise ShapeError(f"crop {m} (sensor jitter)", "uint8", crops[m].dtype)
        levels = np.arange(256, dtype=np.float32) / 255.0
        if "rgb" in crops and (self.rgb_gain > 0 or self.tone > 0):
            gain = rng.uniform(1.0 - self.rgb_gain, 1.0 + self.rgb_gain, size=3) if self.rgb_gain > 0 else np.ones(3)
            t = float(rng.uniform(0.0, self.tone)) if self.tone > 0 else 0.0
            x = np.clip((levels[:, None] ** 2.2 * gain.astype(np.float32)) ** (1 / 2.2), 0.0, 1.0)    # 256 × 3
            x = np.clip(x + t * x * (1 - x) * (2 * x - 1), 0.0, 1.0)
            lut = np.clip(np.rint(255.0 * x), 0, 255).astype(np.uint8).T                              # 3 × 256
            img = crops["rgb"]
            out["rgb"] = np.stack([np.take(lut[c], img[..., c]) for c in range(3)], axis=-1)
        if "ir" in crops and self.ir_gain is not None:
            g = float(np.exp(rng.uniform(np.log(self.ir_gain[0]), np.log(self.ir_gain[1]))))
            lut = np.clip(np.rint(g * 255.0 * levels), 0, 255).astype(np.uint8)
            out["ir"] = np.take(lut, crops["ir"])
        r = int(rng.integers(0, self.blur_px + 1)) if self.blur_px > 0 else 0
        sigma = float(rng.uniform(0.0, self.noise_dn)) if self.noise_dn > 0 else 0.0
        if r > 0 or sigma > 0:
            for m in ("rgb", "ir"):
                if m not in out:
                    continue
                x = _box_blur(_box_blur(out[m].astype(np.float32), r), r)
                if sigma > 0:
                    x = x + rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
                out[m] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        if "depth" in crops and self.depth_block > 1:
            out["depth"] = _depth_blocks(crops["depth"], int(rng.integers(1, self.depth_block + 1)))
        return out


class Compose:
    """Apply transforms in order with one generator."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, crops: Crops, rng: np.random.Generator | None = None) -> Crops:
        rng = rng if rng is not None else np.random.default_rng(0)
        for t in self.transforms:
            crops = t(crops, rng)
        return crops

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def build_transform(size_px: int, *, train: bool, flip: float = 0.5, crop_scale: tuple[float, float] | None = None,
                    cutout_px: int = 0, jitter_offset: float = 0.0,
                    jitter_gamma: tuple[float, float] | None = None,
                    jitter_modalities: Sequence[str] = ("rgb", "ir"),
                    sensor: SensorJitter | None = None) -> Compose:
    """The standard pipeline: resize → [sensor → jitter → crop → flip → cutout] (train only).

    ``sensor``: a :class:`SensorJitter` (another camera per sample); None or one with every effect off adds nothing.

    ``jitter_modalities``: the 8-bit modalities jittered; leave ``ir`` out when its absolute level is a cue
    (distance-compensated NIR reflectance).

    Order follows Flexible-Modal (jitter per modality, then the synchronised geometric ops); modality dropout
    and normalisation come after, in :func:`edgepad.preprocess.normalise` and the model.
    """
    ts: list[Callable] = [Resize(size_px)]
    if train:
        if sensor is not None and sensor.active:
            ts.append(sensor)
        if jitter_offset > 0 or jitter_gamma is not None:
            ts.append(PhotometricJitter(jitter_offset, tuple(jitter_gamma or (1.0, 1.0)),
                                        modalities=tuple(jitter_modalities)))
        if crop_scale is not None:
            ts.append(RandomResizedCrop(tuple(crop_scale)))
        if flip > 0:
            ts.append(RandomHorizontalFlip(flip))
        if cutout_px > 0:
            ts.append(Cutout(cutout_px))
    return Compose(ts)


def mad_normalise_depth(depth: np.ndarray, box: tuple[int, int, int, int] | None = None,
                        min_mad: float = 1.0) -> np.ndarray:
    """CMFL MAD depth normalisation to uint8 (docs/MODELS.md), with the MAD = 0 guard.

    Inside the face box (``(x, y, w, h)``, default the whole image) keep values > 1, ``med = median``,
    ``MAD = max(median(|x − med|), min_mad)``; then for the whole image
    ``round(clip(255·(d − med + 3·MAD)/(6·MAD), 0, 255))``. Holes (0) map to 0. Nearer = darker.

    Args:
        depth: H×W raw depth (0 = invalid).
        box: face box; None = whole image.
        min_mad: floor of the MAD in raw units (guards flat or empty boxes; the reference divides by zero).

    Returns:
        uint8 H×W. An image without valid pixels in the box returns all zeros.
    """
    if depth.ndim != 2:
        raise ShapeError("depth", "H×W", depth.shape)
    if min_mad <= 0:
        raise ConfigError(f"min_mad must be > 0, got {min_mad}", key="min_mad")
    d = depth.astype(np.float64)
    x, y, w, h = box if box is not None else (0, 0, d.shape[1], d.shape[0])
    region = d[max(0, y):y + h, max(0, x):x + w]
    vals = region[region > 1]
    if vals.size == 0:
        return np.zeros(d.shape, dtype=np.uint8)
    med = float(np.median(vals))
    mad = max(float(np.median(np.abs(vals - med))), float(min_mad))
    out = np.clip(255.0 * (d - med + 3.0 * mad) / (6.0 * mad), 0.0, 255.0)
    out[depth == 0] = 0.0
    return np.rint(out).astype(np.uint8)


def resize_to_inputs(crops: Mapping[str, np.ndarray], inputs: Mapping) -> Crops:
    """Crops resized to their input's S×S (``spec.shape`` (1, C, S, S)): bilinear, depth nearest-neighbour."""
    out: Crops = {}
    for m, x in crops.items():
        spec = inputs.get(m)
        if spec is None or len(spec.shape) != 4:
            out[m] = x
            continue
        out[m] = resize(np.asarray(x), (int(spec.shape[2]), int(spec.shape[3])), nearest=_is_depth(m))
    return out


def normalise_sample(crops: Mapping[str, np.ndarray], inputs: Mapping, depth_scale_m: float, *,
                     face_depth_m: float | None = None, depth_encoding: str = MM16) -> dict[str, np.ndarray]:
    """Model inputs ``{name: float32 1×C×S×S}`` from raw crops, by depth encoding.

    - ``mm16``: :func:`edgepad.preprocess.normalise` unchanged (the runtime's code).
    - ``uint8_normalised`` (uint8 depth, no metric scale): every other modality goes through ``normalise`` with no
      face distance (IR fall-off compensation is skipped: there is no metric depth to take it from); depth is
      ``x/255`` (``depth_norm`` face_relative / absolute / none need metres and are NOT applied) or, for
      ``depth_norm: mad`` (scale-free), ``clip01((x − med + 3·MAD) / (6·MAD))`` in grey levels (MAD ≥ 1 level);
      then the spec's mean/std; 0 = invalid -> ``DEPTH_HOLE_VALUE`` (0 for mad), as for metric depth. The path
      is logged once per depth_norm.

    Raises:
        ShapeError: a depth crop that is not uint8 S×S. ConfigError: unknown depth encoding.
    """
    if depth_encoding == MM16 or "depth" not in crops or "depth" not in inputs:
        if depth_encoding not in (MM16, UINT8_NORMALISED):
            raise ConfigError(f"unknown depth encoding {depth_encoding!r}", key="depth_encoding")
        return normalise(crops, inputs, depth_scale_m, face_depth_m=face_depth_m)
    if depth_encoding != UINT8_NORMALISED:
        raise ConfigError(f"unknown depth encoding {depth_encoding!r}", key="depth_encoding")
    d = np.asarray(crops["depth"])
    spec = inputs["depth"]
    s = tuple(int(v) for v in spec.shape[2:])
    if d.dtype != np.uint8 or d.shape != s:
        raise ShapeError("crop depth (uint8_normalised)", f"uint8 {s[0]}×{s[1]}", f"{d.dtype} {d.shape}")
    out = normalise({m: x for m, x in crops.items() if m != "depth"}, inputs, depth_scale_m, face_depth_m=None)
    norm = spec.depth_norm or "none"
    if norm not in _SAID:
        _SAID.add(norm)
        log.warning("depth is 8-bit normalised (no metric scale): depth_norm %r %s", norm,
                    "applied in grey levels (scale-free)" if norm == "mad" else
                    "needs metres and is not applied; depth input = value/255")
    valid = d > 0
    if not valid.any():
        return out                                    # no valid depth: absent, like normalise does
    x = d.astype(np.float32)
    if norm == "mad":
        h, w = x.shape
        cv, cx = valid[h // 4: h - h // 4, w // 4: w - w // 4], x[h // 4: h - h // 4, w // 4: w - w // 4]
        ref = float(np.median(cx[cv])) if cv.any() else float(np.median(x[valid]))
        centre = cx[cv] if cv.any() else x[valid]
        mad = max(float(np.median(np.abs(centre - ref))), 1.0)
        x = np.clip((x - ref + 3.0 * mad) / (6.0 * mad), 0.0, 1.0)
        x[~valid] = 0.0
    else:
        x = x / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    y = ((x[None] - mean) / std).astype(np.float32)
    if norm != "mad":
        y[0][~valid] = DEPTH_HOLE_VALUE
    out["depth"] = np.ascontiguousarray(y[None], dtype=np.float32)
    return out


class PADDataset:
    """Map-style dataset for a torch ``DataLoader``: raw sample → transforms → ``preprocess.normalise``.

    ``dataset[i]`` or ``dataset[(i, epoch)]`` returns ``{"inputs": {m: float32 C×S×S}, "target": float32
    (1 = bona fide), "index": int}``; the per-sample generator is seeded with ``(seed, epoch, i)``.

    Args:
        base: a :class:`~edgepad.data.datasets.FrameDataset`.
        inputs: ``{name: InputSpec}`` of the model (the same specs the manifest records).
        transform: a :class:`Compose` (see :func:`build_transform`).
        seed: base seed of the augmentations.

    Raises:
        ConfigError: the stored crops' alignment (``key="align"``) or margin (``key="margin"``) is not the model's.
    """

    def __init__(self, base, inputs: Mapping, transform: Callable | None = None, seed: int = 0) -> None:
        # the stored crops' alignment (datasets without landmarks: "none"); a model with align="eyes" is refused
        require_crop_align(inputs, getattr(base, "crop_align", "none"), "training data")
        # the stored crops' margin (FrameDataset.crop_margin; undeclared: 0.25) must be the model's
        require_crop_margin(inputs, getattr(base, "crop_margin", DEFAULT_MARGIN), "training data")
        self.base = base
        self.inputs = dict(inputs)
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict:
        i, epoch = (key if isinstance(key, tuple) else (key, 0))
        sample = self.base[int(i)]
        crops = {m: x for m, x in sample.modalities.items() if m in self.inputs}
        if self.transform is not None:
            crops = self.transform(crops, np.random.default_rng([self.seed, int(epoch), int(i)]))
        feed = normalise_sample(crops, self.inputs, sample.depth_scale_m, face_depth_m=sample.face_depth_m,
                                depth_encoding=sample.depth_encoding)
        return {"inputs": {m: v[0] for m, v in feed.items()},
                "target": np.float32(1.0 if sample.is_bonafide else 0.0), "index": int(i)}
