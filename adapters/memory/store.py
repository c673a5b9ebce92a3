"""The in-memory entity store: a production-quality transition log in this process.

Rows are kept compactly as tuples, one list per (entity, field) plus one per entity, and
turned into ``TransitionRecord`` values only when a query returns them. Values that are
lists or dicts are copied on the way in and on the way out, so no receiver of an event
or a history row can change what was recorded.

Writes go through :class:`MemoryTransaction` (the ``StoreTransaction`` port): ``lock``
takes the entity's ``threading.Lock`` (bounded by ``lock_timeout``) and fixes the stamp
— the clock's now, raised to the entity's last stamp if the clock stepped back, so the
binary searches of ``domain.temporal`` stay valid; ``record`` buffers the plan; ``commit``
appends every buffered change, calls ``then`` and only then releases the locks.
Concurrent threads mutating one entity are serialized; different entities proceed in
parallel.
"""

from __future__ import annotations

import marshal
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from operator import itemgetter
from types import TracebackType
from typing import Any

from reactive_entities.adapters.memory.actors import ActorTable
from reactive_entities.adapters.memory.clock import SystemClock
from reactive_entities.domain.errors import InvalidArgumentError, StoreError
from reactive_entities.domain.events import ChangeRecord, Op, Plan, TransitionRecord
from reactive_entities.domain.temporal import (
    first_at_or_after,
    newest_at_or_before,
    transition_count,
)
from reactive_entities.domain.validation import limit_problem
from reactive_entities.ports.clock import Clock
from reactive_entities.ports.store import EntityStore, StoreTransaction

__all__ = [
    "InMemoryEntityStore",
    "MemoryTransaction",
    "DEFAULT_LOCK_TIMEOUT",
    "lock_timed_out",
    "refuse_connection",
]

#: How long ``lock`` waits for an entity held by another transaction.
DEFAULT_LOCK_TIMEOUT = timedelta(seconds=30)
_dumps = marshal.dumps

# Stored rows and changes are exact tuples of atomic values, which CPython's cyclic
# garbage collector stops tracking (a growing log of tracked objects made every full
# collection slower): a list or dict value is kept marshal-ed (JSON values are never
# bytes, and marshal keeps True apart from 1), the actor as its index.
# A stored row: (stamp, field, from_value, to_value, masked, change_id).
_Row = tuple[datetime, str, Any, Any, bool, str]
# A stored change: (stamp, op, change_id, changed_fields, actor index, run_id).
_ChangeRow = tuple[datetime, Op, str, tuple[str, ...], int, str | None]

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

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        on_commit: Callable[[Plan, datetime], None] | None = None,
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        #: Receives each committed plan and its stamp (under its entity lock, in
        #: recording order per entity): the in-memory feed keeps them.
        self._on_commit = on_commit
        self._lock_timeout = lock_timeout.total_seconds()
        self._logs: dict[tuple[str, str], _EntityLog] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        # One shared tuple per distinct set of changed fields: a kind changes few
        # combinations of fields, and sharing them saves ~30 bytes per stored row.
        self._field_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._actors = ActorTable()

    @property
    def changes_recorded(self) -> int:
        """How many changes were recorded, over all entities."""
        return sum(len(log.changes) for log in list(self._logs.values()))

    @property
    def rows_recorded(self) -> int:
        """How many transition rows were recorded, over all entities."""
        return sum(len(log.rows) for log in list(self._logs.values()))

    # -- writing -------------------------------------------------------------------------

    def begin(self, connection: Any = None) -> MemoryTransaction:
        """A write transaction (``connection`` must be None: there is no database)."""
        refuse_connection(connection)
        return MemoryTransaction(self)

    def reader(self) -> AbstractContextManager[None]:
        """No connection to lend: ``read`` gets None."""
        return nullcontext()

    def _entity_lock(self, key: tuple[str, str]) -> threading.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks.setdefault(key, threading.Lock())
        return lock

    def _stamp(self, key: tuple[str, str]) -> datetime:
        """The clock's now, never earlier than the entity's last stamp."""
        stamp = self._clock.now()
        log = self._logs.get(key)
        if log is not None and log.changes and stamp < log.changes[-1][0]:
            return log.changes[-1][0]
        return stamp

    def _append(self, plan: Plan, stamp: datetime) -> None:
        """Append one change and its rows (the caller holds the entity's lock)."""
        key = (plan.kind, plan.entity_id)
        log = self._logs.get(key)
        if log is None:
            log = self._logs.setdefault(key, _EntityLog())
        change_id = plan.change_id
        fields = plan.changed_fields
        fields = self._field_sets.setdefault(fields, fields)
        actor = self._actors.index(plan.actor)
        log.changes.append((stamp, plan.op, change_id, fields, actor, plan.run_id))
        rows = log.rows
        by_field = log.by_field
        for t in plan.transitions:
            field = t.field
            before: Any = t.from_value  # a list or dict becomes bytes: kept marshal-ed
            after: Any = t.to_value
            if type(before) is list or type(before) is dict:
                before = _dumps(before)
            if type(after) is list or type(after) is dict:
                after = _dumps(after)
            row: _Row = (stamp, field, before, after, t.masked, change_id)
            rows.append(row)
            field_rows = by_field.get(field)
            if field_rows is None:
                by_field[field] = [row]
            else:
                field_rows.append(row)

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
        actors = self._actors
        return ChangeRecord(kind, entity_id, op, change_id, stamp, fields, actors[actor], run_id)

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
        actors = self._actors
        return tuple(
            ChangeRecord(kind, entity_id, op, cid, stamp, fields, actors[actor], run_id)
            for stamp, op, cid, fields, actor, run_id in log.changes
        )


def lock_timed_out(seconds: float, kind: str, entity_id: str) -> StoreError:
    """The error of a lock wait that passed the store's ``lock_timeout``."""
    return StoreError(f"timed out after {seconds:g} s waiting for the lock of {kind}:{entity_id}")


def refuse_connection(connection: object) -> None:
    """``begin(connection)``: the in-memory stores have none to join."""
    if connection is not None:
        raise InvalidArgumentError(
            "the in-memory store has no connections: begin a transaction without one "
            f"(got {type(connection).__name__})"
        )


def _record(kind: str, entity_id: str, row: _Row) -> TransitionRecord:
    stamp, field, from_value, to_value, masked, change_id = row
    if type(from_value) is bytes:  # a list or dict, kept marshal-ed: decoded fresh
        from_value = marshal.loads(from_value)
    if type(to_value) is bytes:
        to_value = marshal.loads(to_value)
    return TransitionRecord(kind, entity_id, field, from_value, to_value, masked, change_id, stamp)


class MemoryTransaction(StoreTransaction):
    """A write transaction of :class:`InMemoryEntityStore` (see the module docstring)."""

    __slots__ = ("_ended", "_locked", "_pending", "_store")

    def __init__(self, store: InMemoryEntityStore) -> None:
        self._store = store
        self._locked: dict[tuple[str, str], datetime] = {}
        self._pending: list[Plan] = []
        self._ended = False

    @property
    def connection(self) -> None:
        """Always None: the in-memory store has no database connection."""
        return None

    def lock(self, kind: str, entity_id: str) -> datetime:
        """Take the entity's lock until the transaction ends; returns the stamp."""
        key = (kind, entity_id)
        stamp = self._locked.get(key)
        if stamp is not None:
            return stamp
        if self._ended:
            raise InvalidArgumentError(f"lock of {kind}:{entity_id} after the transaction ended")
        store = self._store
        lock = store._entity_lock(key)
        if not lock.acquire(timeout=store._lock_timeout):
            raise lock_timed_out(store._lock_timeout, kind, entity_id)
        try:
            stamp = store._stamp(key)
        except BaseException:
            lock.release()
            raise
        self._locked[key] = stamp
        return stamp

    def record(self, plan: Plan) -> datetime:
        """Buffer the plan until commit; returns its stamp."""
        stamp = self._locked.get((plan.kind, plan.entity_id))
        if stamp is None or self._ended:
            raise InvalidArgumentError(
                f"record of {plan.kind}:{plan.entity_id} needs its lock in a live transaction"
            )
        self._pending.append(plan)
        return stamp

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Append every buffered change, call ``then``, release the locks."""
        if self._ended:
            raise InvalidArgumentError("commit of a transaction that already ended")
        try:
            store = self._store
            locked = self._locked
            publish = store._on_commit
            for plan in self._pending:
                stamp = locked[(plan.kind, plan.entity_id)]
                store._append(plan, stamp)
                if publish is not None:
                    publish(plan, stamp)
            self._pending = []
            if then is not None:
                then()
        finally:
            self._release()

    def rollback(self) -> None:
        """Discard the buffered changes and release the locks."""
        if not self._ended:
            self._pending = []
            self._release()

    def _release(self) -> None:
        self._ended = True
        locks = self._store._locks
        for key in self._locked:
            locks[key].release()
        self._locked = {}

    def __enter__(self) -> MemoryTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()
