"""``edgepad bench`` (also ``python -m edgepad.bench``): on-device benchmark (per-stage latency, fps, drops,
resources, components, compare). The only place where bench arguments become a
:class:`~edgepad.bench.DeviceBenchConfig`.

Light module: the implementation (:mod:`edgepad.bench`) is imported when the command runs, so ``edgepad --help``
stays numpy-only and fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgepad.commands.common import nonneg_float, nonneg_int, positive_float, positive_int, verdict

if TYPE_CHECKING:
    from edgepad.bench import DeviceBenchConfig


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgepad bench``."""
    parser.add_argument("--source", default="synthetic://default",
                        help="source URI (synthetic://default, a .bag/.db3/replay:// recording, realsense://SERIAL)")
    parser.add_argument("--model", default=None,
                        help="model artifact (.onnx/.engine/.pt with its manifest); default: the embedded model")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "trt", "torch"))
    parser.add_argument("--warmup-s", type=nonneg_float, default=3.0,
                        help="warm-up seconds (their decisions are discarded)")
    parser.add_argument("--budget-s", type=positive_float, default=20.0, help="measurement seconds")
    parser.add_argument("--frames", type=nonneg_int, default=0,
                        help="stop after this many measured decisions (0 = the time budget decides)")
    parser.add_argument("--clip-outliers", nargs="?", type=positive_float, const=3.0, default=None, metavar="K",
                        help="also report figures after one pass of K-sigma clipping (K = 3 when omitted)")
    parser.add_argument("--locator", default="learned",
                        help="face locator: learned (default), haar, truth (synthetic), fixed:x,y,w,h")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="ONNX Runtime intra-op threads (default: all)")
    parser.add_argument("--threaded", action="store_true", help="run the pipeline in its threaded mode")
    parser.add_argument("--out", default="bench-out", help="output folder (bench.json, bench.md, PNG plots)")
    parser.add_argument("--components", action="store_true",
                        help="also run the component benchmarks: registration vs rs.align, FP32/FP16/INT8 per "
                             "backend, GFLOP/s vs peak, model table")
    parser.add_argument("--component-s", type=positive_float, default=2.0, help="seconds per component measurement")
    parser.add_argument("--compare", nargs=2, metavar=("A_JSON", "B_JSON"), default=None,
                        help="compare two bench.json runs (ratios B/A per stage) and exit")
    parser.add_argument("--soak-min", type=nonneg_float, default=0.0,
                        help="thermal soak: measure for N minutes (replaces --budget-s), p99 per minute")
    parser.add_argument("--soak-bucket-s", type=positive_float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--peak-gflops", type=positive_float, default=None, help="override the CPU FP32 peak estimate")
    parser.add_argument("--results", action="append", default=[], metavar="METRICS_JSON",
                        help="metrics.json of `edgepad evaluate` runs: ACER in the model table (repeatable)")
    parser.add_argument("--table-model", action="append", default=[], metavar="ONNX",
                        help="further ONNX artifacts for the model table (repeatable)")
    parser.add_argument("--no-seed-models", action="store_true",
                        help="leave the seed methods out of the model table")
    parser.add_argument("--int8-samples", type=positive_int, default=16,
                        help="calibration feeds of the INT8 timing variant")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--json", action="store_true", help="print bench.json on stdout instead of the Markdown")


def config_from_args(args: argparse.Namespace) -> "DeviceBenchConfig":
    """The :class:`~edgepad.bench.DeviceBenchConfig` of parsed ``edgepad bench`` arguments."""
    from edgepad.bench import DeviceBenchConfig
    return DeviceBenchConfig(
        source=args.source, model=args.model, backend=args.backend, warmup_s=args.warmup_s, budget_s=args.budget_s,
        frames=args.frames, clip_k=args.clip_outliers, locator=args.locator, threads=args.threads,
        threaded=args.threaded, components=args.components, component_s=args.component_s, soak_min=args.soak_min,
        soak_bucket_s=args.soak_bucket_s, peak_gflops=args.peak_gflops, results=tuple(args.results),
        table_models=tuple(args.table_model), seed_models=not args.no_seed_models, int8_samples=args.int8_samples,
        plots=not args.no_plots)


def phase_printer(stream=None):
    """``bench: <phase>`` lines on stderr, one per phase (plain lines: no bar, also in logs and CI)."""
    def say(line: str) -> None:
        print(f"bench: {line}", file=stream or sys.stderr, flush=True)
    return say


def bench_main(args: argparse.Namespace) -> int:
    """Run ``edgepad bench`` (or ``--compare``); prints the Markdown report."""
    from edgepad.bench import compare_files, run_bench, to_markdown
    if args.compare:
        out = args.out if args.out != "bench-out" else None
        doc, md = compare_files(args.compare[0], args.compare[1], out)
        print(json.dumps(doc, indent=2, default=str) if args.json else md)
        return verdict(args, True, f"compared {args.compare[1]} against {args.compare[0]}", [out])
    doc = run_bench(config_from_args(args), args.out, progress=phase_printer())
    print(json.dumps(doc, indent=2, default=str) if args.json else to_markdown(doc))
    return verdict(args, True, "measured (figures above)", [Path(args.out) / "bench.json", Path(args.out) / "bench.md"])
