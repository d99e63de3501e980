"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_calibrate_arguments(parser) -> None:
    pass


def calibrate_main(args) -> int:
    raise NotImplementedError("edgepad calibrate is not implemented yet")
