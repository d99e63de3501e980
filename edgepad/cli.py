"""The ``edgepad`` command line.

Subcommands declare their arguments in light modules (numpy only) and import their implementation when run,
so ``edgepad --help`` and every ``edgepad <cmd> --help`` work on a bare install.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from edgepad import __version__
from edgepad.errors import EdgePadError, MissingDependencyError

#: name -> (one-line help, command module). The module exposes add_<name>_arguments and <name>_main.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("synthetic camera → whole pipeline → live decisions with fps and per-stage latency",
             "edgepad.commands.runtime"),
    "run": ("run the liveness runtime on a source and print decisions", "edgepad.commands.runtime"),
    "serve": ("local HTTP/JSON service with a decision stream and an installer live view",
              "edgepad.commands.serve"),
    "record": ("record a session (all streams, timestamps, rig) for replay://", "edgepad.commands.drivers"),
    "calibrate": ("calibrate cameras from board views (live, recording or folders) and write a rig file",
                  "edgepad.commands.calibration"),
    "train": ("train a fusion model from a config file", "edgepad.commands.models"),
    "evaluate": ("score a model on a protocol and write an ISO/IEC 30107-3 report", "edgepad.commands.evaluation"),
    "metrics": ("ISO/IEC 30107-3 report from bob-format score CSVs (dev + eval)", "edgepad.commands.evaluation"),
    "benchmark": ("train and evaluate the synthetic PAD benchmark matrix and write docs/RESULTS.md tables",
                  "edgepad.commands.benchmark"),
    "synth": ("generate the synthetic PAD benchmark (HDF5 + protocol CSVs)", "edgepad.commands.synth"),
    "export": ("export a trained model to ONNX (+ FP16 / INT8 Q/DQ) with its manifest", "edgepad.commands.engines"),
    "build": ("build a TensorRT engine from an ONNX model, cached and validated", "edgepad.commands.engines"),
    "bench": ("on-device benchmark: per-stage latency, fps, resources", "edgepad.commands.bench"),
    "doctor": ("versions, devices and which subcommands are usable here", "edgepad.commands.doctor"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepad", description="Multi-modal face presentation-attack detection for edge terminals.")
    parser.add_argument("--version", action="version", version=f"edgepad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, module_name) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        getattr(module, f"add_{name}_arguments")(p)
        p.set_defaults(_module=module_name, _name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 = usage or missing dependency, 1 = other failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(args._module)
    try:
        return int(getattr(module, f"{args._name}_main")(args) or 0)
    except MissingDependencyError as exc:
        print(f"edgepad {args._name}: {exc}", file=sys.stderr)
        return 2
    except EdgePadError as exc:
        print(f"edgepad {args._name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
