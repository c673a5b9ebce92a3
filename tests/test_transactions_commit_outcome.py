"""SPEC §14.7 on PostgreSQL: the connection fails while a write commits (issue 10).

A proxy (``reactive_entities.testing.proxy``) sits between the engine and the server
and cuts the committing connection at a chosen point: after the server committed (its
``COMMIT`` reply forwarded, or dropped), or before the ``COMMIT`` reached it. The store
then asks a fresh connection — through the proxy too — what happened. Every case ends
by showing the same engine works again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import psycopg
import pytest
from psycopg import sql

from reactive_entities import ChangeEvent, Engine, EntityHandle, StoreError, compose
from reactive_entities.testing.proxy import Cut, PostgresProxy
from reactive_entities.testing.sql_plugin import SqlStorage

pytestmark = pytest.mark.postgres

Mode = Literal["plain", "transaction", "joined"]
#: How the write runs: a mutate on its own (the app's row written on its own
#: connection), in ``engine.transaction()`` (a pooled connection), or in
#: ``engine.transaction(connection=...)`` joining the app's connection (through the proxy).
MODES: tuple[Mode, ...] = ("plain", "transaction", "joined")
_ids = itertools.count()


@attrs.frozen
class Order:
    """An order the application keeps as a row of its own table."""

    status: Literal["cart", "paid", "shipped"]
    total: int


def _order(doc: Any) -> Order:
    return Order(**doc)


@attrs.define
class World:
    """An engine connected through the proxy, the app's table and received events."""

    engine: Engine
    handle: EntityHandle[Order]
    storage: SqlStorage[Order]
    proxy: PostgresProxy
    db: psycopg.Connection[Any]  # direct, for assertions
    schema: str
    events: list[ChangeEvent]

    def write(self, entity_id: str, state: Order, mode: Mode) -> Order:
        """Write ``state`` as the application would, in ``mode``; returns mutate's value."""
        handle, storage = self.handle, self.storage
        if mode == "plain":
            return handle.mutate(entity_id, storage.put(self.db, entity_id, state))
        if mode == "transaction":
            with self.engine.transaction() as tx:
                return handle.mutate(entity_id, storage.put(tx.connection, entity_id, state), tx=tx)
        conn = psycopg.connect(self.proxy.dsn)
        try:
            with self.engine.transaction(connection=conn) as tx:
                return handle.mutate(entity_id, storage.put(conn, entity_id, state), tx=tx)
        finally:
            conn.close()

    def change_ids(self, entity_id: str) -> list[str]:
        """The entity's change ids in the log, oldest first."""
        query = sql.SQL(
            "SELECT change_id::text FROM {} WHERE kind = 'order' AND entity_id = %s"
            " ORDER BY position"
        ).format(sql.Identifier(self.schema, "changes"))
        return [row[0] for row in self.db.execute(query, [entity_id])]

    def transition_count(self, entity_id: str) -> int:
        """The entity's transition rows."""
        query = sql.SQL("SELECT count(*) FROM {} WHERE kind = 'order' AND entity_id = %s").format(
            sql.Identifier(self.schema, "transitions")
        )
        row = self.db.execute(query, [entity_id]).fetchone()
        assert row is not None
        return int(row[0])

    def app_row(self, entity_id: str) -> Order | None:
        """The application's row, read directly."""
        return self.storage.read([entity_id], self.db).get(entity_id)

    def delivered(self, entity_id: str) -> list[str]:
        """Change ids of the events a subscriber received for the entity, in order."""
        return [e.change_id for e in self.events if e.entity_id == entity_id]

    def assert_works_again(self, mode: Mode) -> None:
        """A further write through the same engine is recorded and delivered once."""
        entity_id = _new_id()
        assert self.write(entity_id, Order("cart", 1), mode) == Order("cart", 1)
        ids = self.change_ids(entity_id)
        assert len(ids) == 1
        assert self.delivered(entity_id) == ids


def _new_id() -> str:
    return f"order-{next(_ids)}"


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[PostgresProxy]:
    """A proxy to the test server; after the test, every connection through it ended."""
    with PostgresProxy(pg_dsn) as proxy:
        yield proxy
        assert proxy.wait_idle(10.0), f"{proxy.open_connections} connection(s) left open"


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct autocommit connection to the test database (not through the proxy)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def world(proxy: PostgresProxy, db: psycopg.Connection[Any], pg_schema: str) -> Iterator[World]:
    """An engine whose every connection (the outcome check's too) goes through the proxy."""
    with compose.postgres(proxy.dsn, schema=pg_schema) as engine:
        storage = SqlStorage(pg_schema, "orders", to_doc=attrs.asdict, from_doc=_order)
        storage.create_table(db)
        handle = engine.define_entity("order", Order, read=storage.read)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        yield World(engine, handle, storage, proxy, db, pg_schema, events)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", [Cut.AFTER_COMMIT_REPLY, Cut.BEFORE_COMMIT_REPLY], ids=str)
def test_cut_after_the_server_committed_returns_normally_and_delivers_once(
    world: World, cut: Cut, mode: Mode
) -> None:
    """The server committed, the connection died: mutate returns, one event, one change."""
    entity_id = _new_id()
    world.proxy.arm(cut)

    assert world.write(entity_id, Order("paid", 30), mode) == Order("paid", 30)

    assert world.proxy.cuts == 1  # the commit really lost its connection
    (change_id,) = world.change_ids(entity_id)
    assert world.transition_count(entity_id) == 2
    assert world.delivered(entity_id) == [change_id]
    assert world.app_row(entity_id) == Order("paid", 30)
    world.assert_works_again(mode)
    assert world.delivered(entity_id) == [change_id]  # still once: nothing redelivered


@pytest.mark.parametrize("mode", MODES)
def test_cut_before_the_commit_reached_the_server_records_nothing(world: World, mode: Mode) -> None:
    """The COMMIT never reached the server: StoreError, no event, no change, no app row."""
    entity_id = _new_id()
    world.proxy.arm(Cut.BEFORE_COMMIT_SENT)

    with pytest.raises(StoreError, match="it was not recorded"):
        world.write(entity_id, Order("paid", 30), mode)

    assert world.proxy.cuts == 1
    assert world.change_ids(entity_id) == []
    assert world.transition_count(entity_id) == 0
    assert world.delivered(entity_id) == []
    if mode != "plain":  # a plain mutate's app row was committed on its own, before
        assert world.app_row(entity_id) is None
        # Retrying the whole transaction records the change, once.
        assert world.write(entity_id, Order("paid", 30), mode) == Order("paid", 30)
        (change_id,) = world.change_ids(entity_id)
        assert world.delivered(entity_id) == [change_id]
        assert world.app_row(entity_id) == Order("paid", 30)
    world.assert_works_again(mode)


@pytest.mark.parametrize("mode", MODES)
def test_outcome_unknown_when_the_server_cannot_be_asked(world: World, mode: Mode) -> None:
    """Server unreachable for the check: StoreError "outcome is unknown" naming the change."""
    entity_id = _new_id()
    world.proxy.arm(Cut.AFTER_COMMIT_REPLY, refuse_after=True)

    with pytest.raises(StoreError, match="outcome is unknown") as info:
        world.write(entity_id, Order("paid", 30), mode)

    assert world.proxy.cuts == 1
    assert world.proxy.refused >= 1  # the check tried to connect and was turned away
    (change_id,) = world.change_ids(entity_id)  # the server did commit it
    assert change_id in str(info.value)
    assert world.delivered(entity_id) == []
    world.proxy.refuse(False)
    world.assert_works_again(mode)


def test_a_transaction_of_several_changes_settles_all_of_them(world: World) -> None:
    """Three changes cut after the COMMIT reply: each delivered once, in recording order."""
    first, second = _new_id(), _new_id()
    world.proxy.arm(Cut.AFTER_COMMIT_REPLY)
    with world.engine.transaction() as tx:
        conn, put = tx.connection, world.storage.put
        world.handle.mutate(first, put(conn, first, Order("cart", 10)), tx=tx)
        world.handle.mutate(second, put(conn, second, Order("cart", 20)), tx=tx)
        world.handle.mutate(first, put(conn, first, Order("paid", 10)), tx=tx)

    assert world.proxy.cuts == 1
    recorded = world.change_ids(first) + world.change_ids(second)
    assert len(recorded) == 3
    assert [e.change_id for e in world.events] == [recorded[0], recorded[2], recorded[1]]
    assert [e.op for e in world.events] == ["create", "create", "update"]
    assert world.app_row(first) == Order("paid", 10)
    world.assert_works_again("transaction")


def test_several_changes_lost_before_commit_are_all_unrecorded(world: World) -> None:
    """Two changes whose COMMIT never reached the server: StoreError, neither recorded."""
    first, second = _new_id(), _new_id()
    world.proxy.arm(Cut.BEFORE_COMMIT_SENT)

    def write_both() -> None:
        with world.engine.transaction() as tx:
            conn, put = tx.connection, world.storage.put
            world.handle.mutate(first, put(conn, first, Order("cart", 10)), tx=tx)
            world.handle.mutate(second, put(conn, second, Order("cart", 20)), tx=tx)

    with pytest.raises(StoreError, match="not recorded"):
        write_both()

    assert world.proxy.cuts == 1
    assert world.change_ids(first) == world.change_ids(second) == []
    assert world.events == []
    assert world.app_row(first) is None
    assert world.app_row(second) is None
    world.assert_works_again("transaction")
