"""The device benchmark's result document: schema check, JSON / Markdown report, PNG plots."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgepad.bench.stats import PERCENTILES
from edgepad.config import json_default
from edgepad.errors import ConfigError, ValidationError
from edgepad.report import headless_pyplot
from edgepad.types import STAGES

log = logging.getLogger(__name__)

SCHEMA = "edgepad.bench/1"
REQUIRED_KEYS = {"schema": str, "created": str, "config": dict, "model": dict, "device": dict, "pipeline": dict,
                 "targets": dict, "versions": dict}
PIPELINE_KEYS = ("decisions", "elapsed_s", "fps", "stages", "e2e", "cost", "drops", "resources", "series")


def check_schema(doc: Mapping[str, Any]) -> None:
    """Raise :class:`ValidationError` unless ``doc`` is a bench result of this schema version."""
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise ValidationError(f"a bench result is a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for k, t in REQUIRED_KEYS.items():
        if not isinstance(doc.get(k), t):
            problems.append(f"{k}: expected {t.__name__}")
    pipe = doc.get("pipeline") if isinstance(doc.get("pipeline"), Mapping) else {}
    for k in PIPELINE_KEYS:
        if k not in pipe:
            problems.append(f"pipeline.{k} missing")
    for s in STAGES:
        st = (pipe.get("stages") or {}).get(s)
        if not isinstance(st, Mapping) or not all(f"p{q}" in st.get("raw", {}) for q in PERCENTILES) or \
                "max" not in st.get("raw", {}):
            problems.append(f"pipeline.stages.{s} lacks raw p50/p90/p99/max")
    man = doc.get("model") if isinstance(doc.get("model"), Mapping) else {}
    if "sha256" not in man or "manifest_sha256" not in man:
        problems.append("model.sha256 / model.manifest_sha256 missing")
    if problems:
        raise ValidationError("not an edgepad bench result: " + "; ".join(problems), report={"problems": problems})


def load_result(path: Path | str) -> dict[str, Any]:
    """Read and check a bench JSON."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read bench result {path}: {exc}", key="compare") from exc
    check_schema(doc)
    return doc


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}"
    return str(v)


def to_markdown(doc: Mapping[str, Any]) -> str:
    """The Markdown report of a bench result: targets (ratios first), stages, components, model table."""
    pipe = doc["pipeline"]
    cpu = doc["device"]["cpu"]
    lines = [f"# edgepad bench — {Path(doc['model']['path']).name} on {doc['config']['source']}", "",
             f"- device: {cpu['model']} ({cpu['cores']} cores, {cpu['isa']}), {doc['device']['platform']}",
             f"- backend: {pipe['backend']} {pipe.get('providers') or ''}; model sha256 "
             f"`{(doc['model'].get('sha256') or '')[:16]}`, manifest sha256 "
             f"`{(doc['model'].get('manifest_sha256') or '')[:16]}`",
             f"- {pipe['decisions']} decisions in {pipe['elapsed_s']:.1f} s after {pipe['warmup_decisions']} warm-up "
             f"decisions: **{_f(pipe['fps'])} fps** sustained (ended by {pipe['ended_by']})", ""]
    if doc.get("targets"):
        lines += ["## Targets (ratios)", "", "| target | ratio | limit | met |", "|---|---|---|---|"]
        for k, t in doc["targets"].items():
            limit = f"≤ {t['target_max']}" if "target_max" in t else f"≥ {t['target_min']}"
            lines.append(f"| {k} | {_f(t['ratio'], 3)} | {limit} | {'yes' if t['met'] else 'NO'} |")
        lines.append("")
    clipped = any("clipped" in v for v in pipe["stages"].values())
    lines += ["## Per-stage latency (ms)", ""]
    head = "| stage | p50 | p90 | p99 | max | mean |" + (" p50 clipped | p99 clipped | removed |" if clipped else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    rows = [(s, pipe["stages"][s]) for s in STAGES] + [("pipeline cost (no capture)", pipe["cost"]),
                                                       (f"end-to-end ({pipe['e2e']['clock']})", pipe["e2e"])]
    for name, st in rows:
        r = st["raw"]
        line = f"| {name} | {_f(r['p50'])} | {_f(r['p90'])} | {_f(r['p99'])} | {_f(r['max'])} | {_f(r['mean'])} |"
        if clipped and "clipped" in st:
            c = st["clipped"]
            line += f" {_f(c['p50'])} | {_f(c['p99'])} | {c['removed']} |"
        lines.append(line)
    lines += ["", f"End-to-end: {pipe['e2e']['definition']}.", ""]
    drops = pipe["drops"]
    sync = drops.get("sync") or {}
    lines += ["## Drops", "", "| stream | sync dropped | sequence gaps | source queue |", "|---|---|---|---|"]
    streams = sorted(set(sync.get("dropped", {})) | set(drops.get("sequence_gaps", {})))
    for m in streams:
        q = sum(v.get(m, 0) for v in drops.get("source_queue", {}).values())
        lines.append(f"| {m} | {sync.get('dropped', {}).get(m, '–')} | {drops['sequence_gaps'].get(m, '–')} | {q} |")
    lines += ["", f"Pipeline queues dropped: {drops.get('pipeline')}; capture timeouts: {pipe['timeouts']}.", ""]
    res = pipe.get("resources") or {}
    if res:
        lines += ["## Resources", "",
                  f"- process CPU: {_f(res.get('process_cpu_cores'))} cores "
                  f"({_f(res.get('process_cpu_pct_of_machine'), 1)} % of {res.get('cores')}); machine busy "
                  f"{_f(res.get('machine_cpu_busy_pct'), 1)} %",
                  f"- RSS: mean {_f((res.get('rss_mib') or {}).get('mean'), 1)} MiB, peak "
                  f"{_f(res.get('peak_rss_mib'), 1)} MiB",
                  f"- GPU: {res.get('gpu_util_pct') or res.get('gpu', '–')}; GPU memory "
                  f"{res.get('gpu_mem_used_mib') or res.get('torch_cuda_max_allocated_mib') or '–'}"]
        if res.get("power_mw"):
            lines.append("- power (tegrastats): " + ", ".join(f"{k} {v['mean']:.0f} mW"
                                                              for k, v in res["power_mw"].items()))
        lines.append("")
    dev = doc["device"]
    if dev.get("jetson"):
        lines += ["## Jetson", "", f"- nvpmodel: `{dev.get('nvpmodel')}`", f"- jetson_clocks: "
                  f"`{str(dev.get('jetson_clocks'))[:300]}`", f"- temperatures: {dev.get('thermal_c')}", ""]
    if pipe.get("soak"):
        lines += ["## Thermal soak", "", "| bucket | start s | fps | total p50 | total p99 | infer p99 | temps |",
                  "|---|---|---|---|---|---|---|"]
        for b in pipe["soak"]:
            lines.append(f"| {b['bucket']} | {b['start_s']:.0f} | {_f(b['fps'])} | {_f(b['total_p50'])} | "
                         f"{_f(b['total_p99'])} | {_f(b['infer_p99'])} | {b.get('temp_c', '–')} |")
        lines.append("")
    comp = doc.get("components")
    if comp:
        lines += _components_md(comp)
    return "\n".join(lines) + "\n"


def _components_md(comp: Mapping[str, Any]) -> list[str]:
    lines = ["## Components (same run)", "", "### Depth registration vs rs.align", "",
             "| frames | ours ms | rs.align ms | ratio | identical px | cv2.rgbd |", "|---|---|---|---|---|---|"]
    reg = comp.get("registration") or {}
    for case in ("source", "source_rsutil", "d435_like"):
        r = reg.get(case)
        if not isinstance(r, Mapping):
            continue
        if "skipped" in r:
            lines.append(f"| {case} | skipped: {r['skipped']} | | | | |")
            continue
        cv = r.get("opencv_rgbd", {})
        cvs = (f"{_f(cv['ms'])} ms, |Δ| p50/p90 {_f(cv['abs_diff_mm_p50'], 1)}/{_f(cv['abs_diff_mm_p90'], 1)} mm, "
               f"coverage {_f(cv['coverage'], 3)}") if "ms" in cv else cv.get("skipped", "–")
        lines.append(f"| {case} {r.get('width')}×{r.get('height')}→{r.get('target')} ({r.get('semantics', 'align')}) | "
                     f"{_f(r.get('ours_ms'))} | "
                     f"{_f(r.get('rs_align_ms'))} | {_f(r.get('ratio'), 3)} | {_f(r.get('identical_fraction'), 5)} | "
                     f"{cvs} |")
    cases = reg.get("cases") or {}
    if cases.get("per_pair"):
        lines += ["", f"Case table (scale {cases.get('scale')}, {', '.join(cases.get('method', []))}; worst lens and "
                      "arithmetic per size pair, medians ours / rs.align):", "",
                  "| size pair | max ratio (thread CPU) | max ratio (wall median) | max ratio (wall min) |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {_f(v['max_cpu_ratio'], 3)} | {_f(v['max_ratio'], 3)} | {_f(v['max_ratio_min'], 3)} |"
                  for k, v in cases["per_pair"].items()]
    lines += ["", f"librealsense: {reg.get('librealsense')}", "", "### Inference per backend and precision (ms)", "",
              "| backend/precision | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
    for k, v in ((comp.get("inference") or {}).get("results") or {}).items():
        if isinstance(v, Mapping) and "latency" in v:
            s = v["latency"]
            lines.append(f"| {k} | {_f(s['p50'], 3)} | {_f(s['p90'], 3)} | {_f(s['p99'], 3)} | {_f(s['max'], 3)} |")
        else:
            why = v.get("skipped") if isinstance(v, Mapping) else v
            lines.append(f"| {k} | skipped: {why} | | | |")
    fr = comp.get("flop_rate") or {}
    lines += ["", "### FLOP rate", "",
              f"- model: {_f(fr.get('model_gflops_per_decision'), 4)} GFLOP per decision (2 × Conv/Gemm/MatMul MACs)",
              f"- achieved (ORT CPU FP32 p50): {_f(fr.get('achieved_gflops'), 1)} GFLOP/s = "
              f"**{_f(fr.get('fraction_of_peak'), 3)} of peak**",
              f"- peak: {fr.get('peak_formula')}",
              f"- numpy BLAS 1024² matmul: {_f(fr.get('blas_gflops'), 1)} GFLOP/s = "
              f"{_f(fr.get('blas_fraction_of_peak'), 3)} of peak", ""]
    table = comp.get("model_table") or []
    if table:
        keys: list[str] = []
        for r in table:
            for k in (r.get("latency_ms") or {}):
                if k not in keys:
                    keys.append(k)
        lines += ["### Model table", "", "| model | params | GFLOP/decision | " + " | ".join(keys) + " | ACER |",
                  "|" + "---|" * (4 + len(keys))]
        for r in table:
            if "skipped" in r:
                lines.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * (2 + len(keys)))
                continue
            lat = r.get("latency_ms") or {}
            cells = [(_f(lat[k], 3) if isinstance(lat.get(k), (int, float)) else "skipped") for k in keys]
            acer = r.get("acer")
            acer_s = _f(acer["acer"], 4) if isinstance(acer, Mapping) else str(acer)
            params = r.get("params")
            lines.append(f"| {r['name']} | {params if params is not None else '–'} | {_f(r.get('gflops'), 4)} | "
                         + " | ".join(cells) + f" | {acer_s} |")
        lines += ["", "Latency cells are p50 ms; 'skipped' reasons are in the JSON.", ""]
    if comp.get("seed_models"):
        lines += [f"Seed models: {comp['seed_models']}", ""]
    return lines


def write_outputs(doc: Mapping[str, Any], out: Path, plots: bool = True) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and (with matplotlib) ``latency_hist.png``, ``latency_cdf.png``,
    ``latency_time.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    paths["md"].write_text(to_markdown(doc))
    if plots:
        paths.update(write_plots(doc, out))
    return paths


def frame_budget_ms() -> float:
    """The per-frame budget of the e2e target (1000 / ``jetson_e2e_fps_min``), ms."""
    from edgepad.bench.run import TARGETS          # run imports this module
    return 1000.0 / TARGETS["jetson_e2e_fps_min"]


def face_mask(series: Mapping[str, Any]) -> np.ndarray:
    """Which decisions had a face: ``series["face"]``, or (older results) those whose inference ran."""
    if "face" in series:
        return np.asarray(series["face"], bool)
    return np.asarray(series.get("infer", []), np.float64) > 0


def _quantile_lines(ax, v: np.ndarray, vertical: bool = True) -> None:
    for q, ls in ((50, "--"), (99, ":")):
        x = float(np.percentile(v, q))
        (ax.axvline if vertical else ax.axhline)(x, color="k", ls=ls, lw=1, label=f"p{q} {x:.2f} ms")


def write_plots(doc: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Latency histogram and CDF per stage (decisions with a face; the no-face decisions, which skip inference,
    are counted in the titles), p50 / p99 and the frame budget marked, and latency over time with capture and
    the no-face decisions marked (PNG); {} without matplotlib."""
    plt = headless_pyplot("plots")
    if plt is None:
        return {}
    series = doc["pipeline"]["series"]
    names = list(STAGES) + ["e2e"]
    budget = frame_budget_ms()
    face = face_mask(series)
    n_noface = int((~face).sum())
    paths: dict[str, Path] = {}
    fig, axes = plt.subplots(3, 3, figsize=(12, 9))
    for ax, s in zip(axes.ravel(), names):
        v = np.asarray(series.get(s, []), np.float64)
        v = v[face[:v.size]] if v.size == face.size else v
        if v.size:
            ax.hist(v, bins=40, color="tab:blue")
            _quantile_lines(ax, v)
        if s in ("total", "e2e"):
            ax.axvline(budget, color="tab:red", lw=2.5, label=f"frame budget {budget:.1f} ms")
        ax.set_title(s)
        ax.set_xlabel("ms")
        ax.legend(fontsize=7)
    fig.suptitle(f"latency histogram per stage: {int(face.sum())} decisions with a face"
                 + (f" ({n_noface} no-face decisions left out: they skip inference)" if n_noface else ""))
    fig.tight_layout()
    paths["hist"] = out / "latency_hist.png"
    fig.savefig(paths["hist"], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in names:
        v = np.asarray(series.get(s, []), np.float64)
        v = np.sort(v[face[:v.size]] if v.size == face.size else v)
        if v.size:
            ax.plot(np.maximum(v, 1e-3), np.arange(1, v.size + 1) / v.size,
                    label=f"{s}  p50 {np.percentile(v, 50):.2f} · p99 {np.percentile(v, 99):.2f}")
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", lw=0.8, ls=":")
    ax.axvline(budget, color="tab:red", lw=1.5, label=f"frame budget {budget:.1f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction ≤ x")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("latency CDF per stage (decisions with a face" + (f"; {n_noface} without left out)"
                                                                    if n_noface else ")"))
    paths["cdf"] = out / "latency_cdf.png"
    fig.savefig(paths["cdf"], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 4))
    t = np.asarray(series["t_s"])
    for s in ("total", "capture", "infer", "locate", "preprocess", "register"):
        if s in series:
            ax.plot(t, series[s], lw=0.8, label=s)
    if n_noface and face.size == t.size:
        tot = np.asarray(series["total"], np.float64)
        ax.plot(t[~face], tot[~face], "x", color="grey", ms=4, label=f"no face ({n_noface})")
    ax.axhline(budget, color="tab:red", lw=1.2, ls="--", label=f"frame budget {budget:.1f} ms")
    ax.set_xlabel("time since warm-up (s)")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("latency over time (capture = waiting for the camera)")
    paths["time"] = out / "latency_time.png"
    fig.savefig(paths["time"], dpi=80)
    plt.close(fig)
    return paths
