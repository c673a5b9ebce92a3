"""A user-written store — a dict of lists, no base class — proves itself with the shipped
contract suite in three lines, and an engine runs on it."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta

import pytest

from reactive_entities import (
    ChangeEvent,
    ChangeRecord,
    InvalidArgumentError,
    Plan,
    StoreError,
    TransitionRecord,
    compose,
)
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.ports import Clock, EntityStore, StoreTransaction
from reactive_entities.testing import EntityStoreContract
from reactive_entities.testing.examples import Incident, define_incidents


class ListTransaction:
    """One write on a ``ListStore``: entity locks held until it ends, plans kept until
    commit appends them."""

    connection = None  # no database

    def __init__(self, store: ListStore) -> None:
        self.store = store
        self.stamps: dict[tuple[str, str], datetime] = {}  # the entities locked
        self.plans: list[Plan] = []
        self.ended = False

    def lock(self, kind: str, entity_id: str) -> datetime:
        key = (kind, entity_id)
        if self.ended:
            raise InvalidArgumentError("the transaction has ended")
        if key not in self.stamps:
            if not self.store.lock_for(key).acquire(timeout=30):
                raise StoreError(f"timed out waiting for the lock of {kind}:{entity_id}")
            previous = [c.occurred_at for c in self.store.changes[key]]
            self.stamps[key] = max([self.store.clock.now(), *previous])
        return self.stamps[key]

    def record(self, plan: Plan) -> datetime:
        stamp = self.stamps.get((plan.kind, plan.entity_id))
        if stamp is None or self.ended:
            raise InvalidArgumentError("record needs the entity locked in a live transaction")
        self.plans.append(plan)
        return stamp

    def commit(self, then: Callable[[], None] | None = None) -> None:
        if self.ended:
            raise InvalidArgumentError("the transaction has ended")
        try:
            for plan in self.plans:
                self.store.append(plan, self.stamps[plan.kind, plan.entity_id])
            if then is not None:
                then()
        finally:
            self.rollback()  # now only unlocks: the plans are appended

    def rollback(self) -> None:
        if not self.ended:
            self.ended = True
            for key in self.stamps:
                self.store.lock_for(key).release()

    def __enter__(self) -> ListTransaction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.rollback()


class ListStore:
    """The simplest honest store: every row in a list per entity, linear scans."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[tuple[str, str], list[TransitionRecord]] = defaultdict(list)
        self.changes: dict[tuple[str, str], list[ChangeRecord]] = defaultdict(list)
        self.locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self.mutex = threading.Lock()

    def begin(self, connection: object = None) -> ListTransaction:
        if connection is not None:
            raise InvalidArgumentError("ListStore has no connections")
        return ListTransaction(self)

    def reader(self) -> nullcontext[None]:
        return nullcontext()  # ``read`` gets no connection

    def lock_for(self, key: tuple[str, str]) -> threading.Lock:
        with self.mutex:
            return self.locks[key]

    def append(self, p: Plan, at: datetime) -> None:
        key = (p.kind, p.entity_id)
        with self.mutex:
            self.changes[key].append(
                ChangeRecord(
                    p.kind, p.entity_id, p.op, p.change_id, at, p.changed_fields, p.actor, p.run_id
                )
            )
            for t in p.transitions:
                self.rows[key].append(
                    TransitionRecord(
                        p.kind,
                        p.entity_id,
                        t.field,
                        t.from_value,
                        t.to_value,
                        t.masked,
                        p.change_id,
                        at,
                    )
                )

    def now(self) -> datetime:
        return self.clock.now()

    def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        rows = [r for r in self.rows[kind, entity_id] if r.field == field]
        rows = [r for r in rows if at is None or r.transitioned_at <= at]
        return rows[-1] if rows else None

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        changes = [c for c in self.changes[kind, entity_id] if at is None or c.occurred_at <= at]
        return changes[-1] if changes else None

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        end = self.clock.now() if until is None else until
        start = end - since if isinstance(since, timedelta) else since
        rows = self.rows[kind, entity_id]
        return sum(1 for r in rows if r.field == field and start <= r.transitioned_at <= end)

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        rows = [
            r
            for r in self.rows[kind, entity_id]
            if (field is None or r.field == field) and (since is None or r.transitioned_at >= since)
        ]
        if limit is not None:
            rows = rows[len(rows) - limit :] if limit else []
        return tuple(rows)  # the shipped contract compares an empty answer with ()

    def close(self) -> None:
        pass


def test_list_store_satisfies_the_port_structurally() -> None:
    """The protocols need no inheritance: plain classes are a store and its transaction."""
    store: EntityStore = ListStore(ManualClock())
    assert isinstance(store, EntityStore)
    assert EntityStore not in ListStore.__mro__
    with store.begin() as tx:
        assert isinstance(tx, StoreTransaction)
    assert StoreTransaction not in ListTransaction.__mro__


class TestListStore(EntityStoreContract):
    """The user's store passes the shipped store contract."""

    @pytest.fixture
    def store(self, clock: ManualClock) -> Iterator[EntityStore]:
        """The user's store."""
        yield ListStore(clock)


def test_engine_runs_on_the_custom_store() -> None:
    """compose.in_memory(store=...) wires the custom store into a working engine."""
    clock = ManualClock()
    store = ListStore(clock)
    with compose.in_memory(store=store) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("i", storage.put("i", Incident("open", "low")))
        clock.advance(timedelta(minutes=1))
        handle.mutate("i", storage.patch("i", status="resolved"))
        assert [r.to_value for r in handle.history("i", field="status")] == ["open", "resolved"]
        assert handle.in_state_for("i", "status") == timedelta(0)
        assert handle.transition_count("i", "status", window=timedelta(minutes=1)) == 2


def test_engine_transactions_run_on_the_custom_store() -> None:
    """On the custom store a transaction delivers all writes at commit, none on rollback."""
    store = ListStore(ManualClock())
    with compose.in_memory(store=store) as engine:
        handle, storage = define_incidents(engine)
        events: list[ChangeEvent] = []
        engine.subscribe(events.append)
        with engine.transaction() as tx:
            handle.mutate("a", storage.put("a", Incident("open", "low")), tx=tx)
            handle.mutate("b", storage.put("b", Incident("open", "high")), tx=tx)
            assert events == []
            assert store.changes["incident", "a"] == []
        assert [e.entity_id for e in events] == ["a", "b"]

        def resolve_then_fail() -> None:
            with engine.transaction() as tx:
                handle.mutate("a", storage.patch("a", status="resolved"), tx=tx)
                raise RuntimeError("undo")

        with pytest.raises(RuntimeError, match="undo"):
            resolve_then_fail()
        assert len(events) == 2
        assert [c.op for c in store.changes["incident", "a"]] == ["create"]
