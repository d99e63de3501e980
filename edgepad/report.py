"""ISO/IEC 30107-3 reports: Markdown + self-contained HTML, with ROC, DET and per-species score histograms (PNG).

The report is built once as a list of blocks and rendered to both formats. Plots need matplotlib (optional:
without it the report says so and everything else is written). Input is a result dict of
:func:`edgepad.evaluation.evaluate_scores` plus the dev and eval :class:`~edgepad.evaluation.ScoreSet`.
"""
from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import MissingDependencyError
from edgepad.metrics import error_curve, probit, split_scores

mpl = lazy("matplotlib", "plot")
plt = lazy("matplotlib.pyplot", "plot")   # first used after mpl.use("Agg") in write_plots

log = logging.getLogger(__name__)


def pct(x: float, digits: int = 2) -> str:
    """``0.0123`` -> ``"1.23 %"``; NaN -> ``"n/a"``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def rate_text(r: Mapping[str, Any], digits: int = 2) -> str:
    """A rate dict -> ``"1.23 % (3/244; 95 % CI 0.25–3.55 %)"``."""
    lo, hi = r["ci"]
    return (f"{pct(r['value'], digits)} ({r['k']}/{r['n']}; 95 % CI {100 * lo:.{digits}f}–"
            f"{100 * hi:.{digits}f} %)")


def _ci(r: Mapping[str, Any]) -> str:
    lo, hi = r["ci"]
    return f"{100 * lo:.2f}–{100 * hi:.2f} %"


def _thr(t: float) -> str:
    return "+inf" if math.isinf(t) and t > 0 else f"{t:.6g}" if abs(t) >= 1e-4 or t == 0 else f"{t:.4e}"


# ------------------------------------------------------------------------------------------------ blocks
def build_blocks(res: Mapping[str, Any], title: str, context: Mapping[str, Any] | None = None,
                 images: Sequence[tuple[str, str]] = (), plot_note: str | None = None) -> list[tuple]:
    """Report content as blocks: ``("h1"|"h2"|"p", text)``, ``("table", header, rows)``, ``("img", file, alt)``."""
    ev, dv = res["eval"], res["dev"]
    crit, tau = res["criterion"], res["threshold"]
    b: list[tuple] = [("h1", f"PAD evaluation: {title}")]
    rule = f", placed by rule {res['threshold_rule']}" if res.get("threshold_rule") else ""
    lines = [f"**τ from dev ({crit}{rule}), applied unchanged to eval**: τ = {_thr(tau)}; decision: bona fide iff "
             f"score ≥ τ."]
    lines.append(f"Aggregation level: {res.get('level', 'unspecified')}.")
    for k, v in (context or {}).items():
        lines.append(f"{k}: {v}")
    b.append(("p", "  \n".join(lines)))
    b.append(("p", f"PAI species in dev: {', '.join(res['species']['dev'])}. "
                   f"PAI species in eval: {', '.join(res['species']['eval'])}."))

    b.append(("h2", "Eval at the dev threshold"))
    rows = []
    for p, r in ev["apcer_per_species"].items():
        fta = ev["fta"]["species"][p]
        rows.append([p, str(r["n"]), str(r["k"]), pct(r["value"]), _ci(r), f"{fta['k']}/{fta['n']}",
                     pct(ev["system"]["apcer_per_species"][p])])
    b.append(("table", ["PAI species", "n", "k (accepted)", "APCER_p", "95 % CI", "non-response", "APCER_sys,p"],
              rows))
    bp = ev["rates"]["bpcer"]
    fb = ev["fta"]["bonafide"]
    b.append(("table", ["metric", "value"], [
        ["APCER (worst species: " + ev["apcer_worst_species"] + ")", pct(ev["apcer"])],
        ["BPCER", rate_text(bp)],
        ["ACER = (APCER + BPCER)/2", pct(ev["acer"])],
        ["APCER_pooled (legacy)", rate_text(ev["rates"]["apcer_pooled"])],
        ["HTER = (APCER_pooled + BPCER)/2 (legacy)", pct(ev["hter"])],
        ["bona fide non-response (FTA_B)", rate_text(fb)],
        ["all non-responses", rate_text(ev["fta"]["overall"])],
        ["BPCER_sys = FTA_B + (1 − FTA_B)·BPCER", pct(ev["system"]["bpcer"])],
        ["APCER_sys = max_p (1 − FTA_p)·APCER_p", pct(ev["system"]["apcer"])],
    ]))

    b.append(("h2", "Operating points (τ from dev, applied to eval)"))
    rows = []
    for name, op in res["operating_points"].items():
        if "error" in op:
            rows.append([name, "—", "—", "—", "—", "—", op["error"]])
            continue
        e = op["eval"]
        rows.append([name, _thr(op["threshold"]), pct(op["dev_apcer"]), pct(op["dev_bpcer"]), pct(e["apcer"]),
                     rate_text(e["bpcer_rate"]), pct(e["acer"])])
    b.append(("table", ["criterion", "τ (dev)", "dev APCER", "dev BPCER", "eval APCER", "eval BPCER", "eval ACER"],
              rows))
    b.append(("p", "BPCER10 / BPCER20 / BPCER100 = eval BPCER at the dev threshold where every species' APCER is "
                   "≤ 10 % / 5 % / 1 % (rows bpcer10 / bpcer20 / bpcer100); apcer100 = eval APCER at dev BPCER ≤ 1 %."))
    eer = res["eer_dev"]
    b.append(("p", f"EER on dev (pooled attacks): {pct(eer['eer'])} at τ = {_thr(eer['threshold'])}; "
                   f"HTER on eval at that τ: {pct(res['hter_eval_at_eer_dev'])}. "
                   f"EER of eval itself (informational, τ from eval): {pct(res['eer_eval']['eer'])}."))

    if res.get("bpcer_per_group"):
        b.append(("h2", "Fairness: BPCER per group (eval, same τ)"))
        b.append(("table", ["group", "n", "k", "BPCER", "95 % CI"],
                  [[g, str(r["n"]), str(r["k"]), pct(r["value"]), _ci(r)] for g, r in res["bpcer_per_group"].items()]))

    b.append(("h2", "Dev at the same threshold"))
    rows = [[p, str(r["n"]), str(r["k"]), pct(r["value"]), _ci(r)] for p, r in dv["apcer_per_species"].items()]
    rows.append(["BPCER (bona fide)", str(dv["rates"]["bpcer"]["n"]), str(dv["rates"]["bpcer"]["k"]),
                 pct(dv["bpcer"]), _ci(dv["rates"]["bpcer"])])
    b.append(("table", ["", "n", "k", "rate", "95 % CI"], rows))

    b.append(("h2", "Curves (eval)"))
    if plot_note:
        b.append(("p", plot_note))
    for f, alt in images:
        b.append(("img", f, alt))
    return b


def render_markdown(blocks: Sequence[tuple]) -> str:
    out: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            out.append(f"# {blk[1]}\n")
        elif kind == "h2":
            out.append(f"## {blk[1]}\n")
        elif kind == "p":
            out.append(blk[1] + "\n")
        elif kind == "table":
            header, rows = blk[1], blk[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
            out.append("")
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})\n")
    return "\n".join(out)


def _md_inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts)).replace("  \n", "<br>\n")


def render_html(blocks: Sequence[tuple], root: Path) -> str:
    """Self-contained HTML (PNG plots embedded as data URIs)."""
    body: list[str] = []
    title = "PAD evaluation"
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            title = blk[1]
            body.append(f"<h1>{html.escape(blk[1])}</h1>")
        elif kind == "h2":
            body.append(f"<h2>{html.escape(blk[1])}</h2>")
        elif kind == "p":
            body.append(f"<p>{_md_inline(blk[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in blk[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in blk[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((root / blk[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(blk[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(blk[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}th{background:#eee}td:first-child{text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------------------ plots
def headless_pyplot(what: str) -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), or None — logged as "no ``what``" — when
    matplotlib is not installed or cannot load. The one place plots are set up (reports, bench, training,
    benchmark charts)."""
    if not mpl:
        log.info("matplotlib not installed: no %s", what)
        return None
    try:
        mpl.use("Agg")
        return plt()
    except MissingDependencyError as exc:  # installed but broken (e.g. a missing shared library)
        log.info("matplotlib not usable (%s): no %s", exc, what)
        return None


def write_plots(out: Path, res: Mapping[str, Any], dev, eval_) -> list[tuple[str, str]]:
    """ROC, DET and per-species histograms as PNG files in ``out``; returns ``[(file name, caption)]``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    mpl.use("Agg")
    tau = res["threshold"]
    es = split_scores(*eval_.args)
    files: list[tuple[str, str]] = []
    curves = {p: error_curve(es.bonafide, a) for p, a in es.attacks.items()}
    if len(curves) > 1:
        curves["pooled"] = error_curve(es.bonafide, es.pooled_attacks)

    def op_marks(ax, tf):
        for name, a in es.attacks.items():
            x = float((a >= tau).mean())
            y = float((es.bonafide < tau).mean())
            ax.plot(*tf(x, y), "o", ms=5, color="k")
        ax.plot([], [], "o", color="k", label=f"τ from dev ({res['criterion']})")

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for p, (thr, ap, bp) in curves.items():
        ax.plot(np.maximum(ap, 1e-4), 1 - bp, label=p, lw=2 if p == "pooled" else 1.2,
                ls="--" if p == "pooled" else "-")
    op_marks(ax, lambda x, y: (max(x, 1e-4), 1 - y))
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("APCER (log)")
    ax.set_ylabel("1 − BPCER")
    ax.set_title("ROC per PAI species (eval)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png")
    plt.close(fig)
    files.append(("roc.png", "ROC per PAI species (eval), operating points at τ from dev"))

    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for p, (thr, ap, bp) in curves.items():
        ax.plot(probit(ap), probit(bp), label=p, lw=2 if p == "pooled" else 1.2, ls="--" if p == "pooled" else "-")
    op_marks(ax, lambda x, y: (probit([x])[0], probit([y])[0]))
    lim = probit([0.0005, 0.95])
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xticks(probit(ticks))
    ax.set_xticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_yticks(probit(ticks))
    ax.set_yticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_xlabel("APCER (%)")
    ax.set_ylabel("BPCER (%)")
    ax.set_title("DET per PAI species (eval)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "det.png")
    plt.close(fig)
    files.append(("det.png", "DET per PAI species (eval, normal-deviate axes)"))

    ds = split_scores(*dev.args)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100, sharex=True)
    allv = np.concatenate([ds.bonafide, ds.pooled_attacks, es.bonafide, es.pooled_attacks])
    allv = allv[np.isfinite(allv)]
    edges = np.linspace(allv.min(), allv.max() + 1e-12, 41) if allv.size else np.linspace(0, 1, 41)
    for ax, (fold, sp) in zip(axes, (("dev", ds), ("eval", es))):
        ax.hist(sp.bonafide[np.isfinite(sp.bonafide)], bins=edges, histtype="stepfilled", alpha=0.35,
                color="tab:green", label=f"bonafide (n={sp.bonafide.size})")
        for p, a in sp.attacks.items():
            ax.hist(a[np.isfinite(a)], bins=edges, histtype="step", lw=1.5, label=f"{p} (n={a.size})")
        if math.isfinite(tau):
            ax.axvline(tau, color="k", ls="--", lw=1, label=f"τ ({res['criterion']}, dev)")
        ax.set_ylabel("count")
        ax.set_title(f"score histograms per species ({fold})")
        ax.set_xlabel("score (higher = bona fide)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "histograms.png")
    plt.close(fig)
    files.append(("histograms.png", "score histograms per PAI species, dev and eval, with τ"))
    return files


def write_heads_plot(path: Path, eval_: Mapping[str, Any], diag: Mapping[str, Any]) -> Path | None:
    """``heads.png``: one panel per head, eval score histograms of bona fide and each PAI species, with the head's
    dev-EER τ. ``eval_`` maps head name -> ScoreSet. None (logged) without matplotlib."""
    pyplot = headless_pyplot("per-head plot")
    if pyplot is None:
        return None
    names = list(eval_)
    fig, axes = pyplot.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), dpi=100, squeeze=False)
    for ax, h in zip(axes[0], names):
        sp = split_scores(*eval_[h].args)
        allv = np.concatenate([sp.bonafide, sp.pooled_attacks])
        lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
        lo, hi = min(lo, 0.0), max(hi, 1.0)
        edges = np.linspace(lo, hi + 1e-12, 41)
        ax.hist(sp.bonafide, bins=edges, histtype="stepfilled", alpha=0.35, color="tab:green",
                label=f"bonafide (n={sp.bonafide.size})")
        for p, a in sp.attacks.items():
            ax.hist(a, bins=edges, histtype="step", lw=1.5, label=f"{p} (n={a.size})")
        row = diag["heads"][h]
        if math.isfinite(row["threshold_eer_dev"]):
            ax.axvline(row["threshold_eer_dev"], color="k", ls="--", lw=1, label="τ (dev EER)")
        mark = " (weakest)" if h == diag.get("weakest_head") else ""
        ax.set_title(f"{h}{mark}: ACER {pct(row['eval_at_eer_dev']['acer'], 1)}", fontsize=9)
        ax.set_xlabel("head score (eval)")
        ax.set_ylabel("count")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)
    return Path(path)


def write_report(out: Path | str, res: Mapping[str, Any], dev, eval_, *, title: str,
                 context: Mapping[str, Any] | None = None, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and (with matplotlib) ``roc.png``, ``det.png``, ``histograms.png``.

    Returns:
        name -> path of every file written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, str]] = []
    note = None
    if plots:
        try:
            images = write_plots(out, res, dev, eval_)
        except MissingDependencyError as exc:
            note = f"Plots skipped: {exc}"
            log.warning("%s", note)
    else:
        note = "Plots disabled (--no-plots)."
    blocks = build_blocks(res, title, context, images, note)
    files = {"markdown": out / "report.md", "html": out / "report.html"}
    files["markdown"].write_text(render_markdown(blocks), encoding="utf-8")
    files["html"].write_text(render_html(blocks, out), encoding="utf-8")
    for f, _ in images:
        files[f] = out / f
    return files


def render_loo_summary(summary: Mapping[str, Mapping[str, Any]], per_protocol: Mapping[str, Mapping[str, float]],
                       keys: Sequence[str] = ("acer", "bpcer20")) -> str:
    """Markdown table of several protocols (rows) and the mean ± population std (ddof = 0) line."""
    lines = ["| protocol | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for p, r in per_protocol.items():
        lines.append(f"| {p} | " + " | ".join(pct(r[k]) for k in keys) + " |")
    lines.append("| mean ± std (ddof=0) | " + " | ".join(
        f"{100 * summary[k]['mean']:.2f} ± {100 * summary[k]['std']:.2f} %" for k in keys) + " |")
    return "\n".join(lines) + "\n"
