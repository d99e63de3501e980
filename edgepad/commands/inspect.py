"""``edgepad inspect MODEL``: a model's manifest, inputs, operating points, provenance and integrity as tables.

Reads only the sidecar manifest and the artifact's bytes (no ONNX Runtime, no TensorRT); the signature is
checked against ``--public-key`` when one is given (:mod:`edgepad.runtime.integrity`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgepad.commands.common import verdict


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model artifact (.onnx, .engine, .pt) with its sidecar manifest MODEL.json")
    parser.add_argument("--public-key", default=None, metavar="FILE",
                        help="vendor Ed25519 public key: also check the manifest signature (MODEL.json.sig)")
    parser.add_argument("--json", action="store_true", help="print the inspection as JSON (verdict on stderr)")


def inspect_model(model: Path, public_key: str | None) -> dict[str, Any]:
    """The inspection of ``model``: manifest fields, inputs, operating points, provenance, integrity checks."""
    from edgepad.engines.manifest import artifact_sha256, manifest_path, read_manifest
    from edgepad.errors import EdgePadError
    from edgepad.runtime.integrity import signature_path, verify_signature

    if not model.is_file():
        raise FileNotFoundError(2, "no such model file", str(model))
    m = read_manifest(model)
    checks: dict[str, Any] = {}
    try:
        actual = artifact_sha256(model, m.artifact_files)
        ok = bool(m.artifact_sha256) and actual == m.artifact_sha256
        checks["sha256"] = {"ok": ok, "recorded": m.artifact_sha256, "actual": actual}
    except OSError as exc:
        checks["sha256"] = {"ok": False, "recorded": m.artifact_sha256, "actual": None, "why": str(exc)}
    sig = signature_path(model)
    checks["signature"] = {"present": sig.is_file(), "path": str(sig), "valid": None}
    if public_key is not None:
        try:
            verify_signature(model, public_key)
            checks["signature"]["valid"] = True
        except EdgePadError as exc:
            checks["signature"].update(valid=False, why=str(exc))
    d = m.to_dict()
    return {
        "model": str(model), "manifest": str(manifest_path(model)),
        "summary": {k: d.get(k) for k in ("model", "format", "precision", "modalities", "score_output",
                                          "schema_version", "model_kwargs")},
        "inputs": [{"name": name, "shape": list(spec.shape), "dtype": spec.dtype,
                    **{k: getattr(spec, k, None) for k in ("mean", "std", "clip", "missing_fill", "depth_norm",
                                                            "distance_ref_m", "align", "margin")}}
                   for name, spec in m.inputs.items()],
        "outputs": [{"name": name, "shape": list(spec.shape), "dtype": spec.dtype} for name, spec in m.outputs.items()],
        "operating_points": {"default": {"criterion": m.threshold_criterion, "split": m.threshold_split,
                                         "threshold": m.threshold},
                             **{k: dict(v) for k, v in m.operating_points.items()}},
        "provenance": {k: d.get(k) for k in ("onnx_sha256", "calibration_set_sha256", "trt_version", "device",
                                             "build", "validation", "training")},
        "integrity": checks,
    }


def _table(title: str, rows: list[tuple[str, ...]]) -> list[str]:
    lines = [f"{title}:"]
    if not rows:
        return lines + ["  (none)"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return lines


def _short(value: Any, width: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def format_inspection(info: dict[str, Any]) -> str:
    """The human tables of :func:`inspect_model`."""
    lines = [f"model    {info['model']}", f"manifest {info['manifest']}", ""]
    lines += _table("summary", [(k, _short(v)) for k, v in info["summary"].items()])
    lines += [""] + _table("inputs", [("name", "shape", "dtype", "preprocessing (InputSpec)")] + [
        (i["name"], "x".join(str(s) for s in i["shape"]), i["dtype"],
         _short({k: i[k] for k in ("mean", "std", "clip", "missing_fill", "depth_norm", "distance_ref_m",
                                          "align", "margin")}))
        for i in info["inputs"]])
    lines += [""] + _table("outputs", [(o["name"], "x".join(str(s) for s in o["shape"]), o["dtype"])
                                       for o in info["outputs"]])
    lines += [""] + _table("operating points", [(k, _short(v)) for k, v in info["operating_points"].items()])
    lines += [""] + _table("provenance", [(k, _short(v)) for k, v in info["provenance"].items()])
    sha, sig = info["integrity"]["sha256"], info["integrity"]["signature"]
    valid = {None: "not checked (no --public-key)", True: "valid", False: f"INVALID: {sig.get('why', '')}"}
    lines += [""] + _table("integrity", [
        ("sha256", ("OK " if sha["ok"] else "MISMATCH ") + f"recorded {sha['recorded']} actual {sha['actual']}"),
        ("signature", ("present" if sig["present"] else "absent") + f" ({sig['path']}); " + valid[sig["valid"]])])
    return "\n".join(lines)


def inspect_main(args: argparse.Namespace) -> int:
    info = inspect_model(Path(args.model), args.public_key)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    sha, sig = info["integrity"]["sha256"], info["integrity"]["signature"]
    problems = ([] if sha["ok"] else ["artifact sha256 does not match its manifest"]) + \
        (["manifest signature invalid"] if sig["valid"] is False else [])
    why = "; ".join(problems) if problems else (
        "artifact matches its manifest" + (", signature valid" if sig["valid"] else ""))
    return verdict(args, not problems, why)
