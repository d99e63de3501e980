"""The one camera-geometry module: intrinsics, extrinsics, the rig file, projection and distortion.

Conventions (RealSense/OpenCV): pixel (0, 0) is the centre of the top-left pixel; x right, y down, z forward;
metres. Distortion coefficients are in OpenCV order ``k1, k2, p1, p2, k3``. ``p_dst = R @ p_src + t``.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import numpy as np

from edgepad.config import from_mapping, read_mapping, suggest, write_mapping
from edgepad.errors import ConfigError, ShapeError
from edgepad.types import Modality

DistortionModel = Literal["none", "brown_conrady", "inverse_brown_conrady", "modified_brown_conrady"]
DISTORTION_MODELS = ("none", "brown_conrady", "inverse_brown_conrady", "modified_brown_conrady")
RIG_SCHEMA_VERSION = 1
#: plausibility bounds of rig values (a rig outside them is a corrupt or mistyped file, not a camera)
PRINCIPAL_POINT_MARGIN = 0.25   # cx, cy within the image extended by this fraction of its size on each side
MAX_FOCAL_PER_PX = 50.0         # fx, fy ≤ this × max(width, height): a field of view above ~1°
MAX_COEFF = 100.0               # |k1 k2 p1 p2 k3|
MAX_BASELINE_M = 3.0            # |t| between two cameras of one terminal
MAX_DEPTH_SCALE_M = 1.0         # metres per raw depth unit (RealSense: 0.001 or 0.0001)


def _finite(*values: object) -> bool:
    """All values are real numbers (Python or numpy; not bool) and finite."""
    return all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)
               for v in values)


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """Pinhole camera with an optional RealSense-style distortion model.

    Attributes:
        width, height: image size (px).
        fx, fy: focal lengths (px); cx, cy: principal point (px).
        distortion: distortion model name (RealSense semantics).
        coeffs: ``k1, k2, p1, p2, k3`` (missing trailing values are 0).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: DistortionModel = "none"
    coeffs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (_finite(self.width, self.height) and self.width > 0 and self.height > 0):
            raise ConfigError(f"intrinsics: image size must be positive, got {self.width}x{self.height}",
                              key="width")
        f_max = MAX_FOCAL_PER_PX * max(self.width, self.height)
        if not (_finite(self.fx, self.fy) and 0 < self.fx <= f_max and 0 < self.fy <= f_max):
            raise ConfigError(f"intrinsics: focal lengths fx, fy must be finite, > 0 and <= {f_max:g} px, got "
                              f"{self.fx}, {self.fy}", key="fx")
        for key, c, size in (("cx", self.cx, self.width), ("cy", self.cy, self.height)):
            lo, hi = -PRINCIPAL_POINT_MARGIN * size, (1 + PRINCIPAL_POINT_MARGIN) * size
            if not (_finite(c) and lo <= c <= hi):
                raise ConfigError(f"intrinsics: {key} must be finite and within [{lo:g}, {hi:g}] px of a "
                                  f"{self.width}x{self.height} image, got {c}", key=key)
        if self.distortion not in DISTORTION_MODELS:
            raise ConfigError(f"intrinsics: unknown distortion {self.distortion!r}", key="distortion",
                              suggestions=[m for m in DISTORTION_MODELS if m[:3] == str(self.distortion)[:3]])
        if len(self.coeffs) > 5:
            raise ConfigError(f"intrinsics: at most 5 coefficients (k1 k2 p1 p2 k3), got {len(self.coeffs)}",
                              key="coeffs")
        if not all(_finite(c) and abs(c) <= MAX_COEFF for c in self.coeffs):
            raise ConfigError(f"intrinsics: distortion coeffs must be finite with |c| <= {MAX_COEFF:g}, got "
                              f"{list(self.coeffs)}", key="coeffs")
        object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))

    @property
    def k(self) -> np.ndarray:
        """3×3 camera matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def dist5(self) -> np.ndarray:
        """The 5 coefficients ``k1 k2 p1 p2 k3`` (zeros filled)."""
        d = np.zeros(5)
        d[: len(self.coeffs)] = self.coeffs
        return d

    @property
    def has_distortion(self) -> bool:
        return self.distortion != "none" and any(c != 0.0 for c in self.coeffs)

    def scaled(self, sx: float, sy: float | None = None) -> "Intrinsics":
        """Intrinsics of the image resized by ``sx``, ``sy`` (pixel-centre convention kept)."""
        sy = sx if sy is None else sy
        return Intrinsics(round(self.width * sx), round(self.height * sy), self.fx * sx, self.fy * sy,
                          (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.distortion, self.coeffs)

    @classmethod
    def from_mapping(cls, d: Mapping) -> "Intrinsics":
        return from_mapping(cls, d, where="intrinsics")


@dataclass(frozen=True, slots=True)
class Extrinsics:
    """Rigid transform ``p_dst = R @ p_src + t``.

    Attributes:
        rotation: R as 9 values, row-major.
        translation_m: t in metres.
    """

    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    translation_m: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.rotation) != 9 or len(self.translation_m) != 3:
            raise ConfigError("extrinsics: rotation needs 9 values (row-major) and translation_m 3", key="rotation")
        if not _finite(*self.rotation):
            raise ConfigError(f"extrinsics: rotation values must be finite numbers, got {list(self.rotation)}",
                              key="rotation")
        if not (_finite(*self.translation_m) and math.hypot(*self.translation_m) <= MAX_BASELINE_M):
            raise ConfigError(f"extrinsics: translation_m must be finite and within {MAX_BASELINE_M:g} m, got "
                              f"{list(self.translation_m)}", key="translation_m")
        r = np.asarray(self.rotation, dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(r)) or not np.allclose(r @ r.T, np.eye(3), atol=1e-5) or np.linalg.det(r) < 0:
            raise ConfigError("extrinsics: rotation is not a proper rotation matrix (R Rᵀ ≠ I or det < 0)",
                              key="rotation")
        object.__setattr__(self, "rotation", tuple(float(v) for v in self.rotation))
        object.__setattr__(self, "translation_m", tuple(float(v) for v in self.translation_m))

    @property
    def r(self) -> np.ndarray:
        """3×3 rotation (float64)."""
        return np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)

    @property
    def t(self) -> np.ndarray:
        """Translation (3,) in metres."""
        return np.asarray(self.translation_m, dtype=np.float64)

    @classmethod
    def from_rt(cls, r: np.ndarray, t: np.ndarray) -> "Extrinsics":
        """From a 3×3 rotation and a translation in metres (re-orthonormalised to float precision)."""
        u, _, vt = np.linalg.svd(np.asarray(r, dtype=np.float64).reshape(3, 3))
        r = u @ vt
        return cls(tuple(r.reshape(-1).tolist()), tuple(np.asarray(t, dtype=np.float64).reshape(3).tolist()))

    @classmethod
    def identity(cls) -> "Extrinsics":
        return cls()

    def inverse(self) -> "Extrinsics":
        """``p_src = Rᵀ (p_dst − t)``."""
        r = self.r
        return Extrinsics.from_rt(r.T, -r.T @ self.t)

    def then(self, other: "Extrinsics") -> "Extrinsics":
        """Compose: apply ``self`` first, then ``other``."""
        return Extrinsics.from_rt(other.r @ self.r, other.r @ self.t + other.t)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points ``(..., 3)`` (metres)."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.r.T + self.t

    @property
    def angle_deg(self) -> float:
        """Rotation angle of R in degrees."""
        c = (np.trace(self.r) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


@dataclass(frozen=True, slots=True)
class Rig:
    """The cameras of one terminal: intrinsics per modality and extrinsics to a reference camera.

    Depth shares the IR camera on a RealSense (depth is defined in the left-IR frame); a separate UVC IR camera
    has its own entry. Written by calibration, read by drivers and the runtime.

    Attributes:
        reference: the modality whose camera frame is the rig origin (usually rgb).
        intrinsics: per modality.
        to_reference: extrinsics modality -> reference (the reference maps to identity).
        depth_scale_m: metres per raw depth unit.
        provenance: free text: serials, rms, tool version, date.
    """

    reference: Modality
    intrinsics: Mapping[Modality, Intrinsics]
    to_reference: Mapping[Modality, Extrinsics]
    depth_scale_m: float | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    _ext_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        intr = {Modality.parse(k): v for k, v in self.intrinsics.items()}
        ext = {Modality.parse(k): v for k, v in self.to_reference.items()}
        ext.setdefault(Modality.parse(self.reference), Extrinsics.identity())
        object.__setattr__(self, "reference", Modality.parse(self.reference))
        object.__setattr__(self, "intrinsics", intr)
        object.__setattr__(self, "to_reference", ext)
        if self.reference not in intr:
            raise ConfigError(f"rig: reference camera {self.reference} has no intrinsics", key="reference")
        for m in intr:
            if m not in ext:
                raise ConfigError(f"rig: no extrinsics from {m} to the reference {self.reference}", key="to_reference")
        if Modality.DEPTH in intr and self.depth_scale_m is None:
            raise ConfigError("rig: depth_scale_m must be > 0 when the rig has a depth camera", key="depth_scale_m")
        if self.depth_scale_m is not None and not (
                _finite(self.depth_scale_m) and 0 < self.depth_scale_m <= MAX_DEPTH_SCALE_M):
            raise ConfigError(f"rig: depth_scale_m must be finite, > 0 and <= {MAX_DEPTH_SCALE_M:g} m per unit, got "
                              f"{self.depth_scale_m}", key="depth_scale_m")

    @property
    def modalities(self) -> frozenset[Modality]:
        return frozenset(self.intrinsics)

    def extrinsics(self, src: Modality | str, dst: Modality | str) -> Extrinsics:
        """Transform from camera ``src`` to camera ``dst``."""
        s, d = Modality.parse(src), Modality.parse(dst)
        for m in (s, d):
            if m not in self.to_reference:
                raise ConfigError(f"rig has no camera for {m}", key=str(m))
        cache = self._ext_cache  # the rig is immutable: compose each camera pair once
        if (s, d) not in cache:
            cache[(s, d)] = self.to_reference[s].then(self.to_reference[d].inverse())
        return cache[(s, d)]

    def to_dict(self) -> dict:
        return {
            "schema_version": RIG_SCHEMA_VERSION,
            "reference": self.reference.value,
            "depth_scale_m": self.depth_scale_m,
            "cameras": {
                m.value: {
                    "intrinsics": {"width": i.width, "height": i.height, "fx": i.fx, "fy": i.fy, "cx": i.cx,
                                   "cy": i.cy, "distortion": i.distortion, "coeffs": list(i.coeffs)},
                    "to_reference": {"rotation": list(self.to_reference[m].rotation),
                                     "translation_m": list(self.to_reference[m].translation_m)},
                }
                for m, i in self.intrinsics.items()
            },
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Rig":
        """Parse the rig-file mapping (see :meth:`to_dict`); raises ConfigError on any defect."""
        if not isinstance(d, Mapping):
            raise ConfigError("rig: expected a mapping", key="rig")
        known = {"schema_version", "reference", "depth_scale_m", "cameras", "provenance"}
        for k in d:
            if k not in known:
                raise ConfigError(f"rig: unknown key `{k}`", key=str(k), suggestions=suggest(str(k), known))
        if d.get("schema_version", RIG_SCHEMA_VERSION) != RIG_SCHEMA_VERSION:
            raise ConfigError(f"rig: unsupported schema_version {d.get('schema_version')}", key="schema_version")
        cams = d.get("cameras")
        if not isinstance(cams, Mapping) or not cams:
            raise ConfigError("rig: `cameras` must map modality names to camera entries", key="cameras")
        intr, ext = {}, {}
        for name, cam in cams.items():
            m = Modality.parse(name)
            if not isinstance(cam, Mapping) or "intrinsics" not in cam:
                raise ConfigError(f"rig: camera {name} needs `intrinsics`", key=f"cameras.{name}")
            for k in cam:
                if k not in ("intrinsics", "to_reference"):
                    raise ConfigError(f"rig: unknown key `cameras.{name}.{k}`", key=f"cameras.{name}.{k}",
                                      suggestions=suggest(str(k), ("intrinsics", "to_reference")))
            for part, kind, out in (("intrinsics", Intrinsics, intr), ("to_reference", Extrinsics, ext)):
                where = f"cameras.{name}.{part}"
                try:
                    out[m] = from_mapping(kind, cam.get(part, {}), where=where)
                except ConfigError as exc:  # a value rejected by the class: name the camera and the field
                    if exc.key and exc.key.startswith("cameras."):
                        raise
                    msg = str(exc).removeprefix("intrinsics: ").removeprefix("extrinsics: ")
                    raise ConfigError(f"rig: {where}: {msg}", key=f"{where}.{exc.key}" if exc.key else where,
                                      suggestions=exc.suggestions) from exc
        scale = d.get("depth_scale_m")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ConfigError("rig: depth_scale_m must be a number", key="depth_scale_m")
        prov = d.get("provenance", {}) or {}
        if not isinstance(prov, Mapping):
            raise ConfigError("rig: `provenance` must map names to values", key="provenance")
        return cls(Modality.parse(d.get("reference", "rgb")), intr, ext,
                   float(scale) if scale is not None else None, {str(k): str(v) for k, v in prov.items()})


def load_rig(path: Path | str) -> Rig:
    """Read a rig file (``.json``, ``.yaml``/``.yml``); raises ConfigError naming the defect."""
    return Rig.from_dict(read_mapping(path))


def save_rig(rig: Rig, path: Path | str) -> None:
    """Write a rig file (JSON or YAML by suffix, atomically)."""
    write_mapping(rig.to_dict(), path)


# ----------------------------------------------------------------------------------------------- projection
def _as_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ShapeError("points", "(..., 3)", p.shape)
    return p


def distort(x: np.ndarray, y: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Apply the forward distortion of ``intr`` to normalised coordinates (``rs2_project_point_to_pixel``).

    ``brown_conrady`` is OpenCV's model (tangential terms on the undistorted x, y; equals ``cv2.projectPoints``).
    ``modified_brown_conrady`` and ``inverse_brown_conrady`` use RealSense's modified form: r² of the undistorted
    point, tangential terms on the radially distorted x, y. ``none`` leaves points unchanged.
    Verified against pyrealsense2 2.59.1 (tests/drivers/test_geometry_rs.py).
    """
    if intr.distortion == "none" or not intr.has_distortion:
        return x, y
    k1, k2, p1, p2, k3 = intr.dist5
    r2 = x * x + y * y
    f = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    if intr.distortion in ("modified_brown_conrady", "inverse_brown_conrady"):
        x, y = x * f, y * f
        return x + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)
    return (x * f + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * f + 2 * p2 * x * y + p1 * (r2 + 2 * y * y))


def undistort(x: np.ndarray, y: np.ndarray, intr: Intrinsics, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Invert the distortion for ``deproject`` (``rs2_deproject_pixel_to_point``: 10 fixed-point iterations).

    ``brown_conrady`` inverts OpenCV's model (equals ``cv2.undistortPoints`` to ~1e-6); ``inverse_brown_conrady``
    inverts RealSense's modified form (the image is distorted forward by it); ``modified_brown_conrady`` and
    ``none`` leave points unchanged (RealSense cannot deproject a forward-distorted image).
    Note: ``rs.align`` instead undistorts ``inverse_brown_conrady`` depth pixels with a closed form (see
    ``edgepad.drivers.registration``).
    """
    if intr.distortion not in ("brown_conrady", "inverse_brown_conrady") or not intr.has_distortion:
        return x, y
    k1, k2, p1, p2, k3 = intr.dist5
    x0, y0 = x, y
    inverse = intr.distortion == "inverse_brown_conrady"
    for _ in range(iterations):
        r2 = x * x + y * y
        icdist = 1.0 / (1.0 + ((k3 * r2 + k2) * r2 + k1) * r2)
        xq, yq = (x / icdist, y / icdist) if inverse else (x, y)
        dx = 2 * p1 * xq * yq + p2 * (r2 + 2 * xq * xq)
        dy = 2 * p2 * xq * yq + p1 * (r2 + 2 * yq * yq)
        x = (x0 - dx) * icdist
        y = (y0 - dy) * icdist
    return x, y


def project(points: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Project camera-frame points ``(..., 3)`` in metres to pixels ``(..., 2)``; z ≤ 0 gives NaN."""
    p = _as_points(points)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(z > 0, p[..., 0] / z, np.nan)
        y = np.where(z > 0, p[..., 1] / z, np.nan)
    x, y = distort(x, y, intr)
    return np.stack([x * intr.fx + intr.cx, y * intr.fy + intr.cy], axis=-1)


def deproject(pixels: np.ndarray, depth_m: np.ndarray | float, intr: Intrinsics) -> np.ndarray:
    """Lift pixels ``(..., 2)`` with depth (m) to camera-frame points ``(..., 3)``."""
    px = np.asarray(pixels, dtype=np.float64)
    if px.shape[-1] != 2:
        raise ShapeError("pixels", "(..., 2)", px.shape)
    x = (px[..., 0] - intr.cx) / intr.fx
    y = (px[..., 1] - intr.cy) / intr.fy
    x, y = undistort(x, y, intr)
    z = np.asarray(depth_m, dtype=np.float64)
    return np.stack([x * z, y * z, np.broadcast_to(z, x.shape)], axis=-1)


def reproject(pixels: np.ndarray, depth_m: float, src_intr: Intrinsics, dst_intr: Intrinsics,
              src_to_dst: Extrinsics) -> np.ndarray:
    """Pixels ``(..., 2)`` of camera src lifted onto the fronto-parallel plane ``z_src = depth_m`` (m) and projected
    into camera dst: pixels ``(..., 2)`` (NaN where behind dst)."""
    return project(src_to_dst.apply(deproject(pixels, depth_m, src_intr)), dst_intr)


def project_box(box: tuple[int, int, int, int], depth_m: float, src_intr: Intrinsics, dst_intr: Intrinsics,
                src_to_dst: Extrinsics) -> tuple[int, int, int, int] | None:
    """A box ``(x, y, w, h)`` of camera src (pixels) in camera dst: its four corners lifted to ``depth_m`` (m),
    projected (:func:`reproject`), and their bounding box (floor/ceil) as ``(x, y, w, h)``; None if not finite."""
    x, y, w, h = (float(v) for v in box)
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64)
    px = reproject(corners, depth_m, src_intr, dst_intr, src_to_dst)
    if not np.all(np.isfinite(px)):
        return None
    x0, y0 = np.floor(px.min(axis=0)).astype(int)
    x1, y1 = np.ceil(px.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def pixel_rays(intr: Intrinsics, offset: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray coordinates ``(x/z, y/z)`` of every pixel (H×W each), shifted by ``offset`` px.

    Cache this per camera: deprojecting a depth image is then two multiplications.
    """
    u = np.arange(intr.width, dtype=np.float64) + offset[0]
    v = np.arange(intr.height, dtype=np.float64) + offset[1]
    uu, vv = np.meshgrid(u, v)
    return undistort((uu - intr.cx) / intr.fx, (vv - intr.cy) / intr.fy, intr)


def rig_summary(rig: Rig) -> str:
    """One line per camera: size, focal, distortion, baseline to the reference (for logs and reports)."""
    lines = []
    for m, i in rig.intrinsics.items():
        e = rig.to_reference[m]
        lines.append(f"{m.value}: {i.width}x{i.height} f=({i.fx:.1f},{i.fy:.1f}) c=({i.cx:.1f},{i.cy:.1f}) "
                     f"{i.distortion} |t|={np.linalg.norm(e.t) * 1000:.1f} mm rot={e.angle_deg:.2f}°")
    return "\n".join(lines)


def rig_json(rig: Rig) -> str:
    return json.dumps(rig.to_dict(), indent=2)
