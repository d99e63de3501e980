"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_evaluate_arguments(parser) -> None:
    pass


def evaluate_main(args) -> int:
    raise NotImplementedError("edgepad evaluate is not implemented yet")


def add_metrics_arguments(parser) -> None:
    pass


def metrics_main(args) -> int:
    raise NotImplementedError("edgepad metrics is not implemented yet")

