"""The accuracy benchmark's comparison chart: ACER per model and protocol (mean ± std over seeds), PNG."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgepad.benchmark.tables import _first_subset, _vals, mean_std
from edgepad.report import headless_pyplot

log = logging.getLogger(__name__)

#: the chart ``edgepad benchmark`` writes into its output folder
CHART_PNG = "acer_by_model.png"


def acer_table(records: Sequence[Mapping]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``(models, protocols, mean, std)``: ACER of each model (preset) × protocol over its seeds, on the first
    subset evaluated (P4 where present); nan where there is no value."""
    models = list(dict.fromkeys(r["preset"] for r in records))
    protos = list(dict.fromkeys(r["protocol"] for r in records))
    mean = np.full((len(models), len(protos)), np.nan)
    std = np.full_like(mean, np.nan)
    for i, m in enumerate(models):
        for j, p in enumerate(protos):
            recs = [r for r in records if r["preset"] == m and r["protocol"] == p]
            mean[i, j], std[i, j], _ = mean_std(_vals(recs, _first_subset(recs), "acer"))
    return models, protos, mean, std


def acer_chart(records: Sequence[Mapping], out_png: Path | str) -> Path | None:
    """Grouped bars: ACER (%) per protocol, one bar per model, error bars = std over seeds; values printed on
    the bars; a missing result is marked ``n/a``. None without matplotlib or without records."""
    if not records:
        return None
    plt = headless_pyplot("benchmark chart")
    if plt is None:
        return None
    models, protos, mean, std = acer_table(records)
    width = 0.8 / max(1, len(models))
    x = np.arange(len(protos))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(protos) + 2), 4.2), dpi=90)
    top = np.nanmax(100 * (mean + np.nan_to_num(std))) if np.isfinite(mean).any() else 1.0
    for i, m in enumerate(models):
        xs = x - 0.4 + width * (i + 0.5)
        h = 100 * np.nan_to_num(mean[i])
        err = 100 * np.nan_to_num(std[i])
        bars = ax.bar(xs, h, width * 0.95, yerr=err, capsize=3, label=m)
        for b, v, e in zip(bars, mean[i], err):          # the value above the error bar
            ax.annotate("n/a" if np.isnan(v) else f"{100 * v:.1f}",
                        (b.get_x() + b.get_width() / 2, b.get_height() + e),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, protos)
    ax.set_ylim(0, max(1.0, top) * 1.18)
    ax.set_ylabel("ACER (%), lower is better")
    ax.set_title("ACER per model and protocol\n(eval; mean ± std over seeds)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out)
    plt.close(fig)
    return out
