"""A hand-written floor for in-memory mutate (a): the least Python that does what (a) can
be seen to do, written for the workload's one class and nothing else.

Per write: the entity's lock; the previous state through ``read``; both states checked
(exact types, as the schema's generated check does) and turned into immutable documents;
the changed fields; one change and one row per changed field appended; an immutable event
handed to the subscribers after the lock is released.

Left out, on purpose (so the floor is below any complete implementation): masking and run
secrets, the change feed, transactions and their re-entry guard, actors, cattrs hooks, the
document validity rule (NaN, long ints, NUL), typed errors, the delivery queue. It exists
to say how fast (a) can be in this language at all: ``floor_bench.py`` runs it as Python
and compiled with mypyc, beside the library and (z) in the same processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from workload import FIELDS, It

from reactive_entities.ids import new_change_id

__all__ = ["Event", "FloorEngine", "document"]

Document = Mapping[str, Any]


def document(state: object) -> dict[str, Any]:
    """The state's document: its exact type and every field's type checked."""
    if type(state) is not It:
        raise TypeError(f"expected It, got {type(state).__name__}")
    values: Any = state  # attrs does not check annotations: the values may be anything
    tags = values.tags
    meta = values.meta
    if not (
        type(values.status) is str
        and type(values.severity) is str
        and type(values.title) is str
        and type(values.summary) is str
        and type(values.owner) is str
        and type(values.impact_score) is float
        and type(values.affected_count) is int
        and type(values.acknowledged) is bool
        and type(tags) is list
        and type(meta) is dict
    ):
        raise TypeError("a field of It has the wrong type")
    for tag in tags:
        if type(tag) is not str:
            raise TypeError("tags holds a non-str")
    for key, value in meta.items():
        if type(key) is not str or type(value) is not str:
            raise TypeError("meta holds a non-str")
    return {
        "status": values.status,
        "severity": values.severity,
        "title": values.title,
        "summary": values.summary,
        "owner": values.owner,
        "impact_score": values.impact_score,
        "affected_count": values.affected_count,
        "acknowledged": values.acknowledged,
        "tags": tuple(tags),  # immutable: no receiver can change what was recorded
        "meta": MappingProxyType(dict(meta)),
    }


class Event:
    """What a subscriber receives: prev, next, delta, changed fields, time, change id."""

    __slots__ = ("at", "change_id", "delta", "entity_id", "fields", "next", "prev")

    def __init__(
        self,
        entity_id: str,
        prev: Document,
        next: Document,
        delta: Document,
        fields: frozenset[str],
        at: datetime,
        change_id: str,
    ) -> None:
        self.entity_id = entity_id
        self.prev = prev
        self.next = next
        self.delta = delta
        self.fields = fields
        self.at = at
        self.change_id = change_id


_EMPTY: Document = MappingProxyType({})


class FloorEngine:
    """One kind's funnel, its log in memory, and its subscribers."""

    def __init__(
        self,
        read: Callable[[list[str]], Mapping[str, object]],
        subscribers: list[Callable[[Event], None]],
    ) -> None:
        self._read = read
        self._subscribers = subscribers
        self._locks: dict[str, threading.Lock] = {}
        self.changes: dict[str, list[tuple[datetime, str, tuple[str, ...]]]] = {}
        self.rows: dict[str, list[tuple[datetime, str, object, object, str]]] = {}

    def mutate(self, entity_id: str, apply: Callable[[], object]) -> object:
        """lock → read prev → apply → check and document → diff → append; then deliver."""
        lock = self._locks.get(entity_id)
        if lock is None:
            lock = self._locks.setdefault(entity_id, threading.Lock())
        with lock:
            prev = self._read([entity_id]).get(entity_id)
            before = None if prev is None else document(prev)
            state = apply()
            after = document(state)
            changed = tuple([f for f in FIELDS if before is None or before[f] != after[f]])
            if not changed:
                return state
            at = datetime.now(UTC)
            change_id = new_change_id()
            self.changes.setdefault(entity_id, []).append((at, change_id, changed))
            rows = self.rows.setdefault(entity_id, [])
            for field in changed:
                old = None if before is None else before[field]
                rows.append((at, field, old, after[field], change_id))
            event = Event(
                entity_id,
                _EMPTY if before is None else MappingProxyType(before),
                MappingProxyType(after),
                MappingProxyType({f: after[f] for f in changed}),
                frozenset(changed),
                at,
                change_id,
            )
        for subscriber in self._subscribers:
            subscriber(event)
        return state
