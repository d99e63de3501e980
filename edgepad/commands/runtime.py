"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_demo_arguments(parser) -> None:
    pass


def demo_main(args) -> int:
    raise NotImplementedError("edgepad demo is not implemented yet")


def add_run_arguments(parser) -> None:
    pass


def run_main(args) -> int:
    raise NotImplementedError("edgepad run is not implemented yet")

