"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_bench_arguments(parser) -> None:
    pass


def bench_main(args) -> int:
    raise NotImplementedError("edgepad bench is not implemented yet")
