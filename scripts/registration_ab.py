"""Registration before/after vs rs.align, interleaved in one process: the package at ``--before`` (a git commit,
extracted with ``git archive``; ``--before-method`` of it), this tree's (``--method``, default auto = the native
kernel where it builds), and ``rs.align`` on every case-table row; medians of wall and thread CPU time (CPU time is
robust to time-slicing on a loaded machine). One line per row; ``--json`` writes them all.

    python scripts/registration_ab.py --before 68b2147 --footprint sse,rect --repeats 9 --json ab.json
    python scripts/registration_ab.py --profile --only none,color      # where the numpy path's time goes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _old_package(commit: str, root: Path) -> object:
    """``drivers/registration`` at ``commit`` as the importable package ``reg_before``."""
    out = Path(tempfile.mkdtemp(prefix="reg-before-"))
    tar = subprocess.run(["git", "-C", str(root), "archive", commit, "drivers/registration"], check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    pkg = out / "reg_before"
    (out / "drivers" / "registration").rename(pkg)
    for f in pkg.glob("*.py"):
        f.write_text(f.read_text().replace("edgepad.drivers.registration", "reg_before"))
    sys.path.insert(0, str(out))
    import reg_before
    return reg_before


def _profile(names: list[str], repeats: int) -> None:
    """Thread CPU per frame of the numpy path, split into corners + cells (``_chunk``), scatter + spreads
    (``_min_squares``) and the rest, by wrapping those two functions (a few µs of overhead)."""
    from edgepad.drivers.registration import Registrar
    from edgepad.drivers.registration import fast
    from edgepad.drivers.registration.oracle import registration_cases
    cpu, spent = time.thread_time_ns, {}

    def timed(name, fn):
        def call(*args, **kw):
            t0 = cpu()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] = spent.get(name, 0) + cpu() - t0
        return call

    for name in ("_chunk", "_min_squares"):
        setattr(fast, name, timed(name, getattr(fast, name)))
    print("| case | arith | total ms | corners + cells (`_chunk`) | scatter + spread (`_min_squares`) | other |")
    print("|---|---|---|---|---|---|")
    for c in registration_cases():
        if not any(n in c["name"] for n in names):
            continue
        d = c["depth"]
        for ar in ("fast", "exact"):
            reg = Registrar(d.intrinsics, c["target"], c["ext"], float(d.depth_scale_m), semantics="align",
                            footprint="sse", arithmetic=ar, method="numpy")
            for _ in range(2):
                reg.frame(d)
            spent.clear()
            t0 = cpu()
            for _ in range(repeats):
                reg.frame(d)
            tot = (cpu() - t0) / repeats / 1e6
            ch, ms = (spent.get(k, 0) / repeats / 1e6 for k in ("_chunk", "_min_squares"))
            print(f"| {c['name']} | {ar} | {tot:.2f} | {ch:.2f} ({100 * ch / tot:.0f} %) | {ms:.2f} "
                  f"({100 * ms / tot:.0f} %) | {tot - ch - ms:.2f} ({100 * (tot - ch - ms) / tot:.0f} %) |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="git commit of the 'before' package (required unless --profile)")
    p.add_argument("--profile", action="store_true", help="only split the numpy path's time by stage")
    p.add_argument("--footprint", default="sse")
    p.add_argument("--arithmetic", default="fast,exact")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--only", default="", help="substrings of the case names to keep (comma-separated)")
    p.add_argument("--method", default="auto", help="this tree's method (auto, native, numpy)")
    p.add_argument("--before-method", default="numpy", help="the --before package's method")
    p.add_argument("--json")
    a = p.parse_args()
    only = a.only.split(",")
    if a.profile:
        _profile(only, a.repeats)
        return 0
    if not a.before:
        p.error("--before is required")
    old = _old_package(a.before, Path(__file__).resolve().parents[1])
    from edgepad.drivers.registration import Registrar
    from edgepad.drivers.registration.oracle import _RsAligner, registration_cases
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    rows = []
    for c in registration_cases():
        if not any(n in c["name"] for n in only):
            continue
        d, t, e = c["depth"], c["target"], c["ext"]
        al = _RsAligner(d.intrinsics, t, e, float(d.depth_scale_m))
        for fp in a.footprint.split(","):
            for ar in a.arithmetic.split(","):
                kw = dict(semantics="align", footprint=fp, arithmetic=ar)
                before = old.Registrar(d.intrinsics, t, e, float(d.depth_scale_m), method=a.before_method, **kw)
                after = Registrar(d.intrinsics, t, e, float(d.depth_scale_m), method=a.method, **kw)
                times: dict = {k: ([], []) for k in ("before", "after", "rs")}
                for i in range(a.repeats + 2):
                    for k in ("before", "after", "rs"):
                        if k == "rs":
                            fs = al.frameset(d.data)
                        c0, w0 = cpu(), wall()
                        r = (before.frame(d) if k == "before" else after.frame(d) if k == "after"
                             else al.rs_align.process(fs).get_depth_frame())
                        w1, c1 = wall(), cpu()
                        if k == "after":
                            mine = r.data
                        if k == "rs":
                            ref = np.asanyarray(r.get_data()).copy()
                        if i >= 2:
                            times[k][0].append((c1 - c0) / 1e6)
                            times[k][1].append((w1 - w0) / 1e6)
                m = {k: (float(np.median(v[0])), float(np.median(v[1]))) for k, v in times.items()}
                row = dict(case=c["name"], footprint=fp, arithmetic=ar, load=os.getloadavg()[0],
                           method=after.resolved_method(),
                           rs_cpu_ms=m["rs"][0], before_cpu_ms=m["before"][0], after_cpu_ms=m["after"][0],
                           before_cpu_ratio=m["before"][0] / m["rs"][0], after_cpu_ratio=m["after"][0] / m["rs"][0],
                           before_wall_ratio=m["before"][1] / m["rs"][1], after_wall_ratio=m["after"][1] / m["rs"][1],
                           identical=float(np.mean(mine == ref)))
                rows.append(row)
                print(f"{row['case']:42s} {fp:4s} {ar:5s} {row['method']:6s} cpu {row['before_cpu_ratio']:.2f} -> "
                      f"{row['after_cpu_ratio']:.2f}  wall {row['before_wall_ratio']:.2f} -> "
                      f"{row['after_wall_ratio']:.2f}  rs.align {m['rs'][0]:.1f} ms cpu  identical "
                      f"{100 * row['identical']:.4f} %  load {row['load']:.1f}", flush=True)
        al.close()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
