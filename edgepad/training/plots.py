"""Training curves from a run's ``metrics.jsonl``: losses and the dev selection criterion per epoch (PNG)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from edgepad.errors import DatasetError
from edgepad.report import headless_pyplot

log = logging.getLogger(__name__)

#: the figure ``train`` writes next to ``metrics.jsonl``
CURVES_PNG = "training_curves.png"


def read_metrics(path: Path | str) -> list[dict]:
    """The epoch records of a ``metrics.jsonl`` (blank lines skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(ln) for ln in lines if ln.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the training metrics {path}: {exc}") from exc


def plot_training_curves(metrics_jsonl: Path | str, out_png: Path | str | None = None) -> Path | None:
    """Loss (train, dev; per loss part dashed) and the dev selection criterion per epoch, best epoch marked.

    Args:
        metrics_jsonl: the run's ``metrics.jsonl`` (``edgepad.training.loop``'s logger).
        out_png: the figure (default: :data:`CURVES_PNG` beside the log).

    Returns:
        the PNG path; None without matplotlib or without epochs.
    """
    recs = [r for r in read_metrics(metrics_jsonl) if "epoch" in r]
    if not recs:
        return None
    plt = headless_pyplot("training curves")
    if plt is None:
        return None
    out = Path(out_png) if out_png is not None else Path(metrics_jsonl).with_name(CURVES_PNG)
    ep = [int(r["epoch"]) for r in recs]

    def col(k: str) -> list[float]:
        return [float(r[k]) if isinstance(r.get(k), (int, float)) else float("nan") for r in recs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=90)
    ax1.plot(ep, col("train_loss"), "o-", color="tab:blue", label="train loss")
    if any("dev_loss" in r for r in recs):
        ax1.plot(ep, col("dev_loss"), "o-", color="tab:orange", label="dev loss")
    parts = sorted({k for r in recs for k in r if k.startswith("train_") and k != "train_loss"})
    for k in parts:
        ax1.plot(ep, col(k), "--", lw=1, label=k.replace("_", " "))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_title("loss per epoch")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    sel = next((r["select"] for r in reversed(recs) if r.get("select")), None)
    if sel and sel != "loss":
        ax2.plot(ep, col("select_value"), "o-", color="tab:green", label=f"dev {sel}")
        ax2.set_ylabel(f"dev {sel} (lower is better)")
    else:
        ax2.plot(ep, col("dev_loss"), "o-", color="tab:orange", label="dev loss (selection)")
        ax2.set_ylabel("dev loss")
    best = recs[-1].get("best_epoch")
    if isinstance(best, int) and best >= 0:
        for ax in (ax1, ax2):
            ax.axvline(best, color="k", ls=":", lw=1, label=f"best epoch {best}" if ax is ax2 else None)
    ax2.set_xlabel("epoch")
    ax2.set_title("model selection on dev")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
