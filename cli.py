"""The ``reactive-entities`` command: a thin dispatcher over the library.

* ``demo [--dsn DSN] [--schema NAME]`` — the scripted incident scenario (``demo.py``);
* ``migrate --dsn DSN [--schema NAME]`` — bring a PostgreSQL schema up to date;
* ``history --dsn DSN KIND ID [--field F] [--limit N] [--schema NAME]`` — an entity's
  transition rows, read straight from the log (no plugin code needed).

Exit status: 0 on success, 2 for a usage error (argparse), 1 for a library error
(a :class:`ReactiveEntitiesError`, reported as one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from reactive_entities import compose, demo
from reactive_entities.domain.errors import ReactiveEntitiesError
from reactive_entities.tables import transition_table

__all__ = ["build_parser", "main"]

DEFAULT_SCHEMA = "reactive_entities"


@runtime_checkable
class _VersionedStore(Protocol):
    """A store that can tell its schema version (the PostgreSQL store can)."""

    def schema_version(self) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command, with one sub-parser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="reactive-entities",
        description="Reactive entity state: transition log, masking, change events.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    run_demo = commands.add_parser(
        "demo",
        help="run a scripted incident scenario and print its events, log and answers",
        description="Run a scripted incident scenario: change events as they arrive, the "
        "transition history, and temporal answers. In memory unless --dsn is given.",
    )
    run_demo.add_argument(
        "--dsn", help="run on this PostgreSQL database instead of in memory (libpq DSN or URL)"
    )
    run_demo.add_argument(
        "--schema",
        metavar="NAME",
        help="schema to use with --dsn (default: a fresh re_demo_<random> schema)",
    )
    run_demo.set_defaults(run=_demo)

    migrate = commands.add_parser(
        "migrate",
        help="apply the PostgreSQL migrations and print the schema version",
        description="Apply pending migrations to a PostgreSQL schema (idempotent, safe to "
        "run from many processes at once) and print the resulting schema version.",
    )
    _add_database_arguments(migrate)
    migrate.set_defaults(run=_migrate)

    history = commands.add_parser(
        "history",
        help="print an entity's transition rows from a PostgreSQL log",
        description="Print the transition rows of one entity, oldest first, from the log "
        "in a PostgreSQL schema. Values are printed as recorded, that is, masked.",
    )
    _add_database_arguments(history)
    history.add_argument("kind", metavar="KIND", help="the entity's kind, e.g. incident")
    history.add_argument("entity_id", metavar="ID", help="the entity's id")
    history.add_argument("--field", metavar="F", help="only rows of this field")
    history.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int,
        help="only the N newest rows (still oldest first)",
    )
    history.set_defaults(run=_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ReactiveEntitiesError as error:
        print(f"reactive-entities {args.command}: {_one_line(error)}", file=sys.stderr)
        return 1


# -- subcommands ---------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    demo.run(sys.stdout, dsn=args.dsn, schema=args.schema)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    with compose.postgres(args.dsn, schema=args.schema, migrate=True) as engine:
        store = engine.store
        if isinstance(store, _VersionedStore):
            print(f"schema {args.schema} is at version {store.schema_version()}")
        else:
            print(f"schema {args.schema} is up to date")
    return 0


def _history(args: argparse.Namespace) -> int:
    with compose.postgres(args.dsn, schema=args.schema, migrate=False) as engine:
        rows = engine.store.transitions(args.kind, args.entity_id, args.field, None, args.limit)
    if not rows:
        where = f" field {args.field}" if args.field is not None else ""
        print(f"no transitions recorded for {args.kind}:{args.entity_id}{where}")
    else:
        print(transition_table(rows))
    return 0


# -- helpers -------------------------------------------------------------------------------


def _add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn", required=True, help="the PostgreSQL database (libpq DSN or postgresql:// URL)"
    )
    parser.add_argument(
        "--schema",
        metavar="NAME",
        default=DEFAULT_SCHEMA,
        help=f"the library's schema (default: {DEFAULT_SCHEMA})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _one_line(error: BaseException) -> str:
    """The error's message on one line (causes are not printed: they may be verbose)."""
    message = " ".join(str(error).split())
    return message or type(error).__name__
