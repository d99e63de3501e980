"""INT8 keeps attention and score heads float by construction (allow-list) and the legality check proves it."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgepad.engines import regions as R  # noqa: E402
from edgepad.engines.export import example_feeds, export_onnx  # noqa: E402
from edgepad.engines.quantize import check_trt_legality, qdq_summary, quantize_int8  # noqa: E402
from edgepad.models.fusion import FUSIONS  # noqa: E402
from edgepad.models.registry import create_model, list_models  # noqa: E402
from edgepad.preprocess import default_input_specs  # noqa: E402

SIZE = 32   # px: the smallest the resnet18h trunk takes through stride 16 with a 2×2 attention map

CASES = sorted({(m, None) for m in list_models()} | {("flexmodal", f) for f in FUSIONS}, key=str)


def _export(tmp_path, name, fusion):
    torch.manual_seed(0)
    m = create_model(name, fusion=fusion, backbone_kwargs={"width": 8}).eval()
    specs = {k: v for k, v in default_input_specs(SIZE).items() if k in m.modalities}
    src = tmp_path / f"{name}_{fusion}.onnx"
    export_onnx(m, src, inputs=specs, threshold=0.5, threshold_criterion="bpcer20")
    return src, specs


@pytest.mark.parametrize("name,fusion", CASES)
def test_every_registered_architecture_int8_keeps_protected_nodes_float(tmp_path, name, fusion):
    src, specs = _export(tmp_path, name, fusion)
    dst = tmp_path / "q.onnx"
    man = quantize_int8(src, dst, [example_feeds(specs, seed=i) for i in range(4)])
    q = onnx.load(str(dst))
    assert R.quantized_protected_inputs(q) == []
    assert check_trt_legality(q) == []
    assert qdq_summary(q)["quantize"] > 0          # the trunk is quantized
    quant = man.build["quantization"]
    assert quant["selection"] == "allow-list" and quant["quantized_nodes"] > 0
    prot = {n.name: n for n in R.protected_nodes(q)}
    assert set(quant["protected_nodes"]) <= set(prot) | {n.name for n in q.graph.node if n.op_type == "Softmax"}
    assert any(n.op_type == "Sigmoid" for n in prot.values())
    if fusion == "xattn":   # both attention-logit MatMuls and their Softmax are protected
        assert sum(n.op_type == "Softmax" for n in prot.values()) == 2
        assert sum(n.op_type == "MatMul" for n in prot.values()) == 4
        assert any(n.op_type in ("Reshape", "Transpose") for n in prot.values())
    if name == "multilayer":  # mmfCNN head: Linear → σ → Linear; the hidden Linear is protected too
        assert any(n.op_type == "MatMul" and "joint" in n.name for n in prot.values())
        assert sum(n.op_type in ("Gemm", "MatMul") and "joint" in n.name for n in prot.values()) == 2


def test_exclude_list_quantization_is_caught_by_the_checker(tmp_path):
    """ORT with an exclude list (the old way) quantizes the Reshape/Transpose feeding the attention logits."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from edgepad.engines import graph as G
    from edgepad.engines.quantize import CalibrationFeeds
    from edgepad.engines.manifest import read_manifest
    src, specs = _export(tmp_path, "flexmodal", "xattn")
    model = onnx.load(str(src))
    G.name_nodes(model)
    pre = tmp_path / "pre.onnx"
    onnx.save(model, str(pre))
    excluded = [n.name for n in G.head_nodes(model) + G.attention_nodes(model)]
    feeds = CalibrationFeeds([example_feeds(specs, seed=i) for i in range(2)], read_manifest(src))
    quantize_static(str(pre), str(tmp_path / "old.onnx"), feeds, quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    issues = R.quantized_protected_inputs(onnx.load(str(tmp_path / "old.onnx")))
    assert any("MatMul" in i for i in issues)


def _graph(nodes, inits, out_shape):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _qdq(name, src):
    return [helper.make_node("QuantizeLinear", [src, "s", "zp"], [f"{name}_q"], name=f"{name}_Q"),
            helper.make_node("DequantizeLinear", [f"{name}_q", "s", "zp"], [f"{name}_dq"], name=f"{name}_DQ")]


def _consts():
    return [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
            numpy_helper.from_array(np.array([1, 2, 4], np.int64), "shape")]


def _attention(quantized: bool):
    """x (1×4×2) → [Q/DQ] → Reshape → Transpose → MatMul(x, xᵀ) → Softmax → MatMul(·, x) → score."""
    src = "x_dq" if quantized else "x"
    nodes = (_qdq("x", "x") if quantized else []) + [
        helper.make_node("Reshape", [src, "shape"], ["r"], name="Reshape_0"),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1], name="Transpose_0"),
        helper.make_node("MatMul", ["x", "t"], ["logits"], name="MatMul_logits"),
        helper.make_node("Softmax", ["logits"], ["attn"], axis=-1, name="Softmax_0"),
        helper.make_node("MatMul", ["attn", "x"], ["score"], name="MatMul_value")]
    return _graph(nodes, _consts(), [1, 4, 2])


def test_checker_catches_a_quantized_attention_input_through_reshape_and_transpose():
    clean, bad = _attention(False), _attention(True)
    onnx.checker.check_model(bad)
    assert R.quantized_protected_inputs(clean) == []
    issues = R.quantized_protected_inputs(bad)
    # reported at each protected node of the chain; the logit MatMul sees it through Transpose and Reshape
    assert len(issues) == 3 and all("x_DQ" in i for i in issues)
    assert any(i.startswith("protected MatMul MatMul_logits reads quantized 't'") for i in issues)
    assert any("MatMul_logits" in i for i in check_trt_legality(bad))
    assert {"Reshape_0", "Transpose_0", "MatMul_logits", "Softmax_0", "MatMul_value"} <= \
        {n.name for n in R.protected_nodes(bad)}


def _mlp_head(quantized_hidden: bool):
    """x → Flatten → MatMul(W1) → Sigmoid → Gemm(W2) → Sigmoid → score: the hidden Linear is protected."""
    w1 = numpy_helper.from_array(np.full((8, 3), 0.1, np.float32), "w1")
    w2 = numpy_helper.from_array(np.full((3, 1), 0.2, np.float32), "w2")
    src = "f_dq" if quantized_hidden else "f"
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="Flatten_0")]
    nodes += _qdq("f", "f") if quantized_hidden else []
    nodes += [helper.make_node("MatMul", [src, "w1"], ["h"], name="MatMul_hidden"),
              helper.make_node("Sigmoid", ["h"], ["hs"], name="Sigmoid_hidden"),
              helper.make_node("Gemm", ["hs", "w2"], ["logit"], name="Gemm_last"),
              helper.make_node("Sigmoid", ["logit"], ["score"], name="Sigmoid_score")]
    return _graph(nodes, _consts() + [w1, w2], [1, 1])


def test_checker_catches_a_quantized_hidden_head_linear():
    clean, bad = _mlp_head(False), _mlp_head(True)
    names = {n.name for n in R.protected_nodes(clean)}
    assert {"MatMul_hidden", "Sigmoid_hidden", "Gemm_last", "Sigmoid_score", "Flatten_0"} <= names
    assert R.quantized_protected_inputs(clean) == []
    issues = R.quantized_protected_inputs(bad)
    assert len(issues) == 1 and "MatMul_hidden" in issues[0]


def test_float_inputs_of_protected_repoints_and_drops_dead_pairs():
    bad = _attention(True)
    n = R.float_inputs_of_protected(bad, [x.name for x in R.protected_nodes(bad)])
    assert n == 1
    assert R.quantized_protected_inputs(bad) == []
    assert not any(x.op_type in ("QuantizeLinear", "DequantizeLinear") for x in bad.graph.node)
    onnx.checker.check_model(bad)


def test_modelopt_quantizer_keeps_protected_nodes_out_of_int8(tmp_path):
    pytest.importorskip("modelopt.onnx.quantization", exc_type=ImportError)
    src, specs = _export(tmp_path, "flexmodal", "xattn")
    man = quantize_int8(src, tmp_path / "mo.onnx", [example_feeds(specs, seed=i) for i in range(4)],
                        quantizer="modelopt")
    q = onnx.load(str(tmp_path / "mo.onnx"))
    assert R.quantized_protected_inputs(q) == [] and check_trt_legality(q, max_opset=19) == []
    assert man.build["quantization"]["float_dtype"] == "fp16" and qdq_summary(q)["quantize"] > 0
