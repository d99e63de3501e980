"""``edgepad record SOURCE_URI --out DIR [--frames N | --seconds S]``: record a session for ``replay://DIR``."""
from __future__ import annotations

from edgepad.commands.common import positive_float, positive_int, verdict
from edgepad.drivers.replay import record
from edgepad.errors import ConfigError


def add_record_arguments(parser) -> None:
    parser.add_argument("source", metavar="SOURCE_URI",
                        help="what to record: synthetic://default?seed=3, realsense://SERIAL, x.bag, x.db3, "
                             "uvc:///dev/video2?rig=rig.json, replay://DIR")
    parser.add_argument("--out", required=True, help="session directory to write (replay it with replay://DIR)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--frames", type=positive_int, help="stop once every stream has N frames")
    amount.add_argument("--seconds", type=positive_float, help="stop after S seconds of stream time")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing session in --out")
    parser.add_argument("--format", choices=("png", "npy"), default="png",
                        help="frame encoding: png (lossless, ~3.8x smaller; default) or npy (raw)")
    parser.add_argument("--timeout", type=positive_float, default=5.0,
                        help="give up after this many seconds without a frame")


def record_main(args) -> int:
    if args.frames is not None and args.frames <= 0:
        raise ConfigError("--frames must be > 0", key="frames")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError("--seconds must be > 0", key="seconds")
    summary = record(args.source, args.out, frames=args.frames, seconds=args.seconds, overwrite=args.overwrite,
                     timeout_s=args.timeout, encoding=args.format)
    per = ", ".join(f"{m} {n}" for m, n in summary["frames"].items()) or "no frames"
    print(f"recorded {per} ({summary['duration_s']:.2f} s of stream time, {summary['bytes'] / 1e6:.1f} MB "
          f"{summary['encoding']}) to {summary['out']}")
    if summary["dropped"]:
        lost = ", ".join(f"{m} {n}" for m, n in summary["dropped"].items())
        print(f"warning: the source dropped frames while recording ({lost}): the writer could not keep up; "
              f"--format npy writes at disk speed")
    print(f"play it back with: replay://{summary['out']}")
    return verdict(args, True, f"recorded {per} ({summary['duration_s']:.2f} s of stream time)", [summary["out"]])
