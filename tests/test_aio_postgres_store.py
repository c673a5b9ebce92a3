"""The asyncio PostgreSQL store: the async store contract, and what is particular to
PostgreSQL — the database clock, locks across sessions (bounded), the application's
connection, cancellation, and a commit whose connection is lost (SPEC §14)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus

from reactive_entities import aio
from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.async_store import AsyncPostgresEntityStore
from reactive_entities.adapters.postgres.connections import open_async_pool
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.json import Document
from reactive_entities.testing import AsyncEntityStoreContract
from reactive_entities.testing.async_store_contract import OpenStore, record_async
from reactive_entities.testing.builders import make_plan
from reactive_entities.testing.proxy import Cut, PostgresProxy

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def migrated(pg_dsn: str, pg_schema: str) -> str:
    """The module's schema, migrated (through the sync path: fixtures are plain)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.migrate(conn, pg_schema)
    return pg_schema


def _truncate(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}, {}").format(
                sql.Identifier(schema, "changes"), sql.Identifier(schema, "transitions")
            )
        )


@asynccontextmanager
async def opened(
    dsn: str, schema: str, pool_size: int = 4, **options: Any
) -> AsyncIterator[AsyncPostgresEntityStore]:
    """A store with its own pool, closed when the block ends."""
    store = await AsyncPostgresEntityStore.connect(
        dsn, schema=schema, pool_size=pool_size, **options
    )
    try:
        yield store
    finally:
        await store.close()


class TestAsyncPostgresStore(AsyncEntityStoreContract):
    """``AsyncPostgresEntityStore`` (with an injected clock) honours the contract."""

    @pytest.fixture
    def open_store(self, clock: ManualClock, pg_dsn: str, migrated: str) -> OpenStore:
        """The store under test, on empty logs."""
        _truncate(pg_dsn, migrated)
        return lambda: opened(pg_dsn, migrated, clock=clock)


# -- PostgreSQL specifics -------------------------------------------------------------------


KIND = "aiopg"
DOC: Document = {"status": "open", "severity": "low"}


def _checked_out(store: AsyncPostgresEntityStore) -> int:
    """Connections out of the pool (exact for a pool of one: it never grows)."""
    stats = store.pool.get_stats()
    return int(stats["pool_size"] - stats.get("pool_available", 0))


async def test_a_lock_wait_past_the_timeout_fails_naming_the_entity(
    pg_dsn: str, migrated: str
) -> None:
    """Another session holds the entity: ``StoreError`` naming ``kind:id`` after the
    timeout; the connection goes back to the pool idle."""
    quick = timedelta(milliseconds=300)
    async with (
        opened(pg_dsn, migrated) as first,
        opened(pg_dsn, migrated, 1, lock_timeout=quick) as second,
    ):
        async with await first.begin() as holder:
            await holder.lock(KIND, "t-1")
            with pytest.raises(StoreError, match="aiopg:t-1") as info:
                async with await second.begin() as late:
                    await late.lock(KIND, "t-1")
            assert "timed out" in str(info.value)
            assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
        assert _checked_out(second) == 0
        await record_async(second, make_plan(KIND, "t-1", None, DOC))


async def test_cancelled_while_waiting_for_another_sessions_lock(
    pg_dsn: str, migrated: str
) -> None:
    """A task cancelled while waiting for an advisory lock held by another connection
    leaves nothing: its connection is back in the pool, idle, and holds no lock."""
    async with opened(pg_dsn, migrated) as first, opened(pg_dsn, migrated, 1) as second:
        started = asyncio.Event()

        async def waiter() -> None:
            async with await second.begin() as tx:
                started.set()
                await tx.lock(KIND, "c-1")
                await tx.record(make_plan(KIND, "c-1", None, {**DOC, "by": "waiter"}))
                await tx.commit()

        async with await first.begin() as holder:
            await holder.lock(KIND, "c-1")
            task = asyncio.ensure_future(waiter())
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _checked_out(second) == 0
            await holder.record(make_plan(KIND, "c-1", None, DOC))
            await holder.commit()
        async with second.pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE
        assert [r.to_value for r in await first.transitions(KIND, "c-1", "status")] == ["open"]
        await record_async(second, make_plan(KIND, "c-1", DOC, {**DOC, "status": "closed"}))


async def test_cancelled_mid_apply_releases_the_lock_and_the_connection(
    pg_dsn: str, migrated: str
) -> None:
    """Cancelled while holding the entity (as inside ``apply``): rolled back, the lock
    free for another session at once, the connection back in the pool."""
    async with (
        opened(pg_dsn, migrated, 1) as store,
        opened(pg_dsn, migrated, lock_timeout=timedelta(seconds=2)) as other,
    ):
        inside = asyncio.Event()

        async def write() -> None:
            async with await store.begin() as tx:
                await tx.lock(KIND, "m-1")
                await tx.connection.execute("SELECT 1")
                inside.set()
                await asyncio.sleep(30)  # the application's apply, awaiting
                await tx.record(make_plan(KIND, "m-1", None, DOC))
                await tx.commit()

        task = asyncio.ensure_future(write())
        await asyncio.wait_for(inside.wait(), 10)
        assert _checked_out(store) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _checked_out(store) == 0
        assert await store.transitions(KIND, "m-1") == ()
        await record_async(other, make_plan(KIND, "m-1", None, DOC))


async def test_begin_refuses_a_connection_it_cannot_use(pg_dsn: str, migrated: str) -> None:
    """A busy, closed or sync connection is refused; a joined one is left idle."""
    async with opened(pg_dsn, migrated) as store:
        conn = await psycopg.AsyncConnection.connect(pg_dsn)
        await conn.execute("SELECT 1")
        with pytest.raises(InvalidArgumentError, match="idle"):
            await store.begin(connection=conn)
        await conn.rollback()
        async with await store.begin(connection=conn) as tx:
            assert tx.connection is conn
            await tx.lock(KIND, "j-1")
            await tx.record(make_plan(KIND, "j-1", None, DOC))
            await tx.commit()
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.autocommit is False
        await conn.close()
        with pytest.raises(InvalidArgumentError, match="closed"):
            await store.begin(connection=conn)
        with pytest.raises(InvalidArgumentError, match=r"psycopg\.AsyncConnection"):
            await store.begin(object())
        assert len(await store.transitions(KIND, "j-1")) == 2


@pytest.mark.parametrize(
    ("cut", "recorded"),
    [
        (Cut.AFTER_COMMIT_REPLY, True),
        (Cut.BEFORE_COMMIT_REPLY, True),
        (Cut.BEFORE_COMMIT_SENT, False),
    ],
    ids=str,
)
async def test_a_lost_commit_is_settled_on_a_fresh_connection(
    pg_dsn: str, migrated: str, cut: Cut, recorded: bool
) -> None:
    """SPEC §14.7: the connection is cut at COMMIT; the store asks a fresh one. Committed
    → success and ``then`` runs; not → ``StoreError`` "not recorded"."""
    with PostgresProxy(pg_dsn) as proxy:
        async with opened(proxy.dsn, migrated) as store:
            entity = f"lost-{cut.name}"
            ran: list[str] = []
            proxy.arm(cut)
            async with await store.begin() as tx:
                await tx.lock(KIND, entity)
                await tx.record(make_plan(KIND, entity, None, DOC))
                if recorded:
                    await tx.commit(then=lambda: ran.append("then"))
                else:
                    with pytest.raises(StoreError, match="not recorded"):
                        await tx.commit(then=lambda: ran.append("then"))
            assert proxy.cuts == 1
            assert ran == (["then"] if recorded else [])
            assert len(await store.transitions(KIND, entity)) == (2 if recorded else 0)
            await record_async(store, make_plan(KIND, f"{entity}-after", None, DOC))
        assert proxy.wait_idle(10.0)


async def test_outcome_unknown_when_the_server_cannot_be_asked(pg_dsn: str, migrated: str) -> None:
    """Cut after the server committed, and no new connection allowed: ``StoreError``
    saying the outcome is unknown, naming the change id."""
    with PostgresProxy(pg_dsn) as proxy:
        store = AsyncPostgresEntityStore(
            await _pool(proxy.dsn), schema=migrated, owns_pool=True, dsn=proxy.dsn
        )
        plan = make_plan(KIND, "unknown-1", None, DOC)
        proxy.arm(Cut.AFTER_COMMIT_REPLY, refuse_after=True)
        with pytest.raises(StoreError, match="outcome is unknown") as info:
            await record_async(store, plan)
        assert plan.change_id in str(info.value)
        proxy.refuse(False)
        await store.close()
        assert proxy.wait_idle(10.0)


async def _pool(dsn: str) -> Any:
    return await open_async_pool(dsn, size=2, timeout=5.0, name="aio-test")


# -- acceptance: many tasks, one loop, through the AsyncEngine ------------------------------


@attrs.frozen
class Counter:
    """An entity whose only field counts its updates."""

    n: int


async def test_100_tasks_on_one_loop_mutating_10_entities_keep_every_chain(
    pg_dsn: str, migrated: str
) -> None:
    """100 concurrent mutations of 10 entities through the async PostgreSQL engine: no
    lost update, one change row per change, each entity's rows chained (every row starts
    where the previous one ended), events in per-entity order."""
    app: dict[str, Counter] = {}  # the application's own storage

    async def read(ids: Sequence[str]) -> dict[str, Counter]:
        await asyncio.sleep(0)
        return {i: app[i] for i in ids if i in app}

    kind = "aio_counter"
    events: list[ChangeEvent] = []
    async with await aio.compose.postgres(pg_dsn, schema=migrated, pool_size=8) as engine:
        counters = engine.define_entity(kind, Counter, read=read)
        await engine.subscribe(events.append, kind=kind)

        async def bump(entity_id: str) -> None:
            def apply() -> Counter:
                app[entity_id] = Counter(app[entity_id].n + 1 if entity_id in app else 0)
                return app[entity_id]

            await counters.mutate(entity_id, apply)

        ids = [f"c-{i}" for i in range(10)]
        await asyncio.wait_for(asyncio.gather(*(bump(ids[t % 10]) for t in range(100))), 60)
        for _ in range(200):  # in-process delivery runs after each commit
            if len(events) == 100:
                break
            await asyncio.sleep(0.05)
        for entity_id in ids:
            rows = await engine.store.transitions(kind, entity_id, "n")
            assert [r.to_value for r in rows] == list(range(10))
            assert [r.from_value for r in rows[1:]] == [r.to_value for r in rows[:-1]]
            assert len({r.change_id for r in rows}) == 10
            delivered = [e.next["n"] for e in events if e.entity_id == entity_id and e.next]
            assert delivered == list(range(10))
    assert app == {i: Counter(9) for i in ids}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        query = sql.SQL("SELECT count(*), count(DISTINCT change_id) FROM {} WHERE kind = %s")
        row = conn.execute(query.format(sql.Identifier(migrated, "changes")), [kind]).fetchone()
    assert row == (100, 100)
