"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_benchmark_arguments(parser) -> None:
    pass


def benchmark_main(args) -> int:
    raise NotImplementedError("edgepad benchmark is not implemented yet")
