"""A user-written store — a dict of lists, no base class — proves itself with the shipped
contract suite in three lines, and an engine runs on it."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import pytest

from reactive_entities import ChangeRecord, TransitionRecord, compose
from reactive_entities.adapters.memory import ManualClock
from reactive_entities.domain.events import Change
from reactive_entities.ports import Clock, EntityStore
from reactive_entities.testing import EntityStoreContract
from reactive_entities.testing.examples import Incident, define_incidents


class ListStore:
    """The simplest honest store: every row in a list per entity, linear scans."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[tuple[str, str], list[TransitionRecord]] = defaultdict(list)
        self.changes: dict[tuple[str, str], list[ChangeRecord]] = defaultdict(list)
        self.locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self.mutex = threading.Lock()

    def record(self, change: Change) -> datetime:
        e = change.event
        with self.mutex:
            at = self.clock.now()
            self.changes[e.kind, e.entity_id].append(
                ChangeRecord(
                    e.kind, e.entity_id, e.op, e.change_id, at, e.changed_fields, e.actor, e.run_id
                )
            )
            for t in change.transitions:
                self.rows[e.kind, e.entity_id].append(
                    TransitionRecord(
                        e.kind,
                        e.entity_id,
                        t.field,
                        t.from_value,
                        t.to_value,
                        t.masked,
                        e.change_id,
                        at,
                    )
                )
        return at

    def lock(self, kind: str, entity_id: str) -> threading.Lock:
        with self.mutex:
            return self.locks[kind, entity_id]

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
        return rows if limit is None else rows[len(rows) - limit :] if limit else []

    def close(self) -> None:
        pass


def test_list_store_satisfies_the_port_structurally() -> None:
    """The protocol needs no inheritance: a plain class is an EntityStore."""
    store: EntityStore = ListStore(ManualClock())
    assert isinstance(store, EntityStore)
    assert EntityStore not in ListStore.__mro__


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
    with compose.in_memory(store=store, clock=clock) as engine:
        handle, storage = define_incidents(engine)
        handle.mutate("i", storage.put("i", Incident("open", "low")))
        clock.advance(timedelta(minutes=1))
        handle.mutate("i", storage.patch("i", status="resolved"))
        assert [r.to_value for r in handle.history("i", field="status")] == ["open", "resolved"]
        assert handle.in_state_for("i", "status") == timedelta(0)
        assert handle.transition_count("i", "status", window=timedelta(minutes=1)) == 2
