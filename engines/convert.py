"""Conversion with an accuracy gate: FP32 ONNX → FP16 / INT8 ONNX (:func:`convert`) and ONNX → TensorRT engine
(:func:`build_and_gate`), each checked against its FP32 reference by :func:`gate` on a held-out split.

The library behind ``edgepad export --precision fp16|int8`` and ``edgepad build`` (the checkpoint → FP32 ONNX step
is ``edgepad.training.export``). An artifact that fails the gate is deleted unless kept (docs/ENGINES.md).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgepad.engines.build import BuildConfig, build_engine
from edgepad.engines.feeds import load_feeds
from edgepad.engines.manifest import ModelManifest, manifest_path, read_manifest
from edgepad.engines.quantize import quantize_int8, to_fp16
from edgepad.engines.validate import DevSet, GateConfig, validate_artifact
from edgepad.errors import ConfigError, ValidationError

log = logging.getLogger(__name__)


def reference_path(out: Path) -> Path:
    """Where the FP32 reference of ``out`` is written: ``model.onnx`` → ``model.fp32.onnx``."""
    return out.with_name(out.stem + ".fp32" + out.suffix)


def _remove(path: Path) -> None:
    for p in (path, manifest_path(path)):
        if p.exists():
            p.unlink()


def gate(candidate: Path | Any, reference: Path | Any, manifest: ModelManifest, *, data: Path | None,
         protocol: str = "grandtest", eval_split: str = "eval", dev_split: str = "dev",
         frames_per_video: int | None = None, max_samples: int | None = None, refit: bool = False,
         min_agreement: float = 0.995, max_acer_increase: float = 0.005, threads: int | None = None,
         keep_failed: bool = False) -> dict[str, Any]:
    """Run the accuracy gate of ``candidate`` against ``reference`` on ``data``'s eval split.

    A failed candidate file is deleted unless ``keep_failed`` (its manifest then records ``passed: false``).
    Returns the report (``passed`` False on failure; no exception).
    """
    if data is None:
        raise ConfigError("the accuracy gate needs held-out data: --validate DATA (or --no-validate)", key="validate")
    ev = load_feeds(data, manifest.inputs, protocol=protocol, split=eval_split, frames_per_video=frames_per_video,
                    limit=max_samples)
    dev = None
    if refit:
        d = load_feeds(data, manifest.inputs, protocol=protocol, split=dev_split, frames_per_video=frames_per_video)
        if d.is_bonafide is None:
            raise ConfigError("threshold re-fit needs labelled dev data", key="refit")
        dev = DevSet(d.feeds, d.is_bonafide, d.species)
    opts = {"threads": threads} if threads else {}
    try:
        report = validate_artifact(candidate, reference, ev.feeds, labels=ev.is_bonafide, species=ev.species,
                                   gate=GateConfig(min_agreement, max_acer_increase), refit=dev,
                                   backend_options=opts)
    except ValidationError as exc:
        report = dict(exc.report or {})
        if isinstance(candidate, Path) and not keep_failed:
            _remove(candidate)
            report["removed"] = str(candidate)
    return report


def convert(src: Path | str, out: Path | str, precision: str, *, calib: Path | None = None,
            calib_samples: int = 512, dev_split: str = "dev", protocol: str = "grandtest",
            frames_per_video: int | None = None, validate: Path | None = None, no_validate: bool = False,
            quantizer: str = "ort", **gate_kw: Any) -> dict[str, Any]:
    """FP32 ONNX ``src`` → ``out`` at ``precision`` (fp16 / int8; INT8 by ``quantizer`` ``ort`` or ``modelopt``),
    then the accuracy gate.

    Returns ``{"artifact", "precision", "manifest", "validation"}`` (``passed`` False when the gate failed).
    """
    src, out = Path(src), Path(out)
    ref = read_manifest(src)
    if precision == "fp16":
        man = to_fp16(src, out)
    elif precision == "int8":
        if calib is None:
            raise ConfigError("INT8 needs calibration data: --calib DATA (dev split, >= 300 samples)", key="calib")
        cs = load_feeds(calib, ref.inputs, protocol=protocol, split=dev_split, frames_per_video=frames_per_video,
                        limit=calib_samples)
        man = quantize_int8(src, out, cs.batches(1), sample_ids=cs.sample_ids, quantizer=quantizer)
    else:
        raise ConfigError(f"convert() makes fp16 or int8, not {precision!r}", key="precision")
    result: dict[str, Any] = {"artifact": str(out), "precision": precision, "reference": str(src)}
    if no_validate:
        result["validation"] = None
        return result
    data = validate or (calib if calib is not None and Path(calib).is_dir() else None)
    report = gate(out, src, man, data=data, protocol=protocol, dev_split=dev_split,
                  frames_per_video=frames_per_video, **gate_kw)
    result["validation"] = report
    result["passed"] = bool(report.get("passed"))
    return result


def build_and_gate(onnx: Path | str, cfg: BuildConfig, cache: Path | str | None = None, *,
                   rebuild: str = "on_mismatch", reference: Path | str | None = None, validate: Path | None = None,
                   no_validate: bool = False, protocol: str = "grandtest", dev_split: str = "dev",
                   frames_per_video: int | None = None, **gate_kw: Any) -> dict[str, Any]:
    """Build (or reuse from ``cache``) the TensorRT engine of ``onnx``, then gate it against ``reference``
    (default: ``onnx`` itself in ONNX Runtime) on ``validate``'s eval split; ``gate_kw`` as :func:`gate`.

    Returns ``{"engine", "trt_version", "device", "precision", "cache_key", "validation"[, "passed"]}``.
    """
    onnx = Path(onnx)
    path, man = build_engine(onnx, cfg, cache, rebuild=rebuild)
    result: dict[str, Any] = {"engine": str(path), "trt_version": man.trt_version, "device": man.device,
                              "precision": man.precision, "cache_key": path.stem}
    if no_validate:
        result["validation"] = None
        return result
    report = gate(path, Path(reference) if reference else onnx, man, data=Path(validate) if validate else None,
                  protocol=protocol, dev_split=dev_split, frames_per_video=frames_per_video, **gate_kw)
    result["validation"] = report
    result["passed"] = bool(report.get("passed"))
    return result
