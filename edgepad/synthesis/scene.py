"""Scene description of the synthetic renderer: species, sensor and scene models, the rig, subjects, presentations
and their per-frame pose (numpy only; the physics is in docs/SYNTHETIC.md).

Conventions: object frame x right, y down, z away from the camera; a presentation at ``distance_m`` has its face
surface (cheek plane) at that depth, the object origin ``H_REF_FACE_M`` behind it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edgepad.config import suggest
from edgepad.errors import ConfigError
from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.synthesis.physics import DR_PHYSICS, X_PHYSICS, SensorPhysics
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
#: visible albedo (docs/SYNTHETIC.md); all skin ρ lie in [0.42, 0.60], silicone in [0.66, 0.80].
SKIN_TONES = (
    ("light", (0.62, 0.45, 0.36), 0.57),
    ("light", (0.56, 0.40, 0.31), 0.55),
    ("medium", (0.47, 0.32, 0.22), 0.53),
    ("medium", (0.40, 0.26, 0.17), 0.51),
    ("dark", (0.27, 0.17, 0.11), 0.48),
    ("dark", (0.19, 0.12, 0.08), 0.45),
)

H_REF_FACE_M = 0.075  # cheek-plane height of a face surface above its object origin


# ----------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class SensorModel:
    """Sensor physics (docs/SYNTHETIC.md §2).

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
        physics: optional camera physics ranges (:class:`~edgepad.synthesis.physics.SensorPhysics`), drawn per
            presentation (domain randomisation); None = the nominal sensor only (renders unchanged).
        continuous_skin: draw the skin per presentation on a continuous tone scale with a NIR ρ only weakly tied
            to it (:func:`continuous_skin`) instead of the subject's tone group; False = the subject's skin.
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
    physics: SensorPhysics | None = None
    continuous_skin: bool = False


#: named domains: the nominal scene and the cross-domain shifts (docs/SYNTHETIC.md §4)
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
    # camera physics (docs/SYNTHETIC.md, "Camera physics"): randomised per presentation for training, and a reserved combination
    # outside those ranges for the X_physics cross-domain protocol
    "dr": SceneConfig(distance_m=(0.3, 1.2), color_temp_k=(2900.0, 6500.0), awb=0.5,
                      nir_ambient=(0.5, 20.0), emitter_scale=(0.7, 1.1), physics=DR_PHYSICS, continuous_skin=True),
    "x_phys": SceneConfig(distance_m=(0.3, 1.2), physics=X_PHYSICS),
}


def domain_config(name: str) -> SceneConfig:
    """The :class:`SceneConfig` of a named domain (``nominal``, ``demo``, ``x_sensor``, ``x_illuminant``, ...)."""
    if name not in DOMAINS:
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


_SKIN_LIGHT, _SKIN_DARK = np.log(SKIN_TONES[0][1]), np.log(SKIN_TONES[-1][1])


def continuous_skin(seed: int, index: int) -> dict[str, float]:
    """A skin drawn for presentation ``index``: tone t ~ U(0, 1) (0 = lightest, 1 = darkest of :data:`SKIN_TONES`),
    visible albedo log-interpolated between them, NIR ρ = 0.42 + 0.18·(0.25·(1 − t) + 0.75·u), u ~ U(0, 1): ρ in
    [0.42, 0.60] like every skin, correlated with the tone only weakly (r ≈ 0.3).

    Returns:
        ``{"skin_tone", "skin_r", "skin_g", "skin_b", "skin_rho"}`` (the presentation's ``params``).
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7201, int(index)])
    t, u = float(rng.random()), float(rng.random())
    rgb = np.exp((1 - t) * _SKIN_LIGHT + t * _SKIN_DARK)
    rho = 0.42 + 0.18 * (0.25 * (1 - t) + 0.75 * u)
    return {"skin_tone": t, "skin_r": float(rgb[0]), "skin_g": float(rgb[1]), "skin_b": float(rgb[2]),
            "skin_rho": float(rho)}


def skin_group(tone: float) -> str:
    """Tone group of a continuous tone (thirds: light, medium, dark)."""
    return "light" if tone < 1 / 3 else ("medium" if tone < 2 / 3 else "dark")


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
    group = subj.group
    if cfg.continuous_skin:            # own stream: the draws above are those of the nominal domains
        params.update(continuous_skin(seed, index))
        group = skin_group(params["skin_tone"])
    p = Presentation(index=int(index), species=species, is_bonafide=species == "bonafide", face_box_rgb=None,
                     distance_m=dist, yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll, subject=int(subject),
                     group=group, victim=vic, family=FAMILY.get(species), frame=0, offset_m=offset,
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

