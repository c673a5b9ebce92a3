"""The asyncio twin of the ``EntityStore`` port (DESIGN §10).

Same shapes and the same contract as :mod:`reactive_entities.ports.store`, method for
method; what may wait on I/O is a coroutine (``reader`` is an async context manager).

    async with await store.begin() as tx:        # or store.begin(connection)
        stamp = await tx.lock(kind, entity_id)
        ...                                       # read prev, run apply, plan
        await tx.record(plan)
        await tx.commit(then=queue_events)        # ``then`` is plain: it only queues
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from reactive_entities.domain.events import ChangeRecord, Plan, TransitionRecord

__all__ = ["AsyncEntityStore", "AsyncStoreTransaction"]


@runtime_checkable
class AsyncStoreTransaction(Protocol):
    """One unit of work on an async store; see ``StoreTransaction`` for the contract.

    Cancellation: a task cancelled while waiting in any method leaves the transaction
    rolled back once ``rollback`` (or ``__aexit__``) has run — nothing half-written, the
    entity locks and the connection released.
    """

    @property
    def connection(self) -> Any:
        """The ``psycopg.AsyncConnection`` inside this transaction (None without one)."""
        ...

    async def lock(self, kind: str, entity_id: str) -> datetime:
        """Lock the entity until the transaction ends; the stamp its changes get."""
        ...

    async def record(self, plan: Plan) -> datetime:
        """Add the plan's change and rows to the transaction; returns their stamp."""
        ...

    async def commit(self, then: Callable[[], None] | None = None) -> None:
        """Make every recorded change durable, call ``then`` still holding the locks,
        release them. ``StoreError`` if the outcome is a failure or unknown."""
        ...

    async def rollback(self) -> None:
        """Discard what was recorded and release the locks; idempotent."""
        ...

    async def __aenter__(self) -> AsyncStoreTransaction: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back unless committed."""
        ...


@runtime_checkable
class AsyncEntityStore(Protocol):
    """Records changes through async write transactions and answers log queries."""

    async def begin(self, connection: Any = None) -> AsyncStoreTransaction:
        """A new write transaction, on ``connection`` (an idle ``AsyncConnection`` of
        the application's) or on a pooled one."""
        ...

    def reader(self) -> AbstractAsyncContextManager[Any]:
        """A connection for the plugin's ``read`` outside any write; None without one."""
        ...

    async def now(self) -> datetime:
        """The store's current time (aware, UTC): the database's clock on PostgreSQL."""
        ...

    async def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row stamped at or before ``at`` (or newest overall)."""
        ...

    async def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change stamped at or before ``at`` (or newest overall)."""
        ...

    async def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field with ``since ≤ transitioned_at ≤ until`` (store's clock)."""
        ...

    async def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since`` (inclusive); ``limit`` keeps the newest N."""
        ...

    async def close(self) -> None:
        """Release what the store holds (connections); idempotent."""
        ...
