"""The float regions of an ONNX graph: what INT8 must never touch, and the check that it did not (docs/ENGINES.md).

Protected (kept in float by construction, checked after every conversion):

* **attention**: every attention island (``MatMul → scale → Softmax → MatMul``, :func:`graph.attention_nodes`) plus
  the shape-only ops (Reshape, Transpose, Flatten, …) that feed its MatMuls;
* **score heads**: backwards from each graph output through reshapes/casts/σ to the head's last linear layer
  (:func:`graph.head_nodes`), then on through activations and bias/scale ops to the head's **last hidden Linear**
  (a Gemm, or a MatMul with a constant weight), plus the shape-only ops feeding any of them;
* every node of a ``keep_ops`` type (Sigmoid, Softmax).

:func:`quantizable_nodes` is the INT8 allow-list (nodes of ``op_types`` outside the protected set);
:func:`float_inputs_of_protected` re-points protected nodes that ORT's quantizer wired to a shared
DequantizeLinear back to the float tensor; :func:`quantized_protected_inputs` is the legality rule: it walks the
producers of every protected node's inputs through shape-only ops and reports any DequantizeLinear it reaches.
Needs ``onnx`` only through the model objects passed in.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from edgepad.engines import graph as G

#: ops that only move or relabel data; a DequantizeLinear seen through them still feeds the consumer
SHAPE_ONLY = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Expand", "Slice",
                        "Gather", "Split", "Concat", "Tile", "SpaceToDepth", "DepthToSpace", "Cast", "Dropout"})
#: ops walked between a head's last linear layer and its last hidden Linear
_HIDDEN_PASS = frozenset({"Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu",
                          "Clip", "Elu", "Selu", "Softplus", "Mish", "Add", "Sub", "Mul", "Div",
                          "BatchNormalization", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
                          "Dropout", "QuantizeLinear", "DequantizeLinear"})
#: the INT8 allow-list's op types: weighted layers and the ops ORT fuses into their Q/DQ (docs/ENGINES.md)
INT8_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Add", "Mul", "Concat", "Reshape", "Transpose", "Flatten", "Squeeze",
                 "Unsqueeze", "Resize", "Slice", "Pad", "Split", "Gather")


def _constant_names(model: Any) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    names.update(n.output[0] for n in model.graph.node if n.op_type == "Constant")
    return names


def _is_linear(node: Any, prod: dict, consts: set[str]) -> bool:
    """A Gemm, or a MatMul one of whose inputs is a constant (directly or through DequantizeLinear)."""
    if node.op_type == "Gemm":
        return True
    if node.op_type != "MatMul":
        return False
    for name in node.input:
        p = prod.get(name)
        if name in consts or (p is not None and p.op_type == "DequantizeLinear" and p.input[0] in consts):
            return True
    return False


def hidden_head_nodes(model: Any) -> list[Any]:
    """For each head's last linear layer, the ops back to (and including) its last hidden Linear, if the head has
    one (e.g. mmfCNN's ``Linear → σ → Linear``); empty for single-Linear heads."""
    prod = G.producers(model)
    consts = _constant_names(model)
    picked: dict[int, Any] = {}
    for last in (n for n in G.head_nodes(model) if n.op_type in ("Gemm", "MatMul", "Conv")):
        path: list[Any] = []
        todo = [i for i in last.input if i and i not in consts]
        found = False
        seen: set[int] = set()
        while todo:
            node = prod.get(todo.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if _is_linear(node, prod, consts):
                path.append(node)
                found = True
                continue
            if node.op_type in _HIDDEN_PASS:
                path.append(node)
                todo.extend(i for i in node.input if i and i not in consts)
        if found:
            picked.update({id(n): n for n in path if n.op_type not in G.QDQ_OPS})
    return list(picked.values())


def _data_inputs(node: Any) -> list[str]:
    """The data inputs of a shape-only op: all of a Concat's, else the first (not shape/index tensors)."""
    return [i for i in (node.input if node.op_type == "Concat" else node.input[:1]) if i]


def _shape_feeders(nodes: Iterable[Any], prod: dict) -> list[Any]:
    """The shape-only ops that feed ``nodes`` (walked backwards, not through Q/DQ)."""
    out: dict[int, Any] = {}
    todo = [i for n in nodes for i in n.input if i]
    while todo:
        p = prod.get(todo.pop())
        if p is None or id(p) in out or p.op_type not in SHAPE_ONLY:
            continue
        out[id(p)] = p
        todo.extend(_data_inputs(p))
    return list(out.values())


def protected_nodes(model: Any, keep_ops: Sequence[str] = ("Sigmoid", "Softmax")) -> list[Any]:
    """Nodes that stay float: attention islands, score heads to their last hidden Linear, ``keep_ops`` nodes, and
    the shape-only ops feeding attention MatMuls and head layers; in graph order."""
    prod = G.producers(model)
    attn = G.attention_nodes(model)
    head = G.head_nodes(model) + hidden_head_nodes(model)
    picked = {id(n): n for n in attn + head}
    picked.update({id(n): n for n in model.graph.node if n.op_type in set(keep_ops)})
    linear_like = [n for n in picked.values() if n.op_type in ("MatMul", "Gemm", "Conv")]
    picked.update({id(n): n for n in _shape_feeders(linear_like, prod)})
    order = {id(n): k for k, n in enumerate(model.graph.node)}
    return sorted((n for n in picked.values() if n.op_type not in G.QDQ_OPS), key=lambda n: order[id(n)])


def quantizable_nodes(model: Any, protected: Iterable[Any], op_types: Sequence[str] = INT8_OP_TYPES) -> list[str]:
    """The INT8 allow-list: names of nodes of ``op_types`` that are not protected (graph order)."""
    prot = {n.name for n in protected}
    ops = set(op_types)
    return [n.name for n in model.graph.node if n.op_type in ops and n.name not in prot]


def float_inputs_of_protected(model: Any, protected_names: Iterable[str]) -> int:
    """Re-point protected nodes that read an activation's DequantizeLinear output to the float tensor (in place).

    ORT's QDQ quantizer gives a quantized activation one Q/DQ pair and re-wires *every* reader of it, including
    readers outside the allow-list; this undoes that for the protected readers. Q/DQ pairs left with no reader are
    removed. Weight DequantizeLinears are left alone (a protected node is never on the allow-list, so none feeds
    one). Returns the number of inputs re-pointed.
    """
    names = set(protected_names)
    prod = G.producers(model)
    consts = _constant_names(model)
    changed = 0
    for node in model.graph.node:
        if node.name not in names:
            continue
        for k, name in enumerate(node.input):
            dq = prod.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in consts:
                continue
            q = prod.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            node.input[k] = q.input[0]
            changed += 1
    if changed:
        _drop_dead_qdq(model)
    return changed


def _drop_dead_qdq(model: Any) -> None:
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type in G.QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            return
        keep = [n for n in g.node if all(n is not d for d in dead)]
        del g.node[:]
        g.node.extend(keep)


def quantized_protected_inputs(model: Any, keep_ops: Sequence[str] = ("Sigmoid", "Softmax")) -> list[str]:
    """Every protected node input that is quantized: a DequantizeLinear reached from it through shape-only ops.

    Returns:
        one message per offending input (empty = attention and heads are float).
    """
    prod = G.producers(model)
    issues = []
    for node in protected_nodes(model, keep_ops):
        for name in node.input:
            todo, seen = [name], set()
            while todo:
                t = todo.pop()
                p = prod.get(t)
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                if p.op_type == "DequantizeLinear":
                    issues.append(f"protected {node.op_type} {node.name} reads quantized {name!r} "
                                  f"(DequantizeLinear {p.name})")
                    break
                if p.op_type in SHAPE_ONLY:
                    todo.extend(_data_inputs(p))
    return issues
