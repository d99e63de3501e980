"""Per-stage A/B in one process: the sensor checks (sync stage) and ``crop_face`` (preprocess stage) of another
tree against this one, interleaved frame by frame, on frame sets of ``synthetic://default`` through the pipeline.

    git worktree add --detach /tmp/s6pipe_before ed569da
    python scripts/stage_ab.py --before /tmp/s6pipe_before --frames 120 --passes 3

The other tree's ``edgepad/runtime/sensors.py`` and ``edgepad/preprocess.py`` are loaded from their files (they
import only foundation modules, which did not change); this tree's ``crop_face`` gets the runtime's compiled
crops (``native.CropSampler``) as the pipeline passes them, the other tree's (session 6) their ``box`` sampling. BLAS 1 thread and the heap settings as in the pipeline. Prints medians (ms)
and after/before ratios, and how many crop values differ; then the IR and rgb crops alone, interleaved: the IR crop
by the session-6 runtime path (float64 map by BLAS products + the compiled ``box`` sampling), by numpy and by the
compiled ``lattice``; the rgb crop by the other tree's numpy and by the compiled ``resample``, each with its max
|Δ| against numpy and the number of values moved.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
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
    # the other tree's runtime passed its compiled IR sampling (session 6) where it has one: sample.box, the same C
    before_kw = {"sample": sample.box} if sample is not None and hasattr(old_pre, "_sample_box") else {}
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
        base = "IR before (map + box)" if name.startswith("IR") and sample is not None else ref
        d = [np.abs(parts[name](x).astype(np.int16) - parts[ref](x).astype(np.int16)) for x in args]
        print(f"{name:22s} {np.median(ts[name]):.3f} ms  / {base}: {np.median(ts[name]) / np.median(ts[base]):.2f}"
              f"  vs {ref}: max |d| {max(int(x.max()) for x in d)}, moved {sum(int((x > 0).sum()) for x in d)}"
              f"/{sum(x.size for x in d)}")

if __name__ == "__main__":
    main()
