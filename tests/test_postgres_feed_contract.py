"""The PostgreSQL change feed passes the same feed contract as the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres.feed import PostgresFeed
from reactive_entities.adapters.postgres.store import PostgresEntityStore
from reactive_entities.testing import ChangeFeedContract
from reactive_entities.testing.feed_contract import FeedWorld

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pool(pg_dsn: str, pg_schema: str) -> Iterator[ConnectionPool]:
    """A pool on the test database, with the module's schema migrated."""
    with ConnectionPool(
        pg_dsn, min_size=1, max_size=12, kwargs={"autocommit": True}, open=True
    ) as pool:
        PostgresEntityStore(pool, schema=pg_schema).migrate()
        yield pool


class TestPostgresFeed(ChangeFeedContract):
    """``PostgresFeed`` over ``PostgresEntityStore`` (injected clock) honours the contract."""

    @pytest.fixture
    def world(
        self, clock: ManualClock, pool: ConnectionPool, pg_schema: str, pg_dsn: str
    ) -> Iterator[FeedWorld]:
        """The PostgreSQL store and its feed on one schema and one manual clock."""
        store = PostgresEntityStore(pool, schema=pg_schema, clock=clock)
        feed = PostgresFeed(store, conninfo=pg_dsn)
        yield FeedWorld(store=store, feed=feed)
        feed.close()
        store.close()
