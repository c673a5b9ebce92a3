"""The ``EntityStore`` port: the durable transition log and the per-entity lock.

An adapter implements these methods; it needs no base class (``typing.Protocol``).
``reactive_entities.testing.EntityStoreContract`` checks an implementation.

Ordering rule every query relies on: rows and changes come back in **recording order**,
and timestamps never decrease in that order for one entity (the entity lock serializes
recording, and the store stamps inside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from reactive_entities.domain.events import Change, ChangeRecord, TransitionRecord

__all__ = ["EntityStore"]


@runtime_checkable
class EntityStore(Protocol):
    """Appends changes, serializes writers of one entity, and answers log queries."""

    def record(self, change: Change) -> datetime:
        """Append the change's row and all its transition rows atomically.

        Every row gets one timestamp from the store's clock, which is returned. A store
        may adopt the change's proposed ``event.occurred_at`` (read from the engine's
        clock inside the entity lock) when it is no later than its own now and not
        earlier than its previous stamp; a database store stamps its own clock.
        """
        ...

    def lock(self, kind: str, entity_id: str) -> AbstractContextManager[object]:
        """Serialize mutations of one entity across every process sharing the store."""
        ...

    def now(self) -> datetime:
        """The store's current time (aware, UTC): the clock used for stamps and windows."""
        ...

    def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row stamped at or before ``at`` (or newest overall)."""
        ...

    def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        ...

    def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field with ``since ≤ transitioned_at ≤ until``.

        ``until`` None means the store's now; ``since`` may be a ``timedelta``, meaning
        ``until - since``. One call answers "how many in the last window" with the
        store's own clock.
        """
        ...

    def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        ...

    def close(self) -> None:
        """Release what the store holds (connections); idempotent."""
        ...
