#!/usr/bin/env python3
"""Figures of docs/FACE_DETECTOR.md: the learned detector (MTCNN, edgepad.runtime.detector) beside the Haar
locator as the runtime configures it (edgepad.runtime.face.HaarFaceLocator defaults, full search every frame).

Sections (each prints one block; --only picks some):

- ``real``: real photographs that ship inside installed PyPI wheels (nothing is copied into the repository):
  scikit-image's ``astronaut.png``, ``camera.png`` and ``lfw_subset.npy`` (100 LFW face crops + 100 non-face
  crops, 25×25 grey, shown 4× upscaled with replicated borders), matplotlib's ``grace_hopper.jpg``.
- ``synthetic``: recall over edgepad.synthesis presentations of every species (``nominal`` domain poses,
  distances 0.3-1.5 m), with IoU against the ground-truth box, and the box mapping MTCNN box -> crop convention.
- ``tracking``: the runtime's ``LearnedFaceLocator`` on the same presentations, two consecutive frames each
  (first frame from scratch, second tracked).
- ``landmarks``: eye-landmark error on bona fide synthetic frames against the renderer's projected eye centres.
- ``latency``: per-frame time at 640×480, both detectors interleaved on the same frames in one process.

Usage::

    python scripts/face_detector_figures.py [--only real,synthetic,tracking,landmarks,latency] [--frames 400]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import time
from pathlib import Path

import numpy as np


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent.joinpath(*parts)
    return p if p.is_file() else None


def haar_frameset(rgb):
    from edgepad.geometry import Intrinsics
    from edgepad.types import FrameSet, Modality, make_frame
    h, w = rgb.shape[:2]
    intr = Intrinsics(width=w, height=h, fx=w, fy=w, cx=w / 2, cy=h / 2)
    return FrameSet({Modality.RGB: make_frame("rgb", rgb, 0, intrinsics=intr)}, 0)


def haar_detect(haar, rgb):
    haar.reset()
    d = haar.locate(haar_frameset(np.ascontiguousarray(rgb)))
    return None if d is None else d.box


def landmark_sane(f) -> bool:
    """Eyes above nose above mouth, left/right order, all inside the (10 %-grown) box."""
    lm = f.landmarks
    x, y, w, h = f.box
    inside = np.all((lm[:, 0] > x - 0.1 * w) & (lm[:, 0] < x + 1.1 * w) & (lm[:, 1] > y - 0.1 * h)
                    & (lm[:, 1] < y + 1.1 * h))
    order = lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    vertical = max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
    return bool(inside and order and vertical)


def real_photos(det, haar) -> dict:
    import cv2
    out = {}
    named = [("skimage astronaut.png", package_file("skimage", "data", "astronaut.png")),
             ("skimage camera.png", package_file("skimage", "data", "camera.png")),
             ("matplotlib grace_hopper.jpg", package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"))]
    for name, path in named:
        if path is None:
            out[name] = "package not installed"
            continue
        rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        faces = det.detect(rgb)
        hb = haar_detect(haar, rgb)
        out[name] = {"size": list(rgb.shape[:2]), "mtcnn_faces": len(faces),
                     "mtcnn_box": [round(v, 1) for v in faces[0].box] if faces else None,
                     "mtcnn_score": round(faces[0].score, 4) if faces else None,
                     "landmarks_sane": landmark_sane(faces[0]) if faces else None,
                     "haar_box": list(hb) if hb else None,
                     "iou_mtcnn_haar": round(iou(faces[0].box, hb), 3) if faces and hb else None}
    # scikit-image's other bundled photographs contain no human face: every detection is a false one
    folder = package_file("skimage", "data", "astronaut.png")
    if folder is not None:
        neg = {"images": 0, "mtcnn_false": [], "haar_false": []}
        for path in sorted(folder.parent.iterdir()):
            if path.suffix not in (".png", ".jpg") or path.name in ("astronaut.png", "camera.png"):
                continue
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                continue
            rgb = np.ascontiguousarray(img[:, :, ::-1])
            neg["images"] += 1
            faces = det.detect(rgb)
            if faces:
                neg["mtcnn_false"].append(f"{path.name}: {len(faces)} (scores "
                                          f"{', '.join(f'{f.score:.2f}' for f in faces)})")
            if haar_detect(haar, rgb) is not None:
                neg["haar_false"].append(path.name)
        out["skimage images without faces"] = neg
    lfw = package_file("skimage", "data", "lfw_subset.npy")
    if lfw is None:
        out["lfw_subset"] = "scikit-image not installed"
        return out
    crops = (np.load(lfw) * 255).clip(0, 255).astype(np.uint8)
    up, pad = 4, 50
    res = {"faces": 0, "mtcnn_found": 0, "haar_found": 0, "mtcnn_landmarks_sane": 0, "mtcnn_iou": [],
           "haar_iou": [], "nonfaces": 0, "mtcnn_false": 0, "haar_false": 0}
    for i, c in enumerate(crops):
        g = cv2.resize(c, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
        g = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
        truth = (pad, pad, 25 * up, 25 * up)
        faces = det.detect(rgb)
        hb = haar_detect(haar, rgb)
        if i < 100:
            res["faces"] += 1
            best = max(faces, key=lambda f: iou(f.box, truth)) if faces else None
            if best is not None and iou(best.box, truth) >= 0.5:
                res["mtcnn_found"] += 1
                res["mtcnn_iou"].append(iou(best.box, truth))
                res["mtcnn_landmarks_sane"] += landmark_sane(best)
            if hb is not None and iou(hb, truth) >= 0.5:
                res["haar_found"] += 1
                res["haar_iou"].append(iou(hb, truth))
        else:
            res["nonfaces"] += 1
            res["mtcnn_false"] += bool(faces)
            res["haar_false"] += hb is not None
    res["mtcnn_iou"] = round(float(np.median(res["mtcnn_iou"])), 3) if res["mtcnn_iou"] else None
    res["haar_iou"] = round(float(np.median(res["haar_iou"])), 3) if res["haar_iou"] else None
    out["lfw_subset (median IoU of hits)"] = res
    return out


def synthetic_frames(n: int, seed: int = 21):
    """``n`` presentations: species round-robin, nominal-domain pose/lighting, distance uniform 0.3-1.5 m."""
    from edgepad.synthesis import SPECIES, RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    cache = RenderCache(rig, seed, max_presentations=8)
    rng = np.random.default_rng(seed)
    for i in range(n):
        sp = SPECIES[i % len(SPECIES)]
        p = sample_presentation(i, sp, i % 50, seed=seed, domain="nominal")
        p = dataclasses.replace(p, distance_m=float(rng.uniform(0.3, 1.5)))
        yield p, render_frames(p, rig, frame=int(rng.integers(0, 10)), seed=seed, cache=cache)


def synthetic(det, haar, n: int) -> dict:
    rows = []
    for p, r in synthetic_frames(n):
        truth = r.truth.face_box_rgb
        if truth is None:
            continue
        faces = det.detect(r.rgb)
        big = max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None
        hb = haar_detect(haar, r.rgb)
        rows.append({"species": p.species, "distance": p.distance_m, "yaw": r.truth.yaw_deg,
                     "pitch": r.truth.pitch_deg, "truth": truth,
                     "mtcnn": big.box if big else None, "mtcnn_sane": landmark_sane(big) if big else False,
                     "mtcnn_iou": iou(big.box, truth) if big else 0.0,
                     "haar_iou": iou(hb, truth) if hb else 0.0, "haar_found": hb is not None})
    # box mapping MTCNN -> crop convention (medians, as HAAR_TO_FACE_BOX in edgepad/runtime/face.py)
    rel = []
    for r in rows:
        if r["mtcnn"] is None or r["mtcnn_iou"] < 0.3:
            continue
        x, y, w, h = r["mtcnn"]
        tx, ty, tw, th = r["truth"]
        side = max(w, h)
        rel.append(((tx + tw / 2 - x - w / 2) / side, (ty + th / 2 - y - h / 2) / side, tw / side, th / side))
    mapping = np.median(np.array(rel), axis=0) if rel else np.zeros(4)
    adj_iou = []
    for r in rows:
        if r["mtcnn"] is None:
            adj_iou.append(0.0)
            continue
        x, y, w, h = r["mtcnn"]
        side = max(w, h)
        cx, cy = x + w / 2 + mapping[0] * side, y + h / 2 + mapping[1] * side
        bw, bh = mapping[2] * side, mapping[3] * side
        adj_iou.append(iou((cx - bw / 2, cy - bh / 2, bw, bh), r["truth"]))

    def summary(sel):
        m = [r for r in sel]
        if not m:
            return None
        return {"frames": len(m),
                "mtcnn_recall_iou50": round(np.mean([r["mtcnn_iou"] >= 0.5 for r in m]), 4),
                "mtcnn_any_face": round(np.mean([r["mtcnn"] is not None for r in m]), 4),
                "haar_recall_iou50": round(np.mean([r["haar_iou"] >= 0.5 for r in m]), 4),
                "haar_any_face": round(np.mean([r["haar_found"] for r in m]), 4),
                "mtcnn_median_iou": round(float(np.median([r["mtcnn_iou"] for r in m])), 3),
                "haar_median_iou": round(float(np.median([r["haar_iou"] for r in m])), 3),
                "mtcnn_landmarks_sane": round(np.mean([r["mtcnn_sane"] for r in m]), 4)}

    out = {"all": summary(rows)}
    edges = [0.3, 0.6, 0.9, 1.2, 1.5]
    for a, b in zip(edges[:-1], edges[1:]):
        out[f"distance {a}-{b} m"] = summary([r for r in rows if a <= r["distance"] < b])
    out["|yaw| >= 15 deg or |pitch| >= 12 deg"] = summary([r for r in rows if abs(r["yaw"]) >= 15
                                                          or abs(r["pitch"]) >= 12])
    from edgepad.synthesis import SPECIES
    for sp in SPECIES:
        out[sp] = summary([r for r in rows if r["species"] == sp])
    out["box_mapping (dx, dy, sw, sh)"] = [round(float(v), 3) for v in mapping]
    out["mtcnn_median_iou_after_mapping"] = round(float(np.median(adj_iou)), 3)
    out["mtcnn_recall_iou50_after_mapping"] = round(float(np.mean(np.array(adj_iou) >= 0.5)), 4)
    misses = [(r["species"], round(r["distance"], 2), round(r["mtcnn_iou"], 2)) for r in rows if r["mtcnn_iou"] < 0.5]
    out["mtcnn_misses (species, distance, iou)"] = misses[:20]
    return out


def tracking(det, n: int, seed: int = 21) -> dict:
    """The runtime's LearnedFaceLocator on the synthetic presentations of ``synthetic`` (same draws), two
    consecutive frames each: the first from scratch (its first search = the coarse half of the pyramid), the
    second tracked (the first frame's box through R-Net + O-Net, no P-Net). Recall = mapped box IoU >= 0.5 with
    the truth."""
    from edgepad.runtime.face import LearnedFaceLocator
    from edgepad.synthesis import SPECIES, RenderCache, default_rig, render_frames, sample_presentation
    from edgepad.types import FrameSet, Modality, make_frame
    rig = default_rig()
    intr = rig.intrinsics[Modality.RGB]
    cache = RenderCache(rig, seed, max_presentations=8)
    rng = np.random.default_rng(seed)
    loc = LearnedFaceLocator(detector=det)
    rows = []
    for i in range(n):
        sp = SPECIES[i % len(SPECIES)]
        p = sample_presentation(i, sp, i % 50, seed=seed, domain="nominal")
        p = dataclasses.replace(p, distance_m=float(rng.uniform(0.3, 1.5)))
        k = min(int(rng.integers(0, 10)), 8)
        loc.reset()
        hits = []
        for j in (k, k + 1):
            r = render_frames(p, rig, frame=j, seed=seed, cache=cache)
            d = loc.locate(FrameSet({Modality.RGB: make_frame("rgb", r.rgb, j, sequence=j, intrinsics=intr)}, j))
            hits.append(None if r.truth.face_box_rgb is None else
                        (d is not None and iou(d.box, r.truth.face_box_rgb) >= 0.5))
        if None not in hits:
            rows.append((p.distance_m, *hits))
    a = np.array(rows, dtype=np.float64).reshape(-1, 3)
    out = {"presentations": len(a), "first_frame_recall": round(float(a[:, 1].mean()), 4),
           "tracked_frame_recall": round(float(a[:, 2].mean()), 4), "searches": dict(loc.searches)}
    for lo, hi in zip([0.3, 0.6, 0.9, 1.2], [0.6, 0.9, 1.2, 1.5]):
        m = a[(a[:, 0] >= lo) & (a[:, 0] < hi)]
        out[f"distance {lo}-{hi} m (first, tracked)"] = [len(m), round(float(m[:, 1].mean()), 4),
                                                         round(float(m[:, 2].mean()), 4)]
    return out


def eye_truth(p, surface, rig, frame: int = 0) -> np.ndarray:
    """Projected eye centres (image-left first) of a bona fide synthetic face: the renderer puts the eye openings
    at x = ±0.032 · scale · width, y = (-0.026 + eye_y) · scale on the face grid (edgepad.synthesis)."""
    from edgepad.geometry import project
    from edgepad.synthesis import GRID_NX, GRID_STEP_M, GRID_X0, GRID_Y0, frame_pose, make_subject
    from edgepad.types import Modality
    s = make_subject(p.subject, p.seed)
    pose = frame_pose(p, frame)
    pts = []
    for sx in (-1, 1):
        x, y = sx * 0.032 * s.scale * s.width, (-0.026 + s.eye_y) * s.scale
        h = float(surface.h[int((y - GRID_Y0) / GRID_STEP_M) * GRID_NX + int((x - GRID_X0) / GRID_STEP_M)])
        pts.append(pose.r @ np.array([x, y, -h]) + pose.t)
    uv = project(np.array(pts), rig.intrinsics[Modality.RGB])
    return uv[np.argsort(uv[:, 0])]


def landmarks(det, n: int) -> dict:
    """Eye-landmark error on bona fide synthetic frames against the projected eye centres."""
    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    rig = default_rig()
    cache = RenderCache(rig, 5, max_presentations=2)
    rng = np.random.default_rng(5)
    nme, px, missed = [], [], 0
    for i in range(n):
        p = sample_presentation(i, "bonafide", i % 50, seed=5, domain="nominal")
        p = dataclasses.replace(p, distance_m=float(rng.uniform(0.3, 1.5)))
        frame = int(rng.integers(0, 10))
        r = render_frames(p, rig, frame=frame, seed=5, cache=cache)
        if r.truth.face_box_rgb is None:
            continue
        f = det.detect(r.rgb)
        f = max(f, key=lambda d: d.box[2] * d.box[3]) if f else None
        if f is None:
            missed += 1
            continue
        uv = eye_truth(p, cache.surface(p), rig, frame)
        e = np.hypot(*(f.landmarks[:2] - uv).T)
        px.extend(e.tolist())
        nme.append(float(e.mean() / np.hypot(*(uv[1] - uv[0]))))
    return {"frames": len(nme) + missed, "missed": missed,
            "eye_error_over_interocular_median_p90": [round(float(np.median(nme)), 4),
                                                      round(float(np.percentile(nme, 90)), 4)],
            "eye_error_px_median_p90": [round(float(np.median(px)), 2), round(float(np.percentile(px, 90)), 2)]}


def latency(det, haar, n: int = 40, reps: int = 5) -> dict:
    frames = [r.rgb for _, r in synthetic_frames(n, seed=33)]
    for f in frames[:5]:
        det.detect(f)
        haar_detect(haar, f)
    from edgepad.runtime.detector import LearnedFaceDetector
    import cv2
    variants = {"mtcnn": det.detect, "haar_full": lambda f: haar_detect(haar, f),
                "mtcnn_pnet_pyramid_only": det._stage_pnet,
                "mtcnn_min_face_64": LearnedFaceDetector(min_face_px=64, threads=1).detect}
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(reps):
        for f in frames:
            for k, fn in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn(f)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    pct = lambda t: [round(float(v) * 1e3, 2) for v in np.percentile(t, [50, 99])]  # noqa: E731
    out = {"frames": len(wall["mtcnn"]), "cv2_threads": cv2.getNumThreads()}
    for k in variants:
        out[f"{k}_wall_p50_p99_ms"] = pct(wall[k])
        out[f"{k}_cpu_mean_ms"] = round(float(np.mean(cpu[k])) * 1e3, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="real,synthetic,tracking,landmarks,latency")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from edgepad.runtime.detector import LearnedFaceDetector
    from edgepad.runtime.face import HaarFaceLocator
    det = LearnedFaceDetector(threads=1)
    haar = HaarFaceLocator(roi_every=1)  # runtime defaults, full search on every frame
    res = {}
    for part in args.only.split(","):
        t0 = time.perf_counter()
        if part == "real":
            res[part] = real_photos(det, haar)
        elif part == "synthetic":
            res[part] = synthetic(det, haar, args.frames)
        elif part == "tracking":
            res[part] = tracking(det, args.frames)
        elif part == "landmarks":
            res[part] = landmarks(det, max(20, args.frames // 4))
        elif part == "latency":
            res[part] = latency(det, haar)
        print(f"== {part} ({time.perf_counter() - t0:.0f} s)")
        print(json.dumps(res[part], indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
