"""The ``EntityStore`` port: the durable transition log, written through explicit
write transactions.

An adapter implements these methods; it needs no base class (``typing.Protocol``).
``reactive_entities.testing.EntityStoreContract`` checks an implementation.

A write is a :class:`StoreTransaction` (DESIGN §8), begun with :meth:`EntityStore.begin`:

    with store.begin() as tx:          # or store.begin(connection) to join the app's
        stamp = tx.lock(kind, entity_id)   # serialize the entity; the change's stamp
        ...                            # read prev, run apply, plan (the engine)
        tx.record(plan)                # -> the same stamp
        tx.commit(then=deliver)        # rows durable; ``then`` runs before unlocking
    # leaving the block unlocks; without commit() nothing recorded survives

Ordering rule every query relies on: rows and changes come back in **recording order**,
and timestamps never decrease in that order for one entity (the entity lock serializes
recording, and the store stamps inside it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from reactive_entities.domain.events import ChangeRecord, Plan, TransitionRecord

__all__ = ["EntityStore", "StoreTransaction"]


@runtime_checkable
class StoreTransaction(Protocol):
    """One unit of work on the store: entity locks held until it ends, changes recorded
    together at :meth:`commit`, or not at all.

    Stamps: a change is stamped with the store's time when its entity was locked in this
    transaction (never earlier than the entity's previous stamp), so every change of one
    entity in one transaction shares a stamp and recording order breaks the tie.
    """

    @property
    def connection(self) -> Any:
        """The database connection inside this transaction (None for a store without
        one). The application may run its own statements on it: they commit or roll
        back with the recorded changes."""
        ...

    def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock the entity until the transaction ends (again in the same transaction: a
        no-op) and return the stamp its changes get. Waiting is bounded: past the
        store's lock timeout, or on a deadlock, ``StoreError`` naming ``kind:id``."""
        ...

    def record(self, plan: Plan) -> datetime:
        """Add the plan's change and rows to the transaction (its entity must be locked
        by it); returns the stamp they carry. Nothing is visible before :meth:`commit`."""
        ...

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Make every recorded change durable, atomically, then call ``then`` — still
        holding the entity locks, so what ``then`` does (queue events) follows recording
        order — and release the locks. ``StoreError`` if the outcome is a failure or
        unknown (the message says which)."""
        ...

    def rollback(self) -> None:
        """Discard what was recorded and release the locks; idempotent, and a no-op
        after :meth:`commit`."""
        ...

    def __enter__(self) -> StoreTransaction: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back unless committed."""
        ...


@runtime_checkable
class EntityStore(Protocol):
    """Records changes through write transactions and answers log queries."""

    def begin(self, connection: Any = None) -> StoreTransaction:
        """A new write transaction; on a database store it runs on ``connection`` (an
        idle connection of the application's, left open and idle afterwards) or on a
        pooled one. ``InvalidArgumentError`` for a connection the store cannot use."""
        ...

    def reader(self) -> AbstractContextManager[Any]:
        """A connection for the plugin's ``read`` outside any write (``get``, queries),
        returned when the block ends; None for a store without connections."""
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
