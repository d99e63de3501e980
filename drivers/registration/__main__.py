"""``python -m edgepad.drivers.registration [--repeats N] [--threads T] [--size WxH] [--arithmetic A]``: our
registration timed against ``rs.align`` on the same frames (JSON on stdout)."""
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
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    print(json.dumps(time_against_rs_align(*d435_like_scene(w, h), repeats=a.repeats, threads=a.threads,
                                           arithmetic=a.arithmetic), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
