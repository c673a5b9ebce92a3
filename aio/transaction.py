"""The asyncio unit of work: :class:`AsyncTransaction`, and the write pipeline that runs
inside one — the blocking pipeline's steps, in the same order, awaiting what waits:

    lock → read prev → apply (awaited if it returns an awaitable) → plan (pure) → record

Commit queues the events while the store still holds the entity locks, releases them,
then delivers (``aio.delivery``). A rollback discards everything and delivers nothing.

Re-entry: a task that writes an entity inside that entity's own ``apply`` (or writes,
without ``tx=``, an entity one of its open transactions holds) would wait for itself; it
gets ``InvalidArgumentError`` naming ``kind:id`` at once. What the blocking engine keeps
per thread is kept here in ``contextvars``: per task, and inherited by the tasks it
starts (waiting for a child that waits for its parent's lock is the same deadlock).

Cancellation: a task cancelled while it waits for a lock, inside ``read`` or ``apply``,
or while recording, rolls its transaction back on the way out (the handle's own
transaction, or the ``async with`` block's): nothing half-written, locks and connection
released.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from reactive_entities.domain.actor import Actor
from reactive_entities.domain.errors import InvalidArgumentError, ReactiveEntitiesError, StoreError
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.secret_set import SecretSet
from reactive_entities.ports.async_store import AsyncStoreTransaction
from reactive_entities.shell_checks import commit_failure, reentry_problem, store_failure

if TYPE_CHECKING:
    from reactive_entities.aio.engine import AsyncEngine, AsyncEntityHandle

__all__ = ["AsyncTransaction"]

_Key = tuple[str, str]

#: The entities locked by this task's open transactions (copied on write: a task
#: started later sees a snapshot, and nothing it does leaks back).
_HELD: ContextVar[Mapping[_Key, AsyncTransaction]] = ContextVar(
    "reactive_entities_held", default=MappingProxyType({})
)
#: The write whose ``read``/``apply`` runs in this task: its entity and transaction.
_WRITING: ContextVar[tuple[_Key, AsyncTransaction] | None] = ContextVar(
    "reactive_entities_writing", default=None
)


class AsyncTransaction:
    """A unit of work: the application's statements on :attr:`connection` and every
    change recorded with ``tx=`` commit together, then their events are delivered.

    Get one from :meth:`AsyncEngine.transaction` and use it as ``async with
    engine.transaction() as tx`` (or ``tx = await engine.transaction()``, then
    ``await tx.commit()`` / ``await tx.rollback()``): leaving the block normally commits;
    an exception — cancellation included — rolls back and propagates.

    >>> import asyncio
    >>> from reactive_entities.aio import compose
    >>> async def main() -> bool:
    ...     async with compose.in_memory() as engine, engine.transaction() as tx:
    ...         return tx.connection is None
    >>> asyncio.run(main())
    True
    """

    __slots__ = ("_connection", "_engine", "_events", "_keys", "_state", "_store_tx")

    def __init__(self, engine: AsyncEngine, connection: Any = None) -> None:
        self._engine = engine
        self._connection = connection
        self._store_tx: AsyncStoreTransaction | None = None
        self._events: list[ChangeEvent] = []
        self._keys: list[_Key] = []  # entities locked, for the task's re-entry guard
        self._state = "not begun"

    @property
    def connection(self) -> Any:
        """The database connection inside this transaction (a ``psycopg.AsyncConnection``
        on PostgreSQL, None in memory). Statements run on it commit with the changes."""
        return self._live().connection

    @property
    def active(self) -> bool:
        """Whether the transaction is open (begun, neither committed nor rolled back)."""
        return self._state == "open"

    def __repr__(self) -> str:
        return f"<AsyncTransaction {self._state}, {len(self._events)} change(s)>"

    async def _begin(self) -> AsyncTransaction:
        if self._state == "not begun":
            self._engine._check_open()
            try:
                self._store_tx = await self._engine.store.begin(self._connection)
            except ReactiveEntitiesError:
                raise
            except Exception as error:
                raise store_failure("could not begin a transaction") from error
            self._state = "open"
        return self

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self._begin().__await__()

    # -- the write pipeline ----------------------------------------------------------------

    async def _write(
        self,
        handle: AsyncEntityHandle[Any],
        entity_id: str,
        apply: Callable[[], object],
        actor: Actor,
        run_id: str | None,
        secrets: SecretSet,
        *,
        removing: bool,
    ) -> Any:
        """lock → read → apply → validate and plan → record; returns the next state."""
        store_tx = self._live()
        key = (handle.kind, entity_id)
        await self._lock(store_tx, key)
        writing = _WRITING.set((key, self))
        try:
            prev_doc = (await handle._current(entity_id, secrets, store_tx.connection))[1]
            result = apply()
            if inspect.isawaitable(result):
                result = await result
        finally:
            _WRITING.reset(writing)
        decision = handle._plan(
            entity_id,
            prev_doc,
            result,
            removing=removing,
            actor=actor,
            run_id=run_id,
            secrets=secrets,
        )
        if decision.plan is not None:
            try:
                stamp = await store_tx.record(decision.plan)
            except ReactiveEntitiesError:
                raise
            except Exception as error:
                raise store_failure("could not record a change of", key) from error
            self._events.append(decision.plan.event(stamp))
        return decision.state

    async def _lock(self, store_tx: AsyncStoreTransaction, key: _Key) -> None:
        writing = _WRITING.get()
        owner = _HELD.get().get(key)
        if owner is not None and not owner.active:
            owner = None  # ended in a task that could not tell this one
        problem = reentry_problem(
            key,
            writing_here=writing is not None and writing[0] == key and writing[1] is self,
            held_elsewhere=owner is not None and owner is not self,
            by_writer=writing is not None and writing[0] == key,
            who="task",
        )
        if problem is not None:
            raise InvalidArgumentError(problem)
        try:
            await store_tx.lock(*key)
        except ReactiveEntitiesError:
            raise
        except Exception as error:
            raise store_failure("could not lock", key) from error
        if owner is None:
            _HELD.set(MappingProxyType({**_HELD.get(), key: self}))
            self._keys.append(key)

    # -- ending --------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit, then deliver the events in recording order (leaving the ``async
        with`` block does this for you)."""
        store_tx = self._live()
        events = self._events
        delivery = self._engine._delivery
        owned: list[_Key] = []

        def queue_events() -> None:
            owned.extend(delivery.enqueue(events))

        try:
            await store_tx.commit(queue_events if events else None)
        except BaseException as error:
            await self._abandon(store_tx)
            if isinstance(error, ReactiveEntitiesError) or not isinstance(error, Exception):
                raise
            raise StoreError(commit_failure(events)) from error
        self._end("committed")
        await delivery.drain(owned)

    async def rollback(self) -> None:
        """Discard every change recorded in this transaction; nothing is delivered.
        The application's statements on :attr:`connection` are rolled back too."""
        if self._state == "open" and self._store_tx is not None:
            await self._abandon(self._store_tx)

    async def _abandon(self, store_tx: AsyncStoreTransaction) -> None:
        try:
            await store_tx.rollback()
        finally:
            self._end("rolled back")

    def _end(self, state: str) -> None:
        self._state = state
        held = _HELD.get()
        if any(held.get(key) is self for key in self._keys):
            _HELD.set(MappingProxyType({k: t for k, t in held.items() if t is not self}))
        self._keys = []

    def _live(self) -> AsyncStoreTransaction:
        if self._state != "open" or self._store_tx is None:
            if self._state == "not begun":
                raise InvalidArgumentError(
                    "this transaction has not begun: use it as "
                    "`async with engine.transaction() as tx` (or await it)"
                )
            raise InvalidArgumentError(
                f"this transaction is {self._state}: it cannot be used after its block"
            )
        return self._store_tx

    async def __aenter__(self) -> AsyncTransaction:
        return await self._begin()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            return
        if exc_type is None:
            await self.commit()
        else:
            await self.rollback()
