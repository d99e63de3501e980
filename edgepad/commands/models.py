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
from edgepad._optional import available, lazy
from edgepad.commands.common import nonneg_int, verdict
from edgepad.errors import ConfigError

tqdm = lazy("tqdm")
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
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument("--json", action="store_true",
                        help="print the run summary as JSON on stdout instead of the readable summary")


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


def _progress_printer(quiet: bool, stream=None):
    """One plain line per finished epoch on stderr (1-based numbers); on a terminal also a tqdm bar over the
    epoch's steps (never in logs or pipes: no ``\\r`` there)."""
    out = stream or sys.stderr
    use_bar = not quiet and getattr(out, "isatty", lambda: False)() and available("tqdm")
    state: dict = {"bar": None}

    def show(p) -> None:
        if quiet:
            return
        bar = state["bar"]
        if p.get("done"):
            if bar is not None:
                bar.close()
                state["bar"] = None
            print(epoch_line(p), file=out, flush=True)
            return
        if use_bar:
            if bar is None:
                bar = state["bar"] = tqdm.tqdm(total=p["steps"], desc=f"epoch {p['epoch_1based']}/{p['epochs']}",
                                               file=out, leave=False, unit="step", dynamic_ncols=True)
            bar.n = p["step"]
            bar.set_postfix(loss=f"{p['loss']:.4f}", refresh=False)
            bar.refresh()
    return show


def epoch_line(rec) -> str:
    """``epoch N/M: ...`` for one epoch record; N is the record's ``epoch_1based``."""
    sel = rec.get("select", "")
    best = rec.get("best_epoch_1based")
    return (f"epoch {rec['epoch_1based']}/{rec['epochs']}: train loss {rec['train_loss']:.4f}  dev loss "
            f"{rec.get('dev_loss', float('nan')):.4f}  dev {sel} {rec.get('select_value', float('nan')):.4f}  "
            f"best epoch {best if best is not None else '-'}  {rec['samples_per_s']:.1f} samples/s  "
            f"{rec.get('time_s', float('nan')):.1f} s")


def summary_lines(summary) -> list[str]:
    """The readable end of a training run (1-based epoch numbers, as in the per-epoch lines)."""
    best = summary.get("best") or {}
    lines = [f"trained {summary['epochs_run']} epoch(s)"
             + (f" ({summary['start_epoch_1based']}..{summary['last_epoch_1based']} of {summary['epochs']})"
                if summary.get("epochs_run") else f" (already at {summary.get('epochs')} epochs)")
             + f", world size {summary.get('world_size', 1)}"
             + (f", {summary['samples_per_s']:.1f} samples/s" if "samples_per_s" in summary else "")]
    if best.get("epoch_1based") is not None:
        lines.append(f"best epoch {best['epoch_1based']}: dev {best.get('select')} "
                     f"{best.get('value', float('nan')):.4f}  dev loss {best.get('dev_loss', float('nan')):.4f}")
    lines.append(f"run folder {summary['out']}" + (f"  curves {summary['curves']}" if summary.get("curves") else ""))
    return lines


def train_main(args) -> int:
    overrides = _overrides(args.set)
    if args.out:
        overrides["out"] = str(Path(args.out).resolve())
    cfg = training.load_train_config(args.config, overrides)
    if args.throughput:
        res = training.throughput(cfg, steps=args.throughput)
        print(json.dumps(res, indent=2))
        return verdict(args, True, f"throughput measured over {args.throughput} steps", stream=sys.stderr)
    why = "exported"
    if not args.export_only:
        summary = training.train(cfg, resume=args.resume, progress=_progress_printer(args.quiet))
        if int(os.environ.get("RANK", "0")) == 0:
            if args.json:
                print(json.dumps(summary, default=str))
            else:
                print("\n".join(summary_lines(summary)))
        best = summary.get("best") or {}
        why = f"trained {summary['epochs_run']} epoch(s)" + (
            f", best epoch {best['epoch_1based']} (dev {best.get('select')} {best.get('value', float('nan')):.4f})"
            if best.get("epoch_1based") is not None else "")
    if args.export or args.export_only:
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
        if not args.export:
            raise ConfigError("--export-only needs --export PATH.onnx", key="--export")
        manifest = training.export_checkpoint(Path(cfg.out) / "best.pt", args.export, cfg)
        print(json.dumps({"exported": args.export, "threshold": manifest.threshold,
                          "criterion": manifest.threshold_criterion,
                          "operating_points": manifest.operating_points}, default=str))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    return verdict(args, True, why + (" and exported" if args.export and not args.export_only else ""),
                   [cfg.out, args.export], stream=sys.stderr)
