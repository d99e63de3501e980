"""CLI commands (placeholder until implemented by its owner)."""
from __future__ import annotations


def add_synth_arguments(parser) -> None:
    pass


def synth_main(args) -> int:
    raise NotImplementedError("edgepad synth is not implemented yet")
