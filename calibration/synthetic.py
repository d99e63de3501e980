"""Virtual cameras for calibration tests and demos: a board rendered into cameras with known K, distortion, R|t.

Rendering is exact ray casting: every camera pixel (2×2 supersampled) is undistorted to a ray, intersected with
the board plane and looked up in a high-resolution board texture, so the corners' true positions are the
projection of the board's object points through the same camera model (:func:`edgepad.geometry.project`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepad._optional import lazy
from edgepad.geometry import Extrinsics, Intrinsics

from edgepad.calibration.board import BoardSpec, render_board

cv2 = lazy("cv2")


@dataclass(frozen=True)
class Look:
    """Photometric look of a rendered camera: black/white levels, noise sigma and blur sigma (grey levels, px)."""

    black: float = 25.0
    white: float = 230.0
    background: float = 120.0
    noise_sigma: float = 1.0
    blur_sigma: float = 0.0


RGB_LOOK = Look()
#: a near-IR look: grey, low contrast, noisy, blurred
IR_LOOK = Look(black=70.0, white=150.0, background=95.0, noise_sigma=4.0, blur_sigma=1.0)


def pose_matrix(rx_deg: float, ry_deg: float, rz_deg: float, t_m: tuple[float, float, float]) -> Extrinsics:
    """Board -> camera pose from Euler angles (x, then y, then z; degrees) and a translation (m)."""
    ax, ay, az = np.radians([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return Extrinsics.from_rt(rz @ ry @ rx, np.asarray(t_m, dtype=float))


def board_centred_pose(spec: BoardSpec, rx_deg: float, ry_deg: float, rz_deg: float,
                       centre_m: tuple[float, float, float]) -> Extrinsics:
    """Board -> camera pose that puts the board's centre at ``centre_m`` (camera frame) with the given tilt."""
    w, h = spec.size_m
    rot = pose_matrix(rx_deg, ry_deg, rz_deg, (0, 0, 0)).r
    t = np.asarray(centre_m, float) - rot @ np.array([w / 2, h / 2, 0.0])
    return Extrinsics.from_rt(rot, t)


def _rays(intr: Intrinsics, ss: int) -> np.ndarray:
    off = (np.arange(ss) + 0.5) / ss - 0.5
    u = (np.arange(intr.width)[:, None] + off[None, :]).reshape(-1)
    v = (np.arange(intr.height)[:, None] + off[None, :]).reshape(-1)
    uu, vv = np.meshgrid(u, v)
    pts = np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2)
    if intr.has_distortion:
        und = cv2.undistortPointsIter(pts, intr.k, intr.dist5, None, None,
                                      (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12))
        xy = und.reshape(-1, 2)
    else:
        xy = np.stack([(pts[:, 0, 0] - intr.cx) / intr.fx, (pts[:, 0, 1] - intr.cy) / intr.fy], axis=1)
    return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1).reshape(intr.height * ss, intr.width * ss, 3)


class BoardCamera:
    """Renders one board into one virtual camera.

    Args:
        spec: the board.
        intrinsics: the camera (``brown_conrady`` distortion is rendered exactly).
        look: photometric look.
        supersample: rays per pixel side (anti-aliasing).
        texture_px_per_m: board texture resolution.
    """

    def __init__(self, spec: BoardSpec, intrinsics: Intrinsics, look: Look = RGB_LOOK, supersample: int = 2,
                 texture_px_per_m: float = 2500.0) -> None:
        self.spec = spec
        self.intrinsics = intrinsics
        self.look = look
        self.ss = supersample
        self.ppm = texture_px_per_m
        self.margin_m = 0.6 * spec.square_m
        fine = render_board(spec, 4 * texture_px_per_m, self.margin_m).astype(np.float32) / 255.0
        # area-averaged (anti-aliased) texture: bilinear look-ups then place edges with sub-texel accuracy
        h, w = fine.shape[0] // 4, fine.shape[1] // 4
        self.texture = cv2.resize(fine[:h * 4, :w * 4], (w, h), interpolation=cv2.INTER_AREA)
        self.rays = _rays(intrinsics, supersample)

    def render(self, board_to_camera: Extrinsics, rng: np.random.Generator | None = None) -> np.ndarray:
        """Grey uint8 ``H×W`` image of the board at ``board_to_camera`` (board frame: metres, z = 0 plane)."""
        r, t = board_to_camera.r, board_to_camera.t
        origin = -r.T @ t                      # camera centre in the board frame
        dirs = self.rays @ r                   # (R^T d) for every ray
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -origin[2] / dirs[..., 2]
        x = origin[0] + s * dirs[..., 0]
        y = origin[1] + s * dirs[..., 1]
        valid = s > 0
        mx = np.where(valid, (x + self.margin_m) * self.ppm - 0.5, -10).astype(np.float32)
        my = np.where(valid, (y + self.margin_m) * self.ppm - 0.5, -10).astype(np.float32)
        tex = cv2.remap(self.texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        lk = self.look
        img = np.where(tex < 0, lk.background / 255.0, tex)
        img = np.where(tex < 0, img, lk.black / 255.0 + img * (lk.white - lk.black) / 255.0)
        h, w = self.intrinsics.height, self.intrinsics.width
        img = img.reshape(h, self.ss, w, self.ss).mean(axis=(1, 3)) * 255.0
        if lk.blur_sigma > 0:
            img = cv2.GaussianBlur(img, (0, 0), lk.blur_sigma)
        if lk.noise_sigma > 0:
            rng = rng if rng is not None else np.random.default_rng(0)
            img = img + rng.normal(0.0, lk.noise_sigma, img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def default_poses(spec: BoardSpec, n: int = 12, distance_m: float = 0.55, seed: int = 0) -> list[tuple]:
    """``n`` varied board poses (rx, ry, rz degrees, centre xyz m): tilts up to ±35°, spread over the image."""
    rng = np.random.default_rng(seed)
    base = [(0, 0, 0), (30, 0, 0), (-30, 0, 0), (0, 30, 0), (0, -30, 0), (25, 25, 10), (-25, 25, -10),
            (25, -25, 5), (-25, -25, -5), (15, -30, 20), (-20, 15, -20), (35, 10, 0)]
    poses = []
    for i in range(n):
        rx, ry, rz = base[i % len(base)]
        cx = rng.uniform(-0.08, 0.08)
        cy = rng.uniform(-0.05, 0.05)
        cz = distance_m * rng.uniform(0.85, 1.2)
        poses.append((rx + rng.uniform(-4, 4), ry + rng.uniform(-4, 4), rz, (cx, cy, cz)))
    return poses


def render_depth_scene(intr: Intrinsics, plane_z_m: float = 0.8, slope: tuple[float, float] = (0.15, -0.1),
                       box: tuple[float, float, float, float, float] = (-0.06, -0.04, 0.08, 0.1, 0.55),
                       camera_from: Extrinsics | None = None, depth_scale_m: float = 0.001,
                       z_in_scene: bool = False) -> np.ndarray:
    """Depth image (uint16 raw, 0 = nothing) of a tilted back plane with a fronto-parallel box face in front.

    The scene is defined in a *scene* frame: plane ``z = plane_z + slope·(x, y)``; box face ``z = box[4]`` over
    ``x ∈ [box[0], box[0]+box[2]]``, ``y ∈ [box[1], box[1]+box[3]]``. ``camera_from`` maps camera points into the
    scene frame (identity: the camera is the scene frame). Rays are cast through the distorted camera model, so
    the output is the ground truth for that camera. With ``z_in_scene`` the value written is the hit point's z in
    the scene frame (what ``rs.align``-style registration writes: the depth camera's own z, moved to the pixel
    of another camera).
    """
    ext = camera_from if camera_from is not None else Extrinsics.identity()
    d = _rays(intr, 1).reshape(-1, 3) @ ext.r.T     # ray directions in the scene frame
    o = ext.t
    a, b = slope
    # plane: z - a x - b y = plane_z  ->  (o + s d)
    den = d[:, 2] - a * d[:, 0] - b * d[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_plane = (plane_z_m - (o[2] - a * o[0] - b * o[1])) / den
        s_box = (box[4] - o[2]) / d[:, 2]
    bx = o[0] + s_box * d[:, 0]
    by = o[1] + s_box * d[:, 1]
    in_box = (bx >= box[0]) & (bx <= box[0] + box[2]) & (by >= box[1]) & (by <= box[1] + box[3]) & (s_box > 0)
    s = np.where(in_box, np.minimum(s_box, np.where(s_plane > 0, s_plane, np.inf)), np.where(s_plane > 0, s_plane,
                                                                                               np.inf))
    # depth is z in the camera's own frame: s * ray_z with ray_z = 1 in the camera frame
    z = s if not z_in_scene else o[2] + s * d[:, 2]
    z = np.where(np.isfinite(s), z, 0.0)
    raw = np.rint(z / depth_scale_m)
    return np.clip(raw, 0, 65535).astype(np.uint16).reshape(intr.height, intr.width)
