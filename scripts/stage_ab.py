"""Per-stage A/B in one process: the sensor checks (sync stage) and ``crop_face`` (preprocess stage), or with
``--stage locate`` the learned face locator, of another tree against this one, interleaved frame by frame, on
frame sets of ``synthetic://default`` through the pipeline.

    git worktree add --detach /tmp/s6pipe_before ed569da
    python scripts/stage_ab.py --before /tmp/s6pipe_before --frames 120 --passes 3
    python scripts/stage_ab.py --before /tmp/s7before --stage locate --frames 300 --passes 3

The other tree's ``edgepad/runtime/sensors.py`` and ``edgepad/preprocess.py`` are loaded from their files (they
import only foundation modules, which did not change); this tree's ``crop_face`` gets the runtime's compiled
crops (``native.CropSampler``) as the pipeline passes them, the other tree's the same sampler where its
``preprocess`` has the ``Sampler`` protocol (session 7: its own lattice reprojection in numpy), else (session 6)
its ``box`` sampling.
BLAS 1 thread and the heap settings as in the pipeline. Prints medians (ms) and after/before ratios, and how many
crop values differ; then the IR and rgb crops alone, interleaved: the IR crop by the session-6 runtime path
(float64 map by BLAS products + the compiled ``box`` sampling), by numpy and by the compiled ``lattice``; the rgb
crop by the other tree's numpy and by the compiled ``resample``, each with its max |Δ| against numpy and the
number of values moved; with a session-7 tree as before, also its IR crop ("IR before (lattice)": numpy's
reprojection + the compiled ``lattice``), the base of this tree's.

``--stage locate``: the other tree's ``edgepad/runtime/detector.py`` and ``face.py`` (its face.py bound to its
detector), each arm a default ``LearnedFaceLocator`` with its own tracking state (reset at each pass), on the same
frame sets in order; prints locate p50 / p90 (ms), their after/before ratios, each arm's searches, and how the two
arms' boxes agree (frames where only one found a face, median and minimum IoU of the two boxes, largest landmark
shift in px).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Callable

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
    from edgepad.drivers.registration.native import crop_sampler
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
    sample = crop_sampler()
    # the other tree's runtime passed its compiled crops: the sampler itself where its preprocess has the Sampler
    # protocol (session 7: lattice + resample; its lattice reprojected by numpy), else (session 6) the compiled IR
    # sampling sample.box, the same C
    lattice_before = sample is not None and isinstance(getattr(old_pre, "Sampler", None), type)  # a Protocol class
    before_kw = ({"sample": sample} if lattice_before else
                 {"sample": sample.box} if sample is not None and hasattr(old_pre, "_sample_box") else {})
    arms = {"before": (old_sens.SensorMonitor(), lambda c: old_pre.crop_face(*c[:3], **c[3], **before_kw)),
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
    same, moved, total = True, 0, 0
    for c in calls:
        rb, ra = arms["before"][1](c).crops, arms["after"][1](c).crops
        for m in rb:
            d = np.abs(rb[m].astype(np.int16) - ra[m].astype(np.int16))
            same &= not d.any()
            moved, total = moved + int((d > 0).sum()), total + d.size
    # the crops alone, per crop as crop_face cuts it: IR (before: the float64 map by two BLAS products, then the
    # compiled sampling of session 6 = sample.box; after: sample.lattice) and rgb (before: the numpy matrices and
    # BLAS products; after: sample.resample)
    parts: dict[str, Callable] = {}
    args = []
    for fs, box, rig, kw in calls:
        s = kw.get("size_px", 112)
        x0, y0, side = new_pre.crop_window(box, kw.get("margin", 0.25))
        rgb, ir = fs.frames[Modality.RGB], fs.frames[Modality.IR]
        geo = (rgb.intrinsics, ir.intrinsics, rig.extrinsics(Modality.RGB, Modality.IR), x0, y0, side, s,
               new_pre.crop_face(fs, box, rig, **kw).face_depth_m)
        args.append((rgb.data, ir.data, geo, (x0, y0, side, s)))

    def ir_before(a):
        mx, my, k = new_pre._projected_map(*a[2])
        return sample.box(a[1], mx.astype(np.float32), my.astype(np.float32), k)

    def rgb_numpy(pre, a):
        x0, y0, side, s = a[3]
        img = a[0]
        return pre._resample_separable(img, pre._resample_matrix(y0, side, img.shape[0], s),
                                       pre._resample_matrix(x0, side, img.shape[1], s))

    parts["IR before (map + box)"] = ir_before
    if lattice_before:
        parts["IR before (lattice)"] = lambda a: old_pre._crop_projected(a[1], *a[2], sample=sample)
    parts["IR numpy"] = lambda a: new_pre._crop_projected(a[1], *a[2])
    parts["rgb before (numpy)"] = lambda a: rgb_numpy(old_pre, a)
    if sample is not None:
        parts["IR after (lattice)"] = lambda a: new_pre._crop_projected(a[1], *a[2], sample=sample)
        parts["rgb after (compiled)"] = lambda a: sample.resample(a[0], *a[3][:3], a[3][3],
                                                                   new_pre._supersample(a[3][2], a[3][3]))
    else:
        del parts["IR before (map + box)"]
    ts: dict[str, list[float]] = {k: [] for k in parts}
    for rep in range(a.passes):
        for i, x in enumerate(args):
            for name in list(parts)[:: 1 if (i + rep) % 2 == 0 else -1]:
                t0 = time.perf_counter_ns()
                parts[name](x)
                ts[name].append((time.perf_counter_ns() - t0) / 1e6)
    print(f"{len(sets)} frame sets, {len(calls)} crops, {a.passes} passes, interleaved; sampler: "
          f"{'compiled' if sample is not None else 'numpy'}; load average {os.getloadavg()[0]:.2f}")
    for stage, what in (("sync", "SensorMonitor.check"), ("crop", "crop_face")):
        b, f = np.median(t["before"][stage]), np.median(t["after"][stage])
        print(f"{what:20s} before {b:.3f} ms  after {f:.3f} ms  after/before {f / b:.2f}")
    print(f"crops identical: {same}; values moved {moved}/{total}")
    for name in parts:
        ref = "IR numpy" if name.startswith("IR") else "rgb before (numpy)"
        base = ("IR before (lattice)" if lattice_before else "IR before (map + box)") \
            if name.startswith("IR") and sample is not None else ref
        d = [np.abs(parts[name](x).astype(np.int16) - parts[ref](x).astype(np.int16)) for x in args]
        print(f"{name:22s} {np.median(ts[name]):.3f} ms  / {base}: {np.median(ts[name]) / np.median(ts[base]):.2f}"
              f"  vs {ref}: max |d| {max(int(x.max()) for x in d)}, moved {sum(int((x > 0).sum()) for x in d)}"
              f"/{sum(x.size for x in d)}")

if __name__ == "__main__":
    main()
