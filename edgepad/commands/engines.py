"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_export_arguments(parser) -> None:
    pass


def export_main(args) -> int:
    raise NotImplementedError("edgepad export is not implemented yet")


def add_build_arguments(parser) -> None:
    pass


def build_main(args) -> int:
    raise NotImplementedError("edgepad build is not implemented yet")
