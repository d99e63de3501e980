"""``edgepad calibrate``: boards, offline and live calibration, RealSense factory import, rig comparison.

Light module: argparse → typed options (``SolveOptions``, ``CompareTolerance``...) and the printing live here; the
library (``edgepad.calibration``, OpenCV, pyrealsense2) is imported inside the subcommand functions.
Exit codes: 0 go, 1 error, 2 usage, 3 no-go verdict or ``compare --fail-over`` beyond tolerance.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from edgepad.commands.common import nonneg_float, positive_float, positive_int, verdict

#: exit code of a calibration whose verdict is no-go (and of ``compare --fail-over`` beyond tolerance)
NO_GO_EXIT = 3


def _solve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="board file (YAML/JSON), see `edgepad calibrate board`")
    p.add_argument("--out", required=True, help="rig file to write (.json or .yaml)")
    p.add_argument("--report", default=None, help="folder for the visual report (PNG pages + index.html)")
    p.add_argument("--fix-k3", action="store_true", help="keep k3 = 0 (few views or narrow lenses)")
    p.add_argument("--zero-tangent", action="store_true", help="keep p1 = p2 = 0")
    p.add_argument("--min-views", type=positive_int, default=4, help="fewer usable views per camera is an error (4)")
    p.add_argument("--drop-outliers", action="store_true", help="re-solve without views flagged as outliers")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fixed-intrinsics", action="store_true",
                   help="solve the IR→RGB extrinsics with intrinsics fixed (default: refine jointly only when that "
                        "lowers the transfer error of held-back pairs)")
    g.add_argument("--refine-intrinsics", action="store_true",
                   help="always refine both cameras' intrinsics jointly with the extrinsics")
    p.add_argument("--prior", default=None,
                   help="rig file with the expected focal lengths (e.g. from import-realsense) for the verdict")
    p.add_argument("--no-depth", action="store_true",
                   help="do not add a depth camera equal to the IR camera (use when IR is a separate UVC camera)")
    p.add_argument("--depth-scale", type=positive_float, default=0.001, help="metres per raw depth unit (0.001)")


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="calib_command", metavar="SUBCOMMAND")
    b = sub.add_parser("board", help="write a board file and/or render a printable board (PNG/PDF, true scale)")
    b.add_argument("--spec", default=None, help="board file to read (default: the built-in ChArUco 5x7)")
    b.add_argument("--kind", choices=("charuco", "chessboard"), default=None)
    b.add_argument("--squares", default=None, help="squares as XxY, e.g. 5x7")
    b.add_argument("--square-mm", type=positive_float, default=None)
    b.add_argument("--marker-mm", type=positive_float, default=None)
    b.add_argument("--dictionary", default=None, help="e.g. DICT_6X6_250")
    b.add_argument("--legacy-pattern", action="store_true", help="OpenCV < 4.6 layout for even row counts")
    b.add_argument("--write-spec", default=None, help="also write the (possibly edited) board file here")
    b.add_argument("--out", default=None, help="printable board: .png or .pdf")
    b.add_argument("--dpi", type=positive_float, default=300.0)
    b.add_argument("--paper", choices=("a4", "letter"), default=None,
                   help="fit the board to this sheet with margins (square size chosen unless --square-mm; "
                        "stated on the sheet)")

    o = sub.add_parser("offline", help="calibrate from folders of board images (RGB and IR paired by file name)")
    o.add_argument("--rgb", required=True, help="folder of RGB images (the reference camera)")
    o.add_argument("--ir", default=None, help="folder of IR images (same names as RGB, e.g. rgb_0001 ↔ ir_0001)")
    o.add_argument("--depth", default=None, help="optional folder of 16-bit depth PNGs in the IR camera (overlay)")
    _solve_flags(o)

    c = sub.add_parser("capture", help="collect board views live (or from a recording) with guidance, then solve")
    c.add_argument("--source", action="append", required=True,
                   help="source URI (realsense://SERIAL, x.bag, uvc:///dev/video2, replay://DIR); repeatable")
    c.add_argument("--views", type=positive_int, default=20, help="views to collect (20)")
    c.add_argument("--emitter", choices=("off", "on"), default="off",
                   help="RealSense projector during capture (off: the dot pattern disturbs IR corners)")
    c.add_argument("--save-views", default=None, help="write accepted views to this folder (rgb/, ir/, depth/)")
    c.add_argument("--max-seconds", type=nonneg_float, default=0.0, help="stop after this long (0 = until --views)")
    c.add_argument("--no-window", action="store_true", help="console guidance only, even with a display")
    _solve_flags(c)

    r = sub.add_parser("import-realsense", help="write a RealSense device's factory calibration as a rig file")
    r.add_argument("device", help="serial number of a connected camera, or a .bag/.db3 recording")
    r.add_argument("--out", required=True, help="rig file to write (.json or .yaml)")

    k = sub.add_parser("compare", help="compare two rig files (focal %%, principal point px, rotation deg, t mm)")
    k.add_argument("a", help="reference rig (e.g. the factory calibration)")
    k.add_argument("b", help="rig to compare (e.g. a new calibration)")
    k.add_argument("--json", action="store_true", help="print JSON instead of a table")
    k.add_argument("--fail-over", action="store_true",
                   help=f"exit {NO_GO_EXIT} when a difference is beyond tolerance (the flags below)")
    k.add_argument("--focal-pct", type=positive_float, default=1.0, help="focal length tolerance, %% (1)")
    k.add_argument("--principal-px", type=positive_float, default=5.0, help="principal point tolerance, px (5)")
    k.add_argument("--rotation-deg", type=positive_float, default=0.5, help="rotation tolerance, deg (0.5)")
    k.add_argument("--translation-mm", type=positive_float, default=2.0, help="translation tolerance, mm (2)")
    parser.set_defaults(_calib_parser=parser)


def calibrate_main(args: argparse.Namespace) -> int:
    cmd = getattr(args, "calib_command", None)
    if not cmd:
        args._calib_parser.print_help()
        return 2
    rc = int(_SUBCOMMANDS[cmd](args) or 0)
    written = [getattr(args, k, None) for k in ("out", "write_spec", "report", "save_views")]
    what = {"board": "board ready", "compare": "rigs compared"}.get(cmd, "rig ready")
    why = what if rc == 0 else ("no-go verdict or beyond tolerance (see above)" if rc == NO_GO_EXIT
                                else f"{cmd} failed (see above)")
    verdict(args, rc == 0, why, written if rc == 0 else ())
    return rc


def _options(args: argparse.Namespace):
    from edgepad.calibration.tool import SolveOptions
    from edgepad.errors import ConfigError
    from edgepad.geometry import load_rig
    if args.min_views < 3:
        raise ConfigError("--min-views must be >= 3", key="min_views")
    refine = False if args.fixed_intrinsics else True if args.refine_intrinsics else None
    return SolveOptions(fix_k3=args.fix_k3, zero_tangent=args.zero_tangent, min_views=args.min_views,
                        drop_outliers=args.drop_outliers, refine_intrinsics=refine,
                        depth_from_ir=not args.no_depth, depth_scale_m=args.depth_scale,
                        prior=load_rig(args.prior) if args.prior else None)


def _finish(run, args: argparse.Namespace) -> int:
    from edgepad.geometry import rig_summary, save_rig
    save_rig(run.rig, args.out)
    print(f"rig written: {args.out}")
    print(rig_summary(run.rig))
    for m, r in run.mono.items():
        line = f"{m.value}: rms {r.rms_px:.3f} px over {len(r.names)} views"
        if r.outliers:
            line += f"; outliers {', '.join(f'{n} ({e:.2f} px)' for n, e in r.outliers.items())}" + \
                (" dropped" if r.dropped else " kept (use --drop-outliers)")
        print(line)
    st = run.stereo
    if st is not None:
        how = "refined jointly" if st.refined else "fixed"
        if st.holdout_px:
            how += (f" (held-back transfer px: fixed {st.holdout_px['fixed']:.3f}, "
                    f"refined {st.holdout_px['refined']:.3f})")
        print(f"stereo ir->rgb: rms {st.rms_px:.3f} px, epipolar {st.epipolar_px:.3f} px over {len(st.names)} "
              f"pairs; intrinsics {how}")
    for n, why in run.rejected.items():
        print(f"  view {n}: {why}")
    if args.report:
        from edgepad.calibration.report import write_report
        print(f"report: {write_report(run, args.report, args.out)}")
    print(run.verdict.text())
    if not run.verdict.go:
        print(f"NO-GO: do not deploy {args.out}; fix the failed checks and calibrate again", file=sys.stderr)
        return NO_GO_EXIT
    return 0


def _board(args: argparse.Namespace) -> int:
    from edgepad.calibration.board import BoardSpec, board_caption, fit_to_paper, load_board, save_board, write_board
    from edgepad.errors import ConfigError
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
    if args.paper and not args.square_mm:
        spec = fit_to_paper(spec, args.paper)
    if not (args.out or args.write_spec):
        print(json.dumps(spec.to_dict(), indent=2))
        return 0
    if args.write_spec:
        save_board(spec, args.write_spec)
        print(f"board file written: {args.write_spec}")
    if args.out:
        write_board(spec, args.out, dpi=args.dpi, paper=args.paper)
        w, h = spec.size_m
        print(f"board written: {args.out} ({w * 1000:.0f} x {h * 1000:.0f} mm + 10 mm margin"
              + (f" on {args.paper}" if args.paper else "") + f"); {board_caption(spec, args.paper)} "
              f"Measure one square: it must be {spec.square_m * 1000:g} mm")
    return 0


def _offline(args: argparse.Namespace) -> int:
    from edgepad.calibration.board import load_board
    from edgepad.calibration.tool import calibrate_rig, load_folder_views
    spec = load_board(args.board)
    views = load_folder_views(args.rgb, args.ir, args.depth)
    print(f"{len(views)} views from {args.rgb}" + (f" + {args.ir}" if args.ir else ""))
    return _finish(calibrate_rig(views, spec, _options(args), {"mode": "offline"}), args)


def _show(window: list, images) -> None:
    """Tile the candidate images in an OpenCV window (console only on a headless build or without a display)."""
    try:
        import cv2
        import numpy as np
        tiles = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else cv2.cvtColor(
            img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
            for img in images.values()]
        h = min(t.shape[0] for t in tiles)
        cv2.imshow("edgepad calibrate", np.hstack([cv2.resize(t, (t.shape[1] * h // t.shape[0], h)) for t in tiles]))
        cv2.waitKey(1)
    except Exception:  # headless OpenCV build or no usable display
        window[0] = False


def _capture(args: argparse.Namespace) -> int:
    from edgepad.calibration.board import load_board
    from edgepad.calibration.capture import CaptureConfig, capture_views
    from edgepad.calibration.tool import calibrate_rig, save_views
    from edgepad.drivers.registry import open_source, parse_uri
    spec = load_board(args.board)
    sources = []
    for uri in args.source:
        scheme, location, _ = parse_uri(uri)
        opts = {}
        if scheme == "realsense" and Path(location).suffix.lower() not in (".bag", ".db3"):
            opts["emitter"] = args.emitter == "on"
        sources.append(open_source(uri, **opts))
    window = [(not args.no_window) and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))]

    def on_update(collector, images) -> None:
        if images is None:
            return
        sys.stdout.write("\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n")
        print(collector.coverage.text(args.views), flush=True)
        if window[0]:
            _show(window, images)

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


def _import_realsense(args: argparse.Namespace) -> int:
    from edgepad.calibration.tool import import_realsense
    from edgepad.geometry import rig_summary, save_rig
    rig = import_realsense(args.device)
    save_rig(rig, args.out)
    print(f"rig written: {args.out}")
    print(rig_summary(rig))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from edgepad.calibration.tool import CompareTolerance, compare_rigs, exceeded, format_comparison
    from edgepad.geometry import load_rig
    cmp = compare_rigs(load_rig(args.a), load_rig(args.b))
    tol = CompareTolerance(args.focal_pct, args.principal_px, args.rotation_deg, args.translation_mm)
    over = exceeded(cmp, tol)
    if args.json:
        print(json.dumps({"differences": cmp, "beyond_tolerance": over}, indent=2))
    else:
        print(format_comparison(cmp))
        print("beyond tolerance: " + ("; ".join(over) if over else "none"))
    return NO_GO_EXIT if (over and args.fail_over) else 0


_SUBCOMMANDS = {"board": _board, "offline": _offline, "capture": _capture, "import-realsense": _import_realsense,
                "compare": _compare}
