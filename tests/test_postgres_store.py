"""The PostgreSQL store honours the store contract, stamps with one clock, and locks
across sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres import PostgresEntityStore
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ABSENT
from reactive_entities.domain.json import Document
from reactive_entities.ports.store import EntityStore
from reactive_entities.testing import EntityStoreContract, make_change

pytestmark = pytest.mark.postgres

KIND = "pgstore"
DOC: Document = {"status": "open", "severity": "low"}


@pytest.fixture(scope="module")
def pool(pg_dsn: str, pg_schema: str) -> Iterator[ConnectionPool]:
    """A pool on the test database, with the module's schema migrated."""
    with ConnectionPool(
        pg_dsn, min_size=1, max_size=12, kwargs={"autocommit": True}, open=True
    ) as pool:
        PostgresEntityStore(pool, schema=pg_schema).migrate()
        yield pool


@pytest.fixture
def fresh_pool(pool: ConnectionPool, pg_schema: str) -> ConnectionPool:
    """The module's pool, with both logs emptied."""
    with pool.connection() as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}, {}").format(
                sql.Identifier(pg_schema, "changes"), sql.Identifier(pg_schema, "transitions")
            )
        )
    return pool


class TestPostgresStore(EntityStoreContract):
    """``PostgresEntityStore`` (with an injected clock) honours the store contract."""

    @pytest.fixture
    def store(
        self, clock: ManualClock, fresh_pool: ConnectionPool, pg_schema: str
    ) -> Iterator[EntityStore]:
        """The store under test, on empty logs."""
        store = PostgresEntityStore(fresh_pool, schema=pg_schema, clock=clock)
        yield store
        store.close()


# -- the database clock -------------------------------------------------------------------


@pytest.fixture
def db_store(fresh_pool: ConnectionPool, pg_schema: str) -> Iterator[PostgresEntityStore]:
    """A store stamping with the database clock, on empty logs."""
    store = PostgresEntityStore(fresh_pool, schema=pg_schema)
    yield store
    store.close()


def _db_now(pool: ConnectionPool) -> datetime:
    with pool.connection() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def test_database_clock_stamps_every_row_and_the_change(
    db_store: PostgresEntityStore, fresh_pool: ConnectionPool
) -> None:
    """With no clock injected, one database timestamp stamps all rows and the change."""
    before = _db_now(fresh_pool)
    change = make_change(KIND, "e-1", None, DOC, at=datetime(2001, 1, 1, tzinfo=UTC))
    stamp = db_store.record(change)
    after = _db_now(fresh_pool)
    assert before <= stamp <= after
    assert stamp.tzinfo is UTC
    rows = db_store.transitions(KIND, "e-1")
    assert {r.transitioned_at for r in rows} == {stamp}
    latest = db_store.latest_change(KIND, "e-1")
    assert latest is not None
    assert latest.occurred_at == stamp


def test_database_clock_now_and_windows(
    db_store: PostgresEntityStore, fresh_pool: ConnectionPool
) -> None:
    """``now`` reads the database clock; a window without ``until`` ends at its now."""
    stamp = db_store.record(make_change(KIND, "e-1", None, DOC, at=datetime.now(UTC)))
    now = db_store.now()
    assert stamp <= now <= _db_now(fresh_pool)
    assert db_store.count_transitions(KIND, "e-1", "status", timedelta(hours=1)) == 1
    assert db_store.count_transitions(KIND, "e-1", "status", stamp, stamp) == 1
    assert db_store.count_transitions(KIND, "e-1", "status", stamp) == 1
    earlier = stamp - timedelta(microseconds=1)
    assert db_store.count_transitions(KIND, "e-1", "status", timedelta(hours=1), earlier) == 0


def test_database_clock_stamps_never_decrease(db_store: PostgresEntityStore) -> None:
    """Successive changes of one entity get non-decreasing database stamps."""
    doc: Document = dict(DOC)
    stamps = [db_store.record(make_change(KIND, "e-1", None, doc, at=datetime.now(UTC)))]
    for i in range(5):
        nxt: Document = {**doc, "status": f"s{i}"}
        stamps.append(db_store.record(make_change(KIND, "e-1", doc, nxt, at=datetime.now(UTC))))
        doc = nxt
    assert stamps == sorted(stamps)
    rows = db_store.transitions(KIND, "e-1", field="status")
    assert [r.transitioned_at for r in rows] == stamps


# -- injected clock details ---------------------------------------------------------------


def test_injected_clock_adopts_a_proposed_time_not_in_its_future(
    fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """A proposed ``occurred_at`` no later than the clock is kept; a future one is not."""
    clock = ManualClock()
    store = PostgresEntityStore(fresh_pool, schema=pg_schema, clock=clock)
    past = clock.now() - timedelta(minutes=1)
    assert store.record(make_change(KIND, "e-1", None, DOC, at=past)) == past
    future = clock.now() + timedelta(minutes=1)
    assert store.record(make_change(KIND, "e-2", None, DOC, at=future)) == clock.now()


def test_stamps_never_go_back_for_one_entity(fresh_pool: ConnectionPool, pg_schema: str) -> None:
    """A proposed time earlier than the entity's last stamp is raised to that stamp."""
    clock = ManualClock()
    store = PostgresEntityStore(fresh_pool, schema=pg_schema, clock=clock)
    first = store.record(make_change(KIND, "e-1", None, DOC, at=clock.now()))
    nxt: Document = {**DOC, "status": "closed"}
    earlier = first - timedelta(minutes=5)
    assert store.record(make_change(KIND, "e-1", DOC, nxt, at=earlier)) == first
    other = store.record(make_change(KIND, "e-2", None, DOC, at=earlier))
    assert other == earlier  # another entity is unaffected


# -- locking across sessions --------------------------------------------------------------


def test_advisory_lock_serializes_two_stores(
    pg_dsn: str, fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """Two stores with separate pools (separate sessions) exclude each other per entity."""
    first = PostgresEntityStore(fresh_pool, schema=pg_schema)
    with ConnectionPool(
        pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    ) as other:
        second = PostgresEntityStore(other, schema=pg_schema)
        entered = threading.Event()

        def contend() -> None:
            with second.lock(KIND, "e-1"):
                entered.set()

        with first.lock(KIND, "e-1"):
            thread = threading.Thread(target=contend)
            thread.start()
            assert not entered.wait(timeout=0.5)
            with second.lock(KIND, "e-2"):  # another entity is free
                pass
        assert entered.wait(timeout=10)
        thread.join(timeout=10)


def test_record_inside_the_lock_commits_before_the_lock_is_left(
    db_store: PostgresEntityStore, pg_dsn: str, pg_schema: str
) -> None:
    """``record`` in the lock commits at once: another session sees the rows."""
    with db_store.lock(KIND, "e-1"):
        db_store.record(make_change(KIND, "e-1", None, DOC, at=datetime.now(UTC)))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            query = sql.SQL("SELECT count(*) FROM {} WHERE entity_id = 'e-1'").format(
                sql.Identifier(pg_schema, "transitions")
            )
            row = conn.execute(query).fetchone()
    assert row == (2,)


def test_leaving_the_lock_returns_the_connection(
    db_store: PostgresEntityStore, fresh_pool: ConnectionPool
) -> None:
    """Every way out of the lock gives its connection back to the pool, idle."""

    def checked_out() -> int:
        stats = fresh_pool.get_stats()
        return stats["pool_size"] - stats.get("pool_available", 0)

    assert checked_out() == 0
    with db_store.lock(KIND, "e-1"):
        assert checked_out() == 1
    with pytest.raises(RuntimeError), db_store.lock(KIND, "e-1"):
        raise RuntimeError("apply failed")
    with db_store.lock(KIND, "e-1"):
        db_store.record(make_change(KIND, "e-1", None, DOC, at=datetime.now(UTC)))
    assert checked_out() == 0
    with fresh_pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_locking_off_makes_lock_a_no_op(fresh_pool: ConnectionPool, pg_schema: str) -> None:
    """With ``locking=False`` two holders of one entity's lock do not exclude each other."""
    store = PostgresEntityStore(fresh_pool, schema=pg_schema, locking=False)
    assert store.locking is False
    with store.lock(KIND, "e-1"), store.lock(KIND, "e-1"):
        stamp = store.record(make_change(KIND, "e-1", None, DOC, at=datetime.now(UTC)))
    assert [r.transitioned_at for r in store.transitions(KIND, "e-1")] == [stamp, stamp]


def test_a_pool_without_autocommit_is_used_and_restored(pg_dsn: str, pg_schema: str) -> None:
    """Connections of a pool the caller configured without autocommit go back unchanged."""
    with ConnectionPool(pg_dsn, min_size=1, max_size=1, open=True) as pool:
        store = PostgresEntityStore(pool, schema=pg_schema)
        with store.lock(KIND, "e-plain"):
            store.record(make_change(KIND, "e-plain", None, DOC, at=datetime.now(UTC)))
        assert len(store.transitions(KIND, "e-plain")) == 2
        with pool.connection() as conn:
            assert conn.autocommit is False


# -- failures -----------------------------------------------------------------------------


def test_an_unmigrated_schema_fails_with_store_errors(pool: ConnectionPool) -> None:
    """Driver errors surface as ``StoreError`` naming the entity, with the cause chained."""
    store = PostgresEntityStore(pool, schema="re_never_migrated")
    change = make_change(KIND, "e-1", None, {"token": "v4lue"}, at=datetime.now(UTC))
    with pytest.raises(StoreError, match="pgstore:e-1") as info:
        store.record(change)
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)
    assert "v4lue" not in str(info.value)
    with pytest.raises(StoreError, match="pgstore:e-1") as query:
        store.latest_transition(KIND, "e-1", "token")
    assert isinstance(query.value.__cause__, psycopg.Error)
    with store.lock(KIND, "e-1"), pytest.raises(StoreError):
        store.record(change)
    with store.lock(KIND, "e-1"):  # the failed transaction was rolled back and released
        pass


def test_bad_arguments_are_rejected(pool: ConnectionPool, pg_schema: str) -> None:
    """A bad schema name or limit raises ``InvalidArgumentError``."""
    for schema in ("", "x" * 64, "nul\x00"):
        with pytest.raises(InvalidArgumentError, match="schema"):
            PostgresEntityStore(pool, schema=schema)
    store = PostgresEntityStore(pool, schema=pg_schema)
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.transitions(KIND, "e-1", limit=-1)


def test_from_value_null_and_json_null_stay_distinct(db_store: PostgresEntityStore) -> None:
    """SQL NULL reads back as ``ABSENT``; the JSON null of a field as ``None``."""
    prev: Document = {"status": None}
    db_store.record(make_change(KIND, "e-1", None, prev, at=datetime.now(UTC)))
    db_store.record(make_change(KIND, "e-1", prev, {"status": 1}, at=datetime.now(UTC)))
    first, second = db_store.transitions(KIND, "e-1")
    assert first.from_value is ABSENT
    assert first.to_value is None
    assert second.from_value is None
    assert second.to_value == 1
