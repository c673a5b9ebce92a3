"""SPEC §5–§8 on PostgreSQL: the whole mutate pipeline, masking, stamps, temporal
queries, and the round trips a mutation costs."""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from reactive_entities import (
    ABSENT,
    Actor,
    ChangeEvent,
    Engine,
    EntityHandle,
    MissingStateError,
    StateValidationError,
    StoreError,
    compose,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.testing.examples import Incident, define_incidents
from reactive_entities.testing.plugin import DictStorage

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "hunter2-s3cr3t"
_ids = itertools.count()


@attrs.define
class World:
    """A PostgreSQL engine with the incident kind, its storage and received events."""

    engine: Engine
    handle: EntityHandle[Incident]
    storage: DictStorage[Incident]
    events: list[ChangeEvent]
    db: psycopg.Connection[Any]
    schema: str

    def rows(self, table: str, entity_id: str, columns: str) -> list[tuple[Any, ...]]:
        """``columns`` of the entity's rows in ``table``, in recording order."""
        order = "position" if table == "changes" else "id"
        query = sql.SQL("SELECT {} FROM {} WHERE kind = 'incident' AND entity_id = %s ORDER BY {}")
        return self.db.execute(
            query.format(
                sql.SQL(columns), sql.Identifier(self.schema, table), sql.Identifier(order)
            ),
            [entity_id],
        ).fetchall()


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection to the test database."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def world(pg_dsn: str, pg_schema: str, db: psycopg.Connection[Any]) -> Iterator[World]:
    """An engine stamping with the database clock, with a collecting subscriber."""
    with compose.postgres(pg_dsn, schema=pg_schema) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        yield World(engine, handle, storage, events, db, pg_schema)


@pytest.fixture
def entity_id() -> str:
    """An id no other test of this module uses."""
    return f"inc-{next(_ids)}"


def test_create_update_no_op_and_remove_reach_both_logs(world: World, entity_id: str) -> None:
    """SPEC §5: one change row per change plus its rows; no-op nothing; remove no rows."""
    handle, storage = world.handle, world.storage
    created = handle.mutate(entity_id, storage.put(entity_id, Incident("open", "low", "t")))
    assert created == Incident("open", "low", "t")
    handle.mutate(entity_id, storage.patch(entity_id, status="resolved", title="u"))
    assert handle.mutate(entity_id, storage.patch(entity_id)) == storage.rows[entity_id]
    handle.remove(entity_id, storage.delete(entity_id))

    assert [e.op for e in world.events] == ["create", "update", "remove"]
    changes = world.rows("changes", entity_id, "op, change_id::text, occurred_at, changed_fields")
    assert [(op, fields) for op, _, _, fields in changes] == [
        ("create", ["severity", "status", "system_ids", "title", "token"]),
        ("update", ["status", "title"]),
        ("remove", ["severity", "status", "system_ids", "title", "token"]),
    ]
    rows = world.rows("transitions", entity_id, "change_id::text, field, transitioned_at")
    assert len(rows) == 5 + 2
    for event, (_, change_id, occurred_at, _) in zip(world.events, changes, strict=True):
        assert event.change_id == change_id
        assert event.occurred_at == occurred_at  # the event carries the rows' stamp
        assert {at for cid, _, at in rows if cid == change_id} <= {occurred_at}
    assert handle.get(entity_id) is None


def test_rows_and_event_values_match(world: World, entity_id: str) -> None:
    """SPEC §6–§7: the event's documents and the stored rows hold the same values."""
    world.handle.mutate(entity_id, world.storage.put(entity_id, Incident("open", "low")))
    world.handle.mutate(entity_id, world.storage.patch(entity_id, system_ids=("a", "b")))
    event = world.events[-1]
    assert event.delta == {"system_ids": ["a", "b"]}
    stored = world.rows("changes", entity_id, "prev, next, delta, actor, run_id")[-1]
    assert stored == (event.prev, event.next, event.delta, event.actor.to_dict(), None)
    latest = world.handle.history(entity_id, field="system_ids")
    assert [(r.from_value, r.to_value) for r in latest] == [(ABSENT, []), ([], ["a", "b"])]


def test_masked_values_are_all_that_reaches_the_database(world: World, entity_id: str) -> None:
    """SPEC §4: run secrets and sensitive fields are masked in every stored column."""
    world.engine.secrets.register("run-1", [SECRET])
    actor = Actor.user("u-1", name=f"user {SECRET}")
    state = Incident("open", "low", title=f"leak {SECRET}", token="tok-123456")
    returned = world.handle.mutate(
        entity_id, world.storage.put(entity_id, state), actor=actor, run_id="run-1"
    )
    assert returned == state  # what mutate returns is never masked
    stored = world.rows("changes", entity_id, "prev::text, next::text, delta::text, actor::text")
    texts = [text for row in stored for text in row if text is not None]
    stored_rows = world.rows("transitions", entity_id, "field, to_value::text, masked")
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
    assert world.rows("changes", entity_id, "run_id") == [("run-1",)]


def test_failures_before_recording_record_nothing(world: World, entity_id: str) -> None:
    """SPEC §5: a raising apply, None or an invalid state records nothing, unlocks."""

    def boom() -> Incident:
        raise RuntimeError("plugin write failed")

    with pytest.raises(RuntimeError, match="plugin write failed"):
        world.handle.mutate(entity_id, boom)
    with pytest.raises(MissingStateError):
        world.handle.mutate(entity_id, lambda: None)
    with pytest.raises(StateValidationError):
        world.handle.mutate(entity_id, lambda: {"status": "bogus", "severity": "low"})
    assert world.rows("changes", entity_id, "op") == []
    assert world.events == []
    world.handle.mutate(entity_id, world.storage.put(entity_id, Incident("open", "low")))
    assert world.rows("changes", entity_id, "op") == [("create",)]


def test_temporal_queries_follow_the_injected_clock(
    pg_dsn: str, pg_schema: str, entity_id: str
) -> None:
    """SPEC §8 on PostgreSQL with a manual clock: since/for, counts, value_at, history."""
    clock = ManualClock(T0)
    with compose.postgres(pg_dsn, schema=pg_schema, clock=clock) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        handle.mutate(entity_id, storage.put(entity_id, Incident("open", "low")))
        for minutes, status in ((1, "investigating"), (3, "resolved"), (6, "open")):
            clock.set(T0 + timedelta(minutes=minutes))
            handle.mutate(entity_id, storage.patch(entity_id, status=status))
        assert [e.occurred_at for e in events] == [T0 + timedelta(minutes=m) for m in (0, 1, 3, 6)]
        clock.set(T0 + timedelta(minutes=10))
        assert handle.in_state_since(entity_id, "status") == T0 + timedelta(minutes=6)
        assert handle.in_state_for(entity_id, "status") == timedelta(minutes=4)
        assert handle.in_state_since(entity_id, "severity") == T0
        assert handle.transition_count(entity_id, "status", window=timedelta(minutes=9)) == 3
        assert handle.transition_count(entity_id, "status", window=timedelta(minutes=4)) == 1
        assert handle.value_at(entity_id, "status", T0 + timedelta(minutes=2)) == "investigating"
        assert handle.value_at(entity_id, "status", T0 - timedelta(minutes=1)) is None
        newest = handle.history(entity_id, field="status", limit=2)
        assert [r.to_value for r in newest] == ["resolved", "open"]
        since = handle.history(entity_id, since=T0 + timedelta(minutes=3))
        assert [r.to_value for r in since] == ["resolved", "open"]
        handle.remove(entity_id, storage.delete(entity_id))
        assert handle.in_state_since(entity_id, "status") is None
        assert handle.value_at(entity_id, "status", clock.now()) is None
        assert handle.transition_count(entity_id, "status", window=timedelta(hours=1)) == 4


# -- round trips --------------------------------------------------------------------------


@contextmanager
def _count_round_trips(pool: ConnectionPool) -> Iterator[list[int]]:
    """Trace the pool's only connection; yields a list that receives the number of
    client messages ending a round trip (simple ``Query`` or extended ``Sync``)."""
    fd, path = tempfile.mkstemp(prefix="re-trace-")
    result: list[int] = []
    try:
        with pool.connection() as conn:
            conn.pgconn.trace(fd)
        yield result
        with pool.connection() as conn:
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
def test_round_trips_per_mutation(
    pg_dsn: str, pg_schema: str, entity_id: str, locking: bool, expected: int
) -> None:
    """A mutate costs 2 store round trips (begin+lock+stamp; inserts+commit), locked or
    not (unlocked only skips the advisory lock); a no-op 2 (begin+lock+stamp; commit)."""
    with compose.postgres(pg_dsn, schema=pg_schema, pool_size=1, locking=locking) as engine:
        handle, storage = define_incidents(engine)
        pool: ConnectionPool = engine.store.pool  # type: ignore[attr-defined]
        handle.mutate(entity_id, storage.put(entity_id, Incident("open", "low")))  # warm up
        handle.mutate(entity_id, storage.patch(entity_id, status="resolved"))  # prepare
        with _count_round_trips(pool) as mutate:
            handle.mutate(entity_id, storage.patch(entity_id, status="open", title="x"))
        assert mutate == [expected]
        with _count_round_trips(pool) as no_op:
            handle.mutate(entity_id, storage.patch(entity_id))
        assert no_op == [2]
        handle.in_state_since(entity_id, "status")  # prepare
        with _count_round_trips(pool) as query:
            handle.in_state_since(entity_id, "status")
        assert query == [1]


# -- composition --------------------------------------------------------------------------


def test_engine_closes_the_pool_it_opened_only(pg_dsn: str, pg_schema: str) -> None:
    """``close`` closes the pool ``compose.postgres`` opened, never one it was given."""
    engine = compose.postgres(pg_dsn, schema=pg_schema)
    own: ConnectionPool = engine.store.pool  # type: ignore[attr-defined]
    engine.close()
    assert own.closed
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as given:
        with compose.postgres(pool=given, schema=pg_schema) as engine:
            handle, storage = define_incidents(engine)
            handle.mutate("inc-given", storage.put("inc-given", Incident("open", "low")))
        assert not given.closed
        with given.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_unreachable_server_fails_fast_with_store_error() -> None:
    """Composing against a port nobody listens on raises ``StoreError`` at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreError, match="could not connect") as info:
        compose.postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert time.monotonic() - started < 5


def test_no_dsn_means_the_libpq_environment(
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
    with compose.postgres(schema=pg_schema) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("inc-env", storage.put("inc-env", Incident("open", "low")))
        assert len(handle.history("inc-env")) == 5
