"""``edgepad benchmark``: generate the synthetic benchmark, train + evaluate the matrix, write the tables.

Light module: the implementation (:mod:`edgepad.benchmark`) is imported when the command runs.
"""
from __future__ import annotations

import argparse
import logging
import shlex

from edgepad.commands.common import positive_int, verdict
from edgepad.errors import UsageError


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("matrix", help="benchmark matrix (YAML), e.g. configs/benchmark/matrix.yaml")
    parser.add_argument("--out", default="runs/bench",
                        help="output folder: data-<hash>/, runs/, results/ (cache), RESULTS.md (default: %(default)s)")
    parser.add_argument("--seeds", default=None,
                        help="comma list of training seeds for every experiment, e.g. 0,1,2 (default: the matrix's)")
    parser.add_argument("--quick", action="store_true",
                        help="apply the matrix's `quick` overrides: tiny data, tiny models, one epoch (smoke runs)")
    parser.add_argument("--data", default=None,
                        help="benchmark folder to reuse or generate into (must match the matrix's data config hash)")
    parser.add_argument("--only", default=None, help="comma list of experiments to run (default: all)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads per training run")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite the tables from the cached results (missing ones: not measured)")
    parser.add_argument("--doc", default=None,
                        help="also replace the generated section of this Markdown file (e.g. docs/RESULTS.md)")


def benchmark_main(args: argparse.Namespace) -> int:
    """Run the benchmark matrix; prints progress and where the tables went."""
    def progress(msg: str) -> None:
        print(msg, flush=True)

    # per-run chatter (coarse operating points on small dev folds, dev-criterion fallbacks) stays out of the log,
    # for this command only (the levels are restored: an embedding process keeps its own)
    quiet = {name: logging.getLogger(name) for name in ("edgepad.training", "edgepad.metrics")}
    saved = {name: lg.level for name, lg in quiet.items()}
    for lg in quiet.values():
        lg.setLevel(logging.ERROR)
    try:
        return _run(args, progress)
    finally:
        for name, lg in quiet.items():
            lg.setLevel(saved[name])


def _run(args: argparse.Namespace, progress) -> int:
    from edgepad.benchmark import run_benchmark
    try:
        seeds = None if args.seeds is None else [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be a comma list of integers, e.g. 0,1,2; got {args.seeds!r}") from None
    only = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    command = _command_line(args)
    res = run_benchmark(args.matrix, args.out, quick=args.quick, seeds=seeds, data_dir=args.data,
                        experiments=only, threads=args.threads, doc=args.doc, command=command, progress=progress,
                        report_only=args.report_only)
    print(f"{len(res.records)} results ({res.evaluated} evaluated, {res.cached_evals} from the cache, "
          f"{res.trained} training runs) in {res.seconds:.0f} s; data hash {res.data_hash[:12]}")
    return verdict(args, True, f"{len(res.records)} results", [res.out / "RESULTS.md", res.out / "results.json",
                                                                args.doc])


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (recorded with the tables)."""
    parts = ["edgepad", "benchmark", args.matrix, "--out", args.out]
    for flag, value in (("--seeds", args.seeds), ("--data", args.data), ("--only", args.only),
                        ("--threads", args.threads), ("--doc", args.doc)):
        if value is not None:
            parts += [flag, str(value)]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "report_only", False):
        parts.append("--report-only")
    return " ".join(shlex.quote(str(p)) for p in parts)
