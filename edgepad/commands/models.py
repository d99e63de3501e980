"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_train_arguments(parser) -> None:
    pass


def train_main(args) -> int:
    raise NotImplementedError("edgepad train is not implemented yet")
