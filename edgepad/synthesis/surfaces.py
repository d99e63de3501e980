"""Surfaces of the synthetic renderer: each presentation as a heightfield (m, towards the camera) plus material maps
(visible albedo, NIR reflectance ρ, specular strength, depth-hole propensity, opacity) on one object-local texel
grid (``GRID_STEP_M`` = 0.6 mm, ``GRID_NY × GRID_NX`` texels). docs/SYNTHETIC.md §2 documents every parameter.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from dataclasses import dataclass

import numpy as np

from edgepad.synthesis.scene import GENERIC_FACE, H_REF_FACE_M, Presentation, Subject, make_subject

# object-local texel grid shared by all surfaces (metres)
GRID_STEP_M = 0.0006
GRID_X0, GRID_X1 = -0.12, 0.12
GRID_Y0, GRID_Y1 = -0.165, 0.165
GRID_NX = int(round((GRID_X1 - GRID_X0) / GRID_STEP_M))
GRID_NY = int(round((GRID_Y1 - GRID_Y0) / GRID_STEP_M))


# ----------------------------------------------------------------------------------------------- surfaces
@dataclass
class Surface:
    """Heightfield + material maps of one presentation on the texel grid (flattened float32 arrays).

    Attributes:
        h: height towards the camera (m); gx, gy: its gradient; inv_norm: 1/sqrt(1+gx²+gy²).
        albedo: (N, 3) visible linear albedo (or emitted radiance where ``emissive`` > 0).
        rho: NIR reflectance ρ; spec: specular strength (NIR and RGB); spec_exp: lobe exponent.
        holes: depth-hole propensity (0..1); alpha: 1 where the surface exists.
        emissive: None or (N,) 1 on screen pixels (emit, are not lit).
        h_max: max height (front of the bounding slab).
    """

    h: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    inv_norm: np.ndarray
    albedo: np.ndarray
    rho: np.ndarray
    spec: np.ndarray
    spec_exp: float
    holes: np.ndarray
    alpha: np.ndarray
    emissive: np.ndarray | None
    h_max: float
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 of the non-empty region (m)


_GRID_CACHE: dict[str, np.ndarray] = {}


def _grid() -> tuple[np.ndarray, np.ndarray]:
    if "x" not in _GRID_CACHE:
        x = (GRID_X0 + (np.arange(GRID_NX) + 0.5) * GRID_STEP_M).astype(np.float32)
        y = (GRID_Y0 + (np.arange(GRID_NY) + 0.5) * GRID_STEP_M).astype(np.float32)
        _GRID_CACHE["x"], _GRID_CACHE["y"] = np.meshgrid(x, y)
    return _GRID_CACHE["x"], _GRID_CACHE["y"]


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) * 0.5)


def _smoothstep(e0: float, e1: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def box_blur(img: np.ndarray, r: int, passes: int = 2) -> np.ndarray:
    """Separable box blur of radius ``r`` px (``passes`` times ≈ Gaussian σ ≈ r·sqrt(passes/3)), edge-clamped.

    Works on the last two axes of ``img`` (float32 out).
    """
    if r <= 0:
        return np.asarray(img, np.float32)
    out = np.asarray(img, np.float32)
    k = 2 * r + 1
    for _ in range(passes):
        for axis in (-2, -1):
            pad = [(0, 0)] * out.ndim
            pad[axis] = (r + 1, r)
            c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float32)
            n = out.shape[axis]
            hi = [slice(None)] * out.ndim
            lo = [slice(None)] * out.ndim
            hi[axis] = slice(k, k + n)
            lo[axis] = slice(0, n)
            out = (c[tuple(hi)] - c[tuple(lo)]) * np.float32(1.0 / k)
    return out


def _noise_field(rng: np.random.Generator, r: int) -> np.ndarray:
    f = rng.standard_normal((GRID_NY, GRID_NX), dtype=np.float32)
    f = box_blur(f, r) if r > 0 else f
    return f / (f.std() + 1e-6)


@dataclass
class _FaceMaps:
    h: np.ndarray
    albedo: np.ndarray  # (3, ny, nx)
    rho: np.ndarray
    spec: np.ndarray
    holes: np.ndarray
    head: np.ndarray  # head ellipse + neck (alpha)
    face: np.ndarray  # inner face region (mask area)
    eyes: np.ndarray  # eye openings
    hair: np.ndarray


_FACE_CACHE: "collections.OrderedDict[tuple, _FaceMaps]" = collections.OrderedDict()
_FACE_CACHE_SIZE = 4
_FACE_LOCK = threading.Lock()


def _face_maps(s: Subject, *, texture: bool = True, relief: float = 1.0) -> _FaceMaps:
    """Face heightfield and materials of subject ``s`` on the texel grid (cached, treat as read-only)."""
    key = (s, texture, relief)
    with _FACE_LOCK:
        if key in _FACE_CACHE:
            _FACE_CACHE.move_to_end(key)
            return _FACE_CACHE[key]
    fm = _build_face_maps(s, texture=texture, relief=relief)
    with _FACE_LOCK:
        _FACE_CACHE[key] = fm
        while len(_FACE_CACHE) > _FACE_CACHE_SIZE:
            _FACE_CACHE.popitem(last=False)
    return fm


def _build_face_maps(s: Subject, *, texture: bool = True, relief: float = 1.0) -> _FaceMaps:
    """Face heightfield and materials of subject ``s`` on the texel grid (2-D arrays)."""
    x0, y0 = _grid()
    k = s.scale
    x = x0 / (k * s.width)
    y = y0 / k
    # head: ellipsoid cap, flattened at the front
    a, b, yc, depth = 0.079, 0.118, -0.012, 0.088
    u2 = (x / a) ** 2 + ((y - yc) / b) ** 2
    head = (u2 < 1.0).astype(np.float32)
    h = depth * np.sqrt(np.clip(1.0 - u2, 0.0, None)) ** 0.8
    ey = -0.026 + s.eye_y
    my = 0.047 + s.mouth_y
    feat = np.zeros_like(h)
    # nose ridge rising from between the eyes to the tip, alae, tip
    ramp = _smoothstep(ey - 0.008, 0.016, y) * (1.0 / (1.0 + np.exp((y - 0.024) / 0.0025)))
    feat += 0.021 * s.nose * ramp * np.exp(-0.5 * (x / (0.0085 * s.nose_width)) ** 2)
    feat += 0.005 * s.nose * _gauss(x, y, 0.0, 0.017, 0.008, 0.007)
    for sx in (-1, 1):
        feat += 0.006 * _gauss(x, y, sx * 0.0145 * s.nose_width, 0.021, 0.006, 0.005)
        feat -= 0.013 * s.eye_depth * _gauss(x, y, sx * 0.032, ey, 0.015, 0.0095)
        feat += 0.004 * s.brow * _gauss(x, y, sx * 0.03, ey - 0.019, 0.02, 0.0055)
        feat += 0.006 * s.cheek * _gauss(x, y, sx * 0.04, 0.014, 0.02, 0.016)
        feat -= 0.004 * _gauss(x, y, sx * 0.062, -0.035, 0.01, 0.02)  # temples
    feat += 0.0045 * s.lips * _gauss(x, y, 0.0, my - 0.004, 0.016, 0.0045)
    feat += 0.0045 * s.lips * _gauss(x, y, 0.0, my + 0.007, 0.014, 0.005)
    feat -= 0.002 * _gauss(x, y, 0.0, my + 0.0015, 0.02, 0.0015)
    feat += 0.006 * s.chin * _gauss(x, y, 0.0, 0.085, 0.016, 0.011)
    feat -= 0.003 * _gauss(x, y, 0.0, 0.068, 0.014, 0.005)
    face_region = _smoothstep(1.0, 0.55, u2)
    h = h + feat * face_region
    # neck below the chin (recessed), part of the person
    neck = ((np.abs(x) < 0.052) & (y > 0.06)).astype(np.float32)
    neck_h = 0.03 * np.ones_like(h)
    h = np.where((head < 1) & (neck > 0), neck_h, h)
    alpha = np.maximum(head, neck)
    h = h * alpha
    if relief != 1.0:
        h = H_REF_FACE_M + (h - H_REF_FACE_M) * relief
        h = h * alpha
    # --- materials
    skin = np.asarray(s.skin_rgb, np.float32)[:, None, None] * np.ones((3,) + h.shape, np.float32)
    rho = np.full(h.shape, s.skin_rho, np.float32)
    spec = np.full(h.shape, 0.03, np.float32)
    holes = np.zeros(h.shape, np.float32)
    if texture:
        rng = np.random.default_rng([s.seed & 0xFFFFFFFF, 7003, s.subject_id & 0xFFFFFFFF])
        blot = _noise_field(rng, 14)
        pores = _noise_field(rng, 1)
        skin = skin * (1.0 + 0.06 * blot + 0.035 * pores)[None]
        rho = rho * (1.0 + 0.03 * blot + 0.02 * pores)
    # cheeks slightly red
    for sx in (-1, 1):
        c = _gauss(x, y, sx * 0.042, 0.018, 0.016, 0.013)
        skin = skin * (1.0 + c * np.array([0.08, -0.04, -0.04], np.float32)[:, None, None])
    # lips
    lip = np.clip(_gauss(x, y, 0.0, my + 0.001, 0.017, 0.0065) * 1.6 - 0.3, 0, 1)
    lip_col = np.asarray(s.skin_rgb, np.float32)[:, None, None] * np.array([0.8, 0.48, 0.5], np.float32)[:, None, None]
    skin = skin * (1 - lip) + lip_col * lip
    mouth_line = _gauss(x, y, 0.0, my + 0.0015, 0.016, 0.0012)
    skin = skin * (1 - 0.75 * mouth_line)[None]
    # nostrils
    for sx in (-1, 1):
        nos = _gauss(x, y, sx * 0.0085, 0.0245, 0.0033, 0.0022)
        skin = skin * (1 - 0.8 * nos)[None]
        rho = rho * (1 - 0.6 * nos)
    # eyebrows: arcs above the eyes
    hair_rgb = np.asarray(s.hair_rgb, np.float32)[:, None, None]
    brow_mask = np.zeros(h.shape, np.float32)
    for sx in (-1, 1):
        xb = x - sx * 0.031
        arc = ey - 0.0165 - 0.0055 * (1 - (xb / 0.022) ** 2)
        bm = np.exp(-0.5 * ((y - arc) / 0.0028) ** 2) * _smoothstep(0.026, 0.018, np.abs(xb))
        brow_mask = np.maximum(brow_mask, bm)
    brow_mask = np.clip(brow_mask * 1.3, 0, 1)
    skin = skin * (1 - 0.85 * brow_mask) + hair_rgb * 0.85 * brow_mask
    rho = rho * (1 - 0.35 * brow_mask)
    holes = np.maximum(holes, 0.05 * brow_mask)
    # eyes: almond opening with sclera, iris, pupil, eyelid line
    eyes = np.zeros(h.shape, np.float32)
    for sx in (-1, 1):
        xe = (x - sx * 0.032) / 0.0135
        ye = (y - ey) / 0.0055
        op = ye ** 2 + xe ** 2 < 1.0
        almond = (np.abs(ye) < np.clip(1 - xe ** 2, 0, None) ** 0.9) & (np.abs(xe) < 1)
        e = almond.astype(np.float32)
        eyes = np.maximum(eyes, e)
        d2 = ((x - sx * 0.032) ** 2 + (y - ey) ** 2)
        iris = (d2 < 0.0056 ** 2) & almond
        pupil = (d2 < 0.0024 ** 2) & almond
        sclera = np.asarray((0.62, 0.58, 0.55), np.float32)[:, None, None]
        iris_c = np.asarray(s.iris_rgb, np.float32)[:, None, None]
        skin = np.where(almond[None], sclera, skin)
        skin = np.where(iris[None], iris_c, skin)
        skin = np.where(pupil[None], np.float32(0.01), skin)
        rho = np.where(almond, 0.5, rho)
        rho = np.where(iris, 0.38, rho)
        rho = np.where(pupil, 0.04, rho)
        spec = np.where(almond, 0.9, spec)  # cornea: glint
        holes = np.maximum(holes, 0.3 * e)
        lid = np.exp(-0.5 * ((ye + (1 - xe ** 2).clip(0) ** 0.9) / 0.35) ** 2) * (np.abs(xe) < 1.15)
        skin = skin * (1 - 0.7 * lid)[None]
        del op
    eyes = eyes.astype(np.float32)
    # hair: top of the head and sides above the ears
    hl = -0.072 + s.hairline_y
    hair = head * np.clip(_smoothstep(hl + 0.006, hl - 0.004, y + 0.01 * (x / 0.07) ** 2) +
                          _smoothstep(0.063, 0.071, np.abs(x)) * _smoothstep(0.03, 0.0, y), 0, 1)
    skin = skin * (1 - hair)[None] + hair_rgb * hair[None]
    rho = rho * (1 - hair) + s.hair_rho * hair
    spec = spec * (1 - hair) + 0.05 * hair
    holes = np.maximum(holes, 0.35 * hair)
    # cavity shading (ambient occlusion from the relief) baked into the visible albedo
    cav = box_blur(h, 12) - h
    skin = skin * np.clip(1.0 - 6.0 * np.clip(cav, 0, None), 0.55, 1.0)[None]
    face = (u2 < 0.72).astype(np.float32) * (1 - hair)
    return _FaceMaps(h.astype(np.float32), skin.astype(np.float32), rho.astype(np.float32), spec.astype(np.float32),
                     holes.astype(np.float32), alpha.astype(np.float32), face.astype(np.float32), eyes, hair)


def _photo(fm: _FaceMaps, background: tuple[float, float, float] = (0.55, 0.6, 0.65)) -> np.ndarray:
    """A frontal photograph of a face (texture space, linear RGB): albedo × baked frontal shading + backdrop."""
    gy, gx = np.gradient(fm.h, GRID_STEP_M)
    n = 1.0 / np.sqrt(1 + gx * gx + gy * gy)
    l = np.array([0.25, -0.45, -0.86])
    l = l / np.linalg.norm(l)
    cos = np.clip(-(gx * l[0] + gy * l[1] + l[2]) * n, 0, 1)
    img = fm.albedo * (0.45 + 0.75 * cos)[None]
    bg = np.asarray(background, np.float32)[:, None, None]
    return (img * fm.head[None] + bg * (1 - fm.head[None])).astype(np.float32), cos.astype(np.float32)


def _resample(img: np.ndarray, scale: float, fill: float | np.ndarray = 0.0) -> np.ndarray:
    """Scale a texture about the grid centre by ``scale`` (nearest), filling outside with ``fill``."""
    if scale == 1.0:
        return img
    ny, nx = img.shape[-2:]
    cy, cx = ny / 2, nx / 2
    iy = np.round((np.arange(ny) + 0.5 - cy) / scale + cy - 0.5).astype(int)
    ix = np.round((np.arange(nx) + 0.5 - cx) / scale + cx - 0.5).astype(int)
    vy = (iy >= 0) & (iy < ny)
    vx = (ix >= 0) & (ix < nx)
    out = img[..., np.clip(iy, 0, ny - 1)[:, None], np.clip(ix, 0, nx - 1)[None, :]]
    valid = vy[:, None] & vx[None, :]
    if np.ndim(fill) == 0:
        return np.where(valid, out, np.float32(fill)).astype(np.float32)
    return np.where(valid, out, fill).astype(np.float32)


def _with_skin(s: Subject, pr) -> Subject:
    """``s`` with the presentation's continuous skin (``params`` from ``scene.continuous_skin``), if any."""
    if "skin_rho" not in pr:
        return s
    return dataclasses.replace(s, skin_rgb=(float(pr["skin_r"]), float(pr["skin_g"]), float(pr["skin_b"])),
                               skin_rho=float(pr["skin_rho"]))


def build_surface(p: Presentation) -> Surface:
    """Heightfield and materials of presentation ``p`` (cache it: it depends on ``p`` only, not on the frame)."""
    x, y = _grid()
    sp = p.species
    pr = p.params
    subj = make_subject(p.subject, p.seed)
    if sp == "bonafide":
        subj = _with_skin(subj, pr)
    emissive = None
    spec_exp = 40.0
    if sp == "bonafide":
        fm = _face_maps(subj)
        h, alb, rho, spec, holes, alpha = fm.h, fm.albedo, box_blur(fm.rho, 3), fm.spec, fm.holes, fm.head
    else:
        vic = _with_skin(make_subject(int(p.victim if p.victim is not None else p.subject + 100000), p.seed), pr)
        vm = _face_maps(vic)
        photo, shade = _photo(vm)
        if sp.startswith("print") or sp == "replay":
            scale = float(pr.get("scale", 1.0))
            photo = _resample(photo, scale, fill=np.float32(0.6))
            shade = _resample(shade, scale, fill=np.float32(0.8))
            face_rho = _resample(vm.rho, scale, fill=np.float32(0.5))
            if sp == "replay":
                w, hh, bez = 0.085 * scale / 0.85 + 0.012, 0.12 * scale / 0.85 + 0.012, 0.009
            else:
                w, hh, bez = 0.105, 0.1485, 0.0  # A4 sheet, life-size face
            alpha = ((np.abs(x) < w) & (np.abs(y - 0.005) < hh)).astype(np.float32)
            bend = float(pr.get("bend_m", 0.0))
            if bend > 0:  # cylindrical bend about the vertical axis: edges curve away from the camera
                h = (np.sqrt(np.clip(bend ** 2 - x ** 2, 0, None)) - bend) * alpha
            else:
                h = np.zeros_like(x)
            h = h.astype(np.float32)
            if sp == "replay":
                glass = ((np.abs(x) < w - bez) & (np.abs(y - 0.005) < hh - bez)).astype(np.float32)
                img = photo ** float(pr.get("gamma", 1.0)) * float(pr.get("brightness", 1.0))
                bezel = np.asarray((0.03, 0.03, 0.035), np.float32)[:, None, None]
                alb = img * glass[None] + bezel * (1 - glass[None])
                emissive = glass.reshape(-1)
                rho = 0.02 * glass + 0.08 * (1 - glass)  # LCD/OLED: almost no NIR
                spec = 0.55 * glass + 0.05 * (1 - glass)  # glass glint
                spec_exp = 2000.0  # mirror-like glass: a small glint of the emitter
                holes = 0.55 * glass + 0.05 * (1 - glass)
            else:
                c = float(pr.get("contrast", 0.8))
                img = 0.08 + c * photo
                mean = img.mean(axis=0, keepdims=True)
                img = mean + (img - mean) * (0.7 if sp != "print_glossy" else 0.95)  # gamut loss
                amp = float(pr.get("halftone_amp", 0.0))
                if amp > 0:
                    per = float(pr.get("halftone_mm", 0.6)) * 1e-3
                    ht = 0.5 + 0.5 * np.cos(2 * np.pi * (x + y) / (per * 1.41)) * np.cos(2 * np.pi * (x - y) / (per * 1.41))
                    img = img * (1 - amp * ht)[None]
                paper = np.full((3,) + x.shape, 0.85, np.float32)
                inner = ((np.abs(x) < 0.098) & (np.abs(y - 0.005) < 0.1415)).astype(np.float32)  # white margin
                alb = img * inner[None] + paper * (1 - inner[None])
                if sp == "print_glossy":
                    # glossy large-format print: NIR mimics skin (ρ like skin × printed shading), specular coat
                    rho = box_blur(face_rho * (0.55 + 0.6 * shade), 3) * inner + 0.8 * (1 - inner)
                    spec = np.full_like(x, 0.12)
                    spec_exp = 60.0
                else:
                    prho = float(pr.get("paper_rho", 0.8))
                    grey = img.mean(axis=0)
                    if pr.get("ink_carbon", 0.0) > 0.5:
                        rho = prho * np.clip(grey / max(float(grey.max()), 1e-3), 0.1, 1.0)  # toner absorbs NIR
                    else:
                        rho = prho - 0.12 * (1 - grey)  # dye inks nearly transparent in NIR
                    rho = rho * inner + prho * (1 - inner)
                    spec = np.full_like(x, 0.02)
                holes = np.full_like(x, 0.01)
            rho = (rho * alpha).astype(np.float32)
        else:
            wm = _face_maps(subj)  # the wearer's head under the mask
            if sp == "flexiblemask":
                h_mask = box_blur(wm.h, 4) + 0.003
                alb_mask = vm.albedo.copy()
                smooth = box_blur(alb_mask, 3)
                alb_mask = 0.6 * smooth + 0.4 * alb_mask  # less pore detail
                alb_mask = alb_mask * np.array([1.03, 0.98, 0.97], np.float32)[:, None, None]
                rho_mask = box_blur(np.full_like(x, float(pr.get("silicone_rho", 0.72))) * (vm.rho / vic.skin_rho), 3)
                spec_mask = np.full_like(x, 0.06)
                region = np.clip(wm.head - wm.hair, 0, 1) * (y < 0.1)
            else:
                gm = _face_maps(GENERIC_FACE, texture=False,
                                relief=float(pr.get("relief", 0.35)) if sp == "papermask" else 1.0)
                h_mask = gm.h + (0.004 if sp == "papermask" else 0.008)
                if sp == "papermask":
                    c = float(pr.get("contrast", 0.75))
                    alb_mask = 0.08 + c * photo
                    rho_mask = np.full_like(x, float(pr.get("paper_rho", 0.8))) - 0.1 * (1 - photo.mean(axis=0))
                    spec_mask = np.full_like(x, 0.02)
                else:
                    paint = np.asarray(vic.skin_rgb, np.float32)[:, None, None] * float(pr.get("paint", 1.0))
                    alb_mask = paint * (0.85 + 0.15 * photo / np.maximum(photo.mean(), 1e-3))
                    alb_mask = 0.7 * alb_mask + 0.3 * photo
                    rho_mask = np.full_like(x, float(pr.get("plastic_rho", 0.28)))
                    spec_mask = np.full_like(x, float(pr.get("gloss", 0.3)))
                region = gm.face * (np.abs(x) < 0.07) * (y > -0.085) * (y < 0.098)
            region = (region > 0.5).astype(np.float32)
            eye_holes = np.clip(box_blur(wm.eyes, 3) * 2.0, 0, 1) > 0.5  # real eyes visible
            region = np.where(eye_holes, 0.0, region).astype(np.float32)
            h = np.where(region > 0, np.maximum(h_mask, wm.h), wm.h).astype(np.float32)
            alb = np.where(region[None] > 0, alb_mask, wm.albedo)
            rho = np.where(region > 0, rho_mask, box_blur(wm.rho, 3))
            spec = np.where(region > 0, spec_mask, wm.spec)
            holes = np.where(region > 0, 0.01, wm.holes)
            alpha = wm.head
            if sp == "rigidmask":
                spec_exp = 30.0
    gy, gx = np.gradient(h.astype(np.float32), GRID_STEP_M)
    gx = np.clip(gx, -4, 4).astype(np.float32)
    gy = np.clip(gy, -4, 4).astype(np.float32)
    inv_norm = (1.0 / np.sqrt(1.0 + gx * gx + gy * gy)).astype(np.float32)
    nz = np.nonzero(alpha > 0.5)
    ext = (float(x[0, nz[1].min()]), float(x[0, nz[1].max()]), float(y[nz[0].min(), 0]), float(y[nz[0].max(), 0]))
    return Surface(h=h.reshape(-1).astype(np.float32), gx=gx.reshape(-1), gy=gy.reshape(-1),
                   inv_norm=inv_norm.reshape(-1), albedo=np.ascontiguousarray(np.clip(alb, 0, 1).reshape(3, -1).T, dtype=np.float32),
                   rho=np.asarray(rho, np.float32).reshape(-1), spec=np.asarray(spec, np.float32).reshape(-1),
                   spec_exp=spec_exp, holes=np.asarray(holes, np.float32).reshape(-1),
                   alpha=np.asarray(alpha, np.float32).reshape(-1), emissive=emissive, h_max=float(h.max()) + 1e-3,
                   extent=ext)

