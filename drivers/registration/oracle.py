"""The ``rs.align`` oracle: librealsense's own align on the same depth frame through a pyrealsense2 software
device (tests and ``edgepad bench`` compare against it), the side-by-side timing, and a D435-like test scene."""
from __future__ import annotations

import math
import time

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import SourceError
from edgepad.drivers.registration.corners import Arithmetic, Footprint, Method, Semantics
from edgepad.drivers.registration.registrar import Registrar
from edgepad.geometry import Extrinsics, Intrinsics
from edgepad.types import Frame, make_frame

pyrealsense2 = lazy("pyrealsense2", "realsense")


def align_with_librealsense(depth: Frame, color_intrinsics: Intrinsics, depth_to_color: Extrinsics) -> np.ndarray:
    """``rs.align(rs.stream.color)`` on the same depth frame, through a pyrealsense2 software device.

    Returns:
        The aligned depth ``uint16 color.height × color.width``. Needs pyrealsense2 (oracle for tests and benchmarks).
    """
    return _RsAligner(depth.intrinsics, color_intrinsics, depth_to_color, float(depth.depth_scale_m)).align(
        depth.data)


def to_rs_intrinsics(rs, intr: Intrinsics):
    """Our Intrinsics → ``rs.intrinsics``."""
    ri = rs.intrinsics()
    ri.width, ri.height = intr.width, intr.height
    ri.fx, ri.fy, ri.ppx, ri.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    ri.model = {"none": rs.distortion.none, "brown_conrady": rs.distortion.brown_conrady,
                "modified_brown_conrady": rs.distortion.modified_brown_conrady,
                "inverse_brown_conrady": rs.distortion.inverse_brown_conrady}[intr.distortion]
    ri.coeffs = [float(c) for c in intr.dist5]
    return ri


def to_rs_extrinsics(rs, ext: Extrinsics):
    """Our Extrinsics (row-major R) → ``rs.extrinsics`` (column-major R)."""
    re = rs.extrinsics()
    re.rotation = [float(v) for v in ext.r.flatten(order="F")]
    re.translation = [float(v) for v in ext.t]
    return re


class _RsAligner:
    """A pyrealsense2 software device with a depth and a colour stream, driving ``rs.align`` at sensor level."""

    def __init__(self, depth_intr: Intrinsics, color_intr: Intrinsics, depth_to_color: Extrinsics,
                 depth_scale_m: float) -> None:
        rs = self.rs = pyrealsense2()
        self.dev = rs.software_device()
        self.sensor = self.dev.add_sensor("Stereo Module")
        self.csensor = self.dev.add_sensor("RGB Camera")
        ds = rs.video_stream()
        ds.type, ds.index, ds.uid = rs.stream.depth, 0, 0
        ds.width, ds.height, ds.fps, ds.bpp = depth_intr.width, depth_intr.height, 30, 2
        ds.fmt, ds.intrinsics = rs.format.z16, to_rs_intrinsics(rs, depth_intr)
        cs = rs.video_stream()
        cs.type, cs.index, cs.uid = rs.stream.color, 0, 1
        cs.width, cs.height, cs.fps, cs.bpp = color_intr.width, color_intr.height, 30, 3
        cs.fmt, cs.intrinsics = rs.format.rgb8, to_rs_intrinsics(rs, color_intr)
        self.dprof = self.sensor.add_video_stream(ds, True).as_video_stream_profile()
        self.cprof = self.csensor.add_video_stream(cs, True).as_video_stream_profile()
        self.sensor.add_read_only_option(rs.option.depth_units, float(depth_scale_m))
        self.dprof.register_extrinsics_to(self.cprof, to_rs_extrinsics(rs, depth_to_color))
        for s in (self.sensor, self.csensor):
            s.set_metadata(rs.frame_metadata_value.actual_fps, 30000)
        self.sync = rs.syncer(100)
        self.sensor.open(self.dprof)
        self.csensor.open(self.cprof)
        self.sensor.start(self.sync)
        self.csensor.start(self.sync)
        self.rs_align = rs.align(rs.stream.color)
        self.color = np.zeros((color_intr.height, color_intr.width, 3), np.uint8)
        self.n = 0
        self.depth_intr, self.color_intr = depth_intr, color_intr

    def _push(self, data: np.ndarray) -> None:
        rs = self.rs
        self.n += 1
        ts = self.n * 1000.0 / 30
        for sensor, prof, arr, bpp in ((self.sensor, self.dprof, data, 2), (self.csensor, self.cprof, self.color, 3)):
            f = rs.software_video_frame()
            arr = np.ascontiguousarray(arr)
            f.pixels = arr
            f.bpp = bpp
            f.stride = arr.shape[1] * bpp
            f.timestamp = ts
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = self.n
            f.profile = prof
            sensor.on_video_frame(f)

    def frameset(self, data: np.ndarray):
        """Push one depth+colour pair and return the matched ``rs.composite_frame``."""
        self._push(data)
        for _ in range(4):
            fs = self.sync.try_wait_for_frames(2000)
            if fs[0] if isinstance(fs, tuple) else fs:
                fs = fs[1] if isinstance(fs, tuple) else fs
                if fs.size() == 2:
                    return fs
            self._push(data)
        raise SourceError("rs.syncer did not pair the software-device frames", "rs-software-device")

    def align(self, data: np.ndarray) -> np.ndarray:
        fs = self.frameset(data)
        out = self.rs_align.process(fs).get_depth_frame()
        return np.asanyarray(out.get_data()).copy()

    def close(self) -> None:
        for s in (self.sensor, self.csensor):
            try:
                s.stop()
                s.close()
            except Exception:  # best effort on teardown
                pass


# ----------------------------------------------------------------------------------------------- timing
def time_against_rs_align(depth: Frame | None = None, target: Intrinsics | None = None,
                          depth_to_target: Extrinsics | None = None, *, repeats: int = 30, warmup: int = 3,
                          with_librealsense: bool = True, threads: int = 1, arithmetic: Arithmetic = "fast",
                          semantics: Semantics = "align", footprint: Footprint = "rect",
                          method: Method = "auto") -> dict:
    """Time our registration and ``rs.align`` on the same frames, side by side, interleaved.

    Without arguments a 640x480 → 640x480 D435-like scene is used (the real recording's factory calibration,
    a slanted plane with an occluder and holes). ``semantics`` defaults to ``"align"``, the algorithm rs.align
    runs; ``"rsutil"`` (the runtime's default) differs only for lenses with Brown-Conrady coefficients, which
    rs.align ignores. ``footprint="sse"`` is the x86 build's (the pinned wheel's). Returns medians in ms and
    ``ratio = ours / rs.align``; with ``threads=1`` also the medians of this thread's CPU time and their
    ``cpu_ratio`` (rs.align processes in the calling thread), which a loaded machine disturbs far less.
    ``method`` as :class:`Registrar`'s; the row's ``method`` is the implementation that ran.
    """
    if depth is None:
        depth, target, depth_to_target = d435_like_scene()
    assert target is not None and depth_to_target is not None
    reg = Registrar(depth.intrinsics, target, depth_to_target, float(depth.depth_scale_m), method=method,
                    threads=threads, arithmetic=arithmetic, semantics=semantics, footprint=footprint)
    res: dict = {"width": depth.intrinsics.width, "height": depth.intrinsics.height, "threads": threads,
                 "method": reg.resolved_method(),
                 "arithmetic": arithmetic, "semantics": semantics, "footprint": footprint,
                 "target": f"{target.width}x{target.height}", "repeats": repeats}
    aligner = None
    if with_librealsense:
        aligner = _RsAligner(depth.intrinsics, target, depth_to_target, float(depth.depth_scale_m))
        res["librealsense"] = aligner.rs.__version__
    ours, theirs, agree = [], [], None
    ours_cpu, theirs_cpu = [], []
    clock, cpu = time.perf_counter_ns, time.thread_time_ns  # both run in this thread (threads=1)
    try:
        for i in range(warmup + repeats):
            c0, t0 = cpu(), clock()
            mine = reg.frame(depth)
            t1, c1 = clock(), cpu()
            if i >= warmup:
                ours.append((t1 - t0) / 1e6)
                ours_cpu.append((c1 - c0) / 1e6)
            if aligner is not None:
                fs = aligner.frameset(depth.data)
                c2, t2 = cpu(), clock()
                out = aligner.rs_align.process(fs).get_depth_frame()
                t3, c3 = clock(), cpu()
                if i >= warmup:
                    theirs.append((t3 - t2) / 1e6)
                    theirs_cpu.append((c3 - c2) / 1e6)
                if agree is None:
                    ref = np.asanyarray(out.get_data())
                    agree = float(np.mean(ref == mine.data))
    finally:
        if aligner is not None:
            aligner.close()
    res["ours_ms"] = float(np.median(ours))
    res["ours_min_ms"] = float(np.min(ours))
    if theirs:
        res["rs_align_ms"] = float(np.median(theirs))
        res["rs_align_min_ms"] = float(np.min(theirs))
        res["ratio"] = res["ours_ms"] / res["rs_align_ms"]
        res["ratio_min"] = res["ours_min_ms"] / res["rs_align_min_ms"]
        if threads == 1:  # CPU time of this thread: robust to time-slicing on a loaded machine
            res["ours_cpu_ms"] = float(np.median(ours_cpu))
            res["rs_align_cpu_ms"] = float(np.median(theirs_cpu))
            res["cpu_ratio"] = res["ours_cpu_ms"] / max(res["rs_align_cpu_ms"], 1e-6)
        res["identical_fraction"] = agree
    return res


def d435_like_scene(width: int = 640, height: int = 480, seed: int = 0) -> tuple[Frame, Intrinsics, Extrinsics]:
    """A depth frame of a slanted plane with a box occluder and holes, in a D435-like rig (real factory values)."""
    sx, sy = width / 640, height / 480
    dintr = Intrinsics(width, height, 390.431 * sx, 390.431 * sy, 331.388 * sx, 242.187 * sy, "brown_conrady",
                       (0, 0, 0, 0, 0))
    cintr = Intrinsics(width, height, 613.204 * sx, 613.419 * sy, 319.939 * sx, 239.183 * sy, "brown_conrady",
                       (0, 0, 0, 0, 0))
    ang = math.radians(0.9)
    r = np.array([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]])
    ext = Extrinsics.from_rt(r, (0.0143113, 0.000602306, 0.000610804))
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    z_mm = 800.0 + 0.6 * (u - width / 2) / sx + 0.3 * (v - height / 2) / sy
    box = (abs(u - width * 0.45) < width * 0.12) & (abs(v - height * 0.5) < height * 0.15)
    z_mm = np.where(box, 520.0, z_mm)
    z = np.round(z_mm).astype(np.uint16)
    z[rng.random(z.shape) < 0.05] = 0
    z[:, : width // 20] = 0
    return make_frame("depth", z, 0, intrinsics=dintr, depth_scale_m=0.001), cintr, ext



# ----------------------------------------------------------------------------------------------- case table
#: (depth, colour) sizes of the rs.align comparison table (D435/D415 stream configurations)
CASE_SIZES = ((640, 480, 640, 480), (848, 480, 640, 480), (1280, 720, 1280, 720), (640, 480, 1280, 720),
              (848, 480, 1280, 720), (1280, 720, 640, 480))
#: lens variants of the table: depth-camera model (colour none), or colour-camera coefficients ("color")
CASE_LENSES = ("none", "brown_conrady", "inverse_brown_conrady", "modified_brown_conrady", "color")
_DEPTH_F = {640: 390.431 / 640, 848: 421.5 / 848, 1280: 640.2 / 1280}  # fx / width (D435 depth, ~87° HFOV)
_COLOR_F = {640: 613.204 / 640, 1280: 919.8 / 1280}  # colour (~69° HFOV)
_LENS_COEFFS = {"brown_conrady": (0.061, -0.094, 0.0012, -0.0008, 0.021),
                "inverse_brown_conrady": (-0.052, 0.071, -0.0011, 0.0014, -0.018),
                "modified_brown_conrady": (0.043, -0.067, 0.0009, 0.0011, 0.012),
                "color": (0.152, -0.471, 0.0007, -0.0004, 0.431)}


def registration_cases(scale: float = 1.0, sizes=CASE_SIZES, lenses=CASE_LENSES) -> list[dict]:
    """The rs.align comparison table: every size pair × lens variant, a deterministic 0.3-2° rotation and
    15-50 mm baseline per case, and a scene (tilted plane, occluder, 5 % holes).

    ``scale`` shrinks every image (and focal length) for fast tests. Returns dicts with ``name, depth
    (Frame), target (Intrinsics), ext (Extrinsics), rotation_deg, baseline_mm``; the colour variant gives the
    colour camera modified Brown-Conrady coefficients (the one model rs.align applies to the target).
    """
    out = []
    for i, (dw, dh, cw, ch) in enumerate(sizes):
        for j, lens in enumerate(lenses):
            rng = np.random.default_rng(1000 + 10 * i + j)
            w, h, tw, th = (max(8, int(round(v * scale))) for v in (dw, dh, cw, ch))
            dfx, cfx = _DEPTH_F[dw] * w, _COLOR_F[cw] * tw
            dmodel = lens if lens != "color" else "none"
            cmodel = "modified_brown_conrady" if lens == "color" else "none"
            dintr = Intrinsics(w, h, dfx, dfx * 1.0004, w / 2 - 0.4 + rng.uniform(-2, 2) * scale,
                               h / 2 + 0.3 + rng.uniform(-2, 2) * scale, dmodel,
                               _LENS_COEFFS.get(dmodel, (0, 0, 0, 0, 0)))
            cintr = Intrinsics(tw, th, cfx, cfx * 1.0006, tw / 2 + 0.6 + rng.uniform(-3, 3) * scale,
                               th / 2 - 0.8 + rng.uniform(-3, 3) * scale, cmodel,
                               _LENS_COEFFS["color"] if lens == "color" else (0, 0, 0, 0, 0))
            ang = math.radians(rng.uniform(0.3, 2.0))
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            r = np.eye(3) + math.sin(ang) * kx + (1 - math.cos(ang)) * kx @ kx  # Rodrigues
            base = rng.uniform(0.015, 0.050)
            t = (base, rng.uniform(-0.6, 0.6) * 1e-3, rng.uniform(-0.8, 0.8) * 1e-3)
            ext = Extrinsics.from_rt(r, t)
            v, u = np.mgrid[0:h, 0:w]
            z_mm = (rng.uniform(600, 1400) + rng.uniform(-0.8, 0.8) * (u - w / 2) / (w / 640)
                    + rng.uniform(-0.5, 0.5) * (v - h / 2) / (h / 480))
            cx0, cy0 = rng.uniform(0.3, 0.6) * w, rng.uniform(0.35, 0.65) * h
            box = (abs(u - cx0) < w * 0.13) & (abs(v - cy0) < h * 0.17)
            z_mm = np.where(box, z_mm - rng.uniform(200, 400), z_mm)
            z = np.round(np.clip(z_mm, 250, 4000)).astype(np.uint16)
            z[rng.random(z.shape) < 0.05] = 0
            z[:, : max(1, w // 20)] = 0
            out.append({"name": f"{dw}x{dh}->{cw}x{ch}/{lens}", "lens": lens,
                        "depth": make_frame("depth", z, 0, intrinsics=dintr, depth_scale_m=0.001),
                        "target": cintr, "ext": ext, "rotation_deg": math.degrees(ang),
                        "baseline_mm": base * 1e3})
    return out


def time_registration_cases(cases: list[dict] | None = None, *, repeats: int = 15, warmup: int = 2,
                            footprints=("sse", "rect"), arithmetics=("fast", "exact"), threads: int = 1,
                            with_librealsense: bool = True, method: Method = "auto") -> list[dict]:
    """:func:`time_against_rs_align` (``semantics="align"``) on every case × footprint × arithmetic: one row per
    combination with ``ratio`` (ours / rs.align, medians) and ``identical_fraction``."""
    rows = []
    for case in registration_cases() if cases is None else cases:
        for fp in footprints:
            for ar in arithmetics:
                res = time_against_rs_align(case["depth"], case["target"], case["ext"], repeats=repeats,
                                            warmup=warmup, with_librealsense=with_librealsense, threads=threads,
                                            arithmetic=ar, semantics="align", footprint=fp, method=method)
                res.update(case=case["name"], footprint=fp)
                rows.append(res)
    return rows
