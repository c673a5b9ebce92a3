"""SPEC §11 — engines sharing one PostgreSQL database: the same answers everywhere, and
concurrent writers of one entity (threads and OS processes) leave a consistent log."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Literal

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from reactive_entities import ABSENT, Engine, EntityHandle, TransitionRecord, compose
from reactive_entities.testing.plugin import DictStorage

pytestmark = pytest.mark.postgres

FIELDS = ("n", "writer")


@attrs.frozen
class Counter:
    """A counter some plugin increments; ``writer`` names who did it last."""

    n: int
    writer: str


@attrs.frozen
class Ticket:
    """A ticket a plugin keeps in its own table."""

    status: Literal["open", "closed"]
    severity: Literal["low", "high"]


@attrs.frozen
class Note:
    """A note kept in a per-engine dict: the negative control of SPEC §11."""

    text: str


class CounterTable:
    """The plugin's durable storage for counters: a table in the test database."""

    def __init__(self, dsn: str, schema: str, *, delay: float = 0.0) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.table = sql.Identifier(schema, "counters")
        self.delay = delay

    def create_table(self) -> None:
        """Create the table if needed."""
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, n integer NOT NULL,"
                " writer text NOT NULL)"
            ).format(self.table)
        )

    def read(self, ids: Sequence[str]) -> dict[str, Counter]:
        """The batched accessor (``read``)."""
        query = sql.SQL("SELECT id, n, writer FROM {} WHERE id = ANY(%s)").format(self.table)
        rows = self.conn.execute(query, [list(ids)]).fetchall()
        return {row[0]: Counter(row[1], row[2]) for row in rows}

    def insert(self, entity_id: str) -> Callable[[], Counter]:
        """An ``apply`` creating the counter at 0."""

        def apply() -> Counter:
            query = sql.SQL("INSERT INTO {} VALUES (%s, 0, 'init') RETURNING n, writer")
            row = self.conn.execute(query.format(self.table), [entity_id]).fetchone()
            assert row is not None
            return Counter(row[0], row[1])

        return apply

    def increment(self, entity_id: str, writer: str) -> Callable[[], Counter]:
        """An ``apply`` adding one (atomically in SQL), after ``delay`` seconds."""

        def apply() -> Counter:
            if self.delay:
                time.sleep(self.delay)  # widens the read → write window
            query = sql.SQL(
                "UPDATE {} SET n = n + 1, writer = %s WHERE id = %s RETURNING n, writer"
            ).format(self.table)
            row = self.conn.execute(query, [writer, entity_id]).fetchone()
            assert row is not None
            return Counter(row[0], row[1])

        return apply

    def close(self) -> None:
        """Close the plugin's connection."""
        self.conn.close()


class TicketTable:
    """The plugin's durable storage for tickets (documents in a jsonb column)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.table = sql.Identifier(schema, "tickets")
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, doc jsonb NOT NULL)"
            ).format(self.table)
        )

    def read(self, ids: Sequence[str]) -> dict[str, Any]:
        """The batched accessor: id → the stored mapping (the engine structures it)."""
        query = sql.SQL("SELECT id, doc FROM {} WHERE id = ANY(%s)").format(self.table)
        return {row[0]: row[1] for row in self.conn.execute(query, [list(ids)])}

    def save(self, entity_id: str, ticket: Ticket) -> Callable[[], Ticket]:
        """An ``apply`` upserting the ticket."""

        def apply() -> Ticket:
            query = sql.SQL(
                "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc"
            ).format(self.table)
            self.conn.execute(query, [entity_id, Jsonb(attrs.asdict(ticket))])
            return ticket

        return apply

    def close(self) -> None:
        """Close the plugin's connection."""
        self.conn.close()


# -- the same answers from every engine ---------------------------------------------------


def test_engines_on_one_database_give_the_same_answers(pg_dsn: str, pg_schema: str) -> None:
    """Durable kinds agree across engines; a kind in one engine's memory is invisible."""
    engines = [compose.postgres(pg_dsn, schema=pg_schema) for _ in range(2)]
    tables = [TicketTable(pg_dsn, pg_schema) for _ in range(2)]
    notes = [DictStorage[Note](), DictStorage[Note]()]
    try:
        a, b = (
            e.define_entity("ticket", Ticket, read=t.read)
            for e, t in zip(engines, tables, strict=True)
        )
        a_notes, b_notes = (
            e.define_entity("note", Note, read=n.read) for e, n in zip(engines, notes, strict=True)
        )

        a.mutate("t-1", tables[0].save("t-1", Ticket("open", "low")))
        assert b.get("t-1") == Ticket("open", "low")
        assert b.get_many(["t-1", "t-2"]) == {"t-1": Ticket("open", "low")}
        b.mutate("t-1", tables[1].save("t-1", Ticket("closed", "low")))
        a.mutate("t-1", tables[0].save("t-1", Ticket("closed", "high")))
        assert a.get("t-1") == b.get("t-1") == Ticket("closed", "high")

        assert a.history("t-1") == b.history("t-1")
        assert len(a.history("t-1")) == 2 + 1 + 1
        for field in ("status", "severity"):
            since = a.in_state_since("t-1", field)
            assert since is not None
            assert since == b.in_state_since("t-1", field)
            window = timedelta(minutes=5)
            assert a.transition_count("t-1", field, window=window) == b.transition_count(
                "t-1", field, window=window
            )
            assert a.value_at("t-1", field, since) == b.value_at("t-1", field, since)
        assert a.transition_count("t-1", "status", window=timedelta(minutes=5)) == 2

        a_notes.mutate("n-1", notes[0].put("n-1", Note("kept in engine A's memory")))
        assert a_notes.get("n-1") == Note("kept in engine A's memory")
        assert b_notes.get("n-1") is None  # the negative control: not shared state
        assert b_notes.get_many(["n-1"]) == {}
        assert b_notes.in_state_since("n-1", "text") is None
        assert b_notes.history("n-1") == a_notes.history("n-1")  # the log itself is shared
    finally:
        for engine in engines:
            engine.close()
        for table in tables:
            table.close()


# -- many writers, one entity -------------------------------------------------------------

THREADS_PER_ENGINE = 4
PER_THREAD = 20
PROCESSES = 2
PER_PROCESS = 20
TOTAL = 2 * THREADS_PER_ENGINE * PER_THREAD + PROCESSES * PER_PROCESS  # 200

_RUN_WORKER = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('postgres_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.worker(*sys.argv[2:])\n"
)


def worker(dsn: str, schema: str, entity_id: str, count: str, locking: str, delay: str) -> None:
    """Body of a writer process: report ready, wait for "go", increment ``count`` times."""
    table = CounterTable(dsn, schema, delay=float(delay))
    tag = f"process-{entity_id}-{time.monotonic_ns()}"
    with compose.postgres(dsn, schema=schema, locking=locking == "1", pool_size=2) as engine:
        handle = engine.define_entity("counter", Counter, read=table.read)
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(int(count)):
            handle.mutate(entity_id, table.increment(entity_id, tag))
    table.close()


def _start_processes(
    dsn: str, schema: str, entity_id: str, locking: bool, delay: float
) -> list[subprocess.Popen[str]]:
    assert importlib.util.find_spec("reactive_entities") is not None
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-c",
                _RUN_WORKER,
                __file__,
                dsn,
                schema,
                entity_id,
                str(PER_PROCESS),
                "1" if locking else "0",
                str(delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            process.kill()
            _, err = process.communicate(timeout=30)
            pytest.fail(f"writer process did not start: {line!r} {err}")
    return processes


@contextmanager
def _hammered(
    dsn: str, schema: str, entity_id: str, *, locking: bool, delay: float
) -> Iterator[EntityHandle[Counter]]:
    """Create the counter, then increment it TOTAL times at once from 8 threads over two
    engines and from two processes; yields a handle (of another engine) to inspect it."""
    with compose.postgres(dsn, schema=schema) as inspector:
        table = CounterTable(dsn, schema)
        try:
            table.create_table()
            handle = inspector.define_entity("counter", Counter, read=table.read)
            handle.mutate(entity_id, table.insert(entity_id))
            _hammer(dsn, schema, entity_id, locking=locking, delay=delay)
            yield handle
        finally:
            table.close()


def _hammer(dsn: str, schema: str, entity_id: str, *, locking: bool, delay: float) -> None:
    processes = _start_processes(dsn, schema, entity_id, locking, delay)
    tables = [CounterTable(dsn, schema, delay=delay) for _ in range(2)]
    engines = [compose.postgres(dsn, schema=schema, locking=locking) for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2 * THREADS_PER_ENGINE + 1)

    def write(engine: Engine, table: CounterTable, tag: str) -> None:
        try:
            handle = engine.handle("counter")
            start.wait(timeout=30)
            for _ in range(PER_THREAD):
                handle.mutate(entity_id, table.increment(entity_id, tag))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    try:
        for engine, table in zip(engines, tables, strict=True):
            engine.define_entity("counter", Counter, read=table.read)
        threads = [
            threading.Thread(target=write, args=(engine, table, f"thread-{e}-{t}"))
            for e, (engine, table) in enumerate(zip(engines, tables, strict=True))
            for t in range(THREADS_PER_ENGINE)
        ]
        for thread in threads:
            thread.start()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        start.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=120)
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        assert not errors, errors
    finally:
        for engine in engines:
            engine.close()
        for table in tables:
            table.close()


def _broken_links(rows: Sequence[TransitionRecord]) -> int:
    """How many rows do not start from the previous row's value."""
    return sum(1 for prev, row in itertools.pairwise(rows) if row.from_value != prev.to_value)


def _log_counts(dsn: str, schema: str, entity_id: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = sql.SQL(
            "SELECT (SELECT count(*) FROM {changes} WHERE kind = 'counter' AND entity_id = %(id)s),"
            " (SELECT count(DISTINCT change_id) FROM {changes}"
            "   WHERE kind = 'counter' AND entity_id = %(id)s),"
            " (SELECT count(DISTINCT t.change_id) FROM {transitions} AS t"
            "   JOIN {changes} AS c USING (change_id)"
            "  WHERE t.kind = 'counter' AND t.entity_id = %(id)s)"
        ).format(
            changes=sql.Identifier(schema, "changes"),
            transitions=sql.Identifier(schema, "transitions"),
        )
        row = conn.execute(query, {"id": entity_id}).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_concurrent_writers_leave_a_chain(pg_dsn: str, pg_schema: str) -> None:
    """8 threads, 2 engines, 2 processes, 200 writes: chained history, one row per change."""
    with _hammered(pg_dsn, pg_schema, "shared", locking=True, delay=0.0) as handle:
        final = handle.get("shared")
        assert final is not None
        assert final.n == TOTAL
        n_rows = handle.history("shared", field="n")
        assert [(r.from_value, r.to_value) for r in n_rows] == [(ABSENT, 0)] + [
            (i, i + 1) for i in range(TOTAL)
        ]
        for field in FIELDS:
            rows = handle.history("shared", field=field)
            assert rows[0].from_value is ABSENT
            assert _broken_links(rows) == 0, field
            stamps = [r.transitioned_at for r in rows]
            assert stamps == sorted(stamps)
        assert _log_counts(pg_dsn, pg_schema, "shared") == (TOTAL + 1, TOTAL + 1, TOTAL + 1)
        writers = {r.to_value for r in handle.history("shared", field="writer")}
        threads = {f"thread-{e}-{t}" for e in range(2) for t in range(THREADS_PER_ENGINE)}
        assert threads < writers  # every writer got its turn
        assert len([w for w in writers if str(w).startswith("process-shared-")]) == PROCESSES


def test_without_locking_concurrent_writers_can_break_the_chain(
    pg_dsn: str, pg_schema: str
) -> None:
    """The same load with ``locking=False`` breaks the chain: what the lock is for."""
    # A 2 ms pause between each writer's read and write widens the race. It is retried
    # up to three times; here the first attempt always breaks most links (180–195/200).
    broken = 0
    for attempt in range(3):
        entity_id = f"racy-{attempt}"
        with _hammered(pg_dsn, pg_schema, entity_id, locking=False, delay=0.002) as handle:
            rows = handle.history(entity_id, field="n")
        broken = _broken_links(rows)
        assert len(rows) == TOTAL + 1  # every write is still recorded once
        if broken:
            break
    assert broken > 0
