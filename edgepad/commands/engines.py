"""``edgepad export`` and ``edgepad build``: argparse → ``edgepad.training.export`` (checkpoint → FP32 ONNX) and
``edgepad.engines.convert`` (FP16 / INT8 / TensorRT with the accuracy gate), result printed as JSON.

All of it imports without torch / onnx / TensorRT; those load when a command runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgepad.commands.common import fraction, nonneg_int, positive_int, verdict
from edgepad.engines.build import BuildConfig
from edgepad.engines.compare import compare_artifacts, format_comparison
from edgepad.engines.convert import build_and_gate, convert, reference_path
from edgepad.engines.manifest import read_manifest
from edgepad.training.export import export_checkpoint_onnx


def _gate_arguments(parser: argparse.ArgumentParser, calib: bool = True) -> None:
    g = parser.add_argument_group("accuracy gate")
    g.add_argument("--validate", metavar="DATA", default=None,
                   help="held-out data for the accuracy gate: benchmark folder (split --eval-split) or .npz; "
                        + ("default: the --calib folder" if calib else "required unless --no-validate"))
    g.add_argument("--protocol", default="grandtest", help="protocol of DATA folders (default grandtest)")
    g.add_argument("--eval-split", default="eval", help="split the gate runs on (default eval)")
    g.add_argument("--dev-split", default="dev", help="split for calibration and threshold re-fit (default dev)")
    g.add_argument("--frames-per-video", type=positive_int, default=None, help="frames per video read from DATA")
    g.add_argument("--max-samples", type=positive_int, default=None, help="cap on gate samples")
    g.add_argument("--min-agreement", type=fraction, default=0.995,
                   help="minimum decision agreement at the manifest threshold, fraction (default 0.995)")
    g.add_argument("--max-acer-increase", type=fraction, default=0.005,
                   help="maximum ACER increase, fraction (default 0.005 = 0.5 point)")
    g.add_argument("--refit", action="store_true", help="re-fit the converted artifact's threshold on the dev split "
                   "(recorded in its manifest)")
    g.add_argument("--no-validate", action="store_true", help="skip the gate (recorded: validation = null)")
    g.add_argument("--keep-failed", action="store_true", help="keep an artifact that failed the gate")
    g.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="trained checkpoint (.pt from `edgepad train`) or an FP32 .onnx to convert")
    parser.add_argument("--out", required=True, help="output .onnx (its manifest goes to OUT.json)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    parser.add_argument("--calib", metavar="DATA", default=None,
                        help="INT8 calibration data: benchmark folder (dev split) or .npz of normalised feeds")
    parser.add_argument("--calib-samples", type=positive_int, default=512,
                        help="calibration samples (>= 300; 500 recommended)")
    parser.add_argument("--quantizer", choices=("ort", "modelopt"), default="ort",
                        help="INT8 quantizer: ONNX Runtime's (default) or NVIDIA Model Optimizer's (optional "
                             "package nvidia-modelopt; docs/ENGINES.md)")
    parser.add_argument("--dynamic-batch", action="store_true", help="export a dynamic batch axis")
    parser.add_argument("--opset", type=positive_int, default=17,
                        help="ONNX opset (default 17: TensorRT 8.6/10.x/11.x)")
    parser.add_argument("--threshold", type=fraction, default=None,
                        help="operating threshold on P(live) (default: from CHECKPOINT.json or --config)")
    parser.add_argument("--criterion", default=None, help="criterion the threshold was fitted with (e.g. bpcer20)")
    parser.add_argument("--config", default=None,
                        help="training config: fit thresholds (all modality subsets) on its dev split")
    _gate_arguments(parser)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="ONNX model with its manifest (FP32, FP16 or INT8 Q/DQ from `edgepad export`)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument("--cache", default=None, help="engine cache folder (default: ONNX_DIR/engines)")
    parser.add_argument("--workspace-mib", type=positive_int, default=1024)
    parser.add_argument("--dla-core", type=nonneg_int, default=None, help="DLA core (Jetson AGX Orin / Orin NX)")
    parser.add_argument("--gpu-fallback", action=argparse.BooleanOptionalAction, default=True,
                        help="DLA: let unsupported layers run on the GPU (default on; the layers are listed in the "
                        "engine manifest)")
    parser.add_argument("--version-compatible", action="store_true", help="version-compatible plan")
    parser.add_argument("--timing-cache", default=None, help="timing-cache file (default: one per device in --cache)")
    parser.add_argument("--max-batch", type=positive_int, default=1, help="profile max batch for dynamic-batch ONNX")
    parser.add_argument("--rebuild", choices=("on_mismatch", "never", "always"), default="on_mismatch")
    parser.add_argument("--reference", default=None,
                        help="reference ONNX for the gate (default: the ONNX itself, run in ONNX Runtime)")
    parser.add_argument("--compare", type=nonneg_int, default=0, metavar="N",
                        help="run N samples (of --validate's eval split, else random) through the engine and the "
                        "reference in ONNX Runtime; print per-output max/mean abs error and decision agreement")
    _gate_arguments(parser, calib=False)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _gate_kw(args: argparse.Namespace) -> dict[str, Any]:
    """The accuracy-gate options of :func:`edgepad.engines.convert.gate` from the command line."""
    return {"protocol": args.protocol, "dev_split": args.dev_split, "frames_per_video": args.frames_per_video,
            "eval_split": args.eval_split, "max_samples": args.max_samples, "refit": args.refit,
            "min_agreement": args.min_agreement, "max_acer_increase": args.max_acer_increase,
            "threads": args.threads, "keep_failed": args.keep_failed}


def export_main(args: argparse.Namespace) -> int:
    src, out = Path(args.checkpoint), Path(args.out)
    if src.suffix == ".onnx":
        fp32 = src
    else:
        fp32 = out if args.precision == "fp32" else reference_path(out)
        export_checkpoint_onnx(src, fp32, threshold=args.threshold, criterion=args.criterion,
                               config=_path(args.config), opset=args.opset, dynamic_batch=args.dynamic_batch)
    m = read_manifest(fp32)
    report: dict[str, Any] = {"fp32": str(fp32), "parity": m.validation, "onnx_sha256": m.onnx_sha256}
    if args.precision == "fp32":
        report["artifact"] = str(fp32)
    else:
        report.update(convert(fp32, out, args.precision, calib=_path(args.calib), calib_samples=args.calib_samples,
                              validate=_path(args.validate), no_validate=args.no_validate, quantizer=args.quantizer,
                              **_gate_kw(args)))
    print(json.dumps(report, indent=2, default=str))
    return _verdict(args, report)


def _verdict(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """The closing line on stderr (stdout holds the JSON report only)."""
    passed = bool(report.get("passed", True))
    gate = "accuracy gate passed" if report.get("passed") else ("accuracy gate FAILED (report above)"
                                                              if "passed" in report else "no accuracy gate run")
    artifact = report.get("artifact") or report.get("engine") or report.get("path")
    return verdict(args, passed, gate, [artifact] if passed else [], stream=sys.stderr)


def build_main(args: argparse.Namespace) -> int:
    cfg = BuildConfig(precision=args.precision, workspace_mib=args.workspace_mib, dla_core=args.dla_core,
                      allow_gpu_fallback=args.gpu_fallback, version_compatible=args.version_compatible,
                      timing_cache=_path(args.timing_cache), max_batch=args.max_batch,
                      min_decision_agreement=args.min_agreement, max_acer_increase=args.max_acer_increase,
                      refit_threshold=args.refit)
    report = build_and_gate(args.onnx, cfg, args.cache, rebuild=args.rebuild, reference=_path(args.reference),
                            validate=_path(args.validate), no_validate=args.no_validate, **_gate_kw(args))
    if args.compare:
        report["compare"] = compare_artifacts(report["engine"], args.reference or args.onnx, args.compare,
                                              data=args.validate, protocol=args.protocol, split=args.eval_split)
        print(format_comparison(report["compare"]), file=sys.stderr)
    print(json.dumps(report, indent=2, default=str))
    return _verdict(args, report)
