"""Comparison of two device-benchmark results: ratios B / A per stage, fps, inference and registration."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from edgepad.bench.report import _f, load_result
from edgepad.config import json_default
from edgepad.types import STAGES


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Ratios B / A per stage (p50, p99), fps, end-to-end and the shared component figures."""
    def ratio(x: Any, y: Any) -> float | None:
        return y / x if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x else None
    pa, pb = a["pipeline"], b["pipeline"]
    stages = {}
    for s in list(STAGES) + ["cost", "e2e"]:
        sa = pa["stages"][s]["raw"] if s in STAGES else pa[s]["raw"]
        sb = pb["stages"][s]["raw"] if s in STAGES else pb[s]["raw"]
        stages[s] = {"a_p50": sa["p50"], "b_p50": sb["p50"], "ratio_p50": ratio(sa["p50"], sb["p50"]),
                     "a_p99": sa["p99"], "b_p99": sb["p99"], "ratio_p99": ratio(sa["p99"], sb["p99"])}
    out: dict[str, Any] = {"a": {"created": a.get("created"), "model": a["model"].get("path"),
                                 "source": a["config"].get("source"), "device": a["device"]["cpu"]["model"]},
                           "b": {"created": b.get("created"), "model": b["model"].get("path"),
                                 "source": b["config"].get("source"), "device": b["device"]["cpu"]["model"]},
                           "stages": stages,
                           "fps": {"a": pa["fps"], "b": pb["fps"], "ratio": ratio(pa["fps"], pb["fps"])}}
    ca = ((a.get("components") or {}).get("inference") or {}).get("results") or {}
    cb = ((b.get("components") or {}).get("inference") or {}).get("results") or {}
    inf = {}
    for k in sorted(set(ca) & set(cb)):
        if isinstance(ca[k], Mapping) and isinstance(cb[k], Mapping) and "latency" in ca[k] and "latency" in cb[k]:
            inf[k] = {"a_p50": ca[k]["latency"]["p50"], "b_p50": cb[k]["latency"]["p50"],
                      "ratio_p50": ratio(ca[k]["latency"]["p50"], cb[k]["latency"]["p50"])}
    if inf:
        out["inference"] = inf
    ra = ((a.get("components") or {}).get("registration") or {})
    rb = ((b.get("components") or {}).get("registration") or {})
    reg = {}
    for case in ("source", "d435_like"):
        x, y = ra.get(case) or {}, rb.get(case) or {}
        if "ours_ms" in x and "ours_ms" in y:
            reg[case] = {"a_ms": x["ours_ms"], "b_ms": y["ours_ms"], "ratio": ratio(x["ours_ms"], y["ours_ms"])}
    if reg:
        out["registration"] = reg
    return out


def compare_markdown(c: Mapping[str, Any]) -> str:
    """Markdown table of :func:`compare` (ratio = B / A; < 1 means B is faster)."""
    lines = ["# edgepad bench compare (ratio = B / A; < 1: B faster)", "",
             f"- A: {c['a']['model']} on {c['a']['source']} ({c['a']['device']}, {c['a']['created']})",
             f"- B: {c['b']['model']} on {c['b']['source']} ({c['b']['device']}, {c['b']['created']})",
             f"- fps: A {_f(c['fps']['a'])}, B {_f(c['fps']['b'])}, ratio B/A {_f(c['fps']['ratio'], 3)}", "",
             "| stage | A p50 | B p50 | p50 ratio | A p99 | B p99 | p99 ratio |", "|---|---|---|---|---|---|---|"]
    for s, r in c["stages"].items():
        lines.append(f"| {s} | {_f(r['a_p50'])} | {_f(r['b_p50'])} | {_f(r['ratio_p50'], 3)} | {_f(r['a_p99'])} | "
                     f"{_f(r['b_p99'])} | {_f(r['ratio_p99'], 3)} |")
    if c.get("inference"):
        lines += ["", "| inference | A p50 | B p50 | ratio |", "|---|---|---|---|"]
        for k, r in c["inference"].items():
            lines.append(f"| {k} | {_f(r['a_p50'], 3)} | {_f(r['b_p50'], 3)} | {_f(r['ratio_p50'], 3)} |")
    if c.get("registration"):
        lines += ["", "| registration | A ms | B ms | ratio |", "|---|---|---|---|"]
        for k, r in c["registration"].items():
            lines.append(f"| {k} | {_f(r['a_ms'])} | {_f(r['b_ms'])} | {_f(r['ratio'], 3)} |")
    return "\n".join(lines) + "\n"


def compare_files(a: Path | str, b: Path | str, out: Path | str | None = None) -> tuple[dict[str, Any], str]:
    """Compare two bench JSON files; writes ``compare.json``/``compare.md`` into ``out`` when given."""
    c = compare(load_result(a), load_result(b))
    md = compare_markdown(c)
    if out:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "compare.json").write_text(json.dumps(c, indent=1, default=json_default) + "\n")
        (o / "compare.md").write_text(md)
    return c, md
