"""Rendering of the synthetic renderer: pixel rays of each camera of the rig ray-cast the presentation's
heightfield (a few conservative Newton steps from the front of its bounding slab), then the RGB, NIR and depth
sensor models add shading, noise, saturation and depth holes (docs/SYNTHETIC.md).

The RGB image and the depth / IR images (which share the left-IR camera, as on a RealSense D4xx) come from the same
geometry seen from two real viewpoints with lens distortion. Pixel (0, 0) is the centre of the top-left pixel.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from edgepad.errors import ConfigError
from edgepad.geometry import Intrinsics, Rig, pixel_rays, project
from edgepad.synthesis.physics import SensorPhysics, apply_physics, draw_physics
from edgepad.synthesis.scene import (DOMAINS, Presentation, SensorModel, _has_face_relief, default_rig,
                                     domain_config, frame_pose)
from edgepad.synthesis.surfaces import (GRID_NX, GRID_NY, GRID_STEP_M, GRID_X0, GRID_X1, GRID_Y0, GRID_Y1,
                                        Surface, build_surface)
from edgepad.types import Modality

#: face region (object coords, m) whose projection is the ground-truth face box: brows to chin, temple to temple
FACE_BOX_POINTS = ((-0.068, -0.062), (0.068, -0.062), (-0.07, 0.02), (0.07, 0.02), (0.0, 0.09), (-0.05, 0.075),
                   (0.05, 0.075), (0.0, -0.07))


# ----------------------------------------------------------------------------------------------- rendering
_CCT_TABLE = ((2500.0, (1.0, 0.37, 0.08)), (3000.0, (1.0, 0.456, 0.147)), (4000.0, (1.0, 0.64, 0.37)),
              (5000.0, (1.0, 0.776, 0.617)), (6500.0, (1.0, 0.95, 0.99)), (8000.0, (0.87, 0.9, 1.0)))


def illuminant_rgb(color_temp_k: float, awb: float = 0.0) -> np.ndarray:
    """Linear RGB of a blackbody-like illuminant (table interpolation), after white balance of strength ``awb``.

    Returns:
        (3,) float32 multipliers with mean 1.
    """
    ks = np.array([k for k, _ in _CCT_TABLE])
    cols = np.array([c for _, c in _CCT_TABLE])
    c = np.array([np.interp(color_temp_k, ks, cols[:, i]) for i in range(3)])
    c = c / np.power(c, float(awb))
    return (c / c.mean()).astype(np.float32)


@dataclass
class RenderedFrames:
    """One rendered frame set.

    Attributes:
        rgb: uint8 H×W×3 (RGB camera).
        depth: uint16 H×W in mm (depth = left-IR camera), 0 = invalid.
        ir: uint8 H×W (left-IR camera).
        truth: the presentation with this frame's pose and face box.
        depth_true_m: float32 H×W noise-free depth (m, 0 where nothing was hit) in the depth camera.
        face_mask_rgb: bool H×W, pixels of the presentation surface in the RGB image.
        face_mask_ir: bool H×W, pixels of the presentation surface in the IR/depth image.
    """

    rgb: np.ndarray
    depth: np.ndarray
    ir: np.ndarray
    truth: Presentation
    depth_true_m: np.ndarray
    face_mask_rgb: np.ndarray
    face_mask_ir: np.ndarray


class _NoiseBank:
    """Pre-drawn noise fields; each use takes a random window (cheap per frame, deterministic from the seed)."""

    def __init__(self, seed: int, height: int, width: int, n: int = 3, pad: int = 48) -> None:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7004])
        self.pad = pad
        self.normal = rng.standard_normal((n, height + pad, width + pad), dtype=np.float32)
        self.uniform = rng.random((n, height + pad, width + pad), dtype=np.float32)

    def take(self, bank: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        k, oy, ox = int(rng.integers(bank.shape[0])), int(rng.integers(self.pad)), int(rng.integers(self.pad))
        return bank[k, oy:oy + h, ox:ox + w]


class RenderCache:
    """Per-rig and per-presentation caches: pixel rays per camera, noise bank, surfaces, backgrounds.

    Keep one per rig (the :class:`~edgepad.drivers.synthetic.SyntheticSource` keeps one). Surfaces and backgrounds
    depend on the presentation only, so a presentation of N frames builds them once.
    """

    def __init__(self, rig: Rig, seed: int = 0, max_presentations: int = 2) -> None:
        self.rig = rig
        self.rays: dict[Modality, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for m in (Modality.RGB, Modality.IR):
            intr = rig.intrinsics[m if m in rig.intrinsics else Modality.DEPTH]
            rx, ry = pixel_rays(intr)
            rx, ry = rx.astype(np.float32), ry.astype(np.float32)
            self.rays[m] = (rx, ry, np.sqrt(rx * rx + ry * ry + 1).astype(np.float32))
        hmax = max(i.height for i in rig.intrinsics.values())
        wmax = max(i.width for i in rig.intrinsics.values())
        self.noise = _NoiseBank(seed, hmax, wmax)
        self.max_presentations = max_presentations
        self._surfaces: dict[tuple, Surface] = {}
        self._backgrounds: dict[tuple, dict] = {}

    @staticmethod
    def _key(p: Presentation) -> tuple:
        return (p.seed, p.index, p.species, p.subject, p.victim, tuple(sorted(p.params.items())),
                tuple(sorted(p.lighting.items())), p.offset_m, p.distance_m)

    def surface(self, p: Presentation) -> Surface:
        key = self._key(p)
        if key not in self._surfaces:
            if len(self._surfaces) >= self.max_presentations:
                self._surfaces.pop(next(iter(self._surfaces)))
            self._surfaces[key] = build_surface(p)
        return self._surfaces[key]

    def background(self, p: Presentation, sensor: SensorModel) -> dict:
        key = self._key(p) + (sensor,)
        if key not in self._backgrounds:
            if len(self._backgrounds) >= self.max_presentations:
                self._backgrounds.pop(next(iter(self._backgrounds)))
            self._backgrounds[key] = _background(p, self, sensor)
        return self._backgrounds[key]


def _camera_from_rgb(rig: Rig, m: Modality) -> tuple[np.ndarray, np.ndarray]:
    e = rig.extrinsics(Modality.RGB, m)
    return e.r, e.t


def _background(p: Presentation, cache: RenderCache, sensor: SensorModel) -> dict:
    """Wall + presenter's torso per camera (RGB linear radiance; IR intensity and depth), per presentation."""
    lt = p.lighting
    rng = np.random.default_rng([p.seed & 0xFFFFFFFF, 7005, p.index])
    wall = float(lt["wall_m"])
    tone = float(lt["wall_tone"])
    wall_rgb = np.array([tone, tone * rng.uniform(0.9, 1.05), tone * rng.uniform(0.8, 1.05)], np.float32)
    cloth = rng.uniform(0.05, 0.6, 3).astype(np.float32)
    cloth_rho = float(rng.uniform(0.3, 0.7))
    door_x = float(rng.uniform(-0.8, 0.8))
    xc, yc = p.offset_m
    zt = p.distance_m + 0.13
    illum = illuminant_rgb(lt["color_temp_k"], lt["awb"])
    light_z = -float(lt["light_z"])
    shade = float(lt["ambient"] + lt["directional"] * max(light_z, 0.0))
    out: dict = {}
    for m in (Modality.RGB, Modality.IR):
        rx, ry, dn = cache.rays[m]
        r, t = _camera_from_rgb(cache.rig, m)
        # points p_cam = s·(rx, ry, 1); in rgb coords: p_rgb = rᵀ (p_cam − t)
        rt = r.T
        dz = rt[2, 0] * rx + rt[2, 1] * ry + rt[2, 2]
        oz = -(rt[2] @ t)
        s_wall = (wall - oz) / dz
        s_torso = (zt - oz) / dz
        xr = (rt[0, 0] * rx + rt[0, 1] * ry + rt[0, 2]) * s_torso - rt[0] @ t
        yr = (rt[1, 0] * rx + rt[1, 1] * ry + rt[1, 2]) * s_torso - rt[1] @ t
        torso = (np.abs(xr - xc) < 0.21) & (yr > yc + 0.15 + 0.07 * ((xr - xc) / 0.2) ** 4)
        s = np.where(torso, s_torso, s_wall).astype(np.float32)
        if m is Modality.RGB:
            xw = (rt[0, 0] * rx + rt[0, 1] * ry + rt[0, 2]) * s_wall - rt[0] @ t
            yw = (rt[1, 0] * rx + rt[1, 1] * ry + rt[1, 2]) * s_wall - rt[1] @ t
            pat = 1.0 + 0.12 * np.sin(xw * 3.1 + 0.5) * np.cos(yw * 2.3) - 0.35 * (np.abs(xw - door_x) < 0.03)
            alb = wall_rgb[None, None, :] * pat[..., None]
            alb = np.where(torso[..., None], cloth[None, None, :], alb)
            out["rgb"] = (alb * (shade * illum)[None, None, :]).astype(np.float32)
        else:
            rho = np.where(torso, cloth_rho, float(lt["wall_rho"]))
            r_m = s * dn
            power = sensor.nir_power * float(lt["emitter"])
            nir = rho * (power / dn / (r_m * r_m) + float(lt["nir_ambient"]))
            out["ir"] = (nir * sensor.nir_gain).astype(np.float32)
            out["z"] = s
    return out


def _roi(surface: Surface, r: np.ndarray, t: np.ndarray, intr: Intrinsics, pad: int = 6) -> tuple[slice, slice] | None:
    x0, x1, y0, y1 = surface.extent
    pts = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (0.0, -surface.h_max)])
    cam = pts @ r.T + t
    if np.any(cam[:, 2] <= 0.05):
        return slice(0, intr.height), slice(0, intr.width)
    uv = project(cam, intr)
    u0 = int(max(0, math.floor(np.nanmin(uv[:, 0])) - pad))
    u1 = int(min(intr.width, math.ceil(np.nanmax(uv[:, 0])) + pad + 1))
    v0 = int(max(0, math.floor(np.nanmin(uv[:, 1])) - pad))
    v1 = int(min(intr.height, math.ceil(np.nanmax(uv[:, 1])) + pad + 1))
    if u1 <= u0 or v1 <= v0:
        return None
    return slice(v0, v1), slice(u0, u1)


_INV_STEP = np.float32(1.0 / GRID_STEP_M)


def _tex_index(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ix = ((x - np.float32(GRID_X0)) * _INV_STEP).astype(np.int32)
    iy = ((y - np.float32(GRID_Y0)) * _INV_STEP).astype(np.int32)
    np.clip(ix, 0, GRID_NX - 1, out=ix)
    np.clip(iy, 0, GRID_NY - 1, out=iy)
    iy *= GRID_NX
    iy += ix
    return iy


def _cast(surface: Surface, rx: np.ndarray, ry: np.ndarray, r: np.ndarray, t: np.ndarray, iters: int = 5):
    """Intersect camera rays ``s·(rx, ry, 1)`` with the heightfield posed by ``p_cam = r p_obj + t``.

    Conservative Newton steps from the front of the bounding slab converge to the first hit.

    Returns:
        (s = camera z in m, texel index, hit mask, slope term g = ∇h·a, a_z).
    """
    rt = r.T.astype(np.float32)
    ax = rt[0, 0] * rx + rt[0, 1] * ry + rt[0, 2]
    ay = rt[1, 0] * rx + rt[1, 1] * ry + rt[1, 2]
    az = rt[2, 0] * rx + rt[2, 1] * ry + rt[2, 2]
    b = (-(r.T @ t)).astype(np.float32)
    s = (np.float32(-surface.h_max) - b[2]) / az
    h_, gx_, gy_ = surface.h, surface.gx, surface.gy
    for _ in range(iters):
        idx = _tex_index(s * ax + b[0], s * ay + b[1])
        g = gx_[idx] * ax + gy_[idx] * ay
        f = s * az + b[2] + h_[idx]
        s = s - f / (az + np.abs(g))
    x = s * ax + b[0]
    y = s * ay + b[1]
    idx = _tex_index(x, y)
    f = s * az + b[2] + h_[idx]
    g = gx_[idx] * ax + gy_[idx] * ay
    hit = (surface.alpha[idx] > 0.5) & (np.abs(f) < 0.01)
    hit &= (x > GRID_X0) & (x < GRID_X1) & (y > GRID_Y0) & (y < GRID_Y1)
    return s, idx, hit, g, az, (ax, ay)


def face_box(p: Presentation, surface: Surface, r: np.ndarray, t: np.ndarray,
             intr: Intrinsics) -> tuple[int, int, int, int] | None:
    """Ground-truth face box ``(x, y, w, h)`` (px of ``intr``) of ``p`` posed by ``p_cam = r p_obj + t``.

    The projection of :data:`FACE_BOX_POINTS` on the surface, clipped to the image; None when the face is behind
    the camera or less than half of it is in view.
    """
    scale = float(p.params.get("scale", 1.0)) if not _has_face_relief(p.species) else 1.0
    vic_scale = 1.0
    pts = []
    for (x, y) in FACE_BOX_POINTS:
        x, y = x * scale * vic_scale, y * scale * vic_scale
        idx = int(_tex_index(np.array([x], np.float32), np.array([y], np.float32))[0])
        pts.append((x, y, -float(surface.h[idx])))
    cam = np.asarray(pts) @ r.T + t
    if np.any(cam[:, 2] <= 0.05):
        return None
    uv = project(cam, intr)
    u0, v0 = np.min(uv, axis=0)
    u1, v1 = np.max(uv, axis=0)
    w, h = u1 - u0, v1 - v0
    cu0, cv0 = max(u0, 0.0), max(v0, 0.0)
    cu1, cv1 = min(u1, intr.width - 1.0), min(v1, intr.height - 1.0)
    if cu1 <= cu0 or cv1 <= cv0 or (cu1 - cu0) * (cv1 - cv0) < 0.5 * w * h:
        return None
    return (int(round(cu0)), int(round(cv0)), int(round(cu1 - cu0)), int(round(cv1 - cv0)))


_SRGB_LUT = np.round(np.power(np.linspace(0.0, 1.0, 4096), 1 / 2.2) * 255.0).astype(np.uint8)


def render_frames(p: Presentation, rig: Rig | None = None, *, frame: int = 0, seed: int = 0,
                  sensor: SensorModel | None = None, cache: RenderCache | None = None,
                  iterations: int = 5, physics: SensorPhysics | None = None) -> RenderedFrames:
    """Render the RGB, depth and IR images of frame ``frame`` of presentation ``p`` through ``rig``.

    Args:
        p: the presentation (from :func:`sample_presentation`).
        rig: the camera rig (default :func:`default_rig`); depth and IR share one camera.
        frame: frame number inside the presentation (pose sway).
        seed: noise seed (with ``p.index`` and ``frame``).
        sensor: sensor model (default: that of ``p.domain``).
        cache: a :class:`RenderCache` for this rig (built when None; reuse it for speed).
        iterations: ray-cast Newton steps.
        physics: optional camera physics (default: that of ``p.domain``, None for the nominal domains), drawn
            per presentation and applied after the nominal sensor (:mod:`edgepad.synthesis.physics`).

    Returns:
        :class:`RenderedFrames` (depth in mm in the depth camera, not registered).
    """
    rig = rig if rig is not None else (cache.rig if cache is not None else default_rig())
    cache = cache if cache is not None else RenderCache(rig, seed)
    if cache.rig is not rig:
        raise ConfigError("render_frames: the cache was built for another rig", key="cache")
    sensor = sensor if sensor is not None else (domain_config(p.domain).sensor if p.domain in DOMAINS
                                                else SensorModel())
    surface = cache.surface(p)
    bg = cache.background(p, sensor)
    pose = frame_pose(p, frame)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7006, p.index, int(frame)])
    lt = p.lighting
    # ---------------------------------------------------------------- RGB
    intr = rig.intrinsics[Modality.RGB]
    rgb = bg["rgb"].copy()
    mask_rgb = np.zeros((intr.height, intr.width), bool)
    roi = _roi(surface, pose.r, pose.t, intr)
    illum = illuminant_rgb(lt["color_temp_k"], lt["awb"])
    if roi is not None:
        rx, ry, dn = (a[roi] for a in cache.rays[Modality.RGB])
        s, idx, hit, g, az, (ax, ay) = _cast(surface, rx, ry, pose.r, pose.t, iterations)
        ii = idx[hit]
        inv_n = surface.inv_norm[ii]
        gx, gy = surface.gx[ii], surface.gy[ii]
        light = np.array([lt["light_x"], lt["light_y"], lt["light_z"]])
        l_o = pose.r.T @ light
        hv = light + np.array([0.0, 0.0, -1.0])
        hv = pose.r.T @ (hv / np.linalg.norm(hv))
        cos_l = np.clip(-(gx * l_o[0] + gy * l_o[1] + l_o[2]) * inv_n, 0.0, None)
        cos_h = np.clip(-(gx * hv[0] + gy * hv[1] + hv[2]) * inv_n, 0.0, None)
        shade = (lt["ambient"] + lt["directional"] * cos_l).astype(np.float32)
        alb = surface.albedo[ii]
        spec = surface.spec[ii] * lt["directional"] * np.power(cos_h, surface.spec_exp)
        col = (alb * shade[:, None] + spec[:, None]) * illum[None, :]
        if surface.emissive is not None:
            em = surface.emissive[ii] > 0.5
            glare = float(p.params.get("glare", 0.3)) * 0.25 * np.power(cos_h, 6.0) * lt["directional"]
            screen = alb + (glare + spec)[:, None] * illum[None, :]
            col = np.where(em[:, None], screen, col)
            # moiré: beat of the screen's pixel grid with the camera's, in image space
            per = float(p.params.get("moire_px", 8.0))
            ang = float(p.params.get("moire_angle", 0.0))
            vv, uu = np.nonzero(hit)
            uu = uu + roi[1].start
            vv = vv + roi[0].start
            mo = 1.0 + float(p.params.get("moire_amp", 0.1)) * np.sin(
                2 * np.pi * (uu * math.cos(ang) + vv * math.sin(ang)) / per).astype(np.float32)
            col = np.where(em[:, None], col * mo[:, None], col)
        sub = rgb[roi]
        sub[hit] = col
        mask_rgb[roi] = hit
    expo = float(lt["exposure"])
    noise_rgb = np.stack([cache.noise.take(cache.noise.normal, rng, intr.height, intr.width) for _ in range(3)],
                         axis=-1)
    rgb *= expo
    rgb += noise_rgb * (sensor.rgb_noise + sensor.rgb_shot * 8.0 * np.sqrt(np.clip(rgb, 0, None)))
    np.clip(rgb, 0.0, 1.0, out=rgb)
    rgb_u8 = _SRGB_LUT[(rgb * 4095.0).astype(np.int16)]
    # ---------------------------------------------------------------- IR / depth (left-IR camera)
    cam = Modality.IR if Modality.IR in rig.intrinsics else Modality.DEPTH
    intr_ir = rig.intrinsics[cam]
    r_c, t_c = _camera_from_rgb(rig, cam)
    r_ir = r_c @ pose.r
    t_ir = r_c @ pose.t + t_c
    nir = bg["ir"].copy()
    z = bg["z"].copy()
    hole_p = np.full(z.shape, sensor.depth_hole_base, np.float32)
    mask_ir = np.zeros(z.shape, bool)
    roi = _roi(surface, r_ir, t_ir, intr_ir)
    power = sensor.nir_power * float(lt["emitter"])
    if roi is not None:
        rx, ry, dn = (a[roi] for a in cache.rays[Modality.IR])
        s, idx, hit, g, az, _ = _cast(surface, rx, ry, r_ir, t_ir, iterations)
        ii = idx[hit]
        sh = s[hit]
        dnh = dn[hit]
        cos_v = np.clip((g[hit] + az[hit]) * surface.inv_norm[ii] / dnh, 0.0, None)
        r2 = (sh * dnh) ** 2
        rho = surface.rho[ii]
        val = rho * (power * cos_v / r2 + float(lt["nir_ambient"]))
        val += surface.spec[ii] * power * np.power(cos_v, surface.spec_exp) / r2
        val *= sensor.nir_gain
        nir[roi][hit] = val
        sub_z = z[roi]
        sub_z[hit] = sh
        sub_h = hole_p[roi]
        sub_h[hit] += sensor.depth_hole_material * surface.holes[ii]
        mask_ir[roi] = hit
    z_true = np.where(z > 0, z, 0).astype(np.float32)
    # NIR sensor: shot + read noise, saturation
    n_ir = cache.noise.take(cache.noise.normal, rng, intr_ir.height, intr_ir.width)
    nir_noisy = nir + n_ir * np.sqrt(sensor.nir_read_noise ** 2 + sensor.nir_shot * np.clip(nir, 0, None))
    ir_u8 = np.clip(nir_noisy + 0.5, 0, 255).astype(np.uint8)
    # depth: σ_z = c z², invalid on dark / saturated returns, material holes, edges, out of range
    dark = np.clip(1.0 - nir / 10.0, 0.0, 1.0)
    hole_p += sensor.depth_hole_dark * dark * dark
    hole_p += 0.9 * (nir >= 250.0)
    n_z = cache.noise.take(cache.noise.normal, rng, intr_ir.height, intr_ir.width)
    z_meas = z + n_z * (sensor.depth_noise_c * z * z)
    u = cache.noise.take(cache.noise.uniform, rng, intr_ir.height, intr_ir.width)
    invalid = u < hole_p
    dzx = np.abs(np.diff(z, axis=1)) > sensor.depth_edge_m
    dzy = np.abs(np.diff(z, axis=0)) > sensor.depth_edge_m
    invalid[:, 1:] |= dzx
    invalid[:, :-1] |= dzx
    invalid[1:, :] |= dzy
    invalid[:-1, :] |= dzy
    invalid |= (z < sensor.depth_min_m) | (z > sensor.depth_max_m)
    depth_mm = np.where(invalid, 0.0, np.round(z_meas * 1000.0))
    depth_u16 = np.clip(depth_mm, 0, 65535).astype(np.uint16)
    if physics is None and p.domain in DOMAINS:
        physics = DOMAINS[p.domain].physics
    if physics is not None:
        values = draw_physics(physics, p.seed, p.index)
        rgb_u8, depth_u16, ir_u8 = apply_physics(rgb_u8, depth_u16, ir_u8, values, intr_ir.fx, seed, p.index,
                                                 int(frame))
    box = face_box(p, surface, pose.r, pose.t, intr)
    truth = dataclasses.replace(p, face_box_rgb=box, distance_m=pose.distance_m, yaw_deg=pose.yaw_deg,
                                pitch_deg=pose.pitch_deg, roll_deg=pose.roll_deg, frame=int(frame))
    return RenderedFrames(rgb_u8, depth_u16, ir_u8, truth, z_true, mask_rgb, mask_ir)
