"""The ``edgepad`` command line.

Subcommands declare their arguments in light modules (numpy only) and import their implementation when run,
so ``edgepad --help`` and every ``edgepad <cmd> --help`` work on a bare install. :func:`main` is the one place
where a failure becomes a one-line ``edgepad <cmd>: error: ...`` message and an exit code (:data:`EXIT_CODES`,
docs/CLI.md); ``--debug`` or ``EDGEPAD_DEBUG=1`` adds the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import Sequence

from edgepad import __version__
from edgepad._console import run_logging
from edgepad.errors import EdgePadError, MissingDependencyError, UsageError

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
    "benchmark": ("accuracy matrix: train and evaluate the synthetic PAD benchmark, write docs/RESULTS.md tables",
                  "edgepad.commands.benchmark"),
    "synth": ("generate the synthetic PAD benchmark (HDF5 + protocol CSVs)", "edgepad.commands.synth"),
    "export": ("export a trained model to ONNX (+ FP16 / INT8 Q/DQ) with its manifest", "edgepad.commands.engines"),
    "build": ("build a TensorRT engine from an ONNX model, cached and validated", "edgepad.commands.engines"),
    "inspect": ("show a model's manifest, inputs, operating points, provenance and integrity",
                "edgepad.commands.inspect"),
    "bench": ("device speed: per-stage latency, fps, resources on this machine", "edgepad.commands.bench"),
    "doctor": ("versions, devices and which subcommands are usable here", "edgepad.commands.doctor"),
}

#: command -> the clearer name shown in --help; the command's own name stays accepted as an alias
DISPLAY_NAMES: dict[str, str] = {"bench": "speed", "benchmark": "accuracy"}

#: exit code -> what it means (docs/CLI.md). Every failure is one line on stderr; ``--debug`` adds the traceback.
EXIT_CODES: dict[int, str] = {
    0: "PASS: the command did what was asked",
    1: "FAIL: a FAIL verdict (gate failed, wrong verdicts) or a typed edgepad error (EdgePadError: bad config, "
       "data, model, source, calibration...)",
    2: "usage: a malformed command line (UsageError: unknown option, NaN or negative value...) or a missing "
       "optional package (MissingDependencyError)",
    3: "file system: a file or folder is missing, unreadable, unwritable or of the wrong kind (OSError)",
    4: "encoding: a text file (YAML, CSV, JSON) is not UTF-8",
    5: "ONNX Runtime refused the model or its inputs",
    70: "internal error: a bug in edgepad (please report it with the --debug traceback)",
    130: "interrupted (Ctrl-C)",
}


def exit_code(exc: BaseException) -> int:
    """The stable exit code of a failure (:data:`EXIT_CODES`)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, (UsageError, MissingDependencyError)):
        return 2
    if isinstance(exc, EdgePadError):
        return 1
    if isinstance(exc, UnicodeError):
        return 4
    if isinstance(exc, OSError):
        return 3
    if _is_onnxruntime_error(exc):
        return 5
    return 70


def _is_onnxruntime_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "onnxruntime"


def error_message(exc: BaseException) -> str:
    """One line describing ``exc`` for a user (no traceback)."""
    if isinstance(exc, MissingDependencyError):
        text = str(exc)
    elif isinstance(exc, EdgePadError):
        text = f"error: {exc}"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"error: {getattr(exc, 'filename', None) or 'a file'} is not UTF-8 text ({exc.reason} at byte " \
               f"{exc.start})"
    elif isinstance(exc, OSError):
        name = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        text = f"error: {name + ': ' if name else ''}{exc.strerror or exc}"
    elif _is_onnxruntime_error(exc):
        text = f"error: ONNX Runtime: {type(exc).__name__}: {exc}"
    else:
        text = (f"internal error: {type(exc).__name__}: {exc} (a bug in edgepad; rerun with --debug and report "
                "the traceback)")
    return " ".join(text.split())  # one line


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` for options whose help does not already state a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or default == [] or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class EdgePadArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors raise :class:`~edgepad.errors.UsageError` (one line, exit 2) instead of
    printing the usage and exiting; sub-parsers inherit it, and defaults show in every ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102 - argparse hook
        exc = UsageError(f"{message} (see {self.prog} --help)")
        exc.prog = self.prog
        raise exc


def build_parser() -> argparse.ArgumentParser:
    parser = EdgePadArgumentParser(
        prog="edgepad", description="Multi-modal face presentation-attack detection for edge terminals.",
        epilog="exit codes: " + "; ".join(f"{k} {v.split(':')[0]}" for k, v in EXIT_CODES.items()))
    parser.add_argument("--version", action="version", version=f"edgepad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of a failure (also EDGEPAD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, module_name) in COMMANDS.items():
        shown = DISPLAY_NAMES.get(name, name)
        aliases = [name] if shown != name else []
        p = sub.add_parser(shown, aliases=aliases, help=help_text,
                           description=help_text)
        module = importlib.import_module(module_name)
        getattr(module, f"add_{name}_arguments")(p)
        p.set_defaults(_module=module_name, _name=name)
    return parser


def _debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("EDGEPAD_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (:data:`EXIT_CODES`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "edgepad"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 0
        prog = f"edgepad {args.command}"
        module = importlib.import_module(args._module)
        # one stderr handler for the run: a repeated log line or Python warning shows once, then its count
        with run_logging(logging.WARNING - 10 * min(args.verbose, 2)):
            return int(getattr(module, f"{args._name}_main")(args) or 0)
    except SystemExit:
        raise  # --help / --version
    except BaseException as exc:  # noqa: BLE001 - the one top-level handler: one line + a stable exit code
        if isinstance(exc, UsageError):
            prog = getattr(exc, "prog", prog)
        if _debug(argv) and not isinstance(exc, KeyboardInterrupt):
            traceback.print_exc()
        if not isinstance(exc, KeyboardInterrupt):
            print(f"{prog}: {error_message(exc)}", file=sys.stderr, flush=True)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
