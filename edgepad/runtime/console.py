"""Console front-ends of the runtime: :func:`run_demo` (``edgepad demo``) and :func:`run_console` (``edgepad run``).

They print decisions to a text stream. ``run_demo`` runs the synthetic camera through the whole pipeline on the
embedded default model and compares the verdict of each presentation with the synthetic ground truth.
"""
from __future__ import annotations

import collections
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgepad.assets import default_model_path
from edgepad.drivers.capture import Capture, open_capture
from edgepad.drivers.sync import Synchronizer
from edgepad.drivers.synthetic import SyntheticSource
from edgepad.errors import ConfigError, EndOfStream
from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
from edgepad.runtime.presentation import DECIDED, ENDED, PresentationEvent
from edgepad.types import STAGES, Decision, Modality, Verdict

_SHORT = {"capture": "cap", "sync": "sync", "register": "reg", "locate": "loc", "preprocess": "pre",
          "infer": "inf", "policy": "pol", "total": "tot"}


@dataclass(frozen=True, kw_only=True)
class ConsoleOptions:
    """What :func:`run_demo` and :func:`run_console` share.

    Attributes:
        model: model artifact with its sidecar manifest (None = the embedded default model).
        locator: face locator spec (``learned`` default, ``haar``, ``truth``, ``fixed:x,y,w,h``).
        threads: ONNX Runtime intra-op threads (None = its default).
        pipeline: pipeline and decision-policy settings.
        every: print every N-th decision.
        json: one JSON object per decision instead of text.
        events: also print the presentation events (one decision per person).
    """

    model: Path | None = None
    locator: str = "learned"
    threads: int | None = None
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    every: int = 1
    json: bool = False
    events: bool = False


@dataclass(frozen=True, kw_only=True)
class DemoOptions(ConsoleOptions):
    """Settings of :func:`run_demo` (plus :class:`ConsoleOptions`).

    Attributes:
        frames: frame sets to process (>= 1).
        seed: synthetic scene seed.
        realtime: pace the synthetic camera to ``fps``.
        fps: synthetic frame rate (frames/s).
        presentation_frames: frame sets per synthetic presentation.
    """

    frames: int = 300
    seed: int = 0
    realtime: bool = False
    fps: float = 30.0
    presentation_frames: int = 45


@dataclass(frozen=True, kw_only=True)
class RunOptions(ConsoleOptions):
    """Settings of :func:`run_console` (plus :class:`ConsoleOptions`).

    Attributes:
        source: source URI, or one URI per camera (``realsense://SERIAL``, ``file.bag``, ``replay://DIR``, …).
        rig: rig file from ``edgepad calibrate`` (None = the source's own).
        fps: stream rate for the sync tolerance (frames/s; None = the source's).
        sync_tolerance_ms: max time between the frames of a set (ms; None = half the slowest stream's period).
        frames: stop after N frame sets (0 = until the stream ends).
    """

    source: str | list[str]
    rig: str | Path | None = None
    fps: float | None = None
    sync_tolerance_ms: float | None = None
    frames: int = 0


def _model_path(model: Path | str | None) -> Path:
    if model:
        p = Path(model)
        if not p.is_file():
            raise ConfigError(f"model file not found: {p}", key="model")
        return p
    p = default_model_path()
    if not p.is_file():
        raise ConfigError(f"the embedded default model {p} is missing: train and export it with the recipe in "
                          "docs/MODELS.md (edgepad train configs/default.yaml, then edgepad export), or pass "
                          "--model PATH", key="model")
    return p


def stats_summary(n: int, stats: dict) -> str:
    """One readable line of a run's counters: decisions by verdict, frame sets, timeouts, errors, drops."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
    return (f"{n} decisions ({counts(stats.get('decisions', {}))}) from {stats.get('framesets', 0)} frame sets; "
            f"timeouts {stats.get('timeouts', 0)}; errors: {counts(stats.get('errors', {}))}; "
            f"dropped: {counts(stats.get('dropped', {}))}")


def format_decision(d: Decision, fps: float, prefix: str = "", suffix: str = "") -> str:
    """One console line: verdict, score/threshold, fps, per-stage latency (ms), reasons, hints."""
    score = "  -  " if d.score is None else f"{d.score:.3f}"
    lat = " ".join(f"{_SHORT[k]} {d.latency_ms.get(k, 0.0):5.1f}" for k in STAGES)
    reasons = ",".join(r.value for r in d.reasons)
    hints = f" hint:{','.join(d.hints)}" if d.hints else ""
    return (f"{prefix}{d.verdict.value.upper():7s} score {score} thr {d.threshold:.3f} | {fps:5.1f} fps | {lat} ms "
            f"| {reasons}{hints}{suffix}")


def format_event(ev: PresentationEvent) -> str:
    """One console line per presentation event: ``EVENT presentation 3 decided LIVE score 0.910 …``."""
    text = f"EVENT presentation {ev.presentation} {ev.kind}"
    if ev.kind == DECIDED and ev.decision is not None:
        d = ev.decision
        score = "-" if d.score is None else f"{d.score:.3f}"
        ev_s = " ".join(f"{m.value} {v:.3f}" for m, v in d.evidence.items())
        text += f" {ev.verdict.value.upper()} score {score} thr {d.threshold:.3f} after {ev.frames} frames"
        text += f" | evidence {ev_s}" if ev_s else ""
    elif ev.kind == ENDED:
        text += (f" ({ev.cause}) verdict {ev.verdict.value} after {ev.frames} frames; live {ev.live_decisions} "
                 f"spoof {ev.spoof_decisions}")
    else:
        text += f" ({ev.cause})"
    return text


def _print_events(pipe: Any, options: Any, out: TextIO) -> None:
    for ev in pipe.events():
        if options.events:
            print(json.dumps(ev.to_dict()) if options.json else format_event(ev), file=out, flush=True)


def _print_latency_summary(lats: dict[str, list[float]], out: TextIO) -> None:
    if not lats.get("total"):
        return
    print("per-stage latency (ms):      p50     p90     p99     max", file=out)
    for k in STAGES:
        v = np.asarray(lats.get(k) or [0.0])
        print(f"  {k:12s} {np.percentile(v, 50):8.2f} {np.percentile(v, 90):7.2f} {np.percentile(v, 99):7.2f} "
              f"{v.max():7.2f}", file=out)


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """``edgepad demo``: synthetic camera → capture → face locator → crops → ONNX Runtime → policy, with ground
    truth; per presentation: frames without a face, the first definitive verdict, the presentation events.

    Args:
        options: demo settings.
        out: where the report goes (default stdout).

    Returns:
        0 when most bona fide and most attack presentations got the right verdict, else 1.
    """
    out = out or sys.stdout
    human = sys.stderr if options.json else out  # --json: stdout holds JSON lines only
    model = _model_path(options.model)
    if options.frames < 1:
        raise ConfigError(f"frames must be >= 1 (--frames), got {options.frames}", key="frames")
    src = SyntheticSource("demo", seed=options.seed, frames=options.frames, fps=options.fps,
                          realtime=bool(options.realtime), presentation_frames=options.presentation_frames)
    sync = Synchronizer.for_fps([Modality.RGB, Modality.DEPTH, Modality.IR], options.fps)
    cap = Capture([src], None, sync, register=options.pipeline.capture_mode)
    pipe = open_pipeline(cap, model, locator=options.locator, config=options.pipeline, threads=options.threads)
    m = pipe.manifest
    print(f"edgepad demo: synthetic://demo seed={options.seed} {options.frames} frame sets, model {model.name} "
          f"({m.model}, {'+'.join(x.value for x in m.modalities)}, threshold {pipe.policy.threshold:.3f} "
          f"@ {pipe.policy.criterion}), locator {options.locator}, backend {pipe.backend.kind}", file=human)
    print("NOTE: the default model is trained on synthetic data only; it shows the pipeline working and is not "
          "for real faces.", file=human)
    per_pres: dict[int, dict[str, Any]] = collections.OrderedDict()
    lats: dict[str, list[float]] = collections.defaultdict(list)
    t0 = time.perf_counter()
    times: collections.deque[float] = collections.deque(maxlen=30)
    n = 0
    with pipe:
        for d in pipe.decisions(max_frames=options.frames):
            now = time.perf_counter()
            times.append(now)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            seq = pipe.sequence_of(d)
            truth = src.truth(seq) if seq is not None else None
            if truth is not None:
                rec = per_pres.setdefault(truth.index, {"species": truth.species, "bonafide": truth.is_bonafide,
                                                         "verdicts": collections.Counter(), "first": None,
                                                         "no_face": 0, "decided": []})
                rec["verdicts"][d.verdict.value] += 1
                rec["no_face"] += d.face_box is None
                if rec["first"] is None and d.verdict is not Verdict.UNKNOWN:
                    rec["first"] = d.verdict.value
            for ev in pipe.events():
                if options.events:
                    print(json.dumps(ev.to_dict()) if options.json else format_event(ev), file=out)
                s_ev = pipe.sequence_of(ev.decision) if ev.kind == DECIDED and ev.decision is not None else None
                if s_ev is not None and src.truth(s_ev).index in per_pres:
                    per_pres[src.truth(s_ev).index]["decided"].append(ev.verdict.value)
            for k, v in d.latency_ms.items():
                lats[k].append(v)
            n += 1
            if options.json:
                row = d.to_dict()
                row["fps"] = round(fps, 2)
                if truth is not None:
                    row["truth"] = {"presentation": truth.index, "species": truth.species}
                print(json.dumps(row), file=out)
            elif n % max(1, options.every) == 0:
                tag = f" | truth {truth.species}" if truth is not None else ""
                print(format_decision(d, fps, prefix=f"#{n:4d} ", suffix=tag), file=human)
    elapsed = time.perf_counter() - t0
    print(f"\n{n} decisions in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.1f} fps); "
          f"{pipe.stats.to_dict()['decisions']}", file=human)
    _print_latency_summary(lats, human)
    ok_b = tot_b = ok_a = tot_a = 0
    located = first_live = attack_live = 0
    print("\nper presentation (verdict = the majority of its live/spoof decisions, unknown if none; first = its first "
          "definitive verdict; decided = the 'decided' presentation events that fell in it):", file=human)
    print("  #  species         truth      verdict   live spoof unknown no_face  first  decided", file=human)
    for idx, rec in per_pres.items():
        c = rec["verdicts"]
        if c["live"] == c["spoof"] == 0:
            verdict = "unknown"
        else:
            verdict = "live" if c["live"] > c["spoof"] else "spoof"
        truth = "bona fide" if rec["bonafide"] else "attack"
        right = verdict == ("live" if rec["bonafide"] else "spoof")
        if rec["bonafide"]:
            tot_b += 1
            ok_b += right
            located += rec["no_face"] < sum(c.values())
            first_live += rec["first"] == "live"
        else:
            tot_a += 1
            ok_a += right
            attack_live += c["live"] > 0
        print(f"  {idx:<3d}{rec['species']:16s}{truth:11s}{verdict:9s}{c['live']:5d}{c['spoof']:6d}{c['unknown']:8d}"
              f"{rec['no_face']:8d}  {rec['first'] or '-':6s} {','.join(rec['decided']) or '-':8s} "
              f"{'ok' if right else 'WRONG'}", file=human)
    print(f"\nbona fide presentations right: {ok_b}/{tot_b}; attack presentations right: {ok_a}/{tot_a}", file=human)
    print(f"bona fide located: {located}/{tot_b}; first definitive verdict LIVE: {first_live}/{tot_b}; attack "
          f"presentations with a LIVE decision: {attack_live}/{tot_a}; presentations tracked: "
          f"{pipe.presentations.count}", file=human)
    good = (tot_b == 0 or ok_b * 2 > tot_b) and (tot_a == 0 or ok_a * 2 > tot_a)
    return 0 if good else 1


def _subset_line(pipe: Any, streams: frozenset[Modality]) -> str:
    """What the run uses: the streams the capture delivers and the threshold of that modality subset.

    Raises:
        ConfigError: the streams lack a modality the policy requires, or the manifest has no threshold for the
            subset at the operating point.
    """
    policy = pipe.policy
    full = "+".join(m.value for m in Modality if m in policy.modalities)
    used = frozenset(streams) & policy.modalities
    name = "+".join(m.value for m in Modality if m in used) or "none"
    if used == policy.modalities:
        return f"running on {name}: threshold {policy.threshold:.3f} @ {policy.criterion}"
    lacking = policy.required - used
    if lacking:
        raise ConfigError(f"the source delivers {name} but the model needs "
                          f"{'+'.join(m.value for m in Modality if m in lacking)} (its modalities: {full})",
                          key="source")
    thr = policy.threshold_for(used)
    if thr is None:
        have = sorted(pipe.manifest.operating_points.get(policy.criterion, {}))
        raise ConfigError(f"the source delivers {name} only, and the model's manifest has no threshold for the "
                          f"subset {name} at operating point {policy.criterion} (calibrated subsets: "
                          f"{', '.join(have) or 'none'}); use a source with {full}, another --operating-point, or "
                          f"a model calibrated on {name}", key="operating_point")
    return (f"running on {name}: threshold {float(thr):.3f} @ {policy.criterion} for subset {name} "
            f"(the full model expects {full})")


def run_console(options: RunOptions, out: TextIO | None = None) -> int:
    """``edgepad run``: decisions from any source on the console (text or JSON lines; the pipeline's counters go
    to stderr at the end).

    At start it says which streams it runs on and the threshold of that modality subset; at the end, when the
    synchronizer formed few or no frame sets, why (:meth:`Synchronizer.diagnose`).

    Returns:
        0, or 1 when no frame set was formed (nothing was decided on).

    Raises:
        ConfigError: the source's streams have no calibrated threshold in the manifest (see :func:`_subset_line`).
    """
    out = out or sys.stdout
    model = _model_path(options.model)
    cap = open_capture(options.source, rig=options.rig, fps=options.fps, register=options.pipeline.capture_mode,
                       sync_tolerance_ms=options.sync_tolerance_ms)
    pipe = open_pipeline(cap, model, rig=options.rig, locator=options.locator, config=options.pipeline,
                         threads=options.threads)
    times: collections.deque[float] = collections.deque(maxlen=30)
    n = 0
    try:
        with pipe:
            sync = cap.sync
            print(f"edgepad run: {cap.uri}: {_subset_line(pipe, frozenset(sync.modalities))}; sync tolerance "
                  f"{sync.tolerance_ns / 1e6:.1f} ms", file=sys.stderr if options.json else out, flush=True)
            for d in pipe.decisions(max_frames=options.frames or None):
                times.append(time.perf_counter())
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
                n += 1
                if options.json:
                    row = d.to_dict()
                    row["fps"] = round(fps, 2)
                    print(json.dumps(row), file=out, flush=True)
                elif n % max(1, options.every) == 0:
                    print(format_decision(d, fps, prefix=f"#{n:5d} "), file=out, flush=True)
                _print_events(pipe, options, out)
    except EndOfStream:
        pass
    _print_events(pipe, options, out)  # the last presentation's 'ended'
    st = cap.sync.stats
    print(stats_summary(n, pipe.stats.to_dict()), file=sys.stderr)
    print(f"sync: {st.matched} frame set(s); max skew {st.max_skew_ns / 1e6:.1f} ms on the matching clock, "
          f"{st.max_device_skew_ns / 1e6:.1f} ms in device time", file=sys.stderr)
    why = cap.sync.diagnose()
    if why:
        print(why, file=sys.stderr)
    if st.matched == 0:
        print("edgepad run: no frame set was formed, nothing was decided on", file=sys.stderr)
        return 1
    return 0
