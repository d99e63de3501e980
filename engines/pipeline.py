"""Checkpoint → ONNX → FP16/INT8 → gate, and ONNX → engine → gate: the library behind ``edgepad export``/``build``.

:func:`convert` is the one call the CLI and scripts use: it writes the FP32 reference next to the output, the
converted ONNX, runs the accuracy gate on a held-out split and deletes an artifact that fails it (unless kept).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from edgepad.engines.manifest import ModelManifest, manifest_path, read_manifest
from edgepad.errors import ConfigError, ValidationError

log = logging.getLogger(__name__)


def reference_path(out: Path) -> Path:
    """Where the FP32 reference of ``out`` is written: ``model.onnx`` → ``model.fp32.onnx``."""
    return out.with_name(out.stem + ".fp32" + out.suffix)


def _remove(path: Path) -> None:
    for p in (path, manifest_path(path)):
        if p.exists():
            p.unlink()


def export_checkpoint_onnx(checkpoint: Path, out: Path, *, threshold: float | None, criterion: str | None,
                           config: Path | None, opset: int, dynamic_batch: bool) -> ModelManifest:
    """FP32 ONNX of an interface-E checkpoint; thresholds from ``config`` (dev fit), the flags, or CKPT.json."""
    from edgepad.engines.export import export_onnx
    from edgepad.engines.torch_backend import load_checkpoint_model
    if config is not None:
        from edgepad.training import export_checkpoint, load_train_config
        cfg = load_train_config(config, {"export.opset": opset})
        return export_checkpoint(checkpoint, out, cfg)
    ops: Mapping[str, Any] = {}
    training: Mapping[str, Any] = {}
    if threshold is None:
        mp = manifest_path(checkpoint)
        if not mp.exists():
            raise ConfigError("no threshold: pass --threshold and --criterion (fitted on dev), --config TRAIN.yaml, "
                              f"or put a manifest at {mp.name}", key="threshold")
        ck_manifest = read_manifest(checkpoint)
        threshold, criterion = ck_manifest.threshold, ck_manifest.threshold_criterion
        ops, training = ck_manifest.operating_points, ck_manifest.training
    if criterion is None:
        raise ConfigError("--threshold needs --criterion (the dev criterion it was fitted with, e.g. bpcer20)",
                          key="criterion")
    model, inputs, ck = load_checkpoint_model(checkpoint)
    return export_onnx(model, out, inputs=inputs, threshold=threshold, threshold_criterion=criterion,
                       operating_points=ops, opset=opset, dynamic_batch=dynamic_batch, model_name=ck["model"],
                       model_kwargs=ck["model_kwargs"], training=dict(training) or {"epoch": ck.get("epoch")})


def gate(candidate: Path | Any, reference: Path | Any, manifest: ModelManifest, *, data: Path | None,
         protocol: str = "grandtest", eval_split: str = "eval", dev_split: str = "dev",
         frames_per_video: int | None = None, max_samples: int | None = None, refit: bool = False,
         min_agreement: float = 0.995, max_acer_increase: float = 0.005, threads: int | None = None,
         keep_failed: bool = False) -> dict[str, Any]:
    """Run the accuracy gate of ``candidate`` against ``reference`` on ``data``'s eval split.

    A failed candidate file is deleted unless ``keep_failed`` (its manifest then records ``passed: false``).
    Returns the report (``passed`` False on failure; no exception).
    """
    from edgepad.engines.feeds import load_feeds
    from edgepad.engines.validate import DevSet, GateConfig, validate_artifact
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
            **gate_kw: Any) -> dict[str, Any]:
    """FP32 ONNX ``src`` → ``out`` at ``precision`` (fp16 / int8), then the accuracy gate.

    Returns ``{"artifact", "precision", "manifest", "validation"}`` (``passed`` False when the gate failed).
    """
    from edgepad.engines.quantize import quantize_int8, to_fp16
    src, out = Path(src), Path(out)
    ref = read_manifest(src)
    if precision == "fp16":
        man = to_fp16(src, out)
    elif precision == "int8":
        if calib is None:
            raise ConfigError("INT8 needs calibration data: --calib DATA (dev split, >= 300 samples)", key="calib")
        from edgepad.engines.feeds import load_feeds
        cs = load_feeds(calib, ref.inputs, protocol=protocol, split=dev_split, frames_per_video=frames_per_video,
                        limit=calib_samples)
        man = quantize_int8(src, out, cs.batches(1), sample_ids=cs.sample_ids)
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


def _gate_kw(args: Any) -> dict[str, Any]:
    return {"eval_split": args.eval_split, "max_samples": args.max_samples, "refit": args.refit,
            "min_agreement": args.min_agreement, "max_acer_increase": args.max_acer_increase,
            "threads": args.threads, "keep_failed": args.keep_failed}


def export_command(args: Any) -> dict[str, Any]:
    """``edgepad export`` (see ``edgepad export --help``)."""
    src = Path(args.checkpoint)
    out = Path(args.out)
    if src.suffix == ".onnx":
        fp32 = src
    else:
        fp32 = out if args.precision == "fp32" else reference_path(out)
        export_checkpoint_onnx(src, fp32, threshold=args.threshold, criterion=args.criterion,
                               config=Path(args.config) if args.config else None, opset=args.opset,
                               dynamic_batch=args.dynamic_batch)
    m = read_manifest(fp32)
    result: dict[str, Any] = {"fp32": str(fp32), "parity": m.validation, "onnx_sha256": m.onnx_sha256}
    if args.precision == "fp32":
        result["artifact"] = str(fp32)
        return result
    conv = convert(fp32, out, args.precision, calib=Path(args.calib) if args.calib else None,
                   calib_samples=args.calib_samples, dev_split=args.dev_split, protocol=args.protocol,
                   frames_per_video=args.frames_per_video, validate=Path(args.validate) if args.validate else None,
                   no_validate=args.no_validate, **_gate_kw(args))
    result.update(conv)
    return result


def build_command(args: Any) -> dict[str, Any]:
    """``edgepad build`` (see ``edgepad build --help``)."""
    from edgepad.engines.build import BuildConfig, build_engine
    onnx = Path(args.onnx)
    cfg = BuildConfig(precision=args.precision, workspace_mib=args.workspace_mib, dla_core=args.dla_core,
                      allow_gpu_fallback=args.gpu_fallback, version_compatible=args.version_compatible,
                      timing_cache=Path(args.timing_cache) if args.timing_cache else None,
                      max_batch=args.max_batch, min_decision_agreement=args.min_agreement,
                      max_acer_increase=args.max_acer_increase, refit_threshold=args.refit)
    path, man = build_engine(onnx, cfg, args.cache, rebuild=args.rebuild)
    result: dict[str, Any] = {"engine": str(path), "trt_version": man.trt_version, "device": man.device,
                              "precision": man.precision, "cache_key": path.stem}
    if args.no_validate:
        result["validation"] = None
        return result
    reference = Path(args.reference) if args.reference else onnx
    report = gate(path, reference, man, data=Path(args.validate) if args.validate else None,
                  protocol=args.protocol, dev_split=args.dev_split, frames_per_video=args.frames_per_video,
                  **_gate_kw(args))
    result["validation"] = report
    result["passed"] = bool(report.get("passed"))
    return result
