"""FLOP counting of ONNX graphs for the device benchmark: multiply-accumulates of Conv / ConvTranspose / Gemm /
MatMul nodes (``flops = 2 * macs``)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from edgepad._optional import lazy

log = logging.getLogger(__name__)
onnx = lazy("onnx")


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


def count_flops(model: Any, batch: int = 1) -> dict[str, Any]:
    """Multiply-accumulates of the Conv / ConvTranspose / Gemm / MatMul nodes of an ONNX graph.

    ``flops = 2 * macs`` (one multiply + one add per MAC). Element-wise ops, pooling, activations and Q/DQ are not
    counted (a few per cent of a CNN). Shapes come from ONNX shape inference with dynamic axes set to ``batch``.
    Per node: Conv ``N·Cout·∏out_spatial·(Cin/group)·∏kernel``; ConvTranspose ``N·Cin·∏in_spatial·(Cout/group)·
    ∏kernel``; Gemm ``M·N·K``; MatMul ``∏batch·M·N·K`` (numpy broadcasting).

    Args:
        model: ``onnx.ModelProto`` or a path to an ``.onnx`` file (not modified).
        batch: value substituted for dynamic (or unknown) input axes.

    Returns:
        ``{"macs", "flops", "gflops", "params", "by_op": {op: macs}, "nodes": number counted, "uncounted": [matrix
        nodes whose shapes were unknown]}``; ``params`` counts the elements of floating-point and int8 initializers
        with more than one element (weights, biases; int64 shape constants are excluded).

    Raises:
        MissingDependencyError: onnx is not installed.
    """
    if hasattr(model, "graph"):
        m = onnx.ModelProto()
        m.CopyFrom(model)
    else:
        m = onnx.load_model(str(model))
    init_names = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in init_names:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()
                d.dim_value = int(batch)
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception as exc:  # a graph ORT runs but onnx cannot infer: count what is known
        log.warning("ONNX shape inference failed (%s); FLOPs may be incomplete", exc)
    shapes: dict[str, list[int]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        d = _dims(vi)
        if d is not None:
            shapes[vi.name] = d
    params = 0
    for init in m.graph.initializer:
        shapes[init.name] = [int(x) for x in init.dims]
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type in (1, 10, 11, 16, 3) and n > 1:  # float, float16, double, bfloat16, int8
            params += n
    by_op: dict[str, int] = {}
    uncounted: list[str] = []
    counted = 0
    for node in m.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
        counted += 1
    macs_total = int(sum(by_op.values()))
    return {"macs": macs_total, "flops": 2 * macs_total, "gflops": 2 * macs_total / 1e9, "params": int(params),
            "by_op": by_op, "nodes": counted, "uncounted": uncounted}


def _known(shape: list[int] | None) -> bool:
    return shape is not None and len(shape) > 0 and all(s > 0 for s in shape)


def _node_macs(node: Any, shapes: Mapping[str, list[int]]) -> int | None:
    ins = [shapes.get(n) if n else None for n in node.input]
    out = shapes.get(node.output[0])
    attrs = {a.name: a for a in node.attribute}
    if node.op_type in ("Conv", "ConvTranspose"):
        x, w = ins[0], ins[1] if len(ins) > 1 else None
        group = int(attrs["group"].i) if "group" in attrs else 1
        if not (_known(w) and _known(x)):
            return None
        kernel = int(np.prod(w[2:]))
        if node.op_type == "Conv":
            if not _known(out):
                return None
            # w: Cout × Cin/group × k...
            return int(out[0] * out[1] * int(np.prod(out[2:])) * w[1] * kernel)
        # ConvTranspose w: Cin × Cout/group × k...
        return int(x[0] * x[1] * int(np.prod(x[2:])) * w[1] * kernel)
    if node.op_type == "Gemm":
        a, b = ins[0], ins[1]
        if not (_known(a) and _known(b)) or len(a) != 2 or len(b) != 2:
            return None
        ta = int(attrs["transA"].i) if "transA" in attrs else 0
        tb = int(attrs["transB"].i) if "transB" in attrs else 0
        m_, k = (a[1], a[0]) if ta else (a[0], a[1])
        n = b[0] if tb else b[1]
        return int(m_ * n * k)
    # MatMul with numpy semantics
    a, b = ins[0], ins[1]
    if not (_known(a) and _known(b)):
        return None
    a2 = [1] + a if len(a) == 1 else a
    b2 = b + [1] if len(b) == 1 else b
    m_, k = a2[-2], a2[-1]
    n = b2[-1]
    batch_a, batch_b = a2[:-2], b2[:-2]
    nb = max(len(batch_a), len(batch_b))
    batch_a = [1] * (nb - len(batch_a)) + batch_a
    batch_b = [1] * (nb - len(batch_b)) + batch_b
    batch = int(np.prod([max(x, y) for x, y in zip(batch_a, batch_b)])) if nb else 1
    return int(batch * m_ * n * k)
