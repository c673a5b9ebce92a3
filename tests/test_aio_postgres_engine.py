"""SPEC §14 on the asyncio engine over PostgreSQL: the twins of the PostgreSQL-specific
tests of test_transactions — the application's own table and the log commit or roll back
together, ``read`` gets ``tx.connection``, joining the application's connection, blocked
handlers hold no pooled connection — plus ``BEGIN`` riding with the first lock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from reactive_entities import ChangeEvent, InvalidArgumentError
from reactive_entities.aio import AsyncEngine, AsyncEntityHandle, AsyncTransaction, compose
from reactive_entities.testing.examples import Incident

pytestmark = pytest.mark.postgres

AsyncConn = psycopg.AsyncConnection[Any]
OPEN = Incident("open", "low")
RESOLVED = Incident("resolved", "low")
_ids = itertools.count()


@attrs.define
class SqlWorld:
    """An asyncio engine whose ``incident`` states live in an application table."""

    engine: AsyncEngine
    app: AsyncConn  #: the application's own autocommit connection
    table: sql.Composable
    events: list[ChangeEvent] = attrs.field(factory=list)
    handle: AsyncEntityHandle[Incident] = attrs.field(init=False)

    async def read(self, ids: Sequence[str], connection: AsyncConn) -> dict[str, Incident]:
        """The plugin's ``read(ids, connection)``: the rows as ``connection`` sees them."""
        query = sql.SQL("SELECT id, doc FROM {} WHERE id = ANY(%s)").format(self.table)
        cursor = await connection.execute(query, (list(ids),))
        return {
            entity_id: self.engine.converter.structure(doc, Incident)
            for entity_id, doc in await cursor.fetchall()
        }

    async def upsert(self, connection: AsyncConn, entity_id: str, state: Incident) -> None:
        """The application's own write of ``state``."""
        query = sql.SQL(
            "INSERT INTO {} (id, doc) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc"
        ).format(self.table)
        await connection.execute(
            query, (entity_id, Jsonb(self.engine.converter.unstructure(state)))
        )

    def put(
        self, entity_id: str, state: Incident, tx: AsyncTransaction | None
    ) -> Callable[[], Awaitable[Incident]]:
        """An async ``apply`` upserting ``state`` on ``tx.connection`` (else the app's)."""

        async def apply() -> Incident:
            await self.upsert(self.app if tx is None else tx.connection, entity_id, state)
            return state

        return apply

    async def stored(self, entity_id: str) -> Incident | None:
        """The committed row, as another session sees it."""
        return (await self.read([entity_id], self.app)).get(entity_id)


@asynccontextmanager
async def sql_world(dsn: str, schema: str, **options: Any) -> AsyncIterator[SqlWorld]:
    """The engine, a fresh application table in ``schema``, a collecting subscriber."""
    async with (
        await compose.postgres(dsn, schema=schema, **options) as engine,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as app,
    ):
        name = f"aio_app_{next(_ids)}"
        table = sql.Identifier(schema, name)
        await app.execute(
            sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, doc jsonb NOT NULL)").format(table)
        )
        world = SqlWorld(engine, app, table)
        world.handle = engine.define_entity("incident", Incident, read=world.read)
        await engine.subscribe(world.events.append)
        yield world


async def _count(w: SqlWorld, schema: str, table: str, entity_id: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE entity_id = %s").format(
        sql.Identifier(schema, table)
    )
    row = await (await w.app.execute(query, (entity_id,))).fetchone()
    assert row is not None
    return int(row[0])


async def test_app_writes_and_log_commit_or_roll_back_together(pg_dsn: str, pg_schema: str) -> None:
    """Checked with SQL: after a rollback neither the app's row nor a change or transition
    row exists; after a commit all of them do, and the event follows the commit."""
    async with sql_world(pg_dsn, pg_schema) as w:
        entity_id = f"sql-{next(_ids)}"
        with pytest.raises(RuntimeError, match="app failure"):  # noqa: PT012 (the block under test)
            async with w.engine.transaction() as tx:
                await w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
                assert await w.stored(entity_id) is None  # not committed yet
                assert w.events == []
                raise RuntimeError("app failure")
        assert await _count(w, pg_schema, "changes", entity_id) == 0
        assert await _count(w, pg_schema, "transitions", entity_id) == 0
        assert await w.stored(entity_id) is None
        async with w.engine.transaction() as tx:
            await w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
        assert await _count(w, pg_schema, "changes", entity_id) == 1
        assert await _count(w, pg_schema, "transitions", entity_id) == 5
        assert await w.stored(entity_id) == OPEN
        assert [e.entity_id for e in w.events] == [entity_id]


async def test_the_apps_statement_before_the_first_mutate_is_in_the_transaction(
    pg_dsn: str, pg_schema: str
) -> None:
    """``BEGIN`` rides with the first lock, yet a statement the application runs on
    ``tx.connection`` before any mutate is inside the transaction: it rolls back with
    it, and commits with the change."""
    async with sql_world(pg_dsn, pg_schema) as w:
        first, second = f"pre-{next(_ids)}", f"pre-{next(_ids)}"
        with pytest.raises(RuntimeError):  # noqa: PT012 (the block under test)
            async with w.engine.transaction() as tx:
                await w.upsert(tx.connection, first, OPEN)  # before anything is locked
                await w.handle.mutate(second, w.put(second, OPEN, tx), tx=tx)
                raise RuntimeError("roll back both")
        assert (await w.stored(first), await w.stored(second)) == (None, None)
        assert await _count(w, pg_schema, "changes", second) == 0
        async with w.engine.transaction() as tx:
            await w.upsert(tx.connection, first, OPEN)
            await w.handle.mutate(second, w.put(second, OPEN, tx), tx=tx)
        assert (await w.stored(first), await w.stored(second)) == (OPEN, OPEN)
        query = sql.SQL("SELECT count(DISTINCT xmin::text) FROM {} WHERE id = ANY(%s)").format(
            w.table
        )
        row = await (await w.app.execute(query, ([first, second],))).fetchone()
        assert row is not None
        assert row[0] == 1  # both rows written by one transaction
        # Only the application's statement, no change: it still commits.
        third = f"pre-{next(_ids)}"
        async with w.engine.transaction() as tx:
            await w.upsert(tx.connection, third, OPEN)
        assert await w.stored(third) == OPEN


async def test_a_transaction_that_does_nothing_leaves_the_pool_clean(
    pg_dsn: str, pg_schema: str
) -> None:
    """Entered and left without a statement (or rolled back so): nothing is sent, and
    the connection goes back to the pool idle and in autocommit mode."""
    async with sql_world(pg_dsn, pg_schema, pool_size=1) as w:
        async with w.engine.transaction() as tx:
            connection = tx.connection
        assert connection.info.transaction_status == TransactionStatus.IDLE
        assert connection.autocommit is True
        with pytest.raises(ValueError, match="nothing"):
            async with w.engine.transaction():
                raise ValueError("nothing")
        entity_id = f"idle-{next(_ids)}"  # the one pooled connection still works
        async with w.engine.transaction() as tx:
            await w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
        assert await w.handle.get(entity_id) == OPEN


async def test_read_gets_the_transactions_connection(pg_dsn: str, pg_schema: str) -> None:
    """``read(ids, connection)``: inside a transaction it is ``tx.connection`` (prev sees
    the transaction's own writes); outside, a pooled connection."""
    async with sql_world(pg_dsn, pg_schema) as w:
        seen: list[Any] = []
        original = w.read

        async def read(ids: Sequence[str], connection: AsyncConn) -> dict[str, Incident]:
            seen.append(connection)
            return await original(ids, connection)

        w.handle._read = read
        entity_id = f"read-{next(_ids)}"
        async with w.engine.transaction() as tx:
            await w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
            await w.handle.mutate(entity_id, w.put(entity_id, RESOLVED, tx), tx=tx)
            assert seen == [tx.connection, tx.connection]
        assert [e.op for e in w.events] == ["create", "update"]  # prev saw the first write
        assert await w.handle.get(entity_id) == RESOLVED
        assert isinstance(seen[-1], psycopg.AsyncConnection)
        assert seen[-1] is not seen[0]


async def test_joining_the_apps_connection(pg_dsn: str, pg_schema: str) -> None:
    """``transaction(connection=conn)``: a busy connection is refused; an idle one is
    used and left open and idle, its autocommit setting restored."""
    async with (
        sql_world(pg_dsn, pg_schema) as w,
        await psycopg.AsyncConnection.connect(pg_dsn) as conn,  # not autocommit
    ):
        await conn.execute("SELECT 1")  # now inside an implicit transaction
        with pytest.raises(InvalidArgumentError, match="idle"):
            async with w.engine.transaction(connection=conn):
                pass
        await conn.rollback()
        entity_id = f"join-{next(_ids)}"
        async with w.engine.transaction(connection=conn) as tx:
            assert tx.connection is conn
            await w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
        assert not conn.closed
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.autocommit is False
        assert await w.stored(entity_id) == OPEN
        with pytest.raises(ValueError, match="x"):  # noqa: PT012 (the block under test)
            async with w.engine.transaction(connection=conn) as tx:
                await w.handle.mutate(entity_id, w.put(entity_id, RESOLVED, tx), tx=tx)
                raise ValueError("x")
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert await w.stored(entity_id) == OPEN


async def test_blocked_handlers_hold_no_pooled_connection(pg_dsn: str, pg_schema: str) -> None:
    """``pool_size=2`` and two handlers blocked: other entities' mutates and queries
    proceed (handlers hold no connection)."""
    async with sql_world(pg_dsn, pg_schema, pool_size=2, pool_timeout=3.0) as w:
        release = asyncio.Event()
        blocked = asyncio.Semaphore(0)

        async def block(event: ChangeEvent) -> None:
            if event.entity_id.startswith("held"):
                blocked.release()
                await release.wait()

        await w.engine.subscribe(block)
        writers = [
            asyncio.ensure_future(w.handle.mutate(f"held-{n}", w.put(f"held-{n}", OPEN, None)))
            for n in range(2)
        ]
        try:
            await asyncio.wait_for(blocked.acquire(), 10)
            await asyncio.wait_for(blocked.acquire(), 10)
            for n in range(5):
                entity_id = f"free-{next(_ids)}-{n}"
                await w.handle.mutate(entity_id, w.put(entity_id, OPEN, None))
                assert [r.to_value for r in await w.handle.history(entity_id, field="status")] == [
                    "open"
                ]
                assert await w.handle.in_state_since(entity_id, "status") is not None
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(*writers), 20)
