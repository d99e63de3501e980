"""A/B of the whole pipeline: ``edgepad bench`` of two source trees, runs alternated (before, after, before, ...).

Each run is a fresh process of this interpreter that imports ``edgepad`` from the given tree (its ``edgepad/``,
``drivers/``, ``engines/`` and ``calibration/`` folders, as setup.py maps them), so one venv serves both arms and
only the code differs. The machine is shared: alternate, and compare medians and ratios of the same call.

    git worktree add --detach /tmp/s6pipe_before ed569da
    python scripts/pipeline_ab.py --before /tmp/s6pipe_before --after . --runs 3
    edgepad record synthetic://default --out /tmp/rec300 --frames 300 --format npy     # a camera-like source:
    python scripts/pipeline_ab.py --before /tmp/s6pipe_before --after . --source "replay:///tmp/rec300?loop=true"
    # any script with edgepad from another tree (e.g. the re-validation dumps of scripts/preprocess_ab.py):
    python scripts/pipeline_ab.py --in-tree /tmp/s6pipe_before scripts/preprocess_ab.py --rec REC --dump A.npz

Prints, per arm, cost/infer (``pipeline_over_inference``), pipeline cost and per-stage p50 (ms) of every run, their
medians, after/before ratios of the medians, the load average around each run and the exact bench command.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("sync", "register", "locate", "preprocess", "infer", "policy")
BENCH = ["bench", "--source", "synthetic://default", "--model", "edgepad/assets/default.onnx", "--threads", "2",
         "--warmup-s", "3", "--budget-s", "15", "--no-plots"]

#: imports edgepad from the tree given as first argument, then runs the edgepad command line with the rest
BOOT = r"""
import importlib.util, sys
root = sys.argv.pop(1)
MAP = {"edgepad": "edgepad", "edgepad.drivers": "drivers", "edgepad.engines": "engines",
       "edgepad.calibration": "calibration"}
class TreeFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name in MAP:
            d = root + "/" + MAP[name]
            return importlib.util.spec_from_file_location(name, d + "/__init__.py", submodule_search_locations=[d])
        return None
sys.meta_path.insert(0, TreeFinder)
import edgepad
assert edgepad.__file__.startswith(root), edgepad.__file__
if sys.argv[1:2] == ["--script"]:
    import runpy
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)
from edgepad.cli import main
sys.argv[0] = "edgepad"
sys.exit(main())
"""


def run_once(tree: Path, out: Path, extra: list[str]) -> dict:
    """One bench run of ``tree`` (its own working directory); the figures of its bench.json."""
    cmd = [sys.executable, "-c", BOOT, str(tree), *BENCH, *extra, "--out", str(out)]
    load0 = os.getloadavg()[0]
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench failed in {tree}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    doc = json.loads((out / "bench.json").read_text())
    p = doc["pipeline"]
    return {"ratio": doc["targets"]["pipeline_over_inference"]["ratio"], "cost": p["cost"]["raw"]["p50"],
            **{s: p["stages"][s]["raw"]["p50"] for s in STAGES},
            "busy": p["resources"].get("machine_cpu_busy_pct"), "load": (load0, os.getloadavg()[0])}


def main() -> None:
    if sys.argv[1:2] == ["--in-tree"]:  # --in-tree TREE SCRIPT ARGS...: run SCRIPT with edgepad from TREE
        tree, script, rest = sys.argv[2], sys.argv[3], sys.argv[4:]
        raise SystemExit(subprocess.run([sys.executable, "-c", BOOT, str(Path(tree).resolve()), "--script",
                                         str(Path(script).resolve()), *rest]).returncode)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="tree of the before arm (e.g. a detached worktree)")
    ap.add_argument("--after", type=Path, default=Path("."), help="tree of the after arm (default: this one)")
    ap.add_argument("--runs", type=int, default=3, help="runs per arm (default 3)")
    ap.add_argument("--bench-arg", action="append", default=[], help="extra argument for edgepad bench")
    ap.add_argument("--source", default="synthetic://default",
                    help="bench source (default synthetic://default: its renderer runs in the capture thread; "
                         "replay://DIR?loop=true of a recording: a capture that only reads files, as a camera's)")
    args = ap.parse_args()
    if args.source != "synthetic://default":
        BENCH[BENCH.index("synthetic://default")] = args.source
    arms = {"before": args.before.resolve(), "after": args.after.resolve()}
    print("command (each arm in its own tree):", "edgepad", " ".join(BENCH + args.bench_arg), "--out OUT")
    res: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for arm in (("before", "after") if i % 2 == 0 else ("after", "before")):
                t = time.strftime("%H:%M:%S", time.gmtime())
                r = run_once(arms[arm], Path(tmp) / f"{arm}{i}", args.bench_arg)
                res[arm].append(r)
                print(f"{t} UTC {arm:6s} run {i}: cost/infer {r['ratio']:.2f}  cost {r['cost']:.2f} ms  "
                      + "  ".join(f"{s} {r[s]:.2f}" for s in STAGES)
                      + f"  | load {r['load'][0]:.2f}->{r['load'][1]:.2f}  busy {r['busy']}%", flush=True)
    print("\nmedian p50 ms (runs)           before                after                 after/before")
    for key in ("ratio", "cost", *STAGES):
        b = statistics.median(x[key] for x in res["before"])
        a = statistics.median(x[key] for x in res["after"])
        runs = lambda arm: "/".join(f"{x[key]:.2f}" for x in res[arm])  # noqa: E731
        print(f"{'cost/infer' if key == 'ratio' else key:12s} {b:6.2f} ({runs('before')})  {a:6.2f} ({runs('after')})  "
              f"{a / b if b else float('nan'):.2f}")


if __name__ == "__main__":
    main()
