"""The asyncio in-memory entity store: the same transition log as
:class:`~reactive_entities.adapters.memory.store.InMemoryEntityStore`, behind
``asyncio.Lock`` entity locks.

Theory of operation. The log, its stamps and every query are the blocking store's own
(:attr:`AsyncInMemoryEntityStore.log`): nothing in them waits, so the coroutines here
call them directly. What differs is waiting for an entity: a write takes the entity's
``asyncio.Lock`` (bounded by ``lock_timeout``) before the log's transaction locks it, so
tasks of one event loop queue on the loop instead of blocking it, and the log's own
thread lock is always free by then. A task cancelled while it waits holds nothing; one
cancelled later is rolled back by whoever runs its ``rollback`` (the engine always
does), which discards its buffered changes and releases its locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from reactive_entities.adapters.memory.store import (
    DEFAULT_LOCK_TIMEOUT,
    InMemoryEntityStore,
    MemoryTransaction,
    lock_timed_out,
    refuse_connection,
)
from reactive_entities.domain.errors import InvalidArgumentError
from reactive_entities.domain.events import ChangeRecord, Plan, TransitionRecord
from reactive_entities.ports.async_store import AsyncEntityStore, AsyncStoreTransaction
from reactive_entities.ports.clock import Clock

__all__ = ["AsyncInMemoryEntityStore", "AsyncMemoryTransaction"]

_Key = tuple[str, str]


class AsyncInMemoryEntityStore(AsyncEntityStore):
    """An ``AsyncEntityStore`` held in memory, for the tasks of one event loop.

    >>> import asyncio
    >>> from reactive_entities.adapters.memory.clock import ManualClock
    >>> from reactive_entities.testing.builders import make_plan
    >>> store = AsyncInMemoryEntityStore(ManualClock())
    >>> async def write() -> int:
    ...     async with await store.begin() as tx:
    ...         await tx.lock("incident", "inc-1")
    ...         await tx.record(make_plan("incident", "inc-1", None, {"status": "open"}))
    ...         await tx.commit()
    ...     return len(await store.transitions("incident", "inc-1"))
    >>> asyncio.run(write())
    1
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        on_commit: Callable[[Plan, datetime], None] | None = None,
    ) -> None:
        #: The log itself (a blocking in-memory store no other writer uses): its
        #: queries answer at once, and tests may inspect it.
        self.log = InMemoryEntityStore(clock, lock_timeout=lock_timeout, on_commit=on_commit)
        self._lock_timeout = lock_timeout.total_seconds()
        self._locks: dict[_Key, asyncio.Lock] = {}

    @property
    def changes_recorded(self) -> int:
        """How many changes were recorded, over all entities."""
        return self.log.changes_recorded

    @property
    def rows_recorded(self) -> int:
        """How many transition rows were recorded, over all entities."""
        return self.log.rows_recorded

    async def begin(self, connection: Any = None) -> AsyncMemoryTransaction:
        """A write transaction (``connection`` must be None: there is no database)."""
        refuse_connection(connection)
        return AsyncMemoryTransaction(self)

    def reader(self) -> AbstractAsyncContextManager[None]:
        """No connection to lend: ``read`` gets None."""
        return nullcontext()

    async def _acquire(self, key: _Key) -> asyncio.Lock:
        """Wait (at most ``lock_timeout``) for the entity's lock, and take it."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(self._lock_timeout):
                await lock.acquire()  # cancelled while waiting: not taken
        except TimeoutError:
            raise lock_timed_out(self._lock_timeout, *key) from None
        return lock

    async def now(self) -> datetime:
        """The injected clock's time."""
        return self.log.now()

    async def latest_transition(
        self, kind: str, entity_id: str, field: str, *, at: datetime | None = None
    ) -> TransitionRecord | None:
        """The field's newest row at or before ``at``."""
        return self.log.latest_transition(kind, entity_id, field, at=at)

    async def latest_change(
        self, kind: str, entity_id: str, *, at: datetime | None = None
    ) -> ChangeRecord | None:
        """The entity's newest change at or before ``at``."""
        return self.log.latest_change(kind, entity_id, at=at)

    async def count_transitions(
        self,
        kind: str,
        entity_id: str,
        field: str,
        since: datetime | timedelta,
        until: datetime | None = None,
    ) -> int:
        """Rows of the field stamped in ``[since, until]``."""
        return self.log.count_transitions(kind, entity_id, field, since, until)

    async def transitions(
        self,
        kind: str,
        entity_id: str,
        field: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[TransitionRecord]:
        """Rows oldest first, from ``since``, the newest ``limit`` of them."""
        return self.log.transitions(kind, entity_id, field, since, limit)

    async def close(self) -> None:
        """Nothing to release."""

    def changes(self, kind: str, entity_id: str) -> tuple[ChangeRecord, ...]:
        """Every recorded change of the entity, oldest first (introspection)."""
        return self.log.changes(kind, entity_id)


class AsyncMemoryTransaction(AsyncStoreTransaction):
    """A write transaction of :class:`AsyncInMemoryEntityStore`: the log's own
    transaction, entered once this one holds the entity's ``asyncio.Lock``."""

    __slots__ = ("_ended", "_held", "_log_tx", "_store")

    def __init__(self, store: AsyncInMemoryEntityStore) -> None:
        self._store = store
        self._log_tx = MemoryTransaction(store.log)
        self._held: dict[_Key, asyncio.Lock] = {}
        self._ended = False

    @property
    def connection(self) -> None:
        """Always None: the in-memory store has no database connection."""
        return None

    async def lock(self, kind: str, entity_id: str) -> datetime:
        """Take the entity's lock until the transaction ends; returns the stamp."""
        key = (kind, entity_id)
        if key not in self._held:
            if self._ended:
                raise InvalidArgumentError(
                    f"lock of {kind}:{entity_id} after the transaction ended"
                )
            self._held[key] = await self._store._acquire(key)
        return self._log_tx.lock(kind, entity_id)

    async def record(self, plan: Plan) -> datetime:
        """Buffer the plan until commit; returns its stamp."""
        return self._log_tx.record(plan)

    async def commit(self, then: Callable[[], None] | None = None) -> None:
        """Append every buffered change, call ``then``, release the locks."""
        try:
            self._log_tx.commit(then)
        finally:
            self._release()

    async def rollback(self) -> None:
        """Discard the buffered changes and release the locks (idempotent)."""
        self._log_tx.rollback()
        self._release()

    def _release(self) -> None:
        self._ended = True
        held, self._held = self._held, {}
        for lock in held.values():
            lock.release()

    async def __aenter__(self) -> AsyncMemoryTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()
