"""The PostgreSQL store honours the store contract, stamps a change with one clock when
its entity is locked, and its transactions lock across sessions (bounded, deadlocks
detected), join the application's connection, and commit all or nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from reactive_entities.adapters.memory.clock import ManualClock
from reactive_entities.adapters.postgres import PostgresEntityStore
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ABSENT
from reactive_entities.domain.json import Document
from reactive_entities.ports.store import EntityStore
from reactive_entities.testing import EntityStoreContract, make_plan, record

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


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def db_store(fresh_pool: ConnectionPool, pg_schema: str) -> Iterator[PostgresEntityStore]:
    """A store stamping with the database clock, on empty logs."""
    store = PostgresEntityStore(fresh_pool, schema=pg_schema)
    yield store
    store.close()


@contextmanager
def separate_store(dsn: str, schema: str, **options: Any) -> Iterator[PostgresEntityStore]:
    """A store on a pool of its own: its sessions are not the module pool's."""
    with ConnectionPool(
        dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    ) as pool:
        store = PostgresEntityStore(pool, schema=schema, **options)
        yield store
        store.close()


class SteppingClock:
    """A clock that can be set anywhere, backwards too (a wall clock stepped back)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def _db_now(pool: ConnectionPool) -> datetime:
    with pool.connection() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def _visible(dsn: str, schema: str, entity_id: str) -> tuple[int, int]:
    """``(changes, transition rows)`` of ``entity_id`` as a new session sees them."""
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {} WHERE entity_id = %(id)s),"
        " (SELECT count(*) FROM {} WHERE entity_id = %(id)s)"
    ).format(sql.Identifier(schema, "changes"), sql.Identifier(schema, "transitions"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, {"id": entity_id}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _checked_out(pool: ConnectionPool) -> int:
    stats = pool.get_stats()
    return stats["pool_size"] - stats.get("pool_available", 0)


CLOSED: Document = {**DOC, "status": "closed"}


# -- the database clock -------------------------------------------------------------------


def test_database_clock_stamps_every_row_and_the_change_at_lock(
    db_store: PostgresEntityStore, fresh_pool: ConnectionPool
) -> None:
    """With no clock injected, the database time at lock stamps every row and the change."""
    before = _db_now(fresh_pool)
    with db_store.begin() as tx:
        stamp = tx.lock(KIND, "e-1")
        locked = _db_now(fresh_pool)
        assert tx.record(make_plan(KIND, "e-1", None, DOC)) == stamp
        tx.commit()
    assert before <= stamp <= locked
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
    stamp = record(db_store, make_plan(KIND, "e-1", None, DOC))
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
    stamps = [record(db_store, make_plan(KIND, "e-1", None, doc))]
    for i in range(5):
        nxt: Document = {**doc, "status": f"s{i}"}
        stamps.append(record(db_store, make_plan(KIND, "e-1", doc, nxt)))
        doc = nxt
    assert stamps == sorted(stamps)
    rows = db_store.transitions(KIND, "e-1", field="status")
    assert [r.transitioned_at for r in rows] == stamps


# -- injected clock details ---------------------------------------------------------------


def test_injected_clock_stamps_with_its_time_at_lock(
    fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """The stamp is the injected clock's time when the entity is locked, not at record."""
    clock = ManualClock()
    store = PostgresEntityStore(fresh_pool, schema=pg_schema, clock=clock)
    with store.begin() as tx:
        stamp = tx.lock(KIND, "e-1")
        assert stamp == clock.now()
        clock.advance(timedelta(minutes=1))
        assert tx.record(make_plan(KIND, "e-1", None, DOC)) == stamp
        tx.commit()
    assert {r.transitioned_at for r in store.transitions(KIND, "e-1")} == {stamp}
    assert record(store, make_plan(KIND, "e-2", None, DOC)) == stamp + timedelta(minutes=1)


def test_stamps_never_go_back_for_one_entity(fresh_pool: ConnectionPool, pg_schema: str) -> None:
    """A clock stepped back behind the entity's last stamp is raised to that stamp."""
    clock = SteppingClock(datetime(2024, 1, 1, 12, tzinfo=UTC))
    store = PostgresEntityStore(fresh_pool, schema=pg_schema, clock=clock)
    first = record(store, make_plan(KIND, "e-1", None, DOC))
    clock.moment = first - timedelta(minutes=5)
    assert record(store, make_plan(KIND, "e-1", DOC, CLOSED)) == first
    other = record(store, make_plan(KIND, "e-2", None, DOC))
    assert other == first - timedelta(minutes=5)  # another entity is unaffected


# -- locking across sessions --------------------------------------------------------------


def test_advisory_lock_serializes_two_stores(
    pg_dsn: str, fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """Two stores on separate pools exclude each other per entity until the first commits."""
    first = PostgresEntityStore(fresh_pool, schema=pg_schema)
    with separate_store(pg_dsn, pg_schema) as second:
        entered = threading.Event()

        def contend() -> None:
            with second.begin() as tx:
                tx.lock(KIND, "e-1")
                entered.set()
                tx.commit()

        with first.begin() as tx:
            tx.lock(KIND, "e-1")
            thread = threading.Thread(target=contend)
            thread.start()
            assert not entered.wait(timeout=0.5)
            with second.begin() as free:  # another entity is free
                free.lock(KIND, "e-2")
            tx.commit()
        assert entered.wait(timeout=10)
        thread.join(timeout=10)


def test_a_lock_wait_past_the_timeout_fails_naming_the_entity(
    pg_dsn: str, fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """A lock wait past ``lock_timeout`` fails with ``StoreError`` naming ``kind:id``."""
    first = PostgresEntityStore(fresh_pool, schema=pg_schema)
    with separate_store(pg_dsn, pg_schema, lock_timeout=timedelta(milliseconds=300)) as second:
        assert second.lock_timeout == timedelta(milliseconds=300)
        with first.begin() as tx:
            stamp = tx.lock(KIND, "e-1")
            started = time.monotonic()
            with pytest.raises(StoreError, match="pgstore:e-1") as info, second.begin() as late:
                late.lock(KIND, "e-1")
            waited = time.monotonic() - started
            tx.record(make_plan(KIND, "e-1", None, DOC))
            tx.commit()
        assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
        assert "timed out" in str(info.value)
        assert 0.25 <= waited < 10
        assert record(second, make_plan(KIND, "e-1", DOC, CLOSED)) >= stamp
        assert [r.to_value for r in first.transitions(KIND, "e-1", "status")] == [
            "open",
            "closed",
        ]


def test_the_lock_timeout_of_a_joined_connection_is_put_back(
    db_store: PostgresEntityStore, pg_dsn: str
) -> None:
    """After a lock, a joined connection's own ``lock_timeout`` holds again."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SET lock_timeout = '7s'")
        conn.commit()
        with db_store.begin(connection=conn) as tx:
            tx.lock(KIND, "e-1")
            assert conn.execute("SHOW lock_timeout").fetchone() == ("7s",)


def test_a_deadlock_fails_one_transaction_and_lets_the_other_finish(
    pg_dsn: str, fresh_pool: ConnectionPool, pg_schema: str
) -> None:
    """Opposite lock orders on two stores: one gets ``StoreError`` (deadlock), one commits."""
    timeout = timedelta(seconds=20)  # well past the server's deadlock_timeout (1 s)
    one = PostgresEntityStore(fresh_pool, schema=pg_schema, lock_timeout=timeout)
    barrier = threading.Barrier(2, timeout=10)
    outcomes: dict[str, StoreError | None] = {}
    plans = {
        name: {e: make_plan(KIND, e, None, {**DOC, "by": name}) for e in ("e-1", "e-2")}
        for name in ("a", "b")
    }

    def run(name: str, store: PostgresEntityStore, order: tuple[str, str]) -> None:
        try:
            with store.begin() as tx:
                tx.lock(KIND, order[0])
                tx.record(plans[name][order[0]])
                barrier.wait()
                tx.lock(KIND, order[1])
                tx.record(plans[name][order[1]])
                tx.commit()
            outcomes[name] = None
        except StoreError as error:
            outcomes[name] = error

    with separate_store(pg_dsn, pg_schema, lock_timeout=timeout) as two:
        threads = [
            threading.Thread(target=run, args=("a", one, ("e-1", "e-2"))),
            threading.Thread(target=run, args=("b", two, ("e-2", "e-1"))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert sorted(outcomes) == ["a", "b"]
    [loser] = [name for name, error in outcomes.items() if error is not None]
    [winner] = [name for name, error in outcomes.items() if error is None]
    error = outcomes[loser]
    assert error is not None
    assert "deadlock" in str(error)
    assert "pgstore:e-1" in str(error) or "pgstore:e-2" in str(error)
    assert isinstance(error.__cause__, psycopg.errors.DeadlockDetected)
    for entity_id in ("e-1", "e-2"):
        latest = one.latest_change(KIND, entity_id)
        assert latest is not None
        assert latest.change_id == plans[winner][entity_id].change_id
        assert _visible(pg_dsn, pg_schema, entity_id) == (1, 3)


def test_leaving_a_transaction_returns_the_connection(
    db_store: PostgresEntityStore, fresh_pool: ConnectionPool
) -> None:
    """Every way out of a transaction gives its connection back to the pool, idle."""
    assert _checked_out(fresh_pool) == 0
    with db_store.begin() as tx:
        assert _checked_out(fresh_pool) == 1
        tx.lock(KIND, "e-1")
        tx.commit()  # nothing recorded
    assert _checked_out(fresh_pool) == 0

    def fail_inside() -> None:
        with db_store.begin() as tx:
            tx.lock(KIND, "e-1")
            raise RuntimeError("apply failed")

    with pytest.raises(RuntimeError, match="apply failed"):
        fail_inside()
    with db_store.begin() as tx:  # left without commit
        tx.lock(KIND, "e-1")
        tx.record(make_plan(KIND, "e-1", None, DOC))
    assert db_store.transitions(KIND, "e-1") == ()
    record(db_store, make_plan(KIND, "e-1", None, DOC))
    assert _checked_out(fresh_pool) == 0
    with fresh_pool.connection() as conn:
        assert conn.info.transaction_status == TransactionStatus.IDLE


def test_locking_off_makes_lock_a_no_op(fresh_pool: ConnectionPool, pg_schema: str) -> None:
    """With ``locking=False`` two transactions holding one entity do not exclude each other."""
    store = PostgresEntityStore(
        fresh_pool, schema=pg_schema, locking=False, lock_timeout=timedelta(seconds=2)
    )
    assert store.locking is False
    with store.begin() as first, store.begin() as second:
        early = first.lock(KIND, "e-1")
        late = second.lock(KIND, "e-1")  # would time out if the entity were locked
        first.record(make_plan(KIND, "e-1", None, DOC))
        first.commit()
        second.record(make_plan(KIND, "e-1", DOC, CLOSED))
        second.commit()
    assert [r.transitioned_at for r in store.transitions(KIND, "e-1")] == [early, early, late]


def test_a_pool_without_autocommit_is_used_and_restored(pg_dsn: str, pg_schema: str) -> None:
    """Connections of a pool the caller configured without autocommit go back unchanged."""
    with ConnectionPool(pg_dsn, min_size=1, max_size=1, open=True) as pool:
        store = PostgresEntityStore(pool, schema=pg_schema)
        record(store, make_plan(KIND, "e-plain", None, DOC))
        assert len(store.transitions(KIND, "e-plain")) == 2
        with pool.connection() as conn:
            assert conn.autocommit is False


# -- visibility and the application's connection ------------------------------------------


def test_nothing_reaches_other_sessions_before_commit(
    db_store: PostgresEntityStore, pg_dsn: str, pg_schema: str
) -> None:
    """Recorded rows reach other sessions at commit, before ``then`` runs."""
    seen_by_then: list[tuple[int, int]] = []
    with db_store.begin() as tx:
        tx.lock(KIND, "e-1")
        tx.record(make_plan(KIND, "e-1", None, DOC))
        assert _visible(pg_dsn, pg_schema, "e-1") == (0, 0)
        tx.commit(then=lambda: seen_by_then.append(_visible(pg_dsn, pg_schema, "e-1")))
    assert seen_by_then == [(1, 2)]


@pytest.fixture
def notes(pg_dsn: str, pg_schema: str, pool: ConnectionPool) -> sql.Composed:
    """An empty application table, ``notes(entity_id text)``; a statement inserting one."""
    table = sql.Identifier(pg_schema, "app_notes")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (entity_id text)").format(table))
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
    return sql.SQL("INSERT INTO {} VALUES (%s)").format(table)


def _notes(dsn: str, schema: str) -> list[str]:
    query = sql.SQL("SELECT entity_id FROM {} ORDER BY 1").format(
        sql.Identifier(schema, "app_notes")
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute(query).fetchall()]


def _assert_idle(conn: psycopg.Connection[Any], autocommit: bool) -> None:
    assert not conn.closed
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert conn.autocommit is autocommit


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_joined_connection_commits_with_the_changes_and_is_left_idle(
    db_store: PostgresEntityStore,
    pg_dsn: str,
    pg_schema: str,
    notes: sql.Composed,
    autocommit: bool,
) -> None:
    """``begin(conn)`` commits or rolls back the app's statements too, leaving ``conn`` idle."""
    with psycopg.connect(pg_dsn, autocommit=autocommit) as conn:
        with db_store.begin(connection=conn) as tx:
            assert tx.connection is conn
            tx.lock(KIND, "e-1")
            conn.execute(notes, ["e-1"])
            tx.record(make_plan(KIND, "e-1", None, DOC))
            tx.commit()
        _assert_idle(conn, autocommit)
        with db_store.begin(connection=conn) as tx:  # left without commit: rolled back
            tx.lock(KIND, "e-2")
            conn.execute(notes, ["e-2"])
            tx.record(make_plan(KIND, "e-2", None, DOC))
        _assert_idle(conn, autocommit)

        def fail_inside() -> None:
            with db_store.begin(connection=conn):
                conn.execute(notes, ["e-3"])
                raise RuntimeError("the application failed")

        with pytest.raises(RuntimeError, match="the application failed"):
            fail_inside()
        _assert_idle(conn, autocommit)
    assert _notes(pg_dsn, pg_schema) == ["e-1"]
    assert _visible(pg_dsn, pg_schema, "e-1") == (1, 2)
    assert _visible(pg_dsn, pg_schema, "e-2") == (0, 0)


def test_a_pooled_transactions_connection_commits_with_the_changes(
    db_store: PostgresEntityStore, pg_dsn: str, pg_schema: str, notes: sql.Composed
) -> None:
    """Statements on ``tx.connection`` of a pooled transaction commit with it, or not at all."""
    with db_store.begin() as tx:
        tx.connection.execute(notes, ["e-1"])
        tx.lock(KIND, "e-1")
        tx.record(make_plan(KIND, "e-1", None, DOC))
        tx.commit()
    with db_store.begin() as tx:
        tx.connection.execute(notes, ["e-2"])
    assert _notes(pg_dsn, pg_schema) == ["e-1"]
    assert _visible(pg_dsn, pg_schema, "e-1") == (1, 2)


def test_begin_refuses_a_connection_it_cannot_use(
    db_store: PostgresEntityStore, pg_dsn: str
) -> None:
    """A busy, closed or foreign connection is refused; the busy one is left as it was."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SELECT 1")  # opens a transaction (no autocommit)
        with pytest.raises(InvalidArgumentError, match="idle"):
            db_store.begin(connection=conn)
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert conn.autocommit is False
        conn.rollback()
    with pytest.raises(InvalidArgumentError, match="closed"):
        db_store.begin(connection=conn)
    with pytest.raises(InvalidArgumentError, match=r"psycopg\.Connection"):
        db_store.begin(object())


# -- failures -----------------------------------------------------------------------------


def test_an_unmigrated_schema_fails_with_store_errors(pool: ConnectionPool, pg_dsn: str) -> None:
    """Driver errors are ``StoreError`` naming the entity, cause chained, lock released."""
    store = PostgresEntityStore(pool, schema="re_never_migrated")
    plan = make_plan(KIND, "e-1", None, {"token": "v4lue"})
    with pytest.raises(StoreError, match="pgstore:e-1") as info:
        record(store, plan)
    # The lock (the first statement) calls the schema's lock function: no such schema.
    assert isinstance(info.value.__cause__, psycopg.errors.InvalidSchemaName)
    assert "v4lue" not in str(info.value)
    with pytest.raises(StoreError, match="pgstore:e-1") as query:
        store.latest_transition(KIND, "e-1", "token")
    assert isinstance(query.value.__cause__, psycopg.Error)
    quick = timedelta(milliseconds=300)
    with (
        separate_store(pg_dsn, "re_never_migrated", lock_timeout=quick) as other,
        pytest.raises(StoreError, match="pgstore:e-1") as again,
    ):
        record(other, plan)
    # The same failure again, not a lock timeout: the first transaction holds nothing.
    assert isinstance(again.value.__cause__, psycopg.errors.InvalidSchemaName)


def test_a_failing_insert_at_commit_records_nothing_and_unlocks(
    db_store: PostgresEntityStore, pg_dsn: str, pg_schema: str
) -> None:
    """A refused insert fails the commit: nothing recorded, no ``then``, entities free."""
    ran: list[str] = []
    with db_store.begin() as tx:
        tx.lock(KIND, "e-1")
        tx.lock(KIND, "e-2")
        tx.record(make_plan(KIND, "e-1", None, DOC))
        tx.record(make_plan(KIND, "e-2", None, {"status": "nul \x00 byte"}))  # jsonb refuses
        with pytest.raises(StoreError, match="pgstore:e-1") as info:
            tx.commit(then=lambda: ran.append("then"))
    assert isinstance(info.value.__cause__, psycopg.Error)
    assert "byte" not in str(info.value)
    assert ran == []
    assert _visible(pg_dsn, pg_schema, "e-1") == (0, 0)
    assert _visible(pg_dsn, pg_schema, "e-2") == (0, 0)
    quick = timedelta(milliseconds=300)
    with separate_store(pg_dsn, pg_schema, lock_timeout=quick) as other, other.begin() as free:
        free.lock(KIND, "e-1")  # another session: the advisory locks are gone
        free.lock(KIND, "e-2")
    record(db_store, make_plan(KIND, "e-1", None, DOC))  # this process: the local lock too
    assert _visible(pg_dsn, pg_schema, "e-1") == (1, 2)


def test_a_failed_commit_leaves_a_joined_connection_idle(
    db_store: PostgresEntityStore, pg_dsn: str, pg_schema: str, notes: sql.Composed
) -> None:
    """A failed commit rolls back a joined connection's statements and leaves it idle."""
    with psycopg.connect(pg_dsn) as conn:
        with db_store.begin(connection=conn) as tx:
            conn.execute(notes, ["e-1"])
            tx.lock(KIND, "e-1")
            tx.record(make_plan(KIND, "e-1", None, {"status": "\x00"}))
            with pytest.raises(StoreError, match="pgstore:e-1"):
                tx.commit()
        _assert_idle(conn, autocommit=False)
    assert _notes(pg_dsn, pg_schema) == []
    assert _visible(pg_dsn, pg_schema, "e-1") == (0, 0)


def test_bad_arguments_are_rejected(pool: ConnectionPool, pg_schema: str) -> None:
    """A bad schema name, lock timeout or limit raises ``InvalidArgumentError``."""
    for schema in ("", "x" * 64, "nul\x00"):
        with pytest.raises(InvalidArgumentError, match="schema"):
            PostgresEntityStore(pool, schema=schema)
    for timeout in (timedelta(0), timedelta(seconds=-1), 5, None):
        with pytest.raises(InvalidArgumentError, match="lock_timeout"):
            PostgresEntityStore(pool, schema=pg_schema, lock_timeout=timeout)  # type: ignore[arg-type]
    store = PostgresEntityStore(pool, schema=pg_schema)
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.transitions(KIND, "e-1", limit=-1)


def test_from_value_null_and_json_null_stay_distinct(db_store: PostgresEntityStore) -> None:
    """SQL NULL reads back as ``ABSENT``; the JSON null of a field as ``None``."""
    prev: Document = {"status": None}
    record(db_store, make_plan(KIND, "e-1", None, prev))
    record(db_store, make_plan(KIND, "e-1", prev, {"status": 1}))
    first, second = db_store.transitions(KIND, "e-1")
    assert first.from_value is ABSENT
    assert first.to_value is None
    assert second.from_value is None
    assert second.to_value == 1
