"""Console logging for one CLI run: one stderr handler whose repeated messages are shown once, then counted.

:func:`run_logging` replaces ``logging.basicConfig`` in :func:`edgepad.cli.main`. Python warnings are routed
through the same handler (``logging.captureWarnings``) for the run, so a warning that fires every epoch prints
once and a closing ``(repeated N times)`` line says how often it came back. Stdlib only.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, TextIO

FORMAT = "%(levelname)s %(name)s: %(message)s"
_active: list["DedupHandler"] = []


class DedupHandler(logging.StreamHandler):
    """A stream handler that emits each distinct (level, logger, message) once and counts the repeats."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.setFormatter(logging.Formatter(FORMAT))
        self.repeats: dict[tuple[int, str, str], int] = {}
        self._first: dict[tuple[int, str, str], logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            key = (record.levelno, record.name, record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report
            return super().emit(record)
        if key in self._first:
            self.repeats[key] = self.repeats.get(key, 0) + 1
            return
        self._first[key] = record
        super().emit(record)

    def flush_repeats(self) -> None:
        """Emit one ``<message> (repeated N times)`` line per message that came more than once."""
        for key, n in self.repeats.items():
            first = (key[2].splitlines() or [""])[0]     # a Python warning also carries its source line
            msg = f"{first} (repeated {n} time{'s' if n != 1 else ''})"
            line = logging.makeLogRecord({**self._first[key].__dict__, "msg": msg, "args": None, "exc_info": None,
                                          "exc_text": None, "stack_info": None})
            super().emit(line)
        self.repeats.clear()


@contextlib.contextmanager
def run_logging(level: int = logging.WARNING, stream: TextIO | None = None) -> Iterator[DedupHandler]:
    """Install a :class:`DedupHandler` on the root logger (and capture Python warnings) for one run."""
    root = logging.getLogger()
    handler = DedupHandler(stream)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    _active.append(handler)
    try:
        yield handler
    finally:
        _active.remove(handler)
        handler.flush_repeats()
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


def flush_repeats() -> None:
    """Print the pending ``(repeated N times)`` lines of the current run now (the verdict line comes last)."""
    for handler in _active:
        handler.flush_repeats()
