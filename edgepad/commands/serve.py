"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_serve_arguments(parser) -> None:
    pass


def serve_main(args) -> int:
    raise NotImplementedError("edgepad serve is not implemented yet")
