"""FP16 conversion, INT8 Q/DQ, TensorRT-legality checks and the accuracy gate, for real on the CPU."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from edgepad.engines import graph as G  # noqa: E402
from edgepad.engines.backend import load_backend  # noqa: E402
from edgepad.engines.manifest import read_manifest  # noqa: E402
from edgepad.engines.quantize import (check_trt_legality, qdq_summary, quantize_int8,  # noqa: E402
                                      to_fp16)
from edgepad.engines.validate import DevSet, GateConfig, validate_artifact  # noqa: E402
from edgepad.errors import CalibrationError, ConfigError, ShapeError, ValidationError  # noqa: E402

from tests.helpers.engines_model import TinyPAD, tiny_specs  # noqa: E402


def _batches(feeds, n=None):
    n = n or len(next(iter(feeds.values())))
    return [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]


def _dtype_of(model, name):
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        if init.name == name:
            return init.data_type
    return None


def test_fp16_keeps_io_head_and_attention_in_fp32(trained, tmp_path):
    dst = tmp_path / "m16.onnx"
    man = to_fp16(trained["onnx"], dst)
    model = onnx.load(str(dst))
    assert man.precision == "fp16" and man.build["source_onnx_sha256"] == read_manifest(trained["onnx"]).onnx_sha256
    summary = qdq_summary(model)
    assert summary["fp16_initializers"] > 0 and summary["cast"] > 0
    for vi in list(model.graph.input) + list(model.graph.output):
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    softmax = [n for n in model.graph.node if n.op_type in ("Softmax", "Sigmoid")]
    assert len(softmax) >= 6   # 2 attention softmax + 4 score sigmoids
    for n in softmax:
        assert _dtype_of(model, n.input[0]) == onnx.TensorProto.FLOAT, n.name
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(_dtype_of(model, n.input[1]) == onnx.TensorProto.FLOAT16 for n in convs)
    for n in G.attention_nodes(model):
        if n.op_type == "MatMul":
            assert _dtype_of(model, n.output[0]) == onnx.TensorProto.FLOAT
    assert check_trt_legality(model) == []


def test_fp16_and_int8_pass_the_gate(trained, tmp_path):
    ev_feeds, ev_live, ev_species = trained["eval"]
    m16 = to_fp16(trained["onnx"], tmp_path / "m16.onnx")
    r16 = validate_artifact(tmp_path / "m16.onnx", trained["onnx"], ev_feeds, labels=ev_live, species=ev_species)
    assert r16["passed"] and r16["decision_agreement"] >= 0.995
    assert r16["outputs"]["score"]["max_abs_error"] < 5e-3 and r16["outputs"]["score"]["cosine"] > 0.9999
    assert abs(r16["metrics"]["delta"]["acer"]) <= 0.005
    assert read_manifest(tmp_path / "m16.onnx").validation["passed"] is True
    assert m16.threshold == read_manifest(trained["onnx"]).threshold

    cal_feeds, _, _ = trained["calib"]
    m8 = quantize_int8(trained["onnx"], tmp_path / "m8.onnx", _batches(cal_feeds))
    r8 = validate_artifact(tmp_path / "m8.onnx", trained["onnx"], ev_feeds, labels=ev_live, species=ev_species,
                           raise_on_fail=False)
    assert 0 < r8["outputs"]["score"]["max_abs_error"] < 0.1   # really quantized, still close
    assert r8["outputs"]["score"]["cosine"] > 0.999
    assert r8["decision_agreement"] >= 0.98
    assert m8.precision == "int8" and m8.calibration_set_sha256
    assert m8.build["quantization"]["calibration_samples"] == 128


def test_int8_qdq_is_symmetric_and_trt_legal(trained, tmp_path, caplog):
    cal_feeds, _, _ = trained["calib"]
    with caplog.at_level(logging.WARNING):
        man = quantize_int8(trained["onnx"], tmp_path / "q.onnx", _batches(cal_feeds, 64), sample_ids=range(64))
    assert any("at least 300" in r.message for r in caplog.records)
    model = onnx.load(str(tmp_path / "q.onnx"))
    s = qdq_summary(model)
    assert s["quantize"] > 5 and s["dequantize"] > 5 and s["domains"] == ["ai.onnx"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in G.QDQ_OPS:
            assert inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any()
            assert np.all(inits[n.input[1]] > 0)
    excluded = set(man.build["quantization"]["excluded_nodes"])
    prod = G.producers(model)
    for n in model.graph.node:
        if n.op_type in ("Sigmoid", "Softmax"):
            assert n.name in excluded
            assert prod[n.input[0]].op_type != "DequantizeLinear"
    assert check_trt_legality(model) == []
    # another calibration set gives another hash; the same set the same hash
    again = quantize_int8(trained["onnx"], tmp_path / "q2.onnx", _batches(cal_feeds, 64), sample_ids=range(64))
    other = quantize_int8(trained["onnx"], tmp_path / "q3.onnx", _batches(cal_feeds, 63), sample_ids=range(63))
    assert again.calibration_set_sha256 == man.calibration_set_sha256 != other.calibration_set_sha256


def test_legality_check_catches_asymmetric_custom_and_opset(trained, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    cal_feeds, _, _ = trained["calib"]

    class Reader:
        def __init__(self):
            self.it = iter(_batches(cal_feeds, 16))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(trained["onnx"]), str(tmp_path / "asym.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8)
    issues = check_trt_legality(tmp_path / "asym.onnx")
    assert any("nonzero zero point" in i or "uint8" in i for i in issues)
    model = onnx.load(str(trained["onnx"]))
    model.graph.node.append(onnx.helper.make_node("Gelu", ["score"], ["g"], domain="com.microsoft", name="custom"))
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    issues = check_trt_legality(model)
    assert any("com.microsoft" in i for i in issues)
    assert any("opset 17 > 16" in i for i in check_trt_legality(trained["onnx"], max_opset=16))
    removed = G.strip_unused_domains(onnx.load(str(trained["onnx"])))
    assert removed == []


def test_calibration_errors(trained, tmp_path):
    with pytest.raises(CalibrationError):
        quantize_int8(trained["onnx"], tmp_path / "e.onnx", [])
    bad = {k: v[:1, :, :8, :8] for k, v in trained["calib"][0].items()}
    with pytest.raises(ShapeError):
        quantize_int8(trained["onnx"], tmp_path / "e.onnx", [bad])
    m8 = tmp_path / "x.onnx"
    to_fp16(trained["onnx"], m8)
    with pytest.raises(ConfigError):   # converting an already converted model
        to_fp16(m8, tmp_path / "y.onnx")


def test_gate_fails_on_a_different_model_and_records_it(trained, tmp_path):
    import torch
    from edgepad.engines.export import export_onnx
    torch.manual_seed(123)
    other = TinyPAD(attention=True).eval()
    thr = read_manifest(trained["onnx"]).threshold
    export_onnx(other, tmp_path / "other.onnx", inputs=tiny_specs(), threshold=thr, threshold_criterion="bpcer20",
                dynamic_batch=True)
    ev_feeds, ev_live, ev_species = trained["eval"]
    with pytest.raises(ValidationError) as info:
        validate_artifact(tmp_path / "other.onnx", trained["onnx"], ev_feeds, labels=ev_live, species=ev_species)
    rep = info.value.report
    assert not rep["passed"] and rep["flipped"] > 0 and rep["failures"]
    assert rep["decision_agreement"] < 0.995
    assert read_manifest(tmp_path / "other.onnx").validation["passed"] is False
    # a looser gate passes the same candidate on agreement alone
    loose = validate_artifact(tmp_path / "other.onnx", trained["onnx"], ev_feeds,
                              gate=GateConfig(min_decision_agreement=0.01), record=False)
    assert loose["passed"] and "metrics" not in loose


def test_threshold_refit_is_recorded(trained, tmp_path):
    shutil.copy(trained["onnx"], tmp_path / "m.onnx")
    shutil.copy(str(trained["onnx"]) + ".json", tmp_path / "m.onnx.json")
    to_fp16(tmp_path / "m.onnx", tmp_path / "m16.onnx")
    dev_feeds, dev_live, dev_species = trained["dev"]
    ev_feeds, ev_live, ev_species = trained["eval"]
    rep = validate_artifact(tmp_path / "m16.onnx", tmp_path / "m.onnx", ev_feeds, labels=ev_live,
                            species=ev_species, refit=DevSet(dev_feeds, dev_live, dev_species))
    man = read_manifest(tmp_path / "m16.onnx")
    assert rep["refit"]["criterion"] == "bpcer20" and man.threshold == pytest.approx(rep["refit"]["threshold"])
    # re-fitted with the rule the source manifest's τ was placed with (none recorded = legacy edge)
    assert rep["refit"]["threshold_rule"] == ((read_manifest(tmp_path / "m.onnx").training or {}).get("threshold_rule")
                                              or "edge")
    assert man.validation["refit"]["previous_threshold"] == read_manifest(tmp_path / "m.onnx").threshold
    with load_backend(tmp_path / "m16.onnx") as be:   # manifest rewrite keeps the artifact hash valid
        assert be.infer({k: v[:2] for k, v in ev_feeds.items()})["score"].shape == (2,)
