"""Small ONNX graph helpers shared by the FP16 converter, the INT8 quantizer and the TensorRT legality checks.

Finds the *score head* (the nodes from the last Linear/MatMul/Conv to each graph output, e.g.
``Gemm → Reshape → Cast → Sigmoid``) and *attention islands* (``MatMul → scale → Softmax → MatMul``), which
stay in FP32 and out of INT8 (docs/ENGINES.md). Needs ``onnx``.
"""
from __future__ import annotations

from typing import Any, Iterable

#: ops walked through, backwards from a graph output, while looking for the head's last linear layer
_HEAD_PASS = frozenset({"Sigmoid", "Softmax", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
                        "Add", "Sub", "Mul", "Div", "Neg", "Slice", "Gather", "Concat", "LogSoftmax"})
#: the head's last linear layer (included, then the walk stops)
_HEAD_STOP = frozenset({"Gemm", "MatMul", "Conv"})
#: ops between the attention-logit MatMul and its Softmax, and between the Softmax and the value MatMul
_ATTN_PASS = frozenset({"Div", "Mul", "Cast", "Add", "Sub", "Transpose", "Reshape"})
#: DequantizeLinear / QuantizeLinear op types
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (``<op>_<i>``) in place; the quantizer excludes nodes by name."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def producers(model: Any) -> dict[str, Any]:
    """tensor name -> the node that produces it."""
    return {o: n for n in model.graph.node for o in n.output}


def consumers(model: Any) -> dict[str, list[Any]]:
    """tensor name -> nodes that read it."""
    out: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def head_nodes(model: Any, outputs: Iterable[str] | None = None) -> list[Any]:
    """Nodes of the score head: backwards from each graph output through reshapes, casts, σ/softmax and bias
    adds, up to and including the first Gemm/MatMul/Conv.

    Args:
        model: ``onnx.ModelProto``.
        outputs: output names (default: all graph outputs).
    """
    prod = producers(model)
    todo = list(outputs if outputs is not None else (o.name for o in model.graph.output))
    seen: dict[int, Any] = {}
    while todo:
        node = prod.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        if node.op_type in _HEAD_STOP:
            seen[id(node)] = node
            continue
        if node.op_type not in _HEAD_PASS:
            continue
        seen[id(node)] = node
        todo.extend(i for i in node.input if i)
    order = {id(n): k for k, n in enumerate(model.graph.node)}
    return sorted(seen.values(), key=lambda n: order[id(n)])


def attention_nodes(model: Any) -> list[Any]:
    """Nodes of every attention island: a Softmax whose input comes (through scaling/casts) from a MatMul, that
    MatMul, the ops between them, and the MatMul(s) reading the Softmax output (through casts/reshapes)."""
    prod, cons = producers(model), consumers(model)
    picked: dict[int, Any] = {}
    for sm in (n for n in model.graph.node if n.op_type == "Softmax"):
        back: list[Any] = []
        found = False
        todo = [sm.input[0]]
        while todo:
            node = prod.get(todo.pop())
            if node is None or node in back:
                continue
            if node.op_type == "MatMul":
                back.append(node)
                found = True
            elif node.op_type in _ATTN_PASS:
                back.append(node)
                todo.extend(i for i in node.input if i)
        if not found:
            continue
        island = [sm, *back]
        todo_f = list(sm.output)
        while todo_f:
            for node in cons.get(todo_f.pop(), []):
                if node.op_type == "MatMul":
                    island.append(node)
                elif node.op_type in ("Cast", "Transpose", "Reshape"):
                    island.append(node)
                    todo_f.extend(node.output)
        for n in island:
            picked[id(n)] = n
    order = {id(n): k for k, n in enumerate(model.graph.node)}
    return sorted(picked.values(), key=lambda n: order[id(n)])


def strip_unused_domains(model: Any) -> list[str]:
    """Remove ``opset_import`` entries of domains no node uses (ORT's quantizer adds ``com.microsoft``).

    Returns:
        the removed domains.
    """
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    removed = [o.domain for o in model.opset_import if o not in keep]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return removed


def onnx_opset(model: Any) -> int:
    """The default-domain (ai.onnx) opset version."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0
