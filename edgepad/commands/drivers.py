"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_record_arguments(parser) -> None:
    pass


def record_main(args) -> int:
    raise NotImplementedError("edgepad record is not implemented yet")
