"""The pipeline run of the device benchmark: the real liveness pipeline on a source, measured per stage."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgepad.bench.config import DeviceBenchConfig
from edgepad.bench.machine import ResourceMonitor, thermal_zones
from edgepad.bench.stats import soak_buckets, summarize
from edgepad.engines.backend import load_backend
from edgepad.engines.formats import format_by_kind, format_for
from edgepad.errors import ValidationError
from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
from edgepad.types import STAGES, Reason

#: pipeline stages excluding the wait for the camera (the pipeline's own cost per frame)
COST_STAGES = tuple(s for s in STAGES if s not in ("capture", "total"))
#: the pipeline run stops after this long without a frame set
NO_FRAMES_GIVE_UP_S = 15.0


def _load_backend(path: Path, kind: str, threads: int | None) -> Any:
    fmt = format_for(path) if kind == "auto" else format_by_kind(kind)
    opts: dict[str, Any] = {}
    if threads and fmt.kind == "onnxruntime":
        opts["threads"] = int(threads)
    return load_backend(path, kind, **opts)


def run_pipeline(config: DeviceBenchConfig, model: Path,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the liveness pipeline on ``config.source`` and measure it (see the module docstring).

    ``progress`` (when given) gets one line per phase: ``warming up N s`` and ``measuring N s``.

    Returns:
        the ``pipeline`` section of the result (stage stats, e2e, fps, drops, verdicts, series, resources, soak).
    """
    backend = _load_backend(model, config.backend, config.threads)
    pcfg = PipelineConfig(threaded=config.threaded)
    pipe = open_pipeline(config.source, backend, locator=config.locator, config=pcfg)
    budget_s = config.soak_min * 60.0 if config.soak_min else config.budget_s
    lat: dict[str, list[float]] = {s: [] for s in STAGES}
    e2e: list[float] = []
    t_rel: list[float] = []
    face: list[bool] = []                       # the decision had a face (no-face decisions skip infer)
    verdicts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    seq_last: dict[str, int] = {}
    seq_gaps: dict[str, int] = {}
    timeouts = 0
    warm_decisions = 0
    e2e_clock: str | None = None
    ended = "budget"
    soak_temps: list[tuple[float, dict[str, float]]] = []
    monitor = ResourceMonitor()
    say = progress or (lambda _line: None)
    what = f"{config.soak_min:g} min (soak)" if config.soak_min else f"{budget_s:g} s"
    if config.frames:
        what += f" or {config.frames} decisions"
    with pipe:
        say(f"warming up {config.warmup_s:g} s")
        t_start = time.perf_counter()
        t_meas: float | None = None
        next_temp = 0.0
        last_real = t_start
        for d in pipe.decisions():
            now = time.perf_counter()
            now_mono = time.monotonic_ns()
            if d.score is None and Reason.NO_FRAMES in d.reasons:
                timeouts += t_meas is not None
                if now - last_real > NO_FRAMES_GIVE_UP_S:
                    ended = "no_frames"
                    break
                continue
            last_real = now
            if t_meas is None:
                warm_decisions += 1
                if now - t_start >= config.warmup_s:
                    say(f"measuring {what}")
                    t_meas = time.perf_counter()
                    monitor.start()
                continue
            if e2e_clock is None:
                e2e_clock = "host" if abs(d.timestamp_ns - now_mono) < 10_000_000_000 else "pipeline"
            for s in STAGES:
                lat[s].append(float(d.latency_ms.get(s, 0.0)))
            e2e.append((now_mono - d.timestamp_ns) / 1e6 if e2e_clock == "host" else float(d.latency_ms["total"]))
            t_rel.append(now - t_meas)
            face.append(d.face_box is not None)
            verdicts[d.verdict.value] = verdicts.get(d.verdict.value, 0) + 1
            for r in d.reasons:
                reasons[r.value] = reasons.get(r.value, 0) + 1
            fs = pipe.last_frameset if not config.threaded else None
            if fs is not None:
                for m, f in fs.frames.items():
                    k = m.value
                    if k in seq_last and f.sequence > seq_last[k] + 1:
                        seq_gaps[k] = seq_gaps.get(k, 0) + f.sequence - seq_last[k] - 1
                    seq_gaps.setdefault(k, 0)
                    seq_last[k] = max(f.sequence, seq_last.get(k, f.sequence))
            if config.soak_min and now - t_meas >= next_temp:
                soak_temps.append((now - t_meas, thermal_zones()))
                next_temp += config.soak_bucket_s
            if config.frames and len(t_rel) >= config.frames:
                ended = "frames"
                break
            if now - t_meas >= budget_s:
                ended = "budget"
                break
        else:
            ended = "end_of_stream"
        elapsed = time.perf_counter() - t_meas if t_meas is not None else 0.0
        if t_meas is not None:
            monitor.stop()
        sync_stats = _sync_stats(pipe.capture)
        source_drops = _source_drops(pipe.capture)
        pipe_stats = pipe.stats.to_dict()
        providers = list(getattr(backend, "providers_used", []) or [])
    n = len(t_rel)
    if n == 0:
        raise ValidationError(f"no decision was measured ({ended} after {warm_decisions} warm-up decisions): raise "
                              "--budget-s / lower --warmup-s, or check the source", report={"ended": ended})
    stages = {s: summarize(lat[s], config.clip_k) for s in STAGES}
    cost = np.sum([np.asarray(lat[s]) for s in COST_STAGES], axis=0)
    out: dict[str, Any] = {
        "decisions": n, "warmup_decisions": warm_decisions, "elapsed_s": elapsed, "ended_by": ended,
        "fps": n / elapsed if elapsed > 0 else None, "timeouts": timeouts,
        "backend": getattr(backend, "kind", config.backend), "providers": providers,
        "stages": stages, "cost": summarize(cost, config.clip_k),
        "e2e": {**summarize(e2e, config.clip_k), "clock": e2e_clock,
                "definition": ("host monotonic now at decision − frame timestamp (frame exposure → decision)"
                               if e2e_clock == "host" else
                               "the source's timestamps are not on the host clock (offline/non-realtime source): "
                               "capture read start → decision (stage 'total')")},
        "verdicts": verdicts, "reasons": reasons,
        "drops": {"sync": sync_stats, "source_queue": source_drops, "sequence_gaps": seq_gaps,
                  "pipeline": pipe_stats.get("dropped", {})},
        "pipeline_stats": pipe_stats,
        "series": {"t_s": [round(t, 4) for t in t_rel], **{s: [round(v, 4) for v in lat[s]] for s in STAGES},
                   "e2e": [round(v, 4) for v in e2e], "face": face},
        "resources": monitor.summary(),
    }
    if config.soak_min:
        out["soak"] = soak_buckets(t_rel, lat["total"], lat["infer"], config.soak_bucket_s, soak_temps)
    return out


def _sync_stats(capture: Any) -> dict[str, Any]:
    sync = getattr(capture, "sync", None)
    stats = getattr(sync, "stats", None)
    if stats is None:
        return {}
    return stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)


def _source_drops(capture: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in getattr(capture, "sources", ()) or ():
        d = getattr(s, "dropped", None)
        if isinstance(d, Mapping):
            out[getattr(s, "uri", "source")] = {str(k): int(v) for k, v in d.items()}
    return out
