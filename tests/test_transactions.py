"""DESIGN §8, SPEC §14–§15.1 on both stores: the unit of work, delivery after commit
outside every lock, re-entry, bounded lock waits, and documents no receiver can change."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

from reactive_entities import (
    ChangeEvent,
    Engine,
    EntityHandle,
    InvalidArgumentError,
    StateValidationError,
    StoreError,
    Transaction,
    compose,
)
from reactive_entities.testing.examples import Incident
from reactive_entities.testing.plugin import DictStorage
from reactive_entities.testing.sql_plugin import SqlStorage

_ids = itertools.count()


def _fresh(prefix: str = "t") -> str:
    return f"{prefix}-{next(_ids)}"


@attrs.define
class World:
    """An engine with the ``incident`` kind over the app's own storage, on one store.

    In memory the app keeps a dict; on PostgreSQL a table, written on ``tx.connection``
    inside a transaction and on an autocommit connection of the app's outside one.
    """

    name: str
    engine: Engine
    handle: EntityHandle[Incident]
    events: list[ChangeEvent]
    put: Callable[[str, Incident, Transaction | None], Callable[[], Incident]]
    stored: Callable[[str], Incident | None]

    def statuses(self, entity_id: str) -> list[Any]:
        """The recorded ``status`` values of the entity, oldest first."""
        return [r.to_value for r in self.handle.history(entity_id, field="status")]

    def event_statuses(self, entity_id: str) -> list[Any]:
        """The ``status`` of each delivered event of the entity, in delivery order."""
        return [
            None if e.next is None else e.next["status"]
            for e in self.events
            if e.entity_id == entity_id
        ]


def _memory_world(**options: Any) -> Generator[World, None, None]:
    with compose.in_memory(**options) as engine:
        storage: DictStorage[Incident] = DictStorage()
        handle = engine.define_entity("incident", Incident, read=storage.read)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        yield World(
            "memory",
            engine,
            handle,
            events,
            lambda entity_id, state, tx: storage.put(entity_id, state),
            lambda entity_id: storage.rows.get(entity_id),
        )


def _postgres_world(dsn: str, schema: str, **options: Any) -> Generator[World, None, None]:
    with (
        compose.postgres(dsn, schema=schema, **options) as engine,
        psycopg.connect(dsn, autocommit=True) as app,
    ):
        table = f"app_{next(_ids)}"
        storage = SqlStorage(
            schema,
            table,
            to_doc=engine.converter.unstructure,
            from_doc=lambda doc: engine.converter.structure(doc, Incident),
        )
        storage.create_table(app)
        handle = engine.define_entity("incident", Incident, read=storage.read)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)

        def put(entity_id: str, state: Incident, tx: Transaction | None) -> Callable[[], Incident]:
            return storage.put(app if tx is None else tx.connection, entity_id, state)

        yield World(
            "postgres",
            engine,
            handle,
            events,
            put,
            lambda entity_id: storage.read([entity_id], app).get(entity_id),
        )


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same world on each store."""
    if request.param == "memory":
        yield from _memory_world()
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        yield from _postgres_world(dsn, schema)


OPEN = Incident("open", "low")


# -- handlers run after commit, outside every lock ------------------------------------------


def test_a_handler_writing_back_the_same_entity_completes(world: World) -> None:
    """The round-1 deadlock: a handler that mutates the entity it is handling finishes;
    both changes are recorded and their events arrive in order."""
    entity_id = _fresh()

    def escalate(event: ChangeEvent) -> None:
        if event.delta.get("status") == "investigating":
            world.handle.mutate(entity_id, world.put(entity_id, Incident("resolved", "high"), None))

    world.engine.subscribe(escalate, kind="incident", fields={"status"})
    world.handle.mutate(entity_id, world.put(entity_id, OPEN, None))
    writer = threading.Thread(
        target=world.handle.mutate,
        args=(entity_id, world.put(entity_id, Incident("investigating", "low"), None)),
        daemon=True,
    )
    writer.start()
    writer.join(10)
    assert not writer.is_alive()
    assert world.statuses(entity_id) == ["open", "investigating", "resolved"]
    assert world.event_statuses(entity_id) == ["open", "investigating", "resolved"]


def test_a_mutate_inside_its_own_apply_raises_at_once(world: World) -> None:
    """Re-entry: mutating the entity inside its own ``apply`` raises InvalidArgumentError
    naming ``kind:id`` within a second instead of waiting for itself."""
    entity_id = _fresh()
    inner: list[BaseException] = []

    def apply() -> Incident:
        try:
            world.handle.mutate(entity_id, world.put(entity_id, OPEN, None))
        except InvalidArgumentError as error:
            inner.append(error)
        return world.put(entity_id, Incident("investigating", "low"), None)()

    started = time.monotonic()
    world.handle.mutate(entity_id, apply)
    assert time.monotonic() - started < 1
    assert len(inner) == 1
    assert f"incident:{entity_id}" in str(inner[0])
    assert world.statuses(entity_id) == ["investigating"]


def test_writing_an_entity_an_open_transaction_of_this_thread_holds_raises(world: World) -> None:
    """A write without ``tx=`` of an entity this thread's open transaction locked would
    wait forever: it raises InvalidArgumentError at once, and the transaction goes on."""
    entity_id = _fresh()
    with world.engine.transaction() as tx:
        world.handle.mutate(entity_id, world.put(entity_id, OPEN, tx), tx=tx)
        with pytest.raises(InvalidArgumentError, match=f"incident:{entity_id}"):
            world.handle.mutate(entity_id, world.put(entity_id, OPEN, None))
        with pytest.raises(InvalidArgumentError, match="being written"):
            world.handle.mutate(
                entity_id,
                lambda: world.handle.mutate(entity_id, world.put(entity_id, OPEN, tx), tx=tx),
                tx=tx,
            )
    assert world.statuses(entity_id) == ["open"]


def test_events_follow_commit_never_precede_it(world: World) -> None:
    """Inside the block nothing is delivered; at commit every change is, in recording
    order, the same entity twice included."""
    first, second = _fresh(), _fresh()
    with world.engine.transaction() as tx:
        world.handle.mutate(first, world.put(first, OPEN, tx), tx=tx)
        world.handle.mutate(second, world.put(second, OPEN, tx), tx=tx)
        world.handle.mutate(first, world.put(first, Incident("resolved", "low"), tx), tx=tx)
        assert world.events == []
        assert world.handle.history(first) == ()  # not visible before commit
    assert [(e.entity_id, e.op) for e in world.events] == [
        (first, "create"),
        (second, "create"),
        (first, "update"),
    ]
    assert world.statuses(first) == ["open", "resolved"]
    assert len({e.change_id for e in world.events}) == 3


def test_an_exception_rolls_everything_back(world: World) -> None:
    """An exception in the block: nothing recorded, no event, the exception propagates
    unchanged; the entity is free again."""
    entity_id = _fresh()
    # The raising block is the transaction under test: it cannot be one statement.
    with pytest.raises(KeyError, match="boom"), world.engine.transaction() as tx:  # noqa: PT012
        world.handle.mutate(entity_id, world.put(entity_id, OPEN, tx), tx=tx)
        raise KeyError("boom")
    assert world.events == []
    assert world.handle.history(entity_id) == ()
    if world.name == "postgres":
        assert world.stored(entity_id) is None  # the app's own write rolled back too
    # The app's own memory write is the app's to undo (DESIGN §8); the entity is free.
    world.handle.mutate(entity_id, world.put(entity_id, Incident("resolved", "low"), None))
    assert world.statuses(entity_id) == ["resolved"]


def test_a_caught_validation_error_leaves_the_transaction_usable(world: World) -> None:
    """StateValidationError rolls back only if it leaves the block: caught inside, the
    other changes still commit."""
    good, bad = _fresh(), _fresh()
    with world.engine.transaction() as tx:
        world.handle.mutate(good, world.put(good, OPEN, tx), tx=tx)
        with pytest.raises(StateValidationError):
            world.handle.mutate(bad, lambda: {"status": "nope", "severity": "low"}, tx=tx)
    assert world.statuses(good) == ["open"]
    assert world.handle.history(bad) == ()
    assert [e.entity_id for e in world.events] == [good]


def test_a_transaction_cannot_be_used_after_its_block(world: World) -> None:
    """Using ``tx`` once its block ended raises InvalidArgumentError."""
    entity_id = _fresh()
    with world.engine.transaction() as tx:
        pass
    with pytest.raises(InvalidArgumentError):
        world.handle.mutate(entity_id, world.put(entity_id, OPEN, None), tx=tx)
    with pytest.raises(InvalidArgumentError):
        _ = tx.connection
    assert not tx.active


def test_remove_in_a_transaction(world: World) -> None:
    """``remove(tx=)`` records its change at commit, like ``mutate``."""
    entity_id = _fresh()
    world.handle.mutate(entity_id, world.put(entity_id, OPEN, None))
    with world.engine.transaction() as tx:
        world.handle.remove(entity_id, lambda: None, tx=tx)
        if world.name == "memory":
            assert world.events[-1].op == "create"
    assert [e.op for e in world.events] == ["create", "remove"]


@pytest.mark.parametrize("store", ["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_lock_waits_are_bounded(store: str, request: pytest.FixtureRequest) -> None:
    """Waiting for an entity another transaction holds ends after ``lock_timeout`` with
    StoreError naming ``kind:id``; ``apply`` never runs."""
    bounded = {"lock_timeout": timedelta(milliseconds=200)}
    if store == "memory":
        worlds = [_memory_world(**bounded)]
        holder_world = waiter_world = next(worlds[0])  # one store: its locks are in-process
    else:
        dsn, schema = request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        worlds = [_postgres_world(dsn, schema), _postgres_world(dsn, schema, **bounded)]
        holder_world, waiter_world = next(worlds[0]), next(worlds[1])
    entity_id = _fresh()
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with holder_world.engine.transaction() as tx:
            holder_world.handle.mutate(entity_id, holder_world.put(entity_id, OPEN, tx), tx=tx)
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    applied: list[int] = []

    def apply() -> Incident:
        applied.append(1)
        return OPEN

    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"timed out.*incident:{entity_id}"):
            waiter_world.handle.mutate(entity_id, apply)
        assert 0.15 < time.monotonic() - started < 5
        assert applied == []
    finally:
        release.set()
        thread.join(10)
        for world in worlds:
            world.close()


# -- delivery ----------------------------------------------------------------------------


def test_events_of_one_entity_arrive_in_recording_order_across_threads(world: World) -> None:
    """8 threads writing one entity: events are delivered in the log's order."""
    entity_id = _fresh()
    world.handle.mutate(entity_id, world.put(entity_id, Incident("open", "low", title="0"), None))

    def work(n: int) -> None:
        for i in range(10):
            title = f"{n}-{i}"
            world.handle.mutate(
                entity_id, world.put(entity_id, Incident("open", "low", title=title), None)
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    logged = [r.to_value for r in world.handle.history(entity_id, field="title")]
    delivered = [e.next["title"] for e in world.events if e.next is not None]
    assert len(logged) == 81
    assert delivered == logged


def test_a_handler_changing_an_event_changes_nothing_recorded(world: World) -> None:
    """Documents handed to handlers and history rows are the receiver's to change: the
    log, later events and later history reads are unaffected."""
    entity_id = _fresh()

    def vandal(event: ChangeEvent) -> None:
        assert event.next is not None
        event.next["system_ids"].append("x")  # type: ignore[union-attr]
        event.delta.get("system_ids", []).append("y")  # type: ignore[union-attr]

    world.engine.subscribe(vandal)
    world.handle.mutate(
        entity_id, world.put(entity_id, Incident("open", "low", system_ids=("a",)), None)
    )
    rows = world.handle.history(entity_id, field="system_ids")
    assert [r.to_value for r in rows] == [["a"]]
    rows[0].to_value.append("z")  # type: ignore[union-attr]
    assert [r.to_value for r in world.handle.history(entity_id, field="system_ids")] == [["a"]]
    later = world.handle.history(entity_id, field="system_ids")
    assert later[0].to_value == ["a"]


def test_a_blocked_handler_holds_up_only_its_own_entity(world: World) -> None:
    """A handler blocked on one entity: other entities' writes, events and queries go on,
    and the blocked entity's later events follow once it returns, in order."""
    slow, fast = _fresh(), _fresh()
    release = threading.Event()
    entered = threading.Event()

    def block(event: ChangeEvent) -> None:
        if event.entity_id == slow and event.op == "create":
            entered.set()
            release.wait(10)

    world.engine.subscribe(block)
    writer = threading.Thread(target=world.handle.mutate, args=(slow, world.put(slow, OPEN, None)))
    writer.start()
    try:
        assert entered.wait(10)
        world.handle.mutate(slow, world.put(slow, Incident("resolved", "low"), None))
        world.handle.mutate(fast, world.put(fast, OPEN, None))
        assert world.statuses(slow) == ["open", "resolved"]  # recorded, lock free
        assert world.event_statuses(fast) == ["open"]
        assert world.event_statuses(slow) == ["open"]  # the second waits its turn
    finally:
        release.set()
        writer.join(10)
    assert world.event_statuses(slow) == ["open", "resolved"]


# -- PostgreSQL specifics ------------------------------------------------------------------


@pytest.mark.postgres
def test_blocked_handlers_hold_no_pooled_connection(pg_dsn: str, pg_schema: str) -> None:
    """``pool_size=2`` and two handlers blocked: other entities' mutates and queries
    proceed (handlers hold no connection)."""
    world = _postgres_world(pg_dsn, pg_schema, pool_size=2, pool_timeout=3.0)
    w = next(world)
    release = threading.Event()
    blocked = threading.Semaphore(0)

    def block(event: ChangeEvent) -> None:
        if event.entity_id.startswith("held"):
            blocked.release()
            release.wait(20)

    w.engine.subscribe(block)
    writers = [
        threading.Thread(target=w.handle.mutate, args=(f"held-{n}", w.put(f"held-{n}", OPEN, None)))
        for n in range(2)
    ]
    for t in writers:
        t.start()
    try:
        assert blocked.acquire(timeout=10)
        assert blocked.acquire(timeout=10)
        for n in range(5):
            entity_id = f"free-{n}"
            w.handle.mutate(entity_id, w.put(entity_id, OPEN, None))
            assert w.statuses(entity_id) == ["open"]
            assert w.handle.in_state_since(entity_id, "status") is not None
    finally:
        release.set()
        for t in writers:
            t.join(20)
        world.close()


@pytest.mark.postgres
def test_app_writes_and_log_commit_or_roll_back_together(pg_dsn: str, pg_schema: str) -> None:
    """Checked with SQL: after a rollback neither the app's row nor a change or transition
    row exists; after a commit all of them do."""
    world = _postgres_world(pg_dsn, pg_schema)
    w = next(world)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as db:

            def count(table: str, entity_id: str) -> int:
                query = sql.SQL("SELECT count(*) FROM {} WHERE entity_id = %s").format(
                    sql.Identifier(pg_schema, table)
                )
                row = db.execute(query, (entity_id,)).fetchone()
                assert row is not None
                return int(row[0])

            entity_id = _fresh()
            with pytest.raises(RuntimeError), w.engine.transaction() as tx:  # noqa: PT012 (the block under test)
                w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
                assert w.stored(entity_id) is None  # not committed yet
                raise RuntimeError("app failure")
            assert (count("changes", entity_id), count("transitions", entity_id)) == (0, 0)
            assert w.stored(entity_id) is None
            with w.engine.transaction() as tx:
                w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
            assert (count("changes", entity_id), count("transitions", entity_id)) == (1, 5)
            assert w.stored(entity_id) == OPEN
            assert [e.entity_id for e in w.events] == [entity_id]
    finally:
        world.close()


@pytest.mark.postgres
def test_read_gets_the_transactions_connection(pg_dsn: str, pg_schema: str) -> None:
    """``read(ids, connection)``: inside a transaction it is ``tx.connection`` (prev
    sees the transaction's own writes); outside, a pooled connection."""
    world = _postgres_world(pg_dsn, pg_schema)
    w = next(world)
    try:
        seen: list[Any] = []
        original = w.handle._read

        def read(ids: Any, connection: Any) -> Any:
            seen.append(connection)
            return original(ids, connection)

        w.handle._read = read
        entity_id = _fresh()
        with w.engine.transaction() as tx:
            w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
            w.handle.mutate(entity_id, w.put(entity_id, Incident("resolved", "low"), tx), tx=tx)
            assert seen == [tx.connection, tx.connection]
        assert [e.op for e in w.events] == ["create", "update"]  # prev saw the first write
        assert w.handle.get(entity_id) == Incident("resolved", "low")
        assert isinstance(seen[-1], psycopg.Connection)
        assert seen[-1] is not seen[0]
    finally:
        world.close()


@pytest.mark.postgres
def test_joining_the_apps_connection(pg_dsn: str, pg_schema: str) -> None:
    """``transaction(connection=conn)``: a busy connection is refused; an idle one is
    used and left open and idle, its autocommit setting restored."""
    world = _postgres_world(pg_dsn, pg_schema)
    w = next(world)
    try:
        with psycopg.connect(pg_dsn) as conn:  # not autocommit: psycopg's default
            conn.execute("SELECT 1")  # now inside an implicit transaction
            with pytest.raises(InvalidArgumentError, match="idle"):
                w.engine.transaction(connection=conn)
            conn.rollback()
            entity_id = _fresh()
            with w.engine.transaction(connection=conn) as tx:
                assert tx.connection is conn
                w.handle.mutate(entity_id, w.put(entity_id, OPEN, tx), tx=tx)
            assert not conn.closed
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.autocommit is False
            assert w.stored(entity_id) == OPEN
            joined = w.engine.transaction(connection=conn)
            with pytest.raises(ValueError, match="x"), joined as tx:  # noqa: PT012 (the block under test)
                w.handle.mutate(entity_id, w.put(entity_id, Incident("resolved", "low"), tx), tx=tx)
                raise ValueError("x")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert w.stored(entity_id) == OPEN
    finally:
        world.close()


def test_the_memory_engine_refuses_a_connection() -> None:
    """The in-memory engine has no connections: joining one is a clear error."""
    with compose.in_memory() as engine, pytest.raises(InvalidArgumentError, match="in-memory"):
        engine.transaction(connection=object())


def test_a_transaction_of_another_engine_is_refused() -> None:
    """``tx=`` must come from the same engine."""
    with compose.in_memory() as one, compose.in_memory() as two:
        storage: DictStorage[Incident] = DictStorage()
        handle = one.define_entity("incident", Incident, read=storage.read)
        with two.transaction() as tx, pytest.raises(InvalidArgumentError, match="tx"):
            handle.mutate("i-1", storage.put("i-1", OPEN), tx=tx)
        assert handle.history("i-1") == ()
