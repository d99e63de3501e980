"""Precision baked into the ONNX: FP16 conversion and explicit symmetric INT8 Q/DQ, plus TensorRT legality checks.

* :func:`to_fp16` rewrites an FP32 ONNX so that TensorRT 10.x (strongly typed) and 11.x build it in FP16 as written:
  weights and activations FP16, but graph inputs/outputs, the score head (last Linear + σ/softmax), every
  Sigmoid/Softmax and every attention island (``MatMul → scale → Softmax → MatMul``) stay FP32, with Cast nodes
  at the borders (METHODS.md §6.3). Own code on the ONNX graph; no onnxconverter-common.
* :func:`quantize_int8` inserts QuantizeLinear/DequantizeLinear pairs through ``onnxruntime.quantization``
  (``quant_pre_process`` → ``quantize_static``: QDQ, per-channel, QInt8 activations and weights, MinMax,
  symmetric, zero points 0) calibrated from an iterable of feed dicts. Only the nodes on an **allow-list**
  (``nodes_to_quantize`` = :func:`edgepad.engines.regions.quantizable_nodes`) are quantized: attention islands,
  score heads back to their last hidden Linear and Sigmoid/Softmax are never on it, and protected readers of a
  shared Q/DQ pair are re-pointed to the float tensor. ``quantizer="modelopt"`` uses NVIDIA Model Optimizer's
  ONNX PTQ with the same allow-list instead (docs/ENGINES.md). The calibration set and the preprocessing are
  hashed into the manifest.
* :func:`check_trt_legality` checks a converted file structurally, including that no protected node reads a
  DequantizeLinear through shape-only ops (docs/ENGINES.md).

Needs ``onnx`` and ``onnxruntime`` (extra ``onnx``/``quant``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgepad._optional import require
from edgepad.engines import graph as G
from edgepad.engines import regions as R
from edgepad.engines.manifest import ModelManifest, read_manifest, sha256_file, write_manifest
from edgepad.errors import CalibrationError, ConfigError, EngineBuildError, MissingDependencyError, ShapeError
from edgepad.specs import DEFAULT_MARGIN

log = logging.getLogger(__name__)

FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0
#: op types kept out of FP16/INT8 everywhere
KEEP_FP32_OPS = ("Sigmoid", "Softmax")
#: the minimum and recommended numbers of calibration samples (Ultralytics' figures, PLATFORM.md §2.6)
CALIB_WARN_BELOW = 300
CALIB_RECOMMENDED = 500
#: ops whose inputs are never cast (their inputs may be any type)
_INPUT_NEUTRAL = frozenset({"Shape", "Size", "Cast", "CastLike"})


# ------------------------------------------------------------------------------------------------ FP16
def protected_nodes(model: Any, keep_ops: Sequence[str] = KEEP_FP32_OPS) -> list[Any]:
    """Nodes that stay FP32 / out of INT8 (:func:`edgepad.engines.regions.protected_nodes`): attention islands and
    the shape-only ops feeding them, score heads back to their last hidden Linear, ``keep_ops`` nodes."""
    return R.protected_nodes(model, keep_ops)


def convert_fp16(model: Any, keep_ops: Sequence[str] = KEEP_FP32_OPS) -> tuple[Any, list[str]]:
    """FP16 copy of an FP32 ``onnx.ModelProto`` (see module docstring).

    Returns:
        (converted model, names of the nodes kept in FP32).
    """
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    G.name_nodes(model)
    g = model.graph
    elem: dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        elem[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        elem[init.name] = init.data_type
    keep = {n.name for n in protected_nodes(model, keep_ops)}
    cons = G.consumers(model)

    def wants(node: Any) -> int:
        return FLOAT if node.name in keep else FLOAT16

    def all_fp16(tensor: str) -> bool:
        users = cons.get(tensor, [])
        return bool(users) and all(u.op_type not in _INPUT_NEUTRAL and wants(u) == FLOAT16 for u in users)

    # current dtype of every float tensor after conversion
    cur: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
    overflow = 0
    for init in g.initializer:
        if init.data_type == FLOAT and all_fp16(init.name):
            arr = numpy_helper.to_array(init)
            overflow += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
            init.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), init.name))
        cur[init.name] = init.data_type

    new_nodes: list[Any] = []
    casts: dict[tuple[str, int], str] = {}

    def cast_to(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key not in casts:
            out = f"{tensor}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [tensor], [out], to=to, name=f"Cast_{out}"))
            casts[key] = out
            cur[out] = to
        return casts[key]

    for node in g.node:
        p = wants(node)
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None and attr.t.data_type == FLOAT and all(all_fp16(o) for o in node.output):
                arr = numpy_helper.to_array(attr.t)
                overflow += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
                attr.t.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)))
            cur[node.output[0]] = attr.t.data_type if attr is not None else elem.get(node.output[0], 0)
            new_nodes.append(node)
            continue
        if node.op_type not in _INPUT_NEUTRAL:
            for k, name in enumerate(node.input):
                if name and cur.get(name) in (FLOAT, FLOAT16) and cur[name] != p:
                    node.input[k] = cast_to(name, p)
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i in (FLOAT, FLOAT16):
                to.i = p
        if node.op_type == "ConstantOfShape" and p == FLOAT16:
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
        for o in node.output:
            t = elem.get(o, 0)
            cur[o] = p if t in (FLOAT, FLOAT16) else t
        new_nodes.append(node)

    # graph outputs stay FP32
    for out in g.output:
        if cur.get(out.name) == FLOAT16:
            inner = f"{out.name}__fp16"
            for n in new_nodes:
                n.output[:] = [inner if o == out.name else o for o in n.output]
                n.input[:] = [inner if i == out.name else i for i in n.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"Cast_{out.name}_out"))
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    if overflow:
        log.warning("FP16: %d constant values beyond ±65504 were clipped", overflow)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model, sorted(keep)


def to_fp16(src: Path | str, dst: Path | str, *, keep_ops: Sequence[str] = KEEP_FP32_OPS,
            max_opset: int = 17) -> ModelManifest:
    """Write an FP16 ONNX of the FP32 ONNX ``src`` (with its manifest) to ``dst`` (+ ``dst.json``).

    Args:
        src: FP32 ONNX with a manifest (from :func:`edgepad.engines.export.export_onnx`).
        dst: output path.
        keep_ops: op types kept in FP32 wherever they are (the score head and attention islands always are).
        max_opset: the oldest target TensorRT's opset limit, checked by :func:`check_trt_legality`.

    Returns:
        the new manifest (``precision="fp16"``, ``onnx_sha256`` = this file, ``build.source_onnx_sha256`` = src,
        ``build.fp32_nodes`` = the nodes kept in FP32). Not yet validated: run :func:`validate_artifact`.

    Raises:
        EngineBuildError: conversion produced an invalid or TensorRT-illegal graph.
    """
    onnx = require("onnx")
    src, dst = Path(src), Path(dst)
    manifest = read_manifest(src)
    _require_fp32(manifest, src)
    model, kept = convert_fp16(_load_onnx(src), keep_ops)
    _finish(model, dst, max_opset, keep_ops)
    new = manifest.replace(precision="fp16", onnx_sha256=sha256_file(dst), validation=None,
                           build={**dict(manifest.build), "source_onnx_sha256": manifest.onnx_sha256,
                                  "conversion": "edgepad.fp16", "fp32_ops": list(keep_ops), "fp32_nodes": kept})
    return write_manifest(new, dst)


# ------------------------------------------------------------------------------------------------ INT8
def preprocessing_sha256(manifest: ModelManifest) -> str:
    """sha256 of the manifest's input specs (normalisation, clip, fill value, depth_norm): the preprocessing."""
    spec = {k: dict(manifest.to_dict()["inputs"][k]) for k in sorted(manifest.inputs)}
    for v in spec.values():  # align "none" / margin 0.25: the preprocessing from before the fields: same hash
        if v.get("align", "none") == "none":
            v.pop("align", None)
        if v.get("margin", DEFAULT_MARGIN) == DEFAULT_MARGIN:
            v.pop("margin", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class CalibrationFeeds:
    """Wraps an iterable of feed dicts for ``onnxruntime.quantization``: checks and hashes every sample.

    Each feed is ``{"rgb": B×3×S×S, "depth": …, "ir": …}`` float32, preprocessed exactly as at run time
    (:func:`edgepad.preprocess.normalise`). ``sha256`` covers the preprocessing hash, the optional sample ids
    and every array's dtype, shape and bytes, in order.
    """

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]], manifest: ModelManifest,
                 sample_ids: Sequence[str] | None = None, max_samples: int | None = None) -> None:
        self._it = iter(feeds)
        self.manifest = manifest
        self.samples = 0
        self.batches = 0
        self.max_samples = max_samples
        self._hash = hashlib.sha256(preprocessing_sha256(manifest).encode())
        if sample_ids is not None:
            self._hash.update(json.dumps(list(map(str, sample_ids))).encode())
        self.sums = {name: 0.0 for name in manifest.inputs}

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.max_samples is not None and self.samples >= self.max_samples:
            return None
        feed = next(self._it, None)
        if feed is None:
            return None
        out = {}
        for name, spec in self.manifest.inputs.items():
            if name not in feed:
                raise ShapeError(f"calibration.{name}", spec.shape, "missing")
            arr = np.ascontiguousarray(feed[name], dtype=np.float32)
            if arr.ndim != len(spec.shape) or any(s not in (-1, a) for s, a in zip(spec.shape[1:], arr.shape[1:])) \
                    or (spec.shape[0] != -1 and arr.shape[0] != spec.shape[0]):
                raise ShapeError(f"calibration.{name}", spec.shape, arr.shape)
            if not np.all(np.isfinite(arr)):
                raise CalibrationError(f"calibration sample {self.samples} has non-finite values in {name!r}")
            self._hash.update(f"{name}:{arr.shape}".encode())
            self._hash.update(arr.tobytes())
            out[name] = arr
        self.samples += int(next(iter(out.values())).shape[0])
        self.batches += 1
        return out

    # onnxruntime.quantization.CalibrationDataReader protocol
    def rewind(self) -> None:  # pragma: no cover - MinMax calibration reads once
        raise CalibrationError("calibration feeds can be read once; pass a list to calibrate again")

    def __iter__(self):
        return self

    def __next__(self):
        r = self.get_next()
        if r is None:
            raise StopIteration
        return r


QUANTIZERS = ("ort", "modelopt")


def quantize_int8(src: Path | str, dst: Path | str, calibration: Iterable[Mapping[str, np.ndarray]], *,
                  sample_ids: Sequence[str] | None = None, max_samples: int | None = None,
                  per_channel: bool = True, keep_ops: Sequence[str] = KEEP_FP32_OPS,
                  nodes_to_exclude: Sequence[str] = (), max_opset: int = 17, quantizer: str = "ort"
                  ) -> ModelManifest:
    """Explicit symmetric INT8 Q/DQ ONNX of the FP32 ONNX ``src``, calibrated on ``calibration``.

    Args:
        src: FP32 ONNX with a manifest.
        dst: output path (+ ``dst.json``).
        calibration: iterable of feed dicts (see :class:`CalibrationFeeds`), drawn from a dev/train split —
            never the split the accuracy gate uses. Fewer than 300 samples logs a warning (500 recommended).
        sample_ids: ids of the calibration samples (hashed into the manifest with the data).
        max_samples: stop after this many samples.
        per_channel: per-output-channel weight scales (recommended: BN-folded depth/IR stems; ORT only).
        keep_ops: op types never quantized (Sigmoid, Softmax); score heads and attention islands never are.
        nodes_to_exclude: further node names taken off the allow-list.
        max_opset: target TensorRT's opset limit (17 for ORT; the modelopt path writes opset 19, TensorRT >= 10).
        quantizer: ``"ort"`` (onnxruntime.quantization, float layers FP32) or ``"modelopt"`` (NVIDIA Model
            Optimizer ONNX PTQ, float layers FP16 except ``keep_ops``; needs ``nvidia-modelopt``; docs/ENGINES.md).

    Returns:
        the manifest (``precision="int8"``, ``calibration_set_sha256``, ``build.quantization`` with the
        allow-list size, the protected nodes and ``float_dtype``).

    Raises:
        CalibrationError: no calibration data; EngineBuildError: the result is not TensorRT-legal (e.g. a
        protected node reads a DequantizeLinear); ShapeError: a calibration feed does not match the model inputs;
        ConfigError: unknown quantizer.
    """
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quantizer not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer {quantizer!r}; known: {list(QUANTIZERS)}", key="quantizer")
    src, dst = Path(src), Path(dst)
    manifest = read_manifest(src)
    _require_fp32(manifest, src)
    reader = CalibrationFeeds(calibration, manifest, sample_ids=sample_ids, max_samples=max_samples)
    with tempfile.TemporaryDirectory(prefix="edgepad-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        _load_onnx(src)  # a corrupt source is an EngineBuildError, not a protobuf traceback
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        model = onnx.load(str(pre))
        G.name_nodes(model)
        onnx.save(model, str(pre))
        prot, excl = R.protected_nodes(model, keep_ops), set(nodes_to_exclude)
        protected = sorted(n.name for n in prot)
        allow = [n for n in R.quantizable_nodes(model, prot) if n not in excl]
        out = Path(tmp) / "q.onnx"
        try:
            if quantizer == "ort":
                _quantize_ort(pre, out, reader, allow, per_channel)
            else:
                max_opset = max(max_opset, MODELOPT_OPSET)
                _quantize_modelopt(pre, out, reader, allow, keep_ops, Path(tmp))
        except (ShapeError, CalibrationError, MissingDependencyError):
            raise
        except Exception as exc:
            if reader.samples == 0:
                raise CalibrationError("no calibration samples: pass an iterable of feed dicts "
                                       f"{{{', '.join(manifest.inputs)}}}") from exc
            raise EngineBuildError(f"INT8 quantization of {src.name} ({quantizer}) failed: {exc}") from exc
        if reader.samples == 0:
            raise CalibrationError("no calibration samples: pass an iterable of feed dicts "
                                   f"{{{', '.join(manifest.inputs)}}}")
        if reader.samples < CALIB_WARN_BELOW:
            log.warning("INT8 calibrated on %d samples; use at least %d (%d recommended) covering bona fide, "
                        "every PAI species and every presence pattern", reader.samples, CALIB_WARN_BELOW,
                        CALIB_RECOMMENDED)
        qmodel = onnx.load(str(out))
    repointed = R.float_inputs_of_protected(qmodel, protected)
    _finish(qmodel, dst, max_opset, keep_ops)
    float_dtype = "fp16" if any(i.data_type == FLOAT16 for i in qmodel.graph.initializer) else "fp32"
    if quantizer == "ort":
        quant = {"tool": "onnxruntime.quantization", "format": "QDQ", "per_channel": bool(per_channel),
                 "activation_type": "QInt8", "weight_type": "QInt8", "calibration_method": "MinMax"}
    else:
        quant = {"tool": "modelopt.onnx.quantization", "format": "QDQ", "calibration_method": "max",
                 "high_precision_dtype": "fp16", "op_types_to_exclude_fp16": list(keep_ops)}
    quant.update({"symmetric": True, "calibration_samples": reader.samples,
                  "calibration_warning": reader.samples < CALIB_WARN_BELOW,
                  "preprocessing_sha256": preprocessing_sha256(manifest), "selection": "allow-list",
                  "quantized_nodes": len(allow), "protected_nodes": protected, "excluded_nodes": protected,
                  "repointed_float_inputs": repointed, "float_dtype": float_dtype, "keep_ops": list(keep_ops),
                  "opset": G.onnx_opset(qmodel)})
    new = manifest.replace(precision="int8", onnx_sha256=sha256_file(dst), validation=None,
                           calibration_set_sha256=reader.sha256,
                           build={**dict(manifest.build), "source_onnx_sha256": manifest.onnx_sha256,
                                  "quantization": quant})
    return write_manifest(new, dst)


#: the opset NVIDIA Model Optimizer writes for INT8 with FP16 float layers (FP16 Q/DQ scales need opset 19)
MODELOPT_OPSET = 19


def _quantize_ort(pre: Path, out: Path, reader: CalibrationFeeds, allow: Sequence[str], per_channel: bool) -> None:
    """ORT ``quantize_static`` restricted to the allow-list (``nodes_to_quantize`` + ``op_types_to_quantize``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    if not allow:
        raise EngineBuildError("nothing to quantize: every node is protected or excluded")
    quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=list(allow), op_types_to_quantize=list(R.INT8_OP_TYPES),
                    calibrate_method=CalibrationMethod.MinMax, calibration_providers=["CPUExecutionProvider"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})


def _quantize_modelopt(pre: Path, out: Path, reader: CalibrationFeeds, allow: Sequence[str],
                       keep_ops: Sequence[str], tmp: Path) -> None:
    """NVIDIA Model Optimizer ONNX PTQ (INT8, max calibration on the CPU provider, FP16 float layers).

    The feeds are stacked into ``{name: N×…}`` (modelopt's ``calibration_data``); the allow-list is passed as
    ``nodes_to_quantize``. It runs in a spawned child process: importing modelopt's ONNX quantizer patches
    ``onnxruntime.quantization`` for the whole process, which breaks later ORT quantizations. Verified to run on
    CPU with nvidia-modelopt 0.47 (docs/ENGINES.md).
    """
    import multiprocessing
    from edgepad._optional import available
    if not available("modelopt"):
        require("modelopt.onnx.quantization", extra="modelopt")   # raises MissingDependencyError
    feeds: dict[str, list[np.ndarray]] = {}
    for f in reader:
        for k, v in f.items():
            feeds.setdefault(k, []).append(v)
    if not feeds:
        raise CalibrationError("no calibration samples for modelopt")
    data = tmp / "calib.npz"
    np.savez(data, **{k: np.concatenate(v, 0) for k, v in feeds.items()})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        err = pool.apply(_modelopt_child, (str(pre), str(out), str(data), list(allow), list(keep_ops)))
    if err:
        raise EngineBuildError(f"modelopt INT8 quantization failed: {err}")


def _modelopt_child(pre: str, out: str, data: str, allow: list[str], keep_ops: list[str]) -> str | None:
    """Child-process body of :func:`_quantize_modelopt`; returns an error message or None."""
    try:
        mq = require("modelopt.onnx.quantization", extra="modelopt")
        with np.load(data) as z:
            calib = {k: z[k] for k in z.files}
        mq.quantize(pre, quantize_mode="int8", calibration_data=calib, calibration_method="max",
                    calibration_eps=["cpu"], nodes_to_quantize=allow, op_types_to_exclude_fp16=keep_ops,
                    high_precision_dtype="fp16", output_path=out, log_level="WARNING")
        return None
    except Exception as exc:   # noqa: BLE001 - reported to the parent as EngineBuildError
        return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------------ legality
def check_trt_legality(model: Any, *, max_opset: int = 17, keep_ops: Sequence[str] = KEEP_FP32_OPS) -> list[str]:
    """Structural TensorRT checks of an (FP16 or Q/DQ) ONNX; returns the problems found (empty = legal).

    Checks: default-domain opset <= ``max_opset``; no node outside the default domain (``com.microsoft`` or custom)
    and no unused extra ``opset_import``; every Q/DQ has an int8 zero point equal to 0 and finite positive
    constant scales; no protected node (attention islands, score heads back to their last hidden Linear,
    ``keep_ops`` nodes: :func:`edgepad.engines.regions.protected_nodes`) reads a DequantizeLinear, directly or
    through shape-only ops (Reshape, Transpose, Flatten, …); no Softmax feeds a QuantizeLinear; the graph outputs
    are float32.

    Args:
        model: ``onnx.ModelProto`` or a path.
    """
    onnx = require("onnx")
    from onnx import numpy_helper
    if not hasattr(model, "graph"):
        model = onnx.load(str(model))
    issues: list[str] = []
    opset = G.onnx_opset(model)
    if opset > max_opset:
        issues.append(f"opset {opset} > {max_opset} (oldest target TensorRT)")
    for o in model.opset_import:
        if o.domain not in ("", "ai.onnx"):
            issues.append(f"opset_import declares domain {o.domain!r}")
    consts = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = next((a.t for a in n.attribute if a.name == "value"), None)
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            issues.append(f"node {n.name} ({n.op_type}) is in domain {n.domain!r}")
        if n.op_type not in G.QDQ_OPS:
            continue
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            issues.append(f"{n.name}: scale is not a constant")
        else:
            s = numpy_helper.to_array(scale)
            if not (np.all(np.isfinite(s)) and np.all(s > 0)):
                issues.append(f"{n.name}: scale not finite and positive")
        zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            issues.append(f"{n.name}: no zero point (defaults to uint8); TensorRT needs int8 zero points")
        else:
            z = numpy_helper.to_array(zp)
            if z.dtype != np.int8:
                issues.append(f"{n.name}: zero point dtype {z.dtype}, TensorRT needs int8")
            if np.any(z != 0):
                issues.append(f"{n.name}: nonzero zero point (asymmetric); TensorRT is symmetric only")
    prod, cons = G.producers(model), G.consumers(model)
    for n in R.protected_nodes(model, keep_ops):
        if n.op_type in G.QDQ_OPS:
            issues.append(f"protected region contains {n.op_type} {n.name}")
    issues.extend(R.quantized_protected_inputs(model, keep_ops))
    for n in model.graph.node:
        if n.op_type == "Softmax":
            if any(c.op_type == "QuantizeLinear" for c in cons.get(n.output[0], [])):
                issues.append(f"Softmax {n.name} feeds a QuantizeLinear")
    for out in model.graph.output:
        if out.type.tensor_type.elem_type != FLOAT:
            issues.append(f"output {out.name} is not float32")
    return issues


def _load_onnx(path: Path) -> Any:
    """``onnx.load`` of a user's model; an unparsable file raises EngineBuildError naming it."""
    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, truncated external data...
        raise EngineBuildError(f"cannot parse ONNX model {path}: {exc}") from exc


def qdq_summary(model: Any) -> dict[str, Any]:
    """Counts of Q/DQ nodes, FP16 tensors and Cast nodes (for reports and tests)."""
    onnx = require("onnx")
    if not hasattr(model, "graph"):
        model = onnx.load(str(model))
    ops = [n.op_type for n in model.graph.node]
    return {"nodes": len(ops), "quantize": ops.count("QuantizeLinear"), "dequantize": ops.count("DequantizeLinear"),
            "cast": ops.count("Cast"),
            "fp16_initializers": sum(1 for i in model.graph.initializer if i.data_type == FLOAT16),
            "fp32_initializers": sum(1 for i in model.graph.initializer if i.data_type == FLOAT),
            "opset": G.onnx_opset(model), "domains": sorted({o.domain or "ai.onnx" for o in model.opset_import})}


# ------------------------------------------------------------------------------------------------ helpers
def _require_fp32(manifest: ModelManifest, src: Path) -> None:
    if manifest.format != "onnx" or manifest.precision != "fp32":
        raise ConfigError(f"{src.name} is {manifest.format}/{manifest.precision}; convert from the FP32 ONNX "
                          "written by `edgepad export`", key="precision")


def _finish(model: Any, dst: Path, max_opset: int, keep_ops: Sequence[str] = KEEP_FP32_OPS) -> None:
    onnx = require("onnx")
    removed = G.strip_unused_domains(model)
    if removed:
        log.info("stripped unused opset domains %s", removed)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise EngineBuildError(f"converted model fails onnx.checker: {exc}") from exc
    issues = check_trt_legality(model, max_opset=max_opset, keep_ops=keep_ops)
    if issues:
        raise EngineBuildError("converted model is not TensorRT-legal: " + "; ".join(issues[:8]))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays (1.0 for two zero arrays)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b / (na * nb)) if math.isfinite(na * nb) else float("nan")
