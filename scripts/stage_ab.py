"""Per-stage A/B in one process: the sensor checks (sync stage) and ``crop_face`` (preprocess stage), or with
``--stage locate`` the learned face locator, of another tree against this one, interleaved frame by frame, on
frame sets of ``synthetic://default`` through the pipeline.

    git worktree add --detach /tmp/s6pipe_before ed569da
    python scripts/stage_ab.py --before /tmp/s6pipe_before --frames 120 --passes 3
    python scripts/stage_ab.py --before /tmp/s7before --stage locate --frames 300 --passes 3

The other tree's ``edgepad/runtime/sensors.py`` and ``edgepad/preprocess.py`` are loaded from their files (they
import only foundation modules, which did not change); this tree's ``crop_face`` gets the runtime's compiled IR
sampler as the pipeline passes it. BLAS 1 thread and the heap settings as in the pipeline. Prints medians (ms) and
after/before ratios, and whether every crop is identical; then the IR crop's sampling alone (bilinear + box mean on
each crop's float32 map): the other tree's numpy, this tree's numpy and the compiled sampler.

``--stage locate``: the other tree's ``edgepad/runtime/detector.py`` and ``face.py`` (its face.py bound to its
detector), each arm a default ``LearnedFaceLocator`` with its own tracking state (reset at each pass), on the same
frame sets in order; prints locate p50 / p90 (ms), their after/before ratios, each arm's searches, and how the two
arms' boxes agree (frames where only one found a face, median and minimum IoU of the two boxes, largest landmark
shift in px).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def locate_ab(before: Path, frames: int, passes: int) -> None:
    """``LearnedFaceLocator.locate`` of ``before``'s tree and of this one, interleaved per frame set."""
    import edgepad.runtime.detector as new_det
    import edgepad.runtime.face as new_face
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import open_pipeline
    old_det = _load(before / "edgepad" / "runtime" / "detector.py", "detector_before")
    sys.modules["edgepad.runtime.detector"] = old_det  # the old face.py imports the old detector
    try:
        old_face = _load(before / "edgepad" / "runtime" / "face.py", "face_before")
    finally:
        sys.modules["edgepad.runtime.detector"] = new_det
    with open_pipeline("synthetic://default", load_backend("edgepad/assets/default.onnx", "auto", threads=2)) as p:
        sets = [p.capture.read(2.0) for _ in range(frames)]
    arms = {"before": old_face.LearnedFaceLocator(), "after": new_face.LearnedFaceLocator()}
    t: dict[str, list[float]] = {k: [] for k in arms}
    found: dict[str, list] = {k: [] for k in arms}
    for rep in range(passes):
        for loc in arms.values():
            loc.reset()
        for i, fs in enumerate(sets):
            for name in (("before", "after") if (i + rep) % 2 == 0 else ("after", "before")):
                t0 = time.perf_counter_ns()
                d = arms[name].locate(fs)
                t[name].append((time.perf_counter_ns() - t0) / 1e6)
                if rep == 0:
                    found[name].append(d)
    print(f"{len(sets)} frame sets of synthetic://default, {passes} passes, interleaved; locate ms")
    for q in (50, 90):
        b, f = np.percentile(t["before"], q), np.percentile(t["after"], q)
        print(f"p{q}  before {b:.3f}  after {f:.3f}  after/before {f / b:.2f}")
    for name, loc in arms.items():
        print(f"{name} searches {loc.searches}")
    both = [(b, f) for b, f in zip(found["before"], found["after"]) if b is not None and f is not None]
    only = sum((b is None) != (f is None) for b, f in zip(found["before"], found["after"]))
    ious = [_iou(b.box, f.box) for b, f in both]
    lm = max((float(np.abs(b.landmarks - f.landmarks).max()) for b, f in both), default=0.0)
    print(f"faces: before {sum(d is not None for d in found['before'])}, after "
          f"{sum(d is not None for d in found['after'])}, one arm only {only}; IoU of the two boxes median "
          f"{np.median(ious) if ious else float('nan'):.3f} min {min(ious, default=float('nan')):.3f}; "
          f"largest landmark shift {lm:.1f} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--stage", choices=("preprocess", "locate"), default="preprocess",
                    help="preprocess: sync checks, crop_face and IR sampling (default); locate: the learned locator")
    a = ap.parse_args()
    if a.stage == "locate":
        locate_ab(a.before, a.frames, a.passes)
        return
    import edgepad.preprocess as new_pre
    import edgepad.runtime.sensors as new_sens
    from edgepad.blas import keep_freed_memory, set_blas_threads
    from edgepad.drivers.registration.native import ir_sampler
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import open_pipeline
    from edgepad.types import Modality
    old_pre = _load(a.before / "edgepad" / "preprocess.py", "preprocess_before")
    old_sens = _load(a.before / "edgepad" / "runtime" / "sensors.py", "sensors_before")
    sets, calls = [], []
    crop = new_pre.crop_face

    def spy(fs, box, rig, **kw):
        calls.append((fs, box, rig, {k: v for k, v in kw.items() if k != "sample"}))
        return crop(fs, box, rig, **kw)

    new_pre.crop_face = spy
    try:
        with open_pipeline("synthetic://default", load_backend("edgepad/assets/default.onnx", "auto", threads=2)) as p:
            for _ in range(a.frames):
                fs = p.capture.read(2.0)
                sets.append(fs)
                p.process(fs)
    finally:
        new_pre.crop_face = crop
    keep_freed_memory()
    set_blas_threads(1)
    sample = ir_sampler()
    arms = {"before": (old_sens.SensorMonitor(), lambda c: old_pre.crop_face(*c[:3], **c[3])),
            "after": (new_sens.SensorMonitor(), lambda c: new_pre.crop_face(*c[:3], **c[3], sample=sample))}
    t: dict[str, dict[str, list[float]]] = {k: {"sync": [], "crop": []} for k in arms}
    for rep in range(a.passes):
        for name in arms:  # fresh monitors per pass: the same history in both arms
            arms[name] = ((old_sens if name == "before" else new_sens).SensorMonitor(), arms[name][1])
        for i, fs in enumerate(sets):
            for name in (("before", "after") if (i + rep) % 2 == 0 else ("after", "before")):
                t0 = time.perf_counter_ns()
                arms[name][0].check(fs)
                t[name]["sync"].append((time.perf_counter_ns() - t0) / 1e6)
        for i, c in enumerate(calls):
            for name in (("before", "after") if (i + rep) % 2 == 0 else ("after", "before")):
                t0 = time.perf_counter_ns()
                arms[name][1](c)
                t[name]["crop"].append((time.perf_counter_ns() - t0) / 1e6)
    same = all(np.array_equal(arms["before"][1](c).crops[m], arms["after"][1](c).crops[m])
               for c in calls for m in arms["before"][1](c).crops)
    # the IR crop's sampling alone, on each crop's float32 map: before's numpy, this tree's numpy, compiled
    maps = []
    for fs, box, rig, kw in calls:
        x0, y0, side = new_pre.crop_window(box, kw.get("margin", 0.25))
        rgb, ir = fs.frames[Modality.RGB], fs.frames[Modality.IR]
        z = new_pre.crop_face(fs, box, rig, **kw).face_depth_m
        mx, my, k = new_pre._projected_map(rgb.intrinsics, ir.intrinsics, rig.extrinsics(Modality.RGB, Modality.IR),
                                           x0, y0, side, kw.get("size_px", 112), z)
        maps.append((ir.data, mx.astype(np.float32), my.astype(np.float32), k))
    samplers = {"before numpy": lambda m: old_pre._box_mean_u8(old_pre._bilinear(*m[:3]), m[3]),
                "after numpy": lambda m: new_pre._sample_box(*m)}
    if sample is not None:
        samplers["after compiled"] = lambda m: sample(*m)
    ts: dict[str, list[float]] = {k: [] for k in samplers}
    for rep in range(a.passes):
        for i, m in enumerate(maps):
            for name in list(samplers)[:: 1 if (i + rep) % 2 == 0 else -1]:
                t0 = time.perf_counter_ns()
                samplers[name](m)
                ts[name].append((time.perf_counter_ns() - t0) / 1e6)
    print(f"{len(sets)} frame sets, {len(calls)} crops, {a.passes} passes, interleaved; sampler: "
          f"{'compiled' if sample is not None else 'numpy'}")
    for stage, what in (("sync", "SensorMonitor.check"), ("crop", "crop_face")):
        b, f = np.median(t["before"][stage]), np.median(t["after"][stage])
        print(f"{what:20s} before {b:.3f} ms  after {f:.3f} ms  after/before {f / b:.2f}")
    print("crops identical:", same)
    b = np.median(ts["before numpy"])
    for name, f in samplers.items():
        ok = all(np.array_equal(f(m), samplers["before numpy"](m)) for m in maps)
        print(f"IR sampling {name:15s} {np.median(ts[name]):.3f} ms  after/before {np.median(ts[name]) / b:.2f}  "
              f"identical {ok}")


if __name__ == "__main__":
    main()
