"""``edgepad demo`` and ``edgepad run``: the liveness runtime on the console.

Argument declarations, and the one place where parsed arguments become the runtime's typed settings
(:func:`policy_config`, :func:`pipeline_config`), shared with ``edgepad serve``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edgepad.commands.common import nonneg_int, positive_float, positive_int, verdict
from edgepad.runtime import PipelineConfig, PolicyConfig
from edgepad.runtime.console import DemoOptions, RunOptions, run_console, run_demo

DEFAULT_MODEL = "edgepad/assets/default.onnx"


def add_policy_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Face locator, decision-policy and backend options shared by ``demo``, ``run`` and ``serve``."""
    parser.add_argument("--locator", default="learned",
                        help="face locator: learned (default; MTCNN with landmarks), haar, truth (synthetic sources "
                             "only), fixed:x,y,w,h")
    parser.add_argument("--operating-point", default=None,
                        help="manifest operating point (threshold criterion), e.g. bpcer20; default: the manifest's")
    parser.add_argument("--k", type=positive_int, default=3, help="live votes needed among the last n (default 3)")
    parser.add_argument("--n", type=positive_int, default=5, help="vote window in frames (default 5)")
    parser.add_argument("--max-age-ms", type=positive_float, default=150.0, help="staleness limit in ms (default 150)")
    parser.add_argument("--lockout-after", type=nonneg_int, default=0,
                        help="lock out after N consecutive spoof attempts (0 = never)")
    parser.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--threaded", action="store_true",
                        help="threaded pipeline (capture / inference / decision threads, drop-oldest queues)")
    parser.add_argument("--clock", choices=("auto", "host", "source"), default="auto",
                        help="frame-time check: host (live cameras), source (recordings played as fast as "
                             "possible), auto (default: per frame set; docs/RELIABILITY.md)")
    parser.add_argument("--max-skew-ms", type=positive_float, default=250.0,
                        help="largest forward step of a source clock beyond the host time between reads (default 250)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_policy_arguments(parser)
    parser.add_argument("--every", type=positive_int, default=1, help="print every N-th decision (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per decision instead of text")
    parser.add_argument("--events", action="store_true",
                        help="print presentation events (started / decided live|spoof / ended): one decision per "
                             "person; with --json as JSON objects")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=positive_int, default=300, help="frame sets to process (default 300)")
    parser.add_argument("--model", default=None,
                        help=f"model artifact with its sidecar manifest (default: the embedded {DEFAULT_MODEL})")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="synthetic scene seed (default 0)")
    parser.add_argument("--realtime", action="store_true", help="pace the synthetic camera to its frame rate")
    parser.add_argument("--fps", type=positive_float, default=30.0, help="synthetic frame rate (default 30)")
    parser.add_argument("--presentation-frames", type=positive_int, default=45,
                        help="frame sets per presentation (default 45)")
    _add_common(parser)


def policy_config(args: argparse.Namespace) -> PolicyConfig:
    """The decision policy from the options of :func:`add_policy_arguments`."""
    return PolicyConfig(operating_point=args.operating_point, k=args.k, n=args.n, max_age_ms=args.max_age_ms,
                        lockout_after=args.lockout_after)


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline settings (policy, threaded, clock) from the options of :func:`add_policy_arguments`."""
    return PipelineConfig(policy=policy_config(args), threaded=bool(args.threaded), clock=args.clock,
                          max_skew_ms=args.max_skew_ms)


def source_uri(args: argparse.Namespace) -> str | list[str]:
    """The ``SOURCE_URI`` argument(s): one URI, or a list of them (one per camera)."""
    return args.source[0] if len(args.source) == 1 else list(args.source)


def console_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`~edgepad.runtime.console.ConsoleOptions` fields that ``demo`` and ``run`` share."""
    return dict(model=Path(args.model) if args.model else None, locator=args.locator, threads=args.threads,
                pipeline=pipeline_config(args), every=args.every, json=bool(args.json), events=bool(args.events))


def demo_options(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(**console_kwargs(args), frames=args.frames, seed=args.seed, realtime=bool(args.realtime),
                       fps=args.fps, presentation_frames=args.presentation_frames)


def demo_main(args: argparse.Namespace) -> int:
    ok = run_demo(demo_options(args)) == 0
    return verdict(args, ok, "most bona fide and most attack presentations got the right verdict" if ok else
                   "most bona fide or most attack presentations got the wrong verdict (table above)")


def add_source_arguments(parser: argparse.ArgumentParser, default_model: bool = False) -> None:
    """Sources, model, rig and stream rate: shared by ``edgepad run`` and ``edgepad serve``."""
    parser.add_argument("source", nargs="+", metavar="SOURCE_URI",
                        help="source URI(s): realsense://SERIAL, file.bag, replay://DIR, synthetic://default?seed=1")
    if default_model:
        parser.add_argument("--model", default=None, help="model artifact (.onnx, .engine, .pt) with its manifest "
                            f"(default: the embedded {DEFAULT_MODEL})")
    else:
        parser.add_argument("--model", required=True, help="model artifact (.onnx, .engine, .pt) with its manifest")
    parser.add_argument("--rig", default=None, help="rig file (JSON/YAML) from edgepad calibrate")
    parser.add_argument("--fps", type=positive_float, default=None, help="stream rate for the sync tolerance")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser, default_model=True)
    parser.add_argument("--frames", type=nonneg_int, default=0,
                        help="stop after N frame sets (0 = until the stream ends)")
    parser.add_argument("--sync-tolerance-ms", type=positive_float, default=None,
                        help="max time between the frames of a set in ms (default: half the slowest stream's period)")
    _add_common(parser)


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(**console_kwargs(args), source=source_uri(args), rig=args.rig, fps=args.fps,
                      sync_tolerance_ms=args.sync_tolerance_ms, frames=args.frames)


def run_main(args: argparse.Namespace) -> int:
    ok = run_console(run_options(args)) == 0
    return verdict(args, ok, "the stream ended; counters above" if ok else "the run failed; counters above")
