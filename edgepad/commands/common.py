"""What every ``edgepad`` command shares: checked argparse number types and the closing verdict line.

The number types refuse NaN, infinities and out-of-range values while the command line is parsed, so a typo
never becomes an endless loop or a runaway recording (the parser turns the refusal into a typed
:class:`~edgepad.errors.UsageError`). Conventions and exit codes: docs/CLI.md.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, TextIO

from edgepad._console import flush_repeats


def _number(kind: type, low: float, inclusive: bool) -> Callable[[str], float]:
    bound = f">= {low:g}" if inclusive else f"> {low:g}"
    what = "an integer" if kind is int else "a finite number"

    def parse(text: str):
        try:
            value = kind(text) if kind is float else int(str(text).strip(), 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {bound}"
    return parse


#: finite float > 0 (durations, rates, sizes)
positive_float = _number(float, 0.0, inclusive=False)
#: finite float >= 0 (durations where 0 means "off" or "until done")
nonneg_float = _number(float, 0.0, inclusive=True)
#: int >= 1 (counts)
positive_int = _number(int, 1, inclusive=True)
#: int >= 0 (counts where 0 means "off" or "no limit")
nonneg_int = _number(int, 0, inclusive=True)


def fraction(text: str) -> float:
    """A finite float in [0, 1]."""
    value = nonneg_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite float (e.g. ``-1`` as a documented sentinel)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def command_name(args: argparse.Namespace) -> str:
    """``edgepad <cmd>`` as typed (alias included), with the calibrate sub-command when there is one."""
    name = getattr(args, "command", None) or getattr(args, "_name", "")
    sub = getattr(args, "calib_command", None)
    return f"edgepad {name}" + (f" {sub}" if sub else "")


def verdict(args: argparse.Namespace, passed: bool, why: str, written: Iterable[Path | str | None] = (),
            stream: TextIO | None = None) -> int:
    """Print the command's closing line ``edgepad <cmd>: PASS|FAIL: why; wrote ...`` and return its exit code.

    The line goes to ``stream``, else to stdout, or to stderr when ``--json`` keeps stdout for JSON only.
    """
    files = [str(p) for p in written if p]
    line = f"{command_name(args)}: {'PASS' if passed else 'FAIL'}: {why}"
    if files:
        line += "; wrote " + ", ".join(files)
    stream = stream or (sys.stderr if getattr(args, "json", False) else sys.stdout)
    flush_repeats()     # the counts of repeated warnings come before the verdict, which stays the last line
    print(line, file=stream, flush=True)
    return 0 if passed else 1
