"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_doctor_arguments(parser) -> None:
    pass


def doctor_main(args) -> int:
    raise NotImplementedError("edgepad doctor is not implemented yet")
