"""Tiny analytic scenes and rigs for runtime tests (made at test time; no files)."""
from __future__ import annotations

import numpy as np

from edgepad.geometry import Extrinsics, Intrinsics, Rig, pixel_rays
from edgepad.types import FrameSet, Modality, make_frame

W, H = 160, 120


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def make_rig(baseline_m: float = 0.05, yaw_deg: float = 1.5, distort: bool = True) -> Rig:
    """rgb + ir/depth rig: ir camera ``baseline_m`` to the left of rgb, slightly rotated, lens distortion."""
    coeffs = (0.08, -0.05, 0.001, -0.0005, 0.0) if distort else ()
    model = "brown_conrady" if distort else "none"
    rgb = Intrinsics(W, H, 150.0, 151.0, 79.0, 61.0, model, coeffs)
    ir = Intrinsics(W, H, 140.0, 140.0, 81.0, 58.5, model, tuple(0.5 * c for c in coeffs))
    ir_to_rgb = Extrinsics.from_rt(rot_y(yaw_deg), np.array([baseline_m, 0.002, 0.001]))
    return Rig(Modality.RGB, {Modality.RGB: rgb, Modality.IR: ir, Modality.DEPTH: ir},
               {Modality.IR: ir_to_rgb, Modality.DEPTH: ir_to_rgb}, depth_scale_m=0.001)


def texture(x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    return 128.0 + 90.0 * np.sin(2 * np.pi * x_m / 0.04) * np.cos(2 * np.pi * y_m / 0.05)


_CACHE: dict = {}


def render_plane(rig: Rig, cam: Modality, z_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture and depth (m, along the camera's own z) seen by ``cam`` of the plane ``z_rgb = z_m`` (cached)."""
    key = (id(rig), cam, z_m)
    if key not in _CACHE:
        _CACHE[key] = (rig, _render_plane(rig, cam, z_m))
    return _CACHE[key][1]


def _render_plane(rig: Rig, cam: Modality, z_m: float) -> tuple[np.ndarray, np.ndarray]:
    intr = rig.intrinsics[cam]
    ext = rig.to_reference[cam]  # cam -> rgb
    rx, ry = pixel_rays(intr)
    rays = np.stack([rx, ry, np.ones_like(rx)], axis=-1)
    rr = rays @ ext.r.T
    s = (z_m - ext.t[2]) / rr[..., 2]
    p = rr * s[..., None] + ext.t
    return texture(p[..., 0], p[..., 1]), s


def plane_frameset(rig: Rig, z_m: float = 0.5, t_ns: int = 1_000_000, seq: int = 0, with_depth: bool = True,
                   with_ir: bool = True, offset: float = 0.0, noise_seed: int | None = None,
                   depth_value: int | None = None) -> FrameSet:
    """rgb (grey texture), depth registered to rgb (constant z), ir (the same texture seen by the ir camera).

    ``offset`` is added to both textures (brightness); ``noise_seed`` adds ±2 levels of sensor noise;
    ``depth_value`` overrides the raw depth (e.g. 0 = all holes).
    """
    rng = np.random.default_rng(noise_seed) if noise_seed is not None else None
    noise = (lambda shape: rng.integers(-2, 3, shape)) if rng is not None else (lambda shape: 0)
    tex_rgb, _ = render_plane(rig, Modality.RGB, z_m)
    g = np.clip(np.rint(tex_rgb + offset + noise(tex_rgb.shape)), 0, 255).astype(np.uint8)
    frames = {Modality.RGB: make_frame("rgb", np.dstack([g, g, g]), t_ns, intrinsics=rig.intrinsics[Modality.RGB],
                                       sequence=seq, source="test://plane")}
    if with_depth:
        d = np.full((H, W), round(z_m / 0.001) if depth_value is None else depth_value, dtype=np.uint16)
        if rng is not None and depth_value is None:
            d = (d + noise(d.shape)).astype(np.uint16)
        frames[Modality.DEPTH] = make_frame("depth", d, t_ns, intrinsics=rig.intrinsics[Modality.RGB], sequence=seq,
                                            source="test://plane", depth_scale_m=0.001, registered_to=Modality.RGB)
    if with_ir:
        tex_ir, _ = render_plane(rig, Modality.IR, z_m)
        ir = np.clip(np.rint(tex_ir + offset + noise(tex_ir.shape)), 0, 255).astype(np.uint8)
        frames[Modality.IR] = make_frame("ir", ir, t_ns,
                                         intrinsics=rig.intrinsics[Modality.IR], sequence=seq, source="test://plane")
    return FrameSet(frames, t_ns, 0)
