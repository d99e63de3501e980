"""Latency statistics of the device benchmark: percentiles, k-sigma outlier clipping, soak buckets, call timing.

Latency statistics use numpy's linear-interpolation percentiles. Outlier clipping (optional) is one pass of
k-sigma clipping (drop samples with ``|x - mean| > k * std``, k = 3 by default); raw figures are always kept.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgepad.errors import ConfigError

PERCENTILES = (50, 90, 99)


def latency_stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max/min/mean/std of latencies (ms) with numpy's linear-interpolation percentiles.

    Args:
        values: samples in ms (non-finite values are ignored).

    Returns:
        ``{"n", "p50", "p90", "p99", "max", "min", "mean", "std"}``; every figure None when there is no sample.
    """
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    out: dict[str, float | int | None] = {"n": int(a.size)}
    if a.size == 0:
        out.update({f"p{q}": None for q in PERCENTILES})
        out.update({"max": None, "min": None, "mean": None, "std": None})
        return out
    for q, v in zip(PERCENTILES, np.percentile(a, PERCENTILES)):
        out[f"p{q}"] = float(v)
    out.update({"max": float(a.max()), "min": float(a.min()), "mean": float(a.mean()), "std": float(a.std())})
    return out


def clip_outliers(values: Iterable[float], k: float = 3.0) -> tuple[np.ndarray, int]:
    """One pass of k-sigma clipping.

    Args:
        values: samples.
        k: keep samples with ``|x - mean| <= k * std`` (population std); k > 0.

    Returns:
        (kept samples in their original order, number removed). Constant or empty input is returned unchanged.
    """
    if not (isinstance(k, (int, float)) and k > 0):
        raise ConfigError(f"outlier clipping needs k > 0, got {k!r}", key="clip_outliers")
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size < 3:
        return a, 0
    mu, sd = float(a.mean()), float(a.std())
    if sd == 0.0:
        return a, 0
    keep = np.abs(a - mu) <= k * sd
    return a[keep], int(a.size - keep.sum())


def summarize(values: Iterable[float], clip_k: float | None = None) -> dict[str, Any]:
    """``{"raw": latency_stats}`` plus ``"clipped"`` (with ``removed``) when ``clip_k`` is given."""
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    out: dict[str, Any] = {"raw": latency_stats(a)}
    if clip_k:
        kept, removed = clip_outliers(a, clip_k)
        out["clipped"] = {**latency_stats(kept), "removed": removed, "k_sigma": float(clip_k)}
    return out


def soak_buckets(t_s: Sequence[float], total_ms: Sequence[float], infer_ms: Sequence[float], bucket_s: float,
                 temps: Sequence[tuple[float, Mapping[str, float]]] = ()) -> list[dict[str, Any]]:
    """Per-bucket (per minute by default) p50/p99 of total and inference latency, fps and temperatures."""
    t = np.asarray(t_s, np.float64)
    tot, inf = np.asarray(total_ms, np.float64), np.asarray(infer_ms, np.float64)
    out = []
    if t.size == 0:
        return out
    nb = int(t.max() // bucket_s) + 1
    for b in range(nb):
        sel = (t >= b * bucket_s) & (t < (b + 1) * bucket_s)
        if not sel.any():
            continue
        row: dict[str, Any] = {"bucket": b, "start_s": b * bucket_s, "decisions": int(sel.sum()),
                               "fps": float(sel.sum() / bucket_s),
                               "total_p50": float(np.percentile(tot[sel], 50)),
                               "total_p99": float(np.percentile(tot[sel], 99)),
                               "infer_p50": float(np.percentile(inf[sel], 50)),
                               "infer_p99": float(np.percentile(inf[sel], 99))}
        tz = [z for ts, z in temps if b * bucket_s <= ts < (b + 1) * bucket_s]
        if tz:
            row["temp_c"] = tz[0]
        out.append(row)
    return out


def time_calls(fn: Any, budget_s: float, *, warmup: int = 3, min_iters: int = 10, max_iters: int = 10_000,
               sync: Any = None) -> list[float]:
    """Call ``fn()`` ``warmup`` times, then until ``budget_s`` (and at least ``min_iters`` calls); ms per call.

    Args:
        sync: called before each timer read (``torch.cuda.synchronize`` for GPU work), or None.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out: list[float] = []
    t_end = time.perf_counter() + budget_s
    while (len(out) < min_iters or time.perf_counter() < t_end) and len(out) < max_iters:
        t0 = time.perf_counter_ns()
        fn()
        if sync:
            sync()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out
