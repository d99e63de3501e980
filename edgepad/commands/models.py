"""``edgepad train CONFIG.yaml [--resume] [--out DIR] [--set key=value] [--export PATH] [--throughput N]``.

Imports without torch (``edgepad.training`` loads torch when a run starts).
Multi-GPU / multi-node: ``torchrun --nproc_per_node N -m edgepad train CONFIG.yaml``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from edgepad import training
from edgepad._optional import lazy
from edgepad.commands.common import nonneg_int, verdict
from edgepad.errors import ConfigError

yaml = lazy("yaml")


def add_train_arguments(parser) -> None:
    parser.add_argument("config", help="training config (YAML/JSON), e.g. configs/default_edge.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument("--out", help="run folder (overrides `out` in the config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set epochs=2 --set data.root=bench (YAML value)")
    parser.add_argument("--export", metavar="PATH.onnx",
                        help="after training, export best.pt to ONNX with dev thresholds (+ per-subset points)")
    parser.add_argument("--export-only", action="store_true",
                        help="skip training; export the existing <out>/best.pt to --export")
    parser.add_argument("--throughput", type=nonneg_int, metavar="STEPS", default=0,
                        help="measure samples/s (data pipeline vs forward+backward vs both) for STEPS batches "
                             "and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _overrides(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", key="--set")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except Exception:  # noqa: BLE001 - plain string
            out[k.strip()] = v
    return out


def _progress_printer(quiet: bool):
    def show(p) -> None:
        if quiet:
            return
        if p.get("done"):
            sel = p.get("select", "")
            print(f"\repoch {p['epoch'] + 1}/{p['epochs']}: train loss {p['train_loss']:.4f}  dev loss "
                  f"{p.get('dev_loss', float('nan')):.4f}  dev {sel} {p.get('select_value', float('nan')):.4f}  "
                  f"best epoch {p.get('best_epoch', -1) + 1}  {p['samples_per_s']:.1f} samples/s", file=sys.stderr)
            return
        width = 24
        frac = p["step"] / max(p["steps"], 1)
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        print(f"\repoch {p['epoch'] + 1}/{p['epochs']} [{bar}] {p['step']}/{p['steps']} loss {p['loss']:.4f} "
              f"{p['samples_per_s']:.1f} samples/s", end="", file=sys.stderr, flush=True)
    return show


def train_main(args) -> int:
    overrides = _overrides(args.set)
    if args.out:
        overrides["out"] = str(Path(args.out).resolve())
    cfg = training.load_train_config(args.config, overrides)
    if args.throughput:
        res = training.throughput(cfg, steps=args.throughput)
        print(json.dumps(res, indent=2))
        return verdict(args, True, f"throughput measured over {args.throughput} steps", stream=sys.stderr)
    if not args.export_only:
        summary = training.train(cfg, resume=args.resume, progress=_progress_printer(args.quiet))
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(summary, default=str))
    if args.export or args.export_only:
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
        if not args.export:
            raise ConfigError("--export-only needs --export PATH.onnx", key="--export")
        best = Path(cfg.out) / "best.pt"
        manifest = training.export_checkpoint(best, args.export, cfg)
        print(json.dumps({"exported": args.export, "threshold": manifest.threshold,
                          "criterion": manifest.threshold_criterion,
                          "operating_points": manifest.operating_points}, default=str))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    return verdict(args, True, "trained" if not args.export_only else "exported",
                   [cfg.out, args.export], stream=sys.stderr)
