"""Command line: ``bot simulate`` and the other subcommands."""
