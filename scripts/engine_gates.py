#!/usr/bin/env python
"""Accuracy gates of the FP16 and INT8 conversions of an FP32 ONNX on a benchmark's eval split (docs/ENGINES.md).

Converts ``--model`` (default: the embedded default model) to FP16 (:func:`edgepad.engines.quantize.to_fp16`) and
INT8 (:func:`~edgepad.engines.quantize.quantize_int8`; ORT, or ``int8-modelopt``; calibrated on
``--calib-samples`` frames of the DEV split, never eval), then runs :func:`edgepad.engines.validate.validate_artifact` against the FP32 ONNX on the EVAL split
with labels and species: decision agreement at the manifest threshold, flipped samples, score errors and cosine,
APCER/BPCER/ACER and their deltas; then again with the candidate's threshold re-fitted on the whole dev split
(``--no-refit`` skips it). Writes ``gates.json`` and ``gates.md`` (the table in docs/ENGINES.md) into ``--out``.

Example (from the repository root)::

    nice -n 5 python scripts/engine_gates.py --data bench/default --out runs/engine_gates

Needs onnx and onnxruntime. Exit status 0 when both conversions pass the default gate, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "edgepad/assets/default.onnx"),
                   help="FP32 ONNX with its manifest (default: edgepad/assets/default.onnx)")
    p.add_argument("--data", default=str(REPO / "bench/default"), help="WMCA-layout benchmark folder")
    p.add_argument("--protocol", default="grandtest")
    p.add_argument("--calib-split", default="dev", help="calibration and re-fit split (default dev)")
    p.add_argument("--eval-split", default="eval", help="gate split (default eval)")
    p.add_argument("--calib-samples", type=int, default=512, help="INT8 calibration frames from the dev split "
                   "(>= 300; drawn evenly with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample draw")
    p.add_argument("--precisions", default="fp16,int8", help="comma-separated subset of fp16,int8,int8-modelopt "
                   "(int8-modelopt: NVIDIA Model Optimizer ONNX PTQ, FP16 float layers, opset 19)")
    p.add_argument("--no-refit", action="store_true", help="skip the dev re-fit pass")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--out", required=True, help="output folder (artifacts, gates.json, gates.md)")
    return p.parse_args(argv)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _row(name: str, rep: dict) -> str:
    m = rep["metrics"]
    s = rep["outputs"]["score"]
    d = m["delta"]
    return (f"| {name} | {rep['samples']} | {rep['candidate_threshold']:.4f} | {_pct(rep['decision_agreement'])} % "
            f"| {rep['flipped']} ({rep['flipped_to_live']} to live) | {s['max_abs_error']:.2e} | {s['cosine']:.6f} "
            f"| {_pct(m['candidate']['apcer'])} / {_pct(m['candidate']['bpcer'])} / {_pct(m['candidate']['acer'])} "
            f"| {100 * d['apcer']:+.2f} / {100 * d['bpcer']:+.2f} / {100 * d['acer']:+.2f} "
            f"| {'pass' if rep['passed'] else 'FAIL'} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import numpy as np

    from edgepad.engines.feeds import FeedSet, load_feeds
    from edgepad.engines.manifest import read_manifest
    from edgepad.engines.quantize import qdq_summary, quantize_int8, to_fp16
    from edgepad.engines.validate import DevSet, validate_artifact

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.model)
    man = read_manifest(src)
    t0 = time.perf_counter()
    ev = load_feeds(args.data, man.inputs, protocol=args.protocol, split=args.eval_split)
    dev = load_feeds(args.data, man.inputs, protocol=args.protocol, split=args.calib_split)
    # calibration frames: drawn evenly from the dev split with --seed (as load_feeds(limit=, seed=) would)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(dev), min(args.calib_samples, len(dev)),
                                                            replace=False))
    calib = FeedSet({k: v[pick] for k, v in dev.feeds.items()}, dev.is_bonafide[pick],
                    [dev.species[i] for i in pick], [dev.sample_ids[i] for i in pick])
    overlap = set(calib.sample_ids) & set(ev.sample_ids)
    if overlap:  # cannot happen with disjoint folds; refuse rather than report a contaminated gate
        raise SystemExit(f"calibration and eval share {len(overlap)} samples")
    t_load = time.perf_counter() - t0
    opts = {"threads": args.threads}
    results: dict = {"model": str(src), "model_sha256": man.onnx_sha256, "threshold": man.threshold,
                     "criterion": man.threshold_criterion, "data": str(args.data), "protocol": args.protocol,
                     "eval_samples": len(ev), "dev_samples": len(dev), "calib_samples": len(calib),
                     "load_s": round(t_load, 1), "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
                     "gates": {}}
    rows = []
    for prec in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        dst = out / f"{src.stem}.{prec}.onnx"
        t = time.perf_counter()
        if prec == "fp16":
            cm = to_fp16(src, dst)
        elif prec in ("int8", "int8-modelopt"):
            cm = quantize_int8(src, dst, calib.batches(1), sample_ids=calib.sample_ids,
                               quantizer="modelopt" if prec == "int8-modelopt" else "ort")
        else:
            raise SystemExit(f"unknown precision {prec!r} (fp16, int8, int8-modelopt)")
        t_conv = time.perf_counter() - t
        t = time.perf_counter()
        rep = validate_artifact(dst, src, ev.feeds, labels=ev.is_bonafide, species=ev.species, record=True,
                                raise_on_fail=False, backend_options=opts)
        t_gate = time.perf_counter() - t
        entry = {"artifact": str(dst), "convert_s": round(t_conv, 1), "gate_s": round(t_gate, 1), "gate": rep,
                 "flipped_samples": [{"id": ev.sample_ids[i], "species": ev.species[i],
                                      "is_bonafide": bool(ev.is_bonafide[i])} for i in rep["flipped_indices"]]}
        if prec.startswith("int8"):
            entry["calibration_set_sha256"] = cm.calibration_set_sha256
            entry["qdq"] = qdq_summary(dst)
            q = dict(cm.build["quantization"])
            entry["quantization"] = {k: q.get(k) for k in ("tool", "selection", "quantized_nodes", "float_dtype",
                                                          "repointed_float_inputs", "opset")}
            entry["protected_nodes"] = q.get("protected_nodes")
        rows.append(_row(f"{prec} @ manifest τ", rep))
        if not args.no_refit:
            rr = validate_artifact(dst, src, ev.feeds, labels=ev.is_bonafide, species=ev.species, record=True,
                                   raise_on_fail=False, backend_options=opts,
                                   refit=DevSet(dev.feeds, dev.is_bonafide, dev.species))
            entry["refit"] = rr
            rows.append(_row(f"{prec} @ dev re-fit τ", rr))
        results["gates"][prec] = entry
    ref_m = next(iter(results["gates"].values()))["gate"]["metrics"]["reference"] if results["gates"] else None
    head = ("| candidate | eval samples | τ | decision agreement | flipped | score max abs | cosine "
            "| APCER / BPCER / ACER (%) | Δ APCER / BPCER / ACER (points) | gate |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    md = [head]
    if ref_m:
        md.append(f"| fp32 reference | {len(ev)} | {man.threshold:.4f} | – | – | – | – | {_pct(ref_m['apcer'])} / "
                  f"{_pct(ref_m['bpcer'])} / {_pct(ref_m['acer'])} | – | – |")
    md += rows
    (out / "gates.md").write_text("\n".join(md) + "\n")
    (out / "gates.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n".join(md))
    passed = all(e["gate"]["passed"] for e in results["gates"].values())
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
