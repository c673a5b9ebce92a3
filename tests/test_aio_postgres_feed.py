"""The asyncio PostgreSQL change feed passes the async feed contract, and its LISTEN
task lives in the loop: started by the first ``on_commit``, stopped by ``close``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres import migrations
from reactive_entities.adapters.postgres.async_feed import AsyncPostgresFeed
from reactive_entities.adapters.postgres.async_store import AsyncPostgresEntityStore
from reactive_entities.testing import AsyncChangeFeedContract
from reactive_entities.testing.async_feed_contract import AsyncFeedWorld, OpenWorld
from reactive_entities.testing.async_store_contract import record_async
from reactive_entities.testing.builders import make_plan

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def migrated(pg_dsn: str, pg_schema: str) -> str:
    """The module's schema, migrated."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.migrate(conn, pg_schema)
    return pg_schema


@asynccontextmanager
async def world(dsn: str, schema: str, clock: ManualClock | None) -> AsyncIterator[AsyncFeedWorld]:
    """An async store with its own pool and its feed; both closed when the block ends."""
    store = await AsyncPostgresEntityStore.connect(dsn, schema=schema, clock=clock, pool_size=6)
    feed = AsyncPostgresFeed(store, conninfo=store.conninfo)
    try:
        yield AsyncFeedWorld(store=store, feed=feed)
    finally:
        await feed.close()
        await store.close()


class TestAsyncPostgresFeed(AsyncChangeFeedContract):
    """``AsyncPostgresFeed`` over ``AsyncPostgresEntityStore`` honours the contract."""

    @pytest.fixture
    def open_world(self, clock: ManualClock, pg_dsn: str, migrated: str) -> OpenWorld:
        """The store and its feed on the module's schema and one manual clock."""
        return lambda: world(pg_dsn, migrated, clock)


async def test_the_listener_starts_on_first_on_commit_and_stops_on_close(
    pg_dsn: str, migrated: str
) -> None:
    """No LISTEN task before ``on_commit``; one after, waking on a commit; none after
    ``close``, and later wake-ups are not called."""
    async with world(pg_dsn, migrated, None) as w:
        feed = w.feed
        assert isinstance(feed, AsyncPostgresFeed)
        assert _listener(feed) is None
        woken = asyncio.Event()
        feed.on_commit(woken.set)
        listener = _listener(feed)
        assert listener is not None
        await asyncio.wait_for(woken.wait(), 10)  # the catch-up wake after LISTEN
        woken.clear()
        await record_async(w.store, make_plan("aio_feed", "e-1", None, {"status": "open"}))
        await asyncio.wait_for(woken.wait(), 10)
        await feed.close()
        assert listener.done()
        woken.clear()
        await record_async(w.store, make_plan("aio_feed", "e-2", None, {"status": "open"}))
        await asyncio.sleep(0.3)
        assert not woken.is_set()


def _listener(feed: AsyncPostgresFeed) -> asyncio.Task[None] | None:
    """The feed's LISTEN task, if it has one."""
    return feed._listener
