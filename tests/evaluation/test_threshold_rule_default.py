"""One τ placement rule everywhere: evaluate, metrics, benchmark and the export that ships the default model."""
from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from edgepad import metrics as M
from edgepad.benchmark.matrix import MatrixConfig, load_matrix
from edgepad.commands.evaluation import add_evaluate_arguments, add_metrics_arguments
from edgepad.errors import ConfigError
from edgepad.evaluation import ScoreSet, evaluate_files, evaluate_model, evaluate_scores
from edgepad.training.config import ExportConfig, load_train_config

ROOT = Path(__file__).resolve().parents[2]


def _default(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def _cli_default(add) -> str:
    p = argparse.ArgumentParser()
    add(p)
    return next(a.default for a in p._actions if a.dest == "threshold_rule")


def test_every_entry_point_defaults_to_the_export_rule():
    rule = ExportConfig().threshold_rule
    assert rule == M.DEFAULT_THRESHOLD_RULE == "gap_logit"
    # the shipped recipe's export (what `edgepad train configs/default_edge.yaml --export` records)
    assert load_train_config(ROOT / "configs" / "default_edge.yaml").export.threshold_rule == rule
    assert _default(evaluate_model, "threshold_rule") == rule
    assert _default(evaluate_files, "threshold_rule") == rule
    assert _default(evaluate_scores, "rule") == rule
    assert _default(M.place_threshold, "rule") == rule
    assert _cli_default(add_evaluate_arguments) == rule and _cli_default(add_metrics_arguments) == rule
    assert MatrixConfig().threshold_rule == rule
    assert load_matrix(ROOT / "configs" / "benchmark" / "matrix.yaml").threshold_rule == rule
    # a shipped manifest that records its rule must record this one (the committed default.onnx predates the
    # record: its τ 0.262 is the `edge` eer point; evaluate reports it as `manifest_threshold_rule: None`)
    man = json.loads((ROOT / "edgepad" / "assets" / "default.onnx.json").read_text(encoding="utf-8"))
    assert man["training"].get("threshold_rule", rule) == rule


def test_evaluate_scores_places_and_records_the_rule():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.8, 0.99, 20)
    a = rng.uniform(0.01, 0.2, 40)                                  # dev separates completely
    dev = ScoreSet([str(i) for i in range(60)], [f"v{i}" for i in range(60)], np.r_[[True] * 20, [False] * 40],
                   [""] * 20 + ["print"] * 40, np.r_[b, a], {"level": "video"})
    res = evaluate_scores(dev, dev, "eer")
    assert res["threshold_rule"] == "gap_logit" and res["threshold_placement"]["placed"] == "separation"
    assert a.max() < res["threshold"] < b.min()                      # off both edges
    assert res["threshold"] != pytest.approx(M.fit_threshold(*dev.args, "eer"))
    edge = evaluate_scores(dev, dev, "eer", rule="edge")
    assert edge["threshold"] == M.fit_threshold(*dev.args, "eer") == pytest.approx(b.min())
    assert edge["operating_points"]["bpcer20"]["threshold"] == M.fit_threshold(*dev.args, "bpcer20")
    with pytest.raises(ConfigError):
        evaluate_scores(dev, dev, "eer", rule="middle")


def test_matrix_rejects_an_unknown_rule():
    with pytest.raises(ConfigError):
        MatrixConfig(threshold_rule="gap-logit")
