#!/usr/bin/env python3
"""Stop-while-starting stress for librealsense playback: N child processes each start and stop a playback pipeline
K times, with and without pausing the playback before ``pipeline.stop()``; prints how many children died.

    .venv/bin/python scripts/realsense_stop_stress.py [recording.bag] [--children 20] [--cycles 60]

Why: librealsense 2.59 corrupts the heap when a playback is stopped while its reader thread is still starting
(glibc aborts the process: "malloc_consolidate(): invalid chunk size"); RealSenseSource pauses first.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, gc
import pyrealsense2 as rs
path, cycles, pause = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
for i in range(cycles):
    cfg = rs.config(); cfg.enable_device_from_file(path, repeat_playback=False); cfg.enable_all_streams()
    pipe = rs.pipeline(); prof = pipe.start(cfg)
    pb = prof.get_device().as_playback(); pb.set_real_time(False)
    if pause:
        pb.pause()
    pipe.stop()
    del pb, prof, pipe, cfg
    if i % 7 == 0:
        gc.collect()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared/data/realsense/single_depth_color_640x480.bag"
    ap.add_argument("recording", nargs="?", default=str(default))
    ap.add_argument("--children", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=60)
    a = ap.parse_args()
    if not Path(a.recording).is_file():
        print(f"no recording {a.recording}", file=sys.stderr)
        return 2
    for pause in (False, True):
        died = 0
        for _ in range(a.children):
            r = subprocess.run([sys.executable, "-c", CHILD, a.recording, str(a.cycles), "1" if pause else "0"],
                               capture_output=True, text=True)
            died += r.returncode != 0
        print(f"{'pause, then stop' if pause else 'stop':>17}: {died} of {a.children} processes aborted "
              f"({a.children * a.cycles} start/stop cycles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
