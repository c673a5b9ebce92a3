"""The values a change produces: the event, its transition rows, and what stores return.

* :class:`Transition` — one planned row per changed field, already masked.
* :class:`ChangeEvent` — what subscribers receive (SPEC §6), already masked.
* :class:`Plan` — the decision: the masked change and its rows, without a stamp. The
  store records it and stamps it; the event is built from both.
* :class:`TransitionRecord` / :class:`ChangeRecord` — rows as a store returns them.
* :data:`ABSENT` — ``from_value`` of a create: the entity did not exist before.

Documents inside these values are plain dicts and lists so they serialize directly. The
library never mutates them, and stores keep their own copies of what they record (and
hand out copies), so a receiver that mutates an event's document changes nothing
recorded.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import attrs

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.json import Document, JSONValue, copy_document
from reactive_entities.domain.position import Position

__all__ = [
    "Op",
    "Absent",
    "ABSENT",
    "Transition",
    "ChangeEvent",
    "Plan",
    "TransitionRecord",
    "ChangeRecord",
    "iso_utc",
]

Op: TypeAlias = Literal["create", "update", "remove"]


class Absent(enum.Enum):
    """The type of :data:`ABSENT`; an enum so the sentinel survives copy and pickle."""

    ABSENT = "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


#: ``from_value`` of a create's rows: the entity did not exist (falsy, repr ``ABSENT``).
ABSENT = Absent.ABSENT
# ``Absent`` keeps its real module: pickle finds a class through ``__module__``, and the
# package root exports ``ABSENT``, not ``Absent``.


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with six fraction digits and a ``Z``: ``2024-01-02T03:04:05.000006Z``."""
    # Not strftime: its ``%Y`` drops the leading zeros of years before 1000 on glibc,
    # and ``datetime.fromisoformat`` then rejects the text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@attrs.frozen(slots=False)  # transient, built on every write: dict-based init is ~2x faster
class Transition:
    """One planned transition row: a field of a create or update, masked."""

    field: str
    from_value: JSONValue | Absent
    to_value: JSONValue
    masked: bool


@attrs.frozen(slots=False)  # transient, built on every write: dict-based init is ~2x faster
class ChangeEvent:
    """A recorded change, as delivered to subscribers (SPEC §6). Everything is masked."""

    kind: str
    entity_id: str
    op: Op
    prev: Document | None
    next: Document | None
    delta: Document
    changed_fields: tuple[str, ...]
    actor: Actor
    run_id: str | None
    occurred_at: datetime
    change_id: str
    #: Where the change sits in the feed: set on events read from it (``changes()``,
    #: durable subscriptions), None on events delivered in-process at commit.
    position: Position | None = None

    def detached(self) -> ChangeEvent:
        """The same event with its own copies of ``prev``, ``next`` and ``delta``: what a
        receiver does to the copy's documents reaches nobody else (DESIGN §8)."""
        prev = self.prev
        nxt = self.next
        return ChangeEvent(
            self.kind,
            self.entity_id,
            self.op,
            None if prev is None else copy_document(prev),
            None if nxt is None else copy_document(nxt),
            copy_document(self.delta),
            self.changed_fields,
            self.actor,
            self.run_id,
            self.occurred_at,
            self.change_id,
            self.position,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``occurred_at`` becomes ISO-8601 UTC with a ``Z``, and
        ``position`` its ``str`` (when there is one)."""
        return {
            "kind": self.kind,
            "entity_id": self.entity_id,
            "op": self.op,
            "prev": self.prev,
            "next": self.next,
            "delta": self.delta,
            "changed_fields": list(self.changed_fields),
            "actor": self.actor.to_dict(),
            "run_id": self.run_id,
            "occurred_at": iso_utc(self.occurred_at),
            "change_id": self.change_id,
            "position": None if self.position is None else str(self.position),
        }


@attrs.frozen(slots=False)  # transient, built on every write: dict-based init is ~2x faster
class Plan:
    """What ``plan_change`` decided: one change, masked, complete but for its stamp.

    The store records it and returns the stamp; :meth:`event` then builds the one
    :class:`ChangeEvent` delivered for it. Time is the store's alone (DESIGN §8).
    """

    kind: str
    entity_id: str
    op: Op
    prev: Document | None
    next: Document | None
    delta: Document
    changed_fields: tuple[str, ...]
    actor: Actor
    run_id: str | None
    change_id: str
    transitions: tuple[Transition, ...]

    def event(self, at: datetime, position: Position | None = None) -> ChangeEvent:
        """The change event, stamped ``at`` (the time the store stamped on the rows), at
        ``position`` in the feed when known."""
        return ChangeEvent(
            self.kind,
            self.entity_id,
            self.op,
            self.prev,
            self.next,
            self.delta,
            self.changed_fields,
            self.actor,
            self.run_id,
            at,
            self.change_id,
            position,
        )


@attrs.frozen
class TransitionRecord:
    """A transition row as stored (SPEC §7). ``from_value`` is ``ABSENT`` for a create."""

    kind: str
    entity_id: str
    field: str
    from_value: JSONValue | Absent
    to_value: JSONValue
    masked: bool
    change_id: str
    transitioned_at: datetime


@attrs.frozen
class ChangeRecord:
    """A change-log row as stored: one per recorded change, removes included."""

    kind: str
    entity_id: str
    op: Op
    change_id: str
    occurred_at: datetime
    changed_fields: tuple[str, ...]
    actor: Actor
    run_id: str | None
