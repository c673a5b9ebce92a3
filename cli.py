"""The ``reactive-entities`` command: a thin dispatcher over the library.

* ``demo [--dsn DSN] [--schema NAME]`` — the scripted incident scenario (``demo.py``);
* ``migrate`` — bring a PostgreSQL schema up to date;
* ``history KIND ID [--field F] [--since T] [--limit N] [--json]`` — an entity's
  transition rows with each change's op, actor and run id, read straight from the log;
* ``tail [--kind K] [--json] [--from-start | --after POS] [--limit-seconds N]`` — follow
  the change feed live, one line (or JSON object) per change;
* ``consumers [--json]`` — named broadcast consumers and work-queue groups: cursor, lag,
  claims in flight, waiting deliveries, dead letters;
* ``dead-letters list GROUP [--json]`` / ``dead-letters retry GROUP``.

Every database command takes ``--dsn`` (default: libpq's ``PG*`` environment variables)
and ``--schema``, opens the database without migrating it (only ``migrate`` and ``demo``
create or change a schema) and reads the log directly: no plugin code is needed, and
what it prints is what the log holds, that is, masked. ``--version`` prints the version.

Exit status: 0 on success, 2 for a usage error (argparse), 1 for a library error
(a :class:`ReactiveEntitiesError`, reported as one line on stderr). A password in the
DSN (or ``PGPASSWORD``) is never printed: every message and log line the command
writes is redacted first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn, Protocol, runtime_checkable
from urllib.parse import unquote

from reactive_entities import compose, demo
from reactive_entities.domain.errors import InvalidArgumentError, ReactiveEntitiesError, StoreError
from reactive_entities.domain.events import ABSENT, ChangeEvent, TransitionRecord, iso_utc
from reactive_entities.domain.position import Position
from reactive_entities.durable import DEFAULT_POLL_INTERVAL
from reactive_entities.engine import Engine
from reactive_entities.ports.feed import ChangeFeed, ConsumerStatus, DeadLetter
from reactive_entities.tables import (
    change_line,
    consumer_table,
    dead_letter_table,
    history_table,
)

__all__ = ["build_parser", "main", "version_text"]

PROG = "reactive-entities"
DEFAULT_SCHEMA = "reactive_entities"
#: How many changes ``tail`` reads per query.
TAIL_BATCH = 500


@runtime_checkable
class _VersionedStore(Protocol):
    """A store that can tell its schema version (the PostgreSQL store can)."""

    def schema_version(self) -> int: ...


# -- the parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error never echoes a password (e.g. a DSN passed without
    ``--dsn`` shows up as an unrecognized argument)."""

    def error(self, message: str) -> NoReturn:
        super().error(_Redactor(None).redact(message))


class _VersionAction(argparse.Action):
    """``--version``: computed when asked for, not each time the parser is built."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help=kwargs.get("help"),
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command, with one sub-parser per subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Reactive entity state: transition log, masking, change events.",
        epilog="Database commands connect with --dsn, else with libpq's PG* environment "
        "variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, …).",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version and build, and exit"
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
        help="print an entity's transition rows, with op, actor and run id",
        description="Print the transition rows of one entity, oldest first, from the log "
        "in a PostgreSQL schema, each with its change's op, actor and run id. Values are "
        "printed as recorded, that is, masked.",
    )
    _add_database_arguments(history)
    history.add_argument("kind", metavar="KIND", help="the entity's kind, e.g. incident")
    history.add_argument("entity_id", metavar="ID", help="the entity's id")
    history.add_argument("--field", metavar="F", help="only rows of this field")
    history.add_argument(
        "--since",
        metavar="T",
        type=_aware_datetime,
        help="only rows at or after T, ISO 8601 with an offset (e.g. 2024-05-01T09:00:00Z)",
    )
    history.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int,
        help="only the N newest rows (still oldest first)",
    )
    _add_json_argument(history, "one JSON object per row")
    history.set_defaults(run=_history)

    tail = commands.add_parser(
        "tail",
        help="follow the change feed: print each change as it is committed",
        description="Print changes from the feed as they are committed, in feed order, "
        "until interrupted (Ctrl-C). By default only changes committed from now on; "
        "--from-start or --after POS print the recorded ones first. Values are masked "
        "as recorded.",
    )
    _add_database_arguments(tail)
    tail.add_argument("--kind", metavar="K", help="only changes of this kind")
    _add_json_argument(tail, "one JSON object per change (the event's to_dict())")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="print every recorded change first"
    )
    start.add_argument(
        "--after",
        metavar="POS",
        type=_position,
        help="start after this feed position (as printed, e.g. 812-40)",
    )
    tail.add_argument(
        "--limit-seconds",
        metavar="N",
        type=_positive_float,
        help="stop after N seconds (exit 0)",
    )
    tail.set_defaults(run=_tail)

    consumers = commands.add_parser(
        "consumers",
        help="list named consumers and work-queue groups with their lag",
        description="List every named broadcast consumer and work-queue group: mode, "
        "cursor, lag in changes and seconds, claims in flight, deliveries waiting, dead "
        "letters.",
    )
    _add_database_arguments(consumers)
    _add_json_argument(consumers, "one JSON object per consumer")
    consumers.set_defaults(run=_consumers)

    dead = commands.add_parser(
        "dead-letters",
        help="list or retry a work-queue group's dead letters",
        description="A dead letter is a delivery whose handler failed more than "
        "max_retries times; it is kept until retried.",
    )
    actions = dead.add_subparsers(title="actions", dest="action", required=True)
    listing = actions.add_parser(
        "list",
        help="list the group's dead letters, oldest first",
        description="List a work-queue group's dead letters, oldest first, with the last "
        "error (masked).",
    )
    _add_database_arguments(listing)
    listing.add_argument("group", metavar="GROUP", help="the work-queue group")
    _add_json_argument(listing, "one JSON object per dead letter")
    listing.set_defaults(run=_dead_letters_list, label="dead-letters list")
    retry = actions.add_parser(
        "retry",
        help="deliver the group's dead letters again",
        description="Make a work-queue group's dead letters pending again (attempts "
        "reset): the group's running members deliver them. Prints how many.",
    )
    _add_database_arguments(retry)
    retry.add_argument("group", metavar="GROUP", help="the work-queue group")
    retry.set_defaults(run=_dead_letters_retry, label="dead-letters retry")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    label: str = getattr(args, "label", args.command)
    redactor = _Redactor(getattr(args, "dsn", None))
    handler = _StderrLogHandler(label, redactor)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        return run(args)
    except ReactiveEntitiesError as error:
        print(f"{PROG} {label}: {redactor.redact(_one_line(error))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`… | head`): not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        _silence_stdout()
        return 0
    finally:
        root.removeHandler(handler)


def version_text() -> str:
    """``reactive-entities <version> (<build>)``: the installed distribution's version,
    and whether the compiled build is in use (``reactive_entities.compiled``)."""
    from importlib.metadata import PackageNotFoundError, version

    import reactive_entities

    try:
        number = version("reactive-entities")
    except PackageNotFoundError:
        number = "(version unknown: not installed)"
    compiled = bool(getattr(reactive_entities, "compiled", False))
    return f"{PROG} {number} ({'compiled' if compiled else 'pure Python'})"


# -- subcommands ---------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    demo.run(sys.stdout, dsn=args.dsn, schema=args.schema)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    with _database(args, migrate=True) as engine:
        store = engine.store
        if isinstance(store, _VersionedStore):
            print(f"schema {args.schema} is at version {store.schema_version()}")
        else:
            print(f"schema {args.schema} is up to date")
    return 0


def _history(args: argparse.Namespace) -> int:
    kind: str = args.kind
    entity_id: str = args.entity_id
    with _database(args) as engine:
        rows = engine.store.transitions(kind, entity_id, args.field, args.since, args.limit)
        changes: dict[str, ChangeEvent] = {}
        if rows:
            # Every row of a change carries the change's stamp: the changes from the
            # oldest row's stamp on cover them all.
            oldest = min(row.transitioned_at for row in rows)
            found = _feed(engine).entity_changes(kind, entity_id, since=oldest)
            changes = {change.change_id: change for change in found}
    if args.json:
        for row in rows:
            _print_json(_row_dict(row, changes.get(row.change_id)))
    elif not rows:
        where = f" field {args.field}" if args.field is not None else ""
        since = f" since {iso_utc(args.since)}" if args.since is not None else ""
        print(f"no transitions recorded for {kind}:{entity_id}{where}{since}")
    else:
        print(history_table(rows, changes))
    return 0


def _tail(args: argparse.Namespace) -> int:
    try:
        with _database(args) as engine:
            _follow(_feed(engine), args)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how tail is meant to end
    return 0


def _follow(feed: ChangeFeed, args: argparse.Namespace) -> None:
    """Print the feed's changes after the start position, then wait for more: woken by
    the feed's commit notifications, polling at least every second."""
    kind: str | None = args.kind
    deadline = None if args.limit_seconds is None else time.monotonic() + args.limit_seconds
    woken = threading.Event()
    stop_waking = feed.on_commit(woken.set)  # before the first read: no wake-up is lost
    try:
        cursor: Position | None
        if args.from_start:
            cursor, start = None, "from the start"
        elif args.after is not None:
            cursor, start = args.after, f"after {args.after}"
        else:
            cursor = feed.head()
            start = f"after {cursor} (new changes only)"
        only = f" (kind {kind})" if kind is not None else ""
        print(
            f"{PROG} tail: following schema {args.schema}{only} {start}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        render = _json_text if args.json else change_line
        while True:
            woken.clear()
            batch = feed.changes(cursor, kind=kind, limit=TAIL_BATCH)
            if batch:
                sys.stdout.write("".join(render(event) + "\n" for event in batch))
                sys.stdout.flush()
                cursor = batch[-1].position
            timeout = DEFAULT_POLL_INTERVAL
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    return
            if len(batch) < TAIL_BATCH:
                woken.wait(timeout)
    finally:
        stop_waking()


def _consumers(args: argparse.Namespace) -> int:
    with _database(args) as engine:
        statuses = engine.consumers()
    if args.json:
        for status in statuses:
            _print_json(_consumer_dict(status))
    elif not statuses:
        print(f"no named consumers or work-queue groups in schema {args.schema}")
    else:
        print(consumer_table(statuses))
    return 0


def _dead_letters_list(args: argparse.Namespace) -> int:
    group: str = args.group
    with _database(args) as engine:
        letters = engine.dead_letters(group)
        unknown = not letters and not _is_group(engine, group)
    if args.json:
        for letter in letters:
            _print_json(_dead_letter_dict(letter))
    elif not letters:
        print(f'no dead letters in work-queue group "{group}"{_unknown_note(args, unknown)}')
    else:
        print(dead_letter_table(letters))
    return 0


def _dead_letters_retry(args: argparse.Namespace) -> int:
    group: str = args.group
    with _database(args) as engine:
        count = engine.retry_dead_letters(group)
        unknown = count == 0 and not _is_group(engine, group)
    noun = "dead letter" if count == 1 else "dead letters"
    note = _unknown_note(args, unknown)
    print(f'requeued {count} {noun} of work-queue group "{group}"{note}')
    return 0


# -- the database --------------------------------------------------------------------------


@contextmanager
def _database(args: argparse.Namespace, *, migrate: bool = False) -> Iterator[Engine]:
    """The engine on ``--dsn`` (libpq's defaults when absent) and ``--schema``, closed on
    exit. Never migrates unless asked: a schema at another version is an error that says
    how to fix it. A driver error that escapes the library becomes a ``StoreError``."""
    import psycopg  # here: the in-memory demo does not need it

    try:
        with compose.postgres(
            args.dsn or None, schema=args.schema, migrate=migrate, pool_size=2
        ) as engine:
            yield engine
    except psycopg.Error as error:
        raise StoreError(f"database error: {error}") from error


def _feed(engine: Engine) -> ChangeFeed:
    if engine.feed is None:  # pragma: no cover - the PostgreSQL engine always has one
        raise InvalidArgumentError("this store has no change feed")
    return engine.feed


def _is_group(engine: Engine, group: str) -> bool:
    return any(s.mode == "work-queue" and s.name == group for s in engine.consumers())


def _unknown_note(args: argparse.Namespace, unknown: bool) -> str:
    return f" (no such group in schema {args.schema})" if unknown else ""


# -- JSON ----------------------------------------------------------------------------------


def _print_json(value: dict[str, Any]) -> None:
    print(_dumps(value))


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_text(event: ChangeEvent) -> str:
    return _dumps(event.to_dict())


def _row_dict(row: TransitionRecord, change: ChangeEvent | None) -> dict[str, Any]:
    """A transition row with its change's op, actor, run id and feed position;
    ``from_value`` is left out when the entity did not exist before (a create)."""
    out: dict[str, Any] = {"kind": row.kind, "entity_id": row.entity_id, "field": row.field}
    if row.from_value is not ABSENT:
        out["from_value"] = row.from_value
    out.update(
        to_value=row.to_value,
        masked=row.masked,
        transitioned_at=iso_utc(row.transitioned_at),
        change_id=row.change_id,
        op=None if change is None else change.op,
        actor=None if change is None else change.actor.to_dict(),
        run_id=None if change is None else change.run_id,
        position=None if change is None or change.position is None else str(change.position),
    )
    return out


def _consumer_dict(status: ConsumerStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "mode": status.mode,
        "position": None if status.position is None else str(status.position),
        "lag_changes": status.lag_changes,
        "lag_seconds": status.lag_seconds,
        "in_flight": status.in_flight,
        "waiting": status.waiting,
        "dead_letters": status.dead_letters,
    }


def _dead_letter_dict(letter: DeadLetter) -> dict[str, Any]:
    return {
        "group": letter.group,
        "change_id": letter.change_id,
        "position": str(letter.position),
        "kind": letter.kind,
        "entity_id": letter.entity_id,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "failed_at": iso_utc(letter.failed_at),
    }


# -- keeping passwords out of the output ---------------------------------------------------

# ``scheme://user:PASSWORD@`` and ``password=PASSWORD`` (key/value DSNs, URL queries).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)([^\s@]+)(@)")
_KEY_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)", re.IGNORECASE)
_MASK = "****"


class _Redactor:
    """Removes the passwords of a DSN, and of ``PGPASSWORD``, from text; also anything
    shaped like a password in a URL or a ``password=`` setting. The DSN is looked at
    without trusting it to parse: libpq quotes the offending part of a malformed DSN
    in its error, and that part may be the password. (The store scrubs its connection
    errors too; this guards everything the command itself writes, log lines included.)"""

    def __init__(self, dsn: str | None) -> None:
        secrets: set[str] = set()
        env_password = os.environ.get("PGPASSWORD")
        if env_password:
            secrets.add(env_password)
        if dsn:
            found = _dsn_passwords(dsn)
            if found:
                secrets.update(found)
                secrets.add(dsn)
        self._secrets = sorted(secrets, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` without any of the passwords."""
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = _URL_PASSWORD.sub(lambda m: m[1] + _MASK + m[3], text)
        return _KEY_PASSWORD.sub(lambda m: m[1] + _MASK, text)


def _dsn_passwords(dsn: str) -> set[str]:
    """Every form in which ``dsn``'s password could be quoted: as written, decoded."""
    found: set[str] = set()
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # malformed: the patterns below still find it
        password = None
    if password:
        found.add(str(password))
    for match in _URL_PASSWORD.finditer(dsn):
        found.update((match[2], unquote(match[2])))
    for match in _KEY_PASSWORD.finditer(dsn):
        value = match[2]
        found.add(value)
        if value.startswith("'"):
            inner = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
            found.update((inner, re.sub(r"\\(.)", r"\1", inner)))
        found.add(unquote(value))
    return {value for value in found if value}


class _StderrLogHandler(logging.Handler):
    """Library warnings (a lost LISTEN connection, a pool that cannot reconnect) as
    ``reactive-entities CMD: warning: …`` on stderr, redacted."""

    def __init__(self, label: str, redactor: _Redactor) -> None:
        super().__init__(logging.WARNING)
        self._label = label
        self._redactor = redactor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._redactor.redact(self.format(record))
            level = record.levelname.lower()
            print(f"{PROG} {self._label}: {level}: {text}", file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


# -- arguments -----------------------------------------------------------------------------


def _add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="the PostgreSQL database (libpq DSN or postgresql:// URL; default: libpq's "
        "PG* environment variables)",
    )
    parser.add_argument(
        "--schema",
        metavar="NAME",
        default=DEFAULT_SCHEMA,
        help=f"the library's schema (default: {DEFAULT_SCHEMA})",
    )


def _add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print JSON lines: {what}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (got {text})")
    return value


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date and time: {text!r} (e.g. 2024-05-01T09:00:00Z)"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"needs a UTC offset: {text!r} (e.g. 2024-05-01T09:00:00Z or …+02:00)"
        )
    return value


def _position(text: str) -> Position:
    try:
        return Position.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _one_line(error: BaseException) -> str:
    """The error's message on one line (causes are not printed: they may be verbose)."""
    message = " ".join(str(error).split())
    return message or type(error).__name__


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test's capture)
        pass
