"""``python -m edgepad.drivers.registration [--repeats N] [--threads T] [--size WxH] [--arithmetic A]
[--method M]``: our registration timed against ``rs.align`` on the same frames (JSON on stdout). ``--cases`` times
the whole case table (every size pair × lens variant, ``--footprint`` sse/rect, both arithmetics) and prints one
line per row."""
from __future__ import annotations

import argparse
import json
import sys

from edgepad.drivers.registration.oracle import d435_like_scene, time_against_rs_align


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="depth registration vs rs.align on the same frames, side by side")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", default="640x480")
    p.add_argument("--arithmetic", default="fast", choices=("fast", "exact"))
    p.add_argument("--cases", action="store_true", help="time the rs.align case table (one line per row)")
    p.add_argument("--footprint", default="sse", help="with --cases: sse, rect or sse,rect")
    p.add_argument("--scale", type=float, default=1.0, help="with --cases: image scale of the table")
    p.add_argument("--method", default="auto", choices=("auto", "native", "numpy", "torch"))
    a = p.parse_args(argv)
    if a.cases:
        from edgepad.drivers.registration.oracle import registration_cases, time_registration_cases
        for c in registration_cases(a.scale):
            for r in time_registration_cases([c], repeats=a.repeats, footprints=tuple(a.footprint.split(",")),
                                             threads=a.threads, method=a.method):
                print(f"{r['case']:42s} {r['footprint']:4s} {r['arithmetic']:5s} {r['method']:6s} "
                      f"ours {r['ours_ms']:7.2f} ms "
                      f"rs.align {r['rs_align_ms']:7.2f} ms ratio {r['ratio']:.2f} cpu_ratio "
                      f"{r.get('cpu_ratio', float('nan')):.2f} identical {100 * r['identical_fraction']:.4f} %",
                      flush=True)
        return 0
    w, h = (int(v) for v in a.size.lower().split("x"))
    print(json.dumps(time_against_rs_align(*d435_like_scene(w, h), repeats=a.repeats, threads=a.threads,
                                           arithmetic=a.arithmetic, method=a.method), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
