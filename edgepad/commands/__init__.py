"""CLI subcommands: each module declares arguments with light imports and imports its implementation when run.

Convention: a module exposes ``add_<name>_arguments(parser)`` and ``<name>_main(args) -> int`` per command.
"""
