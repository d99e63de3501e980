"""On-device benchmark: where the frame budget goes (``edgepad bench``, ``python -m edgepad.bench``).

Needs only numpy and one runtime (onnxruntime or TensorRT) on the device: onnx (FLOP counting, FP16/INT8
variants), torch (seed-method model table), pyrealsense2 (rs.align), matplotlib (plots) and opencv-contrib
(``cv2.rgbd.registerDepth``) are used when present and reported as skipped otherwise.

What it measures (docs/PERFORMANCE.md has the figures and the exact commands):

* **Pipeline**: the real :class:`~edgepad.runtime.pipeline.LivenessPipeline` on a source, after a warm-up, for a
  time budget (or a number of frames). Per stage (:data:`edgepad.types.STAGES`) p50/p90/p99/max of
  ``Decision.latency_ms``; end-to-end latency from the frame timestamp to the decision; sustained fps; dropped
  frames per stream; CPU utilisation, RSS, GPU utilisation/memory; optional outlier clipping reported beside the
  raw figures. Every backend returns host arrays only after its stream is synchronised (TensorRT
  ``cudaStreamSynchronize``, torch ``.cpu()``, ONNX Runtime copies outputs), so the host ``perf_counter_ns``
  timers around a stage are CUDA-synchronised; the component benchmarks call ``torch.cuda.synchronize()`` before
  each timer read when they time torch on a GPU.
* **Components**, side by side in one run: depth registration vs ``rs.align`` on the same frames; model
  inference FP32 vs FP16 vs INT8 per available backend; achieved GFLOP/s against the machine's peak; a model
  table (default model + each seed method's edge configuration).
* **Jetson**: nvpmodel mode, jetson_clocks state, thermal zones, tegrastats power; thermal soak (p99 per minute).

Latency statistics use numpy's linear-interpolation percentiles. Outlier clipping (optional) is one pass of
k-sigma clipping (drop samples with ``|x - mean| > k * std``, k = 3 by default); raw figures are always kept.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgepad.errors import ConfigError, EdgePadError, MissingDependencyError, ValidationError
from edgepad.types import STAGES

log = logging.getLogger(__name__)

SCHEMA = "edgepad.bench/1"
#: pipeline stages excluding the wait for the camera (the pipeline's own cost per frame)
COST_STAGES = tuple(s for s in STAGES if s not in ("capture", "total"))
#: targets on a development CPU and on a Jetson (docs/PERFORMANCE.md)
TARGETS = {"pipeline_over_inference_max": 1.25, "registration_over_rs_align_max": 1.0,
           "peak_fraction_min": 0.40, "jetson_default_model_fp16_ms_max": 2.0, "jetson_e2e_fps_min": 30.0}
PERCENTILES = (50, 90, 99)


# =============================================================================================== statistics
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


# =============================================================================================== FLOPs
def _dims(vi: Any) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(-1)
    return dims


