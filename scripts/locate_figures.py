#!/usr/bin/env python3
"""Locate-stage figures of docs/RUNTIME.md §"face locator": the runtime's locators side by side on the same
synthetic frame sequence (back-to-back presentations, as ``edgepad demo`` shows them), interleaved per frame in
one process so that machine load hits all of them alike.

Locators: ``learned`` (LearnedFaceLocator defaults: O-Net tracking of the last box, a full MTCNN search spread
over 2 frames every 10th frame and while no face is tracked), ``learned-full`` (the whole pyramid beside the
tracking on every frame), ``learned-onet`` (O-Net on every tracked frame, no optical flow between: trees
with ``verify_every``), ``haar`` (HaarFaceLocator
defaults: full search every 5th frame, region search in between) and ``haar-full`` (Haar full search on every
frame). Per locator: locate wall time p50 / p90 / p99 / max (ms), process CPU time per call, the frames where it
found a face, recall (frames with a ground-truth face where the box has IoU >= 0.5 with it) and the median IoU.

Usage::

    python scripts/locate_figures.py [--seed 7] [--frames 300] [--presentation-frames 30] [--json out.json]
"""
from __future__ import annotations

import argparse
import inspect
import json
import time

import numpy as np

from edgepad.drivers.capture import Capture
from edgepad.drivers.sync import Synchronizer
from edgepad.drivers.synthetic import SyntheticSource
from edgepad.runtime.face import HaarFaceLocator, LearnedFaceLocator
from edgepad.types import Modality


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--presentation-frames", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    src = SyntheticSource("demo", seed=args.seed, frames=args.frames, presentation_frames=args.presentation_frames)
    cap = Capture([src], None, Synchronizer.for_fps([Modality.RGB, Modality.DEPTH, Modality.IR], 30.0), register="off")
    # search_parts=1 where the locator has it, so that the same script measures an older tree (before/after)
    spread = {"search_parts": 1} if "search_parts" in inspect.signature(LearnedFaceLocator).parameters else {}
    locs = {"learned": LearnedFaceLocator(), "learned-full": LearnedFaceLocator(detect_every=1, **spread),
            "haar": HaarFaceLocator(), "haar-full": HaarFaceLocator(roi_every=1)}
    if "verify_every" in inspect.signature(LearnedFaceLocator).parameters:  # O-Net on every frame, no flow
        locs["learned-onet"] = LearnedFaceLocator(verify_every=1)
    wall = {k: [] for k in locs}
    cpu = {k: 0.0 for k in locs}
    found = {k: 0 for k in locs}
    ious = {k: [] for k in locs}
    n = faces = 0
    with cap:
        while n < args.frames:
            fs = cap.read(2.0)
            if fs is None:
                continue
            n += 1
            truth = src.truth(fs.get(Modality.RGB).sequence).face_box_rgb
            faces += truth is not None
            for k, loc in locs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                det = loc.locate(fs)
                wall[k].append((time.perf_counter() - t0) * 1e3)
                cpu[k] += time.process_time() - c0
                if det is not None:
                    found[k] += 1
                    if truth is not None:
                        ious[k].append(iou(det.box, truth))
    out = {}
    print(f"{n} frames, seed {args.seed}, {args.presentation_frames} frames per presentation (back to back)")
    print("locator        p50    p90    p99    max  (wall ms)  cpu/call ms  found   recall   median IoU")
    for k in locs:
        w = np.asarray(wall[k])
        row = {"p50": float(np.percentile(w, 50)), "p90": float(np.percentile(w, 90)),
               "p99": float(np.percentile(w, 99)), "max": float(w.max()), "cpu_ms": 1e3 * cpu[k] / n,
               "found": found[k], "frames": n, "faces": faces, "recall": sum(v >= 0.5 for v in ious[k]) / max(faces, 1),
               "median_iou": float(np.median(ious[k])) if ious[k] else None,
               "searches": dict(getattr(locs[k], "searches", {}))}
        out[k] = row
        print(f"{k:13s}{row['p50']:6.1f} {row['p90']:6.1f} {row['p99']:6.1f} {row['max']:6.1f}"
              f"{row['cpu_ms']:18.2f} {found[k]:4d}/{n}  {100 * row['recall']:6.2f} %  {row['median_iou'] or 0:.3f}"
              f"  {row['searches']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
