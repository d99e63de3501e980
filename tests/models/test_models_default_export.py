"""Export extras used by the embedded default model: extra operating-point criteria and portable provenance."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from edgepad import metrics as M  # noqa: E402
from edgepad.training.export import _portable  # noqa: E402

from tests.helpers.datasets import write_cfg  # noqa: E402


def test_export_writes_extra_criteria_per_subset(tmp_path, bench):
    pytest.importorskip("onnxruntime")
    from edgepad.cli import main
    cfg = write_cfg(tmp_path, bench, **{"export.extra_criteria": ["eer", "apcer10"]})
    onnx_path = tmp_path / "m.onnx"
    assert main(["train", str(cfg), "--quiet", "--export", str(onnx_path)]) == 0
    man = json.loads((tmp_path / "m.onnx.json").read_text())
    ops = man["operating_points"]
    assert set(ops) == {"bpcer20", "eer", "apcer10"}
    for crit in ops:
        assert set(ops[crit]) == {"rgb+depth+ir", "rgb+depth", "rgb+ir", "rgb"}
    assert man["threshold_criterion"] == "bpcer20" and man["threshold"] == ops["bpcer20"]["rgb+depth+ir"]
    # the placement rule is recorded (the runtime reads only the number)
    assert man["training"]["threshold_rule"] == "gap_logit"
    assert man["training"]["threshold_placement"]["placed"] in ("separation", "interval", "criterion")
    # `edgepad evaluate` with its defaults places τ by the same rule: on the same dev frames it reproduces the
    # manifest's τ (fails if evaluate and the export disagree on the rule)
    from edgepad.evaluation import evaluate_model
    doc = evaluate_model(onnx_path, bench, "grandtest", tmp_path / "ev", criterion="bpcer20", level="frame",
                         plots=False)
    assert doc["result"]["threshold_rule"] == man["training"]["threshold_rule"]
    assert doc["model"]["manifest_threshold_rule"] == "gap_logit"
    assert doc["result"]["threshold_placement"]["placed"] == man["training"]["threshold_placement"]["placed"]
    assert doc["result"]["threshold"] == pytest.approx(man["threshold"], rel=1e-3, abs=1e-4)
    # the extra points are real fits on the same dev scores, not copies of the default
    assert ops["apcer10"] != ops["bpcer20"] or ops["eer"] != ops["bpcer20"]
    assert M.parse_criterion("apcer10").kind == "apcer"


def test_portable_provenance_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prov = {"data": {"root": str(tmp_path / "configs" / ".." / "bench" / "default")},
            "out": str(tmp_path / "runs" / "x"), "other": "/elsewhere/y", "n": 3, "l": [str(tmp_path / "a")]}
    assert _portable(prov) == {"data": {"root": "bench/default"}, "out": "runs/x", "other": "/elsewhere/y", "n": 3,
                               "l": ["a"]}
