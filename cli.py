"""The ``reactive-entities`` command (work in progress: subcommands arrive with their issues)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command."""
    return argparse.ArgumentParser(
        prog="reactive-entities",
        description="Reactive entity state: transition log, masking, change events.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    build_parser().parse_args(argv)
    return 0
