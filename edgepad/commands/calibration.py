"""``edgepad calibrate``: boards, offline and live calibration, RealSense factory import, rig comparison.

Light module: the implementation (OpenCV, pyrealsense2) is imported inside :func:`calibrate_main`.
"""
from __future__ import annotations

import argparse

from edgepad.commands.common import nonneg_float, positive_float, positive_int, verdict


def _solve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="board file (YAML/JSON), see `edgepad calibrate board`")
    p.add_argument("--out", required=True, help="rig file to write (.json or .yaml)")
    p.add_argument("--report", default=None, help="folder for the visual report (PNG pages + index.html)")
    p.add_argument("--fix-k3", action="store_true", help="keep k3 = 0 (few views or narrow lenses)")
    p.add_argument("--zero-tangent", action="store_true", help="keep p1 = p2 = 0")
    p.add_argument("--min-views", type=positive_int, default=4, help="fewer usable views per camera is an error (4)")
    p.add_argument("--drop-outliers", action="store_true", help="re-solve without views flagged as outliers")
    p.add_argument("--fixed-intrinsics", action="store_true",
                   help="solve the IR→RGB extrinsics with intrinsics fixed (default: refine jointly)")
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
    parser.set_defaults(_calib_parser=parser)


def calibrate_main(args: argparse.Namespace) -> int:
    cmd = getattr(args, "calib_command", None)
    if not cmd:
        args._calib_parser.print_help()
        return 2
    from edgepad.calibration import cli_impl
    ok = int(getattr(cli_impl, cmd.replace("-", "_"))(args) or 0) == 0
    written = [getattr(args, k, None) for k in ("out", "write_spec", "report", "save_views")]
    what = {"board": "board ready", "compare": "rigs compared"}.get(cmd, "rig ready")
    return verdict(args, ok, what if ok else f"{cmd} failed (see above)", written)

