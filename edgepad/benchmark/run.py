"""The synthetic PAD benchmark run: generate data, train the matrix, evaluate, write the tables (see the package
docstring of :mod:`edgepad.benchmark`)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from edgepad.benchmark.chart import CHART_PNG, acer_chart
from edgepad.benchmark.matrix import (MatrixConfig, data_hash, dataset_config, expand_protocols, git_revision,
                                      load_matrix, meta_hash, sha)
from edgepad.benchmark.runs import ensure_data, ensure_trained, protocol_rows, run_key, train_rows_hash
from edgepad.benchmark.scoring import evaluate_run
from edgepad.benchmark.tables import render_tables, update_doc
from edgepad.errors import ConfigError, DatasetError, EdgePadError

log = logging.getLogger(__name__)

RESULT_VERSION = 2


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced."""

    out: Path
    data_root: Path
    data_hash: str
    records: list[dict]
    markdown: str
    trained: int = 0
    cached_evals: int = 0
    evaluated: int = 0
    seconds: float = 0.0


def plan(cfg: MatrixConfig, protocols_available: Sequence[str]) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """The (preset, protocol, seed, subsets) evaluations the experiments need, deduplicated, in run order."""
    jobs: list[tuple[str, str, int, tuple[str, ...]]] = []
    for e in cfg.experiments:
        for seed in (e.seeds or cfg.seeds):
            for proto in expand_protocols(e.protocols, protocols_available):
                for m in e.models:
                    j = (m, proto, int(seed), tuple(e.subsets))
                    if j not in jobs:
                        jobs.append(j)
    return jobs


def run_benchmark(matrix: Path | str | MatrixConfig, out: Path | str, *, quick: bool = False,
                  seeds: Sequence[int] | None = None, data_dir: Path | str | None = None,
                  experiments: Sequence[str] | None = None, threads: int | None = None, doc: Path | str | None = None,
                  command: str | None = None, progress: Callable[[str], None] | None = None,
                  report_only: bool = False) -> BenchmarkResult:
    """Generate, train, evaluate and write the tables (see the module docstring).

    Args:
        matrix: the matrix file (or a loaded :class:`MatrixConfig`).
        out: output folder (data, runs, results cache, RESULTS.md).
        quick: apply the matrix's ``quick`` overrides.
        seeds: override the seeds (every experiment).
        data_dir: reuse / generate the benchmark here instead of ``<out>/data-<hash>``.
        experiments: run only these experiments.
        threads: torch threads per training run.
        doc: a Markdown file whose generated section is replaced by the tables (e.g. ``docs/RESULTS.md``).
        command: the command line recorded with the tables.
        progress: called with one-line status messages.
        report_only: train and evaluate nothing: write the tables from the cached results (missing = not
            measured). The data folder must exist already.
    """
    t0 = time.perf_counter()
    cfg = matrix if isinstance(matrix, MatrixConfig) else load_matrix(matrix, quick=quick)
    if seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(int(s) for s in seeds),
                                  experiments=tuple(dataclasses.replace(e, seeds=None) for e in cfg.experiments))
    if experiments:
        unknown = [x for x in experiments if x not in {e.name for e in cfg.experiments}]
        if unknown:
            raise ConfigError(f"unknown experiments {unknown}; known {[e.name for e in cfg.experiments]}",
                              key="experiments")
        cfg = dataclasses.replace(cfg, experiments=tuple(e for e in cfg.experiments if e.name in experiments))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: log.info("%s", msg))
    if report_only:
        h = data_hash(cfg.data)
        root = Path(data_dir) if data_dir else out / f"data-{h[:12]}"
        if not (root / "meta.json").is_file():
            raise DatasetError(f"--report-only: no generated benchmark at {root}; run without it first")
        meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
        dhash = meta_hash(meta)
        if dhash != h:
            raise DatasetError(f"--report-only: {root} was generated with another config")
    else:
        root, dhash, meta = ensure_data(cfg, out, Path(data_dir) if data_dir else None, say)
    available = list(meta.get("protocols", []))
    jobs = plan(cfg, available)
    res_dir = out / "results"
    res_dir.mkdir(exist_ok=True)
    records: list[dict] = []
    stats = {"trained": 0, "cached": 0, "evaluated": 0}
    for i, (preset, proto, seed, subsets) in enumerate(jobs):
        tproto = cfg.models[preset].get("train_on") or proto     # the protocol whose train + dev rows are used
        rows = train_rows_hash(root, tproto)
        key = run_key(cfg, preset, seed, dhash, rows)
        ident = {"run": key, "protocol": proto, "eval_rows": sha(protocol_rows(root, proto)),
                 "subsets": list(subsets), "criterion": cfg.criterion, "rule": cfg.threshold_rule,
                 "level": cfg.level, "version": RESULT_VERSION}
        if tproto != proto:
            ident["dev_protocol"] = tproto
        ekey = sha(ident)
        cache = res_dir / f"{preset}-{proto}-s{seed}-{ekey[:12]}.json"
        if cache.is_file():
            rec = json.loads(cache.read_text(encoding="utf-8"))
            stats["cached"] += 1
            records.append(rec)
            continue
        if report_only:
            continue
        say(f"[{i + 1}/{len(jobs)}] {preset} / {proto} / seed {seed}" + (f" / {','.join(subsets)}" if subsets else ""))
        run_dir, info = ensure_trained(cfg, preset, seed, root, dhash, tproto, out, threads, say)
        if not info.get("_reused"):
            stats["trained"] += 1
        te = time.perf_counter()
        try:
            ev = evaluate_run(run_dir, root, proto, subsets, cfg.criterion, cfg.level,
                              int(cfg.train.get("eval_batch_size", 128)), rule=cfg.threshold_rule,
                              dev_protocol=tproto)
        except (EdgePadError, ValueError) as exc:
            ev = {"protocol": proto, "error": f"{type(exc).__name__}: {exc}", "subsets": {}}
        rec = {"preset": preset, "protocol": proto, "seed": seed, "subsets_requested": list(subsets),
               "run": run_dir.name, "run_key": key, "data_hash": dhash, "train": {k: v for k, v in info.items()
                                                                                   if not k.startswith("_")},
               "eval_s": time.perf_counter() - te, **ev}
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rec, indent=1, default=float) + "\n", encoding="utf-8")
        tmp.replace(cache)
        stats["evaluated"] += 1
        records.append(rec)
        if "error" in ev:
            say(f"  evaluation failed: {ev['error']}")
        else:
            subs = ev["subsets"]
            first = subs.get("P4", subs.get("full", next(iter(subs.values()), {})))
            if "acer" in first:
                say(f"  ACER {100 * first['acer']:.2f} % (APCER {100 * first['apcer']:.2f} %, "
                    f"BPCER {100 * first['bpcer']:.2f} %) τ from dev ({cfg.criterion}, rule {cfg.threshold_rule})")
    context = {"command": command or f"edgepad benchmark {matrix if not isinstance(matrix, MatrixConfig) else ''}",
               "git": git_revision(), "data_hash": dhash, "data_root": str(root), "quick": quick,
               "seeds": list(cfg.seeds), "data": dataset_config(cfg.data), "train": cfg.train, "models": cfg.models,
               "criterion": cfg.criterion, "threshold_rule": cfg.threshold_rule, "level": cfg.level, "meta": meta}
    md = render_tables(cfg, records, context)
    (out / "RESULTS.md").write_text(md, encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"context": {k: v for k, v in context.items()
                                                              if k not in ("meta", "data")},
                                                  "records": records}, indent=1, default=str) + "\n",
                                      encoding="utf-8")
    acer_chart(records, out / CHART_PNG)                   # skipped without matplotlib
    if doc is not None:
        update_doc(Path(doc), md)
    return BenchmarkResult(out, root, dhash, records, md, stats["trained"], stats["cached"], stats["evaluated"],
                           time.perf_counter() - t0)
