"""A/B of ``edgepad.preprocess`` against another version of the file, on a recording, in one process.

Runs the default model's pipeline over ``replay://REC`` once to collect its ``crop_face`` calls, then

* ``--time``: times ``crop_face`` + ``normalise`` of this tree and of ``--old`` per frame, interleaved (BLAS 1 thread
  and the heap settings, as in the pipeline; each with the compiled crops the runtime passes: ``--old`` of session 6
  gets the sampler's ``box``), and prints medians and after/before ratios;
* ``--dump OUT.npz``: writes every decision's verdict, score and reasons and every crop and feed, so two trees
  can be compared with ``--compare A.npz B.npz`` (max |Δ| and the fraction of values that moved, per modality).

    git show main:edgepad/preprocess.py > /tmp/pre_main.py
    edgepad record "synthetic://demo?seed=7&presentation_frames=30" --out /tmp/demo7 --frames 300
    python scripts/preprocess_ab.py --rec /tmp/demo7 --old /tmp/pre_main.py --time
    python scripts/preprocess_ab.py --rec /tmp/demo7 --dump /tmp/new.npz
    /path/to/main/.venv/bin/python scripts/preprocess_ab.py --rec /tmp/demo7 --dump /tmp/main.npz
    python scripts/preprocess_ab.py --compare /tmp/main.npz /tmp/new.npz

The ``edgepad`` imported is the one installed in the running interpreter (each tree's own venv), not this file's.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np


def _run(rec: str, spy_feeds: bool):
    """Decisions of the default model on ``replay://rec``, the crop_face calls, and (optionally) the feeds."""
    import edgepad.preprocess as P
    from edgepad.assets import default_model_path
    from edgepad.engines.backend import load_backend
    from edgepad.runtime.pipeline import open_pipeline
    calls, crops, feeds = [], [], []
    crop, norm = P.crop_face, P.normalise

    def crop_spy(fs, box, rig, **kw):
        res = crop(fs, box, rig, **kw)
        calls.append((fs, box, rig, kw))
        crops.append({m.value: v.copy() for m, v in res.crops.items()})
        return res

    def norm_spy(*a, **kw):
        f = norm(*a, **kw)
        feeds.append({k: v.copy() for k, v in f.items()})
        return f

    P.crop_face = crop_spy
    if spy_feeds:
        P.normalise = norm_spy
    try:
        pipe = open_pipeline(f"replay://{rec}", load_backend(default_model_path(), "auto", threads=1), locator="haar")
        with pipe:
            rows = [(d.verdict.value, -1.0 if d.score is None else d.score,
                     ",".join(sorted(r.value for r in d.reasons))) for d in pipe.decisions()]
            inputs = pipe.manifest.inputs
    finally:
        P.crop_face, P.normalise = crop, norm
    return rows, calls, crops, feeds, inputs


def _time(rec: str, old_path: str, passes: int) -> None:
    import edgepad.preprocess as new
    from edgepad.blas import keep_freed_memory, set_blas_threads
    from edgepad.types import Modality
    spec = importlib.util.spec_from_file_location("preprocess_old", old_path)
    old = importlib.util.module_from_spec(spec)
    sys.modules["preprocess_old"] = old
    spec.loader.exec_module(old)
    _, calls, _, _, inputs = _run(rec, False)
    keep_freed_memory()
    set_blas_threads(1)
    res = {"old": [], "new": []}

    def old_kw(kw: dict) -> dict:
        """An older preprocess takes the compiled IR sampling as a plain callable (session 6): the sampler's box."""
        s = kw.get("sample")
        return {**kw, "sample": s.box} if s is not None and not callable(s) else kw

    for rep in range(passes):
        for i, (fs, box, rig, kw) in enumerate(calls):
            for name, mod in ((("old", old), ("new", new)) if (i + rep) % 2 == 0 else (("new", new), ("old", old))):
                t0 = time.perf_counter_ns()
                r = mod.crop_face(fs, box, rig, **(old_kw(kw) if name == "old" else kw))
                t1 = time.perf_counter_ns()
                d = fs.get(Modality.DEPTH)
                mod.normalise(r.crops, inputs, d.depth_scale_m if d is not None else 0.001)
                res[name].append(((t1 - t0) / 1e6, (time.perf_counter_ns() - t1) / 1e6))
    o, n = np.array(res["old"]), np.array(res["new"])
    print(f"{len(calls)} frames x {passes}, medians ms: crop_face old {np.median(o[:, 0]):.3f} new "
          f"{np.median(n[:, 0]):.3f} ratio {np.median(n[:, 0]) / np.median(o[:, 0]):.2f}; normalise old "
          f"{np.median(o[:, 1]):.3f} new {np.median(n[:, 1]):.3f} ratio {np.median(n[:, 1]) / np.median(o[:, 1]):.2f}")


def _dump(rec: str, out: str) -> None:
    rows, _, crops, feeds, _ = _run(rec, True)
    doc = {"verdict": np.array([r[0] for r in rows]), "score": np.array([r[1] for r in rows]),
           "reasons": np.array([r[2] for r in rows])}
    for kind, items in (("crop", crops), ("feed", feeds)):
        for i, d in enumerate(items):
            for m, v in d.items():
                doc[f"{kind}{i}_{m}"] = v
    np.savez_compressed(out, **doc)
    print(f"{len(rows)} decisions, {len(feeds)} feeds -> {out}")


def _compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    print("verdicts equal:", bool((a["verdict"] == b["verdict"]).all()),
          "reasons equal:", bool((a["reasons"] == b["reasons"]).all()))
    ok = (a["score"] >= 0) & (b["score"] >= 0)
    print(f"scored: {int(ok.sum())}, max |d score| {np.abs(a['score'][ok] - b['score'][ok]).max():.3g}")
    for kind in ("crop", "feed"):
        for m in ("rgb", "depth", "ir"):
            keys = [k for k in a.files if k.startswith(kind) and k.endswith("_" + m)]
            if not keys:
                continue
            d = [np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)) for k in keys]
            moved, total = sum(int((x > 0).sum()) for x in d), sum(x.size for x in d)
            print(f"{kind} {m}: {len(keys)} arrays, max |d| {max(x.max() for x in d):.4g}, "
                  f"moved {moved}/{total} = {moved / total:.4%}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rec", help="a recording (edgepad record) to replay")
    ap.add_argument("--old", help="the other edgepad/preprocess.py (for --time)")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--dump", metavar="OUT.npz")
    ap.add_argument("--compare", nargs=2, metavar=("A.npz", "B.npz"))
    a = ap.parse_args(argv)
    if a.compare:
        _compare(*a.compare)
    elif a.time and a.rec and a.old:
        _time(a.rec, a.old, a.passes)
    elif a.dump and a.rec:
        _dump(a.rec, a.dump)
    else:
        ap.error("give --compare A B, or --rec with --time --old FILE or --dump OUT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
