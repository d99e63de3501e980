#!/usr/bin/env python
"""Size and cost of the session encodings of ``edgepad record`` (the table in docs/DRIVERS.md).

Frames: the colour and depth of the real D435 recording (``--bag``, 640x480 rgb8 + z16) and an 8-bit IR stand-in
with real texture (the colour frame's grey). Writes ``--sets`` frame sets with :class:`Recorder` for each encoding
(and PNG with writer threads), then reads them back with :class:`ReplaySource`, checks every array is bit-exact,
and prints MB per set, MB per minute at 30 fps, and wall ms per set to write and to read (medians of the session
means over ``--repeat`` runs; CPU time, no camera).

Example (from the repository root)::

    nice -n 5 python scripts/record_figures.py --bag ../shared/data/realsense/single_depth_color_640x480.bag
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgepad.drivers.registry import open_source
from edgepad.drivers.replay import Recorder, ReplaySource, replay_all
from edgepad.types import Modality, make_frame


def real_frames(bag: str) -> dict[Modality, object]:
    """The last colour and depth frame of the recording, and an IR stand-in (grey of the colour)."""
    frames = {f.modality: f for f in replay_all(open_source(f"{bag}?modalities=rgb,depth"))}
    rgb = frames[Modality.RGB].data.astype(np.float32)
    grey = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).round().astype(np.uint8)
    frames[Modality.IR] = make_frame(Modality.IR, grey, frames[Modality.RGB].timestamp_ns,
                                     intrinsics=frames[Modality.RGB].intrinsics, sequence=0, source="ir-standin")
    return frames


def measure(frames: dict, encoding: str, writers: int, sets: int, root: Path) -> dict[str, float]:
    out = root / f"{encoding}-{writers}"
    period = 33_333_333
    t0 = time.perf_counter()
    with Recorder(out, encoding=encoding, writers=writers, overwrite=True, fps=30.0) as rec:
        for k in range(sets):
            for m, f in frames.items():
                rec.write(make_frame(m, f.data, k * period + 1, intrinsics=f.intrinsics, sequence=k,
                                     source="figures", depth_scale_m=f.depth_scale_m))
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = list(replay_all(ReplaySource(out)))
    read_s = time.perf_counter() - t0
    assert len(back) == sets * len(frames)
    for f in back:
        if not np.array_equal(f.data, frames[f.modality].data):
            raise SystemExit(f"{encoding}: {f.modality.value} frame {f.sequence} is not bit-exact")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"mb_set": size / sets / 1e6, "write_ms": write_s / sets * 1e3, "read_ms": read_s / sets * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bag", default="../shared/data/realsense/single_depth_color_640x480.bag")
    ap.add_argument("--sets", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    frames = real_frames(args.bag)
    print("| encoding | MB / set | MB / min at 30 fps | write ms / set | read ms / set |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for encoding, writers, label in (("npy", 0, "npy (raw)"), ("png", 0, "png, 1 thread"),
                                         ("png", 3, "png, 3 writer threads (default)")):
            runs = [measure(frames, encoding, writers, args.sets, Path(tmp)) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"| {label} | {med['mb_set']:.3f} | {med['mb_set'] * 1800:.0f} | {med['write_ms']:.1f} | "
                  f"{med['read_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
