"""Issue 11 — the PostgreSQL change feed and durable subscriptions (DESIGN §9, SPEC §15):
gap-safe order under out-of-order commits, work-queue members killed inside their
handler, resumable named broadcasts, a killed LISTEN connection, retries and dead
letters, per-entity order within a group, the in-place migration of a version-1
database, threads stopped by ``close()``, and the ``changes()`` arguments.

Each test works in a schema of its own. The kill test kills 6 members by default;
``RE_FEED_KILLS=20`` kills that many.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

from reactive_entities import (
    Broadcast,
    ChangeEvent,
    Engine,
    InvalidArgumentError,
    Position,
    UnknownKindError,
    WorkQueue,
    compose,
)
from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.feed import channel_for
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.testing.feed_workers import (
    KIND,
    FeedItem,
    WorkerProcess,
    define_items,
    member_args,
)
from reactive_entities.testing.sql_plugin import SqlStorage

pytestmark = pytest.mark.postgres

KILLS = int(os.environ.get("RE_FEED_KILLS", "6"))
_schemas = itertools.count(1)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A schema of this test's own (its own changes table and NOTIFY channel)."""
    name = f"{pg_schema}_{next(_schemas)}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def open_engine(pg_dsn: str, schema: str) -> Iterator[Callable[..., Engine]]:
    """Composes engines on the test's schema; every one is closed afterwards."""
    opened: list[Engine] = []

    def make(**options: Any) -> Engine:
        engine = compose.postgres(pg_dsn, schema=schema, **options)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Received:
    """A handler that keeps what it receives, with the time it arrived."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, event: ChangeEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.times.append(time.monotonic())

    def ids(self) -> list[str]:
        with self._lock:
            return [event.change_id for event in self.events]

    def __len__(self) -> int:
        with self._lock:
            return len(self.events)


def write(engine: Engine, entity_id: str, n: int, *, run_id: str | None = None) -> str:
    """One change of ``entity_id`` (``n`` must differ from its current value); its id."""
    handle = engine.handle(KIND)
    handle.mutate(entity_id, lambda: FeedItem(n, "test"), run_id=run_id)
    newest = handle.changes(entity_id, limit=1)
    return newest[0].change_id


def group_status(engine: Engine, group: str) -> Mapping[str, Any]:
    """The ``consumers()`` line of ``group`` as a dict (empty when not listed)."""
    for status in engine.consumers():
        if status.name == group and status.mode == "work-queue":
            return attrs.asdict(status)
    return {}


def group_idle(engine: Engine, group: str) -> bool:
    """Whether the group scanned everything and has nothing claimed or waiting."""
    status = group_status(engine, group)
    return bool(status) and (status["lag_changes"], status["in_flight"], status["waiting"]) == (
        0,
        0,
        0,
    )


# -- gap safety --------------------------------------------------------------------------------


@pytest.mark.parametrize("a_holds_an_xid", [True, False], ids=["A-wrote-its-app-row", "A-log-only"])
def test_a_transaction_that_commits_late_is_never_skipped(
    pg_dsn: str, schema: str, open_engine: Callable[..., Engine], a_holds_an_xid: bool
) -> None:
    """A writes and holds, B commits, A commits: no reader passes open A; both delivered."""
    items = SqlStorage(schema, "items", to_doc=attrs.asdict, from_doc=lambda doc: FeedItem(**doc))
    writer = open_engine()
    reader = open_engine(poll_interval=0.2)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        items.create_table(conn)
    handle = writer.define_entity(KIND, FeedItem, read=items.read)
    reader.define_entity(KIND, FeedItem, read=items.read)
    broadcast = Received()
    reader.subscribe(broadcast, kind=KIND, delivery=Broadcast())

    a_wrote, release = threading.Event(), threading.Event()
    a_xid: list[object] = []
    failures: list[BaseException] = []

    def transaction_a() -> None:
        try:
            with writer.transaction() as tx:
                state = FeedItem(1, "A")
                apply = items.put(tx.connection, "a", state) if a_holds_an_xid else lambda: state
                handle.mutate("a", apply, tx=tx)
                row = tx.connection.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()
                a_xid.append(None if row is None else row[0])
                a_wrote.set()
                assert release.wait(30)
        except BaseException as error:
            failures.append(error)
            a_wrote.set()

    thread_a = threading.Thread(target=transaction_a, name="transaction-a")
    thread_a.start()
    try:
        assert a_wrote.wait(30)
        assert not failures
        # A's app row gave it a transaction id; a log-only A gets one at its commit.
        assert (a_xid[0] is not None) is a_holds_an_xid
        with writer.transaction() as tx:
            state_b = FeedItem(1, "B")
            handle.mutate("b", items.put(tx.connection, "b", state_b), tx=tx)
        seen_while_open: list[ChangeEvent] = []
        until = time.monotonic() + 1.5  # several polls of the reader, and B's NOTIFY
        while time.monotonic() < until:
            seen_while_open.extend(reader.changes(kind=KIND))
            time.sleep(0.05)
        delivered_while_open = list(broadcast.events)
    finally:
        release.set()
        thread_a.join(30)
    assert not failures

    wait_until(lambda: len(broadcast) >= 2, 10, "both changes to be broadcast")
    time.sleep(0.5)  # a duplicate would arrive now
    feed = reader.changes(kind=KIND)
    by_entity = {event.entity_id: event for event in feed}
    a, b = by_entity["a"], by_entity["b"]
    assert a.position is not None
    assert b.position is not None
    assert [event.change_id for event in feed] == broadcast.ids()  # feed order, each once
    assert sorted(broadcast.ids()) == sorted([a.change_id, b.change_id])
    # No reader got past A's position while A was open.
    for event in seen_while_open + delivered_while_open:
        assert event.position is not None
        assert event.position < a.position, f"{event.entity_id} was read ahead of open A"
    if a_holds_an_xid:  # A sorts first: B waited behind it
        assert [event.entity_id for event in feed] == ["a", "b"]
        assert seen_while_open == []
        assert delivered_while_open == []
    else:  # A's transaction id is newer than B's: B was delivered at once, A after
        assert [event.entity_id for event in feed] == ["b", "a"]
        assert {event.entity_id for event in seen_while_open} == {"b"}
        assert [event.entity_id for event in delivered_while_open] == ["b"]


# -- work-queue members killed inside their handler --------------------------------------------


def _lines(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="ascii").splitlines():
        mark, _, change_id = line.partition(" ")
        out.append((mark, change_id))
    return out


def test_kill_9_of_work_queue_members_inside_their_handler_loses_nothing(
    pg_dsn: str,
    schema: str,
    open_engine: Callable[..., Engine],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Members SIGKILLed inside their handler: another takes over after the lease; none lost."""
    writer = open_engine()
    define_items(writer)
    assert writer.feed is not None
    writer.feed.enqueue("k", None)  # the group starts here, before the changes
    changes = [write(writer, f"e-{k % 10}", k) for k in range(100)]
    rng = random.Random(11)
    started = time.monotonic()
    logs = []
    for kill in range(KILLS):
        log = tmp_path / f"member-{kill}.log"
        logs.append(log)
        args = member_args(
            pg_dsn, schema, group="k", lease=1.0, out=str(log), block_after=rng.randint(1, 3)
        )
        with WorkerProcess(args) as member:
            deadline = time.monotonic() + 30
            while not any(mark == "B" for mark, _ in _lines(log)):
                member.fail_if_exited()
                assert time.monotonic() < deadline, "the member never blocked in its handler"
                time.sleep(0.02)
            member.kill()
            assert member.process.returncode == -9
    killing = time.monotonic() - started

    final = Received()
    survivor = open_engine(poll_interval=0.2)
    survivor.subscribe(final, delivery=WorkQueue(group="k", lease=timedelta(seconds=1)))
    records = [line for log in logs for line in _lines(log)]
    handled = {change_id for mark, change_id in records if mark == "H"}
    blocked = [change_id for mark, change_id in records if mark == "B"]
    wait_until(
        lambda: set(changes) <= handled | set(final.ids()) and group_idle(survivor, "k"),
        30,
        "the survivor to handle what is left",
    )
    completed = handled | set(final.ids())
    assert len(blocked) == KILLS  # every kill hit a member inside its handler
    assert set(changes) <= completed, "a change was never handled to completion"
    assert set(blocked) <= completed, "a change of a killed member was not taken over"
    status = group_status(survivor, "k")
    assert (status["in_flight"], status["waiting"], status["dead_letters"]) == (0, 0, 0)
    with capsys.disabled():
        redelivered = sum(Counter(c for _, c in records).values()) + len(final) - len(changes)
        print(
            f"\nwork-queue kill -9: {KILLS} members killed inside their handler in"
            f" {killing:.1f} s; {len(changes)} changes all handled; {redelivered} redeliveries"
        )


# -- a named broadcast resumes -----------------------------------------------------------------


def test_a_restarted_named_broadcast_resumes_after_its_last_handled_change(
    open_engine: Callable[..., Engine],
) -> None:
    """Broadcast(consumer="x") reopened receives exactly the changes after its last one."""
    writer = open_engine()
    define_items(writer)
    first = open_engine(poll_interval=0.2)
    before = Received()
    first.subscribe(before, delivery=Broadcast(consumer="x"))
    old = [write(writer, f"e-{k % 2}", k) for k in range(5)]
    wait_until(lambda: len(before) >= 5, 10, "the first run to receive its changes")
    first.close()
    assert before.ids() == old

    missed = [write(writer, f"e-{k % 3}", 10 + k) for k in range(5)]
    second = open_engine(poll_interval=0.2)
    after = Received()
    second.subscribe(after, delivery=Broadcast(consumer="x"))
    live = [write(writer, "e-9", 20 + k) for k in range(3)]
    wait_until(lambda: len(after) >= 8, 10, "the restarted consumer to catch up")
    time.sleep(0.5)  # an old change delivered again would arrive now
    assert after.ids() == missed + live
    [status] = [s for s in second.consumers() if s.name == "x"]
    assert status.mode == "broadcast"
    assert status.position == after.events[-1].position
    assert status.lag_changes == 0


# -- the LISTEN connection killed --------------------------------------------------------------


def _listeners(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' AND query LIKE %s",
        [f"%{channel_for(schema)}%"],
    ).fetchall()
    return [int(row[0]) for row in rows]


def test_a_terminated_listen_connection_delays_nothing_beyond_the_poll_interval(
    pg_dsn: str,
    schema: str,
    open_engine: Callable[..., Engine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LISTEN session terminated: deliveries resume within the poll interval; a masked WARNING."""
    caplog.set_level(logging.WARNING)
    poll = 1.0
    engine = open_engine(poll_interval=poll)
    define_items(engine)
    received = Received()
    engine.subscribe(received, delivery=Broadcast())
    written: list[tuple[str, float]] = []

    def write_timed(entity_id: str, n: int) -> None:
        at = time.monotonic()
        written.append((write(engine, entity_id, n), at))

    with psycopg.connect(pg_dsn, autocommit=True) as monitor:
        write_timed("e-1", 1)
        wait_until(lambda: len(received) == 1, 10, "the first delivery")
        wait_until(lambda: _listeners(monitor, schema), 10, "the LISTEN session")
        [old] = _listeners(monitor, schema)  # one LISTEN connection per engine
        monitor.execute("SELECT pg_terminate_backend(%s)", [old])
        for n in range(2, 6):  # at once, while the listener is down or reconnecting
            write_timed(f"e-{n % 2}", n)
        wait_until(lambda: len(received) == 5, poll + 5, "the deliveries to resume")
        wait_until(
            lambda: [pid for pid in _listeners(monitor, schema) if pid != old],
            10,
            "the listener to LISTEN again",
        )
        for n in range(6, 9):
            write_timed("e-2", n)
            time.sleep(0.1)
        wait_until(lambda: len(received) == 8, poll + 5, "deliveries after the reconnect")
    time.sleep(0.3)  # a duplicate would arrive now

    assert received.ids() == [change_id for change_id, _ in written]  # none lost, in order
    latencies = [got - at for (_, at), got in zip(written, received.times, strict=True)]
    assert max(latencies) <= poll + 1.0, f"latencies {latencies}"
    warnings = [r for r in caplog.records if "listener lost its connection" in r.getMessage()]
    assert warnings, "the reconnect was not logged"
    assert all(r.levelno == logging.WARNING for r in warnings)
    for record in caplog.records:
        message = record.getMessage()
        assert pg_dsn not in message
        assert "127.0.0.1" not in message
        assert "postgres@" not in message


# -- retries and dead letters ------------------------------------------------------------------


def test_a_handler_that_always_raises_is_dead_lettered_after_max_retries(
    pg_dsn: str,
    schema: str,
    open_engine: Callable[..., Engine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """max_retries=2: 3 attempts, one masked dead letter, counted, and redelivered on retry."""
    caplog.set_level(logging.WARNING)
    engine = open_engine(poll_interval=0.2)
    define_items(engine)
    secret = "sk-" + secrets.token_hex(12)
    engine.secrets.register("run-dl", [secret])
    attempts: list[str] = []
    failing = threading.Event()
    failing.set()

    def bill(event: ChangeEvent) -> None:
        attempts.append(event.change_id)
        if failing.is_set():
            raise RuntimeError(f"billing refused key {secret}")

    group = "billing"
    engine.subscribe(
        bill,
        delivery=WorkQueue(group=group, max_retries=2, backoff=timedelta(milliseconds=50)),
    )
    change_id = write(engine, "e-1", 1, run_id="run-dl")
    wait_until(lambda: engine.dead_letters(group), 15, "a dead letter")
    time.sleep(0.6)  # a fourth attempt would happen now
    assert attempts == [change_id] * 3

    [dead] = engine.dead_letters(group)
    assert (dead.group, dead.change_id, dead.kind, dead.entity_id) == (
        group,
        change_id,
        KIND,
        "e-1",
    )
    assert dead.attempts == 3
    assert "RuntimeError" in dead.last_error
    assert "****" in dead.last_error
    assert secret not in dead.last_error
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what is stored, too
        stored = conn.execute(
            sql.SQL("SELECT last_error FROM {} WHERE group_name = %s").format(
                sql.Identifier(schema, "deliveries")
            ),
            [group],
        ).fetchall()
    assert len(stored) == 1
    assert secret not in stored[0][0]
    assert all(secret not in record.getMessage() for record in caplog.records)
    status = group_status(engine, group)
    assert (status["mode"], status["dead_letters"], status["in_flight"], status["waiting"]) == (
        "work-queue",
        1,
        0,
        0,
    )

    failing.clear()
    assert engine.retry_dead_letters(group) == 1
    wait_until(lambda: len(attempts) == 4, 10, "the dead letter to be redelivered")
    assert attempts[-1] == change_id
    wait_until(lambda: group_idle(engine, group), 10, "the group to finish")
    assert engine.dead_letters(group) == ()
    assert group_status(engine, group)["dead_letters"] == 0


# -- per-entity order within a group -----------------------------------------------------------


def test_a_group_of_two_members_handles_each_entity_in_order(
    open_engine: Callable[..., Engine],
) -> None:
    """Two members, a slow handler: each entity's changes one at a time, in order."""
    writer = open_engine()
    define_items(writer)
    handled: list[tuple[str, int, int, float, float]] = []
    lock = threading.Lock()

    def member(number: int) -> Callable[[ChangeEvent], None]:
        def handle(event: ChangeEvent) -> None:
            start = time.monotonic()
            time.sleep(0.05)
            assert event.next is not None
            n = event.next["n"]
            assert isinstance(n, int)
            with lock:
                handled.append((event.entity_id, n, number, start, time.monotonic()))

        return handle

    for number in range(2):
        engine = open_engine(poll_interval=0.2)
        engine.subscribe(member(number), delivery=WorkQueue(group="ordered"))
    entities, per_entity = 4, 6
    for n in range(1, per_entity + 1):
        for e in range(entities):
            write(writer, f"e-{e}", n)
    wait_until(lambda: len(handled) >= entities * per_entity, 30, "every change to be handled")
    wait_until(lambda: group_idle(writer, "ordered"), 10, "the group to finish")

    assert len(handled) == entities * per_entity
    assert {number for _, _, number, _, _ in handled} == {0, 1}  # both members worked
    for e in range(entities):
        runs = sorted((start, end, n) for entity, n, _, start, end in handled if entity == f"e-{e}")
        assert [n for _, _, n in runs] == list(range(1, per_entity + 1))
        for (_, end, _), (start, _, _) in itertools.pairwise(runs):
            assert start >= end, f"e-{e}: two changes handled at once"


# -- the migration of a version-1 database -----------------------------------------------------


def _insert_old_change(
    conn: psycopg.Connection[Any], schema: str, entity_id: str, op: str, prev: Any, nxt: Any
) -> None:
    """A change as version 1 recorded it (no feed column), with its transition row."""
    change_id = conn.execute("SELECT gen_random_uuid()::text").fetchone()
    assert change_id is not None
    key = EntityKeys.entity_key(KIND, entity_id)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (change_id, entity_key, kind, entity_id, op, actor, run_id, prev,"
            " next, delta, changed_fields, occurred_at) VALUES (%s, %s, %s, %s, %s,"
            ' \'{{"type": "system", "id": "system", "name": "System"}}\', NULL, %s, %s, %s,'
            " %s, clock_timestamp())"
        ).format(sql.Identifier(schema, "changes")),
        [
            change_id[0],
            key,
            KIND,
            entity_id,
            op,
            psycopg.types.json.Jsonb(prev) if prev is not None else None,
            psycopg.types.json.Jsonb(nxt),
            psycopg.types.json.Jsonb({"n": nxt["n"]}),
            ["n"],
        ],
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (change_id, entity_key, kind, entity_id, field, from_value,"
            " to_value, masked, transitioned_at) VALUES (%s, %s, %s, %s, 'n', %s, %s, false,"
            " clock_timestamp())"
        ).format(sql.Identifier(schema, "transitions")),
        [
            change_id[0],
            key,
            KIND,
            entity_id,
            None if prev is None else psycopg.types.json.Jsonb(prev["n"]),
            psycopg.types.json.Jsonb(nxt["n"]),
        ],
    )


def _snapshot(conn: psycopg.Connection[Any], schema: str) -> tuple[Any, ...]:
    """The old rows exactly as stored (with their physical place), and the tables' files."""
    rows = conn.execute(
        sql.SQL(
            "SELECT ctid::text, position, change_id::text, entity_key::text, kind, entity_id,"
            " op, actor::text, run_id, prev::text, next::text, delta::text, changed_fields,"
            " occurred_at FROM {} ORDER BY position"
        ).format(sql.Identifier(schema, "changes"))
    ).fetchall()
    transitions = conn.execute(
        sql.SQL("SELECT ctid::text, * FROM {} ORDER BY id").format(
            sql.Identifier(schema, "transitions")
        )
    ).fetchall()
    files = conn.execute(
        "SELECT relname, relfilenode FROM pg_class WHERE relnamespace = %s::regnamespace"
        " AND relname IN ('changes', 'transitions') ORDER BY relname",
        [schema],
    ).fetchall()
    return rows, transitions, files


def test_the_feed_migration_upgrades_a_version_1_database_in_place(
    pg_dsn: str, schema: str, open_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-1 schema with changes is migrated in place: old changes first, new after."""
    first = migrations.available_migrations()[0]
    assert first.version == 1
    assert migrations.latest_version() > 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with monkeypatch.context() as patch:  # this code as it was at version 1
            patch.setattr(migrations, "available_migrations", lambda: (first,))
            assert migrations.migrate(conn, schema) == (1,)
        assert migrations.schema_version(conn, schema) == 1
        _insert_old_change(conn, schema, "old-1", "create", None, {"n": 1, "writer": "v1"})
        _insert_old_change(conn, schema, "old-2", "create", None, {"n": 1, "writer": "v1"})
        _insert_old_change(
            conn, schema, "old-1", "update", {"n": 1, "writer": "v1"}, {"n": 2, "writer": "v1"}
        )
        before = _snapshot(conn, schema)

        engine = open_engine()  # migrates
        assert migrations.schema_version(conn, schema) == migrations.latest_version()
        assert _snapshot(conn, schema) == before  # same rows, same places, same files
    _, storage = define_items(engine)
    storage.rows.update({"old-1": FeedItem(2, "v1"), "old-2": FeedItem(1, "v1")})  # the app's
    old_ids = [row[2] for row in before[0]]
    new_ids = [write(engine, "old-1", 3), write(engine, "new-1", 1)]

    feed = engine.changes(kind=KIND)
    assert [event.change_id for event in feed] == old_ids + new_ids
    positions = [event.position for event in feed]
    assert all(position is not None for position in positions)
    assert positions == sorted(p for p in positions if p is not None)
    assert [p.transaction for p in positions[:3] if p is not None] == [0, 0, 0]
    assert [p.sequence for p in positions[:3] if p is not None] == [row[1] for row in before[0]]
    assert all(p is not None and p.transaction > 0 for p in positions[3:])
    history = engine.handle(KIND).changes("old-1")
    assert [event.change_id for event in history] == [old_ids[0], old_ids[2], new_ids[0]]
    assert [event.op for event in history] == ["create", "update", "update"]
    assert history[-1].prev == {"n": 2, "writer": "v1"}


# -- close() stops the threads -----------------------------------------------------------------


def test_close_stops_every_delivery_thread_within_5_seconds(
    open_engine: Callable[..., Engine],
) -> None:
    """close() ends the listener and every durable thread (one mid-handler) within 5 s."""
    existing = set(threading.enumerate())
    engine = open_engine(poll_interval=0.2)
    define_items(engine)
    in_handler = threading.Event()

    def slow(_: ChangeEvent) -> None:
        in_handler.set()
        time.sleep(1.0)

    engine.subscribe(Received(), delivery=Broadcast())
    engine.subscribe(Received(), kind=KIND, delivery=Broadcast(consumer="c"))
    engine.subscribe(slow, delivery=WorkQueue(group="w"))
    write(engine, "e-1", 1)
    assert in_handler.wait(10)

    def ours() -> list[str]:
        return sorted(
            t.name
            for t in threading.enumerate()
            if t not in existing and t.is_alive() and t.name.startswith("reactive-entities-")
        )

    names = ours()
    assert len(names) == 4, names
    assert any(name.startswith("reactive-entities-listen") for name in names)
    assert any(name.startswith("reactive-entities-work-queue[w]") for name in names)
    started = time.monotonic()
    engine.close()
    assert time.monotonic() - started < 5.0
    assert ours() == []


# -- changes() arguments -----------------------------------------------------------------------


def test_changes_takes_a_position_or_its_str_and_checks_its_arguments(
    open_engine: Callable[..., Engine],
) -> None:
    """after= takes a Position or its str; bad positions and limits are InvalidArgumentError."""
    engine = open_engine()
    define_items(engine)
    ids = [write(engine, f"e-{k % 2}", k) for k in range(5)]
    everything = engine.changes()
    assert [event.change_id for event in everything] == ids
    positions = [event.position for event in everything]
    assert all(p is not None for p in positions)
    assert all(a < b for a, b in itertools.pairwise(p for p in positions if p is not None))

    middle = everything[1].position
    assert middle is not None
    assert Position.parse(str(middle)) == middle
    assert engine.changes(after=str(middle)) == everything[2:]
    assert engine.changes(after=middle) == everything[2:]
    assert engine.changes(after=str(everything[-1].position)) == ()
    assert engine.changes(limit=2) == everything[:2]
    assert engine.changes(after=str(everything[0].position), limit=2) == everything[1:3]
    assert engine.changes(kind=KIND, limit=100) == everything
    entity = engine.handle(KIND).changes("e-0")
    assert [event.change_id for event in entity] == ids[0::2]
    assert all(event.position is not None for event in entity)
    assert engine.handle(KIND).changes("e-0", limit=1) == entity[-1:]

    for bad in ["", "abc", "1-", "-1", "1-2-3", "1.5-2", " 1-2", "0x1-2", "１-2", "-1-2"]:
        with pytest.raises(InvalidArgumentError):
            engine.changes(after=bad)
    for wrong in [5, 1.5, b"1-2", ("1", "2")]:
        with pytest.raises(InvalidArgumentError):
            engine.changes(after=wrong)  # type: ignore[arg-type]
    for limit in [0, -1, True, 1.5, "5", None]:
        with pytest.raises(InvalidArgumentError):
            engine.changes(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(UnknownKindError):
        engine.changes(kind="no-such-kind")
