"""The accuracy gate run after every conversion (torch → ONNX, ONNX → FP16/INT8 ONNX, ONNX → engine).

:func:`validate_artifact` runs a candidate and its reference on the same held-out feeds (never the calibration
set) and reports per-output max abs/rel error and cosine, **decision agreement at the manifest threshold**, the
flipped samples, the score shift and — with labels — APCER/BPCER/ACER of both and their change
(:func:`edgepad.metrics.pad_metrics`). It raises :class:`~edgepad.errors.ValidationError` when agreement is below
``min_decision_agreement`` (99.5 %) or ACER worsens by more than ``max_acer_increase`` (0.5 point). An optional,
recorded re-fit of the candidate's threshold on dev (``refit=``) makes the gate compare the candidate at its own
threshold. Only numpy is needed here; the backends need their own packages.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgepad.engines.backend import BaseBackend, load_backend
from edgepad.engines.manifest import ModelManifest, subset_key, write_manifest
from edgepad.errors import ConfigError, ShapeError, ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Pass criteria of the accuracy gate (``BuildConfig`` carries the same fields).

    Attributes:
        min_decision_agreement: fraction of samples with the same live/spoof decision (0.995 = 99.5 %).
        max_acer_increase: allowed ACER increase as a fraction (0.005 = 0.5 percentage point); needs labels.
        atol: optional max abs error on ``score`` (None = reported only).
        min_cosine: optional minimum cosine similarity of ``score`` (None = reported only).
    """

    min_decision_agreement: float = 0.995
    max_acer_increase: float = 0.005
    atol: float | None = None
    min_cosine: float | None = None


@dataclass(frozen=True)
class DevSet:
    """Dev-split feeds and labels for re-fitting the converted artifact's threshold (never the eval split)."""

    feeds: Any
    is_bonafide: Sequence[bool]
    species: Sequence[str] | None = None
    criterion: str | None = None   # None = the manifest's threshold_criterion


def stack_feeds(feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Feeds as ``{name: N×C×S×S}``: a mapping of stacked arrays, or an iterable of per-batch feed dicts."""
    if isinstance(feeds, Mapping):
        return {k: np.asarray(v, np.float32) for k, v in feeds.items()}
    parts: dict[str, list[np.ndarray]] = {}
    for f in feeds:
        for k, v in f.items():
            parts.setdefault(k, []).append(np.asarray(v, np.float32))
    if not parts:
        raise ConfigError("no validation feeds", key="feeds")
    return {k: np.concatenate(v, 0) for k, v in parts.items()}


def run_backend(backend: BaseBackend, feeds: Mapping[str, np.ndarray], batch: int | None = None
                ) -> dict[str, np.ndarray]:
    """Run ``backend`` over stacked feeds ``{name: N×…}`` in batches (1 for fixed-batch models).

    Returns:
        ``{output: (N,)}`` float64 copies.
    """
    names = list(backend.inputs)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ShapeError(f"feeds.{missing[0]}", backend.inputs[missing[0]].shape, "missing")
    n = int(feeds[names[0]].shape[0])
    fixed = backend.inputs[names[0]].shape[0]
    step = int(fixed) if fixed != -1 else int(batch or 32)
    if fixed != -1 and n % step:
        raise ShapeError("feeds", f"a multiple of the model batch {step}", n)
    outs: dict[str, list[np.ndarray]] = {}
    was_active = backend.is_active
    backend.activate()
    try:
        for i in range(0, n, step):
            res = backend.infer({k: np.ascontiguousarray(feeds[k][i:i + step]) for k in names})
            for k, v in res.items():
                outs.setdefault(k, []).append(np.array(v, np.float64).reshape(-1))
    finally:
        if not was_active:
            backend.deactivate()
    return {k: np.concatenate(v) for k, v in outs.items()}


def compare_outputs(candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per output: ``max_abs_error``, ``max_rel_error``, ``mean_abs_error``, ``cosine``, ``mean_shift``."""
    from edgepad.engines.quantize import cosine
    res = {}
    for k, ref in reference.items():
        if k not in candidate:
            raise ValidationError(f"candidate lacks output {k!r}", report={"missing_output": k})
        c = np.asarray(candidate[k], np.float64)
        r = np.asarray(ref, np.float64)
        if c.shape != r.shape:
            raise ShapeError(f"candidate.{k}", r.shape, c.shape)
        d = np.abs(c - r)
        finite = bool(np.all(np.isfinite(c)))
        res[k] = {"max_abs_error": float(d.max(initial=0.0)) if finite else math.inf,
                  "mean_abs_error": float(d.mean()) if finite and d.size else (math.inf if not finite else 0.0),
                  "max_rel_error": float((d / np.maximum(np.abs(r), 1e-12)).max(initial=0.0)) if finite
                  else math.inf,
                  "cosine": cosine(c, r) if finite else float("nan"),
                  "mean_shift": float((c - r).mean()) if finite and d.size else float("nan")}
    return res


def _open(artifact: BaseBackend | Path | str, options: Mapping[str, Any]) -> BaseBackend:
    return artifact if isinstance(artifact, BaseBackend) else load_backend(artifact, **options)


def run_pair(candidate: BaseBackend | Path | str, reference: BaseBackend | Path | str,
             feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]], batch: int | None = None,
             backend_options: Mapping[str, Any] | None = None) -> tuple[BaseBackend, BaseBackend, dict, dict]:
    """Open both (paths or backends) and run them on the same stacked feeds: ``(cand, ref, cand_out, ref_out)``."""
    opts = dict(backend_options or {})
    cand, ref = _open(candidate, opts), _open(reference, opts)
    stacked = stack_feeds(feeds)
    return cand, ref, run_backend(cand, stacked, batch), run_backend(ref, stacked, batch)


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """``scores >= threshold`` with a non-finite score never live: (N,) bool."""
    return np.where(np.isfinite(scores), scores, -np.inf) >= threshold


def _metrics(scores: np.ndarray, is_bonafide: np.ndarray, species: Any, threshold: float) -> dict:
    from edgepad.metrics import pad_metrics
    m = pad_metrics(scores, is_bonafide, species, threshold)
    return {"threshold": float(threshold), "apcer": m["apcer"], "bpcer": m["bpcer"], "acer": m["acer"],
            "apcer_worst_species": m["apcer_worst_species"],
            "apcer_per_species": {p: r["value"] for p, r in m["apcer_per_species"].items()}}


def validate_artifact(candidate: BaseBackend | Path | str, reference: BaseBackend | Path | str,
                      feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]], *,
                      labels: Sequence[bool] | np.ndarray | None = None, species: Sequence[str] | None = None,
                      gate: GateConfig | Any | None = None, refit: DevSet | None = None,
                      record: bool = True, raise_on_fail: bool = True, batch: int | None = None,
                      backend_options: Mapping[str, Any] | None = None, max_flipped: int = 50) -> dict[str, Any]:
    """Compare a converted artifact with its reference and apply the accuracy gate.

    Args:
        candidate: converted artifact (path with manifest, or an open backend).
        reference: the artifact it was converted from (e.g. the FP32 ONNX or the ``.pt``).
        feeds: held-out inputs — ``{name: N×C×S×S}`` or an iterable of feed dicts (never calibration data).
        labels: (N,) is-bona-fide booleans (True = bona fide) for APCER/BPCER/ACER; None = agreement only.
        species: (N,) PAI species of attacks (EVALUATION names); None = one species.
        gate: GateConfig or any object with the same attribute names (e.g. ``BuildConfig``); default GateConfig().
        refit: dev-split feeds/labels: re-fit the candidate's threshold (criterion = manifest's) and gate at it.
        record: write the report (and a re-fitted threshold) into the candidate's manifest when it is a path.
        raise_on_fail: raise ValidationError on a failed gate (the report is also recorded with ``passed: false``).
        batch: batch size for dynamic-batch models.
        backend_options: options for :func:`load_backend` (e.g. ``{"threads": 2}``).
        max_flipped: how many flipped sample indices to list.

    Returns:
        the report: ``samples``, ``outputs`` (per-output errors), ``threshold`` (reference),
        ``candidate_threshold``, ``decision_agreement``, ``flipped`` (count), ``flipped_indices``,
        ``metrics`` ({"reference", "candidate", "delta"} with labels), ``refit``, ``gate``, ``passed``,
        ``failures``.

    Raises:
        ValidationError: the gate failed (``.report`` holds the report).
    """
    g = gate if gate is not None else GateConfig()
    gate_vals = {k: getattr(g, k, getattr(GateConfig, k)) for k in GateConfig.__dataclass_fields__}
    cand, ref, cand_out, ref_out = run_pair(candidate, reference, feeds, batch, backend_options)
    cand_path = None if isinstance(candidate, BaseBackend) else Path(candidate)
    score_name = ref.manifest.score_output
    outputs = compare_outputs(cand_out, {k: v for k, v in ref_out.items() if k in cand_out or k == score_name})
    n = int(ref_out[score_name].size)
    ref_thr = float(ref.manifest.threshold)
    cand_thr = float(cand.manifest.threshold)

    refit_info = None
    if refit is not None:
        from edgepad.metrics import place_threshold
        crit = refit.criterion or cand.manifest.threshold_criterion
        # the rule the manifest's τ was placed with (training.threshold_rule; none recorded = legacy `edge`)
        rule = (cand.manifest.training or {}).get("threshold_rule") or "edge"
        dev_scores = run_backend(cand, stack_feeds(refit.feeds), batch)[score_name]
        new_thr = float(place_threshold(dev_scores, np.asarray(refit.is_bonafide, bool), refit.species, crit,
                                        rule).threshold)
        if not math.isfinite(new_thr):
            raise ValidationError(f"re-fitted {crit} threshold on dev is not finite ({new_thr}); the converted "
                                  "model cannot reach the operating point", report={"refit_threshold": new_thr})
        refit_info = {"criterion": crit, "threshold_rule": rule, "split": "dev", "samples": int(dev_scores.size),
                      "previous_threshold": cand_thr, "threshold": new_thr}
        cand_thr = new_thr

    rs, cs = ref_out[score_name], cand_out[score_name]
    ref_dec, cand_dec = rs >= ref_thr, decisions(cs, cand_thr)
    flipped = np.flatnonzero(ref_dec != cand_dec)
    report: dict[str, Any] = {
        "reference": ref.manifest.precision + "/" + ref.kind, "candidate": cand.manifest.precision + "/" + cand.kind,
        "samples": n, "outputs": outputs, "threshold": ref_thr, "candidate_threshold": cand_thr,
        "decision_agreement": float(1.0 - flipped.size / max(n, 1)), "flipped": int(flipped.size),
        "flipped_indices": [int(i) for i in flipped[:max_flipped]],
        "flipped_to_live": int(np.count_nonzero(cand_dec[flipped])), "refit": refit_info, "gate": gate_vals,
    }
    failures = []
    if labels is not None:
        lab = np.asarray(labels, bool).reshape(-1)
        if lab.size != n:
            raise ShapeError("labels", (n,), lab.shape)
        m_ref = _metrics(rs, lab, species, ref_thr)
        m_cand = _metrics(cs, lab, species, cand_thr)
        report["metrics"] = {"reference": m_ref, "candidate": m_cand,
                             "delta": {k: m_cand[k] - m_ref[k] for k in ("apcer", "bpcer", "acer")}}
        if m_cand["acer"] - m_ref["acer"] > gate_vals["max_acer_increase"] + 1e-12:
            failures.append(f"ACER {100 * m_ref['acer']:.2f} % -> {100 * m_cand['acer']:.2f} % (+"
                            f"{100 * (m_cand['acer'] - m_ref['acer']):.2f} points > "
                            f"{100 * gate_vals['max_acer_increase']:.2f})")
    if report["decision_agreement"] < gate_vals["min_decision_agreement"]:
        failures.append(f"decision agreement {100 * report['decision_agreement']:.2f} % < "
                        f"{100 * gate_vals['min_decision_agreement']:.2f} % ({flipped.size} of {n} flipped)")
    so = outputs[score_name]
    if gate_vals["atol"] is not None and not so["max_abs_error"] <= gate_vals["atol"]:
        failures.append(f"score max abs error {so['max_abs_error']:.3g} > atol {gate_vals['atol']:g}")
    if gate_vals["min_cosine"] is not None and not so["cosine"] >= gate_vals["min_cosine"]:
        failures.append(f"score cosine {so['cosine']:.5f} < {gate_vals['min_cosine']}")
    report["passed"] = not failures
    report["failures"] = failures
    log.info("validation %s vs %s: agreement %.4f, max abs %.3g, passed %s", report["candidate"],
             report["reference"], report["decision_agreement"], so["max_abs_error"], report["passed"])
    if record and cand_path is not None:
        record_validation(cand_path, cand.manifest, report)
    if failures and raise_on_fail:
        raise ValidationError(f"{cand_path.name if cand_path else cand.kind} failed the accuracy gate: "
                              + "; ".join(failures), report=report)
    return report


def record_validation(artifact: Path, manifest: ModelManifest, report: Mapping[str, Any]) -> ModelManifest:
    """Write the gate's summary (and a re-fitted threshold, when it passed) into the artifact's manifest."""
    summary = {k: report[k] for k in ("reference", "candidate", "samples", "decision_agreement", "flipped",
                                      "threshold", "candidate_threshold", "passed", "failures", "refit")}
    summary["score"] = report["outputs"].get(manifest.score_output)
    if "metrics" in report:
        summary["metrics"] = report["metrics"]
    changes: dict[str, Any] = {"validation": summary}
    refit = report.get("refit")
    if refit and report["passed"]:
        full = subset_key(manifest.modalities)
        ops = {c: dict(t) for c, t in manifest.operating_points.items()}
        if refit["criterion"] == manifest.threshold_criterion:
            changes["threshold"] = refit["threshold"]
            changes["threshold_split"] = "dev"
            if full in ops.get(refit["criterion"], {}):
                ops[refit["criterion"]][full] = refit["threshold"]
        else:
            ops.setdefault(refit["criterion"], {})[full] = refit["threshold"]
        changes["operating_points"] = ops
    return write_manifest(manifest.replace(**changes), artifact)
