"""Implementation of the ``edgepad calibrate`` subcommands (imported only when the command runs; prints)."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from edgepad.errors import ConfigError
from edgepad.geometry import load_rig, rig_summary, save_rig

from edgepad.calibration.board import BoardSpec, load_board, save_board, write_board
from edgepad.calibration.tool import (SolveOptions, calibrate_rig, compare_rigs, format_comparison,
                                      import_realsense as _import_realsense, load_folder_views, save_views)


def _options(args) -> SolveOptions:
    if args.min_views < 3:
        raise ConfigError("--min-views must be >= 3", key="min_views")
    return SolveOptions(fix_k3=args.fix_k3, zero_tangent=args.zero_tangent, min_views=args.min_views,
                        drop_outliers=args.drop_outliers, refine_intrinsics=not args.fixed_intrinsics,
                        depth_from_ir=not args.no_depth, depth_scale_m=args.depth_scale)


def _finish(run, args) -> int:
    save_rig(run.rig, args.out)
    print(f"rig written: {args.out}")
    print(rig_summary(run.rig))
    for m, r in run.mono.items():
        line = f"{m.value}: rms {r.rms_px:.3f} px over {len(r.names)} views"
        if r.outliers:
            line += f"; outliers {', '.join(f'{n} ({e:.2f} px)' for n, e in r.outliers.items())}" + \
                (" dropped" if r.dropped else " kept (use --drop-outliers)")
        print(line)
    if run.stereo is not None:
        print(f"stereo ir->rgb: rms {run.stereo.rms_px:.3f} px over {len(run.stereo.names)} pairs")
    for n, why in run.rejected.items():
        print(f"  view {n}: {why}")
    if args.report:
        from edgepad.calibration.report import write_report
        path = write_report(run, args.report, args.out)
        print(f"report: {path}")
    return 0


def board(args) -> int:
    spec = load_board(args.spec) if args.spec else BoardSpec()
    changes = {}
    if args.kind:
        changes["kind"] = args.kind
    if args.squares:
        try:
            sx, sy = (int(v) for v in args.squares.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--squares must look like 5x7, got {args.squares!r}", key="squares") from None
        changes.update(squares_x=sx, squares_y=sy)
    if args.square_mm:
        changes["square_m"] = args.square_mm / 1000.0
    if args.marker_mm:
        changes["marker_m"] = args.marker_mm / 1000.0
    if args.dictionary:
        changes["dictionary"] = args.dictionary
    if args.legacy_pattern:
        changes["legacy_pattern"] = True
    spec = replace(spec, **changes) if changes else spec
    if not (args.out or args.write_spec):
        print(json.dumps(spec.to_dict(), indent=2))
        return 0
    if args.write_spec:
        save_board(spec, args.write_spec)
        print(f"board file written: {args.write_spec}")
    if args.out:
        write_board(spec, args.out, dpi=args.dpi)
        w, h = spec.size_m
        print(f"board written: {args.out} ({w * 1000:.0f} x {h * 1000:.0f} mm + 10 mm margin; print at 100 %, "
              f"then measure one square: it must be {spec.square_m * 1000:g} mm)")
    return 0


def offline(args) -> int:
    spec = load_board(args.board)
    views = load_folder_views(args.rgb, args.ir, args.depth)
    print(f"{len(views)} views from {args.rgb}" + (f" + {args.ir}" if args.ir else ""))
    run = calibrate_rig(views, spec, _options(args), {"mode": "offline"})
    return _finish(run, args)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def capture(args) -> int:
    from edgepad.drivers.registry import open_source, parse_uri
    from edgepad.calibration.capture import CaptureConfig, capture_views
    spec = load_board(args.board)
    sources = []
    for uri in args.source:
        scheme, location, _ = parse_uri(uri)
        opts = {}
        if scheme == "realsense" and not Path(location).suffix.lower() in (".bag", ".db3"):
            opts["emitter"] = args.emitter == "on"  # RealSenseSource(emitter=...) (drivers)
        sources.append(open_source(uri, **opts))
    window = [(not args.no_window) and _has_display()]

    def on_update(collector, images):
        if images is None:
            return
        sys.stdout.write("\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n")
        print(collector.coverage.text(args.views), flush=True)
        if window[0]:
            try:
                import cv2
                import numpy as np
                tiles = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else cv2.cvtColor(
                    img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
                    for img in images.values()]
                h = min(t.shape[0] for t in tiles)
                cv2.imshow("edgepad calibrate", np.hstack([cv2.resize(t, (t.shape[1] * h // t.shape[0], h))
                                                          for t in tiles]))
                cv2.waitKey(1)
            except Exception:  # headless OpenCV build or no usable display: console only
                window[0] = False

    for s in sources:
        s.open()
    try:
        collector = capture_views(sources, spec, CaptureConfig(views=args.views, max_seconds=args.max_seconds),
                                  on_update=on_update)
    finally:
        for s in sources:
            s.close()
    print(collector.coverage.text(args.views))
    views = collector.views
    if args.save_views:
        save_views(views, args.save_views)
        print(f"views saved: {args.save_views} (re-run with `edgepad calibrate offline --rgb "
              f"{args.save_views}/rgb --ir {args.save_views}/ir ...`)")
    run = calibrate_rig(views, spec, _options(args), {"mode": "capture", "sources": " ".join(args.source)})
    return _finish(run, args)


def import_realsense(args) -> int:
    rig = _import_realsense(args.device)
    save_rig(rig, args.out)
    print(f"rig written: {args.out}")
    print(rig_summary(rig))
    return 0


def compare(args) -> int:
    cmp = compare_rigs(load_rig(args.a), load_rig(args.b))
    print(json.dumps(cmp, indent=2) if args.json else format_comparison(cmp))
    return 0
