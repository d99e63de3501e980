"""Optional camera physics of the synthetic renderer (docs/SYNTHETIC.md, "Camera physics"): what real RGB-D-NIR sensors do that
the nominal sensor model leaves out — stereo depth in disparity, projector shadows, flying pixels, low native depth
resolution; NIR gain, banding, dot pattern, saturation; RGB white-balance error, auto-exposure, tone curve,
sharpening, defocus, JPEG with 4:2:0 chroma.

numpy only. A :class:`SensorPhysics` holds **ranges**; :func:`draw_physics` draws one value per range for a session
(presentation) from ``(seed, presentation index)`` — domain randomisation — and :func:`apply_physics` applies the
drawn values to one rendered frame set with noise from ``(seed, index, frame)``. A domain without physics
(``SceneConfig.physics is None``, every shipped domain before ``dr_*``/``x_phys``) renders bit-identically to
before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np

from edgepad.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class SensorPhysics:
    """Ranges (min, max) of the optional sensor effects; (0, 0) (or (1, 1) for factors) = off.

    Depth (stereo, left-IR camera; ``f`` = its focal length in px):
        baseline_m: stereo baseline b (m); disparity d = f·b/z.
        disparity_sigma_px: σ_d of the disparity noise (px); σ_z = z²·σ_d/(f·b) follows.
        match_window_px: side of the matching window; the disparity noise is white noise box-filtered by it
            (spatially correlated), renormalised to σ_d.
        subpixel: disparity quantisation step = 1/subpixel px (0 = none); D4xx ≈ 1/32.
        flying_p: probability that a pixel next to a depth edge gets a depth between foreground and background.
        projector_offset_m: projector offset along the baseline (m); pixels the projector cannot see from there
            (beside the nose and jaw) become holes (0 = no shadows).
        depth_downscale: native depth resolution = colour / this (1 = same), block-averaged then nearest-upsampled.
    NIR:
        nir_gain: per-unit gain factor; nir_read_noise: extra read noise σ (DN); nir_shot: extra shot factor.
        nir_banding: σ of a per-row offset (DN); nir_dots: amplitude of the projector dot pattern (fraction of
        the return); nir_full_well: saturation level (DN, 255 = the 8-bit range only).
    RGB:
        wb_error: per-channel white-balance gain error (fraction, uniform ±); ae_target: auto-exposure target of
        the mean luminance of the frame (0 = off) and ae_strength (0..1, the fraction of the correction applied);
        tone: S-curve strength (0 = none); sharpen: unsharp-mask amount; defocus_px: blur radius (px);
        jpeg_quality: JPEG quality (0 = no compression), luma 8×8 DCT quantisation + 4:2:0 chroma.
    """

    baseline_m: Range = (0.05, 0.05)
    disparity_sigma_px: Range = (0.0, 0.0)
    match_window_px: Range = (1.0, 1.0)
    subpixel: Range = (0.0, 0.0)
    flying_p: Range = (0.0, 0.0)
    projector_offset_m: Range = (0.0, 0.0)
    depth_downscale: Range = (1.0, 1.0)
    nir_gain: Range = (1.0, 1.0)
    nir_read_noise: Range = (0.0, 0.0)
    nir_shot: Range = (0.0, 0.0)
    nir_banding: Range = (0.0, 0.0)
    nir_dots: Range = (0.0, 0.0)
    nir_full_well: Range = (255.0, 255.0)
    wb_error: Range = (0.0, 0.0)
    ae_target: Range = (0.0, 0.0)
    ae_strength: Range = (0.0, 0.0)
    tone: Range = (0.0, 0.0)
    sharpen: Range = (0.0, 0.0)
    defocus_px: Range = (0.0, 0.0)
    jpeg_quality: Range = (0.0, 0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            lo, hi = getattr(self, f.name)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ConfigError(f"physics range {f.name} must be finite (min, max) with min <= max, got "
                                  f"{(lo, hi)}", key=f"physics.{f.name}")
        if self.baseline_m[0] <= 0 or self.depth_downscale[0] < 1 or self.match_window_px[0] < 1:
            raise ConfigError("physics: baseline_m > 0, depth_downscale >= 1, match_window_px >= 1",
                              key="physics")
        if self.jpeg_quality[0] < 0 or self.jpeg_quality[1] > 100:
            raise ConfigError("physics.jpeg_quality must be in [0, 100]", key="physics.jpeg_quality")


def draw_physics(phys: SensorPhysics, seed: int, index: int) -> dict[str, float]:
    """One session's values: each range drawn uniformly from ``(seed, index)`` (integer-valued fields rounded)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7101, int(index)])
    out = {f.name: float(rng.uniform(*getattr(phys, f.name))) for f in fields(phys)}
    for k in ("match_window_px", "depth_downscale", "defocus_px"):
        out[k] = float(round(out[k]))
    out["dot_seed"] = float(rng.integers(1 << 30))       # the unit's projector pattern
    return out




def box_blur(img: np.ndarray, r: int, passes: int = 2) -> np.ndarray:
    """:func:`edgepad.synthesis.surfaces.box_blur` (imported late: scene → physics must not import surfaces)."""
    from edgepad.synthesis.surfaces import box_blur as blur
    return blur(img, r, passes)


# ----------------------------------------------------------------------------------------------- depth
def stereo_depth(z: np.ndarray, valid: np.ndarray, v: Mapping[str, float], fx: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Depth through disparity: correlated disparity noise, sub-pixel quantisation, flying pixels, low native
    resolution, projector shadows. ``z`` (m, 0 = invalid) → ``(z', valid')``."""
    fb = fx * v["baseline_m"]
    z = np.where(valid, z, 0.0).astype(np.float64)
    h, w = z.shape
    # projector shadows: the ray from the projector (offset along +x) to a pixel's point passes column u + k at
    # inverse depth 1/z + k/(f·b_p); a nearer surface there blocks it
    bp = v["projector_offset_m"]
    if bp > 0 and valid.any():
        inv = np.where(valid, 1.0 / np.maximum(z, 1e-6), 0.0).astype(np.float32)
        shadow = np.zeros_like(valid)
        span = float(inv[valid].max() - inv[valid].min())            # no occluder is further away than this
        kmax = int(min(w - 1, math.ceil(fx * bp * span)))
        for k in range(1, kmax + 1):
            shadow[:, :-k] |= inv[:, k:] > inv[:, :-k] + np.float32(k / (fx * bp))
        valid = valid & ~shadow
    # flying pixels: next to a depth jump, a mix of the two depths
    if v["flying_p"] > 0:
        zf = z.copy()
        for axis in (0, 1):
            a = np.roll(z, 1, axis=axis)
            jump = valid & (np.abs(a - z) > 0.03) & (a > 0)
            if axis == 0:
                jump[0, :] = False
            else:
                jump[:, 0] = False
            pick = jump & (rng.random(z.shape) < v["flying_p"])
            t = rng.random(z.shape)
            zf = np.where(pick, t * z + (1 - t) * a, zf)
        z = zf
    disp = np.where(valid, fb / np.maximum(z, 1e-6), 0.0)
    if v["disparity_sigma_px"] > 0:
        n = rng.standard_normal(z.shape).astype(np.float32)
        win = int(v["match_window_px"])
        if win > 1:
            r = max(1, win // 2)
            n = box_blur(n, r, passes=1)
            n /= max(float(n.std()), 1e-6)
        disp = disp + v["disparity_sigma_px"] * n
    if v["subpixel"] > 0:
        disp = np.round(disp * v["subpixel"]) / v["subpixel"]
    valid = valid & (disp > 0)
    z = np.where(valid, fb / np.where(disp > 0, disp, 1.0), 0.0)
    s = int(v["depth_downscale"])
    if s > 1:
        hs, ws = h // s * s, w // s * s
        zb = z[:hs, :ws].reshape(hs // s, s, ws // s, s)
        vb = valid[:hs, :ws].reshape(hs // s, s, ws // s, s)
        cnt = vb.sum((1, 3))
        zm = np.where(cnt > 0, zb.sum((1, 3)) / np.maximum(cnt, 1), 0.0)
        vm = cnt * 2 >= s * s                                        # a native pixel needs half its area valid
        up = np.repeat(np.repeat(zm, s, 0), s, 1)
        vup = np.repeat(np.repeat(vm, s, 0), s, 1)
        z = np.zeros_like(z)
        valid = np.zeros_like(valid)
        z[:hs, :ws], valid[:hs, :ws] = up, vup
        z = np.where(valid, z, 0.0)
    return z.astype(np.float32), valid


# ----------------------------------------------------------------------------------------------- NIR
def nir_sensor(ir: np.ndarray, v: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    """Per-unit gain, extra shot + read noise, row banding, projector dots, saturation on a uint8 IR image."""
    x = ir.astype(np.float32) * np.float32(v["nir_gain"])
    if v["nir_dots"] > 0:
        drng = np.random.default_rng(int(v["dot_seed"]))
        dots = (drng.random(ir.shape) < 0.02).astype(np.float32)    # the unit's fixed pseudo-random pattern
        x *= 1.0 + np.float32(v["nir_dots"]) * dots
    var = v["nir_read_noise"] ** 2 + v["nir_shot"] * np.clip(x, 0, None)
    x = x + rng.standard_normal(ir.shape).astype(np.float32) * np.sqrt(var).astype(np.float32)
    if v["nir_banding"] > 0:
        x = x + (rng.standard_normal((ir.shape[0], 1)) * v["nir_banding"]).astype(np.float32)
    x = np.minimum(x, np.float32(v["nir_full_well"]))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- RGB
_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT = _dct_matrix()


def jpeg_like(rgb: np.ndarray, quality: float) -> np.ndarray:
    """Baseline-JPEG-like loss on a uint8 H×W×3 image: YCbCr, 4:2:0 chroma (2×2 mean, nearest up), 8×8 DCT
    quantisation of every plane with the standard luma table scaled by ``quality`` (1..100)."""
    q = float(np.clip(quality, 1, 100))
    scale = 5000.0 / q if q < 50 else 200.0 - 2 * q
    table = np.clip(np.floor((_JPEG_LUMA * scale + 50) / 100), 1, 255).astype(np.float32)
    x = rgb.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cb = 128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
    cr = 128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:                 # 4:2:0
        hh, ww = h // 2 * 2, w // 2 * 2
        m = c[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean((1, 3))
        out = c.copy()
        out[:hh, :ww] = np.repeat(np.repeat(m, 2, 0), 2, 1)
        return out

    def quant(c: np.ndarray) -> np.ndarray:
        hh, ww = h // 8 * 8, w // 8 * 8
        b = (c[:hh, :ww] - 128).reshape(hh // 8, 8, ww // 8, 8).transpose(0, 2, 1, 3)
        d = _DCT @ b @ _DCT.T
        d = np.round(d / table) * table
        out = c.copy()
        out[:hh, :ww] = (_DCT.T @ d @ _DCT).transpose(0, 2, 1, 3).reshape(hh, ww) + 128
        return out

    y, cb, cr = quant(y), quant(sub(cb)), quant(sub(cr))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return np.clip(np.stack([r, g, b], -1) + 0.5, 0, 255).astype(np.uint8)


def rgb_pipeline(rgb: np.ndarray, v: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    """White-balance error, auto-exposure, tone curve, defocus, sharpening, JPEG on a uint8 sRGB H×W×3 image."""
    lin = np.power(rgb.astype(np.float32) / 255.0, 2.2)
    if v["wb_error"] > 0:
        lin *= (1.0 + rng.uniform(-v["wb_error"], v["wb_error"], 3)).astype(np.float32)[None, None, :]
    if v["ae_target"] > 0 and v["ae_strength"] > 0:
        mean = float(lin.mean())
        gain = (v["ae_target"] / max(mean, 1e-4)) ** v["ae_strength"]
        lin *= np.float32(min(gain, 8.0))
    x = np.power(np.clip(lin, 0, 1), 1 / 2.2)
    if v["tone"] > 0:                                     # S-curve around mid-grey
        x = x + v["tone"] * x * (1 - x) * (2 * x - 1)
    if v["defocus_px"] >= 1:
        x = box_blur(x.transpose(2, 0, 1), int(v["defocus_px"]), passes=2).transpose(1, 2, 0)
    if v["sharpen"] > 0:
        x = x + v["sharpen"] * (x - box_blur(x.transpose(2, 0, 1), 1, passes=1).transpose(1, 2, 0))
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if v["jpeg_quality"] >= 1:
        out = jpeg_like(out, v["jpeg_quality"])
    return out


def apply_physics(rgb: np.ndarray, depth_mm: np.ndarray, ir: np.ndarray, v: Mapping[str, float], fx_ir: float,
                  seed: int, index: int, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply drawn physics values ``v`` (:func:`draw_physics`) to one rendered frame set.

    Args:
        rgb: uint8 H×W×3; depth_mm: uint16 (mm, 0 = invalid) in the left-IR camera; ir: uint8.
        fx_ir: focal length of the left-IR camera (px). seed, index, frame: the noise stream.

    Returns:
        ``(rgb, depth_mm, ir)`` of the same shapes and dtypes.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7102, int(index), int(frame)])
    z = depth_mm.astype(np.float32) / 1000.0
    zq, valid = stereo_depth(z, depth_mm > 0, v, fx_ir, rng)
    d = np.where(valid, np.round(zq * 1000.0), 0.0)
    depth_out = np.clip(d, 0, 65535).astype(np.uint16)
    return rgb_pipeline(rgb, v, rng), depth_out, nir_sensor(ir, v, rng)


#: domain randomisation for training (``dr``) and a reserved combination outside its ranges (``x_phys``)
DR_PHYSICS = SensorPhysics(
    baseline_m=(0.045, 0.055), disparity_sigma_px=(0.03, 0.12), match_window_px=(1, 7), subpixel=(16, 32),
    flying_p=(0.0, 0.5), projector_offset_m=(0.0, 0.03), depth_downscale=(1, 2), nir_gain=(0.8, 1.25),
    nir_read_noise=(0.0, 2.0), nir_shot=(0.0, 0.3), nir_banding=(0.0, 1.0), nir_dots=(0.0, 0.15),
    nir_full_well=(200.0, 255.0), wb_error=(0.0, 0.08), ae_target=(0.15, 0.25), ae_strength=(0.0, 0.7),
    tone=(0.0, 0.5), sharpen=(0.0, 0.6), defocus_px=(0, 1), jpeg_quality=(70, 95))
X_PHYSICS = SensorPhysics(
    baseline_m=(0.035, 0.035), disparity_sigma_px=(0.15, 0.2), match_window_px=(9, 9), subpixel=(8, 8),
    flying_p=(0.7, 0.7), projector_offset_m=(0.04, 0.04), depth_downscale=(4, 4), nir_gain=(1.4, 1.5),
    nir_read_noise=(3.0, 3.0), nir_shot=(0.5, 0.5), nir_banding=(2.0, 2.0), nir_dots=(0.3, 0.3),
    nir_full_well=(180.0, 180.0), wb_error=(0.15, 0.15), ae_target=(0.3, 0.3), ae_strength=(0.9, 0.9),
    tone=(0.8, 0.8), sharpen=(1.0, 1.0), defocus_px=(2, 2), jpeg_quality=(35, 40))

__all__ = ["SensorPhysics", "draw_physics", "apply_physics", "stereo_depth", "nir_sensor", "rgb_pipeline",
           "jpeg_like", "DR_PHYSICS", "X_PHYSICS"]
