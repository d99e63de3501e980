"""PyTorch model → ONNX with named modality inputs, score outputs, checker, ORT parity and the sidecar manifest.

The exported graph takes one input per modality (``rgb`` 1×3×S×S, ``depth`` 1×1×S×S, ``ir`` 1×1×S×S, float32,
normalised by :func:`edgepad.preprocess.normalise`) and returns ``score`` = σ(logit) (P(live), shape (B,)) plus
``score_<m>`` for every per-modality head the model has. The legacy TorchScript exporter (``dynamo=False``) is used:
it writes one self-contained file and folds BatchNorm into the convolutions. Opset 17 is the
default because TensorRT 8.6, 10.x and 11.x and the ONNX Runtime quantizer all accept it.

Needs ``torch``, ``onnx`` and ``onnxruntime`` (extras ``torch`` and ``onnx``).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgepad._optional import lazy
from edgepad.engines.manifest import InputSpec, ModelManifest, TensorSpec, sha256_file, write_manifest
from edgepad.errors import ConfigError, EngineBuildError, ValidationError
from edgepad.types import Modality

torch = lazy("torch")
onnx = lazy("onnx")
ort = lazy("onnxruntime")
log = logging.getLogger(__name__)

#: the highest opset the legacy exporter writes without warnings, and the one JetPack 6 (TensorRT 10.3) accepts
MAX_OPSET = 20
MIN_OPSET = 13
#: torch vs ONNX Runtime FP32 parity gate (measured errors are ~1e-7)
PARITY_ATOL = 1e-5


def _modality_order(names: Mapping[str, Any]) -> list[str]:
    known = [m.value for m in Modality if m.value in names]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"model inputs must be named by modality (rgb, depth, ir); got {unknown}", key="inputs")
    if not known:
        raise ConfigError("export needs at least one input spec", key="inputs")
    return known


def example_feeds(inputs: Mapping[str, InputSpec], batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic standard-normal float32 feeds shaped like ``inputs`` (dynamic batch → ``batch``).

    Args:
        inputs: input specs by name (shape ``B×C×S×S``; ``-1`` for the batch axis).
        batch: batch size used for dynamic axes (and instead of the spec's batch when that is -1).
        seed: RNG seed.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in _modality_order(inputs):
        shape = (int(batch), *tuple(inputs[name].shape)[1:])
        if any(s < 1 for s in shape):
            raise ConfigError(f"input {name!r} has a dynamic non-batch axis {inputs[name].shape}; only the batch "
                              "axis may be dynamic", key=f"inputs.{name}.shape")
        feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _score_module(model: Any, names: list[str], heads: list[str]):

    class _ScoreWrapper(torch.nn.Module):
        """Positional modality inputs → (σ(logit), σ(logit_<m>) …) in a fixed order."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            out = self.model(dict(zip(names, tensors)))
            scores = [torch.sigmoid(out["logit"].reshape(-1).float())]
            scores += [torch.sigmoid(out[f"logit_{m}"].reshape(-1).float()) for m in heads]
            return tuple(scores)

    return _ScoreWrapper()


def _per_modality_heads(model: Any, feeds: Mapping[str, Any]) -> list[str]:
    with torch.no_grad():
        out = model(dict(feeds))
    if not isinstance(out, Mapping) or "logit" not in out:
        raise ConfigError("model.forward(feed) must return a mapping with 'logit' (see create_model in "
                          f"edgepad/models/registry.py); got {type(out).__name__}", key="model")
    return [m.value for m in Modality if f"logit_{m.value}" in out]


def onnx_parity(path: Path | str, reference: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray],
                atol: float = PARITY_ATOL) -> dict[str, float]:
    """Run ``path`` in ONNX Runtime (CPU) on ``feeds`` and compare every output with ``reference``.

    Returns:
        ``{"max_abs_error": …, "max_rel_error": …, "atol": atol, "samples": B}``.

    Raises:
        ValidationError: an output is missing or differs by more than ``atol``.
    """
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, dict(feeds))))
    max_abs, max_rel = 0.0, 0.0
    for name, ref in reference.items():
        if name not in got:
            raise ValidationError(f"ONNX output {name!r} missing (has {names})", report={"missing": name})
        diff = np.abs(np.asarray(got[name], np.float64) - np.asarray(ref, np.float64))
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float((diff / np.maximum(np.abs(ref), 1e-12)).max(initial=0.0)))
    report = {"max_abs_error": max_abs, "max_rel_error": max_rel, "atol": float(atol),
              "samples": int(next(iter(feeds.values())).shape[0])}
    if not max_abs <= atol:
        raise ValidationError(f"ONNX Runtime differs from torch by {max_abs:.3g} > atol {atol:g}; the export is "
                              "wrong (unsupported op or training-mode layer?)", report=report)
    return report


def export_onnx(model: Any, path: Path | str, *, inputs: Mapping[str, InputSpec], threshold: float,
                threshold_criterion: str, operating_points: Mapping[str, Mapping[str, float]] | None = None,
                opset: int = 17, dynamic_batch: bool = False, model_name: str | None = None,
                model_kwargs: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
                parity_atol: float = PARITY_ATOL, check_parity: bool = True) -> ModelManifest:
    """Export a multi-modal PAD model to ONNX and write its sidecar manifest ``<path>.json``.

    Args:
        model: ``nn.Module`` with ``forward({"rgb": B×3×S×S, ...}) -> {"logit": (B,), "logit_<m>": (B,), ...}``.
        path: output ``.onnx`` file (one file; weights inside).
        inputs: input specs by modality name; their order defines nothing (inputs are named); the shape's
            batch axis is 1 (fixed) or -1.
        threshold / threshold_criterion: default operating point on ``score`` (fitted on dev).
        operating_points: ``{criterion: {subset_key: threshold}}`` (degraded subsets, other criteria).
        opset: ONNX opset (13…20; 17 works with TensorRT 8.6/10.x/11.x and the ONNX Runtime quantizer).
        dynamic_batch: export the batch axis as dynamic (``-1`` in the manifest).
        model_name / model_kwargs: how to rebuild the model; default ``model.edgepad_spec`` when present.
        training: provenance recorded in the manifest (config hash, dataset, epochs …).
        parity_atol: max abs difference allowed between torch and ONNX Runtime on the scores.
        check_parity: run the ONNX Runtime parity check (always on except for debugging).

    Returns:
        the written manifest (``format="onnx"``, ``precision="fp32"``, sha256 recorded, parity in ``validation``).

    Raises:
        ConfigError: bad opset or input specs; EngineBuildError: the exporter or checker failed;
        ValidationError: ORT-vs-torch parity above ``parity_atol``.
    """
    path = Path(path)
    if not (MIN_OPSET <= int(opset) <= MAX_OPSET):
        raise ConfigError(f"opset {opset} outside {MIN_OPSET}..{MAX_OPSET}: TensorRT 10.3 (JetPack 6) accepts <= 20 "
                          "and the legacy exporter stops at 20; use 17", key="opset")
    names = _modality_order(inputs)
    spec = getattr(model, "edgepad_spec", None) or {}
    model_name = model_name or spec.get("model") or type(model).__name__
    model_kwargs = dict(model_kwargs if model_kwargs is not None else spec.get("model_kwargs", {}))

    was_training = model.training
    model.eval()
    try:
        feeds_np = example_feeds(inputs, batch=2 if dynamic_batch else 1)
        feeds_t = {k: torch.from_numpy(v) for k, v in feeds_np.items()}
        heads = _per_modality_heads(model, feeds_t)
        wrapper = _score_module(model, names, heads).eval()
        out_names = ["score"] + [f"score_{m}" for m in heads]
        dynamic_axes = None
        if dynamic_batch:
            dynamic_axes = {n: {0: "batch"} for n in names + out_names}
        path.parent.mkdir(parents=True, exist_ok=True)
        trace_args = tuple(feeds_t[n][:1] for n in names)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(wrapper, trace_args, str(path), input_names=names, output_names=out_names,
                                  dynamic_axes=dynamic_axes, opset_version=int(opset), do_constant_folding=True,
                                  dynamo=False)
        except Exception as exc:  # the exporter raises many unrelated types
            raise EngineBuildError(f"torch.onnx.export failed for {model_name}: {exc}") from exc
        with torch.no_grad():
            ref = wrapper(*(feeds_t[n] for n in names))
        reference = {n: t.detach().cpu().numpy() for n, t in zip(out_names, ref)}
    finally:
        model.train(was_training)

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise EngineBuildError(f"onnx.checker rejected {path}: {exc}") from exc
    validation: dict[str, Any] = {}
    if check_parity:
        validation = {"reference": "torch", "candidate": "onnxruntime-cpu",
                      **onnx_parity(path, reference, feeds_np, atol=parity_atol)}
        log.info("exported %s: torch vs ORT max abs %.3g", path.name, validation["max_abs_error"])

    b = -1 if dynamic_batch else 1
    in_specs = {n: _with_batch(inputs[n], b) for n in names}
    out_specs = {n: TensorSpec(n, (b,), "float32") for n in out_names}
    sha = sha256_file(path)
    manifest = ModelManifest(
        model=model_name, modalities=tuple(names), inputs=in_specs, outputs=out_specs, threshold=float(threshold),
        threshold_criterion=threshold_criterion, score_output="score", model_kwargs=model_kwargs,
        operating_points={k: dict(v) for k, v in (operating_points or {}).items()}, format="onnx",
        precision="fp32", onnx_sha256=sha,
        build={"opset": int(opset), "exporter": "torch.onnx(dynamo=False)", "torch": torch.__version__,
               "onnx": onnx.__version__, "dynamic_batch": bool(dynamic_batch), "heads": heads},
        validation=validation or None, training=dict(training or {}))
    return write_manifest(manifest, path)


def _with_batch(spec: InputSpec, batch: int) -> InputSpec:
    return replace(spec, shape=(batch, *tuple(spec.shape)[1:]))
