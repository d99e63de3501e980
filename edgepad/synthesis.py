"""Synthetic RGB / depth / near-IR scenes: faces and presentation attacks rendered through a calibrated rig.

numpy only. Every presentation (a bona fide face or a presentation-attack instrument, PAI) is a *surface*: a
heightfield ``h(x, y)`` (metres, towards the camera) over an object-local grid plus material maps on the same grid
(visible albedo, NIR reflectance ρ, specular strength, depth-hole propensity, opacity). Each camera of the rig
ray-casts that heightfield per pixel (a few conservative Newton steps from the front of the bounding slab), so the
RGB image and the depth / IR images (which share the left-IR camera, as on a RealSense D4xx) come from the same
geometry seen from two real viewpoints with lens distortion. The physics and every parameter are documented in
``docs/SYNTHETIC.md``; the PAI × modality cues follow EVALUATION.md §7.

Conventions: object frame x right, y down, z away from the camera (as the camera frame for a frontal pose);
the surface is ``z_obj = -h(x, y)``; the object origin lies ``h_ref`` behind the face surface (cheek plane), so a
presentation at ``distance_m`` has its face surface at that depth. Pixel (0, 0) is the centre of the top-left pixel.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edgepad.errors import ConfigError
from edgepad.geometry import Extrinsics, Intrinsics, Rig, pixel_rays, project
from edgepad.types import Modality

#: bump when rendering changes in a way that changes the pixels for a given seed
GENERATOR_VERSION = "1.0.0"

SPECIES = ("bonafide", "print_flat", "print_bent", "print_glossy", "replay", "papermask", "rigidmask",
           "flexiblemask")
ATTACK_SPECIES = SPECIES[1:]
#: attack family as in WMCA protocol strings (``attack/<family>/<species>``)
FAMILY = {"print_flat": "2D", "print_bent": "2D", "print_glossy": "2D", "replay": "2D", "papermask": "3D",
          "rigidmask": "3D", "flexiblemask": "3D"}

#: skin tones: (group, visible linear albedo RGB, NIR ρ at 850 nm). ρ_NIR correlates only weakly with the
#: visible albedo (EVALUATION.md §7.2); all skin ρ lie in [0.42, 0.60], silicone in [0.66, 0.80].
SKIN_TONES = (
    ("light", (0.62, 0.45, 0.36), 0.57),
    ("light", (0.56, 0.40, 0.31), 0.55),
    ("medium", (0.47, 0.32, 0.22), 0.53),
    ("medium", (0.40, 0.26, 0.17), 0.51),
    ("dark", (0.27, 0.17, 0.11), 0.48),
    ("dark", (0.19, 0.12, 0.08), 0.45),
)

# object-local texel grid shared by all surfaces (metres)
GRID_STEP_M = 0.0006
GRID_X0, GRID_X1 = -0.12, 0.12
GRID_Y0, GRID_Y1 = -0.165, 0.165
GRID_NX = int(round((GRID_X1 - GRID_X0) / GRID_STEP_M))
GRID_NY = int(round((GRID_Y1 - GRID_Y0) / GRID_STEP_M))
#: face region (object coords, m) whose projection is the ground-truth face box: brows to chin, temple to temple
FACE_BOX_POINTS = ((-0.068, -0.062), (0.068, -0.062), (-0.07, 0.02), (0.07, 0.02), (0.0, 0.09), (-0.05, 0.075),
                   (0.05, 0.075), (0.0, -0.07))
H_REF_FACE_M = 0.075  # cheek-plane height of a face surface above its object origin


# ----------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class SensorModel:
    """Sensor physics (EVALUATION.md §7.2).

    Attributes:
        depth_noise_c: σ_z = c·z² (1/m); stereo c = σ_disparity / (f·b) (0.08 px / (385 px · 0.05 m) ≈ 0.0042).
        depth_hole_base: probability of an invalid depth pixel anywhere.
        depth_hole_dark: extra invalid probability on pixels with a weak emitter return (scaled by darkness).
        depth_hole_material: multiplier of the material hole-propensity map (hair, eyes, glass).
        depth_edge_m: a jump larger than this between neighbours invalidates both pixels (depth edges).
        depth_min_m, depth_max_m: valid range; outside → 0.
        nir_power: emitter power P (DN·m² per unit ρ at cos θ = 1).
        nir_gain: gain g of the IR sensor.
        nir_read_noise: read noise σ (DN); nir_shot: shot-noise factor (σ² = nir_shot·I).
        rgb_noise: read noise σ of the RGB sensor (linear units, 1 = white); rgb_shot: shot-noise factor.
    """

    depth_noise_c: float = 0.0042
    depth_hole_base: float = 0.004
    depth_hole_dark: float = 0.6
    depth_hole_material: float = 1.0
    depth_edge_m: float = 0.02
    depth_min_m: float = 0.2
    depth_max_m: float = 4.0
    nir_power: float = 42.0
    nir_gain: float = 1.0
    nir_read_noise: float = 1.5
    nir_shot: float = 0.35
    rgb_noise: float = 0.008
    rgb_shot: float = 0.0015


@dataclass(frozen=True)
class SceneConfig:
    """Distribution of presentations (poses, lighting) and the sensor model.

    Attributes:
        distance_m: (min, max) distance of the face surface from the RGB camera (m), uniform.
        yaw_sd_deg, pitch_sd_deg, roll_sd_deg: pose spread (normal); yaw/pitch clipped to ±``pose_max_deg``.
        offset_m: max lateral/vertical offset of the face from the optical axis at 0.6 m (scales with distance).
        color_temp_k: (min, max) illuminant colour temperature (K) of the visible light.
        awb: white-balance strength of the RGB camera (0 = none, 1 = perfect grey world on the illuminant).
        ambient, directional: visible ambient / directional light levels (ranges).
        nir_ambient: ambient NIR irradiance A (DN per unit ρ; sunlight ≫ indoor), range.
        emitter_scale: multiplier of ``sensor.nir_power`` (range), e.g. a weaker emitter.
        sway: per-frame micro-motion (1 = nominal).
        sensor: the :class:`SensorModel`.
    """

    distance_m: tuple[float, float] = (0.35, 0.9)
    yaw_sd_deg: float = 10.0
    pitch_sd_deg: float = 7.0
    roll_sd_deg: float = 4.0
    pose_max_deg: float = 30.0
    offset_m: float = 0.04
    color_temp_k: tuple[float, float] = (4000.0, 6500.0)
    awb: float = 0.7
    ambient: tuple[float, float] = (0.25, 0.45)
    directional: tuple[float, float] = (0.45, 0.8)
    nir_ambient: tuple[float, float] = (0.5, 4.0)
    emitter_scale: tuple[float, float] = (0.9, 1.1)
    sway: float = 1.0
    sensor: SensorModel = field(default_factory=SensorModel)


#: named domains: the nominal scene and the cross-domain shifts of EVALUATION.md §7.3
DOMAINS: dict[str, SceneConfig] = {
    "nominal": SceneConfig(distance_m=(0.3, 1.2)),
    "demo": SceneConfig(),
    "x_sensor": SceneConfig(distance_m=(0.3, 1.2), sensor=SensorModel(
        depth_noise_c=0.0084, depth_hole_base=0.02, depth_hole_dark=0.9, depth_hole_material=1.8,
        depth_edge_m=0.012, nir_gain=1.5, nir_read_noise=2.5)),
    "x_illuminant": SceneConfig(distance_m=(0.3, 1.2), color_temp_k=(2900.0, 3100.0), awb=0.3,
                                nir_ambient=(25.0, 45.0), emitter_scale=(0.5, 0.65)),
    "x_range_train": SceneConfig(distance_m=(0.3, 0.8)),
    "x_range_eval": SceneConfig(distance_m=(0.8, 1.2)),
}


def domain_config(name: str) -> SceneConfig:
    """The :class:`SceneConfig` of a named domain (``nominal``, ``demo``, ``x_sensor``, ``x_illuminant``, ...)."""
    if name not in DOMAINS:
        from edgepad.config import suggest
        raise ConfigError(f"unknown synthetic domain {name!r}; known: {sorted(DOMAINS)}", key="domain",
                          suggestions=suggest(name, DOMAINS))
    return DOMAINS[name]


def default_rig(width: int = 640, height: int = 480) -> Rig:
    """A calibrated RealSense-D435-like rig: colour camera + left-IR camera (shared by depth and IR).

    Colour: 640×480, f ≈ 615 px, Brown–Conrady distortion (small, non-zero). IR/depth: 640×480, f = 410 px, no
    distortion (rectified), 15 mm baseline to the colour camera and a 0.4° rotation. ``width``/``height`` rescale
    both cameras (aspect kept), e.g. 160×120 for fast tests.
    """
    if width <= 0 or height <= 0 or abs(width / height - 4 / 3) > 0.01:
        raise ConfigError(f"synthetic rig: width/height must be positive with aspect 4:3, got {width}x{height}",
                          key="width")
    s = width / 640.0
    rgb = Intrinsics(640, 480, 615.3, 615.9, 321.7, 238.4, "brown_conrady", (0.045, -0.11, 0.0009, -0.0006, 0.05))
    ir = Intrinsics(640, 480, 410.2, 410.2, 318.9, 241.2, "none", ())
    if s != 1.0:
        rgb, ir = rgb.scaled(s), ir.scaled(s)
    ang = math.radians(0.4)
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    r = _axis_angle(axis, ang)
    ir_to_rgb = Extrinsics.from_rt(r, np.array([-0.0150, 0.0002, 0.0004]))  # rgb sits 15 mm right of left-IR
    return Rig(Modality.RGB, {Modality.RGB: rgb, Modality.DEPTH: ir, Modality.IR: ir},
               {Modality.RGB: Extrinsics.identity(), Modality.DEPTH: ir_to_rgb, Modality.IR: ir_to_rgb},
               0.001, {"tool": f"edgepad.synthesis {GENERATOR_VERSION}", "model": "synthetic D435-like"})


# ----------------------------------------------------------------------------------------------- subjects
@dataclass(frozen=True)
class Subject:
    """Identity: face shape, skin and hair (all derived from ``(seed, subject_id)``)."""

    subject_id: int
    seed: int
    group: str
    skin_rgb: tuple[float, float, float]
    skin_rho: float
    hair_rgb: tuple[float, float, float]
    hair_rho: float
    iris_rgb: tuple[float, float, float]
    scale: float
    width: float
    nose: float
    nose_width: float
    eye_depth: float
    brow: float
    cheek: float
    chin: float
    lips: float
    eye_y: float
    mouth_y: float
    hairline_y: float


def make_subject(subject_id: int, seed: int = 0, tone: int | None = None) -> Subject:
    """Sample subject ``subject_id`` of population ``seed`` (deterministic). ``tone`` indexes :data:`SKIN_TONES`."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7001, int(subject_id)])
    t = int(rng.integers(len(SKIN_TONES))) if tone is None else int(tone) % len(SKIN_TONES)
    group, rgb, rho = SKIN_TONES[t]
    jitter = rng.uniform(0.93, 1.07, 3)
    hair_base = [(0.03, 0.025, 0.02), (0.09, 0.06, 0.035), (0.2, 0.14, 0.07), (0.05, 0.04, 0.035)]
    hair = hair_base[int(rng.integers(len(hair_base)))] if t < 3 else hair_base[int(rng.integers(2)) * 3]
    iris = [(0.06, 0.035, 0.02), (0.1, 0.07, 0.04), (0.07, 0.09, 0.11)][int(rng.integers(3))] if t < 2 else \
        (0.05, 0.03, 0.02)
    return Subject(
        subject_id=int(subject_id), seed=int(seed), group=group,
        skin_rgb=tuple(float(c) for c in np.clip(np.asarray(rgb) * jitter, 0.03, 0.9)),
        skin_rho=float(np.clip(rho + rng.normal(0, 0.012), 0.42, 0.60)),
        hair_rgb=tuple(float(c) for c in hair), hair_rho=float(rng.uniform(0.22, 0.38)),
        iris_rgb=tuple(float(c) for c in iris),
        scale=float(rng.uniform(0.93, 1.07)), width=float(rng.uniform(0.94, 1.06)),
        nose=float(rng.uniform(0.75, 1.3)), nose_width=float(rng.uniform(0.85, 1.2)),
        eye_depth=float(rng.uniform(0.7, 1.3)), brow=float(rng.uniform(0.6, 1.4)),
        cheek=float(rng.uniform(0.6, 1.4)), chin=float(rng.uniform(0.6, 1.4)), lips=float(rng.uniform(0.7, 1.3)),
        eye_y=float(rng.uniform(-0.004, 0.004)), mouth_y=float(rng.uniform(-0.004, 0.005)),
        hairline_y=float(rng.uniform(-0.012, 0.008)),
    )


#: a fixed "average" shape used by generic (paper, rigid) masks
GENERIC_FACE = Subject(subject_id=-1, seed=0, group="generic", skin_rgb=(0.5, 0.36, 0.27), skin_rho=0.5,
                       hair_rgb=(0.05, 0.04, 0.03), hair_rho=0.3, iris_rgb=(0.06, 0.04, 0.02), scale=1.0,
                       width=1.0, nose=0.9, nose_width=1.0, eye_depth=0.9, brow=1.0, cheek=1.0, chin=1.0,
                       lips=1.0, eye_y=0.0, mouth_y=0.0, hairline_y=0.0)


# ----------------------------------------------------------------------------------------------- presentations
@dataclass(frozen=True)
class Presentation:
    """Ground truth of one presentation (one frame of it when returned by ``truth``/``render_frames``).

    Attributes:
        index: presentation number in its sequence/benchmark.
        species: one of :data:`SPECIES`.
        is_bonafide: species == "bonafide".
        face_box_rgb: (x, y, w, h) rgb pixels of the (displayed / mask) face, or None when out of view.
        distance_m: distance of the face surface (cheek plane) from the RGB camera along its optical axis.
        yaw_deg, pitch_deg, roll_deg: head (or PAI) pose; yaw > 0 turns to the camera's right.
        subject: the person in front of the camera (presenter / wearer).
        group: skin-tone group of ``subject``.
        victim: the identity shown by the PAI (None for bona fide).
        family: "2D" / "3D" / None.
        frame: frame number inside the presentation (0 for the base pose).
        offset_m: (x, y) lateral offset of the face centre at ``distance_m`` (m).
        lighting: visible/NIR lighting parameters of this presentation.
        params: species parameters (ink, bend, screen, ...).
        domain: the named domain (``DOMAINS``) it was sampled from.
    """

    index: int
    species: str
    is_bonafide: bool
    face_box_rgb: tuple[int, int, int, int] | None
    distance_m: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float = 0.0
    subject: int = 0
    group: str = ""
    victim: int | None = None
    family: str | None = None
    frame: int = 0
    offset_m: tuple[float, float] = (0.0, 0.0)
    lighting: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, float] = field(default_factory=dict)
    domain: str = "nominal"
    seed: int = 0


def sample_presentation(index: int, species: str, subject: int, *, victim: int | None = None, seed: int = 0,
                        config: SceneConfig | None = None, domain: str = "nominal") -> Presentation:
    """Sample pose, lighting and PAI parameters of presentation ``index`` (deterministic in its arguments).

    Args:
        index: presentation number (part of the random stream).
        species: one of :data:`SPECIES`.
        subject: presenter / wearer id (population ``seed``).
        victim: identity shown by the PAI (default: another id derived from ``subject``); ignored for bona fide.
        seed: population / scene seed.
        config: the scene distribution (default: ``DOMAINS[domain]``).
        domain: name recorded in the truth; also selects ``config`` when that is None.
    """
    if species not in SPECIES:
        from edgepad.config import suggest
        raise ConfigError(f"unknown species {species!r}; known: {list(SPECIES)}", key="species",
                          suggestions=suggest(species, SPECIES))
    cfg = domain_config(domain) if config is None else config
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7002, int(index), SPECIES.index(species)])
    dist = float(rng.uniform(*cfg.distance_m))
    lim = cfg.pose_max_deg
    yaw = float(np.clip(rng.normal(0, cfg.yaw_sd_deg), -lim, lim))
    pitch = float(np.clip(rng.normal(0, cfg.pitch_sd_deg), -lim, lim))
    roll = float(np.clip(rng.normal(0, cfg.roll_sd_deg), -15, 15))
    off = cfg.offset_m * dist / 0.6
    offset = (float(rng.uniform(-off, off)), float(rng.uniform(-off, off) * 0.7))
    az = rng.uniform(-0.6, 0.6)
    el = rng.uniform(0.2, 0.7)
    light_dir = np.array([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)])
    lighting = {
        "color_temp_k": float(rng.uniform(*cfg.color_temp_k)), "awb": float(cfg.awb),
        "ambient": float(rng.uniform(*cfg.ambient)), "directional": float(rng.uniform(*cfg.directional)),
        "light_x": float(light_dir[0]), "light_y": float(light_dir[1]), "light_z": float(light_dir[2]),
        "exposure": float(rng.uniform(0.85, 1.15)), "nir_ambient": float(rng.uniform(*cfg.nir_ambient)),
        "emitter": float(rng.uniform(*cfg.emitter_scale)),
        "wall_m": float(rng.uniform(max(1.6, dist + 0.6), max(3.0, dist + 1.2))),
        "wall_tone": float(rng.uniform(0.25, 0.7)), "wall_rho": float(rng.uniform(0.3, 0.7)),
        "sway_phase": float(rng.uniform(0, 2 * math.pi)), "sway": float(cfg.sway),
    }
    params: dict[str, float] = {}
    if species.startswith("print"):
        params["ink_carbon"] = float(rng.random() < 0.5)  # laser toner keeps NIR texture, dye inks fade
        params["halftone_mm"] = float(rng.uniform(0.45, 0.9))
        params["halftone_amp"] = float(rng.uniform(0.08, 0.2)) if species != "print_glossy" else 0.0
        params["contrast"] = float(rng.uniform(0.6, 0.85)) if species != "print_glossy" else 0.97
        params["scale"] = float(rng.uniform(0.9, 1.1))
        params["bend_m"] = float(rng.uniform(0.09, 0.2)) if species == "print_bent" else 0.0
        params["paper_rho"] = float(rng.uniform(0.75, 0.88))
    elif species == "replay":
        params["scale"] = float(rng.uniform(0.75, 0.95))
        params["brightness"] = float(rng.uniform(0.7, 1.1))
        params["gamma"] = float(rng.uniform(0.8, 1.25))
        params["moire_px"] = float(rng.uniform(5.0, 14.0))
        params["moire_angle"] = float(rng.uniform(0, math.pi))
        params["moire_amp"] = float(rng.uniform(0.06, 0.14))
        params["glare"] = float(rng.uniform(0.2, 0.6))
    elif species == "papermask":
        params["relief"] = float(rng.uniform(0.25, 0.45))
        params["paper_rho"] = float(rng.uniform(0.75, 0.88))
        params["contrast"] = float(rng.uniform(0.65, 0.85))
    elif species == "rigidmask":
        params["plastic_rho"] = float(rng.uniform(0.22, 0.34))
        params["gloss"] = float(rng.uniform(0.15, 0.4))
        params["paint"] = float(rng.uniform(0.85, 1.15))
    elif species == "flexiblemask":
        params["silicone_rho"] = float(rng.uniform(0.66, 0.8))
    if species == "bonafide":
        vic = None
    else:
        vic = int(victim) if victim is not None else int(subject) + 100000
    subj = make_subject(subject, seed)
    p = Presentation(index=int(index), species=species, is_bonafide=species == "bonafide", face_box_rgb=None,
                     distance_m=dist, yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll, subject=int(subject),
                     group=subj.group, victim=vic, family=FAMILY.get(species), frame=0, offset_m=offset,
                     lighting=lighting, params=params, domain=domain, seed=int(seed))
    return p


@dataclass(frozen=True)
class Pose:
    """Object pose in the RGB camera: ``p_rgb = r @ p_obj + t``; ``h_ref`` = surface height of ``distance_m``."""

    r: np.ndarray
    t: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    distance_m: float


def frame_pose(p: Presentation, frame: int = 0) -> Pose:
    """Pose of frame ``frame`` of presentation ``p``: the base pose plus a smooth sway (hand tremor for PAIs)."""
    lt = p.lighting
    amp = float(lt.get("sway", 1.0)) * (1.6 if p.family == "2D" else 1.0)
    ph = float(lt.get("sway_phase", 0.0))
    tt = frame / 30.0
    yaw = p.yaw_deg + amp * 1.5 * math.sin(2 * math.pi * 0.4 * tt + ph)
    pitch = p.pitch_deg + amp * 1.0 * math.sin(2 * math.pi * 0.3 * tt + 1.3 * ph)
    roll = p.roll_deg + amp * 0.6 * math.sin(2 * math.pi * 0.5 * tt + 0.7 * ph)
    dz = amp * 0.004 * math.sin(2 * math.pi * 0.25 * tt + 2.1 * ph)
    dx = amp * 0.003 * math.sin(2 * math.pi * 0.35 * tt + 0.4 * ph)
    r = _euler(yaw, pitch, roll)
    h_ref = H_REF_FACE_M if _has_face_relief(p.species) else 0.0
    dist = p.distance_m + dz
    # the face centre (object origin + h_ref in front) sits at (offset, dist); the origin is h_ref behind it
    centre = np.array([p.offset_m[0] + dx, p.offset_m[1], dist])
    t = centre - r @ np.array([0.0, 0.0, -h_ref])
    return Pose(r, t, yaw, pitch, roll, dist)


def _has_face_relief(species: str) -> bool:
    return species in ("bonafide", "papermask", "rigidmask", "flexiblemask")


def _euler(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


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


def build_surface(p: Presentation) -> Surface:
    """Heightfield and materials of presentation ``p`` (cache it: it depends on ``p`` only, not on the frame)."""
    x, y = _grid()
    subj = make_subject(p.subject, p.seed)
    sp = p.species
    pr = p.params
    emissive = None
    spec_exp = 40.0
    if sp == "bonafide":
        fm = _face_maps(subj)
        h, alb, rho, spec, holes, alpha = fm.h, fm.albedo, box_blur(fm.rho, 3), fm.spec, fm.holes, fm.head
    else:
        vic = make_subject(int(p.victim if p.victim is not None else p.subject + 100000), p.seed)
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


def _face_box(p: Presentation, surface: Surface, r: np.ndarray, t: np.ndarray, intr: Intrinsics):
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
                  iterations: int = 5) -> RenderedFrames:
    """Render the RGB, depth and IR images of frame ``frame`` of presentation ``p`` through ``rig``.

    Args:
        p: the presentation (from :func:`sample_presentation`).
        rig: the camera rig (default :func:`default_rig`); depth and IR share one camera.
        frame: frame number inside the presentation (pose sway).
        seed: noise seed (with ``p.index`` and ``frame``).
        sensor: sensor model (default: that of ``p.domain``).
        cache: a :class:`RenderCache` for this rig (built when None; reuse it for speed).
        iterations: ray-cast Newton steps.

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
    box = _face_box(p, surface, pose.r, pose.t, intr)
    truth = dataclasses.replace(p, face_box_rgb=box, distance_m=pose.distance_m, yaw_deg=pose.yaw_deg,
                                pitch_deg=pose.pitch_deg, roll_deg=pose.roll_deg, frame=int(frame))
    return RenderedFrames(rgb_u8, depth_u16, ir_u8, truth, z_true, mask_rgb, mask_ir)
