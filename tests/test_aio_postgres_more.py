"""The asyncio twins of the blocking engine's PostgreSQL-only tests that
tests/test_aio_postgres_*.py did not already assert one for (docs/aio-test-map.md):
test_postgres_engine, test_postgres_outage, the DSN items of test_hardening, and the
engine-level tests of test_feed_postgres. Each is named as its blocking original and
makes the same assertions, awaited (tasks where the original used threads)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from reactive_entities import (
    ABSENT,
    Actor,
    Broadcast,
    ChangeEvent,
    InvalidArgumentError,
    MissingStateError,
    Position,
    StateValidationError,
    StoreError,
    UnknownKindError,
    WorkQueue,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.feed import channel_for
from reactive_entities.adapters.postgres.keys import EntityKeys
from reactive_entities.aio import AsyncEngine, AsyncEntityHandle, compose
from reactive_entities.testing.aio_world import fresh_id, open_world
from reactive_entities.testing.examples import Incident
from reactive_entities.testing.feed_workers import KIND, FeedItem
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres

AsyncConn = psycopg.AsyncConnection[Any]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "hunter2-s3cr3t"
OPEN = Incident("open", "low")
_ids = itertools.count()
_schemas = itertools.count(1)


def _define_incidents(
    engine: AsyncEngine,
) -> tuple[AsyncEntityHandle[Incident], DictStorage[Incident]]:
    storage: DictStorage[Incident] = DictStorage()
    return engine.define_entity("incident", Incident, read=storage.read, sensitive=("token",)), (
        storage
    )


# == test_postgres_engine =================================================================


@attrs.define
class World:
    """An asyncio PostgreSQL engine with the incident kind, storage and received events."""

    engine: AsyncEngine
    handle: AsyncEntityHandle[Incident]
    storage: DictStorage[Incident]
    events: list[ChangeEvent]
    db: AsyncConn
    schema: str

    async def rows(self, table: str, entity_id: str, columns: str) -> list[tuple[Any, ...]]:
        """``columns`` of the entity's rows in ``table``, in recording order."""
        order = "position" if table == "changes" else "id"
        query = sql.SQL("SELECT {} FROM {} WHERE kind = 'incident' AND entity_id = %s ORDER BY {}")
        cursor = await self.db.execute(
            query.format(
                sql.SQL(columns), sql.Identifier(self.schema, table), sql.Identifier(order)
            ),
            [entity_id],
        )
        return await cursor.fetchall()


@asynccontextmanager
async def pg_world(dsn: str, schema: str) -> AsyncIterator[World]:
    """An engine stamping with the database clock, with a collecting subscriber."""
    async with (
        await compose.postgres(dsn, schema=schema) as engine,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db,
    ):
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        yield World(engine, handle, storage, events, db, schema)


def _entity_id() -> str:
    return f"inc-{next(_ids)}"


async def test_create_update_no_op_and_remove_reach_both_logs(pg_dsn: str, pg_schema: str) -> None:
    """SPEC §5: one change row per change plus its rows; no-op nothing; remove no rows."""
    async with pg_world(pg_dsn, pg_schema) as world:
        entity_id = _entity_id()
        handle, storage = world.handle, world.storage
        created = await handle.mutate(
            entity_id, storage.put(entity_id, Incident("open", "low", "t"))
        )
        assert created == Incident("open", "low", "t")
        await handle.mutate(entity_id, storage.patch(entity_id, status="resolved", title="u"))
        assert await handle.mutate(entity_id, storage.patch(entity_id)) == storage.rows[entity_id]
        await handle.remove(entity_id, storage.delete(entity_id))

        assert [e.op for e in world.events] == ["create", "update", "remove"]
        changes = await world.rows(
            "changes", entity_id, "op, change_id::text, occurred_at, changed_fields"
        )
        assert [(op, fields) for op, _, _, fields in changes] == [
            ("create", ["severity", "status", "system_ids", "title", "token"]),
            ("update", ["status", "title"]),
            ("remove", ["severity", "status", "system_ids", "title", "token"]),
        ]
        rows = await world.rows("transitions", entity_id, "change_id::text, field, transitioned_at")
        assert len(rows) == 5 + 2
        for event, (_, change_id, occurred_at, _) in zip(world.events, changes, strict=True):
            assert event.change_id == change_id
            assert event.occurred_at == occurred_at
            assert {at for cid, _, at in rows if cid == change_id} <= {occurred_at}
        assert await handle.get(entity_id) is None


async def test_rows_and_event_values_match(pg_dsn: str, pg_schema: str) -> None:
    """SPEC §6–§7: the event's documents and the stored rows hold the same values."""
    async with pg_world(pg_dsn, pg_schema) as world:
        entity_id = _entity_id()
        await world.handle.mutate(entity_id, world.storage.put(entity_id, OPEN))
        await world.handle.mutate(entity_id, world.storage.patch(entity_id, system_ids=("a", "b")))
        event = world.events[-1]
        assert event.delta == {"system_ids": ["a", "b"]}
        stored = (await world.rows("changes", entity_id, "prev, next, delta, actor, run_id"))[-1]
        assert stored == (event.prev, event.next, event.delta, event.actor.to_dict(), None)
        latest = await world.handle.history(entity_id, field="system_ids")
        assert [(r.from_value, r.to_value) for r in latest] == [(ABSENT, []), ([], ["a", "b"])]


async def test_masked_values_are_all_that_reaches_the_database(pg_dsn: str, pg_schema: str) -> None:
    """SPEC §4: run secrets and sensitive fields are masked in every stored column."""
    async with pg_world(pg_dsn, pg_schema) as world:
        entity_id = _entity_id()
        run = f"run-{entity_id}"
        await world.engine.secrets.register(run, [SECRET])
        actor = Actor.user("u-1", name=f"user {SECRET}")
        state = Incident("open", "low", title=f"leak {SECRET}", token="tok-123456")
        returned = await world.handle.mutate(
            entity_id, world.storage.put(entity_id, state), actor=actor, run_id=run
        )
        assert returned == state
        stored = await world.rows(
            "changes", entity_id, "prev::text, next::text, delta::text, actor::text"
        )
        texts = [text for row in stored for text in row if text is not None]
        stored_rows = await world.rows("transitions", entity_id, "field, to_value::text, masked")
        texts += [text for _, text, _ in stored_rows]
        assert texts
        assert all(SECRET not in text and "tok-123456" not in text for text in texts)
        masked = {field: flag for field, _, flag in stored_rows}
        assert masked == {
            "severity": False,
            "status": False,
            "system_ids": False,
            "title": True,
            "token": True,
        }
        assert await world.rows("changes", entity_id, "run_id") == [(run,)]


async def test_failures_before_recording_record_nothing(pg_dsn: str, pg_schema: str) -> None:
    """SPEC §5: a raising apply, None or an invalid state records nothing, unlocks."""
    async with pg_world(pg_dsn, pg_schema) as world:
        entity_id = _entity_id()

        async def boom() -> Incident:
            raise RuntimeError("plugin write failed")

        with pytest.raises(RuntimeError, match="plugin write failed"):
            await world.handle.mutate(entity_id, boom)
        with pytest.raises(MissingStateError):
            await world.handle.mutate(entity_id, lambda: None)
        with pytest.raises(StateValidationError):
            await world.handle.mutate(entity_id, lambda: {"status": "bogus", "severity": "low"})
        assert await world.rows("changes", entity_id, "op") == []
        assert world.events == []
        await world.handle.mutate(entity_id, world.storage.put(entity_id, OPEN))
        assert await world.rows("changes", entity_id, "op") == [("create",)]


async def test_temporal_queries_follow_the_injected_clock(pg_dsn: str, pg_schema: str) -> None:
    """SPEC §8 on PostgreSQL with a manual clock: since/for, counts, value_at, history."""
    clock = ManualClock(T0)
    entity_id = _entity_id()
    async with await compose.postgres(pg_dsn, schema=pg_schema, clock=clock) as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        await handle.mutate(entity_id, storage.put(entity_id, OPEN))
        for minutes, status in ((1, "investigating"), (3, "resolved"), (6, "open")):
            clock.set(T0 + timedelta(minutes=minutes))
            await handle.mutate(entity_id, storage.patch(entity_id, status=status))
        assert [e.occurred_at for e in events] == [T0 + timedelta(minutes=m) for m in (0, 1, 3, 6)]
        clock.set(T0 + timedelta(minutes=10))
        assert await handle.in_state_since(entity_id, "status") == T0 + timedelta(minutes=6)
        assert await handle.in_state_for(entity_id, "status") == timedelta(minutes=4)
        assert await handle.in_state_since(entity_id, "severity") == T0
        assert await handle.transition_count(entity_id, "status", window=timedelta(minutes=9)) == 3
        assert await handle.transition_count(entity_id, "status", window=timedelta(minutes=4)) == 1
        at_two = T0 + timedelta(minutes=2)
        assert await handle.value_at(entity_id, "status", at_two) == "investigating"
        assert await handle.value_at(entity_id, "status", T0 - timedelta(minutes=1)) is None
        newest = await handle.history(entity_id, field="status", limit=2)
        assert [r.to_value for r in newest] == ["resolved", "open"]
        since = await handle.history(entity_id, since=T0 + timedelta(minutes=3))
        assert [r.to_value for r in since] == ["resolved", "open"]
        await handle.remove(entity_id, storage.delete(entity_id))
        assert await handle.in_state_since(entity_id, "status") is None
        assert await handle.value_at(entity_id, "status", clock.now()) is None
        assert await handle.transition_count(entity_id, "status", window=timedelta(hours=1)) == 4


@asynccontextmanager
async def _count_round_trips(pool: AsyncConnectionPool) -> AsyncIterator[list[int]]:
    """Trace the pool's only connection; yields a list that receives the number of
    client messages ending a round trip (simple ``Query`` or extended ``Sync``)."""
    fd, path = tempfile.mkstemp(prefix="re-trace-")
    result: list[int] = []
    try:
        async with pool.connection() as conn:
            conn.pgconn.trace(fd)
        yield result
        async with pool.connection() as conn:
            conn.pgconn.untrace()
        lines = Path(path).read_text().splitlines()
        result.append(
            sum(
                1 for line in lines if "\tF\t" in line and ("\tQuery\t" in line or "\tSync" in line)
            )
        )
    finally:
        os.close(fd)
        os.unlink(path)


@pytest.mark.parametrize(("locking", "expected"), [(True, 2), (False, 2)])
async def test_round_trips_per_mutation(
    pg_dsn: str, pg_schema: str, locking: bool, expected: int
) -> None:
    """A mutate costs 2 store round trips (begin+lock+stamp; inserts+commit), locked or
    not; a no-op 2 (begin+lock+stamp; commit); a query 1."""
    entity_id = _entity_id()
    async with await compose.postgres(
        pg_dsn, schema=pg_schema, pool_size=1, locking=locking
    ) as engine:
        handle, storage = _define_incidents(engine)
        pool: AsyncConnectionPool = engine.store.pool  # type: ignore[attr-defined]
        await handle.mutate(entity_id, storage.put(entity_id, OPEN))  # warm up
        await handle.mutate(entity_id, storage.patch(entity_id, status="resolved"))  # prepare
        async with _count_round_trips(pool) as mutate:
            await handle.mutate(entity_id, storage.patch(entity_id, status="open", title="x"))
        assert mutate == [expected]
        async with _count_round_trips(pool) as no_op:
            await handle.mutate(entity_id, storage.patch(entity_id))
        assert no_op == [2]
        await handle.in_state_since(entity_id, "status")  # prepare
        async with _count_round_trips(pool) as query:
            await handle.in_state_since(entity_id, "status")
        assert query == [1]


async def test_engine_closes_the_pool_it_opened_only(pg_dsn: str, pg_schema: str) -> None:
    """``close`` closes the pool ``compose.postgres`` opened, never one it was given."""
    engine = await compose.postgres(pg_dsn, schema=pg_schema)
    own: AsyncConnectionPool = engine.store.pool  # type: ignore[attr-defined]
    await engine.close()
    assert own.closed
    async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=2, open=False) as given:
        async with await compose.postgres(pool=given, schema=pg_schema) as engine:
            handle, storage = _define_incidents(engine)
            await handle.mutate("inc-given", storage.put("inc-given", OPEN))
        assert not given.closed
        async with given.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)


async def test_an_unreachable_server_fails_fast_with_store_error() -> None:
    """Composing against a port nobody listens on raises ``StoreError`` at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreError, match="could not connect") as info:
        await compose.postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert time.monotonic() - started < 5


async def test_no_dsn_means_the_libpq_environment(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compose.postgres()`` without a DSN connects where ``PGHOST``, ``PGPORT``… say."""
    params = conninfo_to_dict(pg_dsn)
    for key, variable in (
        ("host", "PGHOST"),
        ("port", "PGPORT"),
        ("user", "PGUSER"),
        ("dbname", "PGDATABASE"),
        ("password", "PGPASSWORD"),
    ):
        if key in params:
            monkeypatch.setenv(variable, str(params[key]))
    async with await compose.postgres(schema=pg_schema) as engine:
        handle, storage = _define_incidents(engine)
        await handle.mutate("inc-env", storage.put("inc-env", OPEN))
        assert len(await handle.history("inc-env")) == 5


# == test_hardening item 4 ================================================================


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:Pw-Zq81x%zz@localhost:1/db",
        "postgresql://app:Pw-Zq81x@localhost:1/db?password=Pw-Zq81x%zz",
        "host=localhost port=1 user=app password='Pw-Zq81x %zz' dbname=db sslmode=bogus",
    ],
)
async def test_dsn_password_never_in_store_error(dsn: str) -> None:
    """Item 4: an unparseable or unreachable DSN's password is in no message or cause."""
    with pytest.raises(StoreError) as caught:
        await compose.postgres(dsn, pool_timeout=1)
    texts = []
    error: BaseException | None = caught.value
    while error is not None:
        texts.append(f"{error}\n{error!r}")
        error = error.__cause__ or error.__context__
    joined = "\n".join(texts)
    assert "Pw-Zq81x" not in joined
    assert "could not connect to PostgreSQL" in joined


# == test_postgres_outage =================================================================


@pytest.fixture(scope="module")
def dedicated_server() -> Iterator[PostgresServer]:
    """A server of this module's own, so stopping it disturbs no other test."""
    with PostgresServer() as server:
        yield server


async def test_a_stopped_server_fails_mutations_and_queries_until_it_is_back(
    dedicated_server: PostgresServer,
) -> None:
    """While down: ``StoreError``, nothing emitted; after a restart the engine records."""
    async with await compose.postgres(
        dedicated_server.dsn, schema="outage", pool_timeout=1.0
    ) as engine:
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        await handle.mutate("inc-1", storage.put("inc-1", OPEN))
        assert len(events) == 1

        dedicated_server.stop()
        try:
            with pytest.raises(StoreError, match="incident:inc-1") as info:
                await handle.mutate("inc-1", storage.put("inc-1", Incident("resolved", "low")))
            assert isinstance(info.value.__cause__, psycopg.OperationalError)
            assert len(events) == 1  # nothing emitted
            assert storage.rows["inc-1"] == OPEN  # apply never ran
            with pytest.raises(StoreError) as query:
                await handle.history("inc-1")
            assert isinstance(query.value.__cause__, psycopg.Error)
        finally:
            dedicated_server.start()

        await handle.mutate("inc-1", storage.put("inc-1", Incident("resolved", "low")))
        assert [e.op for e in events] == ["create", "update"]
        rows = await handle.history("inc-1", field="status")
        assert [(r.from_value, r.to_value) for r in rows][-1] == ("open", "resolved")
        assert await handle.in_state_since("inc-1", "status") == events[-1].occurred_at


async def test_a_restart_between_mutations_is_invisible(dedicated_server: PostgresServer) -> None:
    """Connections left stale by a restart are replaced without failing a call."""
    async with await compose.postgres(dedicated_server.dsn, schema="outage") as engine:
        handle, storage = _define_incidents(engine)
        await handle.mutate("inc-2", storage.put("inc-2", OPEN))
        assert await handle.in_state_since("inc-2", "status") is not None
        dedicated_server.restart()
        await handle.mutate("inc-2", storage.put("inc-2", Incident("resolved", "low")))
        dedicated_server.restart()
        assert [r.to_value for r in await handle.history("inc-2", field="status")] == [
            "open",
            "resolved",
        ]


async def test_a_connection_killed_inside_the_lock_fails_only_that_mutation(
    pg_dsn: str, pg_schema: str
) -> None:
    """A lock-holding session killed before ``record`` fails that mutation only."""
    async with (
        await compose.postgres(pg_dsn, schema=pg_schema, pool_size=2) as engine,
        await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin,
    ):
        handle, storage = _define_incidents(engine)
        events: list[ChangeEvent] = []
        await engine.subscribe(events.append)
        entity_id = _entity_id()

        async def kill_lock_holder() -> Incident:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            )
            assert await cursor.fetchall() == [(True,)]
            return storage.put(entity_id, Incident("open", "high"))()

        with pytest.raises(StoreError, match="could not record") as info:
            await handle.mutate(entity_id, kill_lock_holder)
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert events == []
        assert await handle.history(entity_id) == ()

        await handle.mutate(entity_id, storage.put(entity_id, Incident("resolved", "high")))
        assert [e.op for e in events] == ["update"]
        assert [(r.from_value, r.to_value) for r in await handle.history(entity_id)] == [
            ("open", "resolved")
        ]
        stats: dict[str, Any] = engine.store.pool.get_stats()  # type: ignore[attr-defined]
        assert stats["pool_size"] <= 2


# == test_feed_postgres (engine level) ====================================================


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A schema of this test's own (its own changes table and NOTIFY channel)."""
    name = f"{pg_schema}_{next(_schemas)}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


Opener = Callable[..., Awaitable[AsyncEngine]]


@asynccontextmanager
async def engines(dsn: str, schema: str) -> AsyncIterator[Opener]:
    """Composes engines on ``schema``; every one is closed when the block ends."""
    opened: list[AsyncEngine] = []

    async def make(**options: Any) -> AsyncEngine:
        engine = await compose.postgres(dsn, schema=schema, **options)
        opened.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in opened:
            await engine.close()


async def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float, what: str) -> None:
    """:func:`wait_until` for a coroutine check."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


class Received:
    """A handler that keeps what it receives, with the time it arrived."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.times: list[float] = []

    def __call__(self, event: ChangeEvent) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())

    def ids(self) -> list[str]:
        return [event.change_id for event in self.events]

    def __len__(self) -> int:
        return len(self.events)


def define_items(
    engine: AsyncEngine, storage: DictStorage[FeedItem] | None = None
) -> tuple[AsyncEntityHandle[FeedItem], DictStorage[FeedItem]]:
    """Define :data:`KIND` on ``engine`` over a dict storage."""
    storage = storage if storage is not None else DictStorage()
    return engine.define_entity(KIND, FeedItem, read=storage.read), storage


async def write(engine: AsyncEngine, entity_id: str, n: int, *, run_id: str | None = None) -> str:
    """One change of ``entity_id`` (``n`` must differ from its current value); its id."""
    handle = engine.handle(KIND)
    await handle.mutate(entity_id, lambda: FeedItem(n, "test"), run_id=run_id)
    newest = await handle.changes(entity_id, limit=1)
    return newest[0].change_id


async def group_status(engine: AsyncEngine, group: str) -> Mapping[str, Any]:
    """The ``consumers()`` line of ``group`` as a dict (empty when not listed)."""
    for status in await engine.consumers():
        if status.name == group and status.mode == "work-queue":
            return attrs.asdict(status)
    return {}


async def group_idle(engine: AsyncEngine, group: str) -> bool:
    """Whether the group scanned everything and has nothing claimed or waiting."""
    status = await group_status(engine, group)
    return bool(status) and (status["lag_changes"], status["in_flight"], status["waiting"]) == (
        0,
        0,
        0,
    )


@pytest.mark.parametrize("a_holds_an_xid", [True, False], ids=["A-wrote-its-app-row", "A-log-only"])
async def test_a_transaction_that_commits_late_is_never_skipped(
    pg_dsn: str, schema: str, a_holds_an_xid: bool
) -> None:
    """A writes and holds, B commits, A commits: no reader passes open A; both delivered."""
    async with engines(pg_dsn, schema) as open_engine:
        writer = await open_engine()
        reader = await open_engine(poll_interval=0.2)
        table = sql.Identifier(schema, "items")
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY)").format(table))
        storage: DictStorage[FeedItem] = DictStorage()
        handle, _ = define_items(writer, storage)
        define_items(reader, storage)
        broadcast = Received()
        await reader.subscribe(broadcast, kind=KIND, delivery=Broadcast())

        a_wrote, release = asyncio.Event(), asyncio.Event()
        a_xid: list[object] = []

        async def transaction_a() -> None:
            async with writer.transaction() as tx:

                async def apply() -> FeedItem:
                    if a_holds_an_xid:  # the app's own row: a transaction id at once
                        insert = sql.SQL("INSERT INTO {} VALUES ('a')").format(table)
                        await tx.connection.execute(insert)
                    return storage.put("a", FeedItem(1, "A"))()

                await handle.mutate("a", apply, tx=tx)
                cursor = await tx.connection.execute("SELECT pg_current_xact_id_if_assigned()")
                row = await cursor.fetchone()
                a_xid.append(None if row is None else row[0])
                a_wrote.set()
                await asyncio.wait_for(release.wait(), 30)

        task_a = asyncio.create_task(transaction_a())
        try:
            await asyncio.wait_for(a_wrote.wait(), 30)
            assert (a_xid[0] is not None) is a_holds_an_xid
            async with writer.transaction() as tx:
                await handle.mutate("b", storage.put("b", FeedItem(1, "B")), tx=tx)
            seen_while_open: list[ChangeEvent] = []
            until = time.monotonic() + 1.5  # several polls of the reader, and B's NOTIFY
            while time.monotonic() < until:
                seen_while_open.extend(await reader.changes(kind=KIND))
                await asyncio.sleep(0.05)
            delivered_while_open = list(broadcast.events)
        finally:
            release.set()
            await asyncio.wait_for(task_a, 30)

        await wait_until(lambda: len(broadcast) >= 2, 10, "both changes to be broadcast")
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        feed = await reader.changes(kind=KIND)
        by_entity = {event.entity_id: event for event in feed}
        a, b = by_entity["a"], by_entity["b"]
        assert a.position is not None
        assert b.position is not None
        assert [event.change_id for event in feed] == broadcast.ids()
        assert sorted(broadcast.ids()) == sorted([a.change_id, b.change_id])
        for event in seen_while_open + delivered_while_open:
            assert event.position is not None
            assert event.position < a.position, f"{event.entity_id} was read ahead of open A"
        if a_holds_an_xid:
            assert [event.entity_id for event in feed] == ["a", "b"]
            assert seen_while_open == []
            assert delivered_while_open == []
        else:
            assert [event.entity_id for event in feed] == ["b", "a"]
            assert {event.entity_id for event in seen_while_open} == {"b"}
            assert [event.entity_id for event in delivered_while_open] == ["b"]


async def test_a_restarted_named_broadcast_resumes_after_its_last_handled_change(
    pg_dsn: str, schema: str
) -> None:
    """Broadcast(consumer="x") reopened receives exactly the changes after its last one."""
    async with engines(pg_dsn, schema) as open_engine:
        writer = await open_engine()
        define_items(writer)
        first = await open_engine(poll_interval=0.2)
        before = Received()
        await first.subscribe(before, delivery=Broadcast(consumer="x"))
        old = [await write(writer, f"e-{k % 2}", k) for k in range(5)]
        await wait_until(lambda: len(before) >= 5, 10, "the first run to receive its changes")
        await first.close()
        assert before.ids() == old

        missed = [await write(writer, f"e-{k % 3}", 10 + k) for k in range(5)]
        second = await open_engine(poll_interval=0.2)
        after = Received()
        await second.subscribe(after, delivery=Broadcast(consumer="x"))
        live = [await write(writer, "e-9", 20 + k) for k in range(3)]
        await wait_until(lambda: len(after) >= 8, 10, "the restarted consumer to catch up")
        await asyncio.sleep(0.5)  # an old change delivered again would arrive now
        assert after.ids() == missed + live
        [status] = [s for s in await second.consumers() if s.name == "x"]
        assert status.mode == "broadcast"
        assert status.position == after.events[-1].position
        assert status.lag_changes == 0


async def _listeners(conn: AsyncConn, schema: str) -> list[int]:
    cursor = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' AND query LIKE %s",
        [f"%{channel_for(schema)}%"],
    )
    return [int(row[0]) for row in await cursor.fetchall()]


async def test_a_terminated_listen_connection_delays_nothing_beyond_the_poll_interval(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """LISTEN session terminated: deliveries resume within the poll interval; a masked WARNING."""
    caplog.set_level(logging.WARNING)
    poll = 1.0
    async with (
        engines(pg_dsn, schema) as open_engine,
        await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as monitor,
    ):
        engine = await open_engine(poll_interval=poll)
        define_items(engine)
        received = Received()
        await engine.subscribe(received, delivery=Broadcast())
        written: list[tuple[str, float]] = []

        async def write_timed(entity_id: str, n: int) -> None:
            at = time.monotonic()
            written.append((await write(engine, entity_id, n), at))

        await write_timed("e-1", 1)
        await wait_until(lambda: len(received) == 1, 10, "the first delivery")
        await wait_for(lambda: _listeners(monitor, schema), 10, "the LISTEN session")
        [old] = await _listeners(monitor, schema)  # one LISTEN connection per engine
        await monitor.execute("SELECT pg_terminate_backend(%s)", [old])
        for n in range(2, 6):  # at once, while the listener is down or reconnecting
            await write_timed(f"e-{n % 2}", n)
        await wait_until(lambda: len(received) == 5, poll + 5, "the deliveries to resume")

        async def relistened() -> bool:
            return any(pid != old for pid in await _listeners(monitor, schema))

        await wait_for(relistened, 10, "the listener to LISTEN again")
        for n in range(6, 9):
            await write_timed("e-2", n)
            await asyncio.sleep(0.1)
        await wait_until(lambda: len(received) == 8, poll + 5, "deliveries after the reconnect")
        await asyncio.sleep(0.3)  # a duplicate would arrive now

    assert received.ids() == [change_id for change_id, _ in written]
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


async def test_a_handler_that_always_raises_is_dead_lettered_after_max_retries(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """max_retries=2: 3 attempts, one masked dead letter, counted, and redelivered on retry."""
    caplog.set_level(logging.WARNING)
    async with engines(pg_dsn, schema) as open_engine:
        engine = await open_engine(poll_interval=0.2)
        define_items(engine)
        secret = "sk-" + secrets.token_hex(12)
        await engine.secrets.register("run-dl", [secret])
        attempts: list[str] = []
        failing = asyncio.Event()
        failing.set()

        async def bill(event: ChangeEvent) -> None:
            attempts.append(event.change_id)
            if failing.is_set():
                raise RuntimeError(f"billing refused key {secret}")

        group = "billing"
        await engine.subscribe(
            bill,
            delivery=WorkQueue(group=group, max_retries=2, backoff=timedelta(milliseconds=50)),
        )
        change_id = await write(engine, "e-1", 1, run_id="run-dl")
        await wait_for(lambda: engine.dead_letters(group), 15, "a dead letter")
        await asyncio.sleep(0.6)  # a fourth attempt would happen now
        assert attempts == [change_id] * 3

        [dead] = await engine.dead_letters(group)
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
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT last_error FROM {} WHERE group_name = %s").format(
                    sql.Identifier(schema, "deliveries")
                ),
                [group],
            )
            stored = await cursor.fetchall()
        assert len(stored) == 1
        assert secret not in stored[0][0]
        assert all(secret not in record.getMessage() for record in caplog.records)
        status = await group_status(engine, group)
        assert (status["mode"], status["dead_letters"], status["in_flight"], status["waiting"]) == (
            "work-queue",
            1,
            0,
            0,
        )

        failing.clear()
        assert await engine.retry_dead_letters(group) == 1
        await wait_until(lambda: len(attempts) == 4, 10, "the dead letter to be redelivered")
        assert attempts[-1] == change_id
        await wait_for(lambda: group_idle(engine, group), 10, "the group to finish")
        assert await engine.dead_letters(group) == ()
        assert (await group_status(engine, group))["dead_letters"] == 0


async def test_a_group_of_two_members_handles_each_entity_in_order(
    pg_dsn: str, schema: str
) -> None:
    """Two members (two engines), a slow handler: each entity's changes one at a time,
    in order."""
    async with engines(pg_dsn, schema) as open_engine:
        writer = await open_engine()
        define_items(writer)
        handled: list[tuple[str, int, int, float, float]] = []

        def member(number: int) -> Callable[[ChangeEvent], Awaitable[None]]:
            async def handle(event: ChangeEvent) -> None:
                start = time.monotonic()
                await asyncio.sleep(0.05)
                assert event.next is not None
                n = event.next["n"]
                assert isinstance(n, int)
                handled.append((event.entity_id, n, number, start, time.monotonic()))

            return handle

        for number in range(2):
            engine = await open_engine(poll_interval=0.2)
            await engine.subscribe(member(number), delivery=WorkQueue(group="ordered"))
        entities, per_entity = 4, 6
        for n in range(1, per_entity + 1):
            for e in range(entities):
                await write(writer, f"e-{e}", n)
        await wait_until(
            lambda: len(handled) >= entities * per_entity, 30, "every change to be handled"
        )
        await wait_for(lambda: group_idle(writer, "ordered"), 10, "the group to finish")

        assert len(handled) == entities * per_entity
        assert {number for _, _, number, _, _ in handled} == {0, 1}  # both members worked
        for e in range(entities):
            runs = sorted(
                (start, end, n) for entity, n, _, start, end in handled if entity == f"e-{e}"
            )
            assert [n for _, _, n in runs] == list(range(1, per_entity + 1))
            for (_, end, _), (start, _, _) in itertools.pairwise(runs):
                assert start >= end, f"e-{e}: two changes handled at once"


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
            Jsonb(prev) if prev is not None else None,
            Jsonb(nxt),
            Jsonb({"n": nxt["n"]}),
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
            None if prev is None else Jsonb(prev["n"]),
            Jsonb(nxt["n"]),
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


async def test_the_feed_migration_upgrades_a_version_1_database_in_place(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-1 schema with changes is migrated in place by ``aio.compose.postgres``:
    old changes first, new after. (The fixture set-up is blocking SQL: it is the data.)"""
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
    async with engines(pg_dsn, schema) as open_engine:
        engine = await open_engine()  # migrates
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert migrations.schema_version(conn, schema) == migrations.latest_version()
            assert _snapshot(conn, schema) == before  # same rows, same places, same files
        _, storage = define_items(engine)
        storage.rows.update({"old-1": FeedItem(2, "v1"), "old-2": FeedItem(1, "v1")})
        old_ids = [row[2] for row in before[0]]
        new_ids = [await write(engine, "old-1", 3), await write(engine, "new-1", 1)]

        feed = await engine.changes(kind=KIND)
        assert [event.change_id for event in feed] == old_ids + new_ids
        positions = [event.position for event in feed]
        assert all(position is not None for position in positions)
        assert positions == sorted(p for p in positions if p is not None)
        assert [p.transaction for p in positions[:3] if p is not None] == [0, 0, 0]
        assert [p.sequence for p in positions[:3] if p is not None] == [row[1] for row in before[0]]
        assert all(p is not None and p.transaction > 0 for p in positions[3:])
        history = await engine.handle(KIND).changes("old-1")
        assert [event.change_id for event in history] == [old_ids[0], old_ids[2], new_ids[0]]
        assert [event.op for event in history] == ["create", "update", "update"]
        assert history[-1].prev == {"n": 2, "writer": "v1"}


async def test_close_stops_every_delivery_task_within_5_seconds(pg_dsn: str, schema: str) -> None:
    """close() ends the listener and every durable task (one mid-handler) within 5 s."""
    async with engines(pg_dsn, schema) as open_engine:
        existing = asyncio.all_tasks()
        engine = await open_engine(poll_interval=0.2)
        define_items(engine)
        in_handler = asyncio.Event()

        async def slow(_: ChangeEvent) -> None:
            in_handler.set()
            await asyncio.sleep(1.0)

        await engine.subscribe(Received(), delivery=Broadcast())
        await engine.subscribe(Received(), kind=KIND, delivery=Broadcast(consumer="c"))
        await engine.subscribe(slow, delivery=WorkQueue(group="w"))
        await write(engine, "e-1", 1)
        await asyncio.wait_for(in_handler.wait(), 10)

        def ours() -> list[str]:
            return sorted(
                t.get_name()
                for t in asyncio.all_tasks()
                if t not in existing
                and not t.done()
                and t.get_name().startswith("reactive-entities-")
            )

        names = ours()
        assert len(names) == 4, names
        assert any(name.startswith("reactive-entities-listen") for name in names)
        assert any(name.startswith("reactive-entities-work-queue[w]") for name in names)
        started = time.monotonic()
        await engine.close()
        assert time.monotonic() - started < 5.0
        assert ours() == []


async def test_changes_takes_a_position_or_its_str_and_checks_its_arguments(
    pg_dsn: str, schema: str
) -> None:
    """after= takes a Position or its str; bad positions and limits are InvalidArgumentError."""
    async with engines(pg_dsn, schema) as open_engine:
        engine = await open_engine()
        define_items(engine)
        ids = [await write(engine, f"e-{k % 2}", k) for k in range(5)]
        everything = await engine.changes()
        assert [event.change_id for event in everything] == ids
        positions = [event.position for event in everything]
        assert all(p is not None for p in positions)
        assert all(a < b for a, b in itertools.pairwise(p for p in positions if p is not None))

        middle = everything[1].position
        assert middle is not None
        assert Position.parse(str(middle)) == middle
        assert await engine.changes(after=str(middle)) == everything[2:]
        assert await engine.changes(after=middle) == everything[2:]
        assert await engine.changes(after=str(everything[-1].position)) == ()
        assert await engine.changes(limit=2) == everything[:2]
        assert await engine.changes(after=str(everything[0].position), limit=2) == everything[1:3]
        assert await engine.changes(kind=KIND, limit=100) == everything
        entity = await engine.handle(KIND).changes("e-0")
        assert [event.change_id for event in entity] == ids[0::2]
        assert all(event.position is not None for event in entity)
        assert await engine.handle(KIND).changes("e-0", limit=1) == entity[-1:]

        for bad in ["", "abc", "1-", "-1", "1-2-3", "1.5-2", " 1-2", "0x1-2", "１-2", "-1-2"]:
            with pytest.raises(InvalidArgumentError):
                await engine.changes(after=bad)
        for wrong in [5, 1.5, b"1-2", ("1", "2")]:
            with pytest.raises(InvalidArgumentError):
                await engine.changes(after=wrong)  # type: ignore[arg-type]
        for limit in [0, -1, True, 1.5, "5", None]:
            with pytest.raises(InvalidArgumentError):
                await engine.changes(limit=limit)  # type: ignore[arg-type]
        with pytest.raises(UnknownKindError):
            await engine.changes(kind="no-such-kind")


# == test_transactions: lock waits across engines =========================================


async def test_lock_waits_are_bounded_across_engines(pg_dsn: str, pg_schema: str) -> None:
    """test_lock_waits_are_bounded[postgres] as the blocking test runs it: the holder and
    the waiter are two engines (so the wait is on the database's lock, not in-process);
    it ends after ``lock_timeout`` with StoreError naming ``kind:id``; apply never runs."""
    bounded = {"lock_timeout": timedelta(milliseconds=200)}
    async with (
        open_world("postgres", pg_dsn, pg_schema) as holder_world,
        open_world("postgres", pg_dsn, pg_schema, **bounded) as waiter_world,
    ):
        entity_id = fresh_id()
        held, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with holder_world.engine.transaction() as tx:
                put = holder_world.storage.put(entity_id, OPEN)
                await holder_world.handle.mutate(entity_id, put, tx=tx)
                held.set()
                await asyncio.wait_for(release.wait(), 10)

        task = asyncio.create_task(holder())
        applied: list[int] = []

        def apply() -> Incident:
            applied.append(1)
            return OPEN

        try:
            await asyncio.wait_for(held.wait(), 10)
            started = time.monotonic()
            with pytest.raises(StoreError, match=f"timed out.*incident:{entity_id}"):
                await waiter_world.handle.mutate(entity_id, apply)
            assert 0.15 < time.monotonic() - started < 5
            assert applied == []
        finally:
            release.set()
            await asyncio.wait_for(task, 10)
