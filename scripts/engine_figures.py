#!/usr/bin/env python
"""Latency and numerical closeness of the seed methods' FP32 / FP16 / INT8 ONNX (random weights; docs/ENGINES.md).

For cmfl, flexmodal (xattn) and multilayer at 112 px with random weights (``torch.manual_seed(0)``): export to ONNX
(export time, ORT-vs-torch parity from the manifest), convert to FP16 and INT8 (64 random calibration feeds), time
single-sample inference in ONNX Runtime (median of 50 runs after 5 warm-up runs, ``--threads`` threads), and
compare FP16 / INT8 scores with the FP32 ONNX on 64 other random feeds (max abs error, cosine). Decisions of an
untrained model are meaningless: the accuracy gates on a trained model are ``scripts/engine_gates.py``.

Example (from the repository root)::

    nice -n 5 python scripts/engine_figures.py runs/engine_figures

Writes the artifacts, ``figures.json`` and ``figures.md`` into the output folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MODELS = (("cmfl", None), ("flexmodal", "xattn"), ("multilayer", None))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")
    p.add_argument("--size", type=int, default=112, help="input size in px (default 112)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from edgepad.engines.backend import load_backend
    from edgepad.engines.export import example_feeds, export_onnx
    from edgepad.engines.quantize import quantize_int8, to_fp16
    from edgepad.engines.validate import validate_artifact
    from edgepad.models.registry import create_model
    from edgepad.preprocess import default_input_specs

    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    res: dict = {}
    for name, fusion in MODELS:
        m = create_model(name, fusion=fusion)
        specs = {k: v for k, v in default_input_specs(args.size).items() if k in m.modalities}
        t = time.perf_counter()
        man = export_onnx(m, d / f"{name}.onnx", inputs=specs, threshold=0.5, threshold_criterion="bpcer20")
        r = {"export_s": time.perf_counter() - t, "parity_max_abs": man.validation["max_abs_error"]}
        to_fp16(d / f"{name}.onnx", d / f"{name}16.onnx")
        quantize_int8(d / f"{name}.onnx", d / f"{name}8.onnx", [example_feeds(specs, seed=100 + i) for i in range(64)])
        ev = example_feeds(specs, batch=1, seed=7)
        for suf in ("", "16", "8"):
            with load_backend(d / f"{name}{suf}.onnx", threads=args.threads) as be:
                for _ in range(5):
                    be.infer(ev)
                ts = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    be.infer(ev)
                    ts.append(time.perf_counter() - t)
            r[f"latency_ms_{suf or '32'}"] = 1e3 * float(np.median(ts))
            print(name, suf or "32", f"{r[f'latency_ms_{suf or 32}']:.2f} ms", flush=True)
        evs = {k: np.concatenate([example_feeds(specs, seed=1000 + i)[k] for i in range(64)]) for k in specs}
        for suf in ("16", "8"):
            rep = validate_artifact(d / f"{name}{suf}.onnx", d / f"{name}.onnx", evs, record=False,
                                    raise_on_fail=False, backend_options={"threads": args.threads})
            r[f"score_{suf}"] = rep["outputs"]["score"]
            print(name, suf, rep["outputs"]["score"], flush=True)
        res[f"{name}" + (f" {fusion}" if fusion else "")] = r
    md = ["| Model | export (s) | torch vs ORT max abs | ORT FP32 | ORT FP16 | ORT INT8 (S8S8 QDQ) "
          "| FP16 max abs / cosine | INT8 max abs / cosine |", "|---|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        md.append(f"| {k} | {r['export_s']:.1f} | {r['parity_max_abs']:.1e} | {r['latency_ms_32']:.1f} ms "
                  f"| {r['latency_ms_16']:.1f} ms | {r['latency_ms_8']:.1f} ms "
                  f"| {r['score_16']['max_abs_error']:.1e} / {r['score_16']['cosine']:.6f} "
                  f"| {r['score_8']['max_abs_error']:.1e} / {r['score_8']['cosine']:.6f} |")
    (d / "figures.md").write_text("\n".join(md) + "\n")
    (d / "figures.json").write_text(json.dumps(res, indent=2, default=str))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
