"""Evaluation of a trained benchmark run: frame scores per fold and sub-protocol, τ fitted on dev and applied to
eval, missing-modality results with the own-dev and the P4-dev thresholds."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepad.benchmark.matrix import SUBPROTOCOLS
from edgepad.data.datasets import SynthBenchDataset
from edgepad.data.transforms import PADDataset, build_transform
from edgepad.errors import ConfigError, MetricError
from edgepad.evaluation import FRAME_SEPARATOR, ScoreSet, aggregate_videos, evaluate_scores
from edgepad.metrics import DEFAULT_THRESHOLD_RULE, pad_metrics, place_threshold


def score_fold(model, inputs: Mapping[str, Any], root: Path, protocol: str, fold: str, keep: Sequence[str],
               batch_size: int = 128):
    """Frame-level :class:`~edgepad.evaluation.ScoreSet` of ``model`` on one fold, presenting only ``keep``."""
    from edgepad.training import WithoutModalities, predict  # torch side: may need torch at import
    base = SynthBenchDataset(root, protocol, split=fold, cache=False)
    size = int(next(iter(inputs.values())).shape[-1])
    ds = PADDataset(WithoutModalities(base, set(inputs) - set(keep)), inputs, build_transform(size, train=False))
    s = predict(model, ds, batch_size=batch_size)["score"].astype(np.float64)
    recs = base.records
    return ScoreSet([r.subject or r.video_id for r in recs],
                    [f"{r.video_id}{FRAME_SEPARATOR}{r.frame_idx}" for r in recs],
                    np.array([r.is_bonafide for r in recs], bool),
                    ["" if r.is_bonafide else r.pai for r in recs], s,
                    {"level": "frame", "protocol": protocol, "fold": fold, "modalities": list(keep)})


def compact(res: Mapping[str, Any]) -> dict:
    """The figures the tables need from an ``evaluate_scores`` result (JSON-ready)."""
    ev = res["eval"]
    ops = res.get("operating_points", {})

    def op(name: str) -> float | None:
        o = ops.get(name, {})
        return None if "eval" not in o else float(o["eval"]["bpcer"] if name.startswith("bpcer")
                                                  else o["eval"]["apcer"])
    return {"criterion": res["criterion"], "threshold": float(res["threshold"]),
            "threshold_rule": res.get("threshold_rule"),
            "acer": float(ev["acer"]), "apcer": float(ev["apcer"]), "bpcer": float(ev["bpcer"]),
            "hter": float(ev["hter"]), "apcer_worst_species": ev["apcer_worst_species"],
            "apcer_per_species": {p: float(r["value"]) for p, r in ev["apcer_per_species"].items()},
            "apcer_k_n": {p: [int(r["k"]), int(r["n"])] for p, r in ev["apcer_per_species"].items()},
            "bpcer_k_n": [int(ev["rates"]["bpcer"]["k"]), int(ev["rates"]["bpcer"]["n"])],
            "bpcer_ci": [float(x) for x in ev["rates"]["bpcer"]["ci"]],
            "bpcer10": op("bpcer10"), "bpcer20": op("bpcer20"), "bpcer100": op("bpcer100"),
            "apcer100": op("apcer100"), "dev_apcer": float(res["dev"]["apcer"]),
            "dev_bpcer": float(res["dev"]["bpcer"]), "eer_dev": float(res["eer_dev"]["eer"]),
            "level": res.get("level")}


def summarise(dev, eval_, criterion: str, rule: str = DEFAULT_THRESHOLD_RULE) -> dict:
    """:func:`compact` result of τ from dev (``criterion``, placed by ``rule``) on eval, plus ``acer_eer`` /
    ``bpcer_eer`` / ``apcer_eer``: eval rates at the dev EER threshold placed by the same rule (a second, less
    extreme operating point, also fitted on dev only)."""
    res = evaluate_scores(dev, eval_, criterion, rule=rule)
    out = compact(res)
    tau_eer = place_threshold(*dev.args, "eer", rule).threshold
    out["threshold_eer"] = float(tau_eer)
    m = pad_metrics(*eval_.args, tau_eer)
    out["acer_eer"] = float(m["acer"])
    out["bpcer_eer"] = float(m["bpcer"])
    out["apcer_eer"] = float(m["apcer"])
    return out


def p4_threshold_results(dev: Mapping[str, Any], eval_: Mapping[str, Any], criterion: str,
                         reference: str = "P4", rule: str = DEFAULT_THRESHOLD_RULE) -> dict[str, dict]:
    """Missing-modality results with two threshold policies.

    For every sub-protocol ``s`` in ``dev``/``eval_`` (``{name: ScoreSet}``): ``own`` = τ fitted on s's dev scores
    with ``criterion`` (placed by ``rule``) and applied to s's eval scores; ``ref`` = τ fitted (and placed) on the
    ``reference`` sub-protocol's dev (all modalities) applied unchanged to s's eval scores — what a runtime without per-subset thresholds does.

    Returns:
        ``{s: {"own": compact result | {"error"}, "ref": compact pad metrics at τ_ref | {"error"},
        "tau_ref": float}}``.

    Raises:
        MetricError: the reference sub-protocol is absent or its dev threshold cannot be fitted.
    """
    if reference not in dev:
        raise MetricError(f"reference sub-protocol {reference} was not scored")
    tau_ref = float(place_threshold(*dev[reference].args, criterion, rule).threshold)
    out: dict[str, dict] = {}
    for s in dev:
        row: dict[str, Any] = {"tau_ref": tau_ref}
        try:
            row["own"] = summarise(dev[s], eval_[s], criterion, rule)
        except MetricError as exc:
            row["own"] = {"error": str(exc)}
        try:
            m = pad_metrics(*eval_[s].args, tau_ref)
            row["ref"] = {"threshold": tau_ref, "acer": float(m["acer"]), "apcer": float(m["apcer"]),
                          "bpcer": float(m["bpcer"]), "apcer_worst_species": m["apcer_worst_species"],
                          "apcer_per_species": {p: float(r["value"]) for p, r in m["apcer_per_species"].items()}}
        except MetricError as exc:
            row["ref"] = {"error": str(exc)}
        out[s] = row
    return out


def evaluate_run(run_dir: Path, root: Path, protocol: str, subsets: Sequence[str], criterion: str,
                 level: str, batch_size: int = 128, rule: str = DEFAULT_THRESHOLD_RULE,
                 dev_protocol: str | None = None) -> dict:
    """Score ``run_dir/best.pt`` on ``protocol`` (dev + eval) for each sub-protocol and fit τ on dev (placed by
    ``rule``); ``dev_protocol``: take the dev fold from this protocol instead (the one the run was trained on).

    ``subsets`` empty = the model's own modalities only (reported as ``full``).
    """
    from edgepad.training import load_checkpoint  # torch side: may need torch at import
    model, inputs, _ = load_checkpoint(run_dir / "best.pt")
    mods = tuple(inputs)
    wanted: dict[str, tuple[str, ...]] = {}
    if subsets:
        for s in subsets:
            keep = tuple(m for m in SUBPROTOCOLS[s] if m in mods)
            if not keep:
                raise ConfigError(f"sub-protocol {s} presents none of the model's modalities {list(mods)}",
                                  key="subsets")
            wanted[s] = keep
    else:
        wanted["full"] = mods
    dev, ev = {}, {}
    for name, keep in wanted.items():
        d = score_fold(model, inputs, root, dev_protocol or protocol, "dev", keep, batch_size)
        e = score_fold(model, inputs, root, protocol, "eval", keep, batch_size)
        if level == "video":
            d, e = aggregate_videos(d), aggregate_videos(e)
        dev[name], ev[name] = d, e
    out: dict[str, Any] = {"protocol": protocol, "dev_protocol": dev_protocol or protocol, "level": level,
                           "criterion": criterion, "threshold_rule": rule, "modalities": list(mods), "subsets": {}}
    for name in wanted:
        try:
            out["subsets"][name] = summarise(dev[name], ev[name], criterion, rule)
        except MetricError as exc:
            out["subsets"][name] = {"error": str(exc)}
    if "P4" in wanted and len(wanted) > 1:
        try:
            out["p4_threshold"] = {s: r["ref"] for s, r in p4_threshold_results(dev, ev, criterion,
                                                                                   rule=rule).items()}
        except MetricError as exc:
            out["p4_threshold"] = {"error": str(exc)}
    return out
