"""The in-memory entity store: a production-quality transition log in this process.

Rows are kept compactly as tuples, one list per (entity, field) plus one per entity, and
turned into ``TransitionRecord`` values only when a query returns them. Stamps never
decrease within an entity's log: if the clock steps back, the store keeps the entity's
last stamp, so the binary searches of ``domain.temporal`` stay valid.

The stamp is the change's proposed ``occurred_at``: the engine read it from this same
clock (``compose.in_memory`` wires one clock into both) inside the entity lock, just
before recording. Adopting it spares a second clock read and rebuilding the event.

Per-entity locks are real ``threading.Lock`` objects: concurrent threads mutating one
entity are serialized; different entities proceed in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from reactive_entities.adapters.memory.clock import SystemClock
from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import Change, ChangeRecord, Op, TransitionRecord
from reactive_entities.domain.temporal import (
    first_at_or_after,
    newest_at_or_before,
    transition_count,
)
from reactive_entities.domain.validation import limit_problem
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.store import EntityStore

__all__ = ["InMemoryEntityStore"]

# A stored row: (stamp, field, from_value, to_value, masked, change_id).
_Row = tuple[datetime, str, Any, Any, bool, str]
# A stored change: (stamp, op, change_id, changed_fields, actor, run_id).
_ChangeRow = tuple[datetime, Op, str, tuple[str, ...], Actor, str | None]

_stamp_of = itemgetter(0)


class _EntityLog:
    __slots__ = ("by_field", "changes", "rows")

    def __init__(self) -> None:
        self.changes: list[_ChangeRow] = []
        self.rows: list[_Row] = []
        self.by_field: dict[str, list[_Row]] = {}


class InMemoryEntityStore(EntityStore):
    """An ``EntityStore`` held in memory; thread-safe, with an injectable clock.

    ``changes_recorded`` and ``rows_recorded`` count what was appended (handy in tests).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._logs: dict[tuple[str, str], _EntityLog] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        # One shared tuple per distinct set of changed fields: a kind changes few
        # combinations of fields, and sharing them saves ~30 bytes per stored row.
        self._field_sets: dict[tuple[str, ...], tuple[str, ...]] = {}

    @property
    def changes_recorded(self) -> int:
        """How many changes were recorded, over all entities."""
        return sum(len(log.changes) for log in list(self._logs.values()))

    @property
    def rows_recorded(self) -> int:
        """How many transition rows were recorded, over all entities."""
        return sum(len(log.rows) for log in list(self._logs.values()))

    # -- writing -------------------------------------------------------------------------

    def record(self, change: Change) -> datetime:
        """Append the change and its rows under one stamp: the change's proposed
        ``occurred_at``, raised to the entity's previous stamp if the clock stepped back.

        Call it under ``lock(kind, id)`` when several threads write one entity (the
        engine always does): the entity lock, not a store-wide one, orders its log.
        """
        event = change.event
        key = (event.kind, event.entity_id)
        log = self._logs.get(key)
        if log is None:
            log = self._logs.setdefault(key, _EntityLog())
        change_id = event.change_id
        stamp = event.occurred_at
        changes = log.changes
        if changes and stamp < changes[-1][0]:
            stamp = changes[-1][0]
        fields = event.changed_fields
        fields = self._field_sets.setdefault(fields, fields)
        changes.append((stamp, event.op, change_id, fields, event.actor, event.run_id))
        rows = log.rows
        by_field = log.by_field
        for t in change.transitions:
            row = (stamp, t.field, t.from_value, t.to_value, t.masked, change_id)
            rows.append(row)
            field_rows = by_field.get(t.field)
            if field_rows is None:
                by_field[t.field] = [row]
            else:
                field_rows.append(row)
        return stamp

    def lock(self, kind: str, entity_id: str) -> AbstractContextManager[object]:
        """The entity's lock (a ``threading.Lock``, itself a context manager)."""
        key = (kind, entity_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks.setdefault(key, threading.Lock())
        return lock

    def now(self) -> datetime:
        """The injected clock's time."""
        return self._clock.now()

    def close(self) -> None:
        """Nothing to release."""

    # -- reading -------------------------------------------------------------------------

    def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row at or before ``at``."""
        log = self._logs.get((kind, entity_id))
        if log is None:
            return None
        row = newest_at_or_before(log.by_field.get(field, ()), at, stamp=_stamp_of)
        return None if row is None else _record(kind, entity_id, row)

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change at or before ``at``."""
        log = self._logs.get((kind, entity_id))
        if log is None:
            return None
        found = newest_at_or_before(log.changes, at, stamp=_stamp_of)
        if found is None:
            return None
        stamp, op, change_id, fields, actor, run_id = found
        return ChangeRecord(kind, entity_id, op, change_id, stamp, fields, actor, run_id)

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field stamped in ``[since, until]``."""
        end = self._clock.now() if until is None else until
        start = end - since if isinstance(since, timedelta) else since
        log = self._logs.get((kind, entity_id))
        if log is None:
            return 0
        return transition_count(log.by_field.get(field, ()), start, end, stamp=_stamp_of)

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since``, the newest ``limit`` of them."""
        problem = None if limit is None else limit_problem(limit)
        if problem is not None:
            raise InvalidArgumentError(f"limit {problem}")
        log = self._logs.get((kind, entity_id))
        if log is None:
            return ()
        rows: Sequence[_Row] = log.rows if field is None else log.by_field.get(field, [])
        if since is not None:
            rows = rows[first_at_or_after(rows, since, stamp=_stamp_of) :]
        if limit is not None:
            rows = rows[max(len(rows) - limit, 0) :] if limit else []
        return tuple(_record(kind, entity_id, row) for row in rows)

    # -- introspection -------------------------------------------------------------------

    def changes(self, kind: str, entity_id: str) -> tuple[ChangeRecord, ...]:
        """Every recorded change of the entity, oldest first."""
        log = self._logs.get((kind, entity_id))
        if log is None:
            return ()
        return tuple(
            ChangeRecord(kind, entity_id, op, cid, stamp, fields, actor, run_id)
            for stamp, op, cid, fields, actor, run_id in log.changes
        )


def _record(kind: str, entity_id: str, row: _Row) -> TransitionRecord:
    stamp, field, from_value, to_value, masked, change_id = row
    return TransitionRecord(kind, entity_id, field, from_value, to_value, masked, change_id, stamp)
