"""``edgepad evaluate`` and ``edgepad metrics`` (light module: ``edgepad.evaluation`` is imported when run)."""
from __future__ import annotations

import argparse
import json

from edgepad.commands.common import positive_int, verdict
from edgepad.report import pct, rate_text
from edgepad.types import parse_modalities

_CRITERION_HELP = ("threshold criterion fitted on dev and applied to eval: bpcerN (APCER <= 1/N for every species "
                   "on dev, e.g. bpcer20), apcerN (BPCER <= 1/N on dev, e.g. apcer100), eer or min-hter "
                   "(default: %(default)s)")
# the literal mirrors edgepad.metrics.DEFAULT_THRESHOLD_RULE (this module stays light; a test pins them equal)
_RULES = ("edge", "gap", "gap_logit")
_DEFAULT_RULE = "gap_logit"
_RULE_HELP = ("where τ is placed on dev (edgepad.metrics.place_threshold): gap_logit = logit-space middle of the dev "
              "gap / decision interval (the rule the export records in the manifest), gap = score-space middle, "
              "edge = the criterion's τ on a dev score (default: %(default)s)")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model artifact (.onnx, .pt or .engine with its manifest)")
    parser.add_argument("--data", required=True,
                        help="a benchmark folder (protocols/PROTOCOL-<name>.csv, videos/) or a YAML/JSON data "
                             "config: a training config or its data section (kind: synthbench | wmca | casia_surf "
                             "| cefa; depth_encoding: mm16 | uint8_normalised); see docs/EVALUATION.md")
    parser.add_argument("--protocol", default=None,
                        help="protocol name (default: the config's, grandtest for a benchmark folder)")
    parser.add_argument("--subset", default=None,
                        help="modalities presented, e.g. rgb+depth (missing-modality sub-protocol; the others "
                             "get the manifest's fill value). Default: all the model's modalities")
    parser.add_argument("--out", required=True, help="output folder (score CSVs, metrics.json, report)")
    parser.add_argument("--criterion", default="bpcer20", help=_CRITERION_HELP)
    parser.add_argument("--threshold-rule", choices=_RULES, default=_DEFAULT_RULE, help=_RULE_HELP)
    parser.add_argument("--frames", type=positive_int, default=None,
                        help="frames per video, evenly sampled (default: all)")
    parser.add_argument("--level", choices=("video", "frame"), default="video",
                        help="level of the headline scores and report (both are computed; default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | torch | trt (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="frames per inference call (dynamic batch only)")
    parser.add_argument("--limit", type=positive_int, default=None, help="score at most N videos per fold (smoke runs)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def evaluate_main(args: argparse.Namespace) -> int:
    from edgepad.evaluation import evaluate_model
    subset = None if args.subset is None else [m.value for m in parse_modalities(args.subset)]
    doc = evaluate_model(args.model, args.data, args.protocol, args.out, criterion=args.criterion, subset=subset,
                         max_frames=args.frames, backend_kind=args.backend, batch_size=args.batch_size,
                         level=args.level, plots=not args.no_plots, limit=args.limit,
                         threshold_rule=args.threshold_rule)
    print(_summary(doc["result"]))
    files = "scores-dev.csv, scores-eval.csv, metrics.json, report.md, report.html"
    if doc.get("heads", {}).get("error"):
        print(f"  per-head diagnostics skipped: {doc['heads']['error']}")
    elif doc.get("heads"):
        h = doc["heads"]
        print("  per head (own dev-EER τ): " + ", ".join(
            f"{n} EER {pct(h['eer_dev'][n])} / ACER {pct(a)}" for n, a in h["eval_acer_at_eer_dev"].items()))
        print(f"  weakest head: {h['weakest_head']} (heads.md, heads.json)")
        files += ", heads.json, heads.md"
    return verdict(args, True, f"ACER {pct(doc['result']['eval']['acer'])} on eval", [f"{args.out}/{files}"])


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dev", help="bob-format score CSV of the dev fold (threshold is fitted here)")
    parser.add_argument("eval", help="bob-format score CSV of the eval fold (threshold applied unchanged)")
    parser.add_argument("--criterion", default="bpcer20", help=_CRITERION_HELP)
    parser.add_argument("--threshold-rule", choices=_RULES, default=_DEFAULT_RULE,
                        help=_RULE_HELP + "; scores outside [0, 1] need gap or edge")
    parser.add_argument("--out", default=None, help="folder for metrics.json and report.md/.html (+ plots)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--json", action="store_true", help="print the full metrics JSON instead of the summary")


def metrics_main(args: argparse.Namespace) -> int:
    from edgepad.config import json_default
    from edgepad.evaluation import evaluate_files
    res = evaluate_files(args.dev, args.eval, args.out, criterion=args.criterion, plots=not args.no_plots,
                         threshold_rule=args.threshold_rule)
    if args.json:
        print(json.dumps(res, indent=2, default=json_default))
    else:
        print(_summary(res))
    return verdict(args, True, f"ACER {pct(res['eval']['acer'])} on eval",
                   [f"{args.out}/metrics.json, report.md, report.html" if args.out else None])


def _summary(res: dict) -> str:
    ev = res["eval"]
    lines = [f"τ from dev ({res['criterion']}, rule {res.get('threshold_rule', 'edge')}), applied to eval: "
             f"τ = {res['threshold']:.6g}"]
    for p, r in ev["apcer_per_species"].items():
        lines.append(f"  APCER[{p}] = {rate_text(r)}")
    lines.append(f"  APCER (worst: {ev['apcer_worst_species']}) = {pct(ev['apcer'])}")
    lines.append(f"  BPCER = {rate_text(ev['rates']['bpcer'])}")
    lines.append(f"  ACER = {pct(ev['acer'])}   HTER = {pct(ev['hter'])}")
    for name in ("bpcer10", "bpcer20", "bpcer100"):
        op = res["operating_points"].get(name)
        if op and "error" not in op:
            lines.append(f"  {name.upper()} = {pct(op['eval']['bpcer'])} (τ dev = {op['threshold']:.6g})")
    lines.append(f"  EER (dev) = {pct(res['eer_dev']['eer'])}   non-responses (eval) = "
                 f"{rate_text(ev['fta']['overall'])}")
    return "\n".join(lines)
